#!/usr/bin/env python
"""Sample efficiency of Muon against AdamW: tokens each needs to reach the AdamW baseline's final validation loss
(per seed: both arms of a seed see the same data order), same model, data and schedule. Uses the sweep machinery
(every arm x seed is an ordinary run folder, so an interrupted benchmark resumes). Target from the issue: Muon
needs at most 0.67x the tokens.

    python bench/sample_efficiency.py --steps 1200 --seeds 1337 1338     # ~7 min per run, ~30 min in all on 2 CPU cores
    python bench/sample_efficiency.py --steps 100 --out /tmp/se          # a quick look
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"), help="Base run preset.")
    parser.add_argument("--steps", type=int, default=1200, help="Optimizer steps per run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--muon_lr", type=float, default=None, help="Muon's peak lr (default: the preset's max_lr).")
    parser.add_argument("--out", default=None, help="Output folder (default: a temporary folder).")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # bench/ is run as a script; the project itself is installed
    from bench.common import machine, table
    from training.analysis.runs import load_run
    from training.analysis.summaries import first_crossing
    from training.layout import Tags
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep

    out = Path(args.out or tempfile.mkdtemp(prefix="sample_efficiency_"))
    out.mkdir(parents=True, exist_ok=True)
    muon = {"optimizer": "muon", **({"muon_lr": args.muon_lr} if args.muon_lr else {})}
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": args.seeds,
        "overrides": {"max_steps": args.steps, "warmup_steps": max(1, args.steps // 10),
                      "eval_every": max(1, args.steps // 20), "sample_every": 0, "save_every": args.steps // 2},
        "variants": {"adamw": {}, "muon": muon}}))
    config = load_sweep(sweep_file)
    run_sweep(config)

    curves = {}
    for variant, seed in config.runs():
        run = load_run(config.run_dir(variant, seed))
        steps, val = run.series(Tags.VAL_LOSS)
        curves[(variant, seed)] = (steps * run.tokens_per_step, val)
    # Each seed's AdamW run defines that seed's target (its own final validation loss): both arms then see the same
    # data order, and the baseline reaches its target by construction (at the end, or earlier if its curve is not
    # monotone). A mean target over seeds would leave the baseline seed that ends above the mean "not reached".
    rows, ratios = [], []
    for seed in args.seeds:
        target = float(curves[("adamw", seed)][1][-1])
        needed = {arm: first_crossing(*curves[(arm, seed)], target) for arm in ("adamw", "muon")}
        ratio = needed["muon"] / needed["adamw"] if needed["muon"] is not None else None
        ratios.append(ratio)
        rows.append([seed, f"{target:.4f}", f"{curves[('muon', seed)][1][-1]:.4f}", f"{needed['adamw']:,.0f}",
                     "not reached" if needed["muon"] is None else f"{needed['muon']:,.0f}",
                     "n/a (> 1)" if ratio is None else f"{ratio:.3f}"])
    print(machine())
    print(f"{args.steps} steps x {curves[('adamw', args.seeds[0])][0][-1] / args.steps:,.0f} tokens per run from "
          f"{args.preset}; target per seed = that seed's AdamW final validation loss")
    print(table(["seed", "target (AdamW final val)", "Muon final val", "AdamW tokens to target",
                 "Muon tokens to target", "Muon / AdamW"], rows))
    if all(r is not None for r in ratios):
        spread = f" +- {np.std(ratios, ddof=1):.3f} (sd over {len(ratios)} seeds)" if len(ratios) > 1 else ""
        print(f"Muon / AdamW tokens to target: {np.mean(ratios):.3f}{spread}; target <= 0.67")
    else:
        print("Muon did not reach AdamW's final loss in every seed: the ratio is above 1 there.")

if __name__ == "__main__":
    main()
