#!/usr/bin/env python
"""Forecast a run's loss from its own curve and learning-rate history with the scaling law with learning-rate
annealing of Tissue et al. 2024: L(s) = L0 + A * S1^(-alpha) - C * S2 (S1 the summed learning rate, S2 the
annealing area).

Predicts the loss of this run continued to the end of its schedule (or re-planned to --max_steps, as a resume
would), of a fresh run of one full epoch of its data, of fresh runs of other schedules (--schedule), and the tokens
a fresh run of its schedule shape needs to reach a target (default: the run's measured reference). Each loss comes
with a 5-95% prediction interval for a measured loss (the fit's bootstrap spread and one point's measurement noise).
Each row says whether it continues this run or starts afresh, and whether it is to be trusted and why not (too few
points, still in warmup, past one epoch of the data, far beyond the fitted range, a cool-down the fitted history
cannot tell: then it names the scripts/cooldown.py branch that would). A diverged run is not forecast. Cool-down
branches beside the run (scripts/cooldown.py's default place) join the fit; --branch adds others. Writes
forecast.png.

Examples:
    python scripts/forecast.py runs/gpt2-124m-seed
    python scripts/forecast.py runs/gpt2-124m-seed --max_steps 17000 --json        # continued, re-planned to 17,000
    python scripts/forecast.py runs/gpt2-124m-seed --schedule wsd --max_steps 5000 --decay_steps 1000
    python scripts/forecast.py runs/gpt2-124m-seed --schedule cosine --max_steps 3400 --target 3.2924
    python scripts/forecast.py runs/wsd --branch runs/wsd-cool-4000       # fitted jointly with a cool-down branch
"""

import argparse
import json
import math
from pathlib import Path

from training.analysis.forecast import MAX_STEPS, describe_forecast, forecast, forecast_json
from training.analysis.runs import load_run
from training.cli import HelpFormatter
from training.data.shards import make_writable_dir
from training.errors import UserError, script_main
from training.layout import RunLayout


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="A run folder (runs/<run>).")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="Forecast this run continued to this many steps, its schedule re-planned as a resume "
                             "with --max_steps would (default: its max_steps).")
    parser.add_argument("--schedule", choices=("cosine", "wsd"), default=None,
                        help="Also forecast a fresh run of this schedule from step 0, --schedule_steps long (same "
                             "peak, floor, warmup, batch and model as the run).")
    parser.add_argument("--schedule_steps", type=int, default=None,
                        help="Length of --schedule (default: --max_steps, else the run's max_steps).")
    parser.add_argument("--decay_steps", type=int, default=None, help="With --schedule wsd: the cool-down length "
                        "(default: the run's --decay_fraction of the length, 20%% when the run's is 0).")
    parser.add_argument("--branch", action="append", default=[], metavar="DIR",
                        help="A cool-down branch of this run (scripts/cooldown.py) to fit jointly with it; repeatable. "
                             "Branches beside the run are found without it.")
    parser.add_argument("--target", type=float, default=None,
                        help="Loss to reach (default: the run's measured reference, reference_eval.json).")
    parser.add_argument("--json", action="store_true", help="Print the forecast as JSON (final_val_loss: the "
                        "predicted loss of this run continued to the end of its schedule, or to --max_steps).")
    parser.add_argument("--out", default=None, help="Folder for forecast.png (default: <run>/analysis).")
    return parser.parse_args(argv)


def check_arguments(args) -> None:
    """Refuse what cannot be forecast, naming the option, before any run is read."""
    for name in ("max_steps", "schedule_steps", "decay_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name} must be positive.")
        if value is not None and value > MAX_STEPS:
            raise UserError(f"--{name} {value} is beyond any horizon the forecast computes (at most {MAX_STEPS:.0e} "
                            "steps).")
    if args.target is not None and not (math.isfinite(args.target) and args.target > 0):
        raise UserError("--target must be a positive number.")
    for branch in args.branch:
        if not (Path(branch) / "branch.json").is_file():
            raise UserError(f"--branch {branch}: not a branch of a run (no branch.json; scripts/cooldown.py makes "
                            "them).")


def schedule_specs(args, run) -> list[dict]:
    """--schedule as the forecast's fresh-run spec: its kind, length and (WSD) cool-down."""
    if not args.schedule:
        return []
    steps = args.schedule_steps or args.max_steps or run.settings.get("max_steps")
    spec = {"lr_schedule": args.schedule, "max_steps": steps}
    if args.decay_steps:
        if args.schedule != "wsd":
            raise UserError("--decay_steps is the cool-down of --schedule wsd.")
        if args.decay_steps > steps:
            raise UserError(f"--decay_steps {args.decay_steps} is longer than the schedule ({steps} steps): a WSD "
                            "cool-down is the last part of its run.")
        spec["decay_steps"] = args.decay_steps
    elif args.schedule == "wsd" and not (run.settings.get("decay_fraction") or 0):
        spec["decay_fraction"] = 0.2  # a stable run's own fraction is 0: cool down over the last 20% (Hagele et al.)
    return [spec]


def write_plot(run, result, out: Path) -> None:
    try:
        make_writable_dir(out)
    except OSError as error:
        raise UserError(f"cannot write forecast.png to {out} ({error}); pass --out.") from error
    import matplotlib.pyplot as plt

    from training.analysis.plots import plot_forecast

    figure = plot_forecast(run, result)
    figure.savefig(out / "forecast.png", dpi=110)
    plt.close(figure)
    print(f"wrote {out / 'forecast.png'}")


@script_main
def main(argv=None) -> int:
    args = parse(argv)
    check_arguments(args)
    try:
        run = load_run(args.run_dir)
    except OSError as error:
        raise UserError(f"{args.run_dir}: cannot read the run ({error}).") from error
    out = Path(args.out or RunLayout(run.run_dir).analysis_dir)
    branches = None
    if args.branch:
        from training.analysis.forecast import find_branches

        branches = list(dict.fromkeys([*find_branches(run), *map(Path, args.branch)]))
    result = forecast(run, args.max_steps, schedule_specs(args, run), args.target, branches=branches)
    if result is None or result.current_schedule is None:
        why = "no learning rate was logged" if result is None else "; ".join(result.warnings) or "no forecast"
        raise UserError(f"{args.run_dir}: nothing to forecast ({why}).")
    if args.json:
        print(json.dumps(forecast_json(result), indent=2))
        return 0
    print(describe_forecast(run.name, result))
    write_plot(run, result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
