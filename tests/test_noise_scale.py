"""The gradient noise scale (McCandlish et al. 2018): the estimator recovers a known B_simple, the loop measures it
from the batch sizes it has, and says so when it cannot."""

import numpy as np
import pytest
import torch

from training.diagnostics.noise_scale import NoiseScaleEstimate, unbiased_estimates

from .helpers import read_scalars, tiny_run_config, train


def test_the_estimator_recovers_a_known_noise_scale():
    """Per-example gradients g_i = G + e_i with e_i ~ N(0, Sigma): B_simple = tr(Sigma) / |G|^2 exactly."""
    rng = np.random.default_rng(0)
    dim, small, big = 200, 16, 256
    true_g = rng.normal(0, 1, dim) * 0.1
    sigma = rng.uniform(0.5, 2.0, dim)  # a diagonal covariance
    truth = sigma.sum() / (true_g @ true_g)
    estimate = NoiseScaleEstimate(smoothing=0.02)
    for _ in range(1500):
        examples = true_g + rng.normal(0, 1, (big, dim)) * np.sqrt(sigma)
        g_small, g_big = examples[:small].mean(0), examples.mean(0)  # the small batch is part of the big one
        values = estimate.update(g_small @ g_small, g_big @ g_big, small, big)
    assert values["b_simple"] == pytest.approx(truth, rel=0.1)
    # Where the noise dominates (|G| small), single-step |G|^2 estimates are often negative, so an average of
    # per-step ratios would be meaningless; the smoothed numerator stays positive.
    weak, negative, estimate = true_g * 0.05, 0, NoiseScaleEstimate(smoothing=0.02)
    for _ in range(500):
        examples = weak + rng.normal(0, 1, (big, dim)) * np.sqrt(sigma)
        g_small, g_big = examples[:small].mean(0), examples.mean(0)
        negative += unbiased_estimates(g_small @ g_small, g_big @ g_big, small, big)[0] < 0
        values = estimate.update(g_small @ g_small, g_big @ g_big, small, big)
    assert negative > 50 and values["g_sq"] > 0


def test_every_one_process_layout_measures_it_and_one_sequence_alone_says_it_cannot(tmp_path, shakespeare_shards,
                                                                                    capsys):
    train(tiny_run_config(tmp_path / "accumulated", shakespeare_shards, max_steps=4, total_batch_tokens=256,
                          diagnostics_every=2))
    logged = read_scalars(tmp_path / "accumulated")
    assert sorted(logged["noise/b_simple_tokens"]) == [1, 2, 4]  # the diagnostics cadence (and step 1)
    assert logged["noise/tokens_per_step"][4] == 256.0 and logged["noise/trace_sigma"][4] > 0
    # One process, no accumulation: the micro-batch is halved on measured steps.
    train(tiny_run_config(tmp_path / "single", shakespeare_shards, max_steps=4, total_batch_tokens=128,
                          diagnostics_every=2))
    single = read_scalars(tmp_path / "single")
    assert sorted(single["noise/b_simple_tokens"]) == [1, 2, 4] and single["noise/trace_sigma"][4] > 0
    capsys.readouterr()
    train(tiny_run_config(tmp_path / "one_sequence", shakespeare_shards, max_steps=2, micro_batch_size=1,
                          total_batch_tokens=32))
    assert "noise scale is not measured: one process without gradient accumulation and one sequence" in \
        capsys.readouterr().out
    assert "noise/b_simple_tokens" not in read_scalars(tmp_path / "one_sequence")


def test_a_halved_micro_batch_gives_the_same_step_and_its_first_half_is_the_small_batch(tmp_path, shakespeare_shards):
    """On a measured step of a one-process run without accumulation the micro-batch runs as two halves: the same loss
    and gradient as one pass (up to rounding), and |G_small|^2 equal to a direct backward of the first half."""
    from training.data.loaders import DistributedTokenLoader
    from training.trainer.trainer import Trainer

    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=1, total_batch_tokens=128,
                                      diagnostics_every=1, grad_clip=0.0))
    model = trainer.raw_model
    x, y = DistributedTokenLoader(shakespeare_shards, 4, 32).next_batch()
    model.zero_grad()
    whole = model(x, shift_labels=y, use_cache=False).loss
    whole.backward()
    full = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(x[:2], shift_labels=y[:2], use_cache=False).loss.backward()
    direct = sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None).item()
    model.zero_grad()
    trainer.noise.start_step(True)
    loss = trainer._forward_backward().loss
    assert trainer.noise.small_sq == pytest.approx(direct, rel=1e-4)
    assert loss == pytest.approx(whole.item(), rel=1e-6)
    for name, parameter in model.named_parameters():
        if name in full:
            torch.testing.assert_close(parameter.grad, full[name], rtol=1e-5, atol=1e-7)
    assert trainer.noise.small_tokens == 64 and trainer.noise.step_tokens == 128
    trainer.close()


def test_under_a_loss_scale_both_gradients_are_measured_in_the_same_units(tmp_path, shakespeare_shards):
    """fp16's GradScaler multiplies the loss (and every gradient read during the backward) by its scale; the big
    gradient's norm is taken after unscaling. The noise scale must not change with the scale (a GradScaler on CPU)."""
    from training.trainer.trainer import Trainer

    measured = {}
    for name, scale in (("plain", None), ("scaled", 2.0 ** 12)):
        trainer = Trainer(tiny_run_config(tmp_path / name, shakespeare_shards, max_steps=1, total_batch_tokens=256,
                                          diagnostics_every=1, grad_clip=0.0))
        if scale is not None:  # what Accelerate does under fp16 on a GPU: scale the loss, unscale before clipping
            scaler = torch.amp.GradScaler("cpu", init_scale=scale)
            trainer.accelerator.scaler = scaler
            trainer.accelerator.unscale_gradients = lambda optimizer=None, s=scaler, t=trainer: [
                s.unscale_(o.optimizer) for o in t.optimizers]
        trainer.noise.start_step(True)
        trainer._forward_backward()
        measured[name] = trainer.noise.finish_step(trainer._clip() ** 2)
        trainer.close()
    for key in ("g_sq", "trace", "b_simple"):
        assert measured["scaled"][key] == pytest.approx(measured["plain"][key], rel=1e-3), key


def test_the_first_micro_batch_is_scaled_back_before_its_norm(tmp_path, shakespeare_shards):
    """|G_small|^2 is the first micro-batch's own gradient: equal to a direct backward of that batch alone."""
    from training.data.loaders import DistributedTokenLoader
    from training.trainer.trainer import Trainer

    trainer = Trainer(tiny_run_config(tmp_path, shakespeare_shards, max_steps=1, total_batch_tokens=256,
                                      diagnostics_every=1, grad_clip=0.0))
    loader = DistributedTokenLoader(shakespeare_shards, 4, 32)
    x, y = loader.next_batch()
    probe_model = trainer.raw_model
    probe_model.zero_grad()
    probe_model(x, shift_labels=y, use_cache=False).loss.backward()
    direct = sum(p.grad.pow(2).sum() for p in probe_model.parameters() if p.grad is not None).item()
    probe_model.zero_grad()
    trainer.noise.start_step(True)
    trainer._forward_backward()
    assert trainer.noise.small_sq == pytest.approx(direct, rel=1e-4)
    trainer.close()
