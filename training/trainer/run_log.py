"""The run's logs as the loop and its callbacks write them: TensorBoard through Accelerate's tracker, the bounded
headline history in ``TrainerState.log_history``, and the metrics callbacks add to the current step's line.

``RunLog`` implements the ``callbacks.RunLogger`` contract (the only way callbacks reach the logs).
"""

import re

import torch
from transformers import TrainerState

from ..cadence import is_due
from ..layout import TRACKER, Tags
from .block_runs import BlockRuns, by_block_tag

# ``state.log_history`` is pickled into every checkpoint: it keeps the loop's own scalars (train/, val/, hellaswag/,
# reference/), never the per-matrix families, and only the newest entries. TensorBoard holds everything.
HISTORY_PREFIXES = ("train/", "val/", "hellaswag/", "reference/")
HISTORY_LIMIT = 2000


def headline(metrics: dict) -> dict:
    """The entries of ``metrics`` that belong in ``state.log_history``."""
    return {key: value for key, value in metrics.items() if key.startswith(HISTORY_PREFIXES)}


class RunLog:
    """Scalars to TensorBoard and (the headline ones) to ``state.log_history``, then ``on_log``; metrics added to
    the current step's line; histograms and text on the main process."""

    def __init__(self, accelerator, state: TrainerState, on_log, log_every: int = 1):
        self.accelerator, self.state, self._on_log, self.log_every = accelerator, state, on_log, log_every
        self._step_metrics: dict[str, float] = {}
        self.block_runs = BlockRuns()  # the per-block TensorBoard runs (main process; opened by start_tracking)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = self.state.global_step if step is None else step
        self.accelerator.log(metrics, step=step)
        if self.accelerator.is_main_process:
            self.block_runs.log(metrics, step)
        if kept := headline(metrics):
            self.state.log_history.append({**kept, "step": step})
            del self.state.log_history[:-HISTORY_LIMIT]
        self._on_log(metrics)

    def log_scalars(self, metrics: dict[str, float], step: int) -> None:
        """Scalars to the trackers only (facts of the run, records of what was done to it), from the main process."""
        if self.accelerator.is_main_process:
            self.accelerator.log(metrics, step=step)

    def due(self, step: int, last: bool) -> bool:
        """The logging cadence (``--log_every``): the first step, every N steps and the last."""
        return step == 1 or is_due(step, self.log_every, last=last)

    def add_step_metrics(self, metrics: dict[str, float]) -> None:
        self._step_metrics.update(metrics)

    def take_step_metrics(self) -> dict[str, float]:
        """The metrics callbacks added during this step (and forget them)."""
        metrics, self._step_metrics = self._step_metrics, {}
        return metrics

    def writer(self):
        """The run's ``SummaryWriter`` on the main process, None elsewhere."""
        if not self.accelerator.is_main_process or not self.accelerator.trackers:
            return None
        return self.accelerator.get_tracker(TRACKER, unwrap=True)

    def log_histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        if (writer := self.writer()) is not None:
            writer.add_histogram(tag, values.detach().float().cpu(), step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        if (writer := self.writer()) is not None:
            writer.add_text(tag, markdown_lines(text), step)

    def log_hparams(self, values: dict) -> None:
        """The configuration in TensorBoard's HParams tab, written into the run's own event file:
        ``SummaryWriter.add_hparams`` (and Accelerate's ``store_init_configuration``) would open a sub-run named by
        a timestamp, which TensorBoard lists as one more run."""
        from torch.utils.tensorboard.summary import hparams

        if (writer := self.writer()) is not None:
            for summary in hparams(values, {}):
                writer.file_writer.add_summary(summary)

    def log_layout(self) -> None:
        """TensorBoard's Custom Scalars tab: the seed's plots, live. The loss with the measured reference, the
        gradient norm with the clip threshold, one multi-line chart per kind of weight matrix for each ratio (every
        block in one chart: grad_param_ratio.png), the batch against the gradient noise scale, and the hand-made
        changes and spike-guard actions. Without it the first screen is dozens of per-matrix charts in
        alphabetical order."""
        if (writer := self.writer()) is not None:
            writer.add_custom_scalars(custom_scalars_layout())

    def last(self, tag: str) -> float | None:
        """The newest value of a headline tag, or None."""
        return next((h[tag] for h in reversed(self.state.log_history) if tag in h), None)

    def recent(self, tag: str, count: int) -> list[float]:
        return [h[tag] for h in self.state.log_history if tag in h][-count:]

    def flush(self) -> None:
        if (writer := self.writer()) is not None:
            writer.flush()
        self.block_runs.flush()


MATRIX_KINDS = {"attn.c_attn": r"h\.\d+\.attn\.c_attn\.weight", "attn.c_proj": r"h\.\d+\.attn\.c_proj\.weight",
                "mlp.c_fc": r"h\.\d+\.mlp\.c_fc\.weight", "mlp.c_proj": r"h\.\d+\.mlp\.c_proj\.weight",
                "embeddings": r"(wte|wpe)\.weight"}
BLOCK_KINDS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def custom_scalars_layout() -> dict:
    """Categories -> charts -> ["Multiline", tag regexes], in the order TensorBoard shows them. A chart of a block
    matrix reads the blocks' own runs (block_runs.py): one line per block, each in its own colour."""
    def per_kind(prefix: str) -> dict:
        return {f"{prefix}{kind}, every block": ["Multiline", [re.escape(by_block_tag(prefix, kind))
                                                               if kind in BLOCK_KINDS else re.escape(prefix) + pattern]]
                for kind, pattern in MATRIX_KINDS.items()}

    return {
        "1. loss": {"train and validation loss, measured reference": ["Multiline", [
                        re.escape(Tags.TRAIN_LOSS), re.escape(Tags.VAL_LOSS), re.escape(Tags.REFERENCE_VAL_LOSS)]],
                    "learning rate": ["Multiline", [re.escape(Tags.TRAIN_LR), re.escape(Tags.TRAIN_LR_MUON)]]},
        "2. gradient norm": {"gradient norm (before clipping) and the clip threshold": ["Multiline", [
            re.escape(Tags.TRAIN_GRAD_NORM), re.escape(Tags.TRAIN_GRAD_CLIP)]]},
        "3. update/weight ratio (does a layer learn?)": per_kind(Tags.UPDATE_RATIO),
        "4. grad/weight ratio (the seed's grad_param_ratio)": per_kind(Tags.GRAD_RATIO),
        "5. batch vs gradient noise scale": {"B_simple and tokens per step (in tokens)": ["Multiline", [
            re.escape(Tags.NOISE_SCALE_TOKENS), re.escape(Tags.NOISE_TOKENS_PER_STEP)]]},
        "6. acting on the run": {"settings changed on resume, spike-guard actions": ["Multiline", [
            re.escape(Tags.RUN_SETTINGS_CHANGED), re.escape(Tags.SPIKE_GUARD_ACTION)]]},
        "7. where the time goes": {"per step: data, forward+backward, callbacks, optimizer; and occasional work (ms)":
                                   ["Multiline", [re.escape(Tags.TIME) + r".*_ms"]]},
    }


def markdown_lines(text: str) -> str:
    """TensorBoard renders text summaries as Markdown: keep the line breaks."""
    return text.replace("\n", "  \n")


__all__ = ["HISTORY_LIMIT", "RunLog", "headline", "markdown_lines"]
