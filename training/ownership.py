"""What a folder holds that this project wrote, so that nothing else is ever removed, moved or replaced.

Every run folder carries a marker, ``.gpt2-pretrain.json`` (``layout.MARKER_FILE``), written before anything else
of the run: it says that the folder holds a run of this project and lists the names a run creates there. Only a
folder with the marker is ever cleared (``--overwrite_output_dir``, a sweep's re-run), and only of those names; a
folder holding anything else is refused, naming what is not ours and the way on. What is ours is decided file by
file, not by folder name:

- top level: the names of the run layout (``config.yaml``, event files, ``checkpoints/``, ``final/``, ...);
- a checkpoint or model folder: the files its ``manifest.json`` lists (written last, at every save; folders of
  older versions without one: the file names a save writes);
- ``analysis/`` and a Hub staging folder: the names their writers recorded in ``.written.json`` (an older
  ``analysis/`` without one: the report and ``.png`` plots it writes);
- ``data/``: token shards, their ``meta.json`` and the downloaded corpus.

Destructive operations also refuse the places nobody means to clear: the filesystem root, the home folder, the
current folder and any folder above them.

A leaf below ``layout`` (imports nothing else of the project).
"""

import fnmatch
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from .errors import FolderNotOwned
from .layout import (
    ABANDONED_DIR,
    ANALYSIS_DIR,
    BRANCH_FILE,
    CHANGES_FILE,
    CHECKPOINT_MODEL_SUBDIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DATA_DIR,
    DOWNLOAD_SUBDIR,
    EVENT_FILE_PREFIX,
    FINAL_DIR,
    INTERVENTIONS_FILE,
    LAYERS_DIR,
    LEGACY_TENSORBOARD_DIR,
    LOCK_FILE,
    MANIFEST_FILE,
    MARKER_FILE,
    PREPARED_SHARDS_SUBDIR,
    REFERENCE_EVAL_FILE,
    RUN_CONFIG_FILE,
    SHARD_META_FILE,
    SHARD_NAME,
    SWEEP_RUN_FILE,
    TRAINING_STATE_FILE,
    WRITTEN_FILE,
    Tags,
    checkpoint_step,
    is_temporary,
    previous_name,
    temporary_name,
)

PROJECT = "gpt2-pretrain"
MARKER_VERSION = 1
PROBE_PREFIX = ".write_probe."  # make_writable_dir's transient probe files

# Top-level files of a run folder, and the folders a run creates (each checked by its own rule below).
RUN_FILES = (CONFIG_FILE, REFERENCE_EVAL_FILE, CHANGES_FILE, INTERVENTIONS_FILE, BRANCH_FILE, LOCK_FILE,
             SWEEP_RUN_FILE, MARKER_FILE)
RUN_FOLDERS = (CHECKPOINTS_DIR, FINAL_DIR, ANALYSIS_DIR, DATA_DIR, LEGACY_TENSORBOARD_DIR, LAYERS_DIR)
# What a model folder (final/, checkpoints/step_N/model/) holds: save_pretrained, the tokenizer and the run's files.
MODEL_FOLDER_FILES = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors",
                      "config.json", "generation_config.json", "modeling_gpt.py", "configuration_gpt.py", "loss.py",
                      "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                      "special_tokens_map.json", "added_tokens.json", TRAINING_STATE_FILE, RUN_CONFIG_FILE,
                      MANIFEST_FILE)
# What accelerator.save_state writes into a checkpoint folder (older checkpoints without a manifest).
SAVE_STATE_FILES = ("model*.safetensors", "model*.bin", "pytorch_model*.bin", "optimizer*.bin", "scheduler*.bin",
                    "sampler*.bin", "dl_state_dict*.bin", "random_states_*.pkl", "custom_checkpoint_*.pkl",
                    "scaler.pt", "*.safetensors.index.json", MANIFEST_FILE)
LEGACY_ANALYSIS_FILES = ("*.png", "report.md", "report.json", WRITTEN_FILE)


# ----------------------------------------------------------------------------------------------- places
def dangerous_target(path: str | Path) -> str | None:
    """Why ``path`` must never be cleared or filled with a run's files (the root, the home folder, the current
    folder, or a folder above one of them); None when it may."""
    target = Path(path).resolve()
    special = {Path("/").resolve(): "the filesystem root", Path.home().resolve(): "your home folder",
               Path.cwd().resolve(): "the current folder"}
    for place, name in special.items():
        if target == place:
            return name
        if target in place.parents:
            return f"a folder above {name} ({place})"
    return None


def refuse_dangerous(path: str | Path, what: str) -> None:
    if (why := dangerous_target(path)) is not None:
        raise FolderNotOwned(f"{what} {path} is {why}: it is never cleared or used as a run folder. Choose a new "
                             "folder, e.g. runs/<name>.")


# ----------------------------------------------------------------------------------------------- the marker
def marker_path(root: str | Path) -> Path:
    return Path(root) / MARKER_FILE


def has_marker(root: str | Path) -> bool:
    """Whether ``root`` holds a run of this project (its marker is a readable JSON object of this project)."""
    path = marker_path(root)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("project") == PROJECT
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def write_marker(root: str | Path, adopted: bool = False) -> Path:
    """Mark ``root`` as a run folder of this project (atomically; kept if already there)."""
    path = marker_path(root)
    if has_marker(root):
        return path
    record = {"project": PROJECT, "version": MARKER_VERSION, "created": time.time(), "host": socket.gethostname(),
              "command": " ".join(sys.argv), "creates": [*RUN_FILES, f"{EVENT_FILE_PREFIX}*",
                                                         *(f"{name}/" for name in RUN_FOLDERS)]}
    if adopted:
        record["adopted"] = "an existing run folder written by an older version (no marker), taken over on resume"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------- what is ours
def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _manifest_names(folder: Path) -> set[str] | None:
    try:
        files = json.loads((folder / MANIFEST_FILE).read_text())["files"]
        return set(files) if isinstance(files, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None


def recorded_names(folder: Path) -> set[str] | None:
    """The names recorded in ``folder``'s ``.written.json``; None without one."""
    try:
        names = json.loads((folder / WRITTEN_FILE).read_text())
        return set(names) if isinstance(names, list) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _relative_name(path: Path, folder: Path) -> str:
    if path.is_absolute():
        return path.relative_to(folder).as_posix() if folder in path.parents else path.name
    return path.as_posix()


def record_written(folder: str | Path, names) -> None:
    """Add ``names`` (files just written into ``folder``: names, paths inside it, or paths relative to it such as
    ``plots/lossGraph.png``) to its ``.written.json``."""
    folder = Path(folder)
    known = recorded_names(folder) or set()
    known.update(_relative_name(Path(name), folder) for name in names)
    tmp = folder / (WRITTEN_FILE + ".tmp")
    tmp.write_text(json.dumps(sorted(known)) + "\n")
    os.replace(tmp, folder / WRITTEN_FILE)


def _foreign_files(folder: Path, allowed) -> list[Path]:
    """Files (and any folder) in ``folder`` that ``allowed(relative name)`` does not accept, recursively."""
    foreign = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        if path.name.startswith(PROBE_PREFIX) or allowed(relative):
            continue
        foreign.append(path)
    return foreign


def foreign_in_model_folder(folder: Path) -> list[Path]:
    """A model folder (``final/``, ``step_N/model/``): what its manifest lists, else the names a save writes."""
    listed = _manifest_names(folder)
    if listed is not None:
        return _foreign_files(folder, lambda name: name in listed or name == MANIFEST_FILE)
    return _foreign_files(folder, lambda name: "/" not in name and _matches(name, MODEL_FOLDER_FILES))


def foreign_in_checkpoint(folder: Path) -> list[Path]:
    """A checkpoint folder: its manifest's files; without one (an older version, or a save cut short) the files
    ``save_state`` writes and a model folder."""
    if is_temporary(folder.name):
        return []  # a save that was interrupted: everything in it is ours, half-written
    listed = _manifest_names(folder)
    if listed is not None:
        return _foreign_files(folder, lambda name: name in listed or name == MANIFEST_FILE)

    def allowed(name: str) -> bool:
        head, _, rest = name.partition("/")
        if rest:
            return head == CHECKPOINT_MODEL_SUBDIR and "/" not in rest and _matches(rest, MODEL_FOLDER_FILES)
        return _matches(name, SAVE_STATE_FILES)
    return _foreign_files(folder, allowed)


def _foreign_in_checkpoints(folder: Path) -> list[Path]:
    foreign = []
    for child in _children(folder):
        step_name = child.name.removesuffix(previous_name("")).removesuffix(temporary_name(""))
        if child.is_dir() and checkpoint_step(step_name) is not None:
            foreign += foreign_in_checkpoint(child)
        elif child.is_dir() and child.name == ABANDONED_DIR:
            for branch in _children(child):
                foreign += _foreign_in_branch(branch) if branch.is_dir() else [branch]
        else:
            foreign.append(child)
    return foreign


def _foreign_in_branch(folder: Path) -> list[Path]:
    """``checkpoints/abandoned/<branch>/``: the checkpoints, ``final/`` and records a rollback moved there."""
    foreign = []
    for child in _children(folder):
        if child.is_dir() and checkpoint_step(child.name) is not None:
            foreign += foreign_in_checkpoint(child)
        elif child.is_dir() and child.name == FINAL_DIR:
            foreign += foreign_in_model_folder(child)
        elif not (child.is_file() and child.name in (CHANGES_FILE, INTERVENTIONS_FILE)):
            foreign.append(child)
    return foreign


def is_analysis_output(name: str) -> bool:
    """A name ``analyze_run.py`` writes into its output folder (a plot, the report, its record)."""
    return _matches(name, LEGACY_ANALYSIS_FILES)


def foreign_in_analysis(folder: Path) -> list[Path]:
    listed = recorded_names(folder)
    if listed is not None:
        return _foreign_files(folder, lambda name: name in listed or name == WRITTEN_FILE)
    return _foreign_files(folder, lambda name: "/" not in name and is_analysis_output(name))


def foreign_in_shards(folder: Path) -> list[Path]:
    """A folder of token shards: shards, their ``meta.json`` and the temporary files of an interrupted write."""
    def allowed(name: str) -> bool:
        base = name.removesuffix(".tmp")
        return "/" not in name and (base == SHARD_META_FILE or SHARD_NAME.match(base) is not None)
    return _foreign_files(folder, allowed)


def _foreign_in_data(folder: Path) -> list[Path]:
    foreign = []
    for child in _children(folder):
        if child.is_dir() and child.name == PREPARED_SHARDS_SUBDIR:
            foreign += foreign_in_shards(child)
        elif child.is_dir() and child.name == DOWNLOAD_SUBDIR:
            foreign += [p for p in _children(child) if not p.is_file()]  # the corpus, named after its URL
        else:
            foreign.append(child)
    return foreign


# Tags only this project's runs write, among the first records of every event file a run (or the reference's
# measurement) opens: the run's facts at step 0, its config.yaml as text, the measured reference.
OWN_EVENT_TAGS = (Tags.RUN_PARAMETERS, Tags.CONFIG_TEXT + "/text_summary", Tags.REFERENCE_VAL_LOSS)
_FIRST_RECORDS = 64


def written_by_this_project(path: Path) -> bool:
    """Whether an event file is one of ours: a tag only our runs write among its first records, or nothing but
    TensorBoard's header (a run that stopped at once: nothing in it to lose). Another project's logs copied into a
    run folder share the file name pattern, not these tags; an unreadable file is not ours."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    try:
        records = summaries = 0
        for records, event in enumerate(EventFileLoader(str(path)).Load(), start=1):
            if records > _FIRST_RECORDS:
                break
            tags = [value.tag for value in event.summary.value]
            if any(tag in OWN_EVENT_TAGS or tag.startswith(Tags.BY_BLOCK) for tag in tags):
                return True
            summaries += bool(tags)
        return records > 0 and summaries == 0  # the header (file_version) alone
    except Exception:  # noqa: BLE001 - a damaged or foreign file, whatever the reader's complaint
        return False


def _foreign_in_legacy_tensorboard(folder: Path) -> list[Path]:
    foreign = _foreign_files(folder, lambda name: Path(name).name.startswith(EVENT_FILE_PREFIX))
    return foreign + [p for p in folder.rglob(EVENT_FILE_PREFIX + "*") if p.is_file() and p not in foreign
                      and not written_by_this_project(p)]


def _foreign_in_layers(folder: Path) -> list[Path]:
    """``layers/h.NN/``: the blocks' TensorBoard runs, holding only event files of ours."""
    foreign = []
    for child in _children(folder):
        if child.is_dir() and re.fullmatch(r"h\.\d+", child.name):
            foreign += [p for p in sorted(child.rglob("*")) if not p.is_dir() and
                        not (p.name.startswith(EVENT_FILE_PREFIX) and written_by_this_project(p))]
        else:
            foreign.append(child)
    return foreign


_FOLDER_RULES = {CHECKPOINTS_DIR: _foreign_in_checkpoints, FINAL_DIR: foreign_in_model_folder,
                 previous_name(FINAL_DIR): foreign_in_model_folder, temporary_name(FINAL_DIR): lambda folder: [],
                 ANALYSIS_DIR: foreign_in_analysis, DATA_DIR: _foreign_in_data,
                 LEGACY_TENSORBOARD_DIR: _foreign_in_legacy_tensorboard, LAYERS_DIR: _foreign_in_layers}


def foreign_in_run_folder(root: str | Path) -> list[Path]:
    """Everything in a run folder that no run of this project wrote (see the module docstring)."""
    foreign = []
    for child in _children(Path(root)):
        name = child.name
        if child.is_dir() and not child.is_symlink() and name in _FOLDER_RULES:
            foreign += _FOLDER_RULES[name](child)
        elif child.is_file() and name.startswith(EVENT_FILE_PREFIX):
            if not written_by_this_project(child):
                foreign.append(child)
        elif child.is_file() and (name in RUN_FILES or name.startswith(PROBE_PREFIX) or name == MARKER_FILE + ".tmp"):
            continue
        else:
            foreign.append(child)
    return foreign


def describe_paths(paths: list[Path], root: str | Path, limit: int = 8) -> str:
    root = Path(root)
    names = []
    for path in paths[:limit]:
        try:
            shown = path.relative_to(root).as_posix()
        except ValueError:
            shown = str(path)
        names.append(shown + ("/" if path.is_dir() else ""))
    return ", ".join(names) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def refuse_foreign(foreign: list[Path], root: str | Path, doing: str, way_on: str) -> None:
    """Raise ``FolderNotOwned`` naming the files of ``root`` that this project did not write."""
    if foreign:
        raise FolderNotOwned(f"{root} holds files this project did not write ({describe_paths(foreign, root)}), so "
                             f"it will not {doing}: nothing was changed. {way_on}")


# ----------------------------------------------------------------------------------------------- removal
def remove_path(path: Path) -> None:
    """Remove one file or folder the caller has checked is ours."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
