"""Running a sweep: every (variant, seed) is an ordinary run folder, trained in turn in this process (so the sweep
works under ``accelerate launch`` too).

What happens to each run depends on what its folder holds:

- ``done`` (``final/`` at max_steps) and ``diverged`` (stopped earlier by a non-finite loss or too many skipped
  updates, recorded in ``sweep_run.json`` with its last good step and loss) are skipped; ``--rerun NAME`` trains
  them again from scratch;
- ``partial`` (checkpoints, no final model) resumes from its newest checkpoint;
- ``new`` trains from scratch (an aborted start without a checkpoint is replaced);
- ``changed``: the variant's settings in the sweep file differ from what its folder was trained with. The sweep
  stops before training anything and names the differences: rerun the variant (``--rerun NAME``) or restore the
  file, so an old run is never reported under a variant's new settings.

A run that stops on a non-finite loss does not stop the sweep: it is recorded as diverged and the next run starts.
"""

import json
from collections.abc import Callable

import yaml

from ..cli import run_config_from_values
from ..errors import ConfigError
from ..guards.policies import RunStopped
from ..layout import TRAINING_STATE_FILE, RunLayout, Tags
from ..run.checkpointing import CheckpointManager, write_json
from ..run.resumption import setting_changes
from ..trainer.summary import end_summary
from ..trainer.trainer import Trainer
from .config import SweepConfig


def settings_changed(config: SweepConfig, variant: str, seed: int) -> dict[str, tuple]:
    """What differs between the sweep file's settings for this run and the ones its folder was trained with."""
    layout = RunLayout(config.run_dir(variant, seed))
    if not layout.config_file.exists():
        return {}
    trained = yaml.safe_load(layout.config_file.read_text()) or {}
    wanted = run_config_from_values(config.arguments(variant, seed)).to_dict()
    return setting_changes(trained, wanted)


def diverged_record(config: SweepConfig, variant: str, seed: int) -> dict | None:
    path = RunLayout(config.run_dir(variant, seed)).sweep_run_file
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("status") == "diverged" else None


def run_status(config: SweepConfig, variant: str, seed: int) -> str:
    """done, diverged, changed, partial or new (see the module docstring)."""
    layout, max_steps = RunLayout(config.run_dir(variant, seed)), config.arguments(variant, seed).get("max_steps")
    if settings_changed(config, variant, seed):
        return "changed"
    if diverged_record(config, variant, seed):
        return "diverged"
    state_file = layout.final_dir / TRAINING_STATE_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        # A run that a callback ended before max_steps (its target reached) is finished: resuming it would train
        # past its stopping point and replace its final model.
        if max_steps is None or state["global_step"] >= max_steps or state.get("stopped_early"):
            return "done"
    return "partial" if CheckpointManager(layout.checkpoints_dir).latest() is not None else "new"


def _refuse_changed(config: SweepConfig, statuses: dict, rerun: set[str]) -> None:
    changed = sorted({variant for (variant, seed), status in statuses.items()
                      if status == "changed" and variant not in rerun})
    if not changed:
        return
    details = []
    for variant in changed:
        seed = next(s for (v, s), status in statuses.items() if v == variant and status == "changed")
        diff = settings_changed(config, variant, seed)
        details.append(f"{variant}: " + ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in diff.items()))
    raise ConfigError(f"{config.path}: variant(s) {', '.join(changed)} changed since their runs were trained "
                      f"({'; '.join(details)}). Their runs would be reported under settings they were not trained "
                      f"with: rerun them with --rerun {' '.join(changed)} (their folders are replaced), or restore the "
                      "sweep file.")


def _record_divergence(trainer: Trainer, variant: str, seed: int, error: RunStopped) -> dict:
    losses = [v for v in trainer.log.recent(Tags.TRAIN_LOSS, 50) if v == v and abs(v) != float("inf")]
    record = {"status": "diverged", "variant": variant, "seed": seed, "last_good_step": trainer.state.global_step,
              "last_good_loss": losses[-1] if losses else None, "error": str(error)}
    if trainer.accelerator.is_main_process:
        write_json(trainer.layout.sweep_run_file, record)
    return record


def run_sweep(config: SweepConfig, say: Callable[[str], None] = print, callbacks=None,
              rerun: list[str] | tuple = ()) -> list[tuple[str, int, str]]:
    """Train every run that is not done; returns (variant, seed, what happened) for each."""
    rerun = set(rerun)
    unknown = sorted(rerun - set(config.variants))
    if unknown:
        raise ConfigError(f"--rerun {' '.join(unknown)}: no such variant in {config.path} (variants: "
                          f"{', '.join(config.variants)}).")
    runs = config.runs()
    statuses = {(variant, seed): run_status(config, variant, seed) for variant, seed in runs}
    _refuse_changed(config, statuses, rerun)
    outcome = []
    for number, (variant, seed) in enumerate(runs, start=1):
        status, where = statuses[(variant, seed)], config.run_dir(variant, seed)
        prefix = f"[{number}/{len(runs)}] {variant} seed {seed}"
        if variant not in rerun and status == "done":
            say(f"{prefix}: already finished ({where}), skipped.")
            outcome.append((variant, seed, "skipped"))
            continue
        if variant not in rerun and status == "diverged":
            record = diverged_record(config, variant, seed)
            say(f"{prefix}: diverged earlier (last good step {record['last_good_step']}), skipped; --rerun {variant} "
                "trains it again.")
            outcome.append((variant, seed, "diverged"))
            continue
        values = config.arguments(variant, seed)
        resuming = status == "partial" and variant not in rerun
        if resuming:
            values["resume_from_checkpoint"] = "latest"
        else:
            values["overwrite_output_dir"] = True  # the folder is this sweep's: a rerun or an aborted start
        say(f"{prefix}: {'resuming' if resuming else 'training'} in {where}")
        trainer = Trainer(run_config_from_values(values), callbacks=list(callbacks or []))
        try:
            trainer.train()
            say(end_summary(trainer))
            outcome.append((variant, seed, "resumed" if resuming else "trained"))
        except RunStopped as error:
            record = _record_divergence(trainer, variant, seed, error)
            say(f"{prefix}: diverged after step {record['last_good_step']} ({error}); the sweep goes on.")
            outcome.append((variant, seed, "diverged"))
        finally:
            trainer.finish_tracking()
    return outcome
