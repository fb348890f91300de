"""Learning-rate schedules as a multiplier of each optimizer's peak rate, and how they change mid-run.

Every schedule is: a linear warmup to the peak, the peak held until the decay starts, a decay of some shape to the
floor (``min_lr / max_lr``) at ``max_steps``. A kind says only where its decay starts, how long it lasts and in
which shape (``ScheduleKind.plan``); the registry ``SCHEDULES`` is the one list every choice reads (the
``--lr_schedule`` option and its help, the forecast's ``--schedule``, the sweep presets' validation), so a new kind
is one entry here. ``DECAY_SHAPES`` is the same for the decay's shape.

- ``cosine``: build-nanogpt's ``get_lr``: warmup, then half a cosine from the peak to ``min_lr`` at ``max_steps``.
- ``linear``: warmup, then a straight line from the peak to ``min_lr`` at ``max_steps``.
- ``wsd``: warmup-stable-decay (Hägele et al. 2024, arXiv 2405.18392): warmup, the peak held, then a cool-down over
  the last ``decay_steps`` (``1-sqrt`` by default, their best). A stable-phase checkpoint can be extended (the
  stable phase just goes on) or cooled down at once (``scripts/cooldown.py``), which lets one run serve several
  horizons.

A schedule can be re-planned at a step (an ``Anchor``): from there it decays from the factor it had reached to the
floor at ``max_steps``. That is how a resumed cosine run whose ``max_steps`` grew continues smoothly instead of
jumping back up the new cosine, and how a cool-down branch starts from wherever the run was.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class DecayShape:
    """How much of the distance from the start to the floor is left at a progress p in [0, 1]: ``scalar`` for one
    step (the loop), ``vector`` for many (forecasts); the two give the same values."""

    scalar: Callable[[float], float]
    vector: Callable[[np.ndarray], np.ndarray]


DECAY_SHAPES: dict[str, DecayShape] = {
    "1-sqrt": DecayShape(lambda p: 1.0 - math.sqrt(p), lambda p: 1.0 - np.sqrt(p)),
    "linear": DecayShape(lambda p: 1.0 - p, lambda p: 1.0 - p),
    "cosine": DecayShape(lambda p: 0.5 * (1.0 + math.cos(math.pi * p)), lambda p: 0.5 * (1.0 + np.cos(np.pi * p))),
}


@dataclass(frozen=True)
class ScheduleKind:
    """One kind of schedule: its one-line description (``--help``) and its ``plan``, (the first step of the decay,
    its length in steps, its shape) for a ``Schedule``. ``uses_decay_steps``: the decay's length comes from
    ``--decay_steps`` / ``--decay_fraction`` (and its shape from ``--decay_shape``)."""

    doc: str
    plan: Callable[["Schedule"], tuple[int, int, str]]
    uses_decay_steps: bool = False


SCHEDULES: dict[str, ScheduleKind] = {
    "cosine": ScheduleKind("build-nanogpt's: warmup, then half a cosine from max_lr to min_lr at max_steps",
                           lambda s: (s.warmup_steps, s.max_steps - s.warmup_steps, "cosine")),
    "wsd": ScheduleKind("warmup-stable-decay (Hagele et al. 2024): warmup, max_lr held, then a cool-down over the last "
                        "--decay_fraction of the steps (or --decay_steps) in --decay_shape; a stable-phase checkpoint "
                        "can be extended or cooled down with scripts/cooldown.py",
                        lambda s: (s.max_steps - s.decay_steps, s.decay_steps, s.decay_shape), uses_decay_steps=True),
    "linear": ScheduleKind("warmup, then a straight line from max_lr to min_lr at max_steps (BERT's and "
                           "transformers' get_linear_schedule_with_warmup, with a floor)",
                           lambda s: (s.warmup_steps, s.max_steps - s.warmup_steps, "linear")),
}


def schedule_help() -> str:
    return "; ".join(f"{name}: {kind.doc}" for name, kind in SCHEDULES.items())


def decay(start: float, floor: float, progress: float, shape: str) -> float:
    """From ``start`` (progress 0) to ``floor`` (progress 1) in the given shape."""
    if shape not in DECAY_SHAPES:
        raise ConfigError(f"Unknown decay shape {shape!r}; use one of {', '.join(DECAY_SHAPES)}.")
    return floor + (start - floor) * DECAY_SHAPES[shape].scalar(min(max(progress, 0.0), 1.0))


def decay_array(start, floor: float, progress: np.ndarray, shape: str) -> np.ndarray:
    """``decay`` for many steps at once (forecasts evaluate long schedules)."""
    return floor + (start - floor) * DECAY_SHAPES[shape].vector(np.clip(progress, 0.0, 1.0))


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
    decay_steps: int = 0  # kinds that use it (wsd): length of the final cool-down
    decay_shape: str = "1-sqrt"
    anchor: Anchor | None = None

    @classmethod
    def from_args(cls, args, anchor: Anchor | None = None) -> "Schedule":
        """The schedule that arguments describe: an object with the schedule's and the learning rates' fields (a
        ``RunConfig``'s flat view), or a dict of them (a saved configuration)."""
        get = args.get if isinstance(args, dict) else lambda name, default=None: getattr(args, name, default)
        max_lr, min_lr, max_steps = get("max_lr"), get("min_lr"), get("max_steps")
        kind = get("lr_schedule", "cosine") or "cosine"
        if kind not in SCHEDULES:
            raise ConfigError(f"Unknown learning-rate schedule {kind!r}; use one of {', '.join(SCHEDULES)}.")
        decay_steps = get("decay_steps") or round((get("decay_fraction", 0.2) or 0.0) * max_steps)
        return cls(kind=kind, warmup_steps=get("warmup_steps"), max_steps=max_steps,
                   min_ratio=min_lr / max_lr if max_lr else 0.0,
                   decay_steps=min(decay_steps, max_steps) if SCHEDULES[kind].uses_decay_steps else 0,
                   decay_shape=get("decay_shape", "1-sqrt") or "1-sqrt", anchor=anchor)

    @property
    def plan(self) -> tuple[int, int, str]:
        """(the first step of the decay, its length, its shape): the kind's own."""
        return SCHEDULES[self.kind].plan(self)

    @property
    def decay_start(self) -> int:
        """The first step of the decay (after warmup, and after the held peak of kinds that hold it)."""
        return self.plan[0]

    @property
    def end_factor(self) -> float:
        """Where the run stands at and after ``max_steps``: the floor after its decay; still the peak when the kind
        has no decay left (a purely stable WSD run, ``decay_steps`` 0: its last checkpoint is a place to extend or
        cool down from, at the rate it trained with, not at the floor it never reached)."""
        _, length, _ = self.plan
        return self.min_ratio if length > 0 or not SCHEDULES[self.kind].uses_decay_steps else 1.0

    def factor(self, step: int) -> float:
        if self.anchor is not None and step >= self.anchor.step:
            span = max(1, self.max_steps - self.anchor.step)
            return decay(self.anchor.factor, self.min_ratio, (step - self.anchor.step) / span, self.anchor.shape)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step >= self.max_steps:
            return self.end_factor
        start, length, shape = self.plan
        if step < start:
            return 1.0
        return decay(1.0, self.min_ratio, (step - start) / max(1, length), shape)

    def factors(self, count: int | None = None) -> np.ndarray:
        """``factor`` of steps 0..count-1 (default: max_steps), vectorised; equal to ``factor`` step by step."""
        steps = np.arange(self.max_steps if count is None else count, dtype=float)
        start, length, shape = self.plan
        out = np.ones_like(steps)
        decaying = steps >= start
        out[decaying] = decay_array(1.0, self.min_ratio, (steps[decaying] - start) / max(1, length), shape)
        out[steps >= self.max_steps] = self.end_factor
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

        Unchanged shape: keep ``old``'s anchor. Changed shape: a run still before its (new) decay simply goes on at
        the peak; otherwise, past warmup, decay from the factor ``old`` had reached at ``step`` (no jump)."""
        if self.shape_of() == old.shape_of():
            return replace(self, anchor=old.anchor)
        if step < self.warmup_steps or step < self.decay_start:
            return replace(self, anchor=None)
        # Never below the (new) floor: a decay that started under it would climb back up to it.
        return replace(self, anchor=Anchor(step, max(old.factor(step), self.min_ratio), self.plan[2]))

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
        start, _, shape = self.plan
        held = f", the peak until step {start}" if start > self.warmup_steps else ""
        return (f"{self.kind}: warmup {self.warmup_steps}{held}, {shape} decay to {self.min_ratio:.4g}x at step "
                f"{self.max_steps}")


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
