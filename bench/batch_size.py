#!/usr/bin/env python
"""McCandlish et al.'s trade-off, measured: steps and tokens to reach a target validation loss at several total
batch sizes, the critical batch fitted from them, and the gradient noise scale B_simple the loop measured in the
same runs. McCandlish et al. 2018: S = S_min (1 + B_noise / B) and E = E_min (1 + B / B_noise), so the steps-tokens
curve bends at B_crit = E_min / S_min, which B_simple estimates.

Every run is the CPU quick-start model at the preset's peak learning rate, held constant after a warmup of a fixed
number of tokens (warmup-stable with no decay, so the horizon does not matter), stopped when validation reaches the
target.

Runs stop at the lowest target; every target above it is read from the same runs (``--targets 7.0 6.6``). A target
on a plateau of the loss makes "steps to target" measure when the plateau is left, not the batch's trade-off: the
table shows each target, and the fit is only as good as the monotone rows it gets.

    python bench/batch_size.py --targets 7.0 6.6 --batches 256 512 1024 2048 4096     # ~20 min on 2 CPU cores
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def fit_tradeoff(steps: np.ndarray, tokens: np.ndarray) -> tuple[float, float, float]:
    """S_min, E_min and B_crit = E_min / S_min from (S, E) pairs: McCandlish's relation (S/S_min - 1)(E/E_min - 1)
    = 1 is linear in 1/S and 1/E: 1 = S_min/S + E_min/E. Least squares on that line."""
    design = np.stack([1.0 / steps, 1.0 / tokens], axis=1)
    (s_min, e_min), *_ = np.linalg.lstsq(design, np.ones(len(steps)), rcond=None)
    return float(s_min), float(e_min), float(e_min / s_min)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"))
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096],
                        help="Total tokens per step (multiples of micro_batch_size x seq_len = 256).")
    parser.add_argument("--targets", "--target", type=float, nargs="+", default=[7.0, 6.6],
                        help="Validation losses to reach; runs stop at the lowest, the others are read on the way.")
    parser.add_argument("--warmup_tokens", type=int, default=20_480)
    parser.add_argument("--max_tokens", type=int, default=300_000, help="Give up after this many tokens.")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.common import machine
    from training.analysis.runs import load_run
    from training.layout import Tags
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep

    out = Path(args.out or tempfile.mkdtemp(prefix="batch_size_"))
    out.mkdir(parents=True, exist_ok=True)
    variants = {}
    for batch in args.batches:
        every = max(1, 4096 // batch)  # evaluate every 4,096 tokens at every batch size
        variants[f"batch{batch}"] = {"total_batch_tokens": batch, "max_steps": args.max_tokens // batch,
                                     "warmup_steps": max(1, args.warmup_tokens // batch), "eval_every": every,
                                     "diagnostics_every": every, "target_val_loss": min(args.targets)}
    sweep = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": [args.seed],
             "overrides": {"lr_schedule": "wsd", "decay_fraction": 0.0, "sample_every": 0, "save_every": 0,
                           "keep_last": 1}, "variants": variants}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    config = load_sweep(out / "sweep.yaml")
    run_sweep(config, say=print)

    curves = {}
    for batch in args.batches:
        run = load_run(config.run_dir(f"batch{batch}", args.seed))
        curves[batch] = (run.series(Tags.VAL_LOSS), run.series(Tags.NOISE_SCALE_TOKENS))
    print(machine())
    print(f"constant learning rate after {args.warmup_tokens:,} warmup tokens; {args.preset}; seed {args.seed}")
    for target in sorted(args.targets, reverse=True):
        report_target(target, args.batches, curves)


def noise_near(noise_steps: np.ndarray, b_simple: np.ndarray, step: float) -> float | None:
    """The median of the positive B_simple values logged in the second half of the way to ``step`` (the noise scale
    grows as the loss falls, so it is read where the target is reached; a non-positive or nan value is a step where
    the smoothed |G|^2 estimate was not positive, not a measurement)."""
    window = (noise_steps >= step / 2) & (noise_steps <= step) & np.isfinite(b_simple) & (b_simple > 0)
    return float(np.median(b_simple[window])) if window.any() else None


def report_target(target, batches, curves) -> None:
    from bench.common import table
    from training.analysis.summaries import first_crossing

    rows, steps_to, tokens_to, noise = [], [], [], []
    for batch in batches:
        (val_steps, val), (noise_steps, b_simple) = curves[batch]
        step = first_crossing(val_steps, val, target)
        measured = noise_near(noise_steps, b_simple, step) if step is not None and len(b_simple) else None
        rows.append([batch, "not reached" if step is None else f"{step:.0f}",
                     "-" if step is None else f"{step * batch:,.0f}", "-" if measured is None else f"{measured:,.0f}"])
        if step is not None:
            steps_to.append(step)
            tokens_to.append(step * batch)
        if measured is not None:
            noise.append(measured)
    print(f"\ntarget validation loss {target}")
    print(table(["tokens per step", "steps to target", "tokens to target",
                 "B_simple near the target (tokens)"], rows))
    monotone = (all(a > b for a, b in zip(steps_to, steps_to[1:]))
                and all(a < b for a, b in zip(tokens_to, tokens_to[1:])))
    if len(steps_to) >= 3 and monotone:
        s_min, e_min, b_crit = fit_tradeoff(np.array(steps_to), np.array(tokens_to))
        measured = f"{np.median(noise):,.0f} tokens (ratio {np.median(noise) / b_crit:.2f})" if noise else "n/a"
        print(f"fitted: S_min {s_min:.1f} steps, E_min {e_min:,.0f} tokens, B_crit = E_min / S_min = {b_crit:,.0f} "
              f"tokens; B_simple near the target (median over runs) {measured}")
    else:
        print("no fit: steps to target must fall and tokens to target rise with the batch (McCandlish's trade-off); "
              "here they do not, so the target sits where the loss stalls (a plateau), not on the trade-off")

if __name__ == "__main__":
    main()
