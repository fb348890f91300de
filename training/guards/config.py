"""What happens to a step that goes wrong (the ``guards`` section of a run's YAML)."""

from dataclasses import dataclass

from ..config_fields import check_types, described, positive, raise_problems

NONFINITE_POLICIES = ("stop", "skip")


@dataclass
class GuardArguments:
    """Non-finite steps, skipped updates and the spike guard."""

    on_nonfinite: str = described("A NaN/inf loss or gradient norm: 'stop' (keep the last good checkpoint) or 'skip' "
                                  "the update and continue (bounded by max_consecutive_skips and max_skipped_updates).",
                                  default="stop")
    max_consecutive_skips: int = described("Stop the run (keeping the last good checkpoint) after this many skipped "
                                           "updates in a row: NaN/inf with --on_nonfinite skip, or spikes skipped by "
                                           "the spike_detector. A run that keeps skipping is not training.", default=5)
    max_skipped_updates: int = described("Stop the run after this many skipped updates in total.", default=100)
    spike_guard: bool = described(
        "Survive loss spikes (opt-in): from the first step a loss far above the first one is a divergence; once armed "
        "(8 accepted steps), a step whose loss (or gradient norm) stands --spike_guard_z robust standard deviations "
        "above the run's recent band has its update skipped; if the loss stays above the band for "
        "--spike_guard_patience steps, the run rolls back to the last checkpoint before the spike and skips the "
        "data that followed it (PaLM's practice); after --spike_guard_rollbacks rollbacks it stops, naming every "
        "step taken. Every intervention is logged (interventions.jsonl, TensorBoard) and reported.", default=False)
    spike_guard_z: float = described("Spike guard: robust z-score (median and MAD of the trailing window) above which "
                                     "a step is a spike.", default=6.0)
    spike_guard_window: int = described("Spike guard: trailing steps that define the band.", default=100)
    spike_guard_patience: int = described("Spike guard: consecutive steps above the band (updates skipped) before a "
                                          "rollback; at most --max_consecutive_skips.", default=3)
    spike_guard_rollbacks: int = described("Spike guard: rollbacks allowed before the run stops (a cause that "
                                           "survives them is not a bad data window).", default=3)
    spike_guard_skip_steps: int = described("Spike guard: after a rollback, the data resumes this many steps' worth "
                                            "of batches after the first spiking step.", default=20)

    def __post_init__(self):
        raise_problems("guard arguments", check_types(self))
        problems = positive(self, "max_consecutive_skips", "max_skipped_updates")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            problems.append(f"on_nonfinite must be 'stop' or 'skip' (got {self.on_nonfinite!r})")
        if self.spike_guard:
            problems += positive(self, "spike_guard_window", "spike_guard_patience", "spike_guard_rollbacks")
            if self.spike_guard_z <= 0 or self.spike_guard_skip_steps < 0:
                problems.append("spike_guard_z must be positive and spike_guard_skip_steps >= 0")
            if self.spike_guard_patience > self.max_consecutive_skips:
                problems.append(f"spike_guard_patience ({self.spike_guard_patience}) exceeds max_consecutive_skips "
                                f"({self.max_consecutive_skips}): the run would stop before the guard rolls back")
        raise_problems("guard arguments", problems)
