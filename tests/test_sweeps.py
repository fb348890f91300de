"""Sweeps: variants x seeds as ordinary runs, ranked by tokens to a target; an interrupted sweep resumes."""

import json
import shutil

import pytest
import torch
import yaml

from training.cli import ConfigError
from training.layout import RunLayout
from training.sweeps.config import load_sweep
from training.sweeps.runner import run_status, run_sweep
from training.sweeps.summary import write_summary

from .helpers import REPO, load_final_weights


def write_sweep(tmp_path, shards, **extra) -> str:
    base = {"model": {"n_layer": 2, "n_head": 4, "n_embd": 32},
            "data": {"data": str(shards)},
            "train": {"cpu": True, "mixed_precision": "no", "seq_len": 32, "micro_batch_size": 4,
                      "total_batch_tokens": 128, "max_steps": 12, "warmup_steps": 2, "eval_every": 3,
                      "eval_tokens": 1024, "sample_every": 0, "save_every": 4, "keep_last": 0, "grad_clip": 5.0,
                      "callbacks": ["grad_norm", "layer_ratios"]},
            "logging": {"progress_bar": False, "diagnostics_every": 4}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": "base.yaml", "output_dir": str(tmp_path / "sweep"), "seeds": [1, 2],
             "target_val_loss": 10.6,
             "variants": {"too_slow": {"max_lr": 1e-6, "min_lr": 1e-7}, "fast": {"max_lr": 3e-3, "min_lr": 3e-4}},
             **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return str(path)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, shakespeare_shards):
    root = tmp_path_factory.mktemp("sweep")
    config = load_sweep(write_sweep(root, shakespeare_shards))
    outcome = run_sweep(config, say=lambda line: None)
    write_summary(config)
    return root, config, outcome


def test_every_variant_and_seed_is_an_ordinary_run(finished_sweep):
    _, config, outcome = finished_sweep
    assert [o[2] for o in outcome] == ["trained"] * 4
    for variant, seed in config.runs():
        layout = RunLayout(config.run_dir(variant, seed))
        assert (layout.final_dir / "model.safetensors").exists() and layout.checkpoints_dir.is_dir()
        assert run_status(config, variant, seed) == "done"


def test_the_ranking_finds_the_planted_difference(finished_sweep):
    _, config, _ = finished_sweep
    summary = json.loads((config.output_dir / "sweep.json").read_text())
    first, second = summary["ranking"]
    assert first["variant"] == "fast" and first["reached"] and first["tokens_to_target"] > 0
    assert first["tokens_to_target_spread"] is not None  # two seeds: a spread
    assert second["variant"] == "too_slow" and not second["reached"]
    assert second["versus_best"].startswith("worse")
    assert second["val_loss_at_equal_tokens"] > first["val_loss_at_equal_tokens"]
    assert second["verdicts"] == ["too short to judge"]  # 12 steps: the report gives no verdict, nor does the sweep
    markdown = (config.output_dir / "sweep.md").read_text()
    assert markdown.index("| 1 | fast") < markdown.index("| 2 | too_slow") and "not reached" in markdown
    assert (config.output_dir / "compare_loss.png").stat().st_size > 0


def test_an_interrupted_sweep_resumes_where_it_stopped(finished_sweep):
    _, config, _ = finished_sweep
    run = RunLayout(config.run_dir("fast", 2))
    before = load_final_weights(run.root)
    shutil.rmtree(run.final_dir)  # as if killed after the step-8 checkpoint
    shutil.rmtree(run.checkpoint_dir(12))
    assert run_status(config, "fast", 2) == "partial"
    outcome = run_sweep(config, say=lambda line: None)
    assert {(variant, seed): what for variant, seed, what in outcome} == {
        ("fast", 1): "skipped", ("fast", 2): "resumed", ("too_slow", 1): "skipped", ("too_slow", 2): "skipped"}
    after = load_final_weights(run.root)
    assert all(torch.equal(before[k], after[k]) for k in before)  # exact resume


def test_bad_sweep_files_name_the_problem(tmp_path, shakespeare_shards):
    with pytest.raises(ConfigError, match="unknown argument\\(s\\) \\['max_lrr'\\] in variant 'typo'"):
        load_sweep(write_sweep(tmp_path, shakespeare_shards, variants={"typo": {"max_lrr": 1.0}}))
    with pytest.raises(ConfigError, match="seeds must be a non-empty list"):
        load_sweep(write_sweep(tmp_path, shakespeare_shards, seeds=[]))
    with pytest.raises(ConfigError, match="target_val_loss: Reference evaluation .*missing.json does not exist"):
        load_sweep(write_sweep(tmp_path, shakespeare_shards, target_val_loss="missing.json"))


def test_a_difference_within_the_seed_spread_is_no_difference():
    from training.sweeps.summary import _compare_with_the_best

    def row(name, tokens, spread, reached=True):
        return {"variant": name, "reached": reached, "tokens_to_target": tokens, "tokens_to_target_spread": spread}

    rows = [row("a", 1000.0, 50.0), row("b", 1040.0, 30.0), row("c", 1200.0, 40.0), row("d", None, None, False)]
    _compare_with_the_best(rows)
    assert rows[0]["versus_best"] == "best"
    assert rows[1]["versus_best"].startswith("no difference")
    assert rows[2]["versus_best"].startswith("worse by 200 ")
    assert rows[3]["versus_best"] == "worse (target not reached)"
    single = [row("a", 1000.0, None), row("b", 1040.0, None)]
    _compare_with_the_best(single)
    assert "one seed: spread unknown" in single[1]["versus_best"]


def test_a_sweep_runs_under_accelerate_launch_with_two_processes(tmp_path, shakespeare_shards):
    """Both processes train every run together (gloo on CPU); one progress line and one summary."""
    import subprocess

    from training.analysis.runs import load_run

    from .helpers import ACCELERATE_LAUNCH, REPO, offline_env

    path = write_sweep(tmp_path, shakespeare_shards, seeds=[1], overrides={"total_batch_tokens": 256})
    launcher = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = subprocess.run([*launcher, str(REPO / "scripts" / "sweep.py"), path], capture_output=True, text=True,
                            timeout=600, cwd=REPO, env={**offline_env(), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("fast seed 1: training in") == 1 and result.stdout.count("wrote ") == 1
    config = load_sweep(path)
    for variant, seed in config.runs():
        assert load_run(config.run_dir(variant, seed)).scalars["run/num_processes"][0] == 2
        assert run_status(config, variant, seed) == "done"
    assert json.loads((config.output_dir / "sweep.json").read_text())["ranking"][0]["variant"] == "fast"


# ----------------------------------------------------------------------------------------------- hostile sweeps
def small_sweep(tmp_path, shards, variants, **extra) -> str:
    return write_sweep(tmp_path, shards, seeds=[1], variants=variants,
                       overrides={"max_steps": 6, "eval_every": 3, "save_every": 3}, **extra)


def test_a_diverged_variant_is_recorded_and_the_sweep_goes_on(tmp_path, shakespeare_shards):
    poison = {"callbacks": ["tests.helpers.PoisonStep:step=3,permanent=true"]}
    config = load_sweep(small_sweep(tmp_path, shakespeare_shards, {"poisoned": poison, "fine": {}}))
    lines = []
    assert run_sweep(config, say=lines.append) == [("fine", 1, "trained"), ("poisoned", 1, "diverged")]
    record = json.loads(RunLayout(config.run_dir("poisoned", 1)).sweep_run_file.read_text())
    assert record["status"] == "diverged" and record["last_good_step"] == 2 and record["last_good_loss"] > 0
    assert run_status(config, "poisoned", 1) == "diverged"
    write_summary(config)
    ranking = json.loads((config.output_dir / "sweep.json").read_text())["ranking"]
    assert [row["variant"] for row in ranking] == ["fine", "poisoned"]  # never ranked first
    assert ranking[1]["versus_best"].startswith("diverged (1 of 1 seeds: seed 1 after step 2 (loss ")
    # Rerunning the sweep does not diverge it again unless asked.
    lines.clear()
    assert run_sweep(config, say=lines.append)[1] == ("poisoned", 1, "diverged")
    assert "diverged earlier (last good step 2), skipped; --rerun poisoned" in lines[1]
    lines.clear()
    run_sweep(config, say=lines.append, rerun=["poisoned"])
    assert "poisoned seed 1: training in" in lines[1]


def test_every_variant_is_ranked_even_one_that_diverged_before_its_first_logged_step(tmp_path, shakespeare_shards):
    at_once = {"callbacks": ["tests.helpers.PoisonStep:step=1,permanent=true"]}
    config = load_sweep(small_sweep(tmp_path, shakespeare_shards, {"at_once": at_once, "fine": {}}))
    run_sweep(config, say=lambda line: None)
    write_summary(config)
    ranking = json.loads((config.output_dir / "sweep.json").read_text())["ranking"]
    assert [row["variant"] for row in ranking] == ["fine", "at_once"]
    assert ranking[1]["versus_best"].startswith("diverged (1 of 1 seeds: seed 1 after step 0")


def test_a_run_that_stopped_at_its_target_is_finished_not_resumed(tmp_path, shakespeare_shards):
    """A variant whose own target_val_loss stops it before max_steps is done: a rerun of the sweep skips it instead
    of resuming it past its stopping point (which replaced its final model with a later one)."""
    config = load_sweep(small_sweep(tmp_path, shakespeare_shards, {"quick": {"target_val_loss": 11.5}}))
    run_sweep(config, say=lambda line: None)
    final = RunLayout(config.run_dir("quick", 1)).final_dir
    state = json.loads((final / "training_state.json").read_text())
    assert state["global_step"] == 3 and state["stopped_early"] is True  # the first evaluation reached 11.5
    assert run_status(config, "quick", 1) == "done"
    lines = []
    assert run_sweep(config, say=lines.append) == [("quick", 1, "skipped")]
    assert json.loads((final / "training_state.json").read_text())["global_step"] == 3


def test_an_edited_variant_stops_the_sweep_before_any_training(tmp_path, shakespeare_shards):
    path = small_sweep(tmp_path, shakespeare_shards, {"a": {"max_lr": 3e-3}, "b": {}})
    run_sweep(load_sweep(path), say=lambda line: None)
    edited = yaml.safe_load(open(path))
    edited["variants"]["a"] = {"max_lr": 1e-3}
    open(path, "w").write(yaml.safe_dump(edited))
    config, lines = load_sweep(path), []
    with pytest.raises(ConfigError, match=r"variant\(s\) a changed since their runs were trained \(a: optimizer.max_lr "
                                          r"0.003 -> 0.001\).*--rerun a"):
        run_sweep(config, say=lines.append)
    assert lines == []  # nothing trained, nothing reported under the new settings
    outcome = run_sweep(config, say=lines.append, rerun=["a"])
    assert outcome == [("a", 1, "trained"), ("b", 1, "skipped")]
    assert yaml.safe_load(RunLayout(config.run_dir("a", 1)).config_file.read_text())["optimizer"]["max_lr"] == 1e-3


def test_hostile_sweep_files_are_refused_before_anything_trains(tmp_path, shakespeare_shards):
    with pytest.raises(ConfigError, match=r"variant name '../../x' is not a plain folder name"):
        load_sweep(small_sweep(tmp_path, shakespeare_shards, {"../../x": {}}))
    with pytest.raises(ConfigError, match=r"variant 'mine' sets \['seed'\], which the sweep sets"):
        load_sweep(small_sweep(tmp_path, shakespeare_shards, {"mine": {"seed": 7}}))
    with pytest.raises(ConfigError, match=r"variant 'bad': Invalid optimizer arguments: max_lr must be positive"):
        load_sweep(small_sweep(tmp_path, shakespeare_shards, {"good": {}, "bad": {"max_lr": -1.0}}))
    with pytest.raises(ConfigError, match=r"seeds \[1, 1\] repeat a seed"):
        load_sweep(write_sweep(tmp_path, shakespeare_shards, seeds=[1, 1]))
    duplicated = tmp_path / "dup.yaml"
    duplicated.write_text("base: base.yaml\nvariants:\n  a: {max_lr: 0.001}\n  a: {max_lr: 0.002}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'a' \(line 3 and line 4\)"):
        load_sweep(duplicated)


def test_ties_and_unreached_rankings_read_right():
    from training.sweeps.summary import _compare_with_the_best, _rank_key

    def row(name, equal, reached=False, best=None):
        return {"variant": name, "reached": reached, "tokens_to_target": None, "val_loss_at_equal_tokens": equal,
                "val_loss_at_equal_tokens_spread": None, "best_val_loss": best if best is not None else equal,
                "diverged": []}

    # Not reached by anyone: ranked and compared by the same quantity (no "worse by -0.05").
    rows = sorted([row("a", 6.30, best=6.10), row("b", 6.25, best=6.20), row("c", 6.25)], key=_rank_key)
    _compare_with_the_best(rows)
    assert [r["variant"] for r in rows] == ["b", "c", "a"]
    assert rows[1]["versus_best"] == "no difference (equal)"
    assert rows[2]["versus_best"].startswith("worse by 0.05")


def test_train_time_counts_every_step_when_only_some_are_logged():
    import numpy as np

    from training.sweeps.summary import train_seconds

    class Logged:  # log_every 5: steps 1, 5, 10, ..., 100, each 200 ms
        def series(self, tag):
            steps = np.array([1.0] + list(range(5, 101, 5)))
            return steps, np.full(len(steps), 200.0)

    assert train_seconds(Logged()) == pytest.approx(20.0)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "sweeps").glob("*.yaml")))
def test_every_shipped_sweep_file_loads_and_every_run_is_valid(name):
    config = load_sweep(REPO / "configs" / "sweeps" / name)  # check_every_run builds each variant's RunConfig
    assert config.variants and config.seeds
    if name == "lr-sensitivity-124m.yaml":  # bench/lr_sensitivity.py --sweep reads arms and rates from it
        rates = {(bool(v.get("qk_norm")), v["max_lr"]) for v in config.variants.values()}
        assert len(rates) == 12 and max(r for _, r in rates) / min(r for _, r in rates) >= 30


def test_tune_small_train_big_writes_the_winner_into_the_wide_preset(tmp_path, shakespeare_shards):
    """μP's workflow: a sweep at width 32 under mup (base width = its own width), its winner's settings written into a
    width-64 preset with mup_base_width 32, as the winner trained with them (defaults included, over the target's
    own); the target keeps its own depth, batch and length, and each such difference is said; the written preset
    trains."""
    from training.cli import load_preset
    from training.errors import UserError
    from training.sweeps.summary import ranked
    from training.sweeps.transfer import plan_transfer, write_transferred

    path = write_sweep(tmp_path, shakespeare_shards, seeds=[1],
                       overrides={"parametrization": "mup", "mup_base_width": 32, "max_steps": 8})
    config = load_sweep(path)
    target = tmp_path / "wide.yaml"
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["model"].update(n_embd=64, n_layer=3, init_std=0.05)  # the target's own init must not stay beside the lr
    base["optimizer"] = {**base.get("optimizer", {}), "adam_beta2": 0.99, "weight_decay": 0.0}
    base["train"].update(max_steps=3, output_dir=str(tmp_path / "wide_run"), total_batch_tokens=256)
    target.write_text(yaml.safe_dump(base))
    plan = plan_transfer(config, target, tmp_path / "tuned.yaml")
    run_sweep(config, say=lambda line: None)
    rows = ranked(config)
    assert rows[0]["variant"] == "fast"
    said = []
    written = write_transferred(plan, rows, say=said.append)
    values = load_preset(written, say=lambda line: None)
    assert (values["max_lr"], values["min_lr"]) == (3e-3, 3e-4)
    assert (values["init_std"], values["adam_beta2"], values["weight_decay"], values["optimizer"]) == \
        (0.02, 0.95, 0.1, "adamw")  # what the tuned runs trained with (defaults), not the target's
    assert (values["parametrization"], values["mup_base_width"], values["n_embd"]) == ("mup", 32, 64)
    assert values["total_batch_tokens"] == 256 and values["max_steps"] == 3 and values["n_layer"] == 3
    assert "n_layer: 2 -> 3" in said[0] and "#   n_layer: 2 -> 3" in written.read_text()
    with pytest.raises(UserError, match="exists"):
        write_transferred(plan, rows)
    from training.cli import run_config_from_values

    from .helpers import train

    trainer = train(run_config_from_values(values))
    assert trainer.raw_model.config.parametrization == "mup" and trainer.raw_model.config.mup_width_mult == 2.0


def test_a_transfer_that_cannot_be_written_is_refused_before_the_sweep_trains(tmp_path, shakespeare_shards, capsys):
    """An sp sweep, a target narrower than the base, a --write that exists or lies under a file: refused by
    sweep.py before any run folder exists (a GPU sweep would otherwise train for hours first)."""
    from .test_errors import run_main

    mup = {"parametrization": "mup", "mup_base_width": 32, "max_steps": 8}
    path = write_sweep(tmp_path, shakespeare_shards, seeds=[1], overrides=mup)
    narrow = yaml.safe_load((tmp_path / "base.yaml").read_text())
    narrow["model"].update(n_embd=16)
    (tmp_path / "narrow.yaml").write_text(yaml.safe_dump(narrow))
    (tmp_path / "mine.yaml").write_text("my notes\n")
    (tmp_path / "sp").mkdir()
    standard = write_sweep(tmp_path / "sp", shakespeare_shards)
    for sweep, target, out, message in (
            (standard, tmp_path / "base.yaml", tmp_path / "a.yaml", "standard parametrization"),
            (path, tmp_path / "narrow.yaml", tmp_path / "a.yaml", "narrower than the width"),
            (path, tmp_path / "base.yaml", tmp_path / "mine.yaml", "exists"),
            (path, tmp_path / "base.yaml", tmp_path / "mine.yaml" / "x.yaml", "is a file")):
        code, err = run_main("sweep", [sweep, "--transfer_to", target, "--write", out], capsys)
        assert code != 0 and message in err
    assert (tmp_path / "mine.yaml").read_text() == "my notes\n"
    assert not any(load_sweep(sweep).run_dir(v, 1).exists() for sweep in (path, standard)
                   for v in load_sweep(sweep).variants)
