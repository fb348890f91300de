#!/usr/bin/env python
"""Cool a run down from one of its checkpoints, as a new run folder (a branch): the learning rate decays from
wherever the run was at that step to --min_lr over --steps steps, continuing with the checkpoint's optimizer state,
data position and settings. The parent run is not touched; the branch records where it came from (branch.json,
changes.jsonl) and its analysis includes the parent's history up to the branch point.

With --lr_schedule wsd, every stable-phase checkpoint is a place to stop: cool down at several token counts to see
what each would give, or extend the parent (resume it with a larger --max_steps) and cool down later.

Examples:
    python scripts/cooldown.py runs/wsd/checkpoints/step_0004000 --steps 800
    python scripts/cooldown.py runs/wsd/checkpoints/step_0004000 --steps 800 --output_dir runs/wsd-cool-4000 \\
        --decay_shape linear --eval_every 100
    accelerate launch scripts/cooldown.py runs/wsd/checkpoints/step_0004000 --steps 800   # on the run's GPUs

Any argument of scripts/pretrain.py may follow (e.g. --min_lr, --eval_every); the rest comes from the checkpoint's
own configuration.
"""

import argparse
from pathlib import Path

from training.cli import ConfigError, HelpFormatter, run_config_from_values
from training.errors import UserError, script_main
from training.layout import CHECKPOINT_MODEL_SUBDIR, RUN_CONFIG_FILE, checkpoint_step, run_of_checkpoint

DEFAULT_SUFFIX = "cooldown"


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="A checkpoint folder: runs/<run>/checkpoints/step_N.")
    parser.add_argument("--steps", type=int, required=True, help="Length of the cool-down in optimizer steps.")
    parser.add_argument("--output_dir", default=None,
                        help="The branch's run folder (default: <run>-cooldown-<step>, beside the run).")
    return parser.parse_known_args(argv)


def branch_values(checkpoint: Path, steps: int, output_dir: str | None, overrides: list[str]) -> dict:
    """The branch's arguments: the checkpoint's configuration, the overrides, and the cool-down itself."""
    import yaml

    from training.cli import build_parser
    from training.config import SECTIONS

    saved = checkpoint / CHECKPOINT_MODEL_SUBDIR / RUN_CONFIG_FILE
    if not saved.is_file():
        raise UserError(f"{checkpoint} is not a checkpoint of this project (no {CHECKPOINT_MODEL_SUBDIR}/"
                         f"{RUN_CONFIG_FILE}); pass runs/<run>/checkpoints/step_N.")
    values = {key: value for section in (yaml.safe_load(saved.read_text()) or {}).values() for key, value in
              section.items()}
    if overrides:
        parser = build_parser()
        parser.set_defaults(**values)
        sections = parser.parse_args_into_dataclasses(args=overrides)[:len(SECTIONS)]
        values = {name: value for section in sections for name, value in vars(section).items()}
    step = checkpoint_step(checkpoint.name)
    run, abandoned = run_of_checkpoint(checkpoint)  # a checkpoint of an abandoned branch: its run is further up
    name = f"{run.name}-{abandoned}" if abandoned else run.name
    branch = Path(output_dir) if output_dir else run.with_name(f"{name}-{DEFAULT_SUFFIX}-{step}")
    refuse_inside_the_run(branch, run)
    values.update(resume_from_checkpoint=str(checkpoint), cooldown_steps=steps, overwrite_output_dir=False,
                  output_dir=str(branch))
    return values


def refuse_inside_the_run(branch: Path, run: Path) -> None:
    """A cool-down is a branch beside its run: never the run's own folder, a folder inside it, or one above it."""
    target = branch.resolve()
    if target == run or run in target.parents or target in run.parents:
        where = "is the run's own folder" if target == run else "is inside the run" if run in target.parents \
            else "holds the run"
        raise ConfigError(f"--output_dir {branch} {where} ({run}): a cool-down is a branch beside its run, which "
                          f"keeps its checkpoints and final model as they are. Leave --output_dir out (the branch is "
                          f"{run.name}-{DEFAULT_SUFFIX}-<step> beside the run) or name a new folder.")


@script_main
def main(argv=None) -> int:
    from training.trainer.session import train_to_end
    from training.trainer.trainer import Trainer

    args, overrides = parse(argv)
    checkpoint = Path(args.checkpoint)
    if args.steps <= 0:
        raise UserError(f"--steps must be positive (got {args.steps}).")
    if checkpoint_step(checkpoint.name) is None or not checkpoint.is_dir():
        raise UserError(f"{checkpoint} is not a checkpoint folder (runs/<run>/checkpoints/step_N).")
    trainer = Trainer(run_config_from_values(branch_values(checkpoint, args.steps, args.output_dir, overrides)))
    resume = f"python scripts/pretrain.py --config {trainer.layout.config_file} --resume_from_checkpoint latest"
    return train_to_end(trainer, resume=resume)


if __name__ == "__main__":
    raise SystemExit(main())
