"""Policies: callbacks that decide what happens to a step that went wrong, by setting ``control``.

``NonFinitePolicy`` skips or stops on a NaN/inf loss or gradient norm; ``SkipBudget`` stops a run that keeps
skipping updates (for any reason: NaN/inf, the spike detector, the spike guard). A policy that stops the run puts a
``RunStopped`` error into ``control.stop_error``; the loop adds where the last good checkpoint is and raises it.
"""

import math

from transformers import TrainerCallback


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


class NonFinitePolicy(TrainerCallback):
    """A NaN/inf loss or gradient norm: skip the update (``on_nonfinite="skip"``) or stop before it is applied."""

    def __init__(self, on_nonfinite: str = "stop"):
        self.on_nonfinite = on_nonfinite

    def on_pre_optimizer_step(self, args, state, control, loss=None, grad_norm=None, **kwargs):
        if loss is None or (math.isfinite(loss) and math.isfinite(grad_norm)):
            return control
        if self.on_nonfinite == "skip":
            control.should_skip_update = True
        else:
            control.stop_error = NonFiniteLossError(
                f"Step {state.global_step + 1}: loss={loss}, grad_norm={grad_norm} (not finite)",
                "Resume from it with a lower --max_lr / longer --warmup_steps, or pass --on_nonfinite skip to skip "
                "such updates.")
        return control


class SkipBudget(TrainerCallback):
    """Counts skipped updates and stops a run that skips more than ``max_consecutive`` in a row or ``max_total``
    in all: a run that keeps skipping is not training, however it was told to skip."""

    def __init__(self, max_consecutive: int = 5, max_total: int = 100):
        self.max_consecutive, self.max_total = max_consecutive, max_total
        self.skipped, self.consecutive = 0, 0
        self.last = None

    def on_pre_optimizer_step(self, args, state, control, loss=None, grad_norm=None, **kwargs):
        self.last = (loss, grad_norm)

    def on_step_end(self, args, state, control, **kwargs):
        if not control.should_skip_update:
            self.consecutive = 0
            return control
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive > self.max_consecutive or self.skipped > self.max_total:
            loss, grad_norm = self.last or (None, None)
            control.stop_error = TooManySkippedUpdates(
                f"Step {state.global_step}: {self.consecutive} updates skipped in a row, {self.skipped} in total "
                f"(limits --max_consecutive_skips {self.max_consecutive}, --max_skipped_updates {self.max_total}; "
                f"last loss={loss}, grad_norm={grad_norm}): the run is not training",
                "Resume from it with a lower --max_lr or a longer --warmup_steps.")
        return control

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.consecutive = state["skipped"], state["consecutive"]
