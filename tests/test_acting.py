"""Acting on a run: settings changed on resume are applied and recorded, schedules that extend and cool down."""

import json

import pytest
import torch

from training.layout import RunLayout
from training.optim.schedules import Anchor, Schedule, warmup_cosine_factor
from training.trainer.trainer import Trainer

from .helpers import StopAtStep, load_final_weights, read_scalars, same_weights, tiny_run_config, train


# ----------------------------------------------------------------------------------------------- schedules
def test_wsd_warms_up_holds_and_cools_down_in_1_minus_sqrt():
    schedule = Schedule("wsd", warmup_steps=10, max_steps=100, min_ratio=0.1, decay_steps=20)
    assert schedule.factor(0) == pytest.approx(0.1) and schedule.factor(9) == pytest.approx(1.0)
    assert all(schedule.factor(s) == 1.0 for s in range(10, 80))
    # 1 - sqrt: a quarter of the way through the decay, half of the drop is done.
    assert schedule.factor(85) == pytest.approx(0.1 + 0.9 * (1 - 0.5))
    assert schedule.factor(100) == pytest.approx(0.1) and schedule.factor(150) == pytest.approx(0.1)


def test_a_longer_cosine_is_replanned_from_where_the_run_is():
    old = Schedule("cosine", 10, 100, 0.1)
    new = Schedule("cosine", 10, 300, 0.1).replanned(old, 60)
    assert new.factor(60) == pytest.approx(old.factor(60))  # no jump back up the longer cosine
    assert new.factor(300) == pytest.approx(0.1) and new.factor(180) < new.factor(60)
    assert Schedule("cosine", 10, 100, 0.1).replanned(old, 60).anchor is None  # unchanged: the same curve
    # A wsd run extended in its stable phase simply stays at the peak longer.
    wsd = Schedule("wsd", 10, 100, 0.1, decay_steps=20)
    longer = Schedule("wsd", 10, 200, 0.1, decay_steps=40).replanned(wsd, 50)
    assert longer.anchor is None and longer.factor(150) == 1.0


def test_a_cooldown_starts_from_the_current_factor():
    cosine = Schedule("cosine", 10, 100, 0.1)
    cooled = cosine.cooled_down(40, 20, "1-sqrt")
    assert cooled.factor(40) == pytest.approx(cosine.factor(40)) and cooled.factor(60) == pytest.approx(0.1)
    assert cooled.anchor == Anchor(40, cosine.factor(40), "1-sqrt") and cooled.max_steps == 60


def test_a_purely_stable_wsd_run_cools_down_from_the_peak_at_its_last_step():
    """A WSD run with no decay (decay_fraction 0) trained at the peak to its end: a cool-down from its last checkpoint
    decays from the peak, not from a floor the run never reached (which would make the branch a flat run at min_lr)."""
    stable = Schedule("wsd", 10, 800, 0.1, decay_steps=0)
    assert stable.factor(799) == 1.0 and stable.factor(800) == 1.0
    cooled = stable.cooled_down(800, 160, "1-sqrt")
    assert cooled.factor(800) == 1.0 and cooled.factor(880) < 1.0 and cooled.factor(960) == pytest.approx(0.1)
    assert stable.factors(801)[-1] == 1.0  # the vectorised curve agrees
    decayed = Schedule("wsd", 10, 800, 0.1, decay_steps=160)  # a run that did cool down ends at its floor
    assert decayed.cooled_down(800, 160, "1-sqrt").factor(800) == pytest.approx(0.1)


def test_the_cosine_is_still_build_nanogpts():
    assert warmup_cosine_factor(619, 620, 1700, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_factor(1160, 620, 1700, 0.1) == pytest.approx(0.55)


# ----------------------------------------------------------------------------------------------- changed settings
def _first_half(tmp_path, shards, **extra):
    config = tiny_run_config(tmp_path, shards, max_steps=10, save_every=5, max_lr=3e-3, min_lr=3e-4, warmup_steps=2,
                             weight_decay=0.1, **extra)
    train(config, [StopAtStep(5)])  # stop at the checkpoint, as a crash would
    return config


def test_a_resume_applies_a_lower_learning_rate_and_weight_decay_and_says_so(tmp_path, shakespeare_shards, capsys):
    """The measured defect: the old schedule and weight decay were silently kept."""
    _first_half(tmp_path, shakespeare_shards)
    capsys.readouterr()
    resumed = tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, save_every=5, max_lr=1e-4, min_lr=1e-5,
                              warmup_steps=2, weight_decay=0.0, resume_from_checkpoint="latest")
    trainer = train(resumed)
    lrs = read_scalars(tmp_path)["train/lr"]
    for step in range(6, 11):  # the schedule of the new peak, evaluated at the resumed steps
        assert lrs[step] == pytest.approx(1e-4 * warmup_cosine_factor(step - 1, 2, 10, 0.1)), step
    assert all(group["weight_decay"] == 0.0 for group in trainer.optimizers[0].param_groups)
    out = capsys.readouterr().out
    assert "Resuming at step 5 with changed settings" in out and "optimizer.max_lr: 0.003 -> 0.0001" in out
    assert "optimizer.weight_decay: 0.1 -> 0" in out and "Learning rate of step 6: 0.002167 (the checkpoint's" in out
    record = [json.loads(line) for line in RunLayout(tmp_path).changes_file.read_text().splitlines()]
    assert record[0]["step"] == 5 and record[0]["changes"]["optimizer.max_lr"] == [3e-3, 1e-4]
    assert read_scalars(tmp_path)["run/settings_changed"] == {5: 3.0}
    from training.analysis.report import build_report
    from training.analysis.runs import load_run, read_run_texts

    assert "optimizer.weight_decay: 0.1 -> 0" in read_run_texts(tmp_path)["run/changes"][5]
    finding = next(f for f in build_report(load_run(tmp_path))["findings"] if f["id"] == "settings_changed")
    assert "at step 5: optimizer.max_lr 0.003 -> 1.00e-04" in finding["evidence"]


def test_a_resume_applies_muon_lr_warmup_and_momentum(tmp_path, shakespeare_shards, capsys):
    _first_half(tmp_path, shakespeare_shards, optimizer="muon")
    resumed = tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, save_every=5, max_lr=3e-3, min_lr=3e-4,
                              warmup_steps=8, weight_decay=0.1, optimizer="muon", muon_lr=1e-3, muon_momentum=0.9,
                              resume_from_checkpoint="latest")
    trainer = train(resumed)
    scalars = read_scalars(tmp_path)
    # Still inside the new, longer warmup: the warmup formula of the new settings, no re-plan.
    assert scalars["train/lr_muon"][6] == pytest.approx(1e-3 * 6 / 8)
    assert scalars["train/lr"][6] == pytest.approx(3e-3 * 6 / 8)
    assert trainer.optimizers[1].param_groups[0]["momentum"] == 0.9
    out = capsys.readouterr().out
    assert "optimizer.muon_lr: None -> 0.001" in out and "schedule.warmup_steps: 2 -> 8" in out


def test_a_longer_cosine_run_is_replanned_on_resume(tmp_path, shakespeare_shards, capsys):
    _first_half(tmp_path, shakespeare_shards)
    resumed = tiny_run_config(tmp_path, shakespeare_shards, max_steps=20, save_every=5, max_lr=3e-3, min_lr=3e-4,
                              warmup_steps=2, weight_decay=0.1, resume_from_checkpoint="latest")
    train(resumed)
    lrs = read_scalars(tmp_path)["train/lr"]
    assert lrs[6] == pytest.approx(3e-3 * warmup_cosine_factor(5, 2, 10, 0.1))  # continues where it was
    assert all(lrs[s + 1] < lrs[s] for s in range(6, 20)) and lrs[20] > 3e-4  # and decays to min_lr at step 20
    out = capsys.readouterr().out
    assert "train.max_steps: 10 -> 20" in out and "re-planned at step 5" in out


def test_an_unchanged_resume_says_nothing_and_records_nothing(tmp_path, shakespeare_shards, capsys):
    _first_half(tmp_path, shakespeare_shards)
    capsys.readouterr()
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, save_every=5, max_lr=3e-3, min_lr=3e-4,
                          warmup_steps=2, weight_decay=0.1, resume_from_checkpoint="latest"))
    assert "changed settings" not in capsys.readouterr().out
    assert not RunLayout(tmp_path).changes_file.exists()


# ----------------------------------------------------------------------------------------------- cool-down branches
def test_a_wsd_run_is_cooled_down_as_a_branch_in_one_command(tmp_path, shakespeare_shards, capsys):
    from .test_errors import script

    parent = tmp_path / "wsd"
    train(tiny_run_config(parent, shakespeare_shards, max_steps=12, save_every=4, lr_schedule="wsd",
                          decay_fraction=0.25, eval_every=4))
    before = load_final_weights(parent)
    code = script("cooldown").main([str(RunLayout(parent).checkpoint_dir(4)), "--steps", "4", "--eval_every", "2"])
    assert code == 0
    branch = tmp_path / "wsd-cooldown-4"
    lrs = read_scalars(branch)["train/lr"]
    assert sorted(lrs) == [5, 6, 7, 8]  # the branch's own steps
    assert lrs[5] == pytest.approx(3e-3)  # from the peak of the stable phase...
    assert lrs[6] == pytest.approx(3e-4 + (3e-3 - 3e-4) * (1 - 0.5))  # ...1-sqrt: half the drop at a quarter
    origin = json.loads(RunLayout(branch).branch_file.read_text())
    assert origin["step"] == 4 and origin["parent_run"] == str(parent.resolve())
    assert json.loads((branch / "final" / "training_state.json").read_text())["global_step"] == 8
    assert same_weights(load_final_weights(parent), before)  # the parent is untouched
    from training.analysis.report import build_report
    from training.analysis.runs import load_run

    stitched = load_run(branch)
    assert sorted(stitched.scalars["train/loss"]) == list(range(1, 9))  # the parent's steps 1-4, then its own
    assert any(f["id"] == "branched_from" for f in build_report(stitched)["findings"])
    assert "cooled down from step 4" in capsys.readouterr().out
    # The branch resumes like any run, keeping its cool-down (not a second one from a later step).
    train(tiny_run_config(branch, shakespeare_shards, max_steps=8, lr_schedule="wsd", decay_fraction=0.25,
                          resume_from_checkpoint=str(RunLayout(branch).checkpoint_dir(8)), cooldown_steps=4,
                          eval_every=2, save_every=4))
    assert json.loads((branch / "final" / "training_state.json").read_text())["global_step"] == 8


def test_a_branch_starts_from_the_checkpoints_state(tmp_path, shakespeare_shards):
    """The branch continues the parent's optimizer moments and data position: cooled down over the steps the
    parent would have run anyway, with the parent's own schedule, it is the parent."""
    parent = tmp_path / "parent"
    common = dict(max_steps=8, save_every=4, lr_schedule="wsd", decay_steps=4)
    train(tiny_run_config(parent, shakespeare_shards, **common))
    branch = tmp_path / "branch"
    train(tiny_run_config(branch, shakespeare_shards, resume_from_checkpoint=str(RunLayout(parent).checkpoint_dir(4)),
                          **common))
    a, b = load_final_weights(parent), load_final_weights(branch)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------- spike guard
GUARD = dict(max_steps=60, save_every=10, eval_every=60, eval_tokens=4096, max_lr=3e-3, min_lr=3e-4, warmup_steps=5,
             spike_guard=True, spike_guard_window=20, spike_guard_patience=3, spike_guard_skip_steps=10)


def test_the_spike_guard_heals_a_corrupted_data_window(tmp_path, shakespeare_shards, capsys):
    from .helpers import corrupt_data_window

    clean = train(tiny_run_config(tmp_path / "clean", shakespeare_shards, **GUARD))
    corrupted = corrupt_data_window(shakespeare_shards, tmp_path / "corrupted_data", 31, 36, tokens_per_step=128)
    healed = train(tiny_run_config(tmp_path / "healed", corrupted, **GUARD))
    records = [json.loads(line) for line in RunLayout(tmp_path / "healed").interventions_file.read_text().splitlines()]
    actions = [(r["action"], r["step"]) for r in records]
    # The skipped steps were abandoned by the rollback: their records went with the abandoned branch, and the
    # rollback (the run's own act, from step 30 on) names them.
    assert actions == [("rollback", 33)] and records[0]["skipped_steps"] == [31, 32, 33]
    assert records[0]["to_step"] == 30 and records[0]["data_resumes_at_step"] == 41
    branch = next((RunLayout(tmp_path / "healed").checkpoints_dir / "abandoned").iterdir())
    assert [json.loads(line)["step"] for line in (branch / "interventions.jsonl").read_text().splitlines()] == \
        [31, 32, 33]
    val = lambda t: t.log.last("val/loss")  # noqa: E731
    assert abs(val(healed) - val(clean)) < 0.05, (val(healed), val(clean))
    logged = read_scalars(tmp_path / "healed")
    assert sorted(logged["train/loss"]) == list(range(1, 61))  # one history: the abandoned steps were purged
    assert logged["spike_guard/action"][30] == 2.0  # the rollback, at the step it went back to
    abandoned = RunLayout(tmp_path / "healed").checkpoints_dir / "abandoned"
    assert not abandoned.exists() or not any(p.name == "step_0000040" for p in abandoned.rglob("step_*"))
    assert "Spike guard: rolled back to" in capsys.readouterr().out
    from training.analysis.report import build_report
    from training.analysis.runs import load_run

    finding = next(f for f in build_report(load_run(tmp_path / "healed"))["findings"] if f["id"] == "spike_guard")
    assert finding["severity"] == "warning" and "at step 33 rolled back to step 30" in finding["evidence"]


def test_the_spike_guard_stops_on_a_persistent_cause(tmp_path, shakespeare_shards):
    """A learning rate raised by a callback from step 31 on, again after every rollback. (At this scale 30x, the
    issue's example, is not a cause at all: the 2-layer model at 0.09 just trains faster, measured; 1000x is.)"""
    from training.guards.spike_guard import SpikeGuardStopped

    from .helpers import RaiseLearningRate

    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, **{**GUARD, "spike_guard_rollbacks": 2}),
                      callbacks=[RaiseLearningRate(31, 1000.0)])
    with pytest.raises(SpikeGuardStopped, match=r"2 rollback\(s\) \(limit --spike_guard_rollbacks 2\) did not help.*"
                                                r"rolled back to step 30.*last good checkpoint is .*step_0000030"):
        trainer.train()
    trainer.close()
    records = [json.loads(line) for line in RunLayout(tmp_path).interventions_file.read_text().splitlines()]
    assert [r["action"] for r in records].count("rollback") == 2 and records[-1]["action"] == "stop"
    assert trainer.state.global_step < 45  # it stopped; it did not loop


# ------------------------------------------------------------------------------------------ learning rates that hold
def test_qk_norm_and_z_loss_train_and_log_their_terms(tmp_path, shakespeare_shards):
    plain = train(tiny_run_config(tmp_path / "plain", shakespeare_shards, max_steps=3))
    train(tiny_run_config(tmp_path / "z", shakespeare_shards, max_steps=3, z_loss=1e-4))
    z_logged = read_scalars(tmp_path / "z")
    assert set(z_logged["train/z_loss"]) == {1, 2, 3} and all(v > 0 for v in z_logged["train/z_loss"].values())
    # train/loss stays the cross-entropy: at step 1 (same weights, same batch) it equals the plain run's.
    assert z_logged["train/loss"][1] == pytest.approx(read_scalars(tmp_path / "plain")["train/loss"][1], abs=1e-6)
    held = train(tiny_run_config(tmp_path / "held", shakespeare_shards, max_steps=3, qk_norm=True, z_loss=1e-4))
    logged = read_scalars(tmp_path / "held")
    assert logged["train/loss"][3] < logged["train/loss"][1] and "train/z_loss" in logged
    assert held.raw_model.config.qk_norm and not plain.raw_model.config.qk_norm
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "held" / "final").config.qk_norm


def test_the_spike_guard_catches_a_divergence_from_the_first_steps(tmp_path, shakespeare_shards, capsys):
    """A learning rate far too high: the loss leaves the start at once. No band is needed to see that; with no
    checkpoint to go back to, the guard stops and says why (exit 1 in the script), every step recorded."""
    from training.guards.spike_guard import SpikeGuardStopped

    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=20, save_every=10, max_lr=5.0,
                                      min_lr=0.5, warmup_steps=2, spike_guard=True))
    with pytest.raises(SpikeGuardStopped, match=r"no checkpoint before step \d+ to roll back to.*loss far above the "
                                                r"run's first loss"):
        trainer.train()
    trainer.close()
    records = [json.loads(line) for line in RunLayout(tmp_path).interventions_file.read_text().splitlines()]
    assert records[0]["action"] == "skip" and records[0]["step"] <= 4 and records[-1]["action"] == "stop"
    assert "not armed until then" in capsys.readouterr().out
    assert read_scalars(tmp_path)["spike_guard/armed"] == {1: 0.0}


def test_a_run_that_ends_before_the_guard_arms_says_so(tmp_path, shakespeare_shards, capsys):
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=3, spike_guard=True))
    out = capsys.readouterr().out
    assert "not armed until then" in out and "before the spike guard armed" in out
    assert read_scalars(tmp_path)["spike_guard/armed"] == {1: 0.0}


def test_the_first_spike_recorded_is_the_first_step_outside_the_band(tmp_path, shakespeare_shards, capsys):
    """With the default window (100), the guard arms after 8 accepted steps: a corrupted stretch soon after is
    recorded from its own first step (it was recorded from the step the band became ready, 25 accepted steps)."""
    from .helpers import corrupt_data_window

    corrupted = corrupt_data_window(shakespeare_shards, tmp_path / "corrupted_data", 20, 22, tokens_per_step=128)
    train(tiny_run_config(tmp_path / "run", corrupted, max_steps=28, save_every=10, warmup_steps=5,
                          spike_guard=True, spike_guard_skip_steps=4))
    records = [json.loads(line) for line in RunLayout(tmp_path / "run").interventions_file.read_text().splitlines()]
    assert records[0]["action"] == "rollback" and records[0]["first_spike"] == 20, records
    assert records[0]["skipped_steps"][0] == 20
    assert "armed at step 12" in capsys.readouterr().out
