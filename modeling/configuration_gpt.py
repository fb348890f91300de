"""Configuration of the GPT-2 architecture trained by this project (config only, no model code)."""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


class ModelSettingError(ValueError):
    """A model setting (or a model) that cannot be used as asked; the message names the setting."""

    user_error = True  # the training scripts report it as "error: ..." (training/errors.py)


@strict
class GPTConfig(PreTrainedConfig):
    r"""
    GPT-2 (build-nanogpt flavour) configuration. The defaults are GPT-2 124M with the vocabulary padded to 50304
    (a multiple of 128, faster matmuls); the tiktoken ``gpt2`` tokenizer uses only the first 50257 ids.

    Args:
        vocab_size: rows of the embedding / output matrix. Any positive size is legal (tests use tiny ones);
            a tokenizer whose ids do not fit is rejected by the trainer at start-up.
        n_positions: context length (size of the learned position table).
        n_embd: width of the residual stream.
        n_layer: number of transformer blocks.
        n_head: attention heads per block; must divide ``n_embd``.
        n_inner: MLP hidden width, ``4 * n_embd`` when None.
        bias: biases in the Linear layers and LayerNorms (GPT-2 has them).
        dropout: dropout on embeddings, attention probabilities and residual branches (0 for pretraining).
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: std of the N(0, std) init; residual projections use std / sqrt(2 * n_layer).
        tie_word_embeddings: share ``lm_head.weight`` with ``transformer.wte.weight``.
        qk_norm: LayerNorm on each head's queries and keys before attention (Wortsman et al. 2023, arXiv
            2309.14322: it keeps attention logits from growing without bound, which lets models train at learning
            rates that otherwise diverge). Off (the default) is GPT-2 exactly.
        parametrization: ``"sp"`` (the default: GPT-2's standard parametrization, exactly as before) or ``"mup"``,
            the maximal-update parametrization (Yang et al. 2022, "Tensor Programs V", arXiv 2203.03466) relative to
            a base model of width ``mup_base_width``. With m = n_embd / mup_base_width, the model changes in three
            places: hidden matrices (attention and MLP projections) are initialised with std / sqrt(m); attention
            logits are scaled by sqrt(base_head_dim) / head_dim instead of 1 / sqrt(head_dim); the output logits
            are multiplied by 1 / m. At m = 1 a mup model is the sp model exactly. The optimizer's share (learning
            rate 1 / m for hidden matrices under AdamW) lives in training/optim/optimizers.py; docs/mup.md has the
            conventions and their sources.
        mup_base_width: with ``parametrization="mup"``: the width (n_embd) at which the hyperparameters were tuned.
            The base keeps this model's n_head, so its head size is mup_base_width / n_head (it must divide).
    """

    model_type = "nanogpt"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    # Generic code (generate, caches, lm-eval, pipelines) asks for these standard names.
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    vocab_size: int = 50304
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    bias: bool = True
    dropout: float | int = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True
    qk_norm: bool = False
    parametrization: str = "sp"
    mup_base_width: int | None = None

    def __post_init__(self, **kwargs):
        # Checked here rather than in a ``@strict`` validator so callers get a plain ValueError.
        self._check_shapes()
        self._check_parametrization()
        super().__post_init__(**kwargs)

    def _check_shapes(self):
        """Reject shapes the model cannot be built with."""
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ModelSettingError(f"GPTConfig.{name} must be a positive integer, got {value!r}.")
        if self.n_inner is not None and self.n_inner <= 0:
            raise ModelSettingError(f"GPTConfig.n_inner must be a positive integer or None, got {self.n_inner!r}.")
        if self.n_embd % self.n_head != 0:
            raise ModelSettingError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"choose e.g. n_head={self._nearest_divisor()}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ModelSettingError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}.")

    def _check_parametrization(self):
        if self.parametrization not in ("sp", "mup"):
            raise ValueError(f"GPTConfig.parametrization must be 'sp' or 'mup', got {self.parametrization!r}.")
        if self.parametrization != "mup":
            return
        base = self.mup_base_width
        if not isinstance(base, int) or isinstance(base, bool) or base <= 0:
            raise ValueError("GPTConfig.parametrization='mup' needs mup_base_width, the positive width the "
                             f"hyperparameters were tuned at (got {base!r}).")
        if base % self.n_head:
            raise ValueError(f"GPTConfig.mup_base_width ({base}) must be divisible by n_head ({self.n_head}): the "
                             "base model keeps this model's heads, each of mup_base_width / n_head dimensions.")

    def _nearest_divisor(self) -> int:
        divisors = [d for d in range(1, self.n_embd + 1) if self.n_embd % d == 0]
        return min(divisors, key=lambda d: abs(d - self.n_head))

    @property
    def intermediate_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mup_width_mult(self) -> float:
        """m = n_embd / mup_base_width under mup; 1.0 under sp (nothing is scaled)."""
        return self.n_embd / self.mup_base_width if self.parametrization == "mup" else 1.0

    @property
    def attention_scaling(self) -> float:
        """The factor on q.k: 1/sqrt(head_dim) under sp; sqrt(base_head_dim)/head_dim under mup. μP needs 1/head_dim
        (after training q and k are correlated, so q.k grows like head_dim, not its square root: TP5's attention rule);
        the constant sqrt(base_head_dim) makes it equal sp's at the base width, as Microsoft's ``mup`` README does
        with 8/d (equal to 1/sqrt(d) at d=64), so the base model's tuned hyperparameters apply unchanged."""
        if self.parametrization != "mup":
            return self.head_dim**-0.5
        return math.sqrt(self.mup_base_width // self.n_head) / self.head_dim

    @property
    def output_multiplier(self) -> float:
        """The factor on the logits: 1 / m under mup (TP5 Table 8's output multiplier), 1.0 under sp."""
        return 1.0 / self.mup_width_mult


__all__ = ["GPTConfig"]
