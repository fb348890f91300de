"""How progress shows on the console: a tqdm bar when the output is a terminal, plain log lines every
``--log_every`` steps otherwise (a log file, a CI job, Slurm's output), so nothing is lost to carriage returns."""

import sys
import time

from tqdm.auto import tqdm

from ..cadence import is_due
from ..layout import Tags


class ProgressDisplay:
    """The main process's view of the run's steps (module docstring)."""

    def __init__(self, state, logging, is_main: bool, stream=None):
        self.state, self.log_every = state, logging.log_every
        self.stream = stream or sys.stderr
        shown = is_main and logging.progress_bar
        self.interactive = shown and self.stream.isatty()
        self.plain = shown and not self.interactive
        self.started = time.perf_counter()
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                        disable=not self.interactive, dynamic_ncols=True, file=self.stream)

    def step(self, metrics: dict, last_val: float | None) -> None:
        fields = {"loss": f"{metrics[Tags.TRAIN_LOSS]:.4f}"}
        if last_val is not None:
            fields["val"] = f"{last_val:.4f}"
        fields.update(lr=f"{metrics[Tags.TRAIN_LR]:.2e}", tok_s=f"{metrics[Tags.TRAIN_TOKENS_PER_SEC]:,.0f}")
        if self.interactive:
            self.bar.set_postfix(fields, refresh=False)  # before update: drawn once
            self.bar.update(1)
        elif self.plain:
            step, total = self.state.global_step, self.state.max_steps
            if step == 1 or is_due(step, self.log_every) or step >= total:
                elapsed = time.perf_counter() - self.started
                print(f"step {step}/{total} " + " ".join(f"{k} {v}" for k, v in fields.items())
                      + f" elapsed {elapsed:,.0f}s", file=self.stream, flush=True)

    def jump(self, step: int) -> None:
        """After a rollback: the run is back at ``step``."""
        if self.interactive:
            self.bar.n = step
            self.bar.refresh()
        elif self.plain:
            print(f"step {step}/{self.state.max_steps}: rolled back", file=self.stream, flush=True)

    def close(self) -> None:
        self.bar.close()
