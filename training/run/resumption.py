"""Resuming with the current arguments: what a checkpoint restores, what the command line decides, what changed.

A checkpoint restores the optimizer moments and step counts, the data position, the RNG of every process and the
run's progress (with the callbacks', the guards' and the noise scale's state). Everything else comes from the current
arguments: peak and floor learning rate of every
optimizer, weight decay, betas, epsilon, Muon's momentum, warmup, ``max_steps``, the clip threshold, and the
schedule, evaluated at the resumed step (``accelerator.load_state`` would otherwise silently keep the old
learning rates and weight decay, which the optimizer's parameter groups and the scheduler's base rates carry).

A change of the schedule's shape (``max_steps``, warmup, the schedule kind or its decay) after warmup re-plans it
from the resumed step so the learning rate does not jump (``Schedule.replanned``); ``--cooldown_steps`` starts a
cool-down there. ``plan_resume`` says what a resume means and refuses what contradicts the checkpoint; the trainer
carries the plan out. Every setting that differs from the checkpoint's is printed (old -> new), appended to
``<run>/changes.jsonl`` with the step, and written to TensorBoard (``Tags.CHANGES_TEXT``,
``Tags.RUN_SETTINGS_CHANGED``), where the analysis finds it. With unchanged settings nothing is printed and the
resumed run equals the uninterrupted one bit for bit.
"""

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config_fields import flatten
from ..errors import ConfigError
from ..layout import Tags, run_of_checkpoint
from ..optim.optimizers import peak_lrs
from ..optim.schedules import Anchor, Schedule, anchor_to_dict
from .checkpointing import append_jsonl, saved_run_config, write_json

# Differences that are not settings of the training (how to resume, how to show progress, where to report).
NOT_SETTINGS = {"resume_from_checkpoint", "overwrite_output_dir", "cooldown_steps", "progress_bar", "report_to"}


def setting_changes(saved: dict, current: dict) -> dict[str, tuple]:
    """``"section.field" -> (checkpoint's value, current value)`` for every setting that differs. Both are sectioned
    configurations of any version (compared by field name; reported under today's section)."""
    saved = flatten(saved)
    changes = {}
    for section, values in current.items():
        for name, value in values.items():
            if name in NOT_SETTINGS or name not in saved:
                continue
            if saved[name] != value:
                changes[f"{section}.{name}"] = (saved[name], value)
    return changes


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


@dataclass
class ResumePlan:
    """What a resume did, for the console, ``changes.jsonl`` and TensorBoard."""

    step: int
    checkpoint: Path
    changes: dict[str, tuple] = field(default_factory=dict)
    lr_before: float | None = None
    lr_after: float | None = None
    schedule: str | None = None  # set when the schedule was re-planned or cooled down
    anchor: dict | None = None  # the schedule's re-plan (what the forecast needs to know the run's future)
    branch_of: Path | None = None
    abandoned_branch: str | None = None  # the abandoned line of branch_of that the checkpoint lies in, if any
    reason: str | None = None  # why the settings were applied again (a spike-guard rollback), if not a resume
    new_schedule: Schedule | None = field(default=None, repr=False)  # the schedule from the resumed step on
    cooldown: dict | None = None  # the run's cool-down ({"step", "steps"}), kept or begun

    @property
    def worth_recording(self) -> bool:
        return bool(self.changes or self.schedule or self.branch_of)

    def lines(self) -> list[str]:
        lines = []
        if self.branch_of is not None:
            lines.append(f"Branched from {self.checkpoint} (run {self.branch_of}) at step {self.step}.")
        if self.changes:
            lines.append(f"Resuming at step {self.step} with changed settings (checkpoint -> now):")
            lines += [f"  {key}: {_fmt(old)} -> {_fmt(new)}" for key, (old, new) in self.changes.items()]
        if self.schedule:
            lines.append(f"Learning-rate schedule {self.schedule}.")
        if self.lr_before is not None and self.lr_after is not None and self.lr_before != self.lr_after:
            lines.append(f"Learning rate of step {self.step + 1}: {self.lr_before:.4g} (the checkpoint's schedule) -> "
                         f"{self.lr_after:.4g}.")
        return lines

    def record(self) -> dict:
        return {"step": self.step, "time": time.time(), "checkpoint": str(self.checkpoint),
                "changes": {key: list(pair) for key, pair in self.changes.items()},
                "lr_before": self.lr_before, "lr_after": self.lr_after, "schedule": self.schedule,
                "anchor": self.anchor, "branch_of": str(self.branch_of) if self.branch_of else None,
                **({"reason": self.reason} if self.reason else {})}

    def log(self, log, layout, is_main: bool) -> None:
        """TensorBoard (text and a count at the resumed step) and the run folder's records (``changes.jsonl``, a
        branch's ``branch.json``); called once the trackers exist."""
        if not self.worth_recording or not is_main:
            return
        log.log_text(Tags.CHANGES_TEXT, "\n".join(self.lines()), self.step)
        log.log_scalars({Tags.RUN_SETTINGS_CHANGED: float(len(self.changes))}, step=self.step)
        append_jsonl(layout.changes_file, self.record())
        if self.branch_of is not None:
            write_json(layout.branch_file, {"parent_run": str(self.branch_of), "checkpoint": str(self.checkpoint),
                                            "step": self.step, "cooldown": self.cooldown,
                                            "abandoned_branch": self.abandoned_branch})


def schedule_after_resume(args, old: Schedule, step: int, cooldown: dict | None
                          ) -> tuple[Schedule, str | None, dict | None]:
    """The schedule from ``step`` on (its ``max_steps`` is the run's end: a cool-down moves it), a description when
    it is not simply the arguments' own curve, and the run's cool-down (``{"step", "steps"}``, kept or begun)."""
    if args.cooldown_steps:
        if cooldown and cooldown["steps"] == args.cooldown_steps:  # the same cool-down, resumed
            end = cooldown["step"] + args.cooldown_steps
            return replace(Schedule.from_args(args), max_steps=end, anchor=old.anchor), None, cooldown
        new = replace(Schedule.from_args(args), max_steps=step + args.cooldown_steps)
        new = replace(new, anchor=Anchor(step, max(old.factor(step), new.min_ratio), args.decay_shape))
        return new, (f"cooled down from step {step}: {args.decay_shape} decay from {old.factor(step):.4g}x the peak "
                     f"to {new.min_ratio:.4g}x at step {new.max_steps}"), {"step": step, "steps": args.cooldown_steps}
    new = Schedule.from_args(args).replanned(old, step)
    if new.anchor is not None and new.anchor != old.anchor:
        return new, new.describe(), cooldown
    return new, None, cooldown


def plan_resume(checkpoint: Path, config, progress, in_place: bool) -> ResumePlan:
    """What resuming ``checkpoint`` means under the current settings, once it is loaded (``progress`` holds its step,
    its schedule's re-plan and its cool-down): the changed settings, the schedule from here, the learning rate before
    and after. Settings that contradict the checkpoint are refused here, before anything is written or moved."""
    saved, step, args = saved_run_config(checkpoint), progress.step, config.args
    changes = setting_changes(saved, config.to_dict())
    refuse_contradictions(args, checkpoint, step, changes, in_place, progress.cooldown)
    saved_settings = flatten(saved) or flatten(config.to_dict())
    old_schedule = Schedule.from_args(saved_settings, anchor=progress.schedule_anchor)
    new_schedule, description, cooldown = schedule_after_resume(args, old_schedule, step, progress.cooldown)
    parent, abandoned = (None, None) if in_place else run_of_checkpoint(checkpoint)
    return ResumePlan(step=step, checkpoint=checkpoint, changes=changes,
                      lr_before=peak_lrs(_Args(saved_settings))[0] * old_schedule.factor(step),
                      lr_after=peak_lrs(args)[0] * new_schedule.factor(step), schedule=description,
                      anchor=anchor_to_dict(new_schedule.anchor), branch_of=parent,
                      abandoned_branch=abandoned, new_schedule=new_schedule, cooldown=cooldown)


def refuse_contradictions(args, checkpoint: Path, step: int, changes: dict, in_place: bool,
                          cooldown: dict | None) -> None:
    """What a resume cannot do, said before it writes anything: train past a --max_steps the checkpoint has already
    reached (changed settings would be recorded for steps that never run), or cool a run down in its own folder (a
    cool-down is a branch beside its run: the run's later checkpoints and final model stay as they are)."""
    new_cooldown = args.cooldown_steps and not (cooldown and cooldown["steps"] == args.cooldown_steps)
    if new_cooldown and in_place:
        raise ConfigError(
            f"--cooldown_steps {args.cooldown_steps} with a checkpoint of this run's own folder ({checkpoint}): a "
            "cool-down is a branch beside its run, so the run keeps its later checkpoints and final model. Use "
            f"`python scripts/cooldown.py {checkpoint} --steps {args.cooldown_steps}` (it writes "
            f"<run>-cooldown-{step}), or pass another --output_dir.")
    if new_cooldown or step < args.max_steps:
        return
    finished = f"The checkpoint {checkpoint} is at step {step} and --max_steps is {args.max_steps}: nothing would train"
    if changes:
        listed = ", ".join(changes)
        raise ConfigError(f"{finished}, so the changed settings ({listed}) would never apply. Nothing was written. "
                          f"Pass --max_steps larger than {step} to extend the run (its schedule is re-planned from step "
                          f"{step}), or branch a cool-down with `python scripts/cooldown.py {checkpoint} --steps N`.")
    if step > args.max_steps:
        raise ConfigError(f"{finished} (the run is already past it). Nothing was written. Pass --max_steps of at least "
                          f"{step}.")


class _Args:
    """A saved config's settings seen as arguments (for ``peak_lrs``)."""

    def __init__(self, values: dict):
        self.max_lr, self.muon_lr = values.get("max_lr"), values.get("muon_lr")
        self.optimizer = values.get("optimizer", "adamw")

