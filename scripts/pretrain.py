#!/usr/bin/env python
"""Pretrain a GPT-2-class model with Accelerate (DDP, bf16, gradient accumulation) and log to TensorBoard.

Examples:
    accelerate launch --config_file accelerate_config.yaml scripts/pretrain.py --config configs/gpt2-124m-seed.yaml
    python scripts/pretrain.py --config configs/cpu-tiny.yaml --data tinyshakespeare.txt
    accelerate launch scripts/pretrain.py --config configs/gpt2-124m-seed.yaml --resume_from_checkpoint latest
    python scripts/pretrain.py --config configs/cpu-tiny.yaml --resume_from_checkpoint latest --max_lr 1e-3  # changed

A run folder (--output_dir) belongs to one run: a second launch on it is refused while the first is alive, and a
fresh run refuses a folder that holds another run (resume it, or pass --overwrite_output_dir true). SIGTERM or
Ctrl-C finishes the current step, saves a checkpoint, prints the command that resumes and exits with code 75.
Exit codes: 0 done, 1 stopped by a guard or a full disk, 2 a problem with what was asked (the message names it),
75 stopped by a signal after saving.

Every option below can be set in the YAML preset, in the section named in its group (model, data, train, optimizer,
schedule, checkpoint, guards, evaluation, logging, hub), or on the command line.
"""

import sys

from training.cli import parse_run_config
from training.errors import INTERRUPTED_EXIT, script_main
from training.trainer.session import train_to_end
from training.trainer.trainer import Trainer


@script_main
def main(argv=None) -> int:
    config = parse_run_config(argv, description=__doc__)
    try:
        trainer = Trainer(config)
    except KeyboardInterrupt:
        print("\nInterrupted before training started; nothing to save.", file=sys.stderr)
        return INTERRUPTED_EXIT
    return train_to_end(trainer)


if __name__ == "__main__":
    raise SystemExit(main())
