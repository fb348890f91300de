"""More hostile tries (item 26), appended to ``bench/hostile_tries.py``'s list: every script, judged from the files
each run left, not only from its exit code.

    26.1  nothing of the user's touched: folders seeded with the user's own files, hashed before and after
    26.2  every record true: changes/interventions after a rollback, refused resumes, sweep rankings, model cards
    26.3  estimates know their ground: forecast, plan, the noise scale, the spike guard, the report's advice
    26.4  signals and odd environments: SIGHUP/SIGTERM/SIGINT, absurd horizons, read-only folders, swapped folders
    26.x  the README's other features, each checked from what it wrote

Each try is small (the battery's tiny model: 2 layers, width 32, seq 64, a few steps). Runs that several tries read
are built once per battery (``_cached``) and copied before a try changes them.
"""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import yaml

from bench.hostile_tries import (
    PY,
    REPO,
    Bench,
    Result,
    Try,
    _small_filesystem,
    _sweep_file,
    run,
    same,
    script,
    weights_of,
)

HELLASWAG = Path(os.environ.get("GPT2_PRETRAIN_TEST_DATA", REPO.parent / "shared" / "data")) / \
    "hellaswag_val_subset1000.jsonl"


# ----------------------------------------------------------------------------------------------- helpers
def run_at(args: list, cwd: Path = REPO, env: dict | None = None, timeout: float = 300, preexec_fn=None) -> Result:
    """``run`` with another working folder (``.`` is the user's folder) and environment (HOME)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    try:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=environment, preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired as expired:
        return Result(None, str(expired.stdout or ""), str(expired.stderr or ""), hung=True)
    return Result(done.returncode, done.stdout, done.stderr)


def start(args: list, cwd: Path = REPO, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen([str(a) for a in args], cwd=cwd, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)


def _default_signals():
    """A battery started in the background by a non-interactive shell hands SIGINT down ignored: restore it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def finish(job: subprocess.Popen, timeout: float = 120) -> Result:
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
        return Result(None, out, err, hung=True)
    return Result(job.returncode, out, err)


def wait_until(predicate, timeout: float, job: subprocess.Popen | None = None, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if job is not None and job.poll() is not None:
            return predicate()
        time.sleep(every)
    return False


def limit_memory(gigabytes: float = 6.0):
    """A preexec_fn: an address-space limit, so a try that allocates the impossible fails instead of the machine."""
    import resource

    def apply():
        _default_signals()
        size = int(gigabytes * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    return apply


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed): its SHA-256, a link's target, or a special file's kind."""
    found = {}
    if not root.exists():
        return found
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[relative] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[relative] = f"special:{stat.S_IFMT(mode)}"
    return found


def judge_untouched(r: Result, root: Path, before: dict, new_ok: bool = True, ignore=()) -> Result:
    """``lost`` when a file of ``before`` changed or went missing; with ``new_ok`` false, ``wrong`` when the try left
    new files (a refusal must touch nothing)."""
    after = snapshot(root)
    changed = [name for name in before if after.get(name) != before[name]]
    if changed:
        r.lost = True
        r.wrong = "changed or missing: " + ", ".join(changed[:6]) + (f" and {len(changed) - 6} more"
                                                                       if len(changed) > 6 else "")
    elif not new_ok:
        new = [n for n in sorted(set(after) - set(before)) if not any(n.startswith(i) for i in ignore)]
        if new:
            r.wrong = "a refusal left new files: " + ", ".join(new[:6])
    return r


USER_FILES = {
    "config.yaml": b"# my own experiment settings, not a run's\nlr: 0.1\nnotes: keep me\n",
    "analysis/notes.md": b"# What I learned\n\nThree weeks of notes.\n",
    "final/essay.docx": b"PK\x03\x04 my final essay, the only copy" + bytes(range(256)),
    "notes.tmp": b"scratch that is mine, not a half-written shard\n",
    "tensorboard/events.out.tfevents.1700000000.otherhost.4242.0": b"\x18\x00\x00\x00\x00\x00\x00\x00another project",
}


def seed_user(folder: Path, files: dict | None = None) -> dict:
    for name, content in (USER_FILES if files is None else files).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return snapshot(folder)


def user_folder(b: Bench, name: str, files: dict | None = None) -> tuple[Path, dict]:
    folder = b.fresh(name)
    folder.mkdir(parents=True)
    return folder, seed_user(folder, files)


def expect_refusal(r: Result, *words: str) -> Result:
    """A refusal must exit non-zero; the words (any of them) must be in what it printed."""
    said = (r.stdout + r.stderr).lower()
    if r.returncode == 0:
        r.wrong = r.wrong or "exit 0 where a refusal was due"
    elif words and not any(w.lower() in said for w in words) and not r.wrong:
        r.wrong = f"refused, but without naming {' / '.join(words)}: " + (r.stderr.strip().splitlines() or [""])[-1][:200]
    return r


def _cached(b: Bench, key: str, build):
    store = b.__dict__.setdefault("_more_cache", {})
    if key not in store:
        store[key] = build()
    return store[key]


def scalars(run_dir: Path) -> dict:
    from training.analysis.runs import read_run_scalars

    return read_run_scalars(run_dir)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def pretrain_at(b: Bench, output_dir, *extra, cwd: Path = REPO, env=None, timeout=300, data=None) -> Result:
    return run_at([PY, script("pretrain"), *b.tiny(output_dir, data), *extra], cwd=cwd, env=env, timeout=timeout)


def copy_run(b: Bench, source: Path, name: str) -> Path:
    path = b.fresh(name)
    shutil.copytree(source, path, symlinks=True)
    return path


# ----------------------------------------------------------------------------------------------- shared runs
def eval_run(b: Bench) -> Path:
    """24 steps, validation every 3 (1,024 tokens), checkpoints at 8, 16, 24: what forecasts and reports read."""
    def build():
        path = b.folder("eval_run")
        r = b.pretrain(path, "--max_steps", "24", "--eval_every", "3", "--eval_tokens", "1024", "--save_every", "8",
                       "--diagnostics_every", "4")
        if r.returncode != 0:
            raise RuntimeError("the shared 24-step run failed: " + r.stderr[-400:])
        return path
    return _cached(b, "eval_run", build)


def wsd_flat(b: Bench) -> Path:
    """A constant-lr run (WSD, --decay_fraction 0): 20 steps, validation every 4, checkpoints at 10, 20."""
    def build():
        path = b.folder("wsd_flat")
        r = b.pretrain(path, "--max_steps", "20", "--lr_schedule", "wsd", "--decay_fraction", "0", "--eval_every", "4",
                       "--eval_tokens", "1024", "--save_every", "10")
        if r.returncode != 0:
            raise RuntimeError("the shared constant-lr run failed: " + r.stderr[-400:])
        return path
    return _cached(b, "wsd_flat", build)


def cooled(b: Bench) -> Path:
    """A cool-down branch of ``wsd_flat`` from step 10, 6 steps, in its default place beside the run."""
    def build():
        parent = wsd_flat(b)
        r = run([PY, script("cooldown"), parent / "checkpoints" / "step_0000010", "--steps", "6", "--eval_every", "2",
                 "--eval_tokens", "1024"])
        branch = parent.with_name(f"{parent.name}-cooldown-10")
        if r.returncode != 0 or not branch.is_dir():
            raise RuntimeError("the shared cool-down failed: " + r.stderr[-400:])
        return branch
    return _cached(b, "cooled", build)


def diverged_run(b: Bench) -> tuple[Path, Result]:
    """--max_lr 5 without the guard: 20 steps (or fewer, if the run stops itself)."""
    def build():
        path = b.folder("diverged_run")
        r = b.pretrain(path, "--max_steps", "20", "--max_lr", "5", "--eval_every", "4", "--eval_tokens", "1024",
                       "--save_every", "10")
        return path, r
    return _cached(b, "diverged_run", build)


def small_data(b: Bench) -> Path:
    """About 2,000 training tokens: a 40-step run reads them five times."""
    def build():
        folder = b.folder("small_data")
        folder.mkdir(parents=True, exist_ok=True)
        corpus = folder / "small.txt"
        corpus.write_text(b.corpus.read_text()[:11_000])
        r = run([PY, script("prepare_data"), "--files", corpus, "--output_dir", folder / "shards", "--shard_tokens",
                 "5000", "--val_tokens", "700", "--name", "small", "--progress", "false"])
        if r.returncode != 0:
            raise RuntimeError("preparing the small corpus failed: " + r.stderr[-400:])
        return folder / "shards"
    return _cached(b, "small_data", build)


def many_epochs(b: Bench) -> Path:
    def build():
        path = b.folder("many_epochs")
        r = run([PY, script("pretrain"), *b.tiny(path, small_data(b)), "--max_steps", "40", "--eval_every", "5",
                 "--eval_tokens", "512", "--save_every", "20", "--diagnostics_every", "5"])
        if r.returncode != 0:
            raise RuntimeError("the many-epoch run failed: " + r.stderr[-400:])
        return path
    return _cached(b, "many_epochs", build)


def analyzed(b: Bench) -> Path:
    """A copy of the finished run with its analysis/ written by analyze_run (which records .written.json)."""
    def build():
        path = b.folder("analyzed")
        shutil.copytree(b.finished, path)
        r = run([PY, script("analyze_run"), path])
        if r.returncode != 0:
            raise RuntimeError("analyze_run on the finished run failed: " + r.stderr[-400:])
        return path
    return _cached(b, "analyzed", build)


def initial_loss(run_dir: Path) -> float:
    losses = scalars(run_dir).get("train/loss", {})
    return losses[min(losses)]


def check_forecast_numbers(r: Result, run_dir: Path, measured_inside: bool = True, ceiling: float | None = None):
    """--json: every loss and interval end in (0, the run's initial loss]; the run's own last measured validation
    loss inside the interval of the row that compares with it."""
    if r.returncode != 0:
        return r
    try:
        out = json.loads(r.stdout[r.stdout.index("{"):])
    except (ValueError, json.JSONDecodeError):
        r.wrong = "--json printed no JSON"
        return r
    ceiling = ceiling if ceiling is not None else initial_loss(run_dir)
    rows = [("this run", out["final_val_loss"], *out["final_val_loss_interval"])]
    rows += [(h["what"][:60], h["loss"], h["low"], h["high"]) for h in out.get("horizons", [])]
    for what, loss, low, high in rows:
        for name, value in (("loss", loss), ("low", low), ("high", high)):
            if value is None or not math.isfinite(value) or not 0 < value <= ceiling + 1e-9:
                r.wrong = f"{what}: {name} {value} outside (0, initial loss {ceiling:.4f}]"
                return r
        if not low <= loss <= high:
            r.wrong = f"{what}: loss {loss:.4f} outside its own interval {low:.4f}-{high:.4f}"
            return r
    if measured_inside and "last logged step" in out.get("what", ""):
        val = scalars(run_dir).get("val/loss", {})
        if val:
            measured = val[max(val)]
            low, high = out["final_val_loss_interval"]
            if not low <= measured <= high:
                r.wrong = (f"the run's own last validation loss {measured:.4f} (step {max(val)}) is outside the "
                           f"interval {low:.4f}-{high:.4f} of the row that compares with it")
    target = out.get("target")
    if target and target.get("tokens") is not None and not (math.isfinite(target["tokens"]) and
                                                            target["tokens"] >= 0):
        r.wrong = f"tokens to the target: {target['tokens']}"
    r.forecast = out
    return r


# =============================================================================================== 26.1
# Nothing of the user's touched.
def t_overwrite_cwd_user(b: Bench) -> Result:
    folder, before = user_folder(b, "ow_cwd_user")
    r = pretrain_at(b, Path("."), "--max_steps", "2", "--overwrite_output_dir", "true", cwd=folder)
    return judge_untouched(expect_refusal(r, "current folder", "did not write", "marker"), folder, before, new_ok=False)


def t_overwrite_cwd_run(b: Bench) -> Result:
    folder = b.copy_of_finished("ow_cwd_run")
    before = snapshot(folder)
    r = pretrain_at(b, Path("."), "--max_steps", "2", "--overwrite_output_dir", "true", cwd=folder)
    return judge_untouched(expect_refusal(r, "current folder"), folder, before, new_ok=False)


def t_overwrite_home_user(b: Bench) -> Result:
    home, before = user_folder(b, "ow_home_user")
    r = pretrain_at(b, home, "--max_steps", "2", "--overwrite_output_dir", "true", env={"HOME": str(home)})
    return judge_untouched(expect_refusal(r, "home folder", "did not write", "marker"), home, before, new_ok=False)


def t_overwrite_home_run(b: Bench) -> Result:
    """HOME is itself a finished run folder (a user who trained into ~): still never cleared."""
    home = b.copy_of_finished("ow_home_run")
    before = snapshot(home)
    r = pretrain_at(b, home, "--max_steps", "2", "--overwrite_output_dir", "true", env={"HOME": str(home)})
    return judge_untouched(expect_refusal(r, "home folder"), home, before, new_ok=False)


def t_overwrite_above_home(b: Bench) -> Result:
    """--output_dir is the folder that holds HOME (a marked run folder with the home inside)."""
    top = b.copy_of_finished("ow_above_home")
    home = top / "me"
    home.mkdir()
    seed_user(home)
    before = snapshot(top)
    r = pretrain_at(b, top, "--max_steps", "2", "--overwrite_output_dir", "true", env={"HOME": str(home)})
    return judge_untouched(expect_refusal(r, "above your home", "home folder", "did not write"), top, before,
                           new_ok=False)


def t_overwrite_never_a_run(b: Bench) -> Result:
    folder, before = user_folder(b, "ow_never")
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(expect_refusal(r, "marker", "did not write"), folder, before, new_ok=False)


def t_overwrite_run_plus_user_file(b: Bench) -> Result:
    folder = b.copy_of_finished("ow_plus_user")
    seed_user(folder, {"my_notes.md": b"what I saw in this run\n"})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(expect_refusal(r, "my_notes.md"), folder, before, new_ok=False)


def t_overwrite_user_file_in_checkpoint(b: Bench) -> Result:
    folder = b.copy_of_finished("ow_user_ckpt")
    seed_user(folder, {"checkpoints/step_0000004/my_eval.json": b'{"hellaswag": 0.25}\n'})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(expect_refusal(r, "my_eval.json"), folder, before, new_ok=False)


def t_overwrite_user_file_in_final(b: Bench) -> Result:
    folder = b.copy_of_finished("ow_user_final")
    seed_user(folder, {"final/essay.docx": USER_FILES["final/essay.docx"]})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(expect_refusal(r, "essay.docx"), folder, before, new_ok=False)


def t_overwrite_user_file_in_analysis(b: Bench) -> Result:
    folder = copy_run(b, analyzed(b), "ow_user_analysis")
    seed_user(folder, {"analysis/notes.md": USER_FILES["analysis/notes.md"]})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(expect_refusal(r, "notes.md"), folder, before, new_ok=False)


def t_overwrite_other_tensorboard(b: Bench) -> Result:
    """A run folder into which the user copied another project's TensorBoard logs (tensorboard/, a name this version
    never writes): they are not the run's outputs."""
    folder = b.copy_of_finished("ow_other_tb")
    seed_user(folder, {"tensorboard/events.out.tfevents.1700000000.otherhost.4242.0":
                       USER_FILES["tensorboard/events.out.tfevents.1700000000.otherhost.4242.0"]})
    before = {k: v for k, v in snapshot(folder).items() if k.startswith("tensorboard/")}
    r = b.pretrain(folder, "--max_steps", "2", "--overwrite_output_dir", "true")
    return judge_untouched(r, folder, before)


def t_fresh_into_user_folder(b: Bench) -> Result:
    folder, before = user_folder(b, "fresh_user")
    r = b.pretrain(folder, "--max_steps", "2")
    return judge_untouched(expect_refusal(r, "did not write", "config.yaml"), folder, before, new_ok=False)


def t_fresh_user_config_only(b: Bench) -> Result:
    folder, before = user_folder(b, "fresh_user_config", {"config.yaml": USER_FILES["config.yaml"]})
    r = b.pretrain(folder, "--max_steps", "2")
    return judge_untouched(expect_refusal(r, "config.yaml"), folder, before, new_ok=False)


def t_branch_from_other_run_into_user_folder(b: Bench) -> Result:
    """--resume_from_checkpoint another run's checkpoint with --output_dir a folder of the user's files."""
    folder, before = user_folder(b, "branch_user")
    r = b.pretrain(folder, "--max_steps", "6", "--resume_from_checkpoint",
                   b.finished / "checkpoints" / "step_0000004")
    return judge_untouched(expect_refusal(r, "did not write", "config.yaml"), folder, before, new_ok=False)


def t_rollback_user_file_in_final(b: Bench) -> Result:
    folder = b.copy_of_finished("rollback_final_user")
    seed_user(folder, {"final/essay.docx": USER_FILES["final/essay.docx"]})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "6", "--save_every", "2", "--resume_from_checkpoint",
                   folder / "checkpoints" / "step_0000002")
    return judge_untouched(expect_refusal(r, "essay.docx"), folder, before, new_ok=False)


def t_rollback_user_file_in_later_checkpoint(b: Bench) -> Result:
    folder = b.copy_of_finished("rollback_ckpt_user")
    seed_user(folder, {"checkpoints/step_0000006/probe_results.csv": b"step,acc\n6,0.25\n"})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "6", "--save_every", "2", "--resume_from_checkpoint",
                   folder / "checkpoints" / "step_0000002")
    return judge_untouched(expect_refusal(r, "probe_results.csv"), folder, before, new_ok=False)


def t_keep_last_user_file(b: Bench) -> Result:
    folder = b.copy_of_finished("keep_last_user")
    seed_user(folder, {"checkpoints/step_0000002/my_eval.json": b'{"mine": true}\n'})
    before = {k: v for k, v in snapshot(folder).items() if k.endswith("my_eval.json")}
    r = b.pretrain(folder, "--max_steps", "10", "--save_every", "2", "--keep_last", "1", "--resume_from_checkpoint",
                   "latest")
    kept = sorted(p.name for p in (folder / "checkpoints").iterdir() if p.name.startswith("step_"))
    if r.returncode == 0 and kept != ["step_0000002", "step_0000010"]:
        r.wrong = f"checkpoints after --keep_last 1: {kept}"
    elif r.returncode == 0 and "my_eval.json" not in r.stdout:
        r.wrong = "a checkpoint was kept past --keep_last without a word"
    return judge_untouched(r, folder, before)


def t_user_tmp_folder_in_checkpoints(b: Bench) -> Result:
    """checkpoints/eval.tmp/ is the user's (their evaluation scratch), not a half-written checkpoint."""
    folder = b.copy_of_finished("ckpt_user_tmp")
    seed_user(folder, {"checkpoints/eval.tmp/results.md": b"# my evaluation of step 4\n"})
    before = {k: v for k, v in snapshot(folder).items() if k.startswith("checkpoints/eval.tmp/")}
    r = b.pretrain(folder, "--max_steps", "8", "--save_every", "2", "--resume_from_checkpoint", "latest")
    return judge_untouched(r, folder, before)


def t_extend_with_user_file_in_final(b: Bench) -> Result:
    """final/ holds a user file and the run is extended: refused at start-up, not after the training."""
    folder = b.copy_of_finished("extend_final_user")
    seed_user(folder, {"final/essay.docx": USER_FILES["final/essay.docx"]})
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "8", "--save_every", "2", "--resume_from_checkpoint", "latest")
    if (folder / "checkpoints" / "step_0000008").exists():
        r.wrong = "it trained to step 8 before refusing final/"
    return judge_untouched(expect_refusal(r, "essay.docx"), folder, before, new_ok=False)


def _cooldown(b: Bench, checkpoint: Path, *extra, timeout: float = 300) -> Result:
    return run([PY, script("cooldown"), checkpoint, "--steps", "2", *extra], timeout=timeout)


def t_cooldown_into_parent(b: Bench) -> Result:
    folder = b.copy_of_finished("cool_parent")
    before = snapshot(folder)
    r = _cooldown(b, folder / "checkpoints" / "step_0000004", "--output_dir", folder)
    return judge_untouched(expect_refusal(r, "own folder"), folder, before, new_ok=False)


def t_cooldown_inside_parent(b: Bench) -> Result:
    folder = b.copy_of_finished("cool_inside")
    before = snapshot(folder)
    r = _cooldown(b, folder / "checkpoints" / "step_0000004", "--output_dir", folder / "cool")
    if (folder / "cool").exists():
        r.wrong = "the refused branch folder was created inside the run"
    return judge_untouched(expect_refusal(r, "inside the run"), folder, before, new_ok=False)


def t_cooldown_above_parent(b: Bench) -> Result:
    top = b.fresh("cool_above")
    shutil.copytree(b.finished, top / "run")
    seed_user(top, {"plan.md": b"my plan for these runs\n"})
    before = snapshot(top)
    r = _cooldown(b, top / "run" / "checkpoints" / "step_0000004", "--output_dir", top)
    return judge_untouched(expect_refusal(r, "holds the run"), top, before, new_ok=False)


def t_cooldown_into_user_folder(b: Bench) -> Result:
    folder, before = user_folder(b, "cool_user")
    r = _cooldown(b, b.finished / "checkpoints" / "step_0000004", "--output_dir", folder)
    return judge_untouched(expect_refusal(r, "did not write", "config.yaml"), folder, before, new_ok=False)


def t_cooldown_default_place_taken(b: Bench) -> Result:
    """The default branch folder <run>-cooldown-4 already holds the user's files."""
    top = b.fresh("cool_default_taken")
    shutil.copytree(b.finished, top / "run")
    taken = top / "run-cooldown-4"
    taken.mkdir()
    seed_user(taken)
    before = snapshot(top)
    r = _cooldown(b, top / "run" / "checkpoints" / "step_0000004")
    return judge_untouched(expect_refusal(r, "did not write", "config.yaml"), top, before, new_ok=False)


def t_cooldown_from_abandoned_checkpoint(b: Bench) -> Result:
    """Cool down a checkpoint of an abandoned branch (checkpoints/abandoned/<branch>/step_6): the branch must land
    beside the run, never inside it."""
    top = b.fresh("cool_abandoned")
    run_dir = top / "run"
    shutil.copytree(b.finished, run_dir)
    back = b.pretrain(run_dir, "--max_steps", "4", "--save_every", "2", "--resume_from_checkpoint",
                      run_dir / "checkpoints" / "step_0000002")
    branches = sorted((run_dir / "checkpoints" / "abandoned").glob("*/step_0000006"))
    if back.returncode != 0 or not branches:
        return Result(None, back.stdout, back.stderr, wrong="could not make an abandoned branch: " + back.stderr[-200:])
    before = snapshot(run_dir)
    r = _cooldown(b, branches[0])
    after = snapshot(run_dir)
    new = sorted(set(after) - set(before))
    if new:
        r.wrong = f"the cool-down wrote inside the parent run: {new[0]} (and {len(new) - 1} more files)"
    return judge_untouched(r, run_dir, before)


def _sweep_with_user_file(b: Bench, name: str, rerun: bool) -> Result:
    path = _sweep_file(b, name, {"a": {}})
    out = path.parent / "out"
    if rerun:
        first = run([PY, script("sweep"), path])
        if first.returncode != 0:
            return Result(None, first.stdout, first.stderr, wrong="the first sweep failed")
        seed_user(out / "a" / "seed1", {"notes.md": b"why variant a looked odd\n"})
    else:
        (out / "a" / "seed1").mkdir(parents=True)
        seed_user(out / "a" / "seed1")
    before = snapshot(out / "a" / "seed1")
    r = run([PY, script("sweep"), path, *(["--rerun", "a"] if rerun else [])])
    words = ("notes.md",) if rerun else ("did not write", "marker", ".gpt2-pretrain.json")
    return judge_untouched(expect_refusal(r, *words), out / "a" / "seed1", before)


def t_sweep_rerun_user_file(b: Bench) -> Result:
    return _sweep_with_user_file(b, "sweep_rerun_user", rerun=True)


def t_sweep_variant_folder_is_users(b: Bench) -> Result:
    return _sweep_with_user_file(b, "sweep_user_folder", rerun=False)


def _prepare_into(b: Bench, out: Path, cwd: Path = REPO) -> Result:
    return run_at([PY, script("prepare_data"), "--files", b.corpus, "--output_dir", out, "--shard_tokens", "100000",
                   "--val_tokens", "30000", "--progress", "false"], cwd=cwd)


def t_prepare_into_user_folder(b: Bench) -> Result:
    folder, before = user_folder(b, "prep_user", {"report.docx": b"PK\x03\x04 report", "notes.tmp": b"mine\n",
                                                  "figures/fig1.png": b"\x89PNG mine"})
    r = _prepare_into(b, folder)
    return judge_untouched(expect_refusal(r, "report.docx", "did not write", "notes.tmp"), folder, before,
                           new_ok=False)


def t_prepare_only_notes_tmp(b: Bench) -> Result:
    folder, before = user_folder(b, "prep_notes_tmp", {"notes.tmp": USER_FILES["notes.tmp"]})
    r = _prepare_into(b, folder)
    return judge_untouched(expect_refusal(r, "notes.tmp"), folder, before, new_ok=False)


def t_prepare_shards_plus_user_readme(b: Bench) -> Result:
    folder = b.fresh("prep_plus_readme")
    shutil.copytree(b.data, folder)
    seed_user(folder, {"README.md": b"# where these shards came from (mine)\n"})
    before = snapshot(folder)
    r = run([PY, script("prepare_data"), "--files", b.corpus, "--output_dir", folder, "--shard_tokens", "100000",
             "--val_tokens", "30000", "--name", "shk", "--progress", "false"])
    return judge_untouched(r, folder, before)  # complete already: refused, or a no-op; never a changed file


def t_prepare_into_cwd(b: Bench) -> Result:
    folder, before = user_folder(b, "prep_cwd")
    r = _prepare_into(b, Path("."), cwd=folder)
    return judge_untouched(expect_refusal(r, "did not write", "current folder", "config.yaml"), folder, before,
                           new_ok=False)


def _push_dry(b: Bench, checkpoint: Path, staging: Path, env=None, *extra) -> Result:
    return run_at([PY, script("push_to_hub"), checkpoint, "--repo_id", "me/tiny", "--dry_run", "--staging_dir",
                   staging, *extra], env=env)


def t_push_staging_user_folder(b: Bench) -> Result:
    folder, before = user_folder(b, "stage_user")
    r = _push_dry(b, b.finished / "final", folder)
    return judge_untouched(expect_refusal(r, "did not write"), folder, before, new_ok=False)


def t_push_staging_is_final(b: Bench) -> Result:
    run_dir = b.copy_of_finished("stage_final")
    before = snapshot(run_dir)
    r = _push_dry(b, run_dir / "final", run_dir / "final")
    return judge_untouched(expect_refusal(r, "did not write"), run_dir, before, new_ok=False)


def t_push_staging_is_run(b: Bench) -> Result:
    run_dir = b.copy_of_finished("stage_run")
    before = snapshot(run_dir)
    r = _push_dry(b, run_dir / "final", run_dir)
    return judge_untouched(expect_refusal(r, "did not write"), run_dir, before, new_ok=False)


def t_push_staging_home(b: Bench) -> Result:
    home, before = user_folder(b, "stage_home")
    r = _push_dry(b, b.finished / "final", home, {"HOME": str(home)})
    return judge_untouched(expect_refusal(r, "home folder", "did not write"), home, before, new_ok=False)


def t_push_restage_user_file_in_plots(b: Bench) -> Result:
    """An earlier staging of ours, and the user added a figure inside its plots/ before staging again."""
    staging = b.fresh("restage_user") / "stage"
    first = _push_dry(b, analyzed(b) / "final", staging)
    if first.returncode != 0:
        return Result(None, first.stdout, first.stderr, wrong="the first staging failed")
    seed_user(staging, {"plots/my_annotated_loss.png": b"\x89PNG annotated by hand"})
    before = {k: v for k, v in snapshot(staging).items() if k == "plots/my_annotated_loss.png"}
    r = _push_dry(b, analyzed(b) / "final", staging)
    return judge_untouched(expect_refusal(r, "my_annotated_loss.png", "did not write"), staging, before)


def t_push_restage_own(b: Bench) -> Result:
    staging = b.fresh("restage_own") / "stage"
    first = _push_dry(b, b.finished / "final", staging)
    r = _push_dry(b, b.finished / "final", staging)
    if first.returncode == 0 and r.returncode == 0 and not (staging / "README.md").is_file():
        r.wrong = "the second staging has no model card"
    return r


def t_push_stages_user_analysis_notes(b: Bench) -> Result:
    """analysis/ holds the user's private notes beside the plots: the staging (what would be uploaded, publicly by
    default) must carry the plots, not the notes."""
    run_dir = copy_run(b, analyzed(b), "stage_private_notes")
    seed_user(run_dir, {"analysis/private_notes.md": b"# not for publication: reviewer names, doubts\n"})
    before = snapshot(run_dir)
    staging = b.fresh("stage_private_notes_out")
    r = _push_dry(b, run_dir / "final", staging)
    if r.returncode == 0 and any(p.name == "private_notes.md" for p in staging.rglob("*")):
        r.wrong = "the user's analysis/private_notes.md was staged for upload (plots/private_notes.md)"
    return judge_untouched(r, run_dir, before)


def _lock_try(b: Bench, name: str, make) -> Result:
    top = b.fresh(name)
    run_dir = top / "run"
    shutil.copytree(b.finished, run_dir)
    make(top, run_dir / ".run.lock")
    before = snapshot(top)
    r = b.pretrain(run_dir, "--max_steps", "8", "--save_every", "2", "--resume_from_checkpoint", "latest",
                   timeout=120)
    return judge_untouched(expect_refusal(r, ".run.lock"), top, before, new_ok=False)


def t_lock_is_folder(b: Bench) -> Result:
    def make(top, lock):
        lock.mkdir()
        (lock / "mine.txt").write_text("a folder of mine that happens to have this name\n")
    return _lock_try(b, "lock_folder", make)


def t_lock_symlink_to_user_file(b: Bench) -> Result:
    def make(top, lock):
        (top / "thesis.tex").write_text("\\documentclass{article} my thesis, the only copy\n")
        lock.symlink_to(top / "thesis.tex")
    return _lock_try(b, "lock_symlink", make)


def t_lock_dangling_symlink(b: Bench) -> Result:
    def make(top, lock):
        lock.symlink_to(top / "would_be_created.txt")
    r = _lock_try(b, "lock_dangling", make)
    if (b.work / "tries" / "lock_dangling" / "would_be_created.txt").exists():
        r.wrong = "a file was created through the dangling .run.lock link"
    return r


def t_lock_fifo(b: Bench) -> Result:
    return _lock_try(b, "lock_fifo", lambda top, lock: os.mkfifo(lock))


def t_analyze_out_user_report(b: Bench) -> Result:
    """--out a folder of the user's where report.md is their own hand-written report."""
    folder, before = user_folder(b, "analyze_out_user", {"report.md": b"# My report (written by hand)\n",
                                                         "lossGraph.png": b"\x89PNG my own figure"})
    r = run([PY, script("analyze_run"), b.finished, "--out", folder])
    return judge_untouched(r, folder, before)


def t_analyze_keeps_user_notes(b: Bench) -> Result:
    run_dir = copy_run(b, analyzed(b), "analyze_user_notes")
    seed_user(run_dir, {"analysis/notes.md": USER_FILES["analysis/notes.md"]})
    before = {k: v for k, v in snapshot(run_dir).items() if k == "analysis/notes.md"}
    r = run([PY, script("analyze_run"), run_dir])
    return judge_untouched(r, run_dir, before)


def t_log_reference_to_user_folder(b: Bench) -> Result:
    """evaluate_checkpoints --log_reference_to a folder that is not a run (the user's)."""
    folder, before = user_folder(b, "logref_user")
    r = run([PY, script("evaluate_checkpoints"), b.finished / "final", "--reference", b.finished / "final",
             "--skip_hellaswag", "--val_tokens", "2048", "--output", b.fresh("logref_out") / "eval.json",
             "--log_reference_to", folder])
    return judge_untouched(expect_refusal(r, "not a run", "run folder", "did not write"), folder, before,
                           new_ok=False)


def t_overwrite_keeps_prepared_data(b: Bench) -> Result:
    """--data a corpus file (tokenized into <run>/data), then --overwrite_output_dir: the data is kept, unchanged."""
    folder = b.fresh("ow_keeps_data")
    corpus = b.fresh("ow_keeps_data_corpus")
    corpus.mkdir()
    (corpus / "c.txt").write_text(b.corpus.read_text()[:200_000])
    first = pretrain_at(b, folder, "--max_steps", "2", "--val_tokens", "10000", "--shard_tokens", "20000",
                        data=corpus / "c.txt")
    if first.returncode != 0:
        return Result(None, first.stdout, first.stderr, wrong="the first run failed: " + first.stderr[-200:])
    before = {k: v for k, v in snapshot(folder).items() if k.startswith("data/")}
    r = pretrain_at(b, folder, "--max_steps", "2", "--val_tokens", "10000", "--shard_tokens", "20000",
                    "--overwrite_output_dir", "true", data=corpus / "c.txt")
    if not before:
        r.wrong = "no data/ was prepared in the run folder"
    return judge_untouched(r, folder, before)


# =============================================================================================== 26.2
# Every record true.
def t_rollback_records_survive(b: Bench) -> Result:
    """A change at step 6 and a spike-guard record at step 5, then a return to step 4: neither may stay in the run's
    own records (they describe abandoned steps)."""
    folder = b.copy_of_finished("rollback_records")
    extended = b.pretrain(folder, "--max_steps", "8", "--save_every", "2", "--resume_from_checkpoint", "latest",
                          "--max_lr", "1e-3")
    changes = jsonl(folder / "changes.jsonl")
    if extended.returncode != 0 or not changes:
        return Result(None, extended.stdout, extended.stderr, wrong="the changed resume left no changes.jsonl record")
    with (folder / "interventions.jsonl").open("a") as handle:  # what the guard writes for a skipped step
        handle.write(json.dumps({"step": 5, "action": "skip", "loss": 12.0, "loss_z": 9.0, "grad_norm": 3.0,
                                 "grad_norm_z": 1.0, "signal": "loss", "time": time.time()}) + "\n")
    r = b.pretrain(folder, "--max_steps", "8", "--save_every", "2", "--max_lr", "1e-3", "--resume_from_checkpoint",
                   folder / "checkpoints" / "step_0000004")
    left_changes = [c for c in jsonl(folder / "changes.jsonl") if c.get("step", 0) >= 6]
    left_interventions = [c for c in jsonl(folder / "interventions.jsonl") if c.get("step", 0) > 4]
    if left_changes or left_interventions:
        r.wrong = (f"after returning to step 4 the run still records abandoned steps: changes {left_changes[:1]}, "
                   f"interventions {left_interventions[:1]}")
    elif r.returncode == 0 and not any(c.get("step") == 4 for c in jsonl(folder / "changes.jsonl")):
        r.wrong = "the return to step 4 with --max_lr 1e-3 recorded no change at step 4"
    return r


def t_resume_finished_changed_lr(b: Bench) -> Result:
    folder = b.copy_of_finished("finished_changed_lr")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "6", "--resume_from_checkpoint", "latest", "--max_lr", "1e-3")
    return judge_untouched(expect_refusal(r, "max_steps"), folder, before, new_ok=False)


def t_resume_below_checkpoint(b: Bench) -> Result:
    folder = b.copy_of_finished("below_ckpt")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "4", "--resume_from_checkpoint", "latest")
    return judge_untouched(expect_refusal(r, "max_steps"), folder, before, new_ok=False)


def t_rollback_same_settings_exact(b: Bench) -> Result:
    """A return to step 4 with the same settings: no change recorded, and the final weights equal the first
    history's bit for bit (exact resume)."""
    folder = b.copy_of_finished("rollback_exact")
    original = weights_of(folder / "final")
    r = b.pretrain(folder, "--max_steps", "6", "--save_every", "2", "--resume_from_checkpoint",
                   folder / "checkpoints" / "step_0000004")
    if r.returncode == 0:
        # The copy lives in another folder than the original run: output_dir differs by construction.
        changed = [c for c in jsonl(folder / "changes.jsonl") if set(c.get("changes", {})) - {"train.output_dir"}]
        if changed:
            r.wrong = f"unchanged settings recorded as changes: {changed[:1]}"
        elif not same(original, weights_of(folder / "final")):
            r.wrong = "the replayed steps 5-6 ended with other weights than the first history"
        elif not list((folder / "checkpoints" / "abandoned").glob("*/final")):
            r.wrong = "the first history's final/ was not set aside as an abandoned branch"
    return r


def t_config_yaml_follows_change(b: Bench) -> Result:
    folder = b.copy_of_finished("config_follows")
    r = b.pretrain(folder, "--max_steps", "8", "--resume_from_checkpoint", "latest", "--max_lr", "1e-3")
    if r.returncode == 0:
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        records = jsonl(folder / "changes.jsonl")
        if saved["train"]["max_lr"] != 1e-3:
            r.wrong = f"config.yaml still says max_lr {saved['train']['max_lr']}"
        elif not records or records[0].get("step") != 6:
            r.wrong = f"changes.jsonl: {records[:1]} (a change at step 6 expected)"
        elif "max_lr" not in json.dumps(records):
            r.wrong = "changes.jsonl does not name max_lr"
    return r


def t_sweep_ranks_every_variant(b: Bench) -> Result:
    path = _sweep_file(b, "sweep_rank_all", {
        "fine": {}, "early": {"callbacks": ["tests.helpers.PoisonStep:step=2,permanent=true"]},
        "late": {"callbacks": ["tests.helpers.PoisonStep:step=5,permanent=true"]}})
    r = run([PY, script("sweep"), path])
    summary = path.parent / "out" / "sweep.json"
    if r.returncode != 0 or not summary.exists():
        return r
    ranking = json.loads(summary.read_text())["ranking"]
    names = [row["variant"] for row in ranking]
    if sorted(names) != ["early", "fine", "late"]:
        r.wrong = f"ranked variants: {names}"
    elif names[0] != "fine":
        r.wrong = f"a diverged variant ranked above the healthy one: {names}"
    else:
        for row in ranking[1:]:
            step = json.loads((path.parent / "out" / row["variant"] / "seed1" / "sweep_run.json").read_text())[
                "last_good_step"]
            if not row["versus_best"].startswith("diverged") or f"step {step}" not in row["versus_best"]:
                r.wrong = f"{row['variant']}: '{row['versus_best']}' does not say diverged after step {step}"
                break
    return r


def t_sweep_summarize_unrun_variant(b: Bench) -> Result:
    """A variant added to the file but not run yet: --summarize still lists it (as not run), never drops it."""
    path = _sweep_file(b, "sweep_unrun", {"a": {}})
    first = run([PY, script("sweep"), path])
    if first.returncode != 0:
        return Result(None, first.stdout, first.stderr, wrong="the sweep failed")
    raw = yaml.safe_load(path.read_text())
    raw["variants"]["b_not_run"] = {"max_lr": 1.0e-3}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = run([PY, script("sweep"), path, "--summarize"])
    text = (path.parent / "out" / "sweep.md").read_text() if (path.parent / "out" / "sweep.md").exists() else ""
    if r.returncode == 0 and "b_not_run" not in text:
        r.wrong = "the variant that has not run is missing from sweep.md"
    return r


def _card(staging: Path) -> str:
    card = staging / "README.md"
    return card.read_text() if card.is_file() else ""


def t_card_qk_norm(b: Bench) -> Result:
    run_dir = b.fresh("card_qk")
    trained = b.pretrain(run_dir, "--max_steps", "2", "--qk_norm", "true")
    if trained.returncode != 0:
        return Result(None, trained.stdout, trained.stderr, wrong="the qk_norm run failed: " + trained.stderr[-200:])
    staging = b.fresh("card_qk_stage")
    r = _push_dry(b, run_dir / "final", staging)
    if r.returncode == 0:
        if (staging / "gpt2-export").exists():
            r.wrong = "a qk_norm model was staged with a gpt2-export/ folder"
        elif "gpt2-export" in _card(staging):
            r.wrong = "the card of a qk_norm model names gpt2-export/, which was not staged"
    return r


def _named_paths(card: str) -> set[str]:
    """Relative paths a card points the reader to: markdown links/images and `code` spans that look like paths."""
    names = set(re.findall(r"\]\(([^)#:\s]+)\)", card))
    names |= {m for m in re.findall(r"`([A-Za-z0-9_.\-]+/(?:[A-Za-z0-9_.\-]+)?)`", card)}
    names |= {m for m in re.findall(r'subfolder="([^"]+)"', card)}
    return {n.rstrip("/") for n in names if not n.startswith(("http", "runs/<", "/"))}


def t_card_names_only_staged(b: Bench) -> Result:
    staging = b.fresh("card_default")
    r = _push_dry(b, analyzed(b) / "final", staging)
    card = _card(staging)
    if r.returncode == 0:
        missing = sorted(n for n in _named_paths(card) if not (staging / n).exists())
        state = json.loads((staging / "training_state.json").read_text())
        if missing:
            r.wrong = f"the card names {missing}, not staged"
        elif str(b.work) in card or str(b.corpus.parent) in card:
            r.wrong = "the card holds a local path"
        elif "| steps | 6 |" not in card or state.get("global_step") != 6:
            r.wrong = "the card's step count is not the model's (6)"
        elif "gpt2-export" not in card or not (staging / "gpt2-export" / "config.json").is_file():
            r.wrong = "the default model's gpt2-export/ is missing from the staging or the card"
    return r


def t_card_checkpoint_numbers(b: Bench) -> Result:
    """Staging an earlier checkpoint's model: the card's numbers are that checkpoint's, not final/'s."""
    staging = b.fresh("card_ckpt")
    r = _push_dry(b, b.finished / "checkpoints" / "step_0000002" / "model", staging)
    card = _card(staging)
    if r.returncode == 0 and ("| steps | 2 |" not in card or "| tokens trained | 512 |" not in card):
        found = re.findall(r"\| (steps|tokens trained) \| ([^|]+) \|", card)
        r.wrong = f"the card of step 2 says {found}"
    return r


def t_card_model_moved_out_of_run(b: Bench) -> Result:
    """A model folder copied away from its run: nothing of a run to stage; the card must not point to runs/ or
    plots/, nor name a local path."""
    model = b.fresh("card_moved") / "my_model"
    shutil.copytree(b.finished / "final", model)
    staging = b.fresh("card_moved_stage")
    r = _push_dry(b, model, staging)
    card = _card(staging)
    if r.returncode == 0:
        missing = sorted(n for n in _named_paths(card) if not (staging / n).exists())
        if missing:
            r.wrong = f"the card names {missing}, not staged"
        elif str(b.work) in card:
            r.wrong = "the card holds a local path"
    return r


def t_card_eval_json_numbers(b: Bench) -> Result:
    """--eval_json from evaluate_checkpoints: the card's evaluation row carries the same validation loss."""
    out = b.fresh("card_eval") / "eval.json"
    ev = run([PY, script("evaluate_checkpoints"), b.finished / "final", "--skip_hellaswag", "--val_tokens", "2048",
              "--output", out])
    if ev.returncode != 0:
        return Result(None, ev.stdout, ev.stderr, wrong="evaluate_checkpoints failed: " + ev.stderr[-200:])
    loss = json.loads(out.read_text())["models"][0]["val_loss"]
    staging = b.fresh("card_eval_stage")
    r = _push_dry(b, b.finished / "final", staging, None, "--eval_json", out)
    if r.returncode == 0 and f"{loss:.4f}" not in _card(staging):
        r.wrong = f"the card does not carry the measured validation loss {loss:.4f}"
    return r


def t_prepare_meta_true(b: Bench) -> Result:
    import numpy as np

    out = b.fresh("prep_meta")
    r = run([PY, script("prepare_data"), "--files", b.corpus, "--output_dir", out, "--shard_tokens", "20000",
             "--val_tokens", "10000", "--max_tokens", "65000", "--progress", "false"])
    if r.returncode == 0:
        meta = json.loads((out / "meta.json").read_text())
        counted = {"train": 0, "val": 0}
        for shard in sorted(out.glob("*.npy")):
            counted["val" if "_val_" in shard.name else "train"] += len(np.load(shard, mmap_mode="r"))
        if counted != {k: meta["tokens"][k] for k in ("train", "val")}:
            r.wrong = f"meta.json says {meta['tokens']}, the shards hold {counted}"
        elif sum(counted.values()) > 65000:
            r.wrong = f"--max_tokens 65000 but {sum(counted.values())} tokens written"
    return r


def t_eval_matches_run(b: Bench) -> Result:
    """evaluate_checkpoints on final/ with the run's defaults measures the run's own last val/loss."""
    run_dir = eval_run(b)
    out = b.fresh("eval_matches") / "eval.json"
    r = run([PY, script("evaluate_checkpoints"), run_dir / "final", "--skip_hellaswag", "--output", out])
    if r.returncode == 0:
        measured = json.loads(out.read_text())["models"][0]["val_loss"]
        val = scalars(run_dir)["val/loss"]
        logged = val[max(val)]
        if abs(measured - logged) > 2e-3:
            r.wrong = f"evaluate says {measured:.4f}, the run logged {logged:.4f} at step {max(val)}"
    return r


def t_cooldown_records(b: Bench) -> Result:
    branch = cooled(b)
    r = Result(0, "", "")
    record = json.loads((branch / "branch.json").read_text()) if (branch / "branch.json").exists() else {}
    lrs = scalars(branch).get("train/lr", {})
    if record.get("step", record.get("parent_step")) != 10 and "step_0000010" not in json.dumps(record):
        r.wrong = f"branch.json does not name step 10: {record}"
    elif not lrs or max(lrs) != 16:
        r.wrong = f"the branch's last logged step is {max(lrs) if lrs else None}, not 16"
    elif abs(lrs[11] - 6e-4) > 1e-9 or any(lrs[s + 1] >= lrs[s] for s in range(11, 16)) or \
            not 6e-5 * (1 - 1e-6) <= lrs[16] < 6e-4 / 3:
        # build-nanogpt's convention: step s trains at the schedule's value for s - 1, so the floor is reached
        # just after the last step; the last step is near it, the first at the parent's rate.
        r.wrong = f"the cool-down's learning rates: {[f'{lrs[s]:.3g}' for s in sorted(lrs)]}"
    return r


def t_spike_guard_rollback_records(b: Bench) -> Result:
    """--max_lr 5 with a checkpoint every step: the guard rolls back, then stops; interventions.jsonl records each
    act, and only for steps that survived."""
    folder = b.fresh("guard_rollback")
    r = b.pretrain(folder, "--max_steps", "20", "--spike_guard", "true", "--max_lr", "5", "--save_every", "1",
                   timeout=300)
    records = jsonl(folder / "interventions.jsonl")
    actions = [x.get("action") for x in records]
    if "rollback" not in actions or actions[-1] != "stop":
        r.wrong = f"interventions.jsonl actions: {actions}"
    elif r.returncode == 0:
        r.wrong = "exit 0 after the guard stopped the run"
    elif not list((folder / "checkpoints" / "abandoned").glob("*")):
        r.wrong = "rollbacks recorded, but no abandoned branch set aside"
    return r


# =============================================================================================== 26.3
# Estimates know their ground.
def _forecast(run_dir: Path, *extra, timeout: float = 180, **kwargs) -> Result:
    return run_at([PY, script("forecast"), run_dir, "--json", *extra], timeout=timeout, **kwargs)


def t_forecast_20_steps(b: Bench) -> Result:
    run_dir = eval_run(b)
    return check_forecast_numbers(_forecast(run_dir), run_dir)


def t_forecast_constant_lr(b: Bench) -> Result:
    run_dir = wsd_flat(b)
    return check_forecast_numbers(_forecast(run_dir), run_dir)


def t_forecast_cooldown_branch(b: Bench) -> Result:
    branch = cooled(b)
    return check_forecast_numbers(_forecast(branch), branch, ceiling=initial_loss(wsd_flat(b)))


def t_forecast_parent_with_branch(b: Bench) -> Result:
    cooled(b)
    run_dir = wsd_flat(b)
    return check_forecast_numbers(_forecast(run_dir, "--schedule", "wsd", "--max_steps", "40"), run_dir)


def t_forecast_diverged(b: Bench) -> Result:
    run_dir, _ = diverged_run(b)
    r = _forecast(run_dir)
    if r.returncode == 0:
        try:
            out = json.loads(r.stdout[r.stdout.index("{"):])
        except ValueError:
            return r
        if out.get("trusted"):
            r.wrong = (f"a diverged run (--max_lr 5) forecast as trusted: loss {out['final_val_loss']:.3f} "
                       f"(its first loss was {initial_loss(run_dir):.3f})")
        else:
            r.wrong = "a diverged run was forecast (exit 0) instead of refused"
    return expect_refusal(r, "diverged")


def t_forecast_past_epoch(b: Bench) -> Result:
    run_dir = many_epochs(b)
    r = check_forecast_numbers(_forecast(run_dir), run_dir, measured_inside=False)
    if r.returncode == 0 and not r.wrong:
        out = r.forecast
        words = " ".join(out.get("warnings", [])).lower()
        if out.get("trusted") or not any(w in words for w in ("epoch", "more than once", "repeated")):
            r.wrong = f"a run that read its data ~5 times: trusted {out.get('trusted')}, warnings {out.get('warnings')}"
    return r


def t_forecast_huge_horizon(b: Bench) -> Result:
    run_dir = eval_run(b)
    r = _forecast(run_dir, "--max_steps", str(10 ** 12), timeout=150, preexec_fn=limit_memory(6))
    r = check_forecast_numbers(r, run_dir, measured_inside=False)
    if r.returncode == 0 and not r.wrong and r.forecast.get("trusted"):
        r.wrong = "a forecast 4e10x past the fitted range is called trusted"
    return r


def t_forecast_wsd_decay_too_long(b: Bench) -> Result:
    return expect_refusal(_forecast(eval_run(b), "--schedule", "wsd", "--max_steps", "100", "--decay_steps", "500"),
                          "decay_steps")


def t_forecast_wsd_decay_whole(b: Bench) -> Result:
    run_dir = eval_run(b)
    return check_forecast_numbers(_forecast(run_dir, "--schedule", "wsd", "--max_steps", "100", "--decay_steps",
                                            "100"), run_dir, measured_inside=False)


def t_forecast_unreachable_target(b: Bench) -> Result:
    run_dir = eval_run(b)
    return check_forecast_numbers(_forecast(run_dir, "--target", "0.01"), run_dir)


def t_forecast_target_above_start(b: Bench) -> Result:
    run_dir = eval_run(b)
    r = check_forecast_numbers(_forecast(run_dir, "--target", "50"), run_dir)
    if r.returncode == 0 and not r.wrong:
        target = r.forecast.get("target") or {}
        if target.get("tokens") is None or target["tokens"] > 24 * 256:
            r.wrong = f"a target above the initial loss: tokens {target.get('tokens')}"
    return r


def t_forecast_target_nan(b: Bench) -> Result:
    return expect_refusal(_forecast(b.finished, "--target", "nan"), "target")


def t_forecast_too_short(b: Bench) -> Result:
    """6 steps, no validation: refused, or a forecast marked untrusted; never an impossible number."""
    r = check_forecast_numbers(_forecast(b.finished), b.finished, measured_inside=False)
    if r.returncode == 0 and not r.wrong and r.forecast.get("trusted"):
        r.wrong = "a 6-step run without validation forecast as trusted"
    return r


def t_forecast_max_steps_below_done(b: Bench) -> Result:
    """--max_steps 10 on a 24-step run: 'this run continued to step 10' is not a thing (a resume refuses it): refused,
    or shown as what it is, a fresh run of 10 steps."""
    r = _forecast(eval_run(b), "--max_steps", "10")
    if r.returncode == 0:
        out = json.loads(r.stdout[r.stdout.index("{"):])
        if out.get("kind") != "fresh" and "already at step" not in out.get("what", ""):
            r.wrong = f"forecast as this run continued to step 10: {out.get('what', '')[:120]}"
    return r


def _plan(*extra, timeout: float = 120) -> Result:
    return run([PY, script("plan"), "--config", "configs/cpu-tiny.yaml", *extra], timeout=timeout)


def _plan_refused(*extra, words=()):
    def action(b: Bench) -> Result:
        r = _plan(*extra)
        if r.returncode not in (2, None) and not r.wrong:
            r.wrong = f"exit {r.returncode} (2 is promised for an input it cannot plan)"
        return expect_refusal(r, *words)
    return action


def _accelerate_config(b: Bench, name: str, content) -> Path:
    folder = b.fresh("acc_" + name)
    folder.mkdir()
    path = folder / "accelerate.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def _plan_with_config(name: str, content, words=()):
    def action(b: Bench) -> Result:
        path = _accelerate_config(b, name, content)
        r = run([PY, script("plan"), "--config", "configs/gpt2-124m-seed.yaml", "--accelerate_config", path, "--card",
                 "H100 80GB"], timeout=120)
        if r.returncode not in (2, None) and not r.wrong:
            r.wrong = f"exit {r.returncode} (2 is promised for a broken accelerate config)"
        return expect_refusal(r, *words)
    return action


DDP = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
       "num_processes": 8, "mixed_precision": "bf16"}


def _plan_json(*extra) -> tuple[Result, dict]:
    r = run([PY, script("plan"), "--config", "configs/gpt2-124m-seed.yaml", "--card", "H100 80GB", "--json", *extra])
    try:
        return r, json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        return r, {}


def t_plan_eager_grows(b: Bench) -> Result:
    r_sdpa, sdpa = _plan_json()
    r, eager = _plan_json("--attn_implementation", "eager")
    if r.returncode in (0, 1) and r_sdpa.returncode in (0, 1):
        r.returncode = 0
        if not sdpa or not eager:
            r.wrong = "no JSON"
        elif not eager["peak_bytes"] > sdpa["peak_bytes"]:
            r.wrong = f"peak under eager {eager['peak_bytes']:,} is not above sdpa's {sdpa['peak_bytes']:,}"
    return r


def t_plan_does_not_fit(b: Bench) -> Result:
    """GPT-2 XL on one 40 GB card, no FSDP: exit 1, 'does not fit', and the way on."""
    r = run([PY, script("plan"), "--config", "configs/gpt2-1558m.yaml", "--card", "A100 40GB"])
    if r.returncode == 1 and "not fit" in r.stdout.lower():
        r.returncode = 0
    elif r.returncode == 0:
        r.wrong = "1.5B with DDP on a 40 GB card planned as fitting"
    return r


def t_plan_json_sane(b: Bench) -> Result:
    r = run([PY, script("plan"), "--config", "configs/cpu-tiny.yaml", "--cpu", "false", "--card", "H100 80GB", "--json"])
    if r.returncode == 0:
        plan = json.loads(r.stdout[r.stdout.index("{"):])
        if not (isinstance(plan.get("peak_bytes"), (int, float)) and 0 < plan["peak_bytes"] < 80 * 2 ** 30):
            r.wrong = f"peak_bytes {plan.get('peak_bytes')}"
        elif "NaN" in r.stdout or "Infinity" in r.stdout:
            r.wrong = "the JSON plan holds NaN or Infinity"
    return r


def _noise_run(b: Bench, name: str, *extra) -> tuple[Result, Path]:
    folder = b.fresh(name)
    return b.pretrain(folder, "--max_steps", "10", "--diagnostics_every", "2", *extra), folder


def t_noise_one_process_no_accumulation(b: Bench) -> Result:
    r, folder = _noise_run(b, "noise_plain")
    values = scalars(folder).get("noise/b_simple_tokens", {}) if r.returncode == 0 else {}
    if r.returncode == 0 and not any(v > 0 and math.isfinite(v) for v in values.values()):
        r.wrong = f"noise/b_simple_tokens: {values or 'absent'} (one process, no accumulation: halves of the batch)"
    return r


def t_noise_with_accumulation(b: Bench) -> Result:
    r, folder = _noise_run(b, "noise_accum", "--micro_batch_size", "2")
    values = scalars(folder).get("noise/b_simple_tokens", {}) if r.returncode == 0 else {}
    if r.returncode == 0 and not any(v > 0 and math.isfinite(v) for v in values.values()):
        r.wrong = f"noise/b_simple_tokens: {values or 'absent'} (one process, 2 micro-batches)"
    return r


def t_noise_micro_batch_one(b: Bench) -> Result:
    r, folder = _noise_run(b, "noise_mb1", "--micro_batch_size", "1", "--total_batch_tokens", "64")
    said = (r.stdout + r.stderr).lower()
    values = scalars(folder).get("noise/b_simple_tokens", {}) if r.returncode == 0 else {}
    if r.returncode == 0 and "noise scale is not measured" not in said and "cannot" not in said:
        r.wrong = "micro-batch 1, one process: no note that the noise scale cannot be measured"
    elif r.returncode == 0 and any(math.isfinite(v) for v in values.values()):
        r.wrong = f"noise/b_simple_tokens logged where it cannot be measured: {values}"
    return r


def t_spike_guard_lr_5(b: Bench) -> Result:
    folder = b.fresh("guard_lr5")
    r = b.pretrain(folder, "--max_steps", "20", "--spike_guard", "true", "--max_lr", "5", "--save_every", "4")
    records = jsonl(folder / "interventions.jsonl")
    if r.returncode == 0 and not records:
        r.wrong = "exit 0 and no record at --max_lr 5"
    elif not records:
        r.wrong = "no interventions.jsonl record of the divergence"
    elif not any(x.get("action") in ("stop", "rollback") for x in records):
        r.wrong = f"the guard neither stopped nor rolled back: {[x.get('action') for x in records]}"
    elif r.returncode == 0:
        r.wrong = "exit 0 after the guard stopped the run"
    return r


def t_spike_guard_never_armed(b: Bench) -> Result:
    r = b.pretrain(b.fresh("guard_short"), "--max_steps", "6", "--spike_guard", "true")
    if r.returncode == 0 and "before the spike guard armed" not in r.stdout and "never armed" not in r.stdout:
        r.wrong = "a 6-step run with --spike_guard: no word that the guard never armed"
    return r


def _report(folder: Path) -> tuple[str, dict]:
    md = folder / "analysis" / "report.md"
    js = folder / "analysis" / "report.json"
    return (md.read_text() if md.exists() else "", json.loads(js.read_text()) if js.exists() else {})


RAISE_WORDS = ("raise", "increase", "higher", "larger", "longer", "more")
LOWER_WORDS = ("lower", "reduce", "decrease", "smaller", "shorter", "fewer", "less")


def contradictory_advice(markdown: str, report: dict) -> str | None:
    """A setting the report tells the reader both to raise and to lower: from report.json's actions (setting,
    direction), and from the Markdown, the direction word just before each --flag ("Raise --grad_clip", "a smaller
    --total_batch_tokens")."""
    turns = {"raise": set(), "lower": set()}
    for finding in report.get("findings", []):
        for action in finding.get("actions") or []:
            if action.get("direction") in turns and action.get("setting"):
                turns[action["direction"]].add(action["setting"])
    for match in re.finditer(r"--([a-z_]+)", markdown):
        before = re.findall(r"[a-z]+", markdown[max(0, match.start() - 40):match.start()].lower())[-3:]
        for word in reversed(before):
            if word in RAISE_WORDS or word in LOWER_WORDS:
                turns["raise" if word in RAISE_WORDS else "lower"].add(match.group(1))
                break
    both = sorted(turns["raise"] & turns["lower"])
    return ", ".join(both) if both else None


def first_content_line(markdown: str) -> str:
    for line in markdown.splitlines():
        if line.strip() and not line.startswith("#"):
            return line.strip()
    return ""


def t_report_healthy_verdict(b: Bench) -> Result:
    run_dir = copy_run(b, eval_run(b), "report_healthy")
    r = run([PY, script("analyze_run"), run_dir])
    md, report = _report(run_dir)
    if r.returncode == 0:
        first = first_content_line(md)
        if not first.lower().startswith(("**verdict", "verdict")):
            r.wrong = f"the report opens with {first[:100]!r}, not a verdict"
        elif (both := contradictory_advice(md, report)):
            r.wrong = f"the report advises both raising and lowering --{both}"
    return r


def t_report_many_epochs(b: Bench) -> Result:
    run_dir = copy_run(b, many_epochs(b), "report_epochs")
    r = run([PY, script("analyze_run"), run_dir])
    md, report = _report(run_dir)
    if r.returncode == 0:
        longer = [f for f in report.get("findings", []) if {"setting": "max_steps", "direction": "raise"} in
                  (f.get("actions") or [])]
        said = re.search(r"[^\n]*(train(ing)? longer|more tokens should help|train for more tokens)[^\n]*", md,
                         re.IGNORECASE)
        if longer or said:
            why = (longer[0].get("recommendation") if longer else said.group(0)) or ""
            r.wrong = f"a run that read its data ~5 times is told to train longer: {why.strip()[:200]}"
        elif (both := contradictory_advice(md, report)):
            r.wrong = f"the report advises both raising and lowering --{both}"
    return r


def t_report_too_short(b: Bench) -> Result:
    run_dir = copy_run(b, b.finished, "report_short")
    r = run([PY, script("analyze_run"), run_dir])
    _, report = _report(run_dir)
    ids = [f.get("id") for f in report.get("findings", [])]
    if r.returncode == 0 and ("too_short" not in ids or "healthy" in ids):
        r.wrong = f"a 6-step run's findings: {ids}"
    return r


def t_report_diverged(b: Bench) -> Result:
    run_dir, _ = diverged_run(b)
    folder = copy_run(b, run_dir, "report_diverged")
    r = run([PY, script("analyze_run"), folder])
    _, report = _report(folder)
    ids = [f.get("id") for f in report.get("findings", [])]
    if r.returncode == 0 and ("healthy" in ids or not any(i in ids for i in ("lr_too_high", "late_divergence"))
                              and "diverg" not in (report.get("verdict") or "").lower()):
        r.wrong = f"--max_lr 5: verdict {report.get('verdict')!r}, findings {ids}"
    return r


def t_report_branch(b: Bench) -> Result:
    branch = copy_run(b, cooled(b), "report_branch")
    shutil.copy2(cooled(b) / "branch.json", branch / "branch.json")
    r = run([PY, script("analyze_run"), branch])
    _, report = _report(branch)
    ids = [f.get("id") for f in report.get("findings", [])]
    if r.returncode == 0 and "branched_from" not in ids:
        r.wrong = f"a cool-down branch's findings do not say where it branched from: {ids}"
    return r


def t_analyze_two_runs(b: Bench) -> Result:
    out = b.fresh("analyze_two")
    r = run([PY, script("analyze_run"), b.finished, eval_run(b), "--out", out])
    if r.returncode == 0 and not (out / "compare_loss.png").is_file():
        r.wrong = "no compare_loss.png"
    elif r.returncode == 0 and len(list(out.glob("*/report.md"))) != 2:
        r.wrong = f"reports: {sorted(str(p.relative_to(out)) for p in out.glob('*/report.md'))}"
    return r


def _dataset_tokens(b: Bench, value: str) -> Result:
    out = b.fresh("dataset_tokens" + value)
    r = run([PY, script("analyze_run"), b.finished, "--dataset_tokens", value, "--out", out])
    if r.returncode == 0:
        md = (out / "report.md").read_text() if (out / "report.md").exists() else ""
        line = next((l for l in md.splitlines() if "dataset tokens" in l), "")
        r.wrong = f"--dataset_tokens {value} accepted; the report says: {line.strip()[:160]}"
    return r


# =============================================================================================== 26.4
# Signals and odd environments.
def _complete_checkpoints(run_dir: Path) -> str | None:
    from training.run.checkpointing import manifest_problems

    for checkpoint in sorted((run_dir / "checkpoints").glob("step_*")):
        problems = manifest_problems(checkpoint)
        if problems is None or problems:
            return f"{checkpoint.name}: {problems or 'no manifest'}"
    return None


def t_sighup_pretrain(b: Bench) -> Result:
    run_dir = b.fresh("sighup")
    job = start([PY, script("pretrain"), *b.tiny(run_dir), "--max_steps", "400", "--save_every", "3", "--callbacks",
                 "tests.helpers.SlowSteps:seconds=0.05"])
    if not wait_until(lambda: (run_dir / "checkpoints" / "step_0000003").is_dir(), 150, job):
        job.kill()
        return Result(None, *job.communicate(), wrong="no checkpoint within 150 s")
    time.sleep(1.5)
    job.send_signal(signal.SIGHUP)
    r = finish(job, 120)
    if r.hung:
        return r
    if (bad := _complete_checkpoints(run_dir)):
        r.wrong = f"a damaged checkpoint after SIGHUP: {bad}"
        return r
    latest = max((run_dir / "checkpoints").glob("step_*"))
    step = int(latest.name.split("_")[1])
    resumed = b.pretrain(run_dir, "--save_every", "3", "--resume_from_checkpoint", "latest", "--max_steps",
                         str(step + 2))
    if resumed.returncode != 0:
        r.wrong = "the run did not resume after SIGHUP: " + resumed.stderr[-200:]
    elif "Traceback" not in r.stderr:
        r.returncode = 0  # stopped (cleanly or by the signal), checkpoints whole, resumable: sane
    return r


def _prepare_args(corpus: Path, out: Path) -> list:
    return [PY, script("prepare_data"), "--files", corpus, "--output_dir", out, "--shard_tokens", "20000",
            "--val_tokens", "10000", "--num_workers", "1", "--txt_split", "line", "--chunk_documents", "16",
            "--progress", "false"]


def _signal_prepare(b: Bench, name: str, sig) -> Result:
    """A signal mid-preparation, then the same command again: the shards equal an uninterrupted preparation's."""
    work = b.fresh(name)
    work.mkdir()
    corpus = work / "c.txt"
    corpus.write_text(b.corpus.read_text() * 3)
    reference = _cached(b, "prepare_reference", lambda: (run(_prepare_args(corpus, b.folder("prep_reference"))),
                                                         b.folder("prep_reference"))[1])
    out = work / "out"
    job = start(_prepare_args(corpus, out))
    wait_until(lambda: len(list(out.glob("*_train_*.npy"))) >= 2, 90, job, every=0.01)
    job.send_signal(sig)
    r = finish(job, 90)
    if r.hung:
        return r
    if "Traceback" in r.stderr:
        return r
    again = run(_prepare_args(corpus, out))
    shards = lambda folder: {k: v for k, v in snapshot(folder).items() if k.endswith(".npy")}
    if again.returncode != 0:
        r.wrong = "the rerun after the signal failed: " + again.stderr[-200:]
    elif shards(out) != shards(reference):
        r.wrong = "the resumed shards differ from an uninterrupted preparation's"
    else:
        r.returncode = 0
    return r


def t_sigterm_prepare(b: Bench) -> Result:
    return _signal_prepare(b, "sigterm_prepare", signal.SIGTERM)


def t_sigint_prepare_identical(b: Bench) -> Result:
    return _signal_prepare(b, "sigint_prepare2", signal.SIGINT)


def t_sighup_prepare(b: Bench) -> Result:
    return _signal_prepare(b, "sighup_prepare", signal.SIGHUP)


def _signal_analyze(b: Bench, name: str, sig) -> Result:
    run_dir = copy_run(b, eval_run(b), name)
    job = start([PY, script("analyze_run"), run_dir])
    # After the imports, while it reads the logs and draws: the first plot appears.
    wait_until(lambda: any((run_dir / "analysis").glob("*.png")) if (run_dir / "analysis").is_dir() else False, 90,
               job, every=0.02)
    job.send_signal(sig)
    r = finish(job, 60)
    if r.hung or "Traceback" in r.stderr:
        return r
    again = run([PY, script("analyze_run"), run_dir])
    if again.returncode != 0:
        r.wrong = "analyze_run failed after the interrupted one: " + again.stderr[-200:]
    else:
        r.returncode = 0
    return r


def t_sigterm_analyze(b: Bench) -> Result:
    return _signal_analyze(b, "sigterm_analyze", signal.SIGTERM)


def t_sigint_analyze(b: Bench) -> Result:
    return _signal_analyze(b, "sigint_analyze", signal.SIGINT)


def _signal_sweep(b: Bench, name: str, sig) -> Result:
    path = _sweep_file(b, name, {"a": {}, "b": {"max_lr": 1e-3}})
    raw = yaml.safe_load(path.read_text())
    base = yaml.safe_load((path.parent / "base.yaml").read_text())
    base["train"].update(max_steps=12, save_every=3)
    base["train"]["callbacks"] = ["tests.helpers.SlowSteps:seconds=0.1"]
    (path.parent / "base.yaml").write_text(yaml.safe_dump(base))
    del raw
    out = path.parent / "out"
    job = start([PY, script("sweep"), path])
    wait_until(lambda: (out / "a" / "seed1" / "checkpoints" / "step_0000003").is_dir(), 150, job)
    time.sleep(0.5)
    job.send_signal(sig)
    r = finish(job, 120)
    if r.hung or "Traceback" in r.stderr:
        return r
    if r.returncode != 75:
        r.wrong = f"exit {r.returncode} after {signal.Signals(sig).name} (75 promised)"
        return r
    again = run([PY, script("sweep"), path])
    summary = out / "sweep.json"
    if again.returncode != 0 or not summary.exists():
        r.wrong = "the sweep did not resume: " + again.stderr[-200:]
    else:
        ranking = json.loads(summary.read_text())["ranking"]
        state = json.loads((out / "a" / "seed1" / "final" / "training_state.json").read_text())
        if sorted(row["variant"] for row in ranking) != ["a", "b"] or state["global_step"] != 12:
            r.wrong = f"after the resumed sweep: ranking {[row['variant'] for row in ranking]}, a at step " \
                      f"{state['global_step']}"
        else:
            r.returncode = 0
    return r


def t_sigterm_sweep(b: Bench) -> Result:
    return _signal_sweep(b, "sigterm_sweep", signal.SIGTERM)


def t_sigint_sweep(b: Bench) -> Result:
    return _signal_sweep(b, "sigint_sweep", signal.SIGINT)


def _absurd_horizon(b: Bench, name: str, *extra) -> Result:
    """A run of 10^12 steps: refused, or it starts training within 2 minutes (then SIGTERM: exit 75)."""
    run_dir = b.fresh(name)
    job = start([PY, script("pretrain"), *b.tiny(run_dir), "--save_every", "2", *extra])
    started = wait_until(lambda: (run_dir / "checkpoints" / "step_0000002").is_dir(), 120, job)
    if job.poll() is not None:
        return finish(job)
    if not started:
        job.kill()
        out, err = job.communicate()
        return Result(None, out, err, hung=True, wrong="no step within 2 minutes of start-up")
    job.send_signal(signal.SIGTERM)
    r = finish(job, 120)
    if r.returncode == 75:
        r.returncode = 0
    elif not r.hung:
        r.wrong = f"exit {r.returncode} after SIGTERM"
    return r


def t_absurd_max_steps(b: Bench) -> Result:
    return _absurd_horizon(b, "absurd_steps", "--max_steps", str(10 ** 12), "--warmup_steps", "2")


def t_absurd_warmup(b: Bench) -> Result:
    return _absurd_horizon(b, "absurd_warmup", "--max_steps", str(10 ** 12), "--warmup_steps", str(10 ** 11))


def t_absurd_wsd(b: Bench) -> Result:
    return _absurd_horizon(b, "absurd_wsd", "--max_steps", str(10 ** 12), "--lr_schedule", "wsd")


def t_max_steps_overflow(b: Bench) -> Result:
    return _absurd_horizon(b, "steps_overflow", "--max_steps", str(10 ** 30))


def _read_only_run(b: Bench, name: str, ignore=None):
    """A copy of the finished run on a filesystem mounted read-only; (mount, run folder) or None."""
    mount = _small_filesystem(b, name, 160)
    if mount is None:
        return None
    try:
        shutil.copytree(b.finished, mount / "run", ignore=ignore)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    except BaseException:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        raise
    return mount, mount / "run"


def _on_read_only(b: Bench, name: str, action, ignore=None) -> Result:
    made = _read_only_run(b, name, ignore)
    if made is None:
        return Result(None, wrong="cannot mount a filesystem here (skipped)")
    mount, run_dir = made
    try:
        before = snapshot(run_dir)
        r = action(run_dir)
        return judge_untouched(r, run_dir, before)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def t_resume_read_only(b: Bench) -> Result:
    return _on_read_only(b, "ro_resume", lambda d: expect_refusal(
        b.pretrain(d, "--max_steps", "8", "--resume_from_checkpoint", "latest", timeout=120), "read-only", "writ"))


def t_forecast_read_only(b: Bench) -> Result:
    return _on_read_only(b, "ro_forecast", lambda d: run([PY, script("forecast"), d], timeout=120))


def t_push_read_only(b: Bench) -> Result:
    """The run has no analysis yet, so staging wants to draw it into the (read-only) run folder."""
    # Without its analysis/ (an earlier staging of the shared run may have drawn one there).
    return _on_read_only(b, "ro_push", lambda d: _push_dry(b, d / "final", b.fresh("ro_push_stage")),
                         ignore=shutil.ignore_patterns("analysis"))


def t_generate_read_only(b: Bench) -> Result:
    return _on_read_only(b, "ro_generate", lambda d: run([PY, script("generate"), d / "final", "--device", "cpu",
                                                          "--num_samples", "1", "--max_new_tokens", "8"]))


def t_evaluate_read_only(b: Bench) -> Result:
    return _on_read_only(b, "ro_eval", lambda d: run([PY, script("evaluate_checkpoints"), d / "final",
                                                      "--skip_hellaswag", "--val_tokens", "2048", "--output",
                                                      b.fresh("ro_eval_out") / "eval.json"]))


def _wrong_folder(script_name: str, where, *extra):
    def action(b: Bench) -> Result:
        return run([PY, script(script_name), where(b), *extra], timeout=180)
    return action


CKPT = lambda b: b.finished / "checkpoints" / "step_0000004"
FINAL = lambda b: b.finished / "final"


def t_resume_from_final(b: Bench) -> Result:
    folder = b.copy_of_finished("resume_final")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "8", "--resume_from_checkpoint", folder / "final")
    return judge_untouched(expect_refusal(r, "checkpoint"), folder, before, new_ok=False)


def t_resume_from_model_subfolder(b: Bench) -> Result:
    folder = b.copy_of_finished("resume_model_sub")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "8", "--resume_from_checkpoint",
                   folder / "checkpoints" / "step_0000004" / "model")
    return judge_untouched(expect_refusal(r, "checkpoint"), folder, before, new_ok=False)


def t_init_from_checkpoint_folder(b: Bench) -> Result:
    """--init_from the accelerate checkpoint folder rather than its model/: refused, or its weights used."""
    folder = b.fresh("init_ckpt")
    r = b.pretrain(folder, "--max_steps", "2", "--init_from", CKPT(b))
    return r


def t_evaluate_output_is_dir(b: Bench) -> Result:
    target = b.fresh("eval_out_dir")
    target.mkdir()
    return run([PY, script("evaluate_checkpoints"), FINAL(b), "--skip_hellaswag", "--val_tokens", "2048", "--output",
                target])


def t_evaluate_output_unwritable(b: Bench) -> Result:
    return run([PY, script("evaluate_checkpoints"), FINAL(b), "--skip_hellaswag", "--val_tokens", "2048", "--output",
                "/proc/no_such/eval.json"])


def _generate(*extra, timeout: float = 150, preexec_fn=None) -> Result:
    return run_at([PY, script("generate"), *extra], timeout=timeout, preexec_fn=preexec_fn)


def _gen(b_extra):
    def action(b: Bench) -> Result:
        return _generate(FINAL(b), "--device", "cpu", *b_extra, preexec_fn=limit_memory(6))
    return action


def t_generate_top_k_huge(b: Bench) -> Result:
    r = _generate(FINAL(b), "--device", "cpu", "--top_k", str(10 ** 9), "--num_samples", "1", "--max_new_tokens", "8")
    return r


def t_generate_long_prompt(b: Bench) -> Result:
    return _generate(FINAL(b), "--device", "cpu", "--prompt", "To be, or not to be, that is the question. " * 10,
                     "--max_new_tokens", "4")


def t_generate_same_seed(b: Bench) -> Result:
    args = [FINAL(b), "--device", "cpu", "--num_samples", "2", "--max_new_tokens", "12", "--seed", "3"]
    first, r = _generate(*args), _generate(*args)
    if r.returncode == 0 and first.stdout != r.stdout:
        r.wrong = "the same seed gave other samples"
    return r


def t_output_dir_parent_is_file(b: Bench) -> Result:
    parent = b.fresh("parent_file")
    parent.parent.mkdir(parents=True, exist_ok=True)
    parent.write_text("a file, not a folder\n")
    return b.pretrain(parent / "run", "--max_steps", "2")


# =============================================================================================== 26.x
# The README's other features, each checked from what it wrote.
def t_muon_run(b: Bench) -> Result:
    folder = b.fresh("muon")
    r = b.pretrain(folder, "--max_steps", "4", "--optimizer", "muon", "--save_every", "2")
    if r.returncode == 0 and not scalars(folder).get("train/lr_muon"):
        r.wrong = "no train/lr_muon logged"
    return r


def t_muon_to_adamw_on_resume(b: Bench) -> Result:
    folder = b.fresh("muon_switch")
    first = b.pretrain(folder, "--max_steps", "2", "--optimizer", "muon", "--save_every", "2")
    if first.returncode != 0:
        return Result(None, first.stdout, first.stderr, wrong="the Muon run failed")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "4", "--optimizer", "adamw", "--resume_from_checkpoint", "latest")
    return judge_untouched(expect_refusal(r, "optimizer"), folder, before, new_ok=False)


def t_qk_norm_on_resume(b: Bench) -> Result:
    folder = b.copy_of_finished("qk_switch")
    before = snapshot(folder)
    r = b.pretrain(folder, "--max_steps", "8", "--qk_norm", "true", "--resume_from_checkpoint", "latest")
    return judge_untouched(expect_refusal(r, "qk_norm"), folder, before, new_ok=False)


def t_z_loss_logged(b: Bench) -> Result:
    folder = b.fresh("zloss")
    r = b.pretrain(folder, "--max_steps", "6", "--z_loss", "1e-4")
    if r.returncode == 0:
        tags = scalars(folder)
        z, loss, plain = tags.get("train/z_loss", {}), tags.get("train/loss", {}), scalars(b.finished)["train/loss"]
        if not z or not all(v > 0 for v in z.values()):
            r.wrong = f"train/z_loss: {z or 'absent'}"
        elif abs(loss[1] - plain[1]) > 1e-4:
            r.wrong = f"train/loss at step 1 is {loss[1]:.5f} with z-loss, {plain[1]:.5f} without (it must stay " \
                      "the plain cross-entropy)"
    return r


def t_gradient_checkpointing_same_loss(b: Bench) -> Result:
    folder = b.fresh("grad_ckpt")
    r = b.pretrain(folder, "--max_steps", "6", "--save_every", "2", "--gradient_checkpointing", "true")
    if r.returncode == 0:
        mine, plain = scalars(folder)["train/loss"], scalars(b.finished)["train/loss"]
        worst = max(abs(mine[s] - plain[s]) for s in plain)
        if worst > 1e-4:
            r.wrong = f"losses differ from the run without checkpointing by up to {worst:.2e}"
    return r


def t_wsd_ends_at_min_lr(b: Bench) -> Result:
    folder = b.fresh("wsd_decay")
    r = b.pretrain(folder, "--max_steps", "10", "--lr_schedule", "wsd", "--decay_fraction", "0.3", "--min_lr", "1e-5")
    if r.returncode == 0:
        lrs = scalars(folder)["train/lr"]
        if abs(lrs[5] - 6e-4) > 1e-9 or not 1e-5 * (1 - 1e-6) <= lrs[10] < 6e-4 / 3 or lrs[10] >= lrs[9]:
            r.wrong = f"WSD lr: {[f'{lrs[s]:.3g}' for s in sorted(lrs)]} (peak 6e-4 held to step 7, then down " \
                      "towards 1e-5)"
    return r


def t_wsd_flat_holds_peak(b: Bench) -> Result:
    run_dir = wsd_flat(b)
    lrs = scalars(run_dir)["train/lr"]
    r = Result(0)
    if any(abs(lrs[s] - 6e-4) > 1e-9 for s in lrs if s > 2):
        r.wrong = f"--decay_fraction 0: lr after warmup {sorted({round(v, 9) for s, v in lrs.items() if s > 2})}"
    return r


def t_cosine_extension_no_jump(b: Bench) -> Result:
    """A cosine run of 6 steps resumed at step 4 with --max_steps 10: the schedule is re-planned from the factor it
    had reached (no jump back up the longer cosine) down to min_lr at the new end, and the run says so."""
    folder = b.copy_of_finished("cosine_extend")
    r = b.pretrain(folder, "--max_steps", "10", "--resume_from_checkpoint", folder / "checkpoints" / "step_0000004")
    if r.returncode == 0:
        lrs = scalars(folder)["train/lr"]
        if any(lrs[s + 1] > lrs[s] * (1 + 1e-6) for s in range(4, 10)):
            r.wrong = f"the extended cosine rose again: {[f'{lrs[s]:.3g}' for s in sorted(lrs)]}"
        elif not 6e-5 * (1 - 1e-6) <= lrs[10] < lrs[5]:
            r.wrong = f"the re-planned cosine: {[f'{lrs[s]:.3g}' for s in sorted(lrs)]}"
        elif "plan" not in r.stdout.lower():
            r.wrong = "the schedule was re-planned without a word"
    return r


def t_target_val_loss_stops(b: Bench) -> Result:
    folder = b.fresh("target_stop")
    r = b.pretrain(folder, "--max_steps", "20", "--eval_every", "2", "--eval_tokens", "1024", "--target_val_loss",
                   "50")
    if r.returncode == 0:
        state = json.loads((folder / "final" / "training_state.json").read_text())
        if state["global_step"] != 2:
            r.wrong = f"a target of 50 (reached at the first evaluation, step 2) stopped at {state['global_step']}"
    return r


def t_hellaswag_in_loop(b: Bench) -> Result:
    if not HELLASWAG.is_file():
        return Result(None, wrong=f"{HELLASWAG} missing (skipped)")
    folder = b.fresh("hellaswag_loop")
    r = b.pretrain(folder, "--max_steps", "2", "--hellaswag_every", "2", "--hellaswag_path", HELLASWAG,
                   "--hellaswag_limit", "4")
    if r.returncode == 0:
        acc = scalars(folder).get("hellaswag/acc_norm", {})
        if not acc or not all(0 <= v <= 1 for v in acc.values()):
            r.wrong = f"hellaswag/acc_norm: {acc or 'absent'}"
    return r


def t_init_from_final(b: Bench) -> Result:
    folder = b.fresh("init_final")
    r = b.pretrain(folder, "--max_steps", "2", "--init_from", FINAL(b))
    if r.returncode == 0:
        start_loss, fresh_start = scalars(folder)["train/loss"][1], scalars(b.finished)["train/loss"][1]
        if not start_loss < fresh_start:
            r.wrong = f"initialised from a trained model, step 1 loss {start_loss:.4f} is not below a fresh " \
                      f"start's {fresh_start:.4f}"
    return r


def t_on_nonfinite_skip(b: Bench) -> Result:
    folder = b.fresh("nonfinite_skip")
    r = b.pretrain(folder, "--max_steps", "6", "--on_nonfinite", "skip", "--callbacks",
                   "tests.helpers.PoisonStep:step=3")
    if r.returncode == 0:
        skipped = scalars(folder).get("train/skipped_updates", {})
        if not skipped or max(skipped.values()) != 1:
            r.wrong = f"train/skipped_updates: {skipped or 'absent'} (one poisoned step)"
    return r


def t_keep_last_prunes(b: Bench) -> Result:
    folder = b.fresh("keep_last")
    r = b.pretrain(folder, "--max_steps", "8", "--save_every", "2", "--keep_last", "2")
    kept = sorted(p.name for p in (folder / "checkpoints").glob("step_*"))
    if r.returncode == 0 and kept != ["step_0000006", "step_0000008"]:
        r.wrong = f"--keep_last 2 kept {kept}"
    return r


def t_push_during_training_no_token(b: Bench) -> Result:
    folder = b.fresh("push_train_token")
    r = run([PY, script("pretrain"), *b.tiny(folder), "--max_steps", "4", "--save_every", "2", "--push_to_hub",
             "me/tiny"], env={"HF_TOKEN": "", "HF_HOME": str(b.fresh("push_train_hf"))})
    if (folder / "checkpoints").exists() and any((folder / "checkpoints").iterdir()):
        r.wrong = "it trained before finding that there is no token"
    return r


def t_evaluate_two_checkpoints(b: Bench) -> Result:
    out = b.fresh("eval_two") / "eval.json"
    r = run([PY, script("evaluate_checkpoints"), b.finished / "checkpoints" / "step_0000002" / "model", FINAL(b),
             "--skip_hellaswag", "--val_tokens", "2048", "--output", out])
    if r.returncode == 0:
        models = json.loads(out.read_text())["models"]
        if len(models) != 2 or models[0]["val_loss"] == models[1]["val_loss"]:
            r.wrong = f"eval.json rows: {[(m.get('name'), m.get('val_loss')) for m in models]}"
    return r


def t_evaluate_hellaswag_limit(b: Bench) -> Result:
    if not HELLASWAG.is_file():
        return Result(None, wrong=f"{HELLASWAG} missing (skipped)")
    out = b.fresh("eval_hs") / "eval.json"
    r = run([PY, script("evaluate_checkpoints"), FINAL(b), "--hellaswag", HELLASWAG, "--limit", "8", "--val_tokens",
             "2048", "--output", out])
    if r.returncode == 0:
        model = json.loads(out.read_text())["models"][0]
        if model.get("hellaswag_examples") != 8 or not 0 <= (model.get("hellaswag_acc_norm") or -1) <= 1:
            r.wrong = f"HellaSwag row: {model}"
    return r


def t_prepare_jsonl_missing_field(b: Bench) -> Result:
    folder = b.fresh("jsonl_field")
    folder.mkdir()
    corpus = folder / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"content": p}) for p in b.corpus.read_text().split("\n\n")[:200]) + "\n")
    return run([PY, script("prepare_data"), "--files", corpus, "--output_dir", folder / "out", "--shard_tokens",
                "20000", "--val_tokens", "5000", "--progress", "false"])


def t_prepare_empty_file(b: Bench) -> Result:
    folder = b.fresh("prep_empty")
    folder.mkdir()
    (folder / "empty.txt").write_text("")
    r = run([PY, script("prepare_data"), "--files", folder / "empty.txt", "--output_dir", folder / "out",
             "--shard_tokens", "20000", "--progress", "false"])
    if r.returncode == 0:
        r.wrong = "an empty corpus 'prepared' with exit 0"
    return r


def _prep_flag(*extra):
    def action(b: Bench) -> Result:
        return run([PY, script("prepare_data"), "--files", b.corpus, "--output_dir", b.fresh("prep_flag"),
                    "--shard_tokens", "100000", "--val_tokens", "30000", "--progress", "false", *extra], timeout=180)
    return action


def t_prepare_offline_hub(b: Bench) -> Result:
    t0 = time.monotonic()
    r = run([PY, script("prepare_data"), "--output_dir", b.fresh("prep_hub"), "--progress", "false"], timeout=120)
    if time.monotonic() - t0 > 60 and not r.hung:
        r.wrong = f"offline: it took {time.monotonic() - t0:.0f} s to stop"
    return r


def t_evaluate_reference_gpt2_offline(b: Bench) -> Result:
    return run([PY, script("evaluate_checkpoints"), FINAL(b), "--reference", "gpt2", "--skip_hellaswag",
                "--val_tokens", "2048", "--output", b.fresh("ref_offline") / "eval.json"],
               env={"HF_HOME": str(b.fresh("ref_offline_hf"))}, timeout=120)


def t_init_from_gpt2_offline(b: Bench) -> Result:
    return run([PY, script("pretrain"), *b.tiny(b.fresh("init_gpt2")), "--max_steps", "2", "--init_from", "gpt2",
                "--n_layer", "12", "--n_head", "12", "--n_embd", "768"],
               env={"HF_HOME": str(b.fresh("init_gpt2_hf"))}, timeout=120)


def t_cooldown_from_run_folder(b: Bench) -> Result:
    return run([PY, script("cooldown"), b.finished, "--steps", "2", "--output_dir", b.fresh("cool_runfolder")])


def t_cooldown_negative_steps(b: Bench) -> Result:
    return run([PY, script("cooldown"), CKPT(b), "--steps", "-3", "--output_dir", b.fresh("cool_neg")])


def t_cooldown_resume_after_sigterm(b: Bench) -> Result:
    """A cool-down stopped by SIGTERM resumes in its own folder and keeps its plan (ends at min_lr at its step)."""
    parent = wsd_flat(b)
    branch = b.fresh("cool_sigterm")
    job = start([PY, script("cooldown"), parent / "checkpoints" / "step_0000010", "--steps", "8", "--output_dir",
                 branch, "--save_every", "2", "--callbacks", "tests.helpers.SlowSteps:seconds=0.3"])
    wait_until(lambda: (branch / "checkpoints" / "step_0000012").is_dir(), 150, job)
    job.send_signal(signal.SIGTERM)
    r = finish(job, 120)
    if r.hung or "Traceback" in r.stderr:
        return r
    if r.returncode != 75:
        r.wrong = f"exit {r.returncode} after SIGTERM (75 promised)"
        return r
    again = run([PY, script("pretrain"), "--config", branch / "config.yaml", "--resume_from_checkpoint", "latest"])
    lrs = scalars(branch).get("train/lr", {})
    if again.returncode != 0:
        r.wrong = "the cool-down did not resume: " + again.stderr[-200:]
    elif max(lrs) != 18 or any(abs(lrs[s] - (6e-5 + 5.4e-4 * (1 - math.sqrt((s - 11) / 8)))) > 1e-9
                               for s in range(11, 19)):
        # The plan of an uninterrupted 8-step 1-sqrt cool-down from 6e-4 to 6e-5 (step s at the value for s - 1).
        r.wrong = f"the resumed cool-down's lr: {[f'{lrs[s]:.3g}' for s in sorted(lrs)]}"
    else:
        r.returncode = 0
    return r


# ----------------------------------------------------------------------------------------------- the list
ALL_TRIES = [
    # 26.1 nothing of the user's touched
    Try("26.1 pretrain: --overwrite_output_dir . in a folder of the user's files", "26.1 pretrain", "clear",
        t_overwrite_cwd_user),
    Try("26.1 pretrain: --overwrite_output_dir . in a run folder", "26.1 pretrain", "clear", t_overwrite_cwd_run),
    Try("26.1 pretrain: --overwrite_output_dir $HOME (the user's files)", "26.1 pretrain", "clear",
        t_overwrite_home_user),
    Try("26.1 pretrain: --overwrite_output_dir $HOME that is a run folder", "26.1 pretrain", "clear",
        t_overwrite_home_run),
    Try("26.1 pretrain: --overwrite_output_dir on the folder above $HOME", "26.1 pretrain", "clear",
        t_overwrite_above_home),
    Try("26.1 pretrain: --overwrite_output_dir on a folder that never held a run", "26.1 pretrain", "clear",
        t_overwrite_never_a_run),
    Try("26.1 pretrain: --overwrite_output_dir, user added my_notes.md to the run", "26.1 pretrain", "clear",
        t_overwrite_run_plus_user_file),
    Try("26.1 pretrain: --overwrite_output_dir, user file in a checkpoint", "26.1 pretrain", "clear",
        t_overwrite_user_file_in_checkpoint),
    Try("26.1 pretrain: --overwrite_output_dir, user file in final/", "26.1 pretrain", "clear",
        t_overwrite_user_file_in_final),
    Try("26.1 pretrain: --overwrite_output_dir, user notes in analysis/", "26.1 pretrain", "clear",
        t_overwrite_user_file_in_analysis),
    Try("26.1 pretrain: --overwrite_output_dir, another project's tensorboard/ logs", "26.1 pretrain", "clear",
        t_overwrite_other_tensorboard),
    Try("26.1 pretrain: fresh run into someone else's folder", "26.1 pretrain", "clear", t_fresh_into_user_folder),
    Try("26.1 pretrain: fresh run into a folder with only the user's config.yaml", "26.1 pretrain", "clear",
        t_fresh_user_config_only),
    Try("26.1 pretrain: branch from another run's checkpoint into the user's folder", "26.1 pretrain", "clear",
        t_branch_from_other_run_into_user_folder),
    Try("26.1 pretrain: rollback to step 2 while final/ holds a user file", "26.1 pretrain", "clear",
        t_rollback_user_file_in_final),
    Try("26.1 pretrain: rollback while a later checkpoint holds a user file", "26.1 pretrain", "clear",
        t_rollback_user_file_in_later_checkpoint),
    Try("26.1 pretrain: --keep_last 1 with a user file in an old checkpoint", "26.1 pretrain", "accepted",
        t_keep_last_user_file),
    Try("26.1 pretrain: resume with the user's checkpoints/eval.tmp/ folder", "26.1 pretrain", "accepted",
        t_user_tmp_folder_in_checkpoints),
    Try("26.1 pretrain: extend a run whose final/ holds a user file", "26.1 pretrain", "clear",
        t_extend_with_user_file_in_final),
    Try("26.1 pretrain: --overwrite_output_dir keeps the data prepared on the fly", "26.1 pretrain", "accepted",
        t_overwrite_keeps_prepared_data),
    Try("26.1 cooldown: --output_dir the parent run", "26.1 cooldown", "clear", t_cooldown_into_parent),
    Try("26.1 cooldown: --output_dir inside the parent run", "26.1 cooldown", "clear", t_cooldown_inside_parent),
    Try("26.1 cooldown: --output_dir the folder holding the run", "26.1 cooldown", "clear", t_cooldown_above_parent),
    Try("26.1 cooldown: --output_dir a folder of the user's files", "26.1 cooldown", "clear",
        t_cooldown_into_user_folder),
    Try("26.1 cooldown: default branch folder already holds user files", "26.1 cooldown", "clear",
        t_cooldown_default_place_taken),
    Try("26.1 cooldown: from a checkpoint of an abandoned branch", "26.1 cooldown", "accepted",
        t_cooldown_from_abandoned_checkpoint),
    Try("26.1 sweep: --rerun into a variant folder holding a user file", "26.1 sweep", "clear",
        t_sweep_rerun_user_file),
    Try("26.1 sweep: a variant's run folder is the user's folder", "26.1 sweep", "clear",
        t_sweep_variant_folder_is_users),
    Try("26.1 prepare_data: into a folder of other files", "26.1 prepare_data", "clear", t_prepare_into_user_folder),
    Try("26.1 prepare_data: into a folder holding only the user's notes.tmp", "26.1 prepare_data", "clear",
        t_prepare_only_notes_tmp),
    Try("26.1 prepare_data: rerun over our shards plus the user's README.md", "26.1 prepare_data", "accepted",
        t_prepare_shards_plus_user_readme),
    Try("26.1 prepare_data: --output_dir . in a folder of the user's files", "26.1 prepare_data", "clear",
        t_prepare_into_cwd),
    Try("26.1 push_to_hub: --dry_run --staging_dir a folder of the user's files", "26.1 push_to_hub", "clear",
        t_push_staging_user_folder),
    Try("26.1 push_to_hub: --staging_dir the model's own final/", "26.1 push_to_hub", "clear",
        t_push_staging_is_final),
    Try("26.1 push_to_hub: --staging_dir the run folder", "26.1 push_to_hub", "clear", t_push_staging_is_run),
    Try("26.1 push_to_hub: --staging_dir $HOME", "26.1 push_to_hub", "clear", t_push_staging_home),
    Try("26.1 push_to_hub: re-staging, user figure added inside plots/", "26.1 push_to_hub", "clear",
        t_push_restage_user_file_in_plots),
    Try("26.1 push_to_hub: re-staging its own staging folder", "26.1 push_to_hub", "accepted", t_push_restage_own),
    Try("26.1 push_to_hub: user's private notes in analysis/ not staged", "26.1 push_to_hub", "accepted",
        t_push_stages_user_analysis_notes),
    Try("26.1 pretrain: .run.lock is a folder", "26.1 pretrain", "clear", t_lock_is_folder),
    Try("26.1 pretrain: .run.lock is a symlink to the user's thesis", "26.1 pretrain", "clear",
        t_lock_symlink_to_user_file),
    Try("26.1 pretrain: .run.lock is a dangling symlink", "26.1 pretrain", "clear", t_lock_dangling_symlink),
    Try("26.1 pretrain: .run.lock is a FIFO", "26.1 pretrain", "clear", t_lock_fifo),
    Try("26.1 analyze_run: --out a folder with the user's own report.md", "26.1 analyze_run", "clear",
        t_analyze_out_user_report),
    Try("26.1 analyze_run: rerun keeps the user's notes in analysis/", "26.1 analyze_run", "accepted",
        t_analyze_keeps_user_notes),
    Try("26.1 evaluate_checkpoints: --log_reference_to a folder of the user's", "26.1 evaluate_checkpoints", "clear",
        t_log_reference_to_user_folder),
    # 26.2 every record true
    Try("26.2 pretrain: after a rollback, only surviving steps' records", "26.2 pretrain", "accepted",
        t_rollback_records_survive),
    Try("26.2 pretrain: finished run resumed with --max_lr changed", "26.2 pretrain", "clear",
        t_resume_finished_changed_lr),
    Try("26.2 pretrain: --max_steps below the checkpoint's step", "26.2 pretrain", "clear", t_resume_below_checkpoint),
    Try("26.2 pretrain: rollback with the same settings replays exactly", "26.2 pretrain", "accepted",
        t_rollback_same_settings_exact),
    Try("26.2 pretrain: config.yaml and changes.jsonl follow a change", "26.2 pretrain", "accepted",
        t_config_yaml_follows_change),
    Try("26.2 sweep: every variant ranked, diverged last with their steps", "26.2 sweep", "accepted",
        t_sweep_ranks_every_variant),
    Try("26.2 sweep: --summarize lists a variant not run yet", "26.2 sweep", "accepted",
        t_sweep_summarize_unrun_variant),
    Try("26.2 push_to_hub: qk_norm model card names no gpt2-export/", "26.2 push_to_hub", "accepted", t_card_qk_norm),
    Try("26.2 push_to_hub: card names only what was staged, no local path", "26.2 push_to_hub", "accepted",
        t_card_names_only_staged),
    Try("26.2 push_to_hub: card of a step-2 checkpoint says step 2", "26.2 push_to_hub", "accepted",
        t_card_checkpoint_numbers),
    Try("26.2 push_to_hub: card of a model moved out of its run", "26.2 push_to_hub", "accepted",
        t_card_model_moved_out_of_run),
    Try("26.2 push_to_hub: card carries --eval_json's loss", "26.2 push_to_hub", "accepted", t_card_eval_json_numbers),
    Try("26.2 prepare_data: meta.json counts what the shards hold", "26.2 prepare_data", "accepted",
        t_prepare_meta_true),
    Try("26.2 evaluate_checkpoints: final/ measures the run's own last val/loss", "26.2 evaluate_checkpoints",
        "accepted", t_eval_matches_run),
    Try("26.2 cooldown: branch.json, the plan's end at min_lr", "26.2 cooldown", "accepted", t_cooldown_records),
    Try("26.2 pretrain: spike guard rollbacks recorded, then a stop", "26.2 pretrain", "clear",
        t_spike_guard_rollback_records),
    # 26.3 estimates
    Try("26.3 forecast: a 24-step run", "26.3 forecast", "accepted", t_forecast_20_steps),
    Try("26.3 forecast: a constant-lr run (wsd, decay_fraction 0)", "26.3 forecast", "accepted",
        t_forecast_constant_lr),
    Try("26.3 forecast: a cool-down branch", "26.3 forecast", "accepted", t_forecast_cooldown_branch),
    Try("26.3 forecast: a parent with its branch, --schedule wsd", "26.3 forecast", "accepted",
        t_forecast_parent_with_branch),
    Try("26.3 forecast: a diverged run (--max_lr 5)", "26.3 forecast", "clear", t_forecast_diverged),
    Try("26.3 forecast: a run past one epoch", "26.3 forecast", "accepted", t_forecast_past_epoch),
    Try("26.3 forecast: --max_steps 1000000000000", "26.3 forecast", "accepted", t_forecast_huge_horizon),
    Try("26.3 forecast: --schedule wsd --decay_steps beyond the horizon", "26.3 forecast", "clear",
        t_forecast_wsd_decay_too_long),
    Try("26.3 forecast: --schedule wsd --decay_steps the whole horizon", "26.3 forecast", "accepted",
        t_forecast_wsd_decay_whole),
    Try("26.3 forecast: --target 0.01 (unreachable)", "26.3 forecast", "accepted", t_forecast_unreachable_target),
    Try("26.3 forecast: --target 50 (above the start)", "26.3 forecast", "accepted", t_forecast_target_above_start),
    Try("26.3 forecast: --target nan", "26.3 forecast", "clear", t_forecast_target_nan),
    Try("26.3 forecast: a 6-step run without validation", "26.3 forecast", "accepted", t_forecast_too_short),
    Try("26.3 forecast: --max_steps below the steps done", "26.3 forecast", "accepted",
        t_forecast_max_steps_below_done),
    Try("26.3 plan: --num_processes -2", "26.3 plan", "clear", _plan_refused("--num_processes", "-2",
                                                                             words=("num_processes",))),
    Try("26.3 plan: --num_processes 0", "26.3 plan", "clear", _plan_refused("--num_processes", "0",
                                                                            words=("num_processes",))),
    Try("26.3 plan: --mfu 5", "26.3 plan", "clear", _plan_refused("--mfu", "5", words=("mfu",))),
    Try("26.3 plan: --mfu 0", "26.3 plan", "clear", _plan_refused("--mfu", "0", words=("mfu",))),
    Try("26.3 plan: --mfu nan", "26.3 plan", "clear", _plan_refused("--mfu", "nan", words=("mfu",))),
    Try("26.3 plan: --card_memory_gb 0", "26.3 plan", "clear", _plan_refused("--card_memory_gb", "0",
                                                                             words=("card_memory_gb",))),
    Try("26.3 plan: --card_memory_gb -1", "26.3 plan", "clear", _plan_refused("--card_memory_gb", "-1",
                                                                              words=("card_memory_gb",))),
    Try("26.3 plan: --card 'Nonexistent GPU 3000'", "26.3 plan", "clear",
        _plan_refused("--cpu", "false", "--card", "Nonexistent GPU 3000", words=("card",))),
    Try("26.3 plan: --micro_batch_size 0", "26.3 plan", "clear", _plan_refused("--micro_batch_size", "0",
                                                                               words=("micro_batch_size",))),
    Try("26.3 plan: --attn_implementation eager grows the peak", "26.3 plan", "accepted", t_plan_eager_grows),
    Try("26.3 plan: 1.5B on one 40 GB card does not fit (exit 1)", "26.3 plan", "accepted", t_plan_does_not_fit),
    Try("26.3 plan: --json is sane", "26.3 plan", "accepted", t_plan_json_sane),
    Try("26.3 plan: accelerate config that is not YAML", "26.3 plan", "clear",
        _plan_with_config("notyaml", "distributed_type: [MULTI_GPU\n  num_processes: : 8\n", words=("accelerate",))),
    Try("26.3 plan: accelerate config that is a list", "26.3 plan", "clear",
        _plan_with_config("list", "- MULTI_GPU\n- 8\n", words=("accelerate",))),
    Try("26.3 plan: accelerate config that is empty", "26.3 plan", "clear",
        _plan_with_config("empty", "", words=("accelerate", "empty"))),
    Try("26.3 plan: accelerate config of binary bytes", "26.3 plan", "clear",
        _plan_with_config("binary", bytes(range(256)) * 4, words=("accelerate",))),
    Try("26.3 plan: distributed_type WORMHOLE", "26.3 plan", "clear",
        _plan_with_config("unknown_type", {**DDP, "distributed_type": "WORMHOLE"}, words=("distributed_type",))),
    Try("26.3 plan: accelerate num_processes 0", "26.3 plan", "clear",
        _plan_with_config("np0", {**DDP, "num_processes": 0}, words=("num_processes",))),
    Try("26.3 plan: accelerate num_processes 'eight'", "26.3 plan", "clear",
        _plan_with_config("np_eight", {**DDP, "num_processes": "eight"}, words=("num_processes",))),
    Try("26.3 plan: accelerate mixed_precision fp8", "26.3 plan", "clear",
        _plan_with_config("fp8", {**DDP, "mixed_precision": "fp8"}, words=("fp8",))),
    Try("26.3 plan: FSDP with CPU offload", "26.3 plan", "clear",
        _plan_with_config("offload", {**DDP, "distributed_type": "FSDP", "fsdp_config": {
            "fsdp_version": 2, "fsdp_offload_params": True, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}},
            words=("offload",))),
    Try("26.3 plan: FSDP NO_SHARD strategy", "26.3 plan", "clear",
        _plan_with_config("no_shard", {**DDP, "distributed_type": "FSDP", "fsdp_config": {
            "fsdp_sharding_strategy": "NO_SHARD"}}, words=("NO_SHARD",))),
    Try("26.3 plan: DEEPSPEED", "26.3 plan", "clear",
        _plan_with_config("deepspeed", {**DDP, "distributed_type": "DEEPSPEED"}, words=("DEEPSPEED", "deepspeed"))),
    Try("26.3 plan: --accelerate_config that does not exist", "26.3 plan", "clear",
        _plan_refused("--accelerate_config", "/nonexistent/accelerate.yaml", words=("accelerate",))),
    Try("26.3 noise: one process, no accumulation: b_simple measured", "26.3 pretrain", "accepted",
        t_noise_one_process_no_accumulation),
    Try("26.3 noise: one process, 2 micro-batches: b_simple measured", "26.3 pretrain", "accepted",
        t_noise_with_accumulation),
    Try("26.3 noise: --micro_batch_size 1 says it cannot be measured", "26.3 pretrain", "accepted",
        t_noise_micro_batch_one),
    Try("26.3 pretrain: --spike_guard with --max_lr 5", "26.3 pretrain", "clear", t_spike_guard_lr_5),
    Try("26.3 pretrain: a 6-step run with --spike_guard says it never armed", "26.3 pretrain", "accepted",
        t_spike_guard_never_armed),
    Try("26.3 pretrain: --spike_guard_z 0", "26.3 pretrain", "clear",
        lambda b: b.pretrain(b.fresh("guard_z0"), "--max_steps", "2", "--spike_guard", "true", "--spike_guard_z", "0")),
    Try("26.3 pretrain: --spike_guard_patience 0", "26.3 pretrain", "clear",
        lambda b: b.pretrain(b.fresh("guard_p0"), "--max_steps", "2", "--spike_guard", "true",
                             "--spike_guard_patience", "0")),
    Try("26.3 analyze_run: a tiny healthy run opens with a verdict", "26.3 analyze_run", "accepted",
        t_report_healthy_verdict),
    Try("26.3 analyze_run: a run read ~5 epochs is not told to train longer", "26.3 analyze_run", "accepted",
        t_report_many_epochs),
    Try("26.3 analyze_run: a 6-step run is too short to judge", "26.3 analyze_run", "accepted", t_report_too_short),
    Try("26.3 analyze_run: a --max_lr 5 run is not healthy", "26.3 analyze_run", "accepted", t_report_diverged),
    Try("26.3 analyze_run: a cool-down branch says where it branched", "26.3 analyze_run", "accepted",
        t_report_branch),
    Try("26.3 analyze_run: two runs and a comparison", "26.3 analyze_run", "accepted", t_analyze_two_runs),
    Try("26.3 analyze_run: --reference_loss -1", "26.3 analyze_run", "clear",
        lambda b: run([PY, script("analyze_run"), b.finished, "--reference_loss", "-1", "--out", b.fresh("ref_neg")])),
    Try("26.3 analyze_run: --reference_eval missing", "26.3 analyze_run", "clear",
        lambda b: run([PY, script("analyze_run"), b.finished, "--reference_eval", b.work / "no.json", "--out",
                       b.fresh("ref_missing")])),
    Try("26.3 analyze_run: --reference_eval not JSON", "26.3 analyze_run", "clear",
        lambda b: run([PY, script("analyze_run"), b.finished, "--reference_eval", b.corpus, "--out",
                       b.fresh("ref_garbage")])),
    Try("26.3 analyze_run: --dataset_tokens 0", "26.3 analyze_run", "clear", lambda b: _dataset_tokens(b, "0")),
    Try("26.3 analyze_run: --dataset_tokens -5", "26.3 analyze_run", "clear", lambda b: _dataset_tokens(b, "-5")),
    # 26.4 signals and odd environments
    Try("26.4 pretrain: SIGHUP mid-run, checkpoints whole, resumable", "26.4 pretrain", "accepted",
        t_sighup_pretrain),
    Try("26.4 prepare_data: SIGTERM, rerun gives identical shards", "26.4 prepare_data", "accepted",
        t_sigterm_prepare),
    Try("26.4 prepare_data: SIGINT, rerun gives identical shards", "26.4 prepare_data", "accepted",
        t_sigint_prepare_identical),
    Try("26.4 prepare_data: SIGHUP, rerun gives identical shards", "26.4 prepare_data", "accepted",
        t_sighup_prepare),
    Try("26.4 analyze_run: SIGTERM while drawing", "26.4 analyze_run", "accepted", t_sigterm_analyze),
    Try("26.4 analyze_run: SIGINT (Ctrl-C) while drawing", "26.4 analyze_run", "accepted", t_sigint_analyze),
    Try("26.4 sweep: SIGTERM mid-run, exit 75, resumes", "26.4 sweep", "accepted", t_sigterm_sweep),
    Try("26.4 sweep: SIGINT mid-run, exit 75, resumes", "26.4 sweep", "accepted", t_sigint_sweep),
    Try("26.4 cooldown: SIGTERM, resume keeps the plan", "26.4 cooldown", "accepted", t_cooldown_resume_after_sigterm),
    Try("26.4 pretrain: --max_steps 10^12 --warmup_steps 2", "26.4 pretrain", "accepted", t_absurd_max_steps),
    Try("26.4 pretrain: --max_steps 10^12 --warmup_steps 10^11", "26.4 pretrain", "accepted", t_absurd_warmup),
    Try("26.4 pretrain: --max_steps 10^12 --lr_schedule wsd", "26.4 pretrain", "accepted", t_absurd_wsd),
    Try("26.4 pretrain: --max_steps 10^30", "26.4 pretrain", "accepted", t_max_steps_overflow),
    Try("26.4 pretrain: resume a run on a read-only filesystem", "26.4 pretrain", "clear", t_resume_read_only),
    Try("26.4 forecast: a run on a read-only filesystem", "26.4 forecast", "clear", t_forecast_read_only),
    Try("26.4 push_to_hub: --dry_run of a read-only run without analysis", "26.4 push_to_hub", "accepted",
        t_push_read_only),
    Try("26.4 generate: from a read-only run", "26.4 generate", "accepted", t_generate_read_only),
    Try("26.4 evaluate_checkpoints: a read-only run", "26.4 evaluate_checkpoints", "accepted", t_evaluate_read_only),
    Try("26.4 generate: a checkpoint folder instead of a model folder", "26.4 generate", "clear",
        _wrong_folder("generate", CKPT, "--device", "cpu")),
    Try("26.4 evaluate_checkpoints: a checkpoint folder instead of a model folder", "26.4 evaluate_checkpoints",
        "clear", _wrong_folder("evaluate_checkpoints", CKPT, "--skip_hellaswag", "--val_tokens", "2048")),
    Try("26.4 push_to_hub: a checkpoint folder instead of a model folder", "26.4 push_to_hub", "clear",
        _wrong_folder("push_to_hub", CKPT, "--repo_id", "me/x", "--dry_run")),
    Try("26.4 cooldown: final/ instead of a checkpoint", "26.4 cooldown", "clear",
        _wrong_folder("cooldown", FINAL, "--steps", "2")),
    Try("26.4 cooldown: checkpoints/step_N/model instead of the checkpoint", "26.4 cooldown", "clear",
        _wrong_folder("cooldown", lambda b: CKPT(b) / "model", "--steps", "2")),
    Try("26.4 cooldown: the run folder instead of a checkpoint", "26.4 cooldown", "clear", t_cooldown_from_run_folder),
    Try("26.4 cooldown: --steps -3", "26.4 cooldown", "clear", t_cooldown_negative_steps),
    Try("26.4 analyze_run: final/ instead of a run", "26.4 analyze_run", "clear",
        _wrong_folder("analyze_run", FINAL)),
    Try("26.4 forecast: final/ instead of a run", "26.4 forecast", "clear", _wrong_folder("forecast", FINAL)),
    Try("26.4 forecast: a checkpoint instead of a run", "26.4 forecast", "clear", _wrong_folder("forecast", CKPT)),
    Try("26.4 pretrain: --resume_from_checkpoint final/", "26.4 pretrain", "clear", t_resume_from_final),
    Try("26.4 pretrain: --resume_from_checkpoint step_N/model", "26.4 pretrain", "clear",
        t_resume_from_model_subfolder),
    Try("26.4 pretrain: --init_from a checkpoint folder (not its model/)", "26.4 pretrain", "clear",
        t_init_from_checkpoint_folder),
    Try("26.4 evaluate_checkpoints: --output an existing folder", "26.4 evaluate_checkpoints", "clear",
        t_evaluate_output_is_dir),
    Try("26.4 evaluate_checkpoints: --output under /proc", "26.4 evaluate_checkpoints", "clear",
        t_evaluate_output_unwritable),
    Try("26.4 generate: --max_new_tokens 10^12", "26.4 generate", "clear", _gen(["--max_new_tokens", str(10 ** 12)])),
    Try("26.4 generate: --max_new_tokens 0", "26.4 generate", "clear", _gen(["--max_new_tokens", "0"])),
    Try("26.4 generate: --num_samples 10^9", "26.4 generate", "clear",
        _gen(["--num_samples", str(10 ** 9), "--max_new_tokens", "4"])),
    Try("26.4 generate: --temperature nan", "26.4 generate", "clear",
        _gen(["--temperature", "nan", "--num_samples", "1", "--max_new_tokens", "4"])),
    Try("26.4 generate: --temperature inf", "26.4 generate", "clear",
        _gen(["--temperature", "inf", "--num_samples", "1", "--max_new_tokens", "4"])),
    Try("26.4 generate: --top_k 10^9", "26.4 generate", "accepted", t_generate_top_k_huge),
    Try("26.4 generate: a prompt longer than the context", "26.4 generate", "clear", t_generate_long_prompt),
    Try("26.4 pretrain: --output_dir under a file", "26.4 pretrain", "clear", t_output_dir_parent_is_file),
    # 26.x the README's other features
    Try("26.x pretrain: --optimizer muon logs train/lr_muon", "26.x pretrain", "accepted", t_muon_run),
    Try("26.x pretrain: Muon run resumed with --optimizer adamw", "26.x pretrain", "clear", t_muon_to_adamw_on_resume),
    Try("26.x pretrain: --qk_norm changed on resume", "26.x pretrain", "clear", t_qk_norm_on_resume),
    Try("26.x pretrain: --z_loss logged, train/loss stays cross-entropy", "26.x pretrain", "accepted", t_z_loss_logged),
    Try("26.x pretrain: --gradient_checkpointing gives the same losses", "26.x pretrain", "accepted",
        t_gradient_checkpointing_same_loss),
    Try("26.x pretrain: wsd ends at --min_lr, holds the peak before", "26.x pretrain", "accepted",
        t_wsd_ends_at_min_lr),
    Try("26.x pretrain: wsd --decay_fraction 0 holds the peak", "26.x pretrain", "accepted", t_wsd_flat_holds_peak),
    Try("26.x pretrain: a cosine extended on resume does not jump up", "26.x pretrain", "accepted",
        t_cosine_extension_no_jump),
    Try("26.x pretrain: --target_val_loss stops at the first crossing", "26.x pretrain", "accepted",
        t_target_val_loss_stops),
    Try("26.x pretrain: HellaSwag in the loop", "26.x pretrain", "accepted", t_hellaswag_in_loop),
    Try("26.x pretrain: --init_from a trained final/", "26.x pretrain", "accepted", t_init_from_final),
    Try("26.x pretrain: --on_nonfinite skip counts the skipped update", "26.x pretrain", "accepted",
        t_on_nonfinite_skip),
    Try("26.x pretrain: --keep_last 2 keeps the newest two", "26.x pretrain", "accepted", t_keep_last_prunes),
    Try("26.x pretrain: --push_to_hub without a token stops before training", "26.x pretrain", "clear",
        t_push_during_training_no_token),
    Try("26.x pretrain: --init_from gpt2 offline", "26.x pretrain", "clear", t_init_from_gpt2_offline),
    Try("26.x pretrain: --log_every 0", "26.x pretrain", "clear",
        lambda b: b.pretrain(b.fresh("log0"), "--max_steps", "2", "--log_every", "0")),
    Try("26.x pretrain: --peak_flops -1", "26.x pretrain", "clear",
        lambda b: b.pretrain(b.fresh("peak_neg"), "--max_steps", "2", "--peak_flops", "-1")),
    Try("26.x pretrain: --callbacks no_such_callback", "26.x pretrain", "clear",
        lambda b: b.pretrain(b.fresh("cb_unknown"), "--max_steps", "2", "--callbacks", "no_such_callback")),
    Try("26.x evaluate_checkpoints: two checkpoints side by side", "26.x evaluate_checkpoints", "accepted",
        t_evaluate_two_checkpoints),
    Try("26.x evaluate_checkpoints: HellaSwag --limit 8", "26.x evaluate_checkpoints", "accepted",
        t_evaluate_hellaswag_limit),
    Try("26.x evaluate_checkpoints: --reference gpt2 offline", "26.x evaluate_checkpoints", "clear",
        t_evaluate_reference_gpt2_offline),
    Try("26.x generate: the same seed gives the same samples", "26.x generate", "accepted", t_generate_same_seed),
    Try("26.x prepare_data: FineWeb-Edu offline stops at once", "26.x prepare_data", "clear", t_prepare_offline_hub),
    Try("26.x prepare_data: .jsonl without the text field", "26.x prepare_data", "clear",
        t_prepare_jsonl_missing_field),
    Try("26.x prepare_data: an empty corpus", "26.x prepare_data", "clear", t_prepare_empty_file),
    Try("26.x prepare_data: --shard_tokens 0", "26.x prepare_data", "clear", _prep_flag("--shard_tokens", "0")),
    Try("26.x prepare_data: --txt_split sentence", "26.x prepare_data", "clear", _prep_flag("--txt_split", "sentence")),
    Try("26.x prepare_data: --num_workers 0", "26.x prepare_data", "accepted", _prep_flag("--num_workers", "0")),
    Try("26.x push_to_hub: --eval_json that is not JSON", "26.x push_to_hub", "clear",
        lambda b: _push_dry(b, FINAL(b), b.fresh("stage_badeval"), None, "--eval_json", b.corpus)),
]

# Tries that repeat what another try already shows, or check a plain argument refusal: run with --extra (the default
# battery stays within about half an hour on 2 cores).
EXTRA_NAMES = {
    "26.1 pretrain: --overwrite_output_dir . in a run folder",
    "26.1 pretrain: --overwrite_output_dir $HOME that is a run folder",
    "26.1 pretrain: --overwrite_output_dir, user file in final/",
    "26.1 pretrain: fresh run into a folder with only the user's config.yaml",
    "26.1 pretrain: --overwrite_output_dir keeps the data prepared on the fly",
    "26.1 cooldown: --output_dir a folder of the user's files",
    "26.1 cooldown: default branch folder already holds user files",
    "26.1 prepare_data: rerun over our shards plus the user's README.md",
    "26.1 push_to_hub: --staging_dir the run folder",
    "26.1 push_to_hub: re-staging its own staging folder",
    "26.1 pretrain: .run.lock is a dangling symlink",
    "26.1 analyze_run: rerun keeps the user's notes in analysis/",
    "26.2 pretrain: --max_steps below the checkpoint's step",
    "26.2 pretrain: config.yaml and changes.jsonl follow a change",
    "26.2 sweep: --summarize lists a variant not run yet",
    "26.2 push_to_hub: card of a model moved out of its run",
    "26.2 push_to_hub: card carries --eval_json's loss",
    "26.3 forecast: a parent with its branch, --schedule wsd",
    "26.3 forecast: --schedule wsd --decay_steps the whole horizon",
    "26.3 forecast: --target 50 (above the start)",
    "26.3 forecast: --target nan",
    "26.3 forecast: a 6-step run without validation",
    "26.3 forecast: --max_steps below the steps done",
    "26.3 plan: --card 'Nonexistent GPU 3000'",
    "26.3 plan: --micro_batch_size 0",
    "26.3 plan: --json is sane",
    "26.3 plan: accelerate config of binary bytes",
    "26.3 plan: FSDP NO_SHARD strategy",
    "26.3 plan: DEEPSPEED",
    "26.3 plan: --accelerate_config that does not exist",
    "26.3 pretrain: --spike_guard_z 0",
    "26.3 pretrain: --spike_guard_patience 0",
    "26.3 analyze_run: a cool-down branch says where it branched",
    "26.3 analyze_run: two runs and a comparison",
    "26.3 analyze_run: --reference_loss -1",
    "26.3 analyze_run: --reference_eval missing",
    "26.3 analyze_run: --reference_eval not JSON",
    "26.3 analyze_run: --dataset_tokens 0",
    "26.4 prepare_data: SIGHUP, rerun gives identical shards",
    "26.4 pretrain: --max_steps 10^12 --lr_schedule wsd",
    "26.4 generate: from a read-only run",
    "26.4 evaluate_checkpoints: a read-only run",
    "26.4 push_to_hub: a checkpoint folder instead of a model folder",
    "26.4 cooldown: checkpoints/step_N/model instead of the checkpoint",
    "26.4 cooldown: the run folder instead of a checkpoint",
    "26.4 cooldown: --steps -3",
    "26.4 forecast: final/ instead of a run",
    "26.4 forecast: a checkpoint instead of a run",
    "26.4 evaluate_checkpoints: --output under /proc",
    "26.4 generate: --max_new_tokens 0",
    "26.4 generate: --top_k 10^9",
    "26.4 generate: a prompt longer than the context",
    "26.4 pretrain: --output_dir under a file",
    "26.x pretrain: Muon run resumed with --optimizer adamw",
    "26.x pretrain: --init_from a trained final/",
    "26.x pretrain: --keep_last 2 keeps the newest two",
    "26.x pretrain: --init_from gpt2 offline",
    "26.x pretrain: --log_every 0",
    "26.x pretrain: --peak_flops -1",
    "26.x pretrain: --callbacks no_such_callback",
    "26.x evaluate_checkpoints: two checkpoints side by side",
    "26.x evaluate_checkpoints: HellaSwag --limit 8",
    "26.x generate: the same seed gives the same samples",
    "26.x prepare_data: --shard_tokens 0",
    "26.x prepare_data: --txt_split sentence",
    "26.x prepare_data: --num_workers 0",
    "26.x push_to_hub: --eval_json that is not JSON",
}
assert EXTRA_NAMES <= {t.name for t in ALL_TRIES}, EXTRA_NAMES - {t.name for t in ALL_TRIES}
TRIES = [t for t in ALL_TRIES if t.name not in EXTRA_NAMES]
EXTRA_TRIES = [t for t in ALL_TRIES if t.name in EXTRA_NAMES]
