"""Running a sweep: every (variant, seed) is an ordinary run folder, trained in turn in this process (so the sweep
works under ``accelerate launch`` too). Finished runs are skipped and interrupted ones resume from their newest
checkpoint, so an interrupted sweep continues where it stopped."""

import json
from collections.abc import Callable

from ..cli import run_config_from_values
from ..layout import TRAINING_STATE_FILE, RunLayout
from ..loop.checkpointing import CheckpointManager
from ..loop.trainer import Trainer
from .config import SweepConfig


def run_status(config: SweepConfig, variant: str, seed: int) -> str:
    """done (final/ written at max_steps), partial (checkpoints to resume from) or new."""
    layout, max_steps = RunLayout(config.run_dir(variant, seed)), config.arguments(variant, seed).get("max_steps")
    state_file = layout.final_dir / TRAINING_STATE_FILE
    if state_file.exists() and (max_steps is None or json.loads(state_file.read_text())["global_step"] >= max_steps):
        return "done"
    return "partial" if CheckpointManager(layout.checkpoints_dir).latest() is not None else "new"


def run_sweep(config: SweepConfig, say: Callable[[str], None] = print, callbacks=None) -> list[tuple[str, int, str]]:
    """Train every run that is not done; returns (variant, seed, what happened) for each."""
    outcome = []
    runs = config.runs()
    for number, (variant, seed) in enumerate(runs, start=1):
        status = run_status(config, variant, seed)
        where = config.run_dir(variant, seed)
        if status == "done":
            say(f"[{number}/{len(runs)}] {variant} seed {seed}: already finished ({where}), skipped.")
            outcome.append((variant, seed, "skipped"))
            continue
        values = config.arguments(variant, seed)
        if status == "partial":
            values["resume_from_checkpoint"] = "latest"
        say(f"[{number}/{len(runs)}] {variant} seed {seed}: {'resuming' if status == 'partial' else 'training'} "
            f"in {where}")
        trainer = Trainer(run_config_from_values(values), callbacks=list(callbacks or []))
        try:
            trainer.train()
        finally:
            trainer.finish_tracking()
        outcome.append((variant, seed, "resumed" if status == "partial" else "trained"))
    return outcome
