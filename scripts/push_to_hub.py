#!/usr/bin/env python
"""Publish a checkpoint to the Hugging Face Hub: weights, config with auto_map, modeling code, tokenizer,
generation config, the run's configuration, TensorBoard logs, analysis plots, a plain GPT2LMHeadModel export
(gpt2-export/) and a model card whose numbers come from the run's own files.

Examples:
    python scripts/push_to_hub.py runs/gpt2-124m-seed/final --repo_id me/gpt2-124m-seed \
        --eval_json runs/gpt2-124m-seed/analysis/eval_final.json
    python scripts/push_to_hub.py runs/gpt2-124m-seed/checkpoints/step_0001000/model --repo_id me/gpt2-124m-seed \\
        --revision step_0001000 --private
    python scripts/push_to_hub.py runs/gpt2-124m-seed/final --repo_id me/x --dry_run   # stage and inspect only

The token comes from HF_TOKEN or `hf auth login`; it is never printed or written into the uploaded files.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from training.cli import HelpFormatter
from training.errors import script_main
from training.hub.staging import stage_upload
from training.hub.upload import DEFAULT_TIMEOUT, HubError, check_repo_id, push_folder, require_token


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="A model folder: runs/<run>/final or runs/<run>/checkpoints/step_N/model.")
    parser.add_argument("--repo_id", required=True, help="Hub repository, user/name (created if missing).")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if missing); default main.")
    parser.add_argument("--eval_json", default=None, help="Output of scripts/evaluate_checkpoints.py for this checkpoint (and "
                                                          "the gpt2 reference): fills the card's evaluation table.")
    parser.add_argument("--run_dir", default=None, help="The run directory (TensorBoard logs, plots); default: "
                                                        "found from the checkpoint path.")
    parser.add_argument("--staging_dir", default=None, help="Where to assemble the upload (default: a temporary "
                                                            "folder, removed after the upload; with --dry_run it "
                                                            "is kept and printed). Keep it outside runs/: "
                                                            "TensorBoard would list its copy of the logs as a run.")
    parser.add_argument("--dry_run", action="store_true", help="Assemble the folder but do not upload.")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="Seconds to wait for the Hub to connect or answer before giving up (a silent server "
                             "would otherwise hang the upload forever).")
    return parser.parse_args(argv)


def read_eval_json(path: Path) -> dict:
    try:
        evaluation = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise HubError(f"--eval_json {path} does not exist.") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HubError(f"--eval_json {path} is not valid JSON ({error}); pass the file written by "
                       "scripts/evaluate_checkpoints.py.") from error
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("models"), list):
        raise HubError(f"--eval_json {path} has no 'models' list; pass the file written by "
                       "scripts/evaluate_checkpoints.py.")
    return evaluation


@script_main
def main(argv=None) -> int:
    args = parse(argv)
    temporary = args.staging_dir is None
    staging = Path(args.staging_dir) if args.staging_dir else Path(tempfile.mkdtemp(prefix="gpt2-pretrain-hub-"))
    try:
        check_repo_id(args.repo_id)  # before any work is done, dry runs included
        if args.timeout <= 0:
            raise HubError(f"--timeout must be positive (got {args.timeout:g}).")
        token = None if args.dry_run else require_token()
        evaluation = read_eval_json(Path(args.eval_json)) if args.eval_json else None
        folder = stage_upload(args.checkpoint, staging / "upload" if temporary else staging, args.repo_id,
                              args.run_dir, evaluation)
        print(f"staged {sum(1 for p in folder.rglob('*') if p.is_file())} files in {folder}")
        if args.dry_run:
            return 0
        push_folder(folder, args.repo_id, args.private, args.revision, token=token, timeout=args.timeout)
    finally:
        if temporary and not args.dry_run:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"pushed to https://huggingface.co/{args.repo_id}" + (f"/tree/{args.revision}" if args.revision else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
