#!/usr/bin/env python
"""How well the loss forecast (Tissue et al. 2024's law, training/analysis/forecast.py) predicts runs it has not
seen: fit the law on a short run, predict the final validation loss of runs with other lengths and schedules
(the same model, data and peak learning rate, each reading the data at most once), then train those runs and
compare. Target from the issue: within 1% for a run twice as long as the fitted one.

    python bench/forecast.py --seeds 1337 1338            # ~50 min on 2 CPU cores (2 seeds x 5 runs)
    python bench/forecast.py --fit_steps 60 --seeds 1 --out /tmp/fc   # a quick look

Runs are ordinary run folders made by the sweep machinery (an interrupted benchmark resumes).
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
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"))
    parser.add_argument("--fit_steps", type=int, default=200, help="Length of the fitted run (a cosine).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.common import machine, table
    from training.analysis.forecast import fit_run, planned_lrs, run_schedule
    from training.analysis.runs import load_run
    from training.layout import Tags
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep

    n = args.fit_steps
    targets = {"cosine_2x": {"max_steps": 2 * n}, "wsd_2x": {"max_steps": 2 * n, "lr_schedule": "wsd"},
               "cosine_2.5x": {"max_steps": 5 * n // 2}, "wsd_1.5x": {"max_steps": 3 * n // 2, "lr_schedule": "wsd"}}
    out = Path(args.out or tempfile.mkdtemp(prefix="forecast_"))
    out.mkdir(parents=True, exist_ok=True)
    variants = {"fitted": {"max_steps": n, "eval_every": max(1, n // 20)},
                **{name: {**spec, "eval_every": spec["max_steps"]} for name, spec in targets.items()}}
    sweep = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": args.seeds,
             "overrides": {"warmup_steps": max(1, n // 5), "sample_every": 0, "save_every": 0, "keep_last": 1},
             "variants": variants}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    config = load_sweep(out / "sweep.yaml")
    run_sweep(config, say=print)

    rows, errors = [], {name: [] for name in targets}
    for seed in args.seeds:
        fitted = load_run(config.run_dir("fitted", seed))
        fit = fit_run(fitted)
        if fitted.dataset_tokens:
            epochs = 5 * n // 2 * fitted.tokens_per_step / fitted.dataset_tokens
            read_once = "reads its data once" if epochs <= 1 else f"reads its data {epochs:.2f} times"
        else:
            read_once = "data size unknown"
        for name, spec in targets.items():
            spec = dict(spec)
            schedule = run_schedule(fitted, spec.pop("max_steps"), **spec)
            predicted, low, high = fit.final(planned_lrs(fitted, schedule, keep_history=False))
            _, val = load_run(config.run_dir(name, seed)).series(Tags.VAL_LOSS)
            measured = float(val[-1])
            error = (predicted - measured) / measured
            errors[name].append(error)
            rows.append([seed, name, schedule.max_steps, f"{measured:.4f}", f"{predicted:.4f} ({low:.4f}-{high:.4f})",
                         f"{100 * error:+.2f}%", "yes" if low <= measured <= high else "no"])
    print(machine())
    print(f"fitted on a {n}-step cosine run ({fit.source}, {len(fit.steps)} points); the longest target "
          f"{read_once}; {args.preset}")
    print(table(["seed", "target run", "steps", "measured final val", "forecast (5-95%)", "error", "in interval"],
                rows))
    print(table(["target", "mean |error|", "max |error|"],
                [[name, f"{100 * np.mean(np.abs(e)):.2f}%", f"{100 * np.max(np.abs(e)):.2f}%"]
                 for name, e in errors.items()]))


if __name__ == "__main__":
    main()
