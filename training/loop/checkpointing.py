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

import errno
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from ..layout import (
    ABANDONED_DIR,
    CHECKPOINT_MODEL_SUBDIR,
    RUN_CONFIG_FILE,
    checkpoint_name,
    checkpoint_step,
    is_temporary,
    previous_name,
    temporary_name,
)
from .arguments import ConfigError, RunConfig

# Settings a checkpoint cannot be resumed under when they change: the shapes of the weights and of the batches.
RESUME_FIXED = {"model": ("n_layer", "n_head", "n_embd", "vocab_size", "bias"), "train": ("seq_len", "optimizer")}


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the path and what to do."""


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


# ----------------------------------------------------------------------------------------------- resume checks
def check_resume_compatible(checkpoint: Path, config: RunConfig) -> None:
    """Refuse, naming every difference, to resume a checkpoint under a different architecture or context length
    (its weights or positions would not fit); other settings (learning rate, steps, batch layout) may change."""
    saved_file = checkpoint / CHECKPOINT_MODEL_SUBDIR / RUN_CONFIG_FILE
    if not saved_file.exists():
        return
    saved, current = yaml.safe_load(saved_file.read_text()) or {}, config.to_dict()
    differences = [f"{section}.{name}: checkpoint {saved[section][name]!r}, now {current[section][name]!r}"
                   for section, names in RESUME_FIXED.items() for name in names
                   if name in saved.get(section, {}) and saved[section][name] != current[section][name]]
    if differences:
        raise ConfigError(f"Cannot resume from {checkpoint}: the run's shape changed ({'; '.join(differences)}). "
                          "Use the checkpoint's settings, or start a new run (--init_from its model/ folder to "
                          "start from its weights).")


def damaged_files(checkpoint: Path) -> list[Path]:
    """Weight files of a checkpoint that cannot be read in full (truncated or corrupt)."""
    from safetensors.torch import load_file

    damaged = []
    for path in sorted(checkpoint.rglob("*.safetensors")):
        try:
            load_file(str(path))
        except Exception:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
            damaged.append(path)
    return damaged


def describe_unloadable(checkpoint: Path, error: BaseException, manager: "CheckpointManager") -> str:
    """Why a checkpoint could not be loaded, and the newest intact one to resume from instead."""
    damaged = damaged_files(checkpoint)
    what = f"damaged file(s): {', '.join(str(p) for p in damaged)}" if damaged else \
        f"{type(error).__name__}: {error}"
    older = [p for p in reversed(manager.checkpoints()) if p != checkpoint and not damaged_files(p)]
    advice = (f"The newest intact checkpoint is {older[0]}: resume with --resume_from_checkpoint {older[0]}."
              if older else "No other intact checkpoint was found.")
    return f"Cannot resume from {checkpoint} ({what}). {advice}"


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def raise_if_disk_full(error: OSError, path: Path, needed_bytes: int, latest: Path | None) -> None:
    """Turn ENOSPC into a message with the path, the space a save needs and the space free."""
    if error.errno != errno.ENOSPC:
        return
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    where = f"resume from {latest}" if latest else "restart"
    raise CheckpointSaveError(
        errno.ENOSPC, f"No space left on the device while writing {path}: a checkpoint of this run takes about "
        f"{needed_bytes / 1e6:,.0f} MB and {free / 1e6:,.0f} MB are free. Free space (or lower --keep_last, or "
        f"move --output_dir), then {where}.") from error


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
