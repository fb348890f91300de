"""One training session from a script: train, then the end-of-run summary, and the ways a run stops turned into
exit codes. Shared by every script that trains (``pretrain.py``, ``cooldown.py``), so each ends the same way."""

import sys

from ..errors import INTERRUPTED_EXIT
from ..guards.policies import RunStopped
from ..run.checkpointing import CheckpointSaveError
from ..run.preemption import Preempted
from .summary import end_summary
from .trainer import Trainer

STOPPED_EXIT = 1  # a guard stopped the run, or a checkpoint could not be written: the message says where
# Other user errors (a checkpoint that cannot be resumed, the Hub push after the final save) reach the script's
# script_main: exit 2. A bug keeps its traceback.


def train_to_end(trainer: Trainer, resume: str | None = None) -> int:
    """Train to the last step and print the summary (0); after SIGTERM/SIGINT, the saved checkpoint and the command
    that resumes (``resume``, default the same command with ``--resume_from_checkpoint latest``; exit 75); a run
    a guard stopped, or whose checkpoint could not be written, prints why (exit 1). Closes the trainer either way."""
    try:
        trainer.train()
        trainer.accelerator.print(end_summary(trainer))
        return 0
    except Preempted as stopped:
        trainer.accelerator.print(f"{stopped.what} Resume with:\n  {resume or stopped.resume}")
        return stopped.exit_code
    except (RunStopped, CheckpointSaveError) as error:
        print(f"error: {error}", file=sys.stderr)
        return STOPPED_EXIT
    except KeyboardInterrupt:  # while resuming, before the loop's own signal handler was installed
        print("\nInterrupted before the first step; nothing to save (the checkpoints are unchanged).", file=sys.stderr)
        return INTERRUPTED_EXIT
    finally:
        trainer.close()
