#!/usr/bin/env python
"""Reliability under crashes: N random SIGKILLs of a small CPU run, each followed by
``--resume_from_checkpoint latest``, then the run is let finish. Saves happen every step, so many kills land
inside a checkpoint save, and the last ones aim at the end of the run, where ``final/`` is written.

Prints: kills (and where they landed), checkpoints lost (a committed checkpoint that no longer loads), resumes
that failed, whether ``final/`` was ever found incoherent, and whether the final weights equal an uninterrupted
run's bit for bit.

    python bench/fault_injection.py --data ../shared/data/tinyshakespeare.txt [--kills 12 --seed 0]
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_args(out: Path, shards: Path, steps: int) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "pretrain.py"), "--output_dir", str(out), "--data", str(shards),
            "--cpu", "true", "--mixed_precision", "no", "--n_layer", "2", "--n_head", "2", "--n_embd", "32",
            "--seq_len", "32", "--micro_batch_size", "4", "--total_batch_tokens", "256", "--max_steps", str(steps),
            "--warmup_steps", "2", "--max_lr", "3e-3", "--min_lr", "3e-4", "--eval_every", "6", "--eval_tokens",
            "1024", "--sample_every", "0", "--save_every", "1", "--keep_last", "2", "--progress_bar", "false",
            "--callbacks", "grad_norm", "layer_ratios", "--diagnostics_every", "3"]


def launch(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def latest_step(out: Path) -> int:
    from training.layout import checkpoint_step

    folder = out / "checkpoints"
    steps = [checkpoint_step(p.name) for p in folder.iterdir()] if folder.is_dir() else []
    return max([s for s in steps if s is not None], default=0)


def final_step(out: Path) -> int | None:
    try:
        return json.loads((out / "final" / "training_state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return None


def where_killed(out: Path) -> str:
    checkpoints = out / "checkpoints"
    if any(p.name.endswith((".tmp", ".previous")) for p in out.iterdir() if p.name.startswith("final")):
        return "writing final/"
    if checkpoints.is_dir() and any(p.name.endswith((".tmp", ".previous")) for p in checkpoints.iterdir()):
        return "inside a checkpoint save"
    return "between saves"


def committed_checkpoints_ok(out: Path) -> tuple[int, int]:
    """(committed checkpoints, damaged ones) of the current branch."""
    from training.layout import checkpoint_step
    from training.run.checkpointing import damaged_files

    folder = out / "checkpoints"
    found = [p for p in folder.iterdir() if checkpoint_step(p.name) is not None] if folder.is_dir() else []
    damaged = [p for p in found if damaged_files(p) or not (p / "model" / "training_state.json").exists()]
    return len(found), len(damaged)


def final_coherent(out: Path) -> bool | None:
    """final/ holds weights and a training_state.json from the same step (None: no final/ yet)."""
    from safetensors.torch import load_file

    final = out / "final"
    if not final.exists():
        return None
    try:
        load_file(str(final / "model.safetensors"))
        json.loads((final / "training_state.json").read_text())
    except Exception:  # noqa: BLE001
        return False
    return True


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "final" / "model.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="A text corpus (e.g. tinyshakespeare.txt) or a folder of token "
                                                      "shards from scripts/prepare_data.py.")
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # bench/ is run as a script; the project itself is installed
    from bench.common import machine, table
    from training.data.preparation import CorpusError, PrepareConfig, prepare
    from training.data.shards import ShardError, find_shards

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fault_injection_"))
    source = Path(args.data)
    try:
        if source.is_dir() and find_shards(source, "train"):
            shards = source  # already prepared
        else:
            shards = work / "shards"
            prepare(PrepareConfig(output_dir=str(shards), files=[args.data], shard_tokens=100_000, val_tokens=8192,
                                  progress=False))
    except (CorpusError, ShardError, FileNotFoundError) as error:
        raise SystemExit(f"error: --data {args.data}: {error}") from None

    started = time.perf_counter()
    reference = subprocess.run(run_args(work / "reference", shards, args.steps), capture_output=True, text=True)
    reference_time = time.perf_counter() - started
    if reference.returncode != 0:
        raise SystemExit(reference.stderr[-3000:])

    out = work / "faulted"
    places, lost, failed_resumes, incoherent_final = {}, 0, 0, 0
    for kill in range(args.kills):
        if final_step(out) == args.steps:
            break
        done = latest_step(out)
        # Killed before its first checkpoint: nothing to resume, and the folder holds that start's logs.
        resume = ["--resume_from_checkpoint", "latest"] if done else ["--overwrite_output_dir", "true"]
        # Early kills aim at a step still to come: once the checkpoint before it is committed, a random moment
        # inside it (training or saving). The last kills aim at the end of the run: a moment after final/'s
        # temporary folder appears, i.e. while final/ is being written.
        late = kill >= args.kills - max(2, args.kills // 4)
        process = launch(run_args(out, shards, args.steps) + resume)
        if late:
            ready, jitter = (lambda: (out / "final.tmp").exists()), rng.uniform(0.0, 0.05)
        else:
            wait_for = rng.randint(done + 1, args.steps) - 1
            ready, jitter = (lambda: latest_step(out) >= wait_for), rng.uniform(0.0, 0.4)
        while process.poll() is None and not ready():
            time.sleep(0.001)
        if process.poll() is None:
            time.sleep(jitter)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                place = where_killed(out)  # the folders stay as the kill left them
                places[place] = places.get(place, 0) + 1
        if process.returncode not in (0, -signal.SIGKILL):
            failed_resumes += 1
            print(process.stderr.read()[-2000:], file=sys.stderr)
        _, damaged = committed_checkpoints_ok(out)
        lost += damaged
        incoherent_final += final_coherent(out) is False
    finish = subprocess.run(run_args(out, shards, args.steps) + ["--resume_from_checkpoint", "latest"],
                            capture_output=True, text=True)
    if finish.returncode != 0:
        failed_resumes += 1
        print(finish.stderr[-2000:], file=sys.stderr)
    a, b = weights(work / "reference"), weights(out)
    identical = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)

    print(machine())
    print(f"{args.steps}-step run (2L/32W, saves every step, keep_last 2), uninterrupted in {reference_time:.1f} s; "
          f"work folder {work}")
    kills = sum(places.values())
    print(table(["kills", "where they landed", "checkpoints lost", "resumes failed", "final/ incoherent",
                 "final weights == uninterrupted (bitwise)"],
                [[kills, ", ".join(f"{v} {k}" for k, v in sorted(places.items())), lost, failed_resumes,
                  incoherent_final, identical]]))


if __name__ == "__main__":
    main()
