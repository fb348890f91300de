"""AdamW with GPT-2's weight-decay split (or Muon for the hidden matrices plus AdamW for the rest), the schedulers
that drive them (``schedules.py`` holds the curves), and their hyperparameters re-applied after a resume."""

import inspect

import torch
from torch.optim.lr_scheduler import LambdaLR

from .schedules import Schedule


def mup_width_mult(model: torch.nn.Module) -> float | None:
    """m = n_embd / mup_base_width of a μP model (``parametrization="mup"``); None for the standard one."""
    config = getattr(model, "config", None)
    if getattr(config, "parametrization", "sp") != "mup":
        return None
    return config.mup_width_mult


def scaled_group(params: list, weight_decay: float, lr_scale: float) -> dict:
    """A parameter group whose learning rate is ``lr_scale`` times the schedule's (``build_scheduler`` reads
    ``lr_scale``). Its weight decay is divided by ``lr_scale`` so that lr * wd, the fraction by which torch's
    decoupled decay shrinks a weight per step, is the base width's at every width: Microsoft mup's ``MuAdam``
    default (``decoupled_wd=False``: weight_decay *= width_mult for an optimizer that multiplies wd by lr, as
    torch's AdamW and Muon do); the decay's time scale 1/(lr * wd) steps is what transfers (Wang & Aitchison 2024,
    arXiv 2405.13698). ``weight_decay_scale`` lets ``apply_hyperparameters`` re-apply it after a resume."""
    decay_scale = 1.0 / lr_scale
    return {"params": params, "weight_decay": weight_decay * decay_scale, "lr_scale": lr_scale,
            "weight_decay_scale": decay_scale}


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings (dim >= 2), not biases or LayerNorm gains (build-nanogpt, GPT-3 paper).
    ``named_parameters`` de-duplicates, so the tied wte/lm_head matrix appears once.

    Under μP a third group holds the hidden matrices at learning rate x 1/m (TP5 Table 3, Adam: a hidden matrix's
    update is correlated with its input, so its effect on the output grows with fan_in). Embeddings, the tied
    head (its 1/m is the model's output multiplier, TP5 Table 8), biases and gains keep the schedule's rate. The
    unscaled groups come first: group 0 is what ``train/lr`` logs."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    width_mult = mup_width_mult(model)
    if width_mult is None:
        return groups
    hidden = {id(p) for p in hidden_matrices(model)}
    groups[0]["params"] = [p for p in decay if id(p) not in hidden]
    return groups + [scaled_group([p for p in decay if id(p) in hidden], weight_decay, 1.0 / width_mult)]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95), eps: float = 1e-8,
                    device_type: str = "cpu") -> torch.optim.AdamW:
    """AdamW; the fused CUDA kernel when on a GPU (one launch for all parameters instead of a loop)."""
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return at_group_peaks(torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps,
                                            **({"fused": True} if fused else {})), lr)


def at_group_peaks(optimizer: torch.optim.Optimizer, peak_lr: float) -> torch.optim.Optimizer:
    """Set each group's learning rate to its peak (``group_peak``: μP's hidden matrices at ``lr_scale`` times the
    optimizer's), so that the optimizer is right on its own, not only once ``build_scheduler`` has run: a loop that
    drives the rates itself from ``group["lr"]`` (a benchmark, a user's own loop) then trains μP's hidden matrices at
    their scaled rate, not the embeddings' (bench/mup_transfer.py once did, and measured no transfer)."""
    for group in optimizer.param_groups:
        group["lr"] = group_peak(group, peak_lr)
    return optimizer


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The 2-D weights inside the transformer blocks: what Muon optimizes. Embeddings, the tied head, biases and
    LayerNorm gains stay on AdamW (Muon orthogonalizes a matrix's update; for an embedding table, whose rows are
    looked up, not multiplied, that has no meaning)."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and p.dim() == 2 and ".h." in f".{name}" and "wte" not in name and "wpe" not in name]


# Muon under μP. Muon's update O = U V^T (the orthogonalised momentum) has spectral norm 1 whatever the shape, and
# RMS 1/sqrt(max(fan_out, fan_in)). μP asks of a hidden matrix's update a spectral norm proportional to
# sqrt(fan_out / fan_in) (Yang, Simon & Bernstein 2023, "A Spectral Condition for Feature Learning", arXiv
# 2310.17813): width-independent for our hidden matrices, whose aspect ratios (fan_out:fan_in 3:1, 1:1, 4:1, 1:4)
# stay fixed as they widen. Keller Jordan's Muon scaling, lr * sqrt(max(1, fan_out / fan_in)), satisfies it with a
# constant lr. torch's "match_rms_adamw" (Moonshot, "Muon is Scalable for LLM Training", arXiv 2502.16982), which
# this project uses so that AdamW-like rates apply, multiplies by 0.2 * sqrt(max(fan_out, fan_in)) instead: update
# RMS 0.2 * lr at every width, i.e. a spectral norm growing like sqrt(m). Dividing Muon's lr by sqrt(m) restores the
# spectral condition and keeps, at the base width, exactly an sp run's step: effective lr = lr * 0.2 *
# sqrt(max(fan_out, fan_in) at the base width). Essential AI ("Practical Efficiency of Muon for Pretraining", arXiv
# 2505.02222) report that μP transfer holds for Muon on this spectral footing.
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
    matrices = [p for p in model.parameters() if id(p) in hidden]
    width_mult = mup_width_mult(model)
    group = matrices if width_mult is None else [scaled_group(matrices, args.weight_decay, width_mult**-0.5)]
    muon = torch.optim.Muon(group, lr=args.muon_lr or args.max_lr, weight_decay=args.weight_decay,
                            momentum=args.muon_momentum, nesterov=True, adjust_lr_fn="match_rms_adamw")
    return [adamw, at_group_peaks(muon, args.muon_lr or args.max_lr)]


class OptimizerView:
    """What callbacks receive as ``optimizer=`` when a run has several optimizers: their parameter groups together
    (read-only use: learning rates and weight decay per parameter)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]


def peak_lrs(args) -> list[float]:
    """The peak learning rate of each optimizer of ``build_optimizers``: AdamW's, then Muon's."""
    return [args.max_lr] if args.optimizer == "adamw" else [args.max_lr, args.muon_lr or args.max_lr]


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule, peak_lr: float) -> LambdaLR:
    """Per-optimizer-step schedule: the optimizer's peak learning rate times ``schedule.factor`` (min_lr / max_lr
    sets the floor as a ratio, so a Muon group with its own peak decays in the same shape), times a group's
    ``lr_scale`` where it has one (μP's hidden matrices). It is not passed to ``accelerator.prepare`` (a prepared
    scheduler steps once per process per call); it is registered for checkpointing instead, which saves its step
    count."""
    for group in optimizer.param_groups:
        group["initial_lr"] = group_peak(group, peak_lr)
    return LambdaLR(optimizer, schedule.factor)


def group_peak(group: dict, peak_lr: float) -> float:
    """A group's peak learning rate: the optimizer's, scaled for μP's hidden matrices (no key: unscaled)."""
    return peak_lr * group["lr_scale"] if "lr_scale" in group else peak_lr


def schedule_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's learning rate now (what ``train/lr`` logs): group 0's, before any μP ``lr_scale``."""
    group = optimizer.param_groups[0]
    return group["lr"] / group["lr_scale"] if "lr_scale" in group else group["lr"]


def set_schedule(scheduler: LambdaLR, schedule: Schedule, peak_lr: float) -> None:
    """Make ``scheduler`` follow ``schedule`` from its current step with ``peak_lr`` (after a checkpoint restored
    the old peak and step count): every group's learning rate is set for the step about to be taken."""
    scheduler.base_lrs = [group_peak(group, peak_lr) for group in scheduler.optimizer.param_groups]
    scheduler.lr_lambdas = [schedule.factor] * len(scheduler.optimizer.param_groups)
    for group, peak in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["initial_lr"] = peak
        group["lr"] = peak * schedule.factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def apply_hyperparameters(optimizers: list[torch.optim.Optimizer], args) -> None:
    """Set every hyperparameter an optimizer keeps in its parameter groups from ``args`` (a checkpoint restores
    the old ones with the moments): weight decay (on >= 2-D parameters only, times a μP group's
    ``weight_decay_scale``), AdamW's betas and epsilon, Muon's momentum. The learning rate is the schedule's
    (``set_schedule``)."""
    for optimizer in optimizers:
        inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps the optimizer it prepares
        is_muon = type(inner).__name__ == "Muon"
        for group in optimizer.param_groups:
            decays = any(p.dim() >= 2 for p in group["params"])
            group["weight_decay"] = args.weight_decay * group.get("weight_decay_scale", 1.0) if decays else 0.0
            if is_muon:
                group["momentum"] = args.muon_momentum
            else:
                group["betas"] = (args.adam_beta1, args.adam_beta2)
                group["eps"] = args.adam_epsilon
