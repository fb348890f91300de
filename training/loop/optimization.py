"""AdamW with GPT-2's weight-decay split, and the warmup + cosine learning-rate schedule."""

import inspect
import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings (dim >= 2), not biases or LayerNorm gains (build-nanogpt, GPT-3 paper).
    ``named_parameters`` de-duplicates, so the tied wte/lm_head matrix appears once."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95), eps: float = 1e-8,
                    device_type: str = "cpu") -> torch.optim.AdamW:
    """AdamW; the fused CUDA kernel when on a GPU (one launch for all parameters instead of a loop)."""
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps,
                             **({"fused": True} if fused else {}))


def warmup_cosine_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Multiplier of max_lr at optimizer step ``step`` (0-based), exactly build-nanogpt's ``get_lr``:
    linear warmup from max_lr/warmup_steps to max_lr over ``warmup_steps`` steps, then half a cosine from max_lr to
    min_lr at ``max_steps``, then min_lr. (transformers' warmup starts at 0, wasting the first step, and its
    ``_lr_rate`` variant shifts the cosine by one step, so neither reproduces the seed's formula.)"""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step > max_steps:
        return min_ratio
    decay = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * decay)) * (1.0 - min_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, max_lr: float,
                    min_lr: float) -> LambdaLR:
    """Per-optimizer-step schedule. It is not passed to ``accelerator.prepare`` (a prepared scheduler steps once
    per process per call); it is registered for checkpointing instead."""
    factor = partial(warmup_cosine_factor, warmup_steps=warmup_steps, max_steps=max_steps,
                     min_ratio=min_lr / max_lr if max_lr else 0.0)
    return LambdaLR(optimizer, factor)


def model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls of forward+backward plus attention's 12 * L * C * T
    (PaLM appendix B, as nanoGPT's estimate_mfu). N excludes the position table, which does no matmul."""
    config = model.config
    params = sum(p.numel() for p in model.parameters()) - config.n_positions * config.n_embd
    return 6 * params + 12 * config.n_layer * config.n_embd * seq_len


_PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10G": 125e12, "L4": 121e12, "4090": 165e12}


def device_peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of known GPUs (for MFU); None when unknown or on CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in _PEAK_BF16_FLOPS.items() if key in name), None)
