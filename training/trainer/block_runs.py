"""One TensorBoard run per transformer block, so that a chart of one kind of matrix tells the blocks apart.

TensorBoard colours a line by its run: the per-layer ratios of all blocks logged into the run itself draw every block
of a chart in the run's one colour. Each block's ratios are therefore also written into its own run,
``<run>/layers/h.NN``, under one tag per kind (``by_block/update_ratio/attn.c_attn``); the custom-scalars charts of
the ratios read those tags, one line per block, each in its own colour. The per-parameter tags stay in the run
itself (the analysis reads them there). Main process only.
"""

import re

from ..layout import RunLayout, Tags

FAMILIES = (Tags.UPDATE_RATIO, Tags.GRAD_RATIO)
BLOCK_MATRIX = re.compile(r"^h\.(\d+)\.(.+)\.weight$")


def by_block_tag(family: str, kind: str) -> str:
    return f"{Tags.BY_BLOCK}{family}{kind}"


class BlockRuns:
    """The per-block writers of one tracking session (opened by ``start_tracking``, closed with the trackers)."""

    def __init__(self):
        self.layout: RunLayout | None = None
        self.purge_step: int | None = None
        self.writers = {}

    def open(self, layout: RunLayout, purge_step: int | None) -> None:
        """A new session (a start, a resume, a rollback): after a resume, each block's run drops what it logged
        after the checkpoint, as the run's own writer does."""
        self.close()
        self.layout, self.purge_step = layout, purge_step

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.layout is None:
            return
        for tag, value in metrics.items():
            family = next((f for f in FAMILIES if tag.startswith(f)), None)
            found = BLOCK_MATRIX.match(tag[len(family):]) if family else None
            if found:
                self._writer(int(found.group(1))).add_scalar(by_block_tag(family, found.group(2)), value, step)

    def _writer(self, block: int):
        if block not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[block] = SummaryWriter(str(self.layout.block_run_dir(block)), purge_step=self.purge_step)
        return self.writers[block]

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
