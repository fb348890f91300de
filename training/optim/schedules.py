"""Learning-rate schedules as a multiplier of each optimizer's peak rate, and how they change mid-run.

``cosine`` is build-nanogpt's ``get_lr``: linear warmup, half a cosine from the peak to ``min_lr`` at ``max_steps``.
``wsd`` is warmup-stable-decay (Hägele et al. 2024, arXiv 2405.18392): linear warmup, the peak held constant, then a
cool-down over the last ``decay_steps`` (a ``1-sqrt`` shape by default, their best) to ``min_lr``. A stable-phase
checkpoint of a WSD run can be extended (more steps: the stable phase just goes on) or cooled down at once (a
branch that decays from that step), which is what lets one run serve several horizons.

A schedule can be re-planned at a step (an ``Anchor``): from there it decays from the factor it had reached to the
floor at ``max_steps``. That is how a resumed cosine run whose ``max_steps`` grew continues smoothly instead of
jumping back up the new cosine, and how a cool-down branch starts from wherever the run was.
"""

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

SCHEDULES = ("cosine", "wsd")
DECAY_SHAPES = ("1-sqrt", "linear", "cosine")


def decay(start: float, floor: float, progress: float, shape: str) -> float:
    """From ``start`` (progress 0) to ``floor`` (progress 1) in the given shape."""
    p = min(max(progress, 0.0), 1.0)
    if shape == "1-sqrt":
        kept = 1.0 - math.sqrt(p)
    elif shape == "linear":
        kept = 1.0 - p
    elif shape == "cosine":
        kept = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ValueError(f"Unknown decay shape {shape!r}; use one of {', '.join(DECAY_SHAPES)}.")
    return floor + (start - floor) * kept


def decay_array(start, floor: float, progress: np.ndarray, shape: str) -> np.ndarray:
    """``decay`` for many steps at once (forecasts evaluate schedules of a million steps)."""
    p = np.clip(progress, 0.0, 1.0)
    kept = {"1-sqrt": lambda: 1.0 - np.sqrt(p), "linear": lambda: 1.0 - p,
            "cosine": lambda: 0.5 * (1.0 + np.cos(np.pi * p))}[shape]()
    return floor + (start - floor) * kept


@dataclass(frozen=True)
class Anchor:
    """From ``step`` on, decay from ``factor`` to the floor at ``max_steps`` in ``shape``."""

    step: int
    factor: float
    shape: str


@dataclass(frozen=True)
class Schedule:
    """The multiplier of the peak learning rate at each optimizer step (0-based, the step about to be taken)."""

    kind: str
    warmup_steps: int
    max_steps: int
    min_ratio: float
    decay_steps: int = 0  # wsd: length of the final cool-down
    decay_shape: str = "1-sqrt"
    anchor: Anchor | None = None

    @classmethod
    def from_args(cls, args, anchor: Anchor | None = None) -> "Schedule":
        """The schedule ``TrainArguments`` (or a saved config's ``train`` section, as a dict) describe."""
        get = args.get if isinstance(args, dict) else lambda name, default=None: getattr(args, name, default)
        max_lr, min_lr, max_steps = get("max_lr"), get("min_lr"), get("max_steps")
        kind = get("lr_schedule", "cosine") or "cosine"
        decay_steps = get("decay_steps") or round((get("decay_fraction", 0.2) or 0.0) * max_steps)
        return cls(kind=kind, warmup_steps=get("warmup_steps"), max_steps=max_steps,
                   min_ratio=min_lr / max_lr if max_lr else 0.0,
                   decay_steps=min(decay_steps, max_steps) if kind == "wsd" else 0,
                   decay_shape=get("decay_shape", "1-sqrt") or "1-sqrt", anchor=anchor)

    @property
    def decay_start(self) -> int:
        """The first step of the decay (wsd), or of the cosine (after warmup)."""
        return self.max_steps - self.decay_steps if self.kind == "wsd" else self.warmup_steps

    @property
    def end_factor(self) -> float:
        """Where a WSD run stands at and after ``max_steps``: the floor after its cool-down, still the peak when it has
        none (``decay_steps`` 0, a purely stable run: its last checkpoint is a place to extend or cool down from, at the
        rate it trained with, not at the floor it never reached)."""
        return self.min_ratio if self.decay_steps > 0 else 1.0

    def factor(self, step: int) -> float:
        if self.anchor is not None and step >= self.anchor.step:
            span = max(1, self.max_steps - self.anchor.step)
            return decay(self.anchor.factor, self.min_ratio, (step - self.anchor.step) / span, self.anchor.shape)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step >= self.max_steps and self.kind == "wsd":
            return self.end_factor
        if self.kind == "wsd":
            if step < self.decay_start:
                return 1.0
            return decay(1.0, self.min_ratio, (step - self.decay_start) / max(1, self.decay_steps), self.decay_shape)
        if step > self.max_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return decay(1.0, self.min_ratio, progress, "cosine")

    def factors(self, count: int | None = None) -> np.ndarray:
        """``factor`` of steps 0..count-1 (default: max_steps), vectorised; equal to ``factor`` step by step."""
        steps = np.arange(self.max_steps if count is None else count, dtype=float)
        out = np.empty_like(steps)
        if self.kind == "wsd":
            out[:] = 1.0
            decaying = steps >= self.decay_start
            out[decaying] = decay_array(1.0, self.min_ratio, (steps[decaying] - self.decay_start) /
                                        max(1, self.decay_steps), self.decay_shape)
            out[steps >= self.max_steps] = self.end_factor
        else:
            progress = (steps - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
            out[:] = decay_array(1.0, self.min_ratio, progress, "cosine")
            out[steps > self.max_steps] = self.min_ratio
        warming = steps < self.warmup_steps
        out[warming] = (steps[warming] + 1) / self.warmup_steps
        if self.anchor is not None:
            after = steps >= self.anchor.step
            span = max(1, self.max_steps - self.anchor.step)
            out[after] = decay_array(self.anchor.factor, self.min_ratio, (steps[after] - self.anchor.step) / span,
                                     self.anchor.shape)
        return out

    def shape_of(self) -> dict:
        """What defines the curve (not the anchor): a change of any of these mid-run re-plans the schedule."""
        return {k: v for k, v in asdict(self).items() if k not in ("anchor", "min_ratio")}

    def replanned(self, old: "Schedule", step: int) -> "Schedule":
        """This (new) schedule, taking over at ``step`` from ``old`` (the one the checkpoint was trained with).

        Unchanged shape: keep ``old``'s anchor. Changed shape: a WSD run still before its (new) decay simply goes on
        at the peak; otherwise, past warmup, decay from the factor ``old`` had reached at ``step`` (no jump)."""
        if self.shape_of() == old.shape_of():
            return replace(self, anchor=old.anchor)
        if step < self.warmup_steps:
            return replace(self, anchor=None)
        if self.kind == "wsd" and step < self.decay_start:
            return replace(self, anchor=None)
        shape = "cosine" if self.kind == "cosine" else self.decay_shape
        # Never below the (new) floor: a decay that started under it would climb back up to it.
        return replace(self, anchor=Anchor(step, max(old.factor(step), self.min_ratio), shape))

    def cooled_down(self, step: int, steps: int, shape: str) -> "Schedule":
        """A cool-down of ``steps`` steps from ``step``: decay from this schedule's factor there to the floor."""
        return replace(self, max_steps=step + steps, anchor=Anchor(step, self.factor(step), shape))

    def describe(self) -> str:
        if self.anchor is not None and self.anchor.factor <= self.min_ratio:
            return (f"re-planned at step {self.anchor.step}: held at the floor ({self.min_ratio:.4g}x the peak) until "
                    f"step {self.max_steps}")
        if self.anchor is not None:
            return (f"re-planned at step {self.anchor.step}: {self.anchor.shape} decay from {self.anchor.factor:.4g}x "
                    f"the peak to {self.min_ratio:.4g}x at step {self.max_steps}")
        if self.kind == "wsd":
            return (f"wsd: warmup {self.warmup_steps}, the peak until step {self.decay_start}, {self.decay_shape} "
                    f"decay to {self.min_ratio:.4g}x at step {self.max_steps}")
        return f"cosine: warmup {self.warmup_steps}, decay to {self.min_ratio:.4g}x at step {self.max_steps}"


def anchor_to_dict(anchor: Anchor | None) -> dict | None:
    return asdict(anchor) if anchor is not None else None


def anchor_from_dict(raw: dict | None) -> Anchor | None:
    return Anchor(**raw) if raw else None


def warmup_cosine_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """build-nanogpt's ``get_lr`` as a multiplier of max_lr at 0-based ``step``: linear warmup from
    max_lr/warmup_steps to max_lr, then half a cosine to min_lr at ``max_steps``, then min_lr. (transformers' warmup
    starts at 0, wasting the first step, and its ``_lr_rate`` variant shifts the cosine by one step, so neither
    reproduces the seed's formula.)"""
    return Schedule("cosine", warmup_steps, max_steps, min_ratio).factor(step)
