"""A run folder belongs to one run: a lock held while the run is alive, and no fresh run over an old one.

The lock is ``<run>/.run.lock``: the main process (global rank 0) opens it, takes an exclusive ``flock`` that the
operating system drops when the process dies (SIGKILL included), and writes who holds it (host, pid, start time,
command). A second launch on the same folder finds the ``flock`` taken and is refused at once, naming the holder.
A lock file whose ``flock`` is free was left by a process that is gone: it is reported and taken over. The other
processes of a multi-process run share rank 0's lock (they are told its outcome, so every process stops together
when it is refused).

A fresh run (no ``--resume_from_checkpoint``) refuses a folder that already holds a run's outputs, naming them and
the two ways on: resume, or ``--overwrite_output_dir`` (the Hugging Face convention), which removes them first, and
only from a folder marked as a run of this project that holds nothing else (``training/ownership.py``). A folder
of someone else's files is refused untouched.
"""

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from ..errors import ConfigError, FolderNotOwned
from ..layout import MARKER_FILE, TRAINING_STATE_FILE, RunLayout
from ..ownership import (
    describe_paths,
    foreign_in_model_folder,
    foreign_in_run_folder,
    has_marker,
    refuse_dangerous,
    refuse_foreign,
    remove_path,
    write_marker,
)
from .checkpointing import CheckpointManager


class RunFolderBusy(ConfigError):
    """Another live process owns the run folder."""


def _process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - psutil missing, no such process, no permission
        return None


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {when}: {holder.get('command', '?')})"


class RunFolderLock:
    """The ``flock``-backed ownership record of one run folder (see the module docstring)."""

    def __init__(self, folder: str | Path):
        self.path = RunLayout(folder).lock_file
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> str | None:
        """Take the lock; returns a note when a stale lock of a dead process was taken over. Raises
        ``RunFolderBusy`` when a live process holds it."""
        for _ in range(5):
            self._refuse_odd_lock_file()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as error:  # a symlink put there between the check and the open, or no permission
                raise RunFolderBusy(f"Cannot open the run folder's lock {self.path} ({error.strerror}); remove it if "
                                    "no run is using the folder, or choose another --output_dir.") from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise
                raise RunFolderBusy(self._busy_message(self._read()))
            # The file may have been removed (a run that just ended) between our open and flock: start again.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self._read_fd(fd)
            if previous and self._alive_elsewhere(previous):
                # The flock was free but the recorded process is alive on this host: a filesystem whose flock
                # does not work (some network mounts). Do not guess: refuse.
                os.close(fd)
                raise RunFolderBusy(self._busy_message(previous) + " (its lock could be taken, so this filesystem "
                                    "may not support flock: make sure only one run uses the folder)")
            self._fd = fd
            self._write_record()
            if previous:
                return (f"Note: {self.path} was left by {_describe(previous)}, which is no longer running (crashed or "
                        "killed); this run takes the folder over.")
            return None
        raise RunFolderBusy(f"Could not take {self.path}: it kept being replaced by another process.")

    def _refuse_odd_lock_file(self) -> None:
        """The lock must be a plain file of ours: a folder, a link or a device in its place is somebody else's."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            kind = "folder" if stat.S_ISDIR(mode) else "symbolic link" if stat.S_ISLNK(mode) else "special file"
            raise FolderNotOwned(f"{self.path} is a {kind}, not the lock file a run writes: it is not touched. "
                                 "Remove it yourself if it is not needed, or choose another --output_dir.")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding the flock: nobody can take it between the two
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def _write_record(self) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                  "process_start": _process_start_time(os.getpid()), "command": " ".join(sys.argv)}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(self._fd)

    @staticmethod
    def _read_fd(fd: int) -> dict:
        raw = os.pread(fd, 1 << 16, 0)
        try:
            record = json.loads(raw.decode() or "{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"pid": "?", "host": "?", "command": "unreadable lock record"} if raw.strip() else {}
        return record if isinstance(record, dict) else {}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _alive_elsewhere(record: dict) -> bool:
        """Whether the recorded process is a live process on this host other than this one."""
        if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
            return False
        if record["pid"] == os.getpid():
            return False
        started = _process_start_time(record["pid"])
        return started is not None and abs(started - (record.get("process_start") or started)) < 1.0

    def _busy_message(self, holder: dict) -> str:
        who = _describe(holder) if holder else "another process"
        return (f"The run folder {self.path.parent} is in use by {who}. Two runs in one folder would overwrite each "
                f"other's checkpoints: wait for it to finish (or stop it), or choose another --output_dir. If that "
                f"process is gone but this message persists, the filesystem keeps a stale lock: delete {self.path}.")


def folder_state(folder: str | Path) -> str:
    """``"absent"``, ``"empty"`` or ``"used"``: what a folder was before a run claimed it (``undo_unused_claim``)."""
    folder = Path(folder)
    if not folder.exists():
        return "absent"
    try:
        return "empty" if folder.is_dir() and not any(folder.iterdir()) else "used"
    except OSError:
        return "used"


def undo_unused_claim(folder: str | Path, before: str) -> None:
    """A run refused before it wrote anything but its marker leaves the folder as it found it: a new folder is
    removed, an empty one emptied again (a retry, or another --output_dir, then starts clean). A folder that was in
    use before, or holds anything else now, is left as it is."""
    folder = Path(folder)
    if before == "used":
        return
    try:
        if {p.name for p in folder.iterdir()} - {MARKER_FILE}:
            return
        (folder / MARKER_FILE).unlink(missing_ok=True)
        if before == "absent":
            folder.rmdir()
    except OSError:
        pass


def check_run_folder(folder: str | Path, resuming: bool, overwrite: bool, say=print) -> None:
    """Whose folder is this? A run resuming in place marks a folder of an older version as ours; a fresh run needs an
    empty folder, a new one, or (with ``overwrite``) a run folder of this project holding nothing but a run's files,
    whose outputs it removes (prepared data is kept: it is checked against its source when used). A folder holding
    anything else is refused without touching it (``ownership``)."""
    layout = RunLayout(folder)
    root = layout.root
    if resuming:
        final_foreign = foreign_in_model_folder(layout.final_dir) if layout.final_dir.is_dir() else []
        refuse_foreign(final_foreign, layout.final_dir, "replace it with this run's final model",
                       "Move those files out of it (or resume into another folder) and run again.")
        if not has_marker(root) and CheckpointManager(layout.checkpoints_dir).latest() is not None:
            write_marker(root, adopted=True)  # a run of an older version, continued: from now on it is marked
        return
    marked = has_marker(root)
    outputs = layout.run_outputs()
    foreign = foreign_in_run_folder(root)
    if not marked and not written_by_a_run(layout):
        # Never a run of this project: nothing in it is ours, whatever its names (a user's own config.yaml).
        foreign = sorted({*foreign, *outputs})
        outputs = []
    if not foreign and not outputs:
        write_marker(root)
        return
    if overwrite:
        clear_for_fresh_run(layout, foreign, outputs, say)
        return
    if foreign:
        raise FolderNotOwned(
            f"--output_dir {root} holds files this project did not write ({describe_paths(foreign, root)}): a fresh "
            "run refuses it so that nothing of yours is touched (nothing was changed). Choose a new or empty folder "
            "(e.g. runs/<name>).")
    names = describe_paths(outputs, root)
    latest = CheckpointManager(layout.checkpoints_dir).latest()
    resume = (f"resume it with --resume_from_checkpoint latest (its newest checkpoint is {latest.name})" if latest
              else "resume is not possible (it has no checkpoint)")
    overwrite_way = (f"start over with --overwrite_output_dir true (removes {names})" if marked else
                     "remove its files yourself to start over (it was written by an older version, without "
                     f"{MARKER_FILE}, so --overwrite_output_dir does not clear it)")
    raise ConfigError(
        f"--output_dir {root} already holds a run ({names}). A fresh run would overwrite its checkpoints and "
        f"mix its logs. Either {resume}, {overwrite_way}, or choose another --output_dir.")


def written_by_a_run(layout: RunLayout) -> bool:
    """An unmarked folder that a run of an older version wrote: it holds a checkpoint or a final model of ours (names
    alone, a config.yaml or event files, do not make a folder a run)."""
    return CheckpointManager(layout.checkpoints_dir).latest() is not None or \
        (layout.final_dir / TRAINING_STATE_FILE).is_file()


def clear_for_fresh_run(layout: RunLayout, foreign: list[Path], outputs: list[Path], say=print) -> None:
    """``--overwrite_output_dir``: remove a previous run's outputs, only from a folder that is marked as a run of this
    project, holds nothing else, and is not a place nobody means to clear (the home folder, ``.``)."""
    root = layout.root
    refuse_dangerous(root, "--overwrite_output_dir: --output_dir")
    if not has_marker(root):
        raise FolderNotOwned(
            f"--overwrite_output_dir: {root} has no {MARKER_FILE}, the marker every run of this project writes first, "
            f"so it never held a run of this project (or one of a version older than the marker) and which of its "
            f"files ({describe_paths(foreign + outputs, root)}) a run wrote cannot be told. Nothing was removed. "
            "Choose a new folder (e.g. runs/<name>), or clear this one yourself.")
    refuse_foreign(foreign, root, "clear it for a fresh run (--overwrite_output_dir)",
                   "Move those files out of the folder (or choose another --output_dir) and run again.")
    for path in outputs:
        remove_path(path)
    say(f"--overwrite_output_dir: removed the previous run's {describe_paths(outputs, root)} from {root}.")
