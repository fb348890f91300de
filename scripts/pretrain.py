#!/usr/bin/env python
"""Pretrain a GPT-2-class model with Accelerate (DDP, bf16, gradient accumulation) and log to TensorBoard.

Examples:
    accelerate launch --config_file accelerate_config.yaml scripts/pretrain.py --config configs/gpt2-124m-seed.yaml
    python scripts/pretrain.py --config configs/cpu-tiny.yaml --data tinyshakespeare.txt
    accelerate launch scripts/pretrain.py --config configs/gpt2-124m-seed.yaml --resume_from_checkpoint latest

Every field below can be set in the YAML preset (section model/data/train/logging) or on the command line.
"""

import sys

from modeling.tokenization import TokenizerUnavailableError
from training.cli import ConfigError, parse_run_config
from training.data.preparation import CorpusError
from training.data.shards import ShardError
from training.hub.upload import HubError
from training.loop.checkpointing import CheckpointSaveError
from training.loop.trainer import NonFiniteLossError, Trainer

USER_ERRORS = (ConfigError, CorpusError, ShardError, TokenizerUnavailableError, HubError, FileNotFoundError,
               ValueError)


def main(argv=None) -> int:
    try:
        config = parse_run_config(argv, description=__doc__)
        trainer = Trainer(config)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        trainer.train()
        trainer.accelerator.print(trainer.summary())
        return 0
    except (NonFiniteLossError, HubError, CheckpointSaveError) as error:  # stopped during training
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, FileNotFoundError) as error:  # --resume_from_checkpoint: missing, damaged, incompatible
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        trainer.close()


if __name__ == "__main__":
    raise SystemExit(main())
