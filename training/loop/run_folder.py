"""A run folder belongs to one run: a lock held while the run is alive, and no fresh run over an old one.

The lock is ``<run>/.run.lock``: the main process (global rank 0) opens it, takes an exclusive ``flock`` that the
operating system drops when the process dies (SIGKILL included), and writes who holds it (host, pid, start time,
command). A second launch on the same folder finds the ``flock`` taken and is refused at once, naming the holder.
A lock file whose ``flock`` is free was left by a process that is gone: it is reported and taken over. The other
processes of a multi-process run share rank 0's lock (they are told its outcome, so every process stops together
when it is refused).

A fresh run (no ``--resume_from_checkpoint``) refuses a folder that already holds a run's outputs, naming them and
the two ways on: resume, or ``--overwrite_output_dir`` (the Hugging Face convention), which removes them first.
"""

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from ..layout import RunLayout
from .arguments import ConfigError
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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def check_fresh_run_folder(folder: str | Path, resuming: bool, overwrite: bool, say=print) -> None:
    """Refuse to start a fresh run over another run's outputs; with ``overwrite`` remove them (data prepared on the
    fly is kept: it is checked against its source when used)."""
    layout = RunLayout(folder)
    outputs = layout.run_outputs()
    if resuming or not outputs:
        return
    names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in outputs)
    if overwrite:
        for path in outputs:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        say(f"--overwrite_output_dir: removed the previous run's {names} from {layout.root}.")
        return
    latest = CheckpointManager(layout.checkpoints_dir).latest()
    resume = (f"resume it with --resume_from_checkpoint latest (its newest checkpoint is {latest.name})" if latest
              else "resume is not possible (it has no checkpoint)")
    raise ConfigError(
        f"--output_dir {layout.root} already holds a run ({names}). A fresh run would overwrite its checkpoints and "
        f"mix its logs. Either {resume}, start over with --overwrite_output_dir true (removes {names}), or choose "
        "another --output_dir.")
