"""Checkpoints: saving a run (every process), resuming it, rolling it back, and the folders they live in.

A checkpoint is ``<output_dir>/checkpoints/step_0001000/`` holding ``accelerator.save_state`` (model, optimizer,
RNG of every process, and the registered scheduler / data loader / trainer progress), ``model/`` (a
``save_pretrained`` folder that ``AutoModelForCausalLM.from_pretrained`` loads) and ``manifest.json`` (size and
CRC32 of every file, written last). Every folder (checkpoints and ``final/``) is written under a temporary name,
its files are fsynced, and only then is it renamed into place, so a crash (or a full disk) during a save leaves
the previous folders as they were. On resume the manifest is checked first: a damaged file of any kind (weights,
optimizer, RNG states, which Accelerate would otherwise load or silently skip) is named, with the newest intact
checkpoint to use instead.

Branches: resuming from a checkpoint older than the newest one rolls the run back. The checkpoints after it
belong to the abandoned branch: they are moved to ``checkpoints/abandoned/<branch>/`` (never deleted, never
chosen by ``latest``), so the checkpoints left in ``checkpoints/`` are one history whose step order is the order
in which they were committed, and pruning (``keep_last``) removes the oldest of that history only.
"""

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from transformers.utils import logging as hf_logging

from modeling.tokenization import save_hf_tokenizer

from ..cadence import is_due
from ..config import SECTION_OF, RunConfig
from ..config_fields import flatten
from ..distributed import full_state_dict, is_sharded
from ..errors import ConfigError
from ..layout import (
    ABANDONED_DIR,
    CHECKPOINT_MODEL_SUBDIR,
    MANIFEST_FILE,
    RUN_CONFIG_FILE,
    TRAINING_STATE_FILE,
    RunLayout,
    checkpoint_name,
    checkpoint_step,
    is_temporary,
    previous_name,
    temporary_name,
)
from ..ownership import describe_paths, foreign_in_checkpoint, foreign_in_model_folder, refuse_foreign
from ..storage import file_crc32, out_of_space, space_reason

# Settings a checkpoint cannot be resumed under when they change: the shapes of the weights and of the batches.
RESUME_FIXED = ("n_layer", "n_head", "n_embd", "vocab_size", "bias", "qk_norm", "parametrization", "mup_base_width",
                "seq_len", "optimizer")
# What a saved config that predates a fixed setting ran with: a checkpoint without ``parametrization`` was trained
# under sp, so resuming it under mup is refused too.
RESUME_FIXED_BEFORE = {"parametrization": "sp", "mup_base_width": None}


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the path and what to do."""

    user_error = True  # scripts report it as "error: ..." (training/errors.py)


class _SharedTensorNotice(logging.Filter):
    """Accelerate warns "Removed shared tensor {'lm_head.weight'}" at every save: that is the tied head, saved
    once by design, and the warning would otherwise repeat at every checkpoint."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_SharedTensorNotice())


@contextlib.contextmanager
def quiet_progress_bars():
    """transformers' "Writing model shards" bar would cut through the training bar."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class CheckpointManager:
    """The checkpoint folders of one run: names, the newest, pruning, branches."""

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

    def latest_before(self, step: int) -> Path | None:
        """The newest checkpoint at or before ``step`` (where a rollback can go)."""
        older = [p for p in self.checkpoints() if checkpoint_step(p.name) <= step]
        return older[-1] if older else None

    def remove_incomplete(self) -> None:
        """Left-overs of a save that was interrupted: ``step_N.tmp`` folders (a ``.tmp`` folder of another name, such
        as the user's ``checkpoints/eval.tmp/``, is not the run's and stays)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            if path.is_dir() and is_temporary(path.name) and \
                    checkpoint_step(path.name.removesuffix(temporary_name(""))) is not None:
                shutil.rmtree(path, ignore_errors=True)

    def commit(self, step: int, say=print) -> Path:
        """Publish the finished temporary folder of ``step`` and prune old checkpoints (main process only). A
        checkpoint holding a file the run did not write is kept, and said so (``ownership``)."""
        final = publish_folder(self.temporary_path(step), self.path_for(step))
        if self.keep_last > 0:
            for old in self.checkpoints()[: -self.keep_last]:
                if foreign := foreign_in_checkpoint(old):
                    say(f"Note: {old} is kept past --keep_last {self.keep_last}: it holds files this run did not "
                        f"write ({describe_paths(foreign, old)}).")
                    continue
                shutil.rmtree(old, ignore_errors=True)
        return final

    def new_branch_dir(self, step: int) -> Path:
        """A new ``checkpoints/abandoned/after_step_N_<time>/`` folder for what a return to ``step`` sets aside."""
        branch = self.abandoned_dir / f"after_{checkpoint_name(step)}_{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while branch.exists():  # two rollbacks within one second (the spike guard)
            branch = branch.with_name(f"{branch.name.split('.')[0]}.{suffix}")
            suffix += 1
        branch.mkdir(parents=True)
        return branch

    def abandon_after(self, step: int, extra: list[Path] = ()) -> Path | None:
        """Move the checkpoints newer than ``step`` (and the ``extra`` folders, e.g. a ``final/`` of the
        abandoned branch) to ``checkpoints/abandoned/<branch>/``; returns that folder, or None if nothing was
        newer (a plain resume from the newest checkpoint). A folder holding files the run did not write is refused
        before anything moves."""
        newer = [p for p in self.checkpoints() if checkpoint_step(p.name) > step] + [p for p in extra if p.exists()]
        if not newer:
            return None
        for path in newer:
            foreign = foreign_in_checkpoint(path) if checkpoint_step(path.name) is not None else \
                foreign_in_model_folder(path)
            refuse_foreign(foreign, path, f"move it to an abandoned branch (a return to step {step})",
                           "Move those files out and resume again.")
        branch = self.new_branch_dir(step)
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
def saved_run_config(checkpoint: Path) -> dict:
    """The configuration a checkpoint was written under (``model/run_config.yaml``, sectioned as when it was written:
    read its settings by name with ``config_fields.flatten``), or {} for old checkpoints."""
    saved_file = checkpoint / CHECKPOINT_MODEL_SUBDIR / RUN_CONFIG_FILE
    if not saved_file.exists():
        return {}
    return yaml.safe_load(saved_file.read_text()) or {}


def check_resume_compatible(checkpoint: Path, config: RunConfig) -> None:
    """Refuse, naming every difference, to resume a checkpoint under a different architecture or context length
    (its weights or positions would not fit); other settings (learning rate, steps, batch layout) may change."""
    saved, current = flatten(saved_run_config(checkpoint)), config.args
    if saved:
        saved = {**RESUME_FIXED_BEFORE, **saved}
    differences = [f"{SECTION_OF[name]}.{name}: checkpoint {saved[name]!r}, now {getattr(current, name)!r}"
                   for name in RESUME_FIXED if name in saved and saved[name] != getattr(current, name)]
    if differences:
        raise ConfigError(f"Cannot resume from {checkpoint}: the run's shape changed ({'; '.join(differences)}). "
                          "Use the checkpoint's settings, or start a new run (--init_from its model/ folder to "
                          "start from its weights).")


# ----------------------------------------------------------------------------------------------- integrity
def write_manifest(folder: Path) -> None:
    """Size and CRC32 of every file in ``folder``, written last (a folder with a manifest is complete)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        files[str(path.relative_to(folder))] = {"bytes": path.stat().st_size, "crc32": file_crc32(path)}
    write_json(folder / MANIFEST_FILE, {"files": files})


def manifest_problems(folder: Path) -> list[str] | None:
    """What differs from the folder's manifest (missing, resized or changed files); None without a manifest."""
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return [f"{manifest} (unreadable)"]
    problems = []
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} (missing)")
        elif path.stat().st_size != expected["bytes"]:
            problems.append(f"{path} ({path.stat().st_size:,} bytes, written as {expected['bytes']:,})")
        elif file_crc32(path) != expected["crc32"]:
            problems.append(f"{path} (contents changed since it was written)")
    return problems


def _legacy_problems(checkpoint: Path) -> list[str]:
    """Without a manifest (checkpoints of older versions): every file that cannot be read in full."""
    from safetensors.torch import load_file

    problems = []
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file() or path.suffix not in (".safetensors", ".pkl", ".bin", ".pt"):
            continue
        try:
            load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=False)
        except Exception:  # noqa: BLE001 - safetensors, pickle and zip raise their own types for every kind of damage
            problems.append(str(path))
    return problems


def damaged_files(checkpoint: Path) -> list[str]:
    """Files of a checkpoint that are missing, truncated or corrupt (by its manifest, else by reading them)."""
    problems = manifest_problems(checkpoint)
    return _legacy_problems(checkpoint) if problems is None else problems


def describe_unloadable(checkpoint: Path, error: BaseException | None, manager: CheckpointManager,
                        damaged: list[str] | None = None) -> str:
    """Why a checkpoint could not be loaded, and the newest intact one to resume from instead."""
    damaged = damaged_files(checkpoint) if damaged is None else damaged
    what = f"damaged file(s): {', '.join(damaged)}" if damaged else f"{type(error).__name__}: {error}"
    older = [p for p in reversed(manager.checkpoints()) if p != checkpoint and not damaged_files(p)]
    advice = (f"The newest intact checkpoint is {older[0]}: resume with --resume_from_checkpoint {older[0]}."
              if older else "No other intact checkpoint was found.")
    return f"Cannot resume from {checkpoint} ({what}). {advice}"


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def space_error(error: BaseException, path: Path, needed_bytes: int, resume_from: Path | None) \
        -> CheckpointSaveError | None:
    """A clear error for a save that ran out of space (any of the forms ``storage.out_of_space`` knows), naming
    the path, the space a save needs and the space free; None for other errors."""
    if not out_of_space(error):
        return None
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    where = f"resume from {resume_from}" if resume_from else "restart"
    return CheckpointSaveError(
        f"No space left while writing {path} ({space_reason(error)}): a checkpoint of this run takes about "
        f"{needed_bytes / 1e6:,.0f} MB and {free / 1e6:,.0f} MB are free. Free space (or lower --keep_last, or move "
        f"--output_dir), then {where}.")


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


def append_jsonl(path: str | Path, record: dict) -> None:
    """One line appended and flushed to disk (records of changes and interventions)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_step(record: dict) -> int:
    """The step a record's effect starts from: a rollback's is the step it returned to (it survives as the run's
    own act), every other record's its own step."""
    return int(record.get("to_step", record.get("step", 0)))


def set_aside_records(layout: RunLayout, step: int, branch: Path | None, new_branch: Callable[[], Path]) -> Path | None:
    """A run returning to the checkpoint of ``step`` (a resume, a rollback) abandons what came after it; the
    records of those steps go with the abandoned branch, so every record left in the run describes a step that
    survived. Interventions after ``step`` go; setting changes from ``step`` on go too (a return to ``step``
    applies, and records, the settings afresh). Returns the branch folder (made only if something moves)."""
    for path, keep in ((layout.interventions_file, lambda r: record_step(r) <= step),
                       (layout.changes_file, lambda r: record_step(r) < step)):
        records = read_jsonl(path)
        kept = [r for r in records if keep(r)]
        if len(kept) == len(records):
            continue
        branch = branch or new_branch()
        for record in records:
            if not keep(record):
                append_jsonl(branch / path.name, record)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in kept))
        os.replace(tmp, path)
    return branch


# ----------------------------------------------------------------------------------------------- save / resume
class Checkpointer:
    """Saves and restores one run. ``save``, ``save_final`` and ``resume`` are called on every process (each writes
    or reads its part of the state; sharded weights are gathered by all); the main process publishes folders.

    ``config`` returns the run's configuration as carried out (saved beside every model), ``describe`` what
    ``training_state.json`` records (step, tokens, losses...)."""

    def __init__(self, accelerator, model: torch.nn.Module, config: Callable[[], RunConfig], layout: RunLayout,
                 describe: Callable[[], dict], keep_last: int = 0, save_every: int = 0):
        self.accelerator, self.model, self.config, self.layout = accelerator, model, config, layout
        self.describe, self.save_every = describe, save_every
        self.manager = CheckpointManager(layout.checkpoints_dir, keep_last)

    def due(self, step: int, last: bool) -> bool:
        """The checkpoint cadence (``--save_every``; 0 saves only at the end): every N steps and the last step."""
        return last or is_due(step, self.save_every)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def latest_note(self) -> str:
        latest = self.manager.latest()
        return f"the last good checkpoint is {latest}" if latest else "no checkpoint was saved yet"

    # -- saving
    def save(self, step: int) -> Path:
        """Every process writes its part of ``save_state`` into a temporary folder; the main process adds the
        ``from_pretrained`` folder and the manifest, and publishes it with a rename."""
        tmp = self.manager.temporary_path(step)
        if self.is_main:
            self.manager.remove_incomplete()
        self.accelerator.wait_for_everyone()
        self._write_or_explain(tmp, lambda: (self.accelerator.save_state(str(tmp)),
                                             self.save_model(tmp / CHECKPOINT_MODEL_SUBDIR)))
        self.accelerator.wait_for_everyone()
        path = self.manager.path_for(step)
        if self.is_main:
            self._write_or_explain(tmp, lambda: write_manifest(tmp))
            path = self.manager.commit(step)
        self.accelerator.wait_for_everyone()
        return path

    def save_model(self, folder: Path) -> None:
        """A folder ``AutoModelForCausalLM.from_pretrained`` loads: weights, config with auto_map, modeling code,
        tokenizer files, and what the run knows about itself (``training_state.json``, ``run_config.yaml``).
        Called on every process: sharded weights are gathered by all of them; the main process writes."""
        state_dict = full_state_dict(self.model) if is_sharded(self.model) else None
        if not self.is_main:
            return
        with quiet_progress_bars():
            self.model.save_pretrained(folder, state_dict=state_dict)
        save_hf_tokenizer(folder, model_max_length=self.model.config.n_positions)
        self.config().save(folder / RUN_CONFIG_FILE)  # as the run carries it out (a cool-down's end)
        write_json(folder / TRAINING_STATE_FILE, self.describe())

    def save_final(self) -> Path:
        """``final/`` written like a checkpoint: a complete temporary folder, fsynced, then renamed into place, so
        a crash while writing it leaves the previous ``final/`` whole (weights and training_state.json agree)."""
        final = self.layout.final_dir
        tmp = final.with_name(temporary_name(final.name))
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self._write_or_explain(tmp, lambda: self.save_model(tmp))
        if self.is_main:
            self._write_or_explain(tmp, lambda: write_manifest(tmp))  # what is ours in final/ (ownership)
            if foreign := foreign_in_model_folder(final) if final.is_dir() else []:
                raise CheckpointSaveError(
                    f"The final model is complete in {tmp}, but {final} holds files this run did not write "
                    f"({describe_paths(foreign, final)}), so it was not replaced. Move those files out, then rename "
                    f"{tmp.name} to {final.name} (or resume to write it again).")
            publish_folder(tmp, final)
        return final

    def _write_or_explain(self, tmp: Path, write: Callable[[], object]) -> None:
        """Run ``write``; on failure give the space back (the previous folders are intact) and turn any form of a
        full disk into a clear ``CheckpointSaveError``."""
        try:
            write()
        except Exception as error:
            latest = self.manager.latest()
            shutil.rmtree(tmp, ignore_errors=True)
            needed = folder_size(latest) if latest else 5 * 4 * sum(p.numel() for p in self.model.parameters())
            if (clear := space_error(error, tmp, needed, latest)) is not None:
                raise clear from error
            raise

    # -- resuming
    def load(self, path: Path) -> None:
        """Restore the accelerator state of ``path`` (every registered object), refusing damaged files first."""
        damaged = damaged_files(path)
        if damaged:
            raise ConfigError(describe_unloadable(path, None, self.manager, damaged))
        try:
            self.accelerator.load_state(str(path))
        except ValueError as error:  # the data loader refuses a position in other shards / shuffling
            raise ConfigError(f"Cannot resume from {path}: {error}") from error
        except Exception as error:  # noqa: BLE001 - torch/safetensors raise many types for damaged files
            raise ConfigError(describe_unloadable(path, error, self.manager)) from error
        # load_state restores Accelerate's micro-step counter, which counts micro-steps of the saved layout
        # (processes x accumulation). Checkpoints are taken at optimizer-step boundaries, so under any layout the
        # position inside the step is 0; a stale count would make accumulate() miss the sync micro-step.
        self.accelerator.step = 0

    def branch_after(self, step: int) -> Path | None:
        """Move what this folder holds after ``step`` (newer checkpoints, a later ``final/``, and the records of
        the steps after it) to an abandoned branch (main process); returns the branch folder or None."""
        branch = None
        if self.is_main:
            branch = self.manager.abandon_after(step, extra=self._final_after(step))
            branch = set_aside_records(self.layout, step, branch, lambda: self.manager.new_branch_dir(step))
        self.accelerator.wait_for_everyone()
        return branch

    def _final_after(self, step: int) -> list[Path]:
        """``final/`` if it was written by a run that went past ``step`` (it belongs to the abandoned branch)."""
        state_file = self.layout.final_dir / TRAINING_STATE_FILE
        if state_file.exists() and json.loads(state_file.read_text()).get("global_step", 0) > step:
            return [self.layout.final_dir]
        return []
