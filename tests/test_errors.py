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


def test_disk_full_during_a_checkpoint_names_the_path_and_space(tmp_path, shakespeare_shards, monkeypatch):
    from training.loop.checkpointing import CheckpointSaveError
    from training.loop.trainer import Trainer

    def no_space(self, folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "save_model", no_space)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2))
    with pytest.raises(CheckpointSaveError, match=r"No space left on the device while writing .*step_0000002.tmp: "
                                                  r"a checkpoint of this run takes about [\d,]+ MB and [\d,]+ MB"):
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
    assert code == 2 and "No space left on the device while writing" in err and "_val_000000.npy" in err


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
