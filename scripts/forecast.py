#!/usr/bin/env python
"""Forecast a run's loss from its own curve and learning-rate history with the scaling law with learning-rate
annealing of Tissue et al. 2024: L(s) = L0 + A * S1^(-alpha) - C * S2 (S1 the summed learning rate, S2 the
annealing area). Predicts the loss at the end of the run's schedule, after a full epoch of its data, under other
schedules, and the tokens its schedule needs to reach a target (default: the run's measured reference), each with a
5-95% interval from bootstrap refits; writes forecast.png. Says when the fit is not to be trusted (too few points,
still in warmup, data read more than once, far beyond the fitted range).

Examples:
    python scripts/forecast.py runs/gpt2-124m-seed
    python scripts/forecast.py runs/gpt2-124m-seed --max_steps 17000 --json        # stretched to 17,000 steps
    python scripts/forecast.py runs/gpt2-124m-seed --schedule wsd --max_steps 5000 --decay_steps 1000
    python scripts/forecast.py runs/gpt2-124m-seed --schedule cosine --max_steps 3400 --target 3.2924
"""

import argparse
import json
import math
import sys
from pathlib import Path

from training.analysis.forecast import forecast
from training.analysis.runs import RunReadError, load_run
from training.cli import HelpFormatter
from training.data.shards import make_writable_dir
from training.layout import RunLayout


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="A run folder (runs/<run>).")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="Forecast the run's own schedule stretched to this many steps (default: its max_steps).")
    parser.add_argument("--schedule", choices=("cosine", "wsd"), default=None,
                        help="Also forecast this schedule from the start, --schedule_steps long (same peak, floor "
                             "and warmup as the run).")
    parser.add_argument("--schedule_steps", type=int, default=None,
                        help="Length of --schedule (default: --max_steps, else the run's max_steps).")
    parser.add_argument("--decay_steps", type=int, default=None, help="With --schedule wsd: the cool-down length "
                        "(default: the run's --decay_fraction of the length).")
    parser.add_argument("--target", type=float, default=None,
                        help="Loss to reach (default: the run's measured reference, reference_eval.json).")
    parser.add_argument("--json", action="store_true", help="Print the forecast as JSON (final_val_loss: the "
                        "predicted loss at the end of the run's schedule, stretched to --max_steps if given).")
    parser.add_argument("--out", default=None, help="Folder for forecast.png (default: <run>/analysis).")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    for name in ("max_steps", "schedule_steps", "decay_steps"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            print(f"error: --{name} must be positive.", file=sys.stderr)
            return 2
    if args.target is not None and not (math.isfinite(args.target) and args.target > 0):
        print("error: --target must be a positive number.", file=sys.stderr)
        return 2
    try:
        run = load_run(args.run_dir)
        out = Path(args.out or RunLayout(run.run_dir).analysis_dir)
        if not args.json:
            make_writable_dir(out)
    except (FileNotFoundError, RunReadError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    schedules = []
    if args.schedule:
        spec = {"lr_schedule": args.schedule,
                "max_steps": args.schedule_steps or args.max_steps or run.settings.get("max_steps")}
        if args.decay_steps:
            spec["decay_steps"] = args.decay_steps
        schedules.append(spec)
    result = forecast(run, args.max_steps, schedules, args.target)
    if result is None or result.current_schedule is None:
        why = "no learning rate was logged" if result is None else "; ".join(result.warnings)
        print(f"error: {args.run_dir}: nothing to forecast ({why}).", file=sys.stderr)
        return 2
    own = result.current_schedule
    if args.json:
        print(json.dumps({"final_val_loss": own["loss"], "final_val_loss_interval": [own["low"], own["high"]],
                          "steps": own["steps"], "tokens": own["tokens"], "trusted": result.trusted,
                          "warnings": result.warnings, "fitted_on": result.fit["source"],
                          "horizons": result.horizons, "target": result.target}, indent=2))
        return 0
    print_forecast(run, result)
    from training.analysis.plots import plot_forecast

    figure = plot_forecast(run, result)
    figure.savefig(out / "forecast.png", dpi=110)
    print(f"wrote {out / 'forecast.png'}")
    return 0


def print_forecast(run, result) -> None:
    fit = result.fit
    print(f"{run.name}: fitted on {len(fit['steps'])} points of its {fit['source']} up to step {result.last_step} "
          f"(log residual rms {fit['residual_rms']:.4f}; L0 {fit['params'][0]:.3f}, alpha {fit['params'][2]:.3f})")
    for row in [result.current_schedule, *result.horizons]:
        print(f"  {row['what']}: loss {row['loss']:.4f} ({row['low']:.4f}-{row['high']:.4f}) at step "
              f"{row['steps']:,} ({row['tokens']:,.0f} tokens)")
    if result.target:
        target = result.target
        if target["tokens"]:
            interval = (f" ({target['low_tokens']:,.0f}-{target['high_tokens']:,.0f})" if target["low_tokens"]
                        else "")
            print(f"  tokens to reach {target['target']:.4f} with its schedule shape: {target['tokens']:,.0f}"
                  f"{interval}")
        else:
            print(f"  {target['target']:.4f} is not reached within the forecast's range")
    for warning in result.warnings:
        print(f"  not to be trusted blindly: {warning}")


if __name__ == "__main__":
    raise SystemExit(main())
