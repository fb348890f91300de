"""Configuration of the GPT-2 architecture trained by this project (config only, no model code)."""

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

    def __post_init__(self, **kwargs):
        # Checked here rather than in a ``@strict`` validator so callers get a plain ValueError.
        self._check_shapes()
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

    def _nearest_divisor(self) -> int:
        divisors = [d for d in range(1, self.n_embd + 1) if self.n_embd % d == 0]
        return min(divisors, key=lambda d: abs(d - self.n_head))

    @property
    def intermediate_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


__all__ = ["GPTConfig"]
