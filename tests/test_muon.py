"""--optimizer muon: torch.optim.Muon on the hidden matrices, AdamW on the rest; trains, resumes exactly, and is
diagnosed without false alarms."""

import pytest
import torch

from modeling import GPTConfig, GPTForCausalLM
from training.analysis.report import build_report
from training.analysis.runs import load_run
from training.optim.config import OptimizerArguments
from training.optim.optimizers import build_optimizers, hidden_matrices

from .helpers import StopAtStep, load_final_weights, read_scalars, tiny_run_config, train

pytestmark = pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9")


def test_hidden_matrices_go_to_muon_and_everything_else_to_adamw():
    model = GPTForCausalLM(GPTConfig(vocab_size=96, n_positions=16, n_embd=32, n_layer=2, n_head=4))
    args = OptimizerArguments(optimizer="muon", max_lr=1e-3, min_lr=1e-4, muon_lr=2e-2, weight_decay=0.1)
    adamw, muon = build_optimizers(model, args)
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, torch.optim.Muon)
    on_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    on_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert on_muon == {id(p) for p in hidden_matrices(model)} and len(on_muon) == 2 * 4  # c_attn, c_proj, c_fc, c_proj
    assert not on_muon & on_adamw and on_muon | on_adamw == {id(p) for p in model.parameters()}
    assert id(model.transformer.wte.weight) in on_adamw  # the embedding and the tied head stay on AdamW
    assert muon.param_groups[0]["lr"] == 2e-2 and adamw.param_groups[0]["lr"] == 1e-3


def test_muon_trains_logs_both_learning_rates_and_resumes_exactly(tmp_path, shakespeare_shards):
    common = dict(optimizer="muon", muon_lr=4e-3, max_lr=2e-4, min_lr=2e-5, max_steps=8, warmup_steps=2,
                  save_every=2, grad_clip=5.0, callbacks=["grad_norm", "layer_ratios"], diagnostics_every=2)
    train(tiny_run_config(tmp_path / "straight", shakespeare_shards, **common))
    train(tiny_run_config(tmp_path / "resumed", shakespeare_shards, **common), [StopAtStep(4)])
    train(tiny_run_config(tmp_path / "resumed", shakespeare_shards, resume_from_checkpoint="latest", **common))
    a, b = load_final_weights(tmp_path / "straight"), load_final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)  # momentum buffers and both schedules were restored
    logged = read_scalars(tmp_path / "straight")
    assert logged["train/lr_muon"][3] == pytest.approx(20 * logged["train/lr"][3])  # each group its own peak
    assert logged["train/loss"][8] < logged["train/loss"][1]
    # Muon decays with the raw learning rate: the decay share of its matrices is lr_muon * wd, exactly.
    decay = logged["update_ratio_decay/h.0.mlp.c_fc.weight"]
    assert decay[2] == pytest.approx(logged["train/lr_muon"][2] * 0.1, rel=1e-5)


def test_a_healthy_muon_run_gets_no_false_alarm(tmp_path, shakespeare_shards):
    config = tiny_run_config(tmp_path, shakespeare_shards, optimizer="muon", max_lr=2e-4, min_lr=2e-5,
                             max_steps=60, warmup_steps=10, grad_clip=5.0, eval_every=10,
                             callbacks=["grad_norm", "layer_ratios"], diagnostics_every=5)
    train(config)
    report = build_report(load_run(tmp_path))
    assert {f["id"] for f in report["findings"] if f["severity"] in ("warning", "problem")} == set()
    assert "healthy" in {f["id"] for f in report["findings"]}
