"""Training-dynamics callbacks: gradient norms, per-layer gradient/weight and update/weight ratios, histograms,
and a loss-spike detector.

Why both ratios: AdamW divides each step by a running RMS of the gradient, so a small raw gradient (or a small
std(grad)/std(weight)) does not mean small updates. The update-to-weight ratio, std(Δw)/std(w) of the change the
optimizer actually made, is what says whether a layer learns; ~1e-3 per step is the usual healthy region.

All statistics are computed at the optimizer step, from gradients that accumulation and DDP have already
summed/averaged, after clipping: what the optimizer receives. Under DDP they are computed on the main process
alone; with sharded parameters (FSDP2) every process joins the gathers of whole tensors (``distributed.py``) and
the main process computes and logs, so the numbers are those of the whole matrices, never of a shard. The total
gradient norm (``train/grad_norm``) is the one before clipping. Parameter names are the model's own, without
``module.`` / ``_orig_mod.`` / ``transformer.`` prefixes; the tied ``wte``/``lm_head`` matrix appears once.
"""

import math

import torch
from transformers import TrainerCallback

from ..cadence import is_due
from ..distributed import full_tensor, runs_here
from ..layout import Tags
from ..spike_rule import MIN_BAND, SPIKE_Z, Band, grad_norm_spike, loss_spike

_PREFIXES = ("module.", "_orig_mod.", "transformer.")


def clean_name(name: str) -> str:
    """``module._orig_mod.transformer.h.0.mlp.c_fc.weight`` -> ``h.0.mlp.c_fc.weight``."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name.replace("._orig_mod.", ".").replace(".module.", ".")


def named_matrices(model: torch.nn.Module):
    """(clean name, parameter) for parameters with dim >= 2 (weights and embeddings; a LayerNorm gain starts with
    std 0, so a ratio to its std is meaningless). Frozen matrices are included: their update ratio is 0, which is
    how the report can name them."""
    for name, param in model.named_parameters():
        if param.dim() >= 2:
            yield clean_name(name), param


def decay_factors(optimizer) -> dict[int, float]:
    """id(parameter) -> lr * weight_decay of its group: AdamW's decoupled decay moves a weight by exactly
    lr * wd * w in a step, so that share of the update ratio is known without measuring it."""
    if optimizer is None:
        return {}
    return {id(p): group["lr"] * group.get("weight_decay", 0.0) for group in optimizer.param_groups
            for p in group["params"]}


def block_of(name: str) -> str:
    """``h.3.attn.c_proj.weight`` -> ``h.3``; embeddings and ``ln_f`` are their own group."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "h" else parts[0]


def measured(state, every: int) -> bool:
    """Is the optimizer step now in progress (``global_step + 1``) one to measure? The first always is."""
    return is_due(state.global_step + 1, every, first=True)


class GradNormCallback(TrainerCallback):
    """Fraction of steps clipped (every step) and per-block / per-parameter gradient norms (at a cadence)."""

    def __init__(self, every: int = 25):
        self.every = every
        self.steps = 0
        self.clipped = 0

    def on_pre_optimizer_step(self, args, state, control, grad_norm=None, logger=None, model=None, **kwargs):
        if grad_norm is None or not math.isfinite(grad_norm) or logger is None:
            return
        self.steps += 1
        clipped = args.grad_clip > 0 and grad_norm > args.grad_clip
        self.clipped += int(clipped)
        logger.add_step_metrics({Tags.TRAIN_CLIPPED_FRACTION: self.clipped / self.steps,
                                 Tags.TRAIN_CLIPPED: float(clipped)})
        if measured(state, self.every) and runs_here(model, state.is_world_process_zero):
            norms = self.layer_norms(model)  # every process gathers when sharded
            if state.is_world_process_zero:
                logger.log_metrics(norms, step=state.global_step + 1)

    @staticmethod
    def layer_norms(model: torch.nn.Module) -> dict[str, float]:
        metrics, blocks = {}, {}
        for name, param in model.named_parameters():
            if param.grad is None:
                continue
            name = clean_name(name)
            squared = full_tensor(param.grad.detach()).float().pow(2).sum()
            metrics[Tags.GRAD_NORM_PARAM + name] = squared.sqrt().item()
            blocks[block_of(name)] = blocks.get(block_of(name), 0.0) + squared.item()
        metrics.update({Tags.GRAD_NORM_BLOCK + block: math.sqrt(value) for block, value in blocks.items()})
        return metrics

    def state_dict(self):
        return {"steps": self.steps, "clipped": self.clipped}

    def load_state_dict(self, state):
        self.steps, self.clipped = state["steps"], state["clipped"]


class LayerRatioCallback(TrainerCallback):
    """Per weight matrix, at the cadence: std(grad)/std(w) (the seed's ratio, of the clipped gradient), the weight's
    RMS, and the update ratio std(Δw)/std(w) split into what AdamW's decoupled weight decay moved (exactly
    lr * wd) and what the gradients moved: std(Δw + lr*wd*w)/std(w).

    A copy of the weights is taken only on measured steps, just before the optimizer step, and freed after it.
    """

    def __init__(self, every: int = 25):
        self.every = every
        self._before: dict[str, torch.Tensor] | None = None
        self._decay: dict[str, float] = {}

    def on_pre_optimizer_step(self, args, state, control, logger=None, model=None, optimizer=None, **kwargs):
        self._before = None
        if logger is None or not measured(state, self.every) or not runs_here(model, state.is_world_process_zero):
            return
        metrics, before, factors = {}, {}, decay_factors(optimizer)
        self._decay = {}
        for name, param in named_matrices(model):
            weight = full_tensor(param.detach()).float()
            if param.grad is not None:
                grad = full_tensor(param.grad.detach()).float()
                metrics[Tags.GRAD_RATIO + name] = (grad.std() / weight.std()).item()
            metrics[Tags.WEIGHT_RMS + name] = weight.pow(2).mean().sqrt().item()
            # A parameter without a gradient is skipped by AdamW entirely (no decay either).
            self._decay[name] = factors.get(id(param), 0.0) if param.grad is not None else 0.0
            before[name] = weight.clone()
        self._before = before
        if state.is_world_process_zero:
            logger.log_metrics(metrics, step=state.global_step + 1)

    def on_optimizer_step(self, args, state, control, logger=None, model=None, **kwargs):
        if self._before is None:
            return
        metrics = {}
        for name, param in named_matrices(model):
            if name not in self._before:
                continue
            before, decay = self._before[name], self._decay.get(name, 0.0)
            delta = full_tensor(param.detach()).float() - before
            metrics[Tags.UPDATE_RATIO + name] = (delta.std() / before.std()).item()
            metrics[Tags.UPDATE_RATIO_GRAD + name] = ((delta + decay * before).std() / before.std()).item()
            metrics[Tags.UPDATE_RATIO_DECAY + name] = decay
        self._before = None
        if state.is_world_process_zero:
            logger.log_metrics(metrics, step=state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        self._before = None  # a skipped update never reached on_optimizer_step


class HistogramCallback(TrainerCallback):
    """TensorBoard histograms of weights, gradients and updates per weight matrix, every ``every`` steps."""

    def __init__(self, every: int = 250):
        self.every = every
        self._before = None

    def on_pre_optimizer_step(self, args, state, control, logger=None, model=None, **kwargs):
        self._before = None
        if logger is None or not measured(state, self.every) or not runs_here(model, state.is_world_process_zero):
            return
        step, main = state.global_step + 1, state.is_world_process_zero
        self._before = {}
        for name, param in named_matrices(model):
            weight = full_tensor(param.detach()).float()
            grad = full_tensor(param.grad.detach()) if param.grad is not None else None
            if main:
                logger.log_histogram(Tags.WEIGHTS + name, weight, step)
                if grad is not None:
                    logger.log_histogram(Tags.GRADIENTS + name, grad, step)
            self._before[name] = weight.clone()

    def on_optimizer_step(self, args, state, control, logger=None, model=None, **kwargs):
        if self._before is None:
            return
        for name, param in named_matrices(model):
            update = full_tensor(param.detach()).float() - self._before[name]
            if state.is_world_process_zero:
                logger.log_histogram(Tags.UPDATES + name, update, state.global_step + 1)
        self._before = None


class SpikeDetectorCallback(TrainerCallback):
    """Flags steps whose loss or gradient norm is a spike by the project's one rule (``training/spike_rule.py``: an
    outlier against the run's own batch-to-batch noise, more than ``z_threshold`` robust deviations above where the
    band expects it and at least 5% above the loss's level, or twice the gradient norm's); with ``skip_updates`` the
    optimizer step of such a step is skipped (and the value is kept out of the band). The report judges spikes with
    the same thresholds after the fact, seeing both sides of each step, and lists this callback's flags beside its
    own. (For skipping spikes with escalation, see --spike_guard.)"""

    def __init__(self, window: int = 50, z_threshold: float = SPIKE_Z, skip_updates: bool = False,
                 min_history: int = MIN_BAND):
        self.window, self.z_threshold = window, z_threshold
        self.skip_updates, self.min_history = skip_updates, max(MIN_BAND, min_history)
        self.losses, self.norms = Band(window), Band(window)
        self.spikes: list[dict] = []

    def on_pre_optimizer_step(self, args, state, control, loss=None, grad_norm=None, logger=None, **kwargs):
        if loss is None or grad_norm is None or not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return
        log_norm = math.log(max(grad_norm, 1e-30))
        ready = len(self.losses) >= self.min_history
        (loss_out, z_loss), (norm_out, z_norm) = ((loss_spike(self.losses, loss, self.z_threshold),
                                                   grad_norm_spike(self.norms, log_norm, self.z_threshold))
                                                  if ready else ((False, 0.0), (False, 0.0)))
        spike = loss_out or norm_out
        if spike:
            self.spikes.append({"step": state.global_step + 1, "loss": loss, "grad_norm": grad_norm,
                                "loss_z": z_loss, "grad_norm_z": z_norm, "skipped": self.skip_updates})
            control.should_skip_update = control.should_skip_update or self.skip_updates
        if not (spike and self.skip_updates):  # a skipped outlier does not shift the baseline
            self.losses.accept(loss)
            self.norms.accept(log_norm)
        if logger is not None:
            logger.add_step_metrics({Tags.SPIKE_LOSS_Z: z_loss, Tags.SPIKE_GRAD_NORM_Z: z_norm,
                                     Tags.SPIKE_IS_SPIKE: float(spike), Tags.SPIKE_COUNT: float(len(self.spikes))})
        return control

    def state_dict(self):
        return {"loss_band": self.losses.state_dict(), "norm_band": self.norms.state_dict(),
                "spikes": list(self.spikes)}

    def load_state_dict(self, state):
        if "loss_band" in state:
            self.losses.load_state_dict(state["loss_band"])
            self.norms.load_state_dict(state["norm_band"])
        else:  # a checkpoint of an older version kept the raw trailing values: rebuild the bands from them
            for loss, norm in zip(state["losses"], state["norms"]):
                self.losses.accept(loss)
                self.norms.accept(math.log(max(norm, 1e-30)))
        self.spikes = list(state["spikes"])
