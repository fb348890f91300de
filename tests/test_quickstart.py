"""The README's commands as a new user types them: no network, no tokenizer cache, from the repository root."""

import os

import pytest

from .helpers import ACCELERATE_LAUNCH, REPO, offline_env, read_scalars, run_pretrain


def test_quick_start_command_trains_offline_and_prints_the_summary(tmp_path):
    out = tmp_path / "cpu-tiny"
    result = run_pretrain(["--config", "configs/cpu-tiny.yaml", "--max_steps", "4", "--eval_every", "2",
                           "--sample_every", "4", "--save_every", "4", "--output_dir", str(out)],
                          env={**offline_env(), "PYTHONPATH": ""})
    assert "Done: 4 steps" in result.stdout and "validation loss" in result.stdout
    assert "python scripts/analyze_run.py" in result.stdout and "tensorboard --logdir" in result.stdout
    assert (out / "final" / "model.safetensors").exists()
    assert read_scalars(out)["val/loss"][4] < 11.0


def test_preset_data_path_works_from_another_directory(tmp_path):
    from training.cli import parse_run_config

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        config = parse_run_config(["--config", str(REPO / "configs" / "cpu-tiny.yaml")])
    finally:
        os.chdir(cwd)
    assert os.path.isfile(config.data.data) and config.data.data.endswith("tinyshakespeare.txt")


def test_two_process_cpu_example_runs_with_the_quick_start_preset(tmp_path):
    out = tmp_path / "two"
    launcher = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    run_pretrain(["--config", "configs/cpu-tiny.yaml", "--cpu", "true", "--max_steps", "2", "--eval_every", "2",
                  "--sample_every", "0", "--save_every", "0", "--output_dir", str(out)], launcher=launcher,
                 env=offline_env())
    assert read_scalars(out)["run/num_processes"][0] == 2


@pytest.mark.parametrize("name", ["pretrain", "prepare_data", "evaluate_checkpoints", "generate", "analyze_run",
                                  "push_to_hub", "sweep", "cooldown"])
def test_every_script_explains_itself(name, capsys):
    from .test_errors import script

    with pytest.raises(SystemExit) as done:
        script(name).main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "Example" in out and "option_strings" not in out
