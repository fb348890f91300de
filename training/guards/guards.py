"""The guards: what happens to a step that went wrong, decided in one place before its update is applied.

``Guards.judge`` asks, in order, the non-finite policy (``--on_nonfinite``) and the spike guard (``--spike_guard``)
and returns one ``Verdict``: apply the update, skip it, roll the run back, or stop it. ``Guards.count`` then counts
the step if its update was skipped, by the guards or by a callback (the spike_detector's ``skip_updates``), against
the skip budget (``--max_consecutive_skips``, ``--max_skipped_updates``). The loop carries the verdicts out; every
intervention is a record it writes.
"""

from collections.abc import Callable
from pathlib import Path

from .config import GuardArguments
from .policies import NonFinitePolicy, RunStopped, SkipBudget, Verdict
from .spike_guard import SpikeGuard


class Guards:
    """The run's guards (module docstring), their state saved with every checkpoint."""

    def __init__(self, config: GuardArguments):
        self.nonfinite = NonFinitePolicy(config.on_nonfinite)
        self.budget = SkipBudget(config.max_consecutive_skips, config.max_skipped_updates)
        self.spike_guard = SpikeGuard(config.spike_guard_z, config.spike_guard_window, config.spike_guard_patience,
                                      config.spike_guard_rollbacks, config.spike_guard_skip_steps) \
            if config.spike_guard else None

    @property
    def skipped(self) -> int:
        return self.budget.skipped

    def judge(self, step: int, loss: float, grad_norm: float,
              latest_before: Callable[[int], Path | None]) -> Verdict:
        """The verdict on ``step`` (1-based) before its update."""
        verdict = self.nonfinite.judge(step, loss, grad_norm)
        if self.spike_guard is not None and verdict.stop is None:
            verdict = verdict.merge(self.spike_guard.judge(step, loss, grad_norm, latest_before))
        return verdict

    def count(self, step: int, skipped: bool, loss: float, grad_norm: float) -> RunStopped | None:
        """After ``step``: count a skipped update; the error when the run keeps skipping."""
        return self.budget.count(step, skipped, loss, grad_norm)

    def end_note(self, last_step: int) -> str | None:
        return self.spike_guard.end_note(last_step) if self.spike_guard is not None else None

    def state_dict(self) -> dict:
        state = {"SkipBudget": self.budget.state_dict()}
        if self.spike_guard is not None:
            state["SpikeGuard"] = self.spike_guard.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Also a checkpoint of an earlier version, whose guards were callbacks: their states under the same names
        in its ``callbacks``, and the oldest one's skip counts at the top level."""
        if "SkipBudget" in state:
            self.budget.load_state_dict(state["SkipBudget"])
        elif "skipped_updates" in state:
            self.budget.load_state_dict({"skipped": state["skipped_updates"],
                                         "consecutive": state.get("consecutive_skips", 0)})
        if self.spike_guard is not None and "SpikeGuard" in state:
            self.spike_guard.load_state_dict(state["SpikeGuard"])
