"""AdamW's parameter groups, the warmup + cosine schedule, and the FLOPs estimate."""

import math

import pytest
import torch

from modeling import GPTConfig, GPTForCausalLM
from training.optim.flops import device_peak_flops, model_flops_per_token
from training.optim.optimizers import build_optimizer, build_scheduler, param_groups
from training.optim.schedules import Schedule, warmup_cosine_factor


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPTForCausalLM(GPTConfig(vocab_size=96, n_positions=16, n_embd=32, n_layer=2, n_head=4))


def test_decay_goes_to_matrices_only_and_the_tied_matrix_appears_once(model):
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # every parameter once, wte/lm_head once
    assert any(p is model.transformer.wte.weight for p in decay["params"])
    assert model.lm_head.weight is model.transformer.wte.weight


def test_frozen_parameters_are_not_optimized(model):
    model.transformer.wpe.weight.requires_grad_(False)
    decay, _ = param_groups(model, 0.1)
    assert not any(p is model.transformer.wpe.weight for p in decay["params"])


def test_optimizer_settings_and_no_fused_kernel_on_cpu(model):
    optimizer = build_optimizer(model, lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8, device_type="cpu")
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8
    assert not optimizer.defaults.get("fused")
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]


def test_decoupled_weight_decay_moves_a_matrix_by_lr_times_wd(model):
    """With a zero gradient, one AdamW step changes a decayed matrix by exactly lr * wd * w."""
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1)
    weight = model.transformer.h[0].mlp.c_fc.weight
    before = weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(before - weight.detach(), 1e-2 * 0.1 * before)


def test_lr_schedule_matches_the_seed_formula():
    max_lr, min_lr, warmup, steps = 1.8e-3, 1.8e-4, 620, 1700

    def seed_lr(it):  # the seed run's (build-nanogpt's) get_lr
        if it < warmup:
            return max_lr * (it + 1) / warmup
        if it > steps:
            return min_lr
        ratio = (it - warmup) / (steps - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    scheduler = build_scheduler(optimizer, Schedule("cosine", warmup, steps, min_lr / max_lr), max_lr)
    seen = {}
    for it in range(steps + 1):
        seen[it] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    midpoint = warmup + (steps - warmup) // 2
    for it in (0, warmup - 1, warmup, midpoint, steps):
        assert seen[it] == pytest.approx(seed_lr(it), rel=1e-9), it
    assert seen[0] == pytest.approx(max_lr / warmup)
    assert seen[warmup] == pytest.approx(max_lr)
    assert seen[midpoint] == pytest.approx((max_lr + min_lr) / 2, rel=1e-6)
    assert seen[steps] == pytest.approx(min_lr)
    assert warmup_cosine_factor(5000, warmup, steps, 0.1) == pytest.approx(0.1)


def test_schedule_without_warmup_starts_at_the_peak():
    assert warmup_cosine_factor(0, 0, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_factor(100, 0, 100, 0.1) == pytest.approx(0.1)


def test_flops_per_token_is_6n_plus_attention(model):
    config = model.config
    n = sum(p.numel() for p in model.parameters()) - config.n_positions * config.n_embd
    assert model_flops_per_token(model, 16) == 6 * n + 12 * config.n_layer * config.n_embd * 16
    assert device_peak_flops(torch.device("cpu")) is None


def test_linear_schedule_matches_transformers_linear_warmup_with_a_floor():
    """``linear`` is transformers' get_linear_schedule_with_warmup lifted to a floor: warmup to the peak, then a
    straight line to min_lr at max_steps; a registry entry is all it takes (the option's choices and help read it)."""
    from transformers import get_linear_schedule_with_warmup

    from training.cli import run_config_from_values
    from training.optim.schedules import SCHEDULES

    warmup, steps, floor = 10, 100, 0.1
    schedule = Schedule("linear", warmup, steps, floor)
    reference = get_linear_schedule_with_warmup(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                                warmup, steps).lr_lambdas[0]
    for step in range(steps + 5):  # the warmup is the project's (build-nanogpt's (step + 1) / warmup), not HF's
        expected = (step + 1) / warmup if step < warmup else floor + (1 - floor) * reference(step)
        assert schedule.factor(step) == pytest.approx(expected, abs=1e-12), step
    assert schedule.factors(steps)[warmup:].tolist() == pytest.approx([schedule.factor(s) for s in range(warmup, steps)])
    assert "linear" in SCHEDULES and run_config_from_values({"lr_schedule": "linear"}).args.lr_schedule == "linear"
