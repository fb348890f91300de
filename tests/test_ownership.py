"""Only what the project wrote is ever removed, moved or replaced. Every destructive path is tried on a folder seeded
with a user's own files, which must come out byte-identical (and the refusal must name them)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from training.errors import FolderNotOwned, UserError
from training.layout import MARKER_FILE, RunLayout
from training.run.checkpointing import CheckpointManager
from training.trainer.trainer import Trainer

from .helpers import read_scalars, tiny_run_config, train
from .test_errors import run_main


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its path and the digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def seed_user_files(folder: Path) -> dict[str, str]:
    """The issue's example: a folder that never held a run, with files named like a run's outputs."""
    (folder / "analysis").mkdir(parents=True, exist_ok=True)
    (folder / "final").mkdir(exist_ok=True)
    (folder / "config.yaml").write_text("my: own config\n")
    (folder / "analysis" / "notes.md").write_text("my notes\n")
    (folder / "final" / "essay.docx").write_bytes(os.urandom(64))
    (folder / "tensorboard").mkdir(exist_ok=True)
    (folder / "tensorboard" / "events.out.tfevents.1.other-project").write_bytes(b"another project's logs")
    return snapshot(folder)


# ----------------------------------------------------------------------------------------------- fresh runs
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_never_held_a_run_is_refused_untouched(tmp_path, shakespeare_shards, overwrite):
    folder = tmp_path / "mine"
    before = seed_user_files(folder)
    with pytest.raises(FolderNotOwned) as refused:
        Trainer(tiny_run_config(folder, shakespeare_shards, max_steps=2, overwrite_output_dir=overwrite))
    assert snapshot(folder) == before and not (folder / MARKER_FILE).exists()
    message = str(refused.value)
    assert "config.yaml" in message and ("Nothing was removed" in message or "nothing was changed" in message)


def test_overwrite_refuses_the_current_and_the_home_folder(tmp_path, shakespeare_shards, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "tensorboard").mkdir()
    (home / "tensorboard" / "events.out.tfevents.1.x").write_bytes(b"other logs")
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(home)
    for target in (home, Path(".")):
        monkeypatch.chdir(home)
        with pytest.raises(UserError, match="home folder|current folder|holds files this project did not write"):
            Trainer(tiny_run_config(target, shakespeare_shards, max_steps=2, overwrite_output_dir=True))
        assert snapshot(home) == before


def test_overwrite_refuses_a_dot_folder_even_when_it_holds_a_run(tmp_path, shakespeare_shards, monkeypatch):
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=2))
    before = snapshot(run)
    monkeypatch.chdir(run)
    with pytest.raises(FolderNotOwned, match="is the current folder"):
        Trainer(tiny_run_config(".", shakespeare_shards, max_steps=2, overwrite_output_dir=True))
    assert snapshot(run) == before


def test_overwrite_clears_a_run_folder_only_when_it_holds_nothing_else(tmp_path, shakespeare_shards, capsys):
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2))
    notes = run / "analysis" / "notes.md"
    notes.parent.mkdir()
    notes.write_text("my notes on this run\n")
    before = snapshot(run)
    with pytest.raises(FolderNotOwned, match=r"analysis/notes\.md"):
        Trainer(tiny_run_config(run, shakespeare_shards, max_steps=2, seed=5, overwrite_output_dir=True))
    assert snapshot(run) == before
    notes.unlink()
    train(tiny_run_config(run, shakespeare_shards, max_steps=2, seed=5, overwrite_output_dir=True))
    assert sorted(read_scalars(run)["train/loss"]) == [1, 2]
    assert "removed the previous run's" in capsys.readouterr().out


def test_an_old_run_without_the_marker_is_not_cleared_but_resumes_and_is_marked(tmp_path, shakespeare_shards):
    run = tmp_path / "old"
    train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2))
    (run / MARKER_FILE).unlink()  # as written by a version before the marker
    before = snapshot(run)
    with pytest.raises(FolderNotOwned, match=f"has no {MARKER_FILE}"):
        Trainer(tiny_run_config(run, shakespeare_shards, max_steps=2, overwrite_output_dir=True))
    assert snapshot(run) == before
    train(tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2, resume_from_checkpoint="latest"))
    assert json.loads((run / MARKER_FILE).read_text())["adopted"]


def test_a_lock_file_that_is_a_folder_is_refused(tmp_path, shakespeare_shards):
    (tmp_path / ".run.lock").mkdir()
    (tmp_path / ".run.lock" / "keep.txt").write_text("x")
    before = snapshot(tmp_path)
    with pytest.raises(FolderNotOwned, match="is a folder, not the lock file"):
        Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2))
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------- rollbacks
def test_a_rollback_moves_only_the_runs_own_folders_and_takes_the_abandoned_records_along(tmp_path,
                                                                                          shakespeare_shards):
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2))
    layout = RunLayout(run)
    # Records of steps 5 and 6 (a change at step 4 and an intervention at 5) belong to the branch that is abandoned.
    (layout.changes_file).write_text(json.dumps({"step": 4, "changes": {"train.max_lr": [0.003, 0.001]}}) + "\n")
    layout.interventions_file.write_text(json.dumps({"step": 1, "action": "skip"}) + "\n" +
                                         json.dumps({"step": 5, "action": "skip"}) + "\n")
    essay = layout.final_dir / "essay.docx"
    essay.write_bytes(b"mine")
    before = snapshot(run)
    with pytest.raises(UserError, match="essay.docx"):
        train(tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2,
                              resume_from_checkpoint=str(layout.checkpoint_dir(4))))
    assert snapshot(run) == before  # nothing moved
    essay.unlink()
    train(tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2,
                          resume_from_checkpoint=str(layout.checkpoint_dir(4))))
    branch = next((layout.checkpoints_dir / "abandoned").iterdir())
    assert sorted(p.name for p in branch.iterdir()) == ["changes.jsonl", "final", "interventions.jsonl",
                                                       "step_0000006"]
    assert [r["step"] for r in map(json.loads, layout.interventions_file.read_text().splitlines())] == [1]
    assert [json.loads(line)["step"] for line in (branch / "interventions.jsonl").read_text().splitlines()] == [5]
    assert not layout.changes_file.read_text().strip()  # the change at step 4 is redone (or not) by this resume


def test_pruning_keeps_a_checkpoint_holding_a_users_file(tmp_path, shakespeare_shards, capsys):
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2, keep_last=1))
    kept = CheckpointManager(RunLayout(run).checkpoints_dir).latest()
    (kept / "note.txt").write_text("keep me")
    train(tiny_run_config(run, shakespeare_shards, max_steps=8, save_every=2, keep_last=1,
                          resume_from_checkpoint="latest"))
    assert (kept / "note.txt").read_text() == "keep me"
    assert "is kept past --keep_last 1" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- cool-downs
def test_a_cooldown_into_its_parents_folder_is_refused_and_the_parent_is_untouched(tmp_path, shakespeare_shards,
                                                                                  capsys):
    parent = tmp_path / "wsd"
    train(tiny_run_config(parent, shakespeare_shards, max_steps=8, save_every=4, lr_schedule="wsd"))
    before = snapshot(parent)
    checkpoint = str(RunLayout(parent).checkpoint_dir(4))
    for output_dir in (parent, parent / "inside", tmp_path):
        code, err = run_main("cooldown", [checkpoint, "--steps", "2", "--output_dir", str(output_dir)], capsys)
        assert code == 2 and "a cool-down is a branch beside its run" in err
        assert snapshot(parent) == before
    with pytest.raises(UserError, match="a cool-down is a branch beside its run"):  # pretrain.py's own flag, too
        train(tiny_run_config(parent, shakespeare_shards, max_steps=8, lr_schedule="wsd",
                              resume_from_checkpoint=checkpoint, cooldown_steps=2))
    assert snapshot(parent) == before


# ----------------------------------------------------------------------------------------------- sweeps
def test_a_sweep_rerun_refuses_a_variant_folder_holding_a_users_file(tmp_path, shakespeare_shards, capsys):
    base = {"model": {"n_layer": 2, "n_head": 4, "n_embd": 32}, "data": {"data": str(shakespeare_shards)},
            "train": {"cpu": True, "mixed_precision": "no", "seq_len": 32, "micro_batch_size": 4,
                      "total_batch_tokens": 128, "max_steps": 2, "warmup_steps": 1, "eval_every": 0,
                      "sample_every": 0, "save_every": 0}, "logging": {"progress_bar": False}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": "base.yaml", "output_dir": str(tmp_path / "out"), "seeds": [1], "variants": {"a": {}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert run_main("sweep", [str(tmp_path / "sweep.yaml")], capsys)[0] == 0
    variant = tmp_path / "out" / "a" / "seed1"
    (variant / "results.csv").write_text("mine\n")
    before = snapshot(variant)
    code, err = run_main("sweep", [str(tmp_path / "sweep.yaml"), "--rerun", "a"], capsys)
    assert code != 0 and "results.csv" in err
    assert snapshot(variant) == before


# ----------------------------------------------------------------------------------------------- data preparation
def test_preparation_refuses_a_folder_of_other_files_and_never_removes_a_users_tmp(tmp_path, shakespeare_path):
    from training.data.preparation import PrepareConfig, prepare

    out = tmp_path / "mine"
    out.mkdir()
    (out / "draft.tmp").write_text("my draft")
    (out / "readme.txt").write_text("my data folder")
    before = snapshot(out)
    with pytest.raises(UserError, match="readme.txt"):
        prepare(PrepareConfig(output_dir=str(out), files=[str(shakespeare_path)], shard_tokens=100_000,
                              val_tokens=20_000, progress=False))
    assert snapshot(out) == before


# ----------------------------------------------------------------------------------------------- Hub staging
def test_staging_refuses_a_folder_of_other_files_and_replaces_only_its_own(tmp_path, shakespeare_shards):
    from training.hub.staging import stage_upload

    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=2))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "thesis.pdf").write_bytes(b"%PDF mine")
    before = snapshot(staging)
    with pytest.raises(UserError, match="thesis.pdf"):
        stage_upload(run / "final", staging, "me/x", with_gpt2_export=False)
    assert snapshot(staging) == before
    (staging / "thesis.pdf").unlink()
    stage_upload(run / "final", staging, "me/x", with_gpt2_export=False)
    stage_upload(run / "final", staging, "me/x", with_gpt2_export=False)  # its own earlier staging is replaced
    card = (staging / "README.md").read_text()
    assert "gpt2-export" not in card  # the card names only what was staged beside it
    assert np.all([(staging / name).exists() for name in ("config.json", "model.safetensors")])


# ----------------------------------------------------------------------------------------------- records
def test_changed_settings_on_a_finished_run_are_refused_before_anything_is_written(tmp_path, shakespeare_shards,
                                                                                   capsys):
    """The README's resume example on a finished run: nothing would train, so the change would be recorded for steps
    that never ran (and config.yaml would describe a run that trained at another rate)."""
    run = tmp_path / "run"
    train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2))
    before = snapshot(run)
    with pytest.raises(UserError, match=r"nothing would train, so the changed settings \(optimizer.max_lr\) would never "
                                        r"apply.*--max_steps larger than 4"):
        train(tiny_run_config(run, shakespeare_shards, max_steps=4, save_every=2, max_lr=1e-3,
                              resume_from_checkpoint="latest"))
    assert snapshot(run) == before
    # Extending it applies the change from step 4 on, and says so.
    train(tiny_run_config(run, shakespeare_shards, max_steps=6, save_every=2, max_lr=1e-3,
                          resume_from_checkpoint="latest"))
    change = json.loads(RunLayout(run).changes_file.read_text().splitlines()[-1])
    assert change["step"] == 4 and change["changes"]["optimizer.max_lr"] == [3e-3, 1e-3]


def test_another_projects_event_files_are_not_the_runs(tmp_path):
    """The file name pattern is everyone's: an event file is the run's when it holds a tag only our runs write (or
    nothing but TensorBoard's header); another project's logs copied into the folder are the user's."""
    from torch.utils.tensorboard import SummaryWriter

    from training.layout import Tags
    from training.ownership import foreign_in_run_folder, written_by_this_project

    def events(folder, tag=None):
        writer = SummaryWriter(str(folder))
        if tag:
            writer.add_scalar(tag, 1.0, 0)
        writer.close()
        return next(folder.glob("events.out.tfevents.*"))

    ours, other = events(tmp_path / "ours", Tags.RUN_PARAMETERS), events(tmp_path / "other", "loss")
    empty = events(tmp_path / "empty")
    assert written_by_this_project(ours) and written_by_this_project(empty) and not written_by_this_project(other)
    garbage = tmp_path / "events.out.tfevents.1700000000.otherhost.1.0"
    garbage.write_bytes(b"not an event file")
    assert not written_by_this_project(garbage)
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    (run / ours.name).write_bytes(ours.read_bytes())
    (run / "tensorboard" / other.name).write_bytes(other.read_bytes())
    (run / garbage.name).write_bytes(garbage.read_bytes())
    assert sorted(p.name for p in foreign_in_run_folder(run)) == sorted([other.name, garbage.name])


def test_an_interrupted_save_is_cleared_but_not_the_users_tmp_folder(tmp_path):
    from training.run.checkpointing import CheckpointManager

    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "eval.tmp").mkdir(parents=True)
    (checkpoints / "eval.tmp" / "results.md").write_text("mine\n")
    (checkpoints / "step_0000004.tmp" / "model").mkdir(parents=True)
    (checkpoints / "step_0000004.tmp" / "model" / "config.json").write_text("{}\n")
    CheckpointManager(checkpoints).remove_incomplete()
    assert (checkpoints / "eval.tmp" / "results.md").exists() and not (checkpoints / "step_0000004.tmp").exists()
