#!/usr/bin/env python
"""Hostile but realistic tries against the command-line tools: bad inputs, faults, interruptions. Every try is
run for real (subprocesses, real files, a real small filesystem where the machine allows mounting one), observed,
and classified:

    clear           refused with an error that names the problem (no traceback)
    accepted        valid input: it ran and did what it should (checked)
    silently wrong  exit 0 (or a wrong result) where an error or another result was due
    traceback       a raw Python traceback reached the user
    lost            data a previous step wrote was damaged or replaced
    hang            still running after the try's time limit

    python bench/hostile_tries.py --data ../shared/data/tinyshakespeare.txt
    python bench/hostile_tries.py --data ../shared/data/tinyshakespeare.txt --only sweep     # tries whose name matches

The first 66 tries are here; bench/hostile_tries_more.py adds the tries of item 26 (nothing of the user's touched,
every record true, estimates that know their ground, signals and odd environments: every script, judged from the
files each run left), and with --extra the ones that repeat another try or check a plain refusal. About half an hour
on 2 CPU cores (more with --extra). The goal: zeros in the last four columns.
"""

import argparse
import json
import os
import shutil
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass
class Result:
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    hung: bool = False
    lost: bool = False
    wrong: str | None = None  # why the outcome is wrong, if it is


def run(args: list, timeout: float = 300, env: dict | None = None, **popen) -> Result:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    try:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=environment, **popen)
    except subprocess.TimeoutExpired as expired:
        return Result(None, str(expired.stdout or ""), str(expired.stderr or ""), hung=True)
    return Result(done.returncode, done.stdout, done.stderr)


def script(name: str) -> str:
    return str(REPO / "scripts" / f"{name}.py")


class Bench:
    """Shared inputs: prepared data, the TINY arguments of the issue, a finished run to copy."""

    def __init__(self, work: Path, corpus: Path):
        self.work, self.corpus = work, corpus
        self.data = work / "shk"
        prepared = run([PY, script("prepare_data"), "--files", corpus, "--output_dir", self.data, "--shard_tokens",
                        "100000", "--val_tokens", "30000", "--name", "shk", "--progress", "false"])
        if prepared.returncode != 0:
            raise SystemExit(prepared.stderr)
        self.finished = self.folder("finished")
        base = run([PY, script("pretrain"), *self.tiny(self.finished), "--max_steps", "6", "--save_every", "2"])
        if base.returncode != 0:
            raise SystemExit(base.stderr)
        self.counter = 0

    def folder(self, name: str) -> Path:
        return self.work / name

    def fresh(self, name: str) -> Path:
        path = self.work / "tries" / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def copy_of_finished(self, name: str) -> Path:
        path = self.fresh(name)
        shutil.copytree(self.finished, path)
        return path

    def tiny(self, output_dir: Path, data: Path | None = None) -> list:
        return ["--data", data or self.data, "--cpu", "true", "--mixed_precision", "no", "--n_layer", "2", "--n_head",
                "2", "--n_embd", "32", "--seq_len", "64", "--micro_batch_size", "4", "--total_batch_tokens", "256",
                "--warmup_steps", "2", "--eval_every", "0", "--sample_every", "0", "--keep_last", "0",
                "--progress_bar", "false", "--output_dir", output_dir]

    def pretrain(self, output_dir: Path, *extra, timeout: float = 300, **kwargs) -> Result:
        return run([PY, script("pretrain"), *self.tiny(output_dir), *extra], timeout=timeout, **kwargs)


def weights_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@dataclass
class Try:
    name: str
    item: str
    expect: str  # "clear" or "accepted"
    action: object  # Bench -> Result
    seen: Result | None = field(default=None, repr=False)

    def classify(self) -> str:
        r = self.seen
        if r.hung:
            return "hang"
        if r.lost:
            return "lost"
        if "Traceback (most recent call last)" in r.stderr:
            return "traceback"
        if r.wrong:
            return "silently wrong"
        if self.expect == "clear":
            return "clear" if r.returncode not in (0, None) and "error" in (r.stderr + r.stdout).lower() else \
                "silently wrong"
        return "accepted" if r.returncode == 0 else "clear"


# ----------------------------------------------------------------------------------------------- the tries
def t_fresh_over_run(b: Bench) -> Result:
    run_dir = b.copy_of_finished("fresh_over_run")
    before = weights_of(run_dir / "checkpoints" / "step_0000004" / "model")
    r = b.pretrain(run_dir, "--max_steps", "4", "--save_every", "2", "--seed", "5")
    r.lost = not same(before, weights_of(run_dir / "checkpoints" / "step_0000004" / "model"))
    return r


def t_overwrite(b: Bench) -> Result:
    run_dir = b.copy_of_finished("overwrite")
    r = b.pretrain(run_dir, "--max_steps", "4", "--save_every", "2", "--seed", "5", "--overwrite_output_dir", "true")
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    if kept != ["step_0000002", "step_0000004"]:
        r.wrong = f"checkpoints after overwrite: {kept}"
    return r


def t_two_launches(b: Bench) -> Result:
    run_dir = b.fresh("two_launches")
    args = [PY, script("pretrain"), *b.tiny(run_dir), "--max_steps", "30", "--save_every", "2", "--callbacks",
            "tests.helpers.SlowSteps:seconds=0.05"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([str(a) for a in args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = run(args, timeout=300)
    out, err = first.communicate(timeout=300)
    second.lost = first.returncode != 0
    if first.returncode == 0:
        state = json.loads((run_dir / "final" / "training_state.json").read_text())
        second.lost = state["global_step"] != 30
    return second


def t_stale_lock(b: Bench) -> Result:
    run_dir = b.copy_of_finished("stale_lock")
    (run_dir / ".run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 999_999, "started": 0}))
    r = b.pretrain(run_dir, "--max_steps", "8", "--resume_from_checkpoint", "latest")
    if "no longer running" not in r.stdout:
        r.wrong = "a stale lock was taken over without a word"
    return r


def t_init_from_other_width(b: Bench) -> Result:
    return b.pretrain(b.fresh("init_from"), "--max_steps", "2", "--init_from", b.finished / "final", "--n_embd",
                      "64", "--n_head", "2")


def _damaged_resume(b: Bench, name: str, file: str, how) -> Result:
    run_dir = b.copy_of_finished(name)
    path = run_dir / "checkpoints" / "step_0000006" / file
    how(path)
    return b.pretrain(run_dir, "--max_steps", "8", "--resume_from_checkpoint", "latest")


def t_corrupt_rng(b: Bench) -> Result:
    return _damaged_resume(b, "corrupt_rng", "random_states_0.pkl",
                           lambda p: p.write_bytes(b"\0" * p.stat().st_size))


def t_truncated_optimizer(b: Bench) -> Result:
    return _damaged_resume(b, "truncated_optimizer", "optimizer.bin",
                           lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]))


def t_corrupt_loader_state(b: Bench) -> Result:
    return _damaged_resume(b, "corrupt_loader", "custom_checkpoint_1.pkl",
                           lambda p: p.write_bytes(p.read_bytes()[:-7] + b"garbage"))


def t_oov_in_shard(b: Bench) -> Result:
    import numpy as np

    from training.data.shards import find_shards, open_shard, write_shard_atomic

    data = b.fresh("oov_data")
    shutil.copytree(b.data, data)
    shard = find_shards(data, "train")[-1]
    tokens = np.array(open_shard(shard))
    tokens[len(tokens) // 2] = 60_000
    write_shard_atomic(shard, tokens)  # meta.json still records the old max_token_id
    return run([PY, script("pretrain"), *b.tiny(b.fresh("oov_run"), data), "--max_steps", "4"])


def _prepare(b: Bench, corpus: Path, out: Path, *extra) -> Result:
    return run([PY, script("prepare_data"), "--files", corpus, "--output_dir", out, "--shard_tokens", "20000",
                "--val_tokens", "10000", "--progress", "false", *extra])


def t_prepare_edited_after_kill(b: Bench) -> Result:
    work = b.fresh("prepare_edit")
    work.mkdir()
    corpus = work / "corpus.txt"
    corpus.write_text(b.corpus.read_text())
    out = work / "shards"
    job = subprocess.Popen([PY, script("prepare_data"), "--files", corpus, "--output_dir", out, "--shard_tokens",
                            "20000", "--val_tokens", "10000", "--num_workers", "1", "--chunk_documents", "1",
                            "--txt_split", "line"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*_train_*.npy"))) < 3 and job.poll() is None:
        time.sleep(0.01)
    job.kill()
    job.wait()
    corpus.write_text(corpus.read_text().replace("First Citizen", "Second Citizen"))
    return _prepare(b, corpus, out, "--txt_split", "line")


def t_prepare_edited_after_completion(b: Bench) -> Result:
    work = b.fresh("prepare_edit_complete")
    work.mkdir()
    corpus = work / "corpus.txt"
    corpus.write_text(b.corpus.read_text()[:100_000])
    out = work / "shards"
    _prepare(b, corpus, out)
    corpus.write_text(corpus.read_text() + "\nA new line.\n")
    return _prepare(b, corpus, out)


def _sweep_file(b: Bench, name: str, variants, seeds=(1,), **extra) -> Path:
    base = {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32}, "data": {"data": str(b.data)},
            "train": {"cpu": True, "mixed_precision": "no", "seq_len": 64, "micro_batch_size": 4,
                      "total_batch_tokens": 256, "max_steps": 6, "warmup_steps": 2, "eval_every": 3,
                      "eval_tokens": 2048, "sample_every": 0, "save_every": 3, "keep_last": 0},
            "logging": {"progress_bar": False}}
    folder = b.fresh(name)
    folder.mkdir()
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": "base.yaml", "output_dir": str(folder / "out"), "seeds": list(seeds), "target_val_loss": 10.0,
             "variants": variants, **extra}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def t_sweep_diverged(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_diverged", {"poisoned": {"callbacks": ["tests.helpers.PoisonStep:step=3,permanent=true"]},
                                             "fine": {}})
    r = run([PY, script("sweep"), path])
    summary = path.parent / "out" / "sweep.json"
    if r.returncode == 0 and summary.exists():
        ranking = json.loads(summary.read_text())["ranking"]
        if ranking[0]["variant"] != "fine" or not ranking[-1]["versus_best"].startswith("diverged"):
            r.wrong = "the diverged variant is not shown as diverged, last"
    again = run([PY, script("sweep"), path])
    if "diverged earlier" not in again.stdout:
        r.wrong = "the diverged variant was trained again without --rerun"
    return r


def t_sweep_edited(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_edited", {"a": {"max_lr": 3.0e-3}})
    run([PY, script("sweep"), path])
    raw = yaml.safe_load(path.read_text())
    raw["variants"]["a"] = {"max_lr": 1.0e-3}
    path.write_text(yaml.safe_dump(raw))
    return run([PY, script("sweep"), path])


def t_sweep_duplicate_names(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_dup", {"a": {}})
    path.write_text(path.read_text().replace("variants:\n  a: {}", "variants:\n  a: {max_lr: 0.001}\n  a: {}"))
    return run([PY, script("sweep"), path])


def t_sweep_escaping_name(b: Bench) -> Result:
    r = run([PY, script("sweep"), _sweep_file(b, "sweep_escape", {"../../escaped": {}})])
    if (b.work / "tries" / "escaped").exists() or (b.work / "escaped").exists():
        r.wrong = "a variant wrote outside the sweep folder"
    return r


def t_sweep_variant_seed(b: Bench) -> Result:
    return run([PY, script("sweep"), _sweep_file(b, "sweep_seed", {"a": {"seed": 7}})])


def t_sweep_invalid_late_variant(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_invalid", {"good": {}, "bad": {"max_lr": -1.0}})
    r = run([PY, script("sweep"), path])
    if (path.parent / "out" / "good").exists():
        r.wrong = "an earlier variant trained before the invalid one was found"
    return r


def t_sweep_summary_words(b: Bench) -> Result:
    """One seed each, equal results: 'no difference (equal)', never 'better by 0' or 'worse by -'."""
    path = _sweep_file(b, "sweep_tie", {"a": {}, "b": {"callbacks": []}})
    r = run([PY, script("sweep"), path])
    text = (path.parent / "out" / "sweep.md").read_text() if (path.parent / "out" / "sweep.md").exists() else ""
    if "better by 0" in text or "worse by -" in text or "no difference (equal)" not in text:
        r.wrong = "tie worded wrongly: " + text[-300:]
    return r


def t_sweep_time_with_log_every(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_time", {"every1": {}, "every3": {"log_every": 3}})
    r = run([PY, script("sweep"), path])
    ranking = json.loads((path.parent / "out" / "sweep.json").read_text())["ranking"] if r.returncode == 0 else []
    times = {row["variant"]: row["train_seconds"] for row in ranking}
    if times and not 0.5 < times["every3"] / times["every1"] < 2.0:
        r.wrong = f"train time with log_every 3 is {times['every3']:.1f} s against {times['every1']:.1f} s"
    return r


def _flag(*extra):
    return lambda b: b.pretrain(b.fresh("flag"), "--max_steps", "4", *extra)


def _preset(text: str):
    def action(b: Bench) -> Result:
        folder = b.fresh("preset")
        folder.mkdir()
        (folder / "p.yaml").write_text(text)
        return b.pretrain(folder / "run", "--config", folder / "p.yaml")
    return action


def t_warmup_longer(b: Bench) -> Result:
    r = b.pretrain(b.fresh("warmup"), "--max_steps", "3", "--warmup_steps", "10")
    if "is longer than --max_steps" not in r.stdout:
        r.wrong = "warmup longer than the run: not a word"
    return r


def t_eval_tokens_too_many(b: Bench) -> Result:
    r = b.pretrain(b.fresh("eval_tokens"), "--max_steps", "2", "--eval_every", "2", "--eval_tokens", "10000000")
    if "asks for more validation tokens" not in r.stdout:
        r.wrong = "ten million validation tokens from a 30k split: not a word"
    return r


def t_analyze_empty_events(b: Bench) -> Result:
    folder = b.fresh("empty_events")
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")
    return run([PY, script("analyze_run"), folder])


def t_reference_nan(b: Bench) -> Result:
    return run([PY, script("analyze_run"), b.finished, "--reference_loss", "nan", "--out", b.fresh("nan")])


def t_push_bad_repo_id(b: Bench) -> Result:
    return run([PY, script("push_to_hub"), b.finished / "final", "--repo_id", "not a repo id!!", "--dry_run",
                "--staging_dir", b.fresh("stage")])


def _small_filesystem(b: Bench, name: str, megabytes: int) -> Path | None:
    mount = b.fresh(name)
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)],
                          capture_output=True)
    return mount if made.returncode == 0 else None


def t_full_disk_checkpoint(b: Bench) -> Result:
    mount = _small_filesystem(b, "full_ckpt", 16)
    if mount is None:
        return Result(None, wrong="cannot mount a small filesystem here (skipped)")
    try:
        r = b.pretrain(mount / "run", "--max_steps", "4", "--save_every", "2")
        if list(mount.rglob("*.tmp")):
            r.wrong = "a half-written folder was left on the full disk"
        return r
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def t_full_disk_prepare(b: Bench) -> Result:
    mount = _small_filesystem(b, "full_prep", 1)
    if mount is None:
        return Result(None, wrong="cannot mount a small filesystem here (skipped)")
    try:
        (mount / "filler").write_bytes(b"\0" * 800_000)
        return _prepare(b, b.corpus, mount / "shards")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def t_file_size_limit(b: Bench) -> Result:
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))

    return run([PY, script("pretrain"), *b.tiny(b.fresh("ulimit")), "--max_steps", "2", "--save_every", "2"],
               preexec_fn=limit)


def t_push_no_network(b: Bench) -> Result:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return run([PY, script("push_to_hub"), b.finished / "final", "--repo_id", "me/x", "--timeout", "5"],
               env={"HF_TOKEN": "hf_x", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0",
                    "HF_HOME": str(b.fresh("hf_home"))})


def t_push_silent_server(b: Bench) -> Result:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        return run([PY, script("push_to_hub"), b.finished / "final", "--repo_id", "me/x", "--timeout", "3"],
                   timeout=200, env={"HF_TOKEN": "hf_x", "HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}",
                                     "HF_HUB_OFFLINE": "0", "HF_HOME": str(b.fresh("hf_home2"))})
    finally:
        server.close()
        for connection in held:
            connection.close()


def t_generate_cuda(b: Bench) -> Result:
    import torch

    r = run([PY, script("generate"), b.finished / "final", "--device", "cuda"])
    if torch.cuda.is_available() and r.returncode == 0:
        r.returncode = 2  # on a GPU machine this try is valid input: count it as refused-cleanly-or-not-applicable
        r.stderr += "error: n/a on a CUDA machine"
    return r


def t_fault_injection_shard_folder(b: Bench) -> Result:
    return run([PY, REPO / "bench" / "fault_injection.py", "--data", b.data, "--kills", "1", "--steps", "4"])


def t_evaluate_output_missing_dir(b: Bench) -> Result:
    target = b.fresh("eval_out") / "NO" / "SUCH" / "DIR" / "eval.json"
    r = run([PY, script("evaluate_checkpoints"), b.finished / "final", "--output", target, "--skip_hellaswag",
             "--val_tokens", "4096"])
    if r.returncode == 0 and not target.exists():
        r.wrong = "exit 0 but no eval.json"
    return r


def t_analyze_read_only(b: Bench) -> Result:
    mount = _small_filesystem(b, "ro_run", 64)
    if mount is None:
        return Result(None, wrong="cannot mount a filesystem here (skipped)")
    try:
        shutil.copytree(b.finished, mount / "run", ignore=shutil.ignore_patterns("checkpoints", "final"))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        return run([PY, script("analyze_run"), mount / "run"])
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _signal_during(b: Bench, name: str, sig, twice: bool = False) -> Result:
    run_dir = b.fresh(name)
    # Slow steps when testing a second signal: the run must still be finishing its step when it arrives, more than
    # the 2-second window after the first (a repeat within it is the same signal): 6-second steps, wherever the
    # first signal lands in one.
    args = [PY, script("pretrain"), *b.tiny(run_dir), "--max_steps", "200", "--save_every", "50", "--callbacks",
            f"tests.helpers.SlowSteps:seconds={6.0 if twice else 0.05}"]
    job = subprocess.Popen([str(a) for a in args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(run_dir.glob("events.out.tfevents.*")):
        time.sleep(0.05)
    time.sleep(2.0)
    job.send_signal(sig)
    if twice:
        time.sleep(2.5)
        job.send_signal(sig)
    try:
        out, err = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        job.kill()
        return Result(None, hung=True)
    r = Result(job.returncode, out, err)
    if twice:
        r.wrong = None if job.returncode in (128 + sig, -sig) else f"exit {job.returncode} after a second signal"
        r.returncode = 0 if r.wrong is None else r.returncode
        return r
    if job.returncode != 75 or "Resume with" not in out:
        r.wrong = f"exit {job.returncode}, no resume command"
        return r
    stopped_at = int(out.split("after step ")[1].split()[0])
    resumed = b.pretrain(run_dir, "--save_every", "50", "--resume_from_checkpoint", "latest", "--max_steps",
                         str(stopped_at + 2))
    if resumed.returncode != 0:
        r.wrong = "the interrupted run did not resume: " + resumed.stderr[-300:]
    r.returncode = 0 if r.wrong is None else r.returncode
    return r


def t_sigint_pretrain(b: Bench) -> Result:
    return _signal_during(b, "sigint", signal.SIGINT)


def t_sigterm_pretrain(b: Bench) -> Result:
    return _signal_during(b, "sigterm", signal.SIGTERM)


def t_sigterm_twice(b: Bench) -> Result:
    return _signal_during(b, "sigterm_twice", signal.SIGTERM, twice=True)


def t_sigint_prepare(b: Bench) -> Result:
    work = b.fresh("sigint_prepare")
    work.mkdir()
    corpus = work / "c.txt"
    corpus.write_text(b.corpus.read_text() * 10)
    job = subprocess.Popen([PY, script("prepare_data"), "--files", corpus, "--output_dir", work / "out",
                            "--shard_tokens", "20000", "--num_workers", "1", "--txt_split", "line",
                            "--chunk_documents", "16"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((work / "out").glob("*_train_*.npy")):
        time.sleep(0.01)
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=60)
    return Result(job.returncode, out, err + ("\nerror: interrupted" if job.returncode == 130 else ""))


def t_resume_changed_lr(b: Bench) -> Result:
    run_dir = b.copy_of_finished("resume_lr")
    r = b.pretrain(run_dir, "--max_steps", "8", "--resume_from_checkpoint", "latest", "--max_lr", "1e-4",
                   "--min_lr", "1e-5", "--weight_decay", "0.0")
    from training.analysis.runs import read_run_scalars

    lrs = read_run_scalars(run_dir)["train/lr"]
    # The change is printed with its section (optimizer.max_lr since the configuration has per-component sections).
    if r.returncode == 0 and (lrs[7] > 1e-4 or not re.search(r"\bmax_lr: 0\.0006 -> 0\.0001", r.stdout)):
        r.wrong = f"lr at step 7 is {lrs[7]:.3g} after --max_lr 1e-4 (or the change was not printed)"
    return r


TRIES = [
    Try("fresh run over an existing run", "1", "clear", t_fresh_over_run),
    Try("fresh run with --overwrite_output_dir", "1", "accepted", t_overwrite),
    Try("second launch 0.5 s after the first", "2", "clear", t_two_launches),
    Try("stale lock of a dead process", "2", "accepted", t_stale_lock),
    Try("--init_from a 32-wide model with --n_embd 64", "3", "clear", t_init_from_other_width),
    Try("corrupt random_states_0.pkl", "4", "clear", t_corrupt_rng),
    Try("truncated optimizer.bin", "4", "clear", t_truncated_optimizer),
    Try("corrupt data-loader state", "4", "clear", t_corrupt_loader_state),
    Try("out-of-vocabulary id, meta.json not updated", "5", "clear", t_oov_in_shard),
    Try("prepare killed, corpus edited, rerun", "6", "clear", t_prepare_edited_after_kill),
    Try("prepare complete, corpus edited, rerun", "6", "clear", t_prepare_edited_after_completion),
    Try("sweep: a variant diverges", "7", "accepted", t_sweep_diverged),
    Try("sweep: finished variant edited", "7", "clear", t_sweep_edited),
    Try("sweep: duplicated variant names", "7", "clear", t_sweep_duplicate_names),
    Try("sweep: variant named ../../escaped", "7", "clear", t_sweep_escaping_name),
    Try("sweep: variant sets its own seed", "7", "clear", t_sweep_variant_seed),
    Try("sweep: invalid variant after a valid one", "7", "clear", t_sweep_invalid_late_variant),
    Try("sweep: a tie is worded as one", "7", "accepted", t_sweep_summary_words),
    Try("sweep: train time with log_every 3", "7", "accepted", t_sweep_time_with_log_every),
    Try("--max_steps 3.7", "8", "clear", _flag("--max_steps", "3.7")),
    Try("preset max_steps: 3.7", "8", "clear", _preset("train:\n  max_steps: 3.7\n")),
    Try("preset with a duplicated key", "8", "clear", _preset("train:\n  max_lr: 0.001\n  max_lr: 0.002\n")),
    Try("--max_lr 0", "8", "clear", _flag("--max_lr", "0")),
    Try("--weight_decay -5", "8", "clear", _flag("--weight_decay", "-5")),
    Try("--grad_clip -1", "8", "clear", _flag("--grad_clip", "-1")),
    Try("--muon_lr with AdamW", "8", "clear", _flag("--muon_lr", "1e-3")),
    Try("--target_val_loss with evaluation off", "8", "clear", _flag("--target_val_loss", "3.0")),
    Try("warmup longer than max_steps (a note)", "8", "accepted", t_warmup_longer),
    Try("eval_tokens 10M against a 30k split (a note)", "8", "accepted", t_eval_tokens_too_many),
    Try("analyze_run on 0-byte event files", "8", "clear", t_analyze_empty_events),
    Try("analyze_run --reference_loss nan", "8", "clear", t_reference_nan),
    Try("push_to_hub --dry_run with 'not a repo id!!'", "8", "clear", t_push_bad_repo_id),
    Try("a 16 MB filesystem during a checkpoint", "9", "clear", t_full_disk_checkpoint),
    Try("a full filesystem during preparation", "9", "clear", t_full_disk_prepare),
    Try("ulimit -f during a checkpoint", "9", "clear", t_file_size_limit),
    Try("push_to_hub with no network", "10", "clear", t_push_no_network),
    Try("push_to_hub to a server that never answers", "10", "clear", t_push_silent_server),
    Try("empty max_lr: in a preset", "11", "clear", _preset("train:\n  max_lr:\n")),
    Try("spike_detector:z_threshold=abc", "11", "clear", _flag("--callbacks", "spike_detector:z_threshold=abc")),
    Try("early_stopping with evaluation off", "11", "clear", _flag("--callbacks", "early_stopping")),
    Try("generate.py --device cuda on a CPU build", "11", "clear", t_generate_cuda),
    Try("fault_injection.py --data a shard folder", "11", "accepted", t_fault_injection_shard_folder),
    Try("evaluate_checkpoints --output NO/SUCH/DIR/eval.json", "11", "accepted", t_evaluate_output_missing_dir),
    Try("analyze_run on a read-only run", "11", "clear", t_analyze_read_only),
    Try("Ctrl-C (SIGINT) in pretrain, then resume", "12", "accepted", t_sigint_pretrain),
    Try("SIGTERM in pretrain, then resume", "12", "accepted", t_sigterm_pretrain),
    Try("SIGTERM twice: exit at once", "12", "accepted", t_sigterm_twice),
    Try("Ctrl-C in prepare_data", "12", "clear", t_sigint_prepare),
    Try("resume with --max_lr 1e-4 --weight_decay 0", "19", "accepted", t_resume_changed_lr),
    Try("resume latest with no checkpoint", "-", "clear",
        lambda b: b.pretrain(b.fresh("none"), "--max_steps", "2", "--resume_from_checkpoint", "latest")),
    Try("resume from a folder that is not a checkpoint", "-", "clear",
        lambda b: b.pretrain(b.fresh("notckpt"), "--resume_from_checkpoint", b.work)),
    Try("resume with another n_layer", "-", "clear",
        lambda b: b.pretrain(b.copy_of_finished("nlayer"), "--n_layer", "3", "--resume_from_checkpoint", "latest")),
    Try("--data that does not exist", "-", "clear",
        lambda b: run([PY, script("pretrain"), *b.tiny(b.fresh("nodata"), b.work / "nowhere")])),
    Try("--data a binary file", "-", "clear",
        lambda b: run([PY, script("pretrain"), *b.tiny(b.fresh("bin"), Path(sys.executable).resolve())])),
    Try("an unknown flag", "-", "clear", _flag("--max_lrr", "1")),
    Try("a preset that does not exist", "-", "clear", _flag("--config", "nowhere.yaml")),
    Try("total_batch_tokens that does not divide", "-", "clear", _flag("--total_batch_tokens", "1000")),
    Try("sample_tokens beyond the context", "-", "clear", _flag("--sample_every", "2", "--sample_tokens", "100")),
    Try("--output_dir that is a file", "-", "clear",
        lambda b: run([PY, script("pretrain"), *b.tiny(Path(sys.executable).resolve())])),
    Try("generate with an empty prompt", "-", "clear",
        lambda b: run([PY, script("generate"), b.finished / "final", "--prompt", "", "--device", "cpu"])),
    Try("evaluate a missing checkpoint", "-", "clear",
        lambda b: run([PY, script("evaluate_checkpoints"), b.work / "nowhere"])),
    Try("analyze a missing run", "-", "clear", lambda b: run([PY, script("analyze_run"), b.work / "nowhere"])),
    Try("push_to_hub without a token", "-", "clear",
        lambda b: run([PY, script("push_to_hub"), b.finished / "final", "--repo_id", "me/x"],
                      env={"HF_TOKEN": "", "HF_HOME": str(b.fresh("no_token"))})),
    Try("prepare_data: a bad JSON line", "-", "clear", lambda b: _bad_jsonl(b, False)),
    Try("prepare_data: a bad JSON line, --skip_bad_lines", "-", "accepted", lambda b: _bad_jsonl(b, True)),
    Try("prepare_data into a folder of other settings", "-", "clear", lambda b: _prepare(b, b.corpus, b.data)),
]


def _bad_jsonl(b: Bench, skip: bool) -> Result:
    folder = b.fresh("badjson" + ("_skip" if skip else ""))
    folder.mkdir()
    corpus = folder / "c.jsonl"
    lines = [json.dumps({"text": line}) for line in b.corpus.read_text().split("\n\n")[:300]]
    lines.insert(50, "{not json")
    corpus.write_text("\n".join(lines) + "\n")
    return _prepare(b, corpus, folder / "out", *(["--skip_bad_lines", "true"] if skip else []))


CLASSES = ["clear", "accepted", "silently wrong", "traceback", "lost", "hang"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="A text corpus (tinyshakespeare.txt).")
    parser.add_argument("--only", default=None, help="Run the tries whose name contains this text.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    parser.add_argument("--start", type=int, default=1, help="Begin at this try's number (the [N/M] of an earlier "
                                                             "battery that stopped), to finish it in parts.")
    parser.add_argument("--end", type=int, default=None, help="Stop after this try's number (with --start: one part "
                                                              "of the battery).")
    parser.add_argument("--extra", action="store_true", help="Also the tries of bench/hostile_tries_more.py that "
                                                             "repeat another try or check a plain refusal.")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    # Item 26's tries (every script, judged from the files each run left) are in their own module.
    from bench import hostile_tries_more
    from bench.common import machine, table

    work = Path(tempfile.mkdtemp(prefix="hostile_tries_"))
    bench = Bench(work, Path(args.data).resolve())
    more = hostile_tries_more.TRIES + (hostile_tries_more.EXTRA_TRIES if args.extra else [])
    tries = [t for t in TRIES + more if args.only is None or args.only in t.name]
    rows, counts = [], Counter()
    started = time.perf_counter()
    for number, attempt in enumerate(tries, start=1):
        if number < args.start or (args.end is not None and number > args.end):
            continue
        t0 = time.perf_counter()
        try:
            attempt.seen = attempt.action(bench)
        except Exception as error:  # noqa: BLE001 - the battery itself must finish; say what broke
            attempt.seen = Result(None, stderr=f"Traceback (most recent call last): battery error {error!r}")
        verdict = attempt.classify()
        counts[verdict] += 1
        mark = "" if verdict == attempt.expect else "  <-- expected " + attempt.expect
        detail = attempt.seen.wrong or (attempt.seen.stderr.strip().splitlines() or [""])[-1][:150]
        print(f"[{number}/{len(tries)}] {attempt.name}: {verdict} ({time.perf_counter() - t0:.0f} s){mark}\n"
              f"      {detail}", flush=True)
        rows.append([attempt.item, attempt.name, attempt.expect, verdict])
    print()
    print(machine())
    print(f"{len(tries)} tries in {time.perf_counter() - started:.0f} s; work folder {work}")
    print(table(["item", "try", "expected", "observed"], rows))
    print()
    print(table(CLASSES, [[counts[c] for c in CLASSES]]))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
