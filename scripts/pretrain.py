#!/usr/bin/env python
"""Pretrain a GPT-2-class model with Accelerate (DDP, bf16, gradient accumulation) and log to TensorBoard.

Examples:
    accelerate launch --config_file accelerate_config.yaml scripts/pretrain.py --config configs/gpt2-124m-seed.yaml
    python scripts/pretrain.py --config configs/cpu-tiny.yaml --data tinyshakespeare.txt
    accelerate launch scripts/pretrain.py --config configs/gpt2-124m-seed.yaml --resume_from_checkpoint latest

Every field below can be set in the YAML preset (section model/data/train/logging) or on the command line.
"""

import sys
from pathlib import Path

# The repository root replaces this folder on the path: scripts/evaluate.py must not shadow `import evaluate`.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from modeling.tokenization import TokenizerUnavailableError  # noqa: E402
from training.cli import ConfigError, parse_run_config  # noqa: E402
from training.hub import HubError  # noqa: E402
from training.preparation import CorpusError  # noqa: E402
from training.shards import ShardError  # noqa: E402
from training.trainer import NonFiniteLossError, Trainer  # noqa: E402

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
        state = trainer.train()
        trainer.accelerator.print(f"Done: {state.global_step} steps, {state.num_input_tokens_seen:,} tokens; "
                                  f"model in {Path(config.train.output_dir) / 'final'}")
        return 0
    except (NonFiniteLossError, HubError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:  # --resume_from_checkpoint pointing nowhere
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        trainer.close()


if __name__ == "__main__":
    raise SystemExit(main())
