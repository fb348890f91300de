import pytest
import torch
from transformers import EarlyStoppingCallback, TrainerCallback

from training.diagnostics.callbacks import (
    GradNormCallback,
    LayerRatioCallback,
    SpikeDetectorCallback,
    block_of,
    clean_name,
)
from training.trainer.callbacks import build_callback, parse_callback_spec
from training.trainer.trainer import Trainer

from .helpers import Recorder, StopAtStep, read_scalars, tiny_run_config, train


def test_events_fire_in_order_with_the_right_step(tmp_path, shakespeare_shards):
    recorder = Recorder()
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, micro_batch_size=2, total_batch_tokens=256,
                             eval_every=2, save_every=3, log_every=2)
    trainer = train(config, [recorder])
    assert trainer.grad_accum == 4  # accumulation does not add optimizer-step events
    step_events = ["on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end"]
    expected = [("on_init_end", 0), ("on_train_begin", 0)]
    for step in range(1, 5):
        expected += [(event, step - 1) for event in step_events[:3]] + [("on_step_end", step)]
        if step in (1, 2, 4):
            expected.append(("on_log", step))  # train scalars: step 1, every 2nd, last
        if step in (2, 4):
            expected += [("on_evaluate", step), ("on_log", step)]
        if step in (3, 4):
            expected.append(("on_save", step))
    expected.append(("on_train_end", 4))
    events = [e for e in recorder.events if e[0] != "on_log" or e in expected]
    # diagnostics callbacks also log (on_log) on their cadence; compare the rest exactly
    assert [e for e in recorder.events if e[0] != "on_log"] == [e for e in expected if e[0] != "on_log"]
    assert all(e in events for e in expected)


def test_hf_trainer_callback_stops_the_run(tmp_path, shakespeare_shards):
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=10), [StopAtStep(3)])
    assert trainer.state.global_step == 3


def test_hf_early_stopping_callback_works_unchanged(tmp_path, shakespeare_shards):
    # improvement threshold larger than any change: the second evaluation counts as no improvement
    early = EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=100.0)
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, eval_every=2), [early])
    assert trainer.state.global_step == 4
    assert early.early_stopping_patience_counter == 1
    assert trainer.state.best_metric is not None


def test_target_val_loss_stops_and_saves(tmp_path, shakespeare_shards):
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=10, eval_every=2, target_val_loss=20.0),
                   [])
    assert trainer.state.global_step == 2
    assert (tmp_path / "checkpoints" / "step_0000002").is_dir()


class _Capture(TrainerCallback):
    """Parameters and gradients around the first optimizer step, for a direct computation."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.before = {clean_name(n): p.detach().clone() for n, p in model.named_parameters()}
            self.grads = {clean_name(n): p.grad.detach().clone() for n, p in model.named_parameters()}

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.after = {clean_name(n): p.detach().clone() for n, p in model.named_parameters()}


def test_ratios_agree_with_a_direct_computation(tmp_path, shakespeare_shards):
    capture = _Capture()
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, callbacks=["grad_norm", "layer_ratios"],
                             diagnostics_every=5)
    trainer = train(config, [capture])
    scalars = read_scalars(tmp_path)  # per-matrix families live in TensorBoard only, not in state.log_history
    logged = {tag: values[1] for tag, values in scalars.items() if 1 in values}
    matrices = [n for n, p in capture.before.items() if p.dim() >= 2]
    assert sorted(matrices) == sorted(k.split("/", 1)[1] for k in logged if k.startswith("update_ratio/"))
    for name in matrices:
        w, g, new = capture.before[name], capture.grads[name], capture.after[name]
        assert logged[f"grad_ratio/{name}"] == pytest.approx((g.std() / w.std()).item(), rel=1e-5)
        assert logged[f"update_ratio/{name}"] == pytest.approx(((new - w).std() / w.std()).item(), rel=1e-4)
        assert logged[f"grad_norm_param/{name}"] == pytest.approx(g.norm().item(), rel=1e-4)
    block0 = sum(g.pow(2).sum() for n, g in capture.grads.items() if n.startswith("h.0.")).sqrt().item()
    assert logged["grad_norm_block/h.0"] == pytest.approx(block0, rel=1e-4)
    assert "grad_ratio/h.0.ln_1.weight" not in logged  # 1-D parameters have no meaningful std ratio
    assert not any(tag.startswith("update_ratio/") and 2 in values for tag, values in scalars.items())
    assert not any(k.startswith("update_ratio/") for h in trainer.state.log_history for k in h)  # bounded history


def test_update_ratio_keeps_no_weight_copy_between_measurements(tmp_path, shakespeare_shards):
    ratios = LayerRatioCallback(every=3)
    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=4, callbacks=[]), [ratios])
    assert ratios._before is None


def test_grad_norm_clipped_fraction(tmp_path, shakespeare_shards):
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, grad_clip=1e-6,
                                   callbacks=["grad_norm"]), [])
    fractions = [h["train/clipped_fraction"] for h in trainer.state.log_history if "train/clipped_fraction" in h]
    assert fractions[-1] == 1.0
    grad_norm = next(cb for cb in trainer.callbacks.callbacks if isinstance(cb, GradNormCallback))
    assert grad_norm.state_dict() == {"steps": 6, "clipped": 6}


def test_spike_detector_flags_and_skips_an_outlier(tmp_path, shakespeare_shards):
    class Spike(TrainerCallback):  # multiply the loss gradient at one step through a hook on the head
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step + 1 == 12:
                self.handle = model.lm_head.register_full_backward_hook(lambda m, gi, go: (gi[0] * 1e4,))
            elif getattr(self, "handle", None) is not None:
                self.handle.remove()
                self.handle = None

    detector = SpikeDetectorCallback(window=50, z_threshold=5.0, skip_updates=True, min_history=5)
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=14, max_lr=1e-4, min_lr=1e-5,
                                   grad_clip=0.0), [Spike(),
                                                                                                              detector])
    assert [s["step"] for s in detector.spikes] == [12]
    assert detector.spikes[0]["grad_norm_z"] > 5 and trainer.skipped_updates == 1


def test_callback_state_survives_a_resume(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=6, save_every=3,
                             callbacks=["grad_norm", "spike_detector:min_history=2,window=4"])
    first = train(config, [])
    detector = next(cb for cb in first.callbacks.callbacks if isinstance(cb, SpikeDetectorCallback))
    saved_at_6 = detector.state_dict()
    config.checkpoint.resume_from_checkpoint = str(tmp_path / "checkpoints" / "step_0000003")
    resumed = Trainer(config)
    resumed.resume(config.checkpoint.resume_from_checkpoint)
    restored = next(cb for cb in resumed.callbacks.callbacks if isinstance(cb, SpikeDetectorCallback))
    first_losses = [h["train/loss"] for h in first.state.log_history if "train/loss" in h]
    assert list(restored.losses.values) == first_losses[:3]  # the band as it was at step 3
    assert saved_at_6["loss_band"]["values"] == first_losses  # and it moved on after the checkpoint...
    assert len(saved_at_6["loss_band"]["residuals"]) == 3  # (residuals from the fourth accepted value on)
    grad_norm = next(cb for cb in resumed.callbacks.callbacks if isinstance(cb, GradNormCallback))
    assert grad_norm.steps == 3 and resumed.state.global_step == 3
    resumed.close()


def test_callbacks_by_name_with_arguments():
    assert parse_callback_spec("spike_detector:z_threshold=4,skip_updates=true") == (
        "spike_detector", {"z_threshold": 4, "skip_updates": True})
    detector = build_callback("spike_detector:z_threshold=4.5,window=10")
    assert isinstance(detector, SpikeDetectorCallback) and detector.z_threshold == 4.5 and detector.window == 10
    assert isinstance(build_callback({"name": "early_stopping", "early_stopping_patience": 3}),
                      EarlyStoppingCallback)
    assert isinstance(build_callback("tests.helpers.StopAtStep:step=2"), StopAtStep)
    with pytest.raises(ValueError, match="Unknown callback 'nope'"):
        build_callback("nope")
    with pytest.raises(ValueError, match="does not accept"):
        build_callback("grad_norm:bogus=1")


def test_clean_names():
    assert clean_name("module._orig_mod.transformer.h.0.mlp.c_fc.weight") == "h.0.mlp.c_fc.weight"
    assert clean_name("_orig_mod.module.transformer.wte.weight") == "wte.weight"
    assert block_of("h.11.attn.c_proj.weight") == "h.11" and block_of("wte.weight") == "wte"


@pytest.mark.slow
def test_diagnostic_names_are_clean_under_torch_compile(tmp_path, shakespeare_shards, hellaswag_path):
    config = tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, compile=True,
                             callbacks=["grad_norm", "layer_ratios"], diagnostics_every=1, eval_every=2,
                             sample_every=2, sample_tokens=3, num_samples=1, hellaswag_every=2,
                             hellaswag_path=str(hellaswag_path), hellaswag_limit=4)
    trainer = train(config, [])
    keys = set(read_scalars(tmp_path))
    assert "update_ratio/h.0.attn.c_attn.weight" in keys and "val/loss" in keys and "hellaswag/acc_norm" in keys
    assert not any("_orig_mod" in k or "module." in k for k in keys)
    assert torch.isfinite(torch.tensor([h["train/loss"] for h in trainer.state.log_history if "train/loss" in h])).all()


def test_unknown_events_are_refused():
    from training.trainer.callbacks import EVENTS, RunCallbackHandler

    handler = RunCallbackHandler([], None, None, None, None)
    assert "on_step_end" in EVENTS
    with pytest.raises(ValueError, match="Unknown callback event 'on_stpe_end'"):
        handler.fire("on_stpe_end", None, None, None)


def test_callbacks_see_the_logger_contract_not_the_trainer(tmp_path, shakespeare_shards):
    from training.trainer.callbacks import RunLogger

    class Spy(TrainerCallback):
        def __init__(self):
            self.kwargs = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.kwargs = kwargs
            kwargs["logger"].add_step_metrics({"custom/metric": 7.0})

        def on_save(self, args, state, control, checkpoint_dir=None, **kwargs):
            self.saved = checkpoint_dir

    spy = Spy()
    trainer = train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=2, save_every=2), [spy])
    assert "trainer" not in spy.kwargs
    assert isinstance(spy.kwargs["logger"], RunLogger)
    assert {"model", "optimizer", "lr_scheduler"} <= set(spy.kwargs)
    assert spy.saved == trainer.checkpoints.path_for(2) and spy.saved.is_dir()
    assert read_scalars(tmp_path)["custom/metric"] == {1: 7.0, 2: 7.0}
