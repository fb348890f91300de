"""AdamW with GPT-2's weight-decay split (or Muon for the hidden matrices plus AdamW for the rest), and the warmup +
cosine learning-rate schedule."""

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


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The 2-D weights inside the transformer blocks: what Muon optimizes. Embeddings, the tied head, biases and
    LayerNorm gains stay on AdamW (Muon orthogonalizes a matrix's update; for an embedding table, whose rows are
    looked up, not multiplied, that has no meaning)."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and p.dim() == 2 and ".h." in f".{name}" and "wte" not in name and "wpe" not in name]


def build_optimizers(model: torch.nn.Module, args, device_type: str = "cpu") -> list[torch.optim.Optimizer]:
    """``[AdamW]`` for ``--optimizer adamw``; ``[AdamW, Muon]`` for ``--optimizer muon``: Muon (``torch.optim.Muon``,
    Nesterov momentum, 5 Newton-Schulz steps, its step scaled to AdamW's RMS with ``adjust_lr_fn="match_rms_adamw"``
    so AdamW-like learning rates apply) on the hidden matrices at ``--muon_lr`` (default ``--max_lr``), AdamW on
    everything else. Each optimizer gets its own schedule (``build_scheduler``)."""
    betas, eps = (args.adam_beta1, args.adam_beta2), args.adam_epsilon
    if args.optimizer == "adamw":
        return [build_optimizer(model, args.max_lr, args.weight_decay, betas, eps, device_type)]
    hidden = {id(p) for p in hidden_matrices(model)}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in hidden]
    adamw_groups = [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": args.weight_decay},
                    {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    adamw = torch.optim.AdamW(adamw_groups, lr=args.max_lr, betas=betas, eps=eps, **({"fused": True} if fused else {}))
    muon = torch.optim.Muon([p for p in model.parameters() if id(p) in hidden], lr=args.muon_lr or args.max_lr,
                            weight_decay=args.weight_decay, momentum=args.muon_momentum, nesterov=True,
                            adjust_lr_fn="match_rms_adamw")
    return [adamw, muon]


class OptimizerView:
    """What callbacks receive as ``optimizer=`` when a run has several optimizers: their parameter groups together
    (read-only use: learning rates and weight decay per parameter)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]


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
    """Per-optimizer-step schedule: every group's own peak learning rate times the warmup + cosine factor (min_lr /
    max_lr sets the floor as a ratio, so a Muon group with its own peak decays in the same shape). It is not passed
    to ``accelerator.prepare`` (a prepared scheduler steps once per process per call); it is registered for
    checkpointing instead."""
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
