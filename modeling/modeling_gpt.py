"""The GPT-2 forward pass (build-nanogpt architecture) as a Transformers model.

This file imports only torch, transformers, ``configuration_gpt`` and ``loss``: ``save_pretrained`` copies them
next to the weights so ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` works where this project is not
installed. Parameter names follow OpenAI/HF GPT-2 (``transformer.h.0.attn.c_attn.weight`` ...), with ``nn.Linear``
in place of HF's transposed ``Conv1D``, so weight conversion is a key-for-key copy plus transposes.
"""

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

from .configuration_gpt import GPTConfig
from .loss import next_token_loss, next_token_loss_with_z, shift_for_next_token


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention with the same contract as transformers' sdpa integration.

    query (B, H, q, D), key/value (B, H, kv, D); ``attention_mask`` is None (plain causal, q == kv, or a single query
    token that sees everything) or a boolean (B or 1, 1, q, kv) mask where True means "may attend".
    Returns the output as (B, q, H, D) and the attention probabilities (B, H, q, kv).
    """
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, q, kv)
    q_len, kv_len = scores.shape[-2:]
    if attention_mask is None and q_len > 1:
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device).tril()
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2)  # (B, q, H, D)
    return out, probs


def build_attention_mask(
    attention_mask: torch.Tensor | None, batch_size: int, q_len: int, past_len: int, device: torch.device
) -> torch.Tensor | None:
    """Turn a 2-D padding mask into the boolean 4-D mask attention needs, or None when plain causal suffices.

    None keeps the fast ``is_causal`` path of SDPA for training (no padding, no cache). An explicit mask is needed
    when keys are padded or when several new tokens follow a cache (SDPA's ``is_causal`` would align the triangle
    to the wrong corner). Rows that may attend to nothing (a left-pad query) are allowed to attend to themselves,
    so they stay finite instead of softmaxing over an empty set.
    """
    has_padding = attention_mask is not None and not bool(attention_mask.all())
    if not has_padding and not (past_len > 0 and q_len > 1):
        return None
    kv_len = past_len + q_len
    q_pos = torch.arange(past_len, kv_len, device=device)
    k_pos = torch.arange(kv_len, device=device)
    mask = (k_pos[None, :] <= q_pos[:, None])[None, None]  # (1, 1, q, kv)
    if has_padding:
        keys = _align_padding_mask(attention_mask, kv_len).to(device=device, dtype=torch.bool)  # (B, kv)
        mask = mask & keys[:, None, None, :]
    mask = mask | (k_pos[None, :] == q_pos[:, None])[None, None]
    return mask.expand(batch_size, 1, q_len, kv_len)


def _align_padding_mask(attention_mask: torch.Tensor, kv_len: int) -> torch.Tensor:
    """A 2-D mask covers past + new tokens; keep its last ``kv_len`` columns (left-fill with ones if shorter)."""
    if attention_mask.shape[-1] >= kv_len:
        return attention_mask[:, -kv_len:]
    fill = attention_mask.new_ones(attention_mask.shape[0], kv_len - attention_mask.shape[-1])
    return torch.cat([fill, attention_mask], dim=-1)


def position_ids_from(attention_mask: torch.Tensor | None, q_len: int, past_len: int, device) -> torch.Tensor:
    """Positions of the new tokens: count only real tokens (``cumsum - 1``) so left padding does not shift them."""
    if attention_mask is not None and not bool(attention_mask.all()):
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, past + q)
        return positions[:, -q_len:].to(device)
    return torch.arange(past_len, past_len + q_len, device=device).unsqueeze(0)  # (1, q)


class GPTAttention(nn.Module):
    """Multi-head causal self-attention; the kernel comes from ``ALL_ATTENTION_FUNCTIONS`` (sdpa by default)."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.scaling = config.attention_scaling  # 1/sqrt(head_dim); μP: sqrt(base_head_dim)/head_dim
        self.is_causal = True  # read by transformers' attention integrations
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm:
            # Over each head's dimension, shared by all heads (Wortsman et al.): bounds the attention logits.
            self.q_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_epsilon, bias=config.bias)
            self.k_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_epsilon, bias=config.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        batch, seq, _ = hidden_states.shape
        q, k, v = self.c_attn(hidden_states).split(self.config.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if self.config.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)  # before the cache: cached keys are already normalised
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H, past + T, D)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, _ = attention_interface(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        out = out.reshape(batch, seq, self.config.n_embd).contiguous()  # (B, T, C)
        return self.resid_dropout(self.c_proj(out))


class GPTMLP(nn.Module):
    """Position-wise feed-forward: Linear -> tanh-approximated GELU (as in GPT-2) -> Linear."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.c_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(hidden_states), approximate="tanh")))


class GPTBlock(GradientCheckpointingLayer):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = GPTAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = GPTMLP(config)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, cache: Cache | None = None
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states), attention_mask, cache)
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPTPreTrainedModel(PreTrainedModel):
    """Owns initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer), zero biases; under μP the
    hidden matrices' std is further divided by sqrt(n_embd / mup_base_width)."""

    config_class = GPTConfig
    config: GPTConfig
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GPTBlock"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                # GPT-2 paper: two residual additions per block, so their output projections are scaled by
                # 1/sqrt(2 * n_layer) to keep the residual stream's variance from growing with depth.
                std = std / math.sqrt(2 * self.config.n_layer)
            if self.config.parametrization == "mup" and not getattr(module, "is_readout", False):
                # μP: a hidden matrix's init variance goes as 1/fan_in (TP5, Table 3). Anchored at the base width,
                # whose std is the tuned one: std / sqrt(m). The readout keeps its std (its 1/m is a multiplier).
                std = std / math.sqrt(self.config.mup_width_mult)
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


@dataclasses.dataclass
class GPTCausalLMOutput(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus ``z_loss``: with ``forward(..., z_loss=w)``, the term ``w * mean(log^2 Z)``
    included in ``loss`` (logged on its own; ``loss - z_loss`` is the plain cross-entropy)."""

    z_loss: torch.FloatTensor | None = None


def _with_cache_field(output_cls, cache, **fields):
    """transformers 5.24 renamed the output field ``past_key_values`` to ``cache``; fill whichever exists."""
    names = {f.name for f in dataclasses.fields(output_cls)}
    fields["cache" if "cache" in names else "past_key_values"] = cache
    return output_cls(**fields)


class GPTModel(GPTPreTrainedModel):
    """Embeddings + blocks + final LayerNorm; returns the last hidden state (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([GPTBlock(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        cache = cache if cache is not None else past_key_values  # name used by transformers < 5.24
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False  # recomputed blocks would append to the cache twice
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None

        inputs_embeds = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        batch, seq = inputs_embeds.shape[:2]
        past_len = cache.get_seq_length() if cache is not None else 0
        if past_len + seq > self.config.n_positions:
            raise ValueError(
                f"Sequence of {past_len + seq} tokens is longer than the model's context "
                f"(n_positions={self.config.n_positions})."
            )
        if position_ids is None:
            position_ids = position_ids_from(attention_mask, seq, past_len, inputs_embeds.device)
        mask = attention_mask
        if mask is None or mask.ndim == 2:
            mask = build_attention_mask(attention_mask, batch, seq, past_len, inputs_embeds.device)

        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))
        for block in self.h:
            hidden_states = block(hidden_states, mask, cache)
        hidden_states = self.ln_f(hidden_states)
        return _with_cache_field(BaseModelOutputWithPast, cache, last_hidden_state=hidden_states)


class GPTForCausalLM(GPTPreTrainedModel, GenerationMixin):
    """GPT-2 language model: ``GPTModel`` plus an ``lm_head`` tied to the token embedding.

    Loss: ``labels`` are shifted inside (HF convention, the last position has no target); ``shift_labels`` are
    already-shifted targets, so a Karpathy-style (x, y) pair scores all T positions: ``model(x, shift_labels=y)``.
    """

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = GPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.is_readout = True  # not a hidden matrix: μP leaves its init alone (see _init_weights)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        z_loss: float = 0.0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.transformer(
            input_ids,
            cache=cache if cache is not None else past_key_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        hidden_states = outputs.last_hidden_state  # (B, T, C)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]  # generation needs only the last position
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        if self.config.parametrization == "mup":
            # μP's output multiplier 1/m (TP5 Table 8; Microsoft mup's MuSharedReadout), not a zero or 1/m-std
            # readout: lm_head shares its matrix with wte, which must keep its O(1) init and unscaled learning rate
            # as an input embedding; a multiplier in the forward leaves the shared matrix alone. Applied to the
            # (B, T, C) hidden states rather than the (B, T, V) logits: the same product, V / C times cheaper.
            hidden_states = hidden_states * self.config.output_multiplier
        logits = self.lm_head(hidden_states)  # (B, T, V)

        loss = z_term = None
        if labels is not None or shift_labels is not None:
            targets = shift_labels if shift_labels is not None else shift_for_next_token(labels)  # (B, T)
            num_items = kwargs.get("num_items_in_batch")  # HF Trainer-style accumulation: sum / tokens of all steps
            if z_loss:
                # PaLM's auxiliary loss w * log^2 Z keeps the softmax normaliser near 1 (logits from drifting).
                loss, z_term = next_token_loss_with_z(logits, targets, z_loss)
            elif num_items is not None:
                loss = next_token_loss(logits, targets, reduction="sum") / num_items
            else:
                loss = next_token_loss(logits, targets)
        return _with_cache_field(
            GPTCausalLMOutput, outputs.cache if hasattr(outputs, "cache") else outputs.past_key_values,
            loss=loss, logits=logits, z_loss=z_term,
        )


__all__ = ["GPTForCausalLM", "GPTModel", "GPTPreTrainedModel"]
