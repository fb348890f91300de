"""The optimizer's and the schedule's settings (the ``optimizer`` and ``schedule`` sections of a run's YAML)."""

from dataclasses import dataclass

import torch

from ..config_fields import check_types, described, non_negative, raise_problems
from .schedules import DECAY_SHAPES, SCHEDULES, schedule_help

OPTIMIZERS = ("adamw", "muon")


@dataclass
class OptimizerArguments:
    """The optimizer: AdamW (or Muon for the hidden matrices), its learning rates and regularisation."""

    optimizer: str = described("adamw, or muon: torch.optim.Muon for the hidden 2-D weight matrices (scaled to AdamW's "
                               "update RMS) and AdamW for embeddings, the tied head, biases and gains.", default="adamw")
    max_lr: float = described("Peak learning rate, reached after warmup. On resume the schedule follows the current "
                              "value (the change is printed and recorded).", default=6e-4)
    min_lr: float = described("Final learning rate of the decay.", default=6e-5)
    weight_decay: float = described("AdamW weight decay, applied to parameters with dim >= 2 only.", default=0.1)
    adam_beta1: float = described("AdamW beta1.", default=0.9)
    adam_beta2: float = described("AdamW beta2.", default=0.95)
    adam_epsilon: float = described("AdamW epsilon.", default=1e-8)
    muon_lr: float | None = described("With --optimizer muon: peak learning rate of the Muon group (default: max_lr); "
                                      "it follows the same schedule shape down to min_lr/max_lr of it.", default=None)
    muon_momentum: float = described("With --optimizer muon: Muon's (Nesterov) momentum.", default=0.95)
    grad_clip: float = described("Clip the global gradient norm to this value (0 disables clipping).", default=1.0)
    z_loss: float = described("Weight of PaLM's auxiliary z-loss, weight * log^2 Z of the softmax normaliser (e.g. "
                              "1e-4); logged as train/z_loss, train/loss stays the cross-entropy, validation is plain "
                              "cross-entropy. 0 disables it.", default=0.0)

    def __post_init__(self):
        raise_problems("optimizer arguments", check_types(self))
        problems = []
        if self.max_lr <= 0:
            problems.append(f"max_lr must be positive (got {self.max_lr})")
        if self.min_lr < 0:
            problems.append(f"min_lr must be >= 0 (got {self.min_lr})")
        if self.min_lr > self.max_lr:
            problems.append(f"min_lr ({self.min_lr}) is larger than max_lr ({self.max_lr})")
        if self.muon_lr is not None and self.muon_lr <= 0:
            problems.append(f"muon_lr must be positive (got {self.muon_lr})")
        problems += non_negative(self, "weight_decay", "grad_clip", "z_loss", why="; 0 disables it")
        for name in ("adam_beta1", "adam_beta2", "muon_momentum"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.adam_epsilon <= 0:
            problems.append(f"adam_epsilon must be positive (got {self.adam_epsilon})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
            problems.append("optimizer 'muon' needs torch.optim.Muon (torch >= 2.9)")
        if self.optimizer != "muon" and self.muon_lr is not None:
            problems.append(f"muon_lr ({self.muon_lr}) is set but the optimizer is {self.optimizer!r}: it would have "
                            "no effect; drop it or pass --optimizer muon")
        raise_problems("optimizer arguments", problems)


@dataclass
class ScheduleArguments:
    """The learning-rate schedule (training/optim/schedules.py): its kind, warmup, decay, and cool-downs."""

    lr_schedule: str = described(schedule_help() + ".", default="cosine")
    warmup_steps: int = described("Linear warmup steps (from max_lr/warmup_steps up to max_lr).", default=715)
    decay_fraction: float = described("With --lr_schedule wsd: the fraction of max_steps spent cooling down.",
                                      default=0.2)
    decay_steps: int | None = described("With --lr_schedule wsd: cool-down steps (overrides --decay_fraction).",
                                        default=None)
    decay_shape: str = described(f"Shape of the wsd cool-down and of --cooldown_steps: {', '.join(DECAY_SHAPES)} "
                                 "(1-sqrt is Hagele et al.'s best).", default="1-sqrt")
    cooldown_steps: int | None = described(
        "With --resume_from_checkpoint of another run's checkpoint: cool down from the resumed step over this many "
        "steps (max_steps becomes that step + N), as a branch beside the run that records where it came from. "
        "scripts/cooldown.py does this in one command.", default=None)

    def __post_init__(self):
        raise_problems("schedule arguments", check_types(self))
        problems = non_negative(self, "warmup_steps")
        if self.lr_schedule not in SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(SCHEDULES)} (got {self.lr_schedule!r})")
        if self.decay_shape not in DECAY_SHAPES:
            problems.append(f"decay_shape must be one of {', '.join(DECAY_SHAPES)} (got {self.decay_shape!r})")
        if not 0 <= self.decay_fraction <= 1:
            problems.append(f"decay_fraction must be in [0, 1] (got {self.decay_fraction})")
        if self.decay_steps is not None and self.decay_steps < 0:
            problems.append(f"decay_steps must be >= 0 (got {self.decay_steps})")
        if self.cooldown_steps is not None and self.cooldown_steps <= 0:
            problems.append(f"cooldown_steps must be positive (got {self.cooldown_steps})")
        raise_problems("schedule arguments", problems)
