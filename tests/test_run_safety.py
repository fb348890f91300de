"""Nothing lost, nothing silent: a run folder owned by one run, checkpoints that are checked before they are trusted,
data whose identity is checked, and runs that survive preemption (SIGTERM / Ctrl-C)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from training.cli import ConfigError
from training.data.shards import ShardError, find_shards, open_shard, write_shard_atomic
from training.layout import RunLayout
from training.run.checkpointing import CheckpointSaveError
from training.run.run_folder import RunFolderBusy, RunFolderLock
from training.trainer.trainer import Trainer

from .helpers import (
    ACCELERATE_LAUNCH,
    REPO,
    config_to_argv,
    load_final_weights,
    read_scalars,
    run_pretrain,
    same_weights,
    tiny_run_config,
    train,
    wait_for,
)
from .test_errors import run_main, script


def checkpoint_weights(run, step):
    from safetensors.torch import load_file

    return load_file(str(RunLayout(run).checkpoint_model_dir(step) / "model.safetensors"))


# ----------------------------------------------------------------------------------------------- one run per folder
def test_a_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path, shakespeare_shards):
    first = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=2)
    train(first)
    before = checkpoint_weights(tmp_path, 4)
    second = tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2, seed=5)
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume_from_checkpoint latest \(its newest "
                                          r"checkpoint is step_0000006\).*--overwrite_output_dir true"):
        Trainer(second)
    assert same_weights(checkpoint_weights(tmp_path, 4), before)  # nothing was touched
    assert "seed: 1337" in (tmp_path / "config.yaml").read_text()


def test_overwrite_output_dir_starts_over_cleanly(tmp_path, shakespeare_shards):
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=2))
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2, seed=5, overwrite_output_dir=True))
    layout = RunLayout(tmp_path)
    # The old run's step 6 is gone: `latest` can only resume the new run.
    assert sorted(p.name for p in layout.checkpoints_dir.iterdir()) == ["step_0000002", "step_0000004"]
    assert "seed: 5" in layout.config_file.read_text()
    assert sorted(read_scalars(tmp_path)["train/loss"]) == [1, 2, 3, 4]


def test_the_script_names_both_ways_on(tmp_path, shakespeare_shards, capsys):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, save_every=2)
    train(config)
    code, err = run_main("pretrain", config_to_argv(config), capsys)
    assert code == 2 and "already holds a run" in err and "--overwrite_output_dir true" in err


def test_the_lock_refuses_a_second_owner_and_takes_over_a_dead_ones(tmp_path):
    first = RunFolderLock(tmp_path)
    assert first.acquire() is None and first.held
    with pytest.raises(RunFolderBusy, match=rf"in use by pid {os.getpid()} on host"):
        RunFolderLock(tmp_path).acquire()
    first.release()
    assert not RunLayout(tmp_path).lock_file.exists()
    # A lock file whose process died (its flock is gone) is reported and taken over.
    RunLayout(tmp_path).lock_file.write_text(json.dumps({"host": "gone-host", "pid": 999999, "started": 0.0,
                                                         "command": "pretrain.py ..."}))
    note = RunFolderLock(tmp_path).acquire()
    assert "pid 999999 on host gone-host" in note and "no longer running" in note


def test_a_second_launch_on_a_live_run_is_refused_at_once(tmp_path, shakespeare_shards, capsys):
    run = tmp_path / "run"
    argv = config_to_argv(tiny_run_config(run, shakespeare_shards, max_steps=400, save_every=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, str(REPO / "scripts" / "pretrain.py"), *argv,
                              "--callbacks", "tests.helpers.SlowSteps:seconds=0.05"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: RunLayout(run).checkpoint_dir(2).exists(), timeout=120)
        resume = tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2, resume_from_checkpoint="latest")
        with pytest.raises(ConfigError, match=rf"in use by pid {first.pid} on host"):
            Trainer(resume)  # refused at once: before any data, model or training
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # The dead run's lock is stale: a resume reports it and takes the folder over.
        train(resume)
        assert f"pid {first.pid}" in capsys.readouterr().out
        assert not RunLayout(run).lock_file.exists()
    finally:
        if first.poll() is None:
            first.kill()


# ----------------------------------------------------------------------------------------------- silently wrong
def test_init_from_refuses_settings_that_describe_another_model(tmp_path, shakespeare_shards):
    train(tiny_run_config(tmp_path / "source", shakespeare_shards, max_steps=2))
    config = tiny_run_config(tmp_path / "wider", shakespeare_shards, init_from=str(tmp_path / "source" / "final"),
                             n_embd=64)
    with pytest.raises(ConfigError, match=r"--n_embd 64 \(the weights have 32\).*--n_layer 2 --n_head 4 --n_embd 32"):
        Trainer(config)
    matching = tiny_run_config(tmp_path / "same", shakespeare_shards, init_from=str(tmp_path / "source" / "final"))
    train(matching)  # the same settings as the weights: accepted


def test_a_corrupt_rng_state_is_named_not_silently_skipped(tmp_path, shakespeare_shards):
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2))
    rng = RunLayout(run).checkpoint_dir(4) / "random_states_0.pkl"
    rng.write_bytes(b"\x00" * rng.stat().st_size)  # same size, garbage: Accelerate would only log a warning
    config = tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2, resume_from_checkpoint="latest")
    with pytest.raises(ConfigError, match=rf"{rng}.*contents changed.*newest intact checkpoint is "
                                          rf".*step_0000002"):
        Trainer(config).train()


def test_an_out_of_vocabulary_id_is_caught_at_start_up_though_meta_json_says_otherwise(tmp_path, shakespeare_shards):
    data = tmp_path / "data"
    shutil.copytree(shakespeare_shards, data)
    shard = find_shards(data, "train")[1]
    tokens = np.array(open_shard(shard))
    tokens[4321] = 60000
    time.sleep(0.01)
    write_shard_atomic(shard, tokens)  # meta.json still says the old max_token_id
    with pytest.raises(ShardError, match=rf"{shard.name} \(max id 60000\)"):
        Trainer(tiny_run_config(tmp_path / "run", data, max_steps=2))


def test_every_batch_is_checked_against_the_vocabulary(tmp_path, shakespeare_shards):
    from training.data.loaders import DistributedTokenLoader

    data = tmp_path / "data"
    shutil.copytree(shakespeare_shards, data)
    loader = DistributedTokenLoader(data, 4, 32, vocab_size=50304)
    shard = find_shards(data, "train")[0]
    tokens = np.array(open_shard(shard))
    tokens[200] = 65000  # after the start-up check: e.g. a shard replaced while the run was going
    write_shard_atomic(shard, tokens)
    loader.next_batch()  # tokens 0..128
    with pytest.raises(ShardError, match=rf"Token id 65000 >= the model's vocab_size 50304 .*{shard}"):
        loader.next_batch()


def test_preparation_refuses_to_resume_over_an_edited_corpus(tmp_path, shakespeare_path, capsys):
    from training.data.preparation import CorpusError, PrepareConfig, prepare

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_path.read_text()[:200_000])
    config = PrepareConfig(output_dir=str(tmp_path / "shards"), files=[str(corpus)], shard_tokens=10_000,
                           val_tokens=5_000, progress=False)
    meta = prepare(config)
    assert meta["inputs"][0]["bytes"] == corpus.stat().st_size
    # Interrupted half way (as a kill leaves it: progress recorded up to shard 3), then the corpus is edited.
    meta["complete"] = False
    (tmp_path / "shards" / "meta.json").write_text(json.dumps(meta))
    corpus.write_text(corpus.read_text().replace("First Citizen", "Second Citizen"))
    with pytest.raises(CorpusError, match=r"being prepared \(interrupted\) from input that has changed since: "
                                          rf"{corpus} \(.*\).*Delete"):
        prepare(config)
    meta["complete"] = True
    (tmp_path / "shards" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorpusError, match="were prepared from input that has changed"):
        prepare(config)  # a complete folder of the old corpus is not silently used for the new one either


# ----------------------------------------------------------------------------------------------- preemption
def test_sigterm_saves_the_step_and_the_resumed_run_is_bitwise_equal(tmp_path, shakespeare_shards, capsys):
    from training.run.preemption import Preempted

    from .helpers import SignalAtStep

    common = dict(max_steps=8, save_every=4, eval_every=4, callbacks=["grad_norm", "layer_ratios"])
    straight = tmp_path / "straight"
    train(tiny_run_config(straight, shakespeare_shards, **common))
    run = tmp_path / "run"
    trainer = Trainer(tiny_run_config(run, shakespeare_shards, **common), callbacks=[SignalAtStep(2)])
    with pytest.raises(Preempted) as stopped:
        trainer.train()  # the handler catches the signal: this process (pytest) is not killed
    trainer.close()
    # The signal came after step 2's reduction: step 3 is finished and checkpointed, no final model is written.
    assert "Stopped by SIGTERM after step 3 of 8" in str(stopped.value) and stopped.value.exit_code == 75
    assert "--resume_from_checkpoint latest" in stopped.value.resume
    assert RunLayout(run).checkpoint_dir(3).is_dir() and not RunLayout(run).final_dir.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while training
    train(tiny_run_config(run, shakespeare_shards, resume_from_checkpoint="latest", **common))
    a, b = read_scalars(straight), read_scalars(run)
    for tag in ("train/loss", "train/grad_norm", "val/loss", "update_ratio/h.1.attn.c_attn.weight"):
        assert a[tag] == b[tag], tag
    assert same_weights(load_final_weights(straight), load_final_weights(run))


def test_the_script_exits_75_with_the_command_that_resumes(tmp_path, shakespeare_shards, capsys):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=0)
    code = script("pretrain").main(config_to_argv(config) + ["--callbacks", "tests.helpers.SignalAtStep:step=1,"
                                                                            "name=SIGINT"])
    out = capsys.readouterr().out
    assert code == 75 and "Stopped by SIGINT after step 2 of 6" in out
    assert f"--output_dir {tmp_path} --resume_from_checkpoint latest" in out


def test_a_second_signal_exits_at_once_without_saving(tmp_path, shakespeare_shards):
    run = tmp_path / "run"
    argv = config_to_argv(tiny_run_config(run, shakespeare_shards, max_steps=8, save_every=0))
    result = run_pretrain(argv + ["--callbacks", "tests.helpers.SignalAtStep:step=2,name=SIGINT,twice_after=2.5"],
                          check=False)
    assert result.returncode == 128 + signal.SIGINT and "received again: exiting now" in result.stderr
    assert not RunLayout(run).checkpoints_dir.exists() or not any(RunLayout(run).checkpoints_dir.iterdir())


def test_sigterm_under_accelerate_launch_stops_every_process_at_one_step(tmp_path, shakespeare_shards):
    common = dict(max_steps=8, total_batch_tokens=256, save_every=0)
    launcher = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    run = tmp_path / "run"
    argv = config_to_argv(tiny_run_config(run, shakespeare_shards, **common))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Like a scheduler: the signal goes to the launcher and both workers (the whole process group).
    job = subprocess.Popen([*launcher, str(REPO / "scripts" / "pretrain.py"), *argv,
                            "--callbacks", "tests.helpers.SlowSteps:seconds=0.3"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert wait_for(lambda: bool(list(run.glob("events.out.tfevents.*"))), timeout=180)
        time.sleep(1.0)
        os.killpg(job.pid, signal.SIGTERM)
        out, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert "Stopped by SIGTERM after step" in out, err[-3000:]
    saved = [p.name for p in RunLayout(run).checkpoints_dir.iterdir()]
    assert len(saved) == 1 and not RunLayout(run).final_dir.exists()  # both processes stopped after one step
    # Resumed on one process (accumulation 2), it matches a one-process run to DDP's summation-order noise.
    train(tiny_run_config(run, shakespeare_shards, resume_from_checkpoint="latest", **common))
    straight = tmp_path / "straight"
    train(tiny_run_config(straight, shakespeare_shards, **common))
    a, b = load_final_weights(straight), load_final_weights(run)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)


def test_ctrl_c_in_preparation_is_a_message_not_a_traceback(tmp_path, fineweb_path):
    corpus = tmp_path / "corpus.jsonl"
    # ~27M tokens, about 10 s of work on one core: the job cannot end between its first shard and the signal.
    corpus.write_text(fineweb_path.read_text() * 300)
    command = [sys.executable, str(REPO / "scripts" / "prepare_data.py"), "--files", str(corpus), "--output_dir",
               str(tmp_path / "out"), "--shard_tokens", "20000", "--num_workers", "1", "--chunk_documents", "8"]
    # SIGINT at its default: a test run launched in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then leaves it ignored in the child (as a shell's background job should: no Ctrl-C there).
    job = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert wait_for(lambda: len(list((tmp_path / "out").glob("*_train_*.npy"))) >= 1, timeout=120)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130 and "Traceback" not in err and "re-run the same command" in err


# ----------------------------------------------------------------------------------------------- full disks
@pytest.fixture
def small_filesystem(tmp_path):
    """A real 16 MB filesystem (tmpfs; CI runs as root), or a skip where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({made.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_disk_during_a_checkpoint_is_a_clear_error(tmp_path, shakespeare_shards, small_filesystem,
                                                                  capsys):
    run = small_filesystem / "run"
    code, err = run_main("pretrain", config_to_argv(tiny_run_config(run, shakespeare_shards, max_steps=4,
                                                                    save_every=2)), capsys)
    assert code == 1 and "No space left while writing" in err and "MB are free" in err
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []  # the half-written checkpoint gave its space back


def test_a_full_disk_while_writing_final_is_a_clear_error(tmp_path, shakespeare_shards, monkeypatch):
    """final/ is smaller than a checkpoint, so a real disk fills during the last checkpoint first; safetensors'
    own error type (not an OSError) is what a full disk raises while final/ is written."""
    from safetensors import SafetensorError

    from training.run.checkpointing import Checkpointer, CheckpointSaveError

    original = Checkpointer.save_model

    def full_at_final(self, folder):
        if folder.name.startswith("final"):
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  "\"No space left on device\" })")
        original(self, folder)

    monkeypatch.setattr(Checkpointer, "save_model", full_at_final)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, save_every=2))
    with pytest.raises(CheckpointSaveError, match=r"No space left while writing .*final.tmp .*resume from "
                                                  r".*step_0000002"):
        trainer.train()
    trainer.close()
    assert not (tmp_path / "final.tmp").exists()


def test_a_really_full_disk_during_preparation_is_a_clear_error(shakespeare_path, small_filesystem, capsys):
    (small_filesystem / "filler").write_bytes(b"\0" * 16_500_000)  # about 270 kB left: the shards need 680
    code, err = run_main("prepare_data", ["--files", shakespeare_path, "--output_dir", small_filesystem / "shards",
                                          "--shard_tokens", "100000", "--progress", "false"], capsys)
    assert code == 2 and "No space left while writing" in err and "re-run the same command" in err
    assert not list((small_filesystem / "shards").glob("*.tmp"))


def test_a_file_size_limit_is_a_clear_error(tmp_path, shakespeare_shards, capsys):
    import resource

    config = tiny_run_config(tmp_path / "run", shakespeare_shards, max_steps=2, save_every=2)
    trainer = Trainer(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, hard))  # `ulimit -f`: the 6.5 MB weights cannot be written
    try:
        with pytest.raises(CheckpointSaveError, match=r"File too large.*ulimit -f"):
            trainer.train()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        trainer.close()


# ----------------------------------------------------------------------------------------------- more than one machine
def test_two_machines_train_checkpoint_resume_and_equal_one_process(tmp_path, shakespeare_shards):
    """`accelerate launch --num_machines 2 --machine_rank R --main_process_ip ...`, both launches on this host with
    gloo, one process per "machine", the run folder shared: it trains, checkpoints, stops, resumes, and ends equal
    to one process with the same total batch (accumulation 2)."""
    common = dict(max_steps=4, total_batch_tokens=256, save_every=2)
    run = tmp_path / "two_machines"
    argv = config_to_argv(tiny_run_config(run, shakespeare_shards, **common))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def launch_both(extra: list[str]) -> list[subprocess.CompletedProcess]:
        jobs = []
        for rank in (0, 1):
            launcher = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_machines", "2", "--num_processes", "2",
                        "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port",
                        str(port), "--mixed_precision", "no", "--dynamo_backend", "no"]
            jobs.append(subprocess.Popen([*launcher, str(REPO / "scripts" / "pretrain.py"), *argv, *extra], cwd=REPO,
                                         env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
        results = []
        for job in jobs:
            out, err = job.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(job.args, job.returncode, out, err))
        return results

    first = launch_both(["--callbacks", "tests.helpers.StopAtStep:step=2"])
    assert all(r.returncode == 0 for r in first), first[0].stderr[-2000:] + first[1].stderr[-2000:]
    assert read_scalars(run)["run/num_processes"][0] == 2
    assert RunLayout(run).checkpoint_dir(2).is_dir() and (RunLayout(run).checkpoint_dir(2) / "random_states_1.pkl").exists()
    second = launch_both(["--resume_from_checkpoint", "latest"])
    assert all(r.returncode == 0 for r in second), second[0].stderr[-2000:] + second[1].stderr[-2000:]
    train(tiny_run_config(tmp_path / "one", shakespeare_shards, **common))
    a, b = load_final_weights(tmp_path / "one"), load_final_weights(run)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    assert not RunLayout(run).lock_file.exists()
