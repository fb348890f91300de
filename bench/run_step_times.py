#!/usr/bin/env python
"""Per-step wall time of a finished run, read back from its TensorBoard logs (train/step_time_ms,
train/tokens_per_sec, train/mfu): the table bench/gpu_check.sh records for 50 steps of the seed preset.

    python bench/run_step_times.py runs/gpt2-124m-seed --skip 5     # the first steps include compilation
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import table  # noqa: E402
from training.analysis.runs import load_run  # noqa: E402
from training.layout import Tags  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="A run folder (its tensorboard/ events are read).")
    parser.add_argument("--skip", type=int, default=5, help="Leading steps left out of the statistics (warm-up, "
                        "compilation, first evaluation).")
    args = parser.parse_args(argv)
    run = load_run(args.run_dir)
    steps, millis = run.series(Tags.TRAIN_STEP_TIME_MS)
    if not len(millis):
        sys.exit(f"{args.run_dir}: no {Tags.TRAIN_STEP_TIME_MS} in its TensorBoard logs; is it a run folder?")
    keep = steps > args.skip
    kept = millis[keep] if keep.any() else millis
    rows = [["steps timed", f"{len(kept)} of {len(millis)} (first {args.skip} left out)"],
            ["step time median / p10 / p90 (s)", " / ".join(f"{np.percentile(kept, q) / 1e3:.3f}"
                                                            for q in (50, 10, 90))],
            ["first step (s)", f"{millis[0] / 1e3:.2f}"],
            ["tokens per step", f"{run.tokens_per_step:,.0f}" if run.tokens_per_step else "n/a"]]
    for tag, name in ((Tags.TRAIN_TOKENS_PER_SEC, "tokens/s (median)"), (Tags.TRAIN_MFU, "MFU (median)")):
        tag_steps, values = run.series(tag)
        values = values[tag_steps > args.skip] if (tag_steps > args.skip).any() else values
        if len(values):
            rows.append([name, f"{np.median(values):,.0f}" if "tokens" in name else f"{np.median(values):.1%}"])
    print(f"run: {args.run_dir}\n")
    print(table(["quantity", "value"], rows))


if __name__ == "__main__":
    main()
