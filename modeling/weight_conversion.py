"""Weights between transformers' ``GPT2LMHeadModel`` (OpenAI GPT-2) and ``GPTForCausalLM``.

Both use the same parameter names; HF's ``Conv1D`` stores (in, out) where ``nn.Linear`` stores (out, in), so the four
projection matrices are transposed. The vocabulary is padded (50257 -> 50304) or unpadded on the way.
"""

import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from .configuration_gpt import GPTConfig, ModelSettingError
from .modeling_gpt import GPTForCausalLM

GPT2_VOCAB_SIZE = 50257
PADDED_VOCAB_SIZE = 50304
# Conv1D weights in HF GPT-2; everything else has the same layout in both models.
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older GPT-2 checkpoints


def _is_transposed(key: str) -> bool:
    return key.endswith(_TRANSPOSED)


def config_from_gpt2(gpt2_config: GPT2Config, vocab_size: int | None = None) -> GPTConfig:
    """Our config for a GPT-2 config; ``vocab_size`` pads the vocabulary (None keeps it)."""
    if gpt2_config.activation_function not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise ValueError(
            f"Only tanh-GELU GPT-2 models can be converted; this one uses {gpt2_config.activation_function!r}."
        )
    return GPTConfig(
        vocab_size=vocab_size or gpt2_config.vocab_size,
        n_positions=gpt2_config.n_positions,
        n_embd=gpt2_config.n_embd,
        n_layer=gpt2_config.n_layer,
        n_head=gpt2_config.n_head,
        n_inner=gpt2_config.n_inner,
        layer_norm_epsilon=gpt2_config.layer_norm_epsilon,
        initializer_range=gpt2_config.initializer_range,
        bos_token_id=gpt2_config.bos_token_id,
        eos_token_id=gpt2_config.eos_token_id,
    )


def _pad_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Append rows equal to the mean embedding: each padded id then gets an average token's logit, a negligible
    share of the probability mass, whereas zero rows would give logit 0, far above GPT-2's typical logits."""
    extra = weight.mean(dim=0, keepdim=True).expand(rows - weight.shape[0], -1)
    return torch.cat([weight, extra], dim=0)


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module, vocab_rows: int, what: str) -> None:
    """Copy every weight key for key, transposing Conv1D <-> Linear matrices and padding (mean rows) or cutting
    the token embedding to ``vocab_rows``; lm_head is tied to wte and the old causal-mask buffers are skipped."""
    state = {}
    for key, value in source.state_dict().items():
        if key == "lm_head.weight" or key.endswith(_MASK_BUFFERS):
            continue
        value = value.detach()
        if _is_transposed(key):
            value = value.t()
        if key == "transformer.wte.weight":
            value = _pad_rows(value, vocab_rows) if value.shape[0] < vocab_rows else value[:vocab_rows]
        state[key] = value.contiguous()
    missing, unexpected = target.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(_MASK_BUFFERS)]
    if missing or unexpected:
        raise ValueError(f"{what} mismatch: missing {missing}, unexpected {unexpected}")
    target.tie_weights()


def from_gpt2(model_or_id: GPT2LMHeadModel | str | os.PathLike, vocab_size: int | None = PADDED_VOCAB_SIZE,
              **from_pretrained_kwargs) -> GPTForCausalLM:
    """A ``GPTForCausalLM`` with the weights of a transformers GPT-2 (a model, a Hub id such as ``gpt2``, or a path).

    ``vocab_size`` pads the embedding to that many rows (default 50304); None keeps the source size.
    """
    source = model_or_id
    if not isinstance(source, GPT2LMHeadModel):
        source = GPT2LMHeadModel.from_pretrained(model_or_id, **from_pretrained_kwargs)
    target_vocab = max(vocab_size or 0, source.config.vocab_size)
    model = GPTForCausalLM(config_from_gpt2(source.config, target_vocab))
    _copy_weights(source, model, vocab_rows=target_vocab, what="GPT-2 conversion")
    return model.to(next(source.parameters()).dtype)


def gpt2_export_problem(config: GPTConfig) -> str | None:
    """Why a model of this config has no plain ``GPT2LMHeadModel`` equivalent, or None when it has one."""
    if not config.bias:
        return "GPT2LMHeadModel always has biases; a model trained with bias=False cannot be exported."
    if getattr(config, "qk_norm", False):
        return ("GPT2LMHeadModel has no query/key LayerNorm; a model trained with qk_norm cannot be exported (load it "
                "with trust_remote_code=True instead).")
    if getattr(config, "parametrization", "sp") == "mup":
        # The weights alone are not the function: μP's 1/m logit multiplier and its attention scale live in the
        # forward pass, and GPT2LMHeadModel has neither.
        return ("GPT2LMHeadModel has no μP output multiplier or attention scale; a model trained with "
                "parametrization='mup' cannot be exported (load it with trust_remote_code=True instead).")
    return None


def to_gpt2(model: GPTForCausalLM, vocab_size: int | None = GPT2_VOCAB_SIZE) -> GPT2LMHeadModel:
    """A plain transformers ``GPT2LMHeadModel`` with our weights; ``vocab_size`` unpads (None keeps all rows)."""
    config = model.config
    if problem := gpt2_export_problem(config):
        raise ModelSettingError(problem)
    vocab = min(vocab_size or config.vocab_size, config.vocab_size)
    gpt2_config = GPT2Config(
        vocab_size=vocab,
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.n_inner,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=config.layer_norm_epsilon,
        initializer_range=config.initializer_range,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        tie_word_embeddings=True,
    )
    gpt2 = GPT2LMHeadModel(gpt2_config)
    _copy_weights(model, gpt2, vocab_rows=vocab, what="GPT-2 export")
    return gpt2.to(next(model.parameters()).dtype)


def export_gpt2(model: GPTForCausalLM, folder: str | os.PathLike, vocab_size: int | None = GPT2_VOCAB_SIZE,
                with_tokenizer: bool = True) -> GPT2LMHeadModel:
    """Save ``to_gpt2(model)`` as a folder that plain ``transformers`` loads with no remote code."""
    gpt2 = to_gpt2(model, vocab_size)
    gpt2.save_pretrained(folder)
    if with_tokenizer:
        from .tokenization import save_hf_tokenizer

        save_hf_tokenizer(folder, model_max_length=model.config.n_positions)
    return gpt2


__all__ = ["config_from_gpt2", "export_gpt2", "from_gpt2", "gpt2_export_problem", "to_gpt2"]
