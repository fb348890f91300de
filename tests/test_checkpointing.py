"""Checkpoint folders: commit (atomic rename), latest, pruning, interrupted saves, resolving a resume spec."""

import pytest

from training.layout import checkpoint_name, temporary_name
from training.run.checkpointing import CheckpointManager


def save(manager: CheckpointManager, step: int, payload: str = "weights"):
    """What the trainer does: write into the temporary folder, then commit."""
    tmp = manager.temporary_path(step)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_text(f"{payload} {step}")
    return manager.commit(step)


def test_commit_publishes_the_temporary_folder(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    path = save(manager, 10)
    assert path == manager.path_for(10) and path.name == checkpoint_name(10)
    assert (path / "model.safetensors").read_text() == "weights 10"
    assert not manager.temporary_path(10).exists()


def test_latest_is_the_newest_complete_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    assert manager.latest() is None and manager.checkpoints() == []
    for step in (5, 20, 10):
        save(manager, step)
    manager.temporary_path(30).mkdir()  # a save that never finished
    assert [p.name for p in manager.checkpoints()] == [checkpoint_name(s) for s in (5, 10, 20)]
    assert manager.latest() == manager.path_for(20)


def test_keep_last_prunes_the_oldest(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    for step in (1, 2, 3, 4):
        save(manager, step)
    assert [p.name for p in manager.checkpoints()] == [checkpoint_name(3), checkpoint_name(4)]


def test_keep_last_zero_keeps_everything(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=0)
    for step in range(1, 6):
        save(manager, step)
    assert len(manager.checkpoints()) == 5


def test_recommitting_a_step_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    save(manager, 3, "old")
    save(manager, 3, "new")
    assert (manager.path_for(3) / "model.safetensors").read_text() == "new 3"


def test_remove_incomplete_deletes_only_temporary_folders(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    save(manager, 1)
    leftover = manager.directory / temporary_name(checkpoint_name(2))
    leftover.mkdir()
    manager.remove_incomplete()
    assert not leftover.exists() and manager.path_for(1).exists()


def test_resolve(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        manager.resolve("latest")
    save(manager, 7)
    assert manager.resolve("latest") == manager.path_for(7)
    assert manager.resolve(str(manager.path_for(7))) == manager.path_for(7)
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        manager.resolve(str(tmp_path))
