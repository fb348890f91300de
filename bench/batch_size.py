#!/usr/bin/env python
"""McCandlish et al.'s trade-off, measured: steps and tokens to reach a target validation loss at several total
batch sizes, the critical batch fitted from them, and the gradient noise scale B_simple the loop measured in the
same runs. McCandlish et al. 2018: S = S_min (1 + B_noise / B) and E = E_min (1 + B / B_noise), so the steps-tokens
curve bends at B_crit = E_min / S_min, which B_simple estimates.

Every run is the CPU quick-start model at the preset's peak learning rate, held constant after a warmup of a fixed
number of tokens (warmup-stable with no decay, so the horizon does not matter), stopped when validation reaches the
target.

    python bench/batch_size.py --target 6.6 --batches 256 512 1024 2048 4096     # ~15 min on 2 CPU cores
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
    parser.add_argument("--target", type=float, default=6.6, help="Validation loss to reach.")
    parser.add_argument("--warmup_tokens", type=int, default=20_480)
    parser.add_argument("--max_tokens", type=int, default=300_000, help="Give up after this many tokens.")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.common import machine, table
    from training.analysis.runs import load_run
    from training.analysis.summaries import first_crossing
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
                                     "diagnostics_every": every, "target_val_loss": args.target}
    sweep = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": [args.seed],
             "overrides": {"lr_schedule": "wsd", "decay_fraction": 0.0, "sample_every": 0, "save_every": 0,
                           "keep_last": 1}, "variants": variants}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    config = load_sweep(out / "sweep.yaml")
    run_sweep(config, say=print)

    rows, steps_to, tokens_to, noise = [], [], [], []
    for batch in args.batches:
        run = load_run(config.run_dir(f"batch{batch}", args.seed))
        val_steps, val = run.series(Tags.VAL_LOSS)
        step = first_crossing(val_steps, val, args.target)
        _, b_simple = run.series(Tags.NOISE_SCALE_TOKENS)
        measured = float(np.median(b_simple[len(b_simple) // 2:])) if len(b_simple) else None
        rows.append([batch, "not reached" if step is None else f"{step:.0f}",
                     "-" if step is None else f"{step * batch:,.0f}", "-" if measured is None else f"{measured:,.0f}"])
        if step is not None:
            steps_to.append(step)
            tokens_to.append(step * batch)
        if measured is not None:
            noise.append(measured)
    print(machine())
    print(f"target validation loss {args.target}; constant learning rate after {args.warmup_tokens:,} warmup tokens; "
          f"{args.preset}")
    print(table(["tokens per step", "steps to target", "tokens to target", "B_simple measured (tokens)"], rows))
    if len(steps_to) >= 3:
        s_min, e_min, b_crit = fit_tradeoff(np.array(steps_to), np.array(tokens_to))
        print(f"fitted: S_min {s_min:.1f} steps, E_min {e_min:,.0f} tokens, B_crit = E_min / S_min = {b_crit:,.0f} "
              f"tokens; measured B_simple (median over runs) {np.median(noise):,.0f} tokens "
              f"(ratio {np.median(noise) / b_crit:.2f})")


if __name__ == "__main__":
    main()
