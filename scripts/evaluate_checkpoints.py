#!/usr/bin/env python
"""Evaluate checkpoints side by side against a reference (e.g. OpenAI's gpt2): validation loss and perplexity on
the same tokens, HellaSwag acc / acc_norm on the same examples. Prints a table and writes JSON (by default into
the first checkpoint's run folder: runs/<run>/analysis/eval_final.json).

Examples:
    python scripts/evaluate_checkpoints.py runs/gpt2-124m-seed/final --reference gpt2 --data data/edu_fineweb10B
    python scripts/evaluate_checkpoints.py runs/a/final runs/b/final --hellaswag hellaswag_val.jsonl --limit 1000
    python scripts/evaluate_checkpoints.py runs/gpt2-124m-seed/final --reference gpt2 --log_reference_to runs/gpt2-124m-seed
    accelerate launch scripts/evaluate_checkpoints.py runs/gpt2-124m-seed/final --reference gpt2   # split across GPUs
"""

import json
from dataclasses import fields
from pathlib import Path

from accelerate import Accelerator
from transformers import HfArgumentParser

from training.cli import HelpFormatter
from training.data.shards import make_writable_dir
from training.errors import UserError, script_main
from training.evaluation.comparison import EvalArguments, compare, format_table, record_reference
from training.layout import ANALYSIS_DIR, MARKER_FILE, RunLayout, run_of_model_folder
from training.ownership import has_marker, record_written
from training.run.run_folder import written_by_a_run


def parse(argv):
    parser = HfArgumentParser(EvalArguments, description=__doc__, formatter_class=HelpFormatter)
    # The checkpoints (EvalArguments' first field) are positional, as in the examples.
    positional = fields(EvalArguments)[0].name
    for action in parser._actions:
        if action.dest == positional:
            action.option_strings, action.required = [], True
            parser._option_string_actions.pop(f"--{positional}", None)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args


def check_writable(path: Path) -> None:
    """Create the output's folder and prove it writable now, so a bad --output does not cost the evaluation."""
    try:
        make_writable_dir(path.parent)
    except OSError as error:
        raise UserError(f"--output {path}: cannot write there ({error.strerror or error}); choose another "
                         "path.") from error


def check_reference_target(args) -> None:
    """--log_reference_to must be a run folder of this project, and there must be a reference to record; checked
    before any work, so a refusal leaves nothing behind."""
    layout = RunLayout(args.log_reference_to)
    # The project's one definition of a run folder (training/run/run_folder.py): its marker, or an older version's
    # checkpoint or final model; a config.yaml or event files alone do not make one.
    if not has_marker(layout.root) and not written_by_a_run(layout):
        raise UserError(f"--log_reference_to {args.log_reference_to} is not a run folder of this project (no "
                        f"{MARKER_FILE}, the marker every run writes first, and no checkpoint of a run): pass "
                        "runs/<run>, the run whose plots get the reference.")
    if not args.reference:
        raise UserError("--log_reference_to records the reference's numbers: pass --reference too (e.g. gpt2).")


def output_path(args) -> Path:
    """--output, else the first checkpoint's run folder (analysis/eval_<model>.json), else ./eval.json (a Hub id)."""
    if args.output:
        return Path(args.output)
    found = run_of_model_folder(args.checkpoints[0])
    return found[0].eval_file(found[1]) if found else Path("eval.json")


@script_main
def main(argv=None) -> int:
    try:
        args = parse(argv)
    except ValueError as error:  # unknown options (HfArgumentParser); values refused by EvalArguments are UserErrors
        raise UserError(f"{error} (see --help)") from error
    if args.log_reference_to:
        check_reference_target(args)
    accelerator = Accelerator()
    output = output_path(args)
    if accelerator.is_main_process:
        check_writable(output)  # before the work, not after it
    result = compare(args, accelerator)
    if accelerator.is_main_process:
        print(format_table(result["models"]))
        output.write_text(json.dumps(result, indent=2) + "\n")
        if output.parent.name == ANALYSIS_DIR and args.output is None:
            record_written(output.parent, [output.name])  # the run's analysis folder: a file of ours
        print(f"wrote {output}")
        if args.log_reference_to and "reference" in result:
            record_reference(args.log_reference_to, result["reference"])
            print(f"recorded the reference's numbers in {args.log_reference_to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
