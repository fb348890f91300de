"""The guards' verdicts and the two simple policies: what happens to a step whose loss or gradient norm went wrong.

``NonFinitePolicy`` skips or stops on a NaN/inf loss or gradient norm; ``SkipBudget`` stops a run that keeps
skipping updates (for any reason: NaN/inf, the spike detector, the spike guard). A policy that stops the run returns a
``RunStopped`` error; the loop adds where the last good checkpoint is and raises it. ``guards.Guards`` composes them
with the spike guard.
"""

import math
from dataclasses import dataclass, field


class RunStopped(RuntimeError):
    """A policy stopped the run; ``what`` says why, ``advice`` what to do, ``located`` adds the checkpoint."""

    def __init__(self, what: str, advice: str = ""):
        super().__init__(what)
        self.what, self.advice = what, advice

    def located(self, where: str) -> "RunStopped":
        error = type(self)(self.what, self.advice)
        error.args = (f"{self.what}; stopping, {where}. {self.advice}".rstrip(),)
        return error


class NonFiniteLossError(RunStopped):
    """The loss or gradient norm became NaN/inf and the run was told to stop."""


class TooManySkippedUpdates(NonFiniteLossError):
    """Updates were skipped (NaN/inf or spikes) more often than --max_consecutive_skips / --max_skipped_updates."""


@dataclass
class Verdict:
    """What the guards decided about a step before its update: skip it, stop the run, or roll it back."""

    skip: bool = False
    stop: RunStopped | None = None
    rollback: dict | None = None  # {"checkpoint": path, "to_step": n, "skip_steps": n}
    records: list[dict] = field(default_factory=list)  # the spike guard's new interventions
    status: list[tuple[int, float, str]] = field(default_factory=list)  # (step, armed 0/1, message): the guard's

    def merge(self, other: "Verdict") -> "Verdict":
        return Verdict(self.skip or other.skip, self.stop or other.stop, self.rollback or other.rollback,
                       self.records + other.records, self.status + other.status)


class NonFinitePolicy:
    """A NaN/inf loss or gradient norm: skip the update (``on_nonfinite="skip"``) or stop before it is applied."""

    def __init__(self, on_nonfinite: str = "stop"):
        self.on_nonfinite = on_nonfinite

    def judge(self, step: int, loss: float, grad_norm: float) -> Verdict:
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return Verdict()
        if self.on_nonfinite == "skip":
            return Verdict(skip=True)
        return Verdict(stop=NonFiniteLossError(
            f"Step {step}: loss={loss}, grad_norm={grad_norm} (not finite)",
            "Resume from it with a lower --max_lr / longer --warmup_steps, or pass --on_nonfinite skip to skip such "
            "updates."))


class SkipBudget:
    """Counts skipped updates and stops a run that skips more than ``max_consecutive`` in a row or ``max_total``
    in all: a run that keeps skipping is not training, however it was told to skip."""

    def __init__(self, max_consecutive: int = 5, max_total: int = 100):
        self.max_consecutive, self.max_total = max_consecutive, max_total
        self.skipped, self.consecutive = 0, 0

    def count(self, step: int, skipped: bool, loss: float, grad_norm: float) -> RunStopped | None:
        """After a step: count it if its update was skipped (by anyone); the error when the budget is spent."""
        if not skipped:
            self.consecutive = 0
            return None
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive > self.max_consecutive or self.skipped > self.max_total:
            return TooManySkippedUpdates(
                f"Step {step}: {self.consecutive} updates skipped in a row, {self.skipped} in total "
                f"(limits --max_consecutive_skips {self.max_consecutive}, --max_skipped_updates {self.max_total}; "
                f"last loss={loss}, grad_norm={grad_norm}): the run is not training",
                "Resume from it with a lower --max_lr or a longer --warmup_steps.")
        return None

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.consecutive = state["skipped"], state["consecutive"]
