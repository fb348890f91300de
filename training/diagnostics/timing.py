"""Where the time goes: each step's wall time split into data, forward+backward, callbacks and the optimizer, and the
occasional work (evaluation, HellaSwag, checkpoints, samples, logging) measured where it happens.

The sections are disjoint and need no extra synchronisation on a GPU: the loss's reduction (``.item()``) ends the
forward+backward section by waiting for its kernels, the gradient norm and the step's closing
``torch.cuda.synchronize()`` end the optimizer's. Data loading runs on the CPU while the GPU works on the previous
micro-batch, so its time is its own. Each step's times are logged (``time/*_ms``) and the session's totals become
the shares of wall time in the end-of-run summary.
"""

import contextlib
import time

CATEGORIES = ("data", "forward_backward", "callbacks", "optimizer", "evaluation", "hellaswag", "checkpoint",
              "sampling", "logging")
PER_STEP = ("data", "forward_backward", "callbacks", "optimizer")


class StepClock:
    def __init__(self):
        self.totals = dict.fromkeys(CATEGORIES, 0.0)
        self.current = dict.fromkeys(CATEGORIES, 0.0)

    @contextlib.contextmanager
    def measure(self, category: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.totals[category] += elapsed
            self.current[category] += elapsed

    def take(self) -> dict[str, float]:
        """This step's seconds per category (and forget them)."""
        current, self.current = self.current, dict.fromkeys(CATEGORIES, 0.0)
        return current

    def shares(self, wall_seconds: float) -> dict[str, float]:
        """Fractions of ``wall_seconds`` per category, and ``other`` (bookkeeping, progress bar, what no section
        covers)."""
        if wall_seconds <= 0:
            return {}
        out = {name: seconds / wall_seconds for name, seconds in self.totals.items()}
        out["other"] = max(0.0, 1.0 - sum(out.values()))
        return out
