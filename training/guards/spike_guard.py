"""The spike guard (``--spike_guard``): a policy that keeps a run alive through a loss spike, visibly.

Detection is online. From the first step, a loss far above the run's first loss (``FAR_ABOVE_START``) is a
divergence and needs no history; a non-finite loss belongs to ``policies.NonFinitePolicy``. Spikes are judged
against the run's own recent band once it is armed: after ``min_history`` accepted steps (8 by default, the fewest
from which a robust spread means anything; the run says once that it is not yet armed, and says when it arms, on
the console and in TensorBoard as ``spike_guard/armed``). The band's centre is the median of the last
``RECENT`` accepted steps (so a falling loss does not look like a spike, nor the early descent widen the band);
its width is the robust spread (MAD) of how far each accepted step stood from the median of the steps before it,
over the last ``window`` steps: the batch-to-batch noise, not the trend. One spike does not widen the band it is
judged against. The same is done for the logarithm of the gradient norm, which is known before the update and
leads the loss (a step with a huge gradient can wreck the weights while its own loss looks ordinary). A step is a
spike when either stands ``z`` robust standard deviations above its band.

Escalation, with the user's limits:

1. skip the update of a spiking step (the weights never see it);
2. if the loss stays above its band for ``patience`` consecutive steps, the cause is not one batch: roll back to
   the newest checkpoint before the first spiking step and skip the data that followed it (PaLM restarted about
   100 steps before a spike and skipped 200-500 batches). The loop carries it out: the checkpoint is restored,
   the checkpoints after it become an abandoned branch, the data position moves ``skip_steps`` steps' worth of
   batches past the first spiking step, and TensorBoard drops the abandoned steps;
3. after ``max_rollbacks`` rollbacks the cause has survived fresh data and an earlier state: stop, naming every
   step the guard took and the last good checkpoint.

Every intervention is a record (in the verdict; the loop writes it to ``interventions.jsonl`` and TensorBoard)
and a finding in the report; nothing is skipped silently (the objection in pytorch/torchtitan#916). The
escalation state (rollbacks so far, the record) survives the rollback it causes.
"""

import math
import time
from collections.abc import Callable
from pathlib import Path

from ..layout import checkpoint_step
from ..spike_rule import MIN_BAND, Band, grad_norm_spike, loss_spike
from .policies import RunStopped, Verdict

ACTIONS = {"skip": 1.0, "rollback": 2.0, "stop": 3.0}


class SpikeGuardStopped(RunStopped):
    """The guard's rollbacks did not cure the spikes: the cause persists."""


def far_above_start(loss: float, start: float) -> bool:
    """A loss this far above the run's first loss is a divergence whatever the history: more than 20% (at least 2
    nats) above where the run began (10.8 -> 13.0 for a model starting from random weights)."""
    return loss > start + max(2.0, 0.2 * start)


class SpikeGuard:
    """The spike guard's detection and escalation (module docstring); ``judge`` gives its verdict on a step."""

    def __init__(self, z: float = 6.0, window: int = 100, patience: int = 3, max_rollbacks: int = 3,
                 skip_steps: int = 20, min_history: int | None = None):
        self.z, self.window, self.patience = z, window, patience
        self.max_rollbacks, self.skip_steps = max_rollbacks, skip_steps
        self.min_history = max(MIN_BAND, min_history if min_history is not None else MIN_BAND)
        self.loss_band, self.norm_band = Band(window), Band(window)
        self.start_loss: float | None = None  # the run's first finite loss
        self.armed_at: int | None = None  # the step from which spikes are judged against the band
        self.status: list[tuple[int, float, str]] = []  # (step, armed 0/1, message) for the loop to log and say
        self.above = 0  # consecutive steps with the loss above its band
        self.first_spike: int | None = None  # first spiking step of the current episode
        self.rollbacks = 0
        self.interventions: list[dict] = []
        self.pending: list[dict] = []  # new records for the loop to write

    # -- detection and escalation
    @property
    def armed(self) -> bool:
        return self.armed_at is not None

    def judge(self, step: int, loss: float, grad_norm: float, latest_before: Callable[[int], Path | None]) -> Verdict:
        """The verdict on ``step`` before its update: accepted (the band learns it), or skipped, rolled back or
        stopped, with the records and status lines that say so. ``latest_before(step)`` is the newest checkpoint at
        or before a step (where a rollback can go), or None."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return Verdict()  # non-finite steps belong to NonFinitePolicy
        if self.start_loss is None:
            self.start_loss = loss
            self._say(step, 0.0, f"Spike guard: from step {step}, a loss above "
                      f"{self.start_loss + max(2.0, 0.2 * self.start_loss):.4g} (far above the first, "
                      f"{self.start_loss:.4g}) is a divergence; spikes are judged against the run's own band once it "
                      f"has {self.min_history} accepted steps (not armed until then).")
        log_norm = math.log(max(grad_norm, 1e-30))
        if not self.armed and len(self.loss_band) >= self.min_history:
            self.armed_at = step
            self._say(step, 1.0, f"Spike guard: armed at step {step} (band of {len(self.loss_band)} accepted steps).")
        diverged = far_above_start(loss, self.start_loss)
        (loss_out, loss_z), (norm_out, norm_z) = ((loss_spike(self.loss_band, loss, self.z),
                                                   grad_norm_spike(self.norm_band, log_norm, self.z))
                                                  if self.armed else ((False, 0.0), (False, 0.0)))
        loss_high, norm_high = diverged or loss_out, norm_out
        if not (loss_high or norm_high):
            self.above, self.first_spike = 0, None
            self.loss_band.accept(loss)
            self.norm_band.accept(log_norm)
            return self._verdict()
        self.first_spike = self.first_spike or step
        self.above = self.above + 1 if loss_high else 0
        signal = ("loss far above the run's first loss" if diverged and not loss_out else
                  "loss" if loss_high else "gradient norm")
        self._record({"step": step, "action": "skip", "loss": loss, "loss_z": loss_z, "grad_norm": grad_norm,
                      "grad_norm_z": norm_z, "loss_band_centre": self.loss_band.centre, "start_loss": self.start_loss,
                      "signal": signal})
        verdict = Verdict(skip=True)
        if self.above >= self.patience:
            verdict = self._escalate(step, latest_before)
        return self._verdict(verdict)

    def _verdict(self, verdict: Verdict | None = None) -> Verdict:
        """``verdict`` with the records and status lines of this step attached (handed over once)."""
        verdict = verdict or Verdict()
        verdict.records, self.pending = self.pending, []
        verdict.status, self.status = self.status, []
        return verdict

    def _say(self, step: int, armed: float, message: str) -> None:
        self.status.append((step, armed, message))

    def end_note(self, last_step: int) -> str | None:
        """What to say when a run ends before the guard armed (only divergence was watched)."""
        if self.armed or self.start_loss is None:
            return None
        return (f"Note: the run ended at step {last_step}, before the spike guard armed (it needs {self.min_history} "
                "accepted steps): only a divergence far above the first loss was watched for.")

    def _escalate(self, step: int, latest_before: Callable[[int], Path | None]) -> Verdict:
        before = latest_before(self.first_spike - 1)
        if self.rollbacks >= self.max_rollbacks or before is None:
            why = (f"{self.rollbacks} rollback(s) (limit --spike_guard_rollbacks {self.max_rollbacks}) did not "
                   "help: the cause persists with fresh data and an earlier state, so it is not a bad data window"
                   if before is not None else f"there is no checkpoint before step {self.first_spike} to roll back "
                   "to")
            self._record({"step": step, "action": "stop", "reason": why})
            return Verdict(skip=True, stop=SpikeGuardStopped(
                f"Step {step}: the loss stayed above its band for {self.above} steps and {why}. The guard's steps: "
                f"{self.describe()}",
                "Lower --max_lr or lengthen --warmup_steps (see interventions.jsonl and the report)."))
        self.rollbacks += 1
        target = checkpoint_step(before.name)
        resume_at = self.first_spike + self.skip_steps
        skipped = [r["step"] for r in self.interventions if r["action"] == "skip" and r["step"] >= self.first_spike]
        self._record({"step": step, "action": "rollback", "checkpoint": str(before), "to_step": target,
                      "data_resumes_at_step": resume_at, "first_spike": self.first_spike, "skipped_steps": skipped,
                      "reason": f"the loss stayed above its band for {self.above} steps"})
        self.above, self.first_spike = 0, None
        return Verdict(skip=True, rollback={"checkpoint": before, "to_step": target, "skip_steps": resume_at - target})

    def _record(self, record: dict) -> None:
        record["time"] = time.time()  # orders the record among changes.jsonl's (which carry theirs)
        self.interventions.append(record)
        self.pending.append(record)

    def describe(self) -> str:
        parts = []
        for r in self.interventions:
            if r["action"] == "skip":
                z = f", z {r['loss_z']:.1f}" if r.get("loss_z") else ""
                parts.append(f"step {r['step']} skipped ({r['signal']}, loss {r['loss']:.4g}{z})")
            elif r["action"] == "rollback":
                parts.append(f"step {r['step']} rolled back to step {r['to_step']}, data resumed at step "
                             f"{r['data_resumes_at_step']}")
            else:
                parts.append(f"step {r['step']} stopped")
        return "; ".join(parts)

    # -- state: the band is part of the run (restored with a checkpoint); the escalation is not (a rollback must
    # not forget that it happened), see escalation_state.
    def state_dict(self) -> dict:
        return {"loss_band": self.loss_band.state_dict(), "norm_band": self.norm_band.state_dict(),
                "above": self.above, "first_spike": self.first_spike, "start_loss": self.start_loss,
                "armed_at": self.armed_at, **self.escalation_state()}

    def load_state_dict(self, state: dict) -> None:
        self.loss_band.load_state_dict(state["loss_band"])
        self.norm_band.load_state_dict(state["norm_band"])
        self.above, self.first_spike = state["above"], state["first_spike"]
        self.start_loss, self.armed_at = state.get("start_loss"), state.get("armed_at")
        self.restore_escalation(state)

    def escalation_state(self) -> dict:
        return {"rollbacks": self.rollbacks, "interventions": list(self.interventions)}

    def restore_escalation(self, state: dict) -> None:
        self.rollbacks, self.interventions = state["rollbacks"], list(state["interventions"])
