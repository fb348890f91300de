#!/usr/bin/env python
"""Explain a training run from its TensorBoard logs: the seed's plots (lossGraph.png, gradNorm.png,
grad_param_ratio.png) plus update_ratio.png, early_phase.png, depth.png and forecast.png, and report.md / report.json
with the diagnosis and a loss forecast (scripts/forecast.py for more horizons).

Examples:
    python scripts/analyze_run.py runs/gpt2-124m-seed
    python scripts/analyze_run.py runs/gpt2-124m-seed --reference_eval eval.json      # measured gpt2 line
    python scripts/analyze_run.py runs/gpt2-124m-seed --reference_loss 3.2924 --out reports/seed
    python scripts/analyze_run.py runs/a runs/b --out reports/ab                      # + compare_loss.png
"""

import argparse
import math
import sys
import warnings
from pathlib import Path

from training.analysis.plots import plot_comparison, plot_forecast, write_plots
from training.analysis.report import build_report, write_report
from training.analysis.runs import RunReadError, load_run
from training.cli import HelpFormatter
from training.data.shards import make_writable_dir
from training.errors import UserError, script_main
from training.layout import COMPARISON_DIR, RunLayout
from training.ownership import is_analysis_output, record_written, recorded_names


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="Run directories (runs/<run>) holding tensorboard/ logs.")
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument("--reference_loss", type=float, default=None,
                           help="Reference validation loss for the horizontal line (e.g. 3.2924, gpt2 on the "
                                "FineWeb-Edu val shard). Default: the run's measured reference_eval.json, if any.")
    reference.add_argument("--reference_eval", default=None,
                           help="JSON written by scripts/evaluate_checkpoints.py --reference ...; its reference's val_loss is used.")
    parser.add_argument("--dataset_tokens", type=int, default=None,
                        help="Training tokens in the dataset (default: from the data's meta.json; FineWeb-Edu "
                             "sample-10BT is ~9.9e9).")
    parser.add_argument("--out", default=None, help="Output folder (default: <run_dir>/analysis; with several "
                                                    "runs, one subfolder per run).")
    return parser.parse_args(argv)


def write_forecast_plot(run, out: Path, predicted: dict) -> str:
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    figure = plot_forecast(run, SimpleNamespace(**predicted))
    figure.savefig(out / "forecast.png", dpi=110)
    plt.close(figure)
    return str(out / "forecast.png")


def refuse_clashes(out: Path) -> None:
    """--out elsewhere than the run's analysis/: files of the names the analysis writes there that no analysis
    recorded as its own are the user's, and are not overwritten."""
    if not out.is_dir():
        return
    recorded = recorded_names(out) or set()
    clash = [p.name for p in sorted(out.iterdir())
             if p.is_file() and p.name not in recorded and is_analysis_output(p.name)]
    if clash:
        raise UserError(f"--out {out} holds files this project did not write ({', '.join(clash)}), which the "
                        "analysis would overwrite; pass a new or empty folder.")


def output_dirs(args, runs) -> list[Path]:
    """Where each run's analysis goes, created and proven writable before any work (a read-only run folder)."""
    outs = []
    for run in runs:
        out = Path(args.out) / run.name if args.out and len(runs) > 1 else \
            Path(args.out or RunLayout(run.run_dir).analysis_dir)
        if out != RunLayout(run.run_dir).analysis_dir:
            refuse_clashes(out)
        try:
            make_writable_dir(out)
        except OSError as error:
            raise RunReadError(f"Cannot write the analysis to {out} ({error.strerror or error}); pass --out with a "
                               "writable folder.") from error
        outs.append(out)
    return outs


@script_main
def main(argv=None) -> int:
    args = parse(argv)
    if args.reference_loss is not None and not (math.isfinite(args.reference_loss) and args.reference_loss > 0):
        raise UserError(f"--reference_loss must be a positive number (got {args.reference_loss}).")
    if args.dataset_tokens is not None and args.dataset_tokens <= 0:
        raise UserError(f"--dataset_tokens must be positive (got {args.dataset_tokens}): the training tokens of "
                        "one pass over the data.")
    with warnings.catch_warnings(record=True) as caught:  # damaged event files: say so, use the rest
        warnings.simplefilter("always")
        runs = [load_run(d, args.reference_loss, args.reference_eval, args.dataset_tokens) for d in args.run_dirs]
    outs = output_dirs(args, runs)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for run, out in zip(runs, outs):
        plots = write_plots(run, out)
        report = build_report(run, with_forecast=True)
        if report.get("forecast") and report["forecast"].get("current_schedule"):
            plots.append(write_forecast_plot(run, out, report["forecast"]))
        write_report(report, out, plots)
        record_written(out, [*plots, "report.md", "report.json"])  # what is ours in the folder (ownership)
        print(f"{run.name}: {report['verdict']} ({len(report['findings'])} findings -> {out}/report.md)")
        for finding in report["findings"]:
            print(f"  [{finding['severity']}] {finding['title']}")
    if len(runs) > 1:
        out = Path(args.out or runs[0].run_dir.parent / COMPARISON_DIR)
        out.mkdir(parents=True, exist_ok=True)
        figure = plot_comparison(runs)
        figure.savefig(out / "compare_loss.png", dpi=110)
        record_written(out, ["compare_loss.png"])
        print(f"comparison -> {out}/compare_loss.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
