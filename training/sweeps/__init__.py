"""Sweeps: a base preset plus named variants (and seeds), each an ordinary run folder; run them in turn, resume
an interrupted sweep, and rank the variants by tokens to reach a target validation loss (``config``, ``runner``,
``summary``). The last stage: it uses the loop to train and the analysis to read and judge the runs."""
