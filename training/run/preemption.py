"""Preemption: SIGTERM (cluster schedulers, spot instances) or SIGINT (Ctrl-C) ends the run cleanly.

The first signal only sets a flag. The loop reduces the flag across processes together with the step's loss (no
extra collective), so every process agrees on the step after which to stop; it finishes that optimizer step,
saves a checkpoint, says where it is and the command that resumes, and exits with ``PREEMPTED_EXIT_CODE``. A
second signal exits at once, without saving. A repeat of the signal within ``REPEAT_WINDOW`` seconds is not a
second signal: under ``accelerate launch`` a worker gets the signal from the terminal or the scheduler and, a
moment later, again from the launcher, which forwards it (the launcher then waits ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``
seconds, 30 by default, before it kills the workers).
"""

import os
import signal
import threading
import time

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry" (a requeue script can test for it).
PREEMPTED_EXIT_CODE = 75
REPEAT_WINDOW = 2.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(RuntimeError):
    """The run stopped on a signal after saving a checkpoint; ``what`` says where, the message adds how to
    resume (``resume``, the command)."""

    exit_code = PREEMPTED_EXIT_CODE

    def __init__(self, what: str, resume: str):
        super().__init__(f"{what} Resume with:\n  {resume}")
        self.what, self.resume = what, resume


class SignalCatcher:
    """Turns the first SIGTERM/SIGINT into ``requested`` (see the module docstring) while installed."""

    def __init__(self):
        self.received: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. a notebook's worker thread)
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._first_at = signum, now
            os.write(2, f"\n{signal.Signals(signum).name} received: finishing this step, then saving a checkpoint "
                        "(send it again to exit at once, without saving).\n".encode())
            return
        if now - self._first_at < REPEAT_WINDOW:
            return  # the launcher forwarding the same signal
        os.write(2, f"\n{signal.Signals(signum).name} received again: exiting now, without saving.\n".encode())
        os._exit(128 + signum)


def resume_command(output_dir: str, argv: list[str] | None = None) -> str:
    """The command that resumes this run: the same script and arguments with ``--resume_from_checkpoint latest``
    (and the run folder made explicit). Under ``accelerate launch`` the launcher's own options are not visible to
    the script, so they are left as a placeholder."""
    import shlex
    import sys

    argv = list(sys.argv if argv is None else argv)
    script, rest = argv[0], argv[1:]
    kept, index = [], 0
    while index < len(rest):
        item = rest[index]
        index += 1
        if item in ("--resume_from_checkpoint", "--output_dir"):
            index += 1  # and its value
        elif item == "--overwrite_output_dir":
            if index < len(rest) and rest[index].lower() in ("true", "false", "yes", "no", "1", "0"):
                index += 1
        elif not item.startswith(("--resume_from_checkpoint=", "--output_dir=", "--overwrite_output_dir=")):
            kept.append(item)
    kept += ["--output_dir", str(output_dir), "--resume_from_checkpoint", "latest"]
    launched = "LOCAL_RANK" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ
    prefix = "accelerate launch <the same launch options> " if launched else "python "
    return prefix + shlex.join([script, *kept])
