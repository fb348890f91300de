"""Long-run safety: resuming on another layout, rolling back, and never losing a complete final model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from training.layout import RunLayout, checkpoint_name
from training.run.checkpointing import Checkpointer
from training.trainer.trainer import Trainer

from .helpers import (
    ACCELERATE_LAUNCH,
    StopAtStep,
    config_to_argv,
    load_final_weights,
    read_scalars,
    run_pretrain,
    tiny_run_config,
    train,
)


def checkpoint_weights(run_dir, step) -> dict[str, torch.Tensor]:
    return load_file(str(RunLayout(run_dir).checkpoint_model_dir(step) / "model.safetensors"))


def assert_weights_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)


def assert_updated_every_step(run_dir, steps):
    for step in steps:
        before, after = checkpoint_weights(run_dir, step - 1), checkpoint_weights(run_dir, step)
        moved = max((after[k] - before[k]).abs().max().item() for k in after)
        assert moved > 1e-6, f"weights did not change at step {step}"


# ----------------------------------------------------------------------------------------------- layout changes
def test_resume_with_a_smaller_micro_batch_updates_every_step(tmp_path, shakespeare_shards):
    """micro-batch 4 -> 2 (accumulation 3 -> 6): the restored micro-step count (3) is not a multiple of 6."""
    common = dict(max_steps=5, total_batch_tokens=384, save_every=1, keep_last=0, warmup_steps=2)
    first = tiny_run_config(tmp_path / "changed", shakespeare_shards, micro_batch_size=4, **common)
    assert train(first, [StopAtStep(1)]).grad_accum == 3
    resumed = tiny_run_config(tmp_path / "changed", shakespeare_shards, micro_batch_size=2,
                              resume_from_checkpoint="latest", **common)
    assert train(resumed).grad_accum == 6
    reference = tiny_run_config(tmp_path / "reference", shakespeare_shards, micro_batch_size=2, **common)
    train(reference)
    assert_updated_every_step(tmp_path / "changed", range(2, 6))
    assert_weights_close(load_final_weights(tmp_path / "changed"), load_final_weights(tmp_path / "reference"))


def test_resume_from_two_processes_into_one(tmp_path, shakespeare_shards):
    """2 processes x accumulation 3 to step 1, then 1 process x accumulation 6 (the seed run moved to 1 GPU)."""
    config = tiny_run_config(tmp_path / "moved", shakespeare_shards, max_steps=5, total_batch_tokens=768,
                             save_every=1, keep_last=0)
    two_processes = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                     "--mixed_precision", "no", "--dynamo_backend", "no"]
    argv = config_to_argv(config)
    run_pretrain(argv + ["--callbacks", "tests.helpers.StopAtStep:step=1"], launcher=two_processes)
    config.checkpoint.resume_from_checkpoint = "latest"
    train(config)
    train(tiny_run_config(tmp_path / "reference", shakespeare_shards, max_steps=5, total_batch_tokens=768,
                          save_every=1, keep_last=0))
    logged = read_scalars(tmp_path / "moved")
    assert logged["run/grad_accum_steps"] == {0: 6.0}  # the resumed (last) writer's layout
    assert_updated_every_step(tmp_path / "moved", range(2, 6))
    assert_weights_close(load_final_weights(tmp_path / "moved"), load_final_weights(tmp_path / "reference"))
    reference = read_scalars(tmp_path / "reference")
    for step in range(1, 6):
        assert logged["train/loss"][step] == pytest.approx(reference["train/loss"][step], abs=1e-4)


def test_a_step_without_gradient_sync_is_an_error_not_a_silent_no_op(tmp_path, shakespeare_shards):
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, total_batch_tokens=384, max_steps=2))
    trainer.accelerator.step = 1  # as a stale counter restored from another layout would leave it
    with pytest.raises(RuntimeError, match="did not synchronise gradients"):
        trainer.train()
    trainer.close()


# ----------------------------------------------------------------------------------------------- rollback
def test_rollback_starts_a_new_branch_and_keeps_the_old_one_aside(tmp_path, shakespeare_shards):
    run = RunLayout(tmp_path)
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=2, keep_last=0))
    old_branch = {s: checkpoint_weights(tmp_path, s) for s in (2, 4, 6)}
    old_loss = read_scalars(tmp_path)["train/loss"]

    # Roll back to step 2 (past a "spike") with another learning rate; keep only the newest 2 checkpoints.
    rollback = tiny_run_config(tmp_path, shakespeare_shards, max_steps=5, save_every=1, keep_last=2, max_lr=1e-3,
                               resume_from_checkpoint=str(run.checkpoint_dir(2)))
    train(rollback)
    # Pruning follows the new branch: its newest two, not the stale step 6 counted as newest.
    assert sorted(p.name for p in run.checkpoints_dir.iterdir() if p.name.startswith("step_")) == \
        [checkpoint_name(4), checkpoint_name(5)]
    (branch,) = list((run.checkpoints_dir / "abandoned").iterdir())
    assert sorted(p.name for p in branch.iterdir()) == sorted([checkpoint_name(4), checkpoint_name(6), "final"])
    torch.testing.assert_close(load_file(str(branch / checkpoint_name(6) / "model" / "model.safetensors")),
                               old_branch[6])  # moved, not deleted
    assert json.loads((run.final_dir / "training_state.json").read_text())["global_step"] == 5

    # latest now continues the new branch, never the abandoned step 6.
    continued = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=7, save_every=1, keep_last=2,
                                        max_lr=1e-3, resume_from_checkpoint="latest"))
    continued.train()
    continued.close()
    assert continued.resumed_step == 5

    # TensorBoard shows one history: steps 3..7 of the new branch, nothing of the abandoned steps after 2.
    loss = read_scalars(tmp_path)["train/loss"]
    assert sorted(loss) == list(range(1, 8))
    assert loss[1] == old_loss[1] and loss[2] == old_loss[2]
    assert loss[6] != old_loss[6]


def test_a_branch_of_an_abandoned_line_is_not_given_the_parents_new_history(tmp_path, shakespeare_shards):
    """Branching from a checkpoint that a rollback set aside: the branch names its run (not checkpoints/abandoned),
    its curves take the parent's steps only up to where the line was left (the parent's later steps are another
    history), and the parent's forecast does not fit it as one of its cool-downs."""
    from training.analysis.forecast import _load_branches, find_branches
    from training.analysis.report import build_report
    from training.analysis.runs import load_run

    parent = tmp_path / "run"
    train(tiny_run_config(parent, shakespeare_shards, max_steps=6, save_every=2))
    train(tiny_run_config(parent, shakespeare_shards, max_steps=5, save_every=1, max_lr=1e-3,
                          resume_from_checkpoint=str(RunLayout(parent).checkpoint_dir(2))))
    (line,) = list((RunLayout(parent).checkpoints_dir / "abandoned").iterdir())
    branch = tmp_path / "run-side"
    train(tiny_run_config(branch, shakespeare_shards, max_steps=8, resume_from_checkpoint=str(line / "step_0000006")))

    record = json.loads(RunLayout(branch).branch_file.read_text())
    assert record["parent_run"] == str(parent.resolve()) and record["abandoned_branch"] == line.name
    loss, parents = load_run(branch).scalars["train/loss"], read_scalars(parent)["train/loss"]
    assert sorted(loss) == [1, 2, 7, 8]  # steps 3-6 of the abandoned line are nowhere: a gap, not the new line's
    assert loss[1] == parents[1] and loss[2] == parents[2]
    finding = next(f for f in build_report(load_run(branch))["findings"] if f["id"] == "branched_from")
    assert "up to step 2 are the parent's; steps 3-6 were on a line" in finding["evidence"]
    assert find_branches(load_run(parent)) == []
    loaded, notes = _load_branches(load_run(parent), [branch])
    assert loaded == [] and "abandoned" in notes[0]
    # The parent's change at step 2 made its new line; the branch's history is the old line's: not inherited.
    assert [r["step"] for r in load_run(branch).changes] == [6]


def test_a_branch_inherits_the_parents_records_of_the_steps_it_shares(tmp_path, shakespeare_shards):
    """A hand change the parent made before the branch step is the branch's history too (its analysis excuses a
    spike after it as the parent's does); one made at or after the branch step is not."""
    from training.analysis.runs import load_run

    parent = tmp_path / "run"
    train(tiny_run_config(parent, shakespeare_shards, max_steps=4, save_every=2))
    train(tiny_run_config(parent, shakespeare_shards, max_steps=8, save_every=2, max_lr=1e-3,
                          resume_from_checkpoint="latest"))
    train(tiny_run_config(parent, shakespeare_shards, max_steps=10, save_every=2, max_lr=2e-3,
                          resume_from_checkpoint="latest"))
    assert [r["step"] for r in load_run(parent).changes] == [4, 8]
    branch = tmp_path / "run-side"
    train(tiny_run_config(branch, shakespeare_shards, max_steps=8, max_lr=1e-3,
                          resume_from_checkpoint=str(RunLayout(parent).checkpoint_dir(6))))
    changes = load_run(branch).changes
    assert [r["step"] for r in changes] == [4, 6] and changes[0]["changes"]["optimizer.max_lr"] == [0.003, 0.001]


def test_resuming_from_the_newest_checkpoint_abandons_nothing(tmp_path, shakespeare_shards):
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2))
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=2, resume_from_checkpoint="latest"))
    assert not (RunLayout(tmp_path).checkpoints_dir / "abandoned").exists()


# ----------------------------------------------------------------------------------------------- final/
def test_a_crash_while_writing_final_keeps_the_previous_final_whole(tmp_path, shakespeare_shards, monkeypatch):
    run = RunLayout(tmp_path)
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, save_every=2))
    first_final = load_final_weights(tmp_path)

    original = Checkpointer.save_model

    def crash_after_the_weights(self, folder):
        if folder.name != "model":  # the final model, not a checkpoint's model/ folder
            self.model.save_pretrained(folder)
            raise KeyboardInterrupt("killed while writing final/")
        original(self, folder)

    monkeypatch.setattr(Checkpointer, "save_model", crash_after_the_weights)
    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2,
                                      resume_from_checkpoint="latest"))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    trainer.close()
    monkeypatch.setattr(Checkpointer, "save_model", original)

    state = json.loads((run.final_dir / "training_state.json").read_text())
    assert state["global_step"] == 2
    final = load_final_weights(tmp_path)
    assert all(torch.equal(final[k], first_final[k]) for k in final)
    # The next run cleans up the half-written folder and publishes a complete final/.
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, save_every=2, resume_from_checkpoint="latest"))
    assert json.loads((run.final_dir / "training_state.json").read_text())["global_step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("final")) == ["final"]
