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

Every field below can be set in the YAML preset (section model/data/train/logging) or on the command line.
"""

import sys

from modeling.tokenization import TokenizerUnavailableError
from training.cli import ConfigError, parse_run_config
from training.data.preparation import CorpusError
from training.data.shards import ShardError
from training.guards.policies import RunStopped
from training.hub.upload import HubError
from training.layout import Tags
from training.run.checkpointing import CheckpointSaveError
from training.run.preemption import Preempted
from training.trainer.trainer import Trainer

USER_ERRORS = (ConfigError, CorpusError, ShardError, TokenizerUnavailableError, HubError, FileNotFoundError,
               ValueError)
INTERRUPTED_EXIT_CODE = 130  # Ctrl-C before training started: nothing to save


def summary(trainer: Trainer) -> str:
    """What the run achieved and where its outputs are."""
    losses = trainer.log.recent(Tags.TRAIN_LOSS, 20)
    train_loss = sum(losses) / len(losses) if losses else float("nan")
    val, state = trainer.log.last(Tags.VAL_LOSS), trainer.state
    elapsed, tokens = trainer.elapsed_seconds, trainer.steps_this_session * trainer.tokens_per_step
    minutes, seconds = divmod(int(round(elapsed)), 60)
    run, final = trainer.layout.root, trainer.layout.final_dir
    lines = [f"Done: {state.global_step:,} steps, {state.num_input_tokens_seen:,} tokens "
             f"({minutes}m {seconds:02d}s this session, {tokens / max(elapsed, 1e-9):,.0f} tokens/s).",
             f"  train loss (mean of the last {len(losses)} steps): {train_loss:.4f}"
             + (f"   validation loss: {val:.4f} (best {state.best_metric:.4f} at step {state.best_global_step})"
                if val is not None else "   (no validation: --eval_every 0)"),
             f"  time: {time_shares(trainer)}",
             f"  model: {final}   checkpoints: {trainer.layout.checkpoints_dir}   logs: {trainer.layout.tensorboard_dir}",
             "Next:",
             f"  python scripts/analyze_run.py {run}                  # plots + a written diagnosis",
             f"  python scripts/evaluate_checkpoints.py {final} --skip_hellaswag",
             f"  python scripts/generate.py {final} --prompt \"{trainer.args.sample_prompt}\"",
             f"  tensorboard --logdir {run.parent}"]
    return "\n".join(lines)


def time_shares(trainer: Trainer) -> str:
    """Where this session's wall time went, largest share first (training/diagnostics/timing.py)."""
    shares = trainer.clock.shares(trainer.elapsed_seconds)
    names = {"forward_backward": "forward+backward"}
    parts = [f"{names.get(name, name)} {100 * share:.1f}%" for name, share in
             sorted(shares.items(), key=lambda item: -item[1]) if share >= 0.005]
    return ", ".join(parts) or "n/a"


def main(argv=None) -> int:
    try:
        config = parse_run_config(argv, description=__doc__)
        trainer = Trainer(config)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted before training started; nothing to save.", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    try:
        trainer.train()
        trainer.accelerator.print(summary(trainer))
        return 0
    except Preempted as stopped:
        trainer.accelerator.print(str(stopped))
        return stopped.exit_code
    except (RunStopped, HubError, CheckpointSaveError) as error:  # stopped during training
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, FileNotFoundError) as error:  # --resume_from_checkpoint: missing, damaged, incompatible
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while resuming or setting up, before the loop's own handler was installed
        print("\nInterrupted before the first step; nothing to save (the checkpoints are unchanged).",
              file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    finally:
        trainer.close()


if __name__ == "__main__":
    raise SystemExit(main())
