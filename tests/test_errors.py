"""Bad input gets a clear message that names the file or setting and what to do: never a raw traceback."""

import errno
import importlib.util
import json

import pytest

from training.layout import RunLayout

from .helpers import REPO, config_to_argv, tiny_run_config, train


def script(name: str):
    """A script's module, imported from its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name: str, argv, capsys) -> tuple[int, str]:
    code = script(name).main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shakespeare_shards):
    root = tmp_path_factory.mktemp("errors") / "run"
    train(tiny_run_config(root, shakespeare_shards, max_steps=4, save_every=2, keep_last=0))
    return root


# ----------------------------------------------------------------------------------------------- pretrain
def test_preset_section_that_is_a_list(tmp_path, capsys):
    preset = tmp_path / "bad.yaml"
    preset.write_text("train:\n  - max_steps\n")
    code, err = run_main("pretrain", ["--config", preset], capsys)
    assert code == 2 and "section 'train' must be a mapping" in err and str(preset) in err


def test_init_from_a_missing_path(tmp_path, shakespeare_shards, capsys):
    argv = config_to_argv(tiny_run_config(tmp_path, shakespeare_shards, init_from=str(tmp_path / "nowhere")))
    code, err = run_main("pretrain", argv, capsys)
    assert code == 2 and "--init_from" in err and "nowhere" in err and "not a model folder" in err


def test_data_folder_with_shards_but_no_training_shards(tmp_path, shakespeare_shards, capsys):
    folder = tmp_path / "val_only"
    folder.mkdir()
    (folder / "x_val_000000.npy").symlink_to(next(shakespeare_shards.glob("*_val_*.npy")))
    code, err = run_main("pretrain", config_to_argv(tiny_run_config(tmp_path / "run", folder)), capsys)
    assert code == 2 and "holds token shards but no training shards" in err
    assert not (tmp_path / "run").exists()  # refused before it wrote anything: no folder holding only a marker


def test_a_refused_branch_leaves_its_folder_as_it_found_it(finished_run, shakespeare_shards, tmp_path, capsys):
    """A branch refused once the checkpoint is read (another shape): a new --output_dir is not left behind holding
    only the marker, an empty one stays empty, and a folder with the user's files keeps them."""
    checkpoint = str(RunLayout(finished_run).checkpoint_dir(2))
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    for name in ("new", "empty"):
        config = tiny_run_config(tmp_path / name, shakespeare_shards, max_steps=6, n_layer=3,
                                 resume_from_checkpoint=checkpoint)
        code, err = run_main("pretrain", config_to_argv(config), capsys)
        assert code == 2 and "Cannot resume" in err
    assert not (tmp_path / "new").exists() and list((tmp_path / "empty").iterdir()) == []
    config = tiny_run_config(tmp_path / "mine", shakespeare_shards, max_steps=6, resume_from_checkpoint=checkpoint)
    code, err = run_main("pretrain", config_to_argv(config), capsys)
    assert code == 2 and (tmp_path / "mine" / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_output_dir_that_cannot_be_written(tmp_path, shakespeare_shards, capsys, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        target.chmod(0o500)
        probe = target / "probe"
        try:
            probe.write_text("")  # root ignores permissions: nothing to test then
            probe.unlink()
            pytest.skip("running as a user that can write anywhere")
        except OSError:
            pass
    code, err = run_main("pretrain", config_to_argv(tiny_run_config(target, shakespeare_shards)), capsys)
    assert code == 2 and "--output_dir" in err and str(target) in err


@pytest.mark.parametrize("change, expected", [
    ({"n_layer": 3}, "model.n_layer: checkpoint 2, now 3"),
    ({"qk_norm": True}, "model.qk_norm: checkpoint False, now True"),
    ({"seq_len": 16, "total_batch_tokens": 64}, "train.seq_len: checkpoint 32, now 16"),
])
def test_resume_with_another_shape_says_what_differs(finished_run, shakespeare_shards, tmp_path, capsys, change,
                                                    expected):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = tiny_run_config(run, shakespeare_shards, max_steps=6, resume_from_checkpoint="latest", **change)
    code, err = run_main("pretrain", config_to_argv(config), capsys)
    assert code == 2 and "Cannot resume" in err and expected in err


def test_resume_with_other_data_says_so(finished_run, fineweb_path, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = tiny_run_config(run, fineweb_path, max_steps=6, resume_from_checkpoint="latest", val_tokens=4096)
    code, err = run_main("pretrain", config_to_argv(config), capsys)
    assert code == 2 and "Cannot resume" in err and "other shards" in err


def test_truncated_checkpoint_names_the_file_and_the_newest_intact_one(finished_run, shakespeare_shards, tmp_path,
                                                                       capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    weights = RunLayout(run).checkpoint_dir(4) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    config = tiny_run_config(run, shakespeare_shards, max_steps=6, resume_from_checkpoint="latest")
    code, err = run_main("pretrain", config_to_argv(config), capsys)
    assert code == 2 and str(weights) in err
    assert f"newest intact checkpoint is {RunLayout(run).checkpoint_dir(2)}" in err


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1472 vs 1364"),  # torch.save
    OSError(errno.EFBIG, "File too large"),  # ulimit -f
    RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on "
                 "device\" })"),  # safetensors' SafetensorError
], ids=["enospc", "torch-unexpected-pos", "efbig", "safetensors"])
def test_disk_full_during_a_checkpoint_names_the_path_and_space(tmp_path, shakespeare_shards, monkeypatch, error):
    from training.run.checkpointing import Checkpointer, CheckpointSaveError
    from training.trainer.trainer import Trainer

    def no_space(self, folder):
        raise error

    monkeypatch.setattr(Checkpointer, "save_model", no_space)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2))
    with pytest.raises(CheckpointSaveError, match=r"No space left while writing .*step_0000002.tmp \(.*\): a "
                                                  r"checkpoint of this run takes about [\d,]+ MB and [\d,]+ MB"):
        trainer.train()
    trainer.close()
    assert not list(RunLayout(tmp_path).checkpoints_dir.glob("*.tmp"))  # the half-written folder is gone


# ----------------------------------------------------------------------------------------------- other scripts
def test_prepare_data_unknown_flag_and_bad_value(tmp_path, capsys):
    code, err = run_main("prepare_data", ["--output_dir", tmp_path, "--shard_tokenz", "5"], capsys)
    assert code == 2 and "--shard_tokenz" in err and "--help" in err
    code, err = run_main("prepare_data", ["--output_dir", tmp_path, "--shard_tokens", "0"], capsys)
    assert code == 2 and "shard_tokens must be positive" in err


def test_prepare_data_disk_full_names_the_shard(tmp_path, shakespeare_path, monkeypatch, capsys):
    import numpy

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(numpy, "save", no_space)
    code, err = run_main("prepare_data", ["--files", shakespeare_path, "--output_dir", tmp_path / "out",
                                          "--shard_tokens", "100000", "--progress", "false"], capsys)
    assert code == 2 and "No space left while writing" in err and "_val_000000.npy" in err


def test_evaluate_unknown_flag_and_bad_batch_size(tmp_path, capsys):
    code, err = run_main("evaluate_checkpoints", [tmp_path, "--batchsize", "2"], capsys)
    assert code == 2 and "--batchsize" in err
    code, err = run_main("evaluate_checkpoints", [tmp_path, "--batch_size", "0"], capsys)
    assert code == 2 and "--batch_size must be positive" in err


@pytest.mark.parametrize("argv, expected", [
    (["--max_new_tokens", "100"], "exceed the model's context of 32 tokens"),
    (["--prompt", ""], "--prompt is empty"),
    (["--num_samples", "0"], "--num_samples must be positive"),
    (["--max_new_tokens", "-3"], "--max_new_tokens must be positive"),
])
def test_generate_bad_arguments(finished_run, capsys, argv, expected):
    code, err = run_main("generate", [RunLayout(finished_run).final_dir, *argv], capsys)
    assert code == 2 and expected in err


def test_hellaswag_with_an_empty_ending_names_the_line(tmp_path):
    from training.evaluation.hellaswag import HellaSwagError, load_examples

    bad = tmp_path / "hs.jsonl"
    bad.write_text(json.dumps({"ctx": "A man", "label": 0, "endings": ["runs.", "", "sits.", "eats."]}) + "\n")
    with pytest.raises(HellaSwagError, match=r"hs.jsonl:1: every ending must be non-empty"):
        load_examples(bad)


def test_analyze_bad_reference_eval_names_the_file(finished_run, tmp_path, capsys):
    missing = tmp_path / "missing.json"
    code, err = run_main("analyze_run", [finished_run, "--reference_eval", missing, "--out", tmp_path / "a"], capsys)
    assert code == 2 and str(missing) in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, err = run_main("analyze_run", [finished_run, "--reference_eval", broken, "--out", tmp_path / "a"], capsys)
    assert code == 2 and str(broken) in err and "not valid JSON" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"models": []}))
    code, err = run_main("analyze_run", [finished_run, "--reference_eval", other, "--out", tmp_path / "a"], capsys)
    assert code == 2 and str(other) in err and "val_loss" in err


def test_analyze_truncated_event_file_warns_and_reads_the_rest(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    event_file = max(RunLayout(run).tensorboard_dir.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_size)
    data = event_file.read_bytes()
    event_file.write_bytes(data[: len(data) - 7])
    code = script("analyze_run").main([str(run), "--out", str(tmp_path / "a")])
    out = capsys.readouterr()
    assert code == 0 and (tmp_path / "a" / "report.md").exists()
    assert "truncated" in out.err and event_file.name in out.err


def test_push_to_hub_bad_eval_json_names_the_file(finished_run, tmp_path, capsys):
    broken = tmp_path / "eval.json"
    broken.write_text("[1, 2")
    code, err = run_main("push_to_hub", [RunLayout(finished_run).final_dir, "--repo_id", "me/x", "--dry_run",
                                         "--eval_json", broken, "--staging_dir", tmp_path / "stage"], capsys)
    assert code == 2 and str(broken) in err



def test_analyze_a_one_step_run_says_it_is_too_short(tmp_path, shakespeare_shards, capsys):
    train(tiny_run_config(tmp_path / "run", shakespeare_shards, max_steps=1, eval_every=1))
    code = script("analyze_run").main([str(tmp_path / "run"), "--out", str(tmp_path / "a")])
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert code == 0
    assert [f["id"] for f in report["findings"] if f["severity"] == "info"][-1] == "too_short"
    assert not any(f["id"] == "healthy" for f in report["findings"])
    assert "Too short to judge" in capsys.readouterr().out


def test_offline_hub_work_fails_at_once_saying_what_to_pass(tmp_path, finished_run, capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    code, err = run_main("prepare_data", ["--output_dir", tmp_path / "out"], capsys)
    assert code == 2 and "needs the Hugging Face Hub, but HF_HUB_OFFLINE is set" in err and "--files" in err
    code, err = run_main("evaluate_checkpoints", [RunLayout(finished_run).final_dir, "--reference", "gpt2",
                                                  "--skip_hellaswag", "--output", tmp_path / "e.json"], capsys)
    assert code == 2 and "gpt2 is a Hub model id, but HF_HUB_OFFLINE is set" in err and "local folder" in err
    assert time.perf_counter() - started < 30


# ----------------------------------------------------------------------------------------------- accepted silently before
@pytest.mark.parametrize("argv, expected", [
    (["--max_lr", "0"], "max_lr must be positive"),
    (["--weight_decay", "-5"], "weight_decay must be >= 0"),
    (["--grad_clip", "-1"], "grad_clip must be >= 0 (got -1.0; 0 disables it)"),
    (["--muon_lr", "1e-3"], "muon_lr (0.001) is set but the optimizer is 'adamw'"),
    (["--target_val_loss", "3.0", "--eval_every", "0"], "target_val_loss (3.0) needs validation"),
    (["--callbacks", "spike_detector:z_threshold=abc"], "Callback 'spike_detector': z_threshold must be a number"),
    (["--callbacks", "early_stopping", "--eval_every", "0"], "Callback 'early_stopping' acts on the validation loss"),
], ids=["max_lr-0", "negative-wd", "negative-clip", "muon_lr-with-adamw", "target-without-eval", "typed-callback",
        "early-stopping-without-eval"])
def test_values_that_were_accepted_silently_are_refused(tmp_path, shakespeare_shards, capsys, argv, expected):
    base = config_to_argv(tiny_run_config(tmp_path, shakespeare_shards, eval_every=2))
    code, err = run_main("pretrain", base + argv, capsys)
    assert code == 2 and expected in err, err


@pytest.mark.parametrize("text, expected", [
    ("train:\n  max_lr:\n", "max_lr has no value (an empty entry in a preset?)"),
    ("train:\n  max_steps: 3.7\n", "max_steps must be a whole number (got 3.7)"),
    ("train:\n  max_lr: 0.001\n  max_lr: 0.002\n", "duplicate key 'max_lr' (line 2 and line 3)"),
], ids=["empty-value", "fractional-steps", "duplicate-key"])
def test_preset_values_are_typed_and_unique(tmp_path, capsys, text, expected):
    preset = tmp_path / "preset.yaml"
    preset.write_text(text)
    code, err = run_main("pretrain", ["--config", preset], capsys)
    assert code == 2 and expected in err and "Traceback" not in err, err


def test_a_yaml_number_without_a_dot_is_still_a_number(tmp_path):
    from training.cli import parse_run_config

    preset = tmp_path / "preset.yaml"
    preset.write_text("train:\n  max_lr: 3e-3\n  min_lr: 3e-4\n")  # YAML 1.1 reads these as strings
    config = parse_run_config(["--config", str(preset)])
    assert config.optimizer.max_lr == 3e-3 and config.optimizer.min_lr == 3e-4


def test_more_validation_tokens_than_exist_are_announced(tmp_path, shakespeare_shards, capsys):
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, eval_every=2, eval_tokens=10_000_000))
    assert "asks for more validation tokens than there are: every evaluation uses all 8,160" in \
        capsys.readouterr().out


def test_warmup_longer_than_the_run_is_announced(tmp_path, shakespeare_shards, capsys):
    config = tiny_run_config(tmp_path / "w", shakespeare_shards, max_steps=3)
    config.schedule.warmup_steps = 10
    train(config)
    assert "--warmup_steps 10 is longer than --max_steps 3: the learning rate never reaches --max_lr" in \
        capsys.readouterr().out


def test_analyze_refuses_empty_event_files_and_a_nan_reference(tmp_path, finished_run, capsys):
    empty = tmp_path / "empty"
    (empty / "tensorboard").mkdir(parents=True)
    (empty / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"")
    code, err = run_main("analyze_run", [empty], capsys)
    assert code == 2 and "hold no training loss" in err
    code, err = run_main("analyze_run", [finished_run, "--reference_loss", "nan", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--reference_loss must be a positive number" in err


def test_analyze_a_read_only_run_fails_before_the_work(tmp_path, finished_run, capsys):
    import shutil
    import subprocess

    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a filesystem here")
    try:
        shutil.copytree(finished_run, mount / "run", ignore=shutil.ignore_patterns("checkpoints", "final"))
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        code, err = run_main("analyze_run", [mount / "run"], capsys)
        assert code == 2 and "Cannot write the analysis to" in err and "pass --out" in err
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_evaluate_checks_its_output_before_the_work(finished_run, capsys):
    code, err = run_main("evaluate_checkpoints", [finished_run / "final", "--output", "/proc/no/such/eval.json",
                                                  "--skip_hellaswag"], capsys)
    assert code == 2 and "--output /proc/no/such/eval.json: cannot write there" in err


def test_generate_on_a_machine_without_cuda(finished_run, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run_main("generate", [finished_run / "final", "--device", "cuda"], capsys)
    assert code == 2 and "--device cuda:" in err and "use --device cpu" in err


def test_evaluation_results_go_into_the_run_folder_by_default(finished_run, tmp_path, capsys, monkeypatch):
    """Not into the folder the command was typed in: the run's analysis folder, recorded as a file of ours."""
    monkeypatch.chdir(tmp_path)
    code, err = run_main("evaluate_checkpoints", [finished_run / "final", "--skip_hellaswag", "--val_tokens", "256"],
                         capsys)
    written = finished_run / "analysis" / "eval_final.json"
    assert code == 0, err
    assert json.loads(written.read_text())["models"][0]["val_loss"] > 0 and not (tmp_path / "eval.json").exists()
    assert "eval_final.json" in json.loads((finished_run / "analysis" / ".written.json").read_text())


def test_a_bug_keeps_its_traceback_and_a_user_error_does_not(capsys):
    """A ValueError raised by a bug is not dressed up as the user's mistake; a UserError is one line."""
    from training.errors import UserError, script_main

    @script_main
    def buggy(argv=None):
        raise ValueError("an internal invariant broke")

    @script_main
    def refused(argv=None):
        raise UserError("--steps must be positive (got 0).")

    with pytest.raises(ValueError, match="internal invariant"):
        buggy([])
    assert refused([]) == 2 and capsys.readouterr().err == "error: --steps must be positive (got 0).\n"


def test_analysis_out_into_a_folder_with_the_users_report_is_refused_untouched(finished_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my own report\n")
    code, err = run_main("analyze_run", [finished_run, "--out", out], capsys)
    assert code == 2 and "report.md" in err and (out / "report.md").read_text() == "my own report\n"


def test_log_reference_to_a_folder_that_is_not_a_run_leaves_nothing_behind(finished_run, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    code, err = run_main("evaluate_checkpoints", [finished_run / "final", "--reference", finished_run / "final",
                                                  "--log_reference_to", folder, "--skip_hellaswag"], capsys)
    assert code == 2 and "not a run folder of this project" in err and not list(folder.iterdir())


def test_log_reference_to_a_folder_with_the_users_own_config_is_not_a_run(finished_run, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own settings\n")
    code, err = run_main("evaluate_checkpoints", [finished_run / "final", "--reference", finished_run / "final",
                                                  "--log_reference_to", folder, "--skip_hellaswag"], capsys)
    assert code == 2 and "not a run folder of this project" in err and sorted(folder.iterdir()) == [folder / "config.yaml"]


@pytest.mark.parametrize("argv, words", [
    (["--temperature", "nan"], "--temperature must be a positive number"),
    (["--temperature", "inf"], "--temperature must be a positive number"),
    (["--num_samples", str(10 ** 9)], "--num_samples 1000000000: at most"),
])
def test_generate_refuses_values_that_cannot_sample(finished_run, capsys, argv, words):
    code, err = run_main("generate", [finished_run / "final", "--device", "cpu", *argv], capsys)
    assert code == 2 and words in err and "Traceback" not in err


def test_analysis_refuses_a_negative_dataset_size(finished_run, tmp_path, capsys):
    code, err = run_main("analyze_run", [finished_run, "--dataset_tokens", "-5", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--dataset_tokens must be positive" in err and not (tmp_path / "a").exists()


def test_staging_a_read_only_run_without_analysis_writes_nothing_into_it(finished_run, tmp_path):
    """The plots a run lacks are made into the staging folder: staging never writes into the run."""
    import shutil
    import stat

    from training.hub.staging import stage_upload

    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("analysis"))
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        staged = stage_upload(run / "final", tmp_path / "stage", "me/model", with_gpt2_export=False)
        assert (staged / "plots" / "lossGraph.png").exists() and not (run / "analysis").exists()
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
