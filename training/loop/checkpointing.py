"""Checkpoint folders: written atomically, newest K kept, found again for ``--resume_from_checkpoint latest``.

A checkpoint is ``<output_dir>/checkpoints/step_0001000/`` holding ``accelerator.save_state`` (model, optimizer,
RNG of every process, and the registered scheduler / data loader / trainer progress) plus ``model/``, a
``save_pretrained`` folder that ``AutoModelForCausalLM.from_pretrained`` loads. It is written under a ``.tmp``
name and renamed when complete, so a crash during a save leaves the previous checkpoints as they were.
"""

import json
import shutil
from pathlib import Path

from ..layout import checkpoint_name, checkpoint_step, is_temporary, temporary_name


class CheckpointManager:
    def __init__(self, directory: str | Path, keep_last: int = 0):
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.directory / checkpoint_name(step)

    def temporary_path(self, step: int) -> Path:
        return self.directory / temporary_name(checkpoint_name(step))

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(step, p) for p in self.directory.iterdir()
                 if p.is_dir() and (step := checkpoint_step(p.name)) is not None]
        return [path for _, path in sorted(found)]

    def latest(self) -> Path | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    def remove_incomplete(self) -> None:
        """Left-overs of a save that was interrupted."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.is_dir() and is_temporary(path.name):
                    shutil.rmtree(path, ignore_errors=True)

    def commit(self, step: int) -> Path:
        """Publish the finished temporary folder of ``step`` and prune old checkpoints (main process only)."""
        final = self.path_for(step)
        if final.exists():
            shutil.rmtree(final)
        self.temporary_path(step).rename(final)
        if self.keep_last > 0:
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resolve(self, spec: str) -> Path:
        """``latest`` or a path -> an existing checkpoint folder, or a clear error."""
        if spec == "latest":
            latest = self.latest()
            if latest is None:
                raise FileNotFoundError(f"--resume_from_checkpoint latest: no checkpoint in {self.directory}.")
            return latest
        path = Path(spec)
        if not (path / "custom_checkpoint_0.pkl").exists() and not (path / "model.safetensors").exists():
            raise FileNotFoundError(f"--resume_from_checkpoint {path}: not a checkpoint folder (expected the "
                                    f"output of a previous run, e.g. {self.path_for(1000)}).")
        return path


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=float) + "\n")
