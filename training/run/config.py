"""Checkpoints and resuming (the ``checkpoint`` section of a run's YAML)."""

from dataclasses import dataclass

from ..config_fields import check_types, described, non_negative, raise_problems


@dataclass
class CheckpointArguments:
    """Checkpoints: how often, how many are kept, where a run resumes from, whether a folder may be cleared."""

    save_every: int = described("Checkpoint every N steps (and at the end); 0 saves only at the end.", default=1000)
    keep_last: int = described("Checkpoints kept (older ones are deleted); 0 keeps all.", default=3)
    resume_from_checkpoint: str | None = described(
        "'latest' (newest in <output_dir>/checkpoints) or a checkpoint path (of this run: it rolls the run back "
        "there; of another run: a branch).", default=None)
    overwrite_output_dir: bool = described(
        "Start a fresh run in an --output_dir that holds a run of this project, removing that run's checkpoints, "
        "final model, logs and analysis (prepared data is kept); refused for a folder holding anything else, the "
        "current folder and the home folder.", default=False)

    def __post_init__(self):
        raise_problems("checkpoint arguments", check_types(self))
        problems = non_negative(self, "save_every", "keep_last")
        if self.overwrite_output_dir and self.resume_from_checkpoint == "latest":
            problems.append("overwrite_output_dir and resume_from_checkpoint latest contradict each other: resume "
                            "the run, or overwrite it")
        raise_problems("checkpoint arguments", problems)
