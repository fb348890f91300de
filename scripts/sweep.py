#!/usr/bin/env python
"""Run a sweep: a base preset plus named variants (and seeds), each an ordinary run folder, then rank the variants
by tokens to reach a target validation loss. Interrupted sweeps resume where they stopped (finished runs are
skipped, interrupted ones resume from their newest checkpoint). A run that diverges (non-finite loss, too many
skipped updates) is recorded as diverged with its last good step and loss, and the sweep goes on; it is trained
again only with --rerun. A variant whose settings were edited after its runs trained stops the sweep before any
training (rerun it, or restore the file). Writes sweep.md, sweep.json and compare_loss.png into the sweep's
output_dir.

Examples:
    python scripts/sweep.py configs/sweeps/cpu-recommendations.yaml
    python scripts/sweep.py configs/sweeps/cpu-recommendations.yaml --summarize        # the tables only
    python scripts/sweep.py configs/sweeps/cpu-recommendations.yaml --rerun lr_x3      # train a variant again
    accelerate launch --config_file accelerate_config.yaml scripts/sweep.py configs/sweeps/seed-recommendations.yaml
    # μP: tune at a small width, write the winner into a full-width preset, then train that (docs/mup.md)
    python scripts/sweep.py configs/sweeps/mup-tune-cpu.yaml --transfer_to configs/cpu-wide-mup.yaml \
        --write runs/tuned/cpu-wide.yaml
"""

import argparse
import os

from training.cli import HelpFormatter
from training.errors import script_main
from training.run.preemption import Preempted
from training.sweeps.config import load_sweep
from training.sweeps.runner import run_sweep
from training.sweeps.summary import ranked, write_summary
from training.sweeps.transfer import plan_transfer, write_transferred


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("sweep", help="Sweep file (configs/sweeps/*.yaml).")
    parser.add_argument("--summarize", action="store_true", help="Only (re)write the summary from the runs so far.")
    parser.add_argument("--rerun", nargs="+", default=[], metavar="VARIANT",
                        help="Train these variants again from scratch (their folders are replaced): after editing them "
                             "in the sweep file, or to retry a diverged one.")
    parser.add_argument("--transfer_to", default=None, metavar="PRESET",
                        help="μP: a full-width preset to receive the winner's learning rates, init and weight decay "
                             "(the sweep must run under --parametrization mup at its base width); needs --write.")
    parser.add_argument("--write", default=None, metavar="PATH",
                        help="Where --transfer_to writes the tuned full-width preset (a new file).")
    args = parser.parse_args(argv)
    if bool(args.transfer_to) != bool(args.write):
        parser.error("--transfer_to and --write go together: the preset to widen to, and where to write it.")
    return args


@script_main
def main(argv=None) -> int:
    args = parse(argv)
    # Under accelerate launch every process runs this script. Its rank comes from the launcher's environment:
    # creating accelerate's state here would fix the device and process group before each run's own settings
    # (--cpu) are read, and the processes would then train as independent single-process runs in one folder.
    main_process = os.environ.get("RANK", "0") == "0"
    config = load_sweep(args.sweep)
    transfer = plan_transfer(config, args.transfer_to, args.write) if args.transfer_to else None  # before training
    try:
        if not args.summarize:
            run_sweep(config, say=print if main_process else lambda line: None, rerun=args.rerun)
    except Preempted as stopped:
        if main_process:
            print(f"{stopped.what} The sweep resumes there when run again: python scripts/sweep.py {args.sweep}")
        return stopped.exit_code
    if main_process:
        summary = write_summary(config)
        print(summary.read_text())
        print(f"wrote {summary}")
        if transfer:
            written = write_transferred(transfer, ranked(config))
            print(f"wrote {written}: the winner transferred to full width; train it with\n"
                  f"  accelerate launch scripts/pretrain.py --config {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
