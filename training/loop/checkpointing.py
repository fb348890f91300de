"""Checkpoint folders: written atomically, newest K of the current branch kept, found again for
``--resume_from_checkpoint latest``.

A checkpoint is ``<output_dir>/checkpoints/step_0001000/`` holding ``accelerator.save_state`` (model, optimizer,
RNG of every process, and the registered scheduler / data loader / trainer progress) plus ``model/``, a
``save_pretrained`` folder that ``AutoModelForCausalLM.from_pretrained`` loads. Every folder (checkpoints and
``final/``) is written under a temporary name, its files are fsynced, and only then is it renamed into place, so
a crash (or a full disk) during a save leaves the previous folders as they were.

Branches: resuming from a checkpoint older than the newest one rolls the run back. The checkpoints after it
belong to the abandoned branch: they are moved to ``checkpoints/abandoned/<branch>/`` (never deleted, never
chosen by ``latest``), so the checkpoints left in ``checkpoints/`` are one history whose step order is the order
in which they were committed, and pruning (``keep_last``) removes the oldest of that history only.
"""

import json
import os
import shutil
import time
from pathlib import Path

from ..layout import (ABANDONED_DIR, checkpoint_name, checkpoint_step, is_temporary, previous_name,
                      temporary_name)


class CheckpointManager:
    def __init__(self, directory: str | Path, keep_last: int = 0):
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.directory / checkpoint_name(step)

    def temporary_path(self, step: int) -> Path:
        return self.directory / temporary_name(checkpoint_name(step))

    @property
    def abandoned_dir(self) -> Path:
        return self.directory / ABANDONED_DIR

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints of the current branch, oldest first."""
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
        final = publish_folder(self.temporary_path(step), self.path_for(step))
        if self.keep_last > 0:
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def abandon_after(self, step: int, extra: list[Path] = ()) -> Path | None:
        """Move the checkpoints newer than ``step`` (and the ``extra`` folders, e.g. a ``final/`` of the
        abandoned branch) to ``checkpoints/abandoned/<branch>/``; returns that folder, or None if nothing was
        newer (a plain resume from the newest checkpoint)."""
        newer = [p for p in self.checkpoints() if checkpoint_step(p.name) > step] + [p for p in extra if p.exists()]
        if not newer:
            return None
        branch = self.abandoned_dir / f"after_{checkpoint_name(step)}_{time.strftime('%Y%m%d-%H%M%S')}"
        branch.mkdir(parents=True, exist_ok=False)
        for path in newer:
            path.rename(branch / path.name)
        return branch

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


# ----------------------------------------------------------------------------------------------- atomic folders
def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (and the folders themselves) to disk, so a rename that follows never
    publishes a folder whose contents are still only in the page cache."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish_folder(tmp: Path, target: Path) -> Path:
    """Replace ``target`` by the complete folder ``tmp``. The old ``target`` is renamed aside first and deleted
    last; ``recover_folder`` puts it back if a crash falls between the two renames."""
    fsync_tree(tmp)
    previous = target.with_name(previous_name(target.name))
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        target.rename(previous)
    tmp.rename(target)
    _fsync_dir(target.parent)
    if previous.exists():
        shutil.rmtree(previous)
    return target


def recover_folder(target: Path) -> None:
    """After a crash inside ``publish_folder``: restore the previous complete folder if the new one never landed,
    and drop a half-written temporary folder."""
    previous = target.with_name(previous_name(target.name))
    if previous.exists():
        if target.exists():
            shutil.rmtree(previous)
        else:
            previous.rename(target)
    tmp = target.with_name(temporary_name(target.name))
    if tmp.exists():
        shutil.rmtree(tmp)


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=float) + "\n")
