"""--parametrization mup: the model's three changes and the optimizer's per-group rates follow the stated conventions,
sp is today's model bit for bit, the setting travels with the weights, is refused on resume and by the GPT-2 export,
and the coordinate check is flat in width under μP and grows under sp (for AdamW and for Muon)."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from modeling import GPTConfig, GPTForCausalLM
from modeling.weight_conversion import to_gpt2
from training.config import ModelArguments
from training.diagnostics.coord_check import (
    CoordCheckSetup,
    coord_check,
    growth,
    layer_names,
)
from training.errors import ConfigError
from training.optim.config import OptimizerArguments
from training.optim.optimizers import (
    apply_hyperparameters,
    build_optimizers,
    build_scheduler,
    schedule_lr,
)
from training.optim.schedules import Schedule

from .helpers import (
    StopAtStep,
    load_final_weights,
    read_scalars,
    tiny_run_config,
    train,
)

SHAPE = {"vocab_size": 96, "n_positions": 16, "n_layer": 2, "n_head": 4, "bos_token_id": 0, "eos_token_id": 1}
HAS_MUON = hasattr(torch.optim, "Muon")


def model_of(**kwargs) -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(GPTConfig(**{**SHAPE, "n_embd": 64, **kwargs})).eval()


def named_groups(model, optimizers) -> list[list[dict]]:
    """Each optimizer's param groups with parameters by name (comparable across two models)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[{k: ([names[id(p)] for p in v] if k == "params" else v) for k, v in g.items()} for g in o.param_groups]
            for o in optimizers]


@pytest.mark.parametrize("optimizer", ["adamw", *(["muon"] if HAS_MUON else [])])
def test_sp_is_todays_model_bit_for_bit(optimizer):
    """parametrization="sp" is the default model: the same init, logits and optimizer groups (no μP keys)."""
    default, sp = model_of(), model_of(parametrization="sp")
    x = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(1))
    assert torch.equal(default(x).logits, sp(x).logits)
    args = OptimizerArguments(optimizer=optimizer, max_lr=1e-3, min_lr=1e-4, weight_decay=0.1)
    groups = named_groups(sp, build_optimizers(sp, args))
    assert groups == named_groups(default, build_optimizers(default, args))
    assert not any("lr_scale" in g or "weight_decay_scale" in g for o in groups for g in o)


def test_mup_at_the_base_width_is_sp():
    """m = 1: the same init, the same function (the attention scale sqrt(d)/d equals d^-1/2 up to rounding)."""
    sp, mup = model_of(), model_of(parametrization="mup", mup_base_width=64)
    assert all(torch.equal(a, b) for a, b in zip(sp.state_dict().values(), mup.state_dict().values()))
    x = torch.randint(0, 96, (2, 16))
    torch.testing.assert_close(mup(x).logits, sp(x).logits, atol=1e-6, rtol=1e-5)


def test_mup_init_attention_scale_and_tied_output_multiplier():
    """m = 4: hidden matrices std / 2, embeddings and the tied head unchanged; attention sqrt(16)/64; the logits are
    the tied matrix times the final hidden state, times 1/4."""
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(**{**SHAPE, "n_embd": 256, "parametrization": "mup", "mup_base_width": 64}))
    blocks = model.transformer.h
    assert blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02 / 2, rel=0.02)
    assert blocks[0].attn.c_proj.weight.std().item() == pytest.approx(0.02 / 2 / math.sqrt(4), rel=0.03)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert blocks[0].attn.scaling == pytest.approx(math.sqrt(64 // 4) / (256 // 4))
    x = torch.randint(0, 96, (1, 8))
    hidden = model.transformer(x).last_hidden_state
    torch.testing.assert_close(model(x).logits, hidden @ model.transformer.wte.weight.T / 4)


def test_adamw_groups_scale_hidden_matrices_only_and_keep_lr_times_wd():
    model = model_of(n_embd=256, parametrization="mup", mup_base_width=64)
    args = OptimizerArguments(optimizer="adamw", max_lr=1e-2, min_lr=1e-3, weight_decay=0.1)
    (adamw,) = build_optimizers(model, args)
    build_scheduler(adamw, Schedule("cosine", 0, 10, 0.1), 1e-2)
    embeddings, no_decay, hidden = named_groups(model, [adamw])[0]
    assert set(embeddings["params"]) == {"transformer.wte.weight", "transformer.wpe.weight"}
    assert all(".h." in f".{n}" and n.endswith("weight") for n in hidden["params"]) and len(hidden["params"]) == 8
    assert hidden["initial_lr"] == pytest.approx(1e-2 / 4) and embeddings["initial_lr"] == no_decay["initial_lr"]
    assert hidden["lr"] * hidden["weight_decay"] == pytest.approx(embeddings["lr"] * 0.1)  # decay per step as at base
    assert schedule_lr(adamw) == embeddings["lr"] == 1e-2
    apply_hyperparameters([adamw], OptimizerArguments(max_lr=1e-2, min_lr=1e-3, weight_decay=0.05))
    assert adamw.param_groups[2]["weight_decay"] == pytest.approx(0.05 * 4)


@pytest.mark.parametrize("optimizer", ["adamw", *(["muon"] if HAS_MUON else [])])
def test_the_optimizer_alone_already_steps_hidden_matrices_at_their_scaled_rate(optimizer):
    """Without a scheduler (a user's own loop, a benchmark that sets group["lr"] itself) the hidden matrices' group
    already holds lr / m (AdamW) or lr / sqrt(m) (Muon): bench/mup_transfer.py once trained them at the full rate."""
    model = model_of(n_embd=256, parametrization="mup", mup_base_width=64)
    args = OptimizerArguments(optimizer=optimizer, max_lr=1e-2, min_lr=1e-3, weight_decay=0.1)
    optimizers = build_optimizers(model, args)
    hidden = optimizers[-1].param_groups[-1]
    assert hidden["lr"] == pytest.approx(1e-2 * (0.25 if optimizer == "adamw" else 0.5))
    assert optimizers[0].param_groups[0]["lr"] == 1e-2 and schedule_lr(optimizers[-1]) == pytest.approx(1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randint(0, 96, (2, 16)), labels=torch.randint(0, 96, (2, 16))).loss.backward()
    for o in optimizers:
        o.step()
    name = "transformer.h.0.attn.c_attn.weight"
    step = (dict(model.named_parameters())[name].detach() - before[name]).abs().max()
    if optimizer == "adamw":  # Adam's first step moves each entry by lr (its sign), plus the decay's lr * wd * w
        assert float(step) == pytest.approx(1e-2 / 4, rel=0.05)


@pytest.mark.skipif(not HAS_MUON, reason="torch.optim.Muon needs torch >= 2.9")
def test_muon_lr_is_divided_by_sqrt_m_with_its_decay_kept():
    model = model_of(n_embd=256, parametrization="mup", mup_base_width=64)
    args = OptimizerArguments(optimizer="muon", max_lr=1e-3, min_lr=1e-4, muon_lr=2e-2, weight_decay=0.1)
    adamw, muon = build_optimizers(model, args)
    assert [len(g["params"]) for g in adamw.param_groups] == [2, len(adamw.param_groups[1]["params"])]
    build_scheduler(muon, Schedule("cosine", 0, 10, 0.1), 2e-2)
    (group,) = muon.param_groups
    assert group["lr"] == pytest.approx(2e-2 / 2) and group["weight_decay"] == pytest.approx(0.1 * 2)
    assert schedule_lr(muon) == pytest.approx(2e-2)


def test_the_setting_is_checked_saved_loaded_and_not_exported_as_gpt2(tmp_path):
    with pytest.raises(ValueError, match="needs mup_base_width"):
        GPTConfig(parametrization="mup")
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=64, n_head=4, parametrization="mup", mup_base_width=30)
    with pytest.raises(ValueError, match="'sp' or 'mup'"):
        GPTConfig(parametrization="ntk")
    for bad, message in (({"parametrization": "mup"}, "needs --mup_base_width"),
                         ({"mup_base_width": 256}, "no effect")):
        with pytest.raises(ConfigError, match=message):
            ModelArguments(**bad)
    model = model_of(n_embd=128, parametrization="mup", mup_base_width=32)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert (loaded.config.parametrization, loaded.config.mup_base_width) == ("mup", 32)
    x = torch.randint(0, 96, (1, 9))
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    with pytest.raises(ValueError, match="parametrization='mup' cannot be exported"):
        to_gpt2(model)


def test_mup_run_trains_resumes_exactly_and_refuses_another_parametrization(tmp_path, shakespeare_shards):
    common = {"parametrization": "mup", "mup_base_width": 16, "max_steps": 6, "save_every": 2, "grad_clip": 5.0}
    train(tiny_run_config(tmp_path / "straight", shakespeare_shards, **common))
    train(tiny_run_config(tmp_path / "resumed", shakespeare_shards, **common), [StopAtStep(2)])
    train(tiny_run_config(tmp_path / "resumed", shakespeare_shards, resume_from_checkpoint="latest", **common))
    a, b = load_final_weights(tmp_path / "straight"), load_final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the scaled groups' rates and decays were restored
    logged = read_scalars(tmp_path / "straight")
    assert logged["train/lr"][2] == pytest.approx(3e-3)  # the schedule's rate, not the hidden group's 3e-3 / 2
    for change, expected in (({"parametrization": "sp", "mup_base_width": None}, "checkpoint 'mup', now 'sp'"),
                             ({"mup_base_width": 8}, "model.mup_base_width: checkpoint 16, now 8")):
        config = tiny_run_config(tmp_path / "resumed", shakespeare_shards,
                                 **{**common, "max_steps": 8, "resume_from_checkpoint": "latest", **change})
        with pytest.raises(ConfigError, match=expected):
            train(config)


# Measured over 5 seed pairs (docs/mup.md): AdamW logits growth 64 -> 512 is 0.60-0.90 under mup, 4.7-9.9 under sp;
# block outputs 0.50-1.27 under mup, >= 21 under sp (15-66 under mup without the hidden lr / m). Muon, 6 single
# seeds: blocks 0.84-1.14 under mup (1.55-2.16 without its 1/sqrt(m)), >= 4.6 under sp. The thresholds keep about
# 1.5x of margin on the measured ranges.
COORD_WIDTHS = [64, 128, 256, 512]
COORD_SETUP = {"base_width": 64, "seq_len": 16, "batch_size": 2, "steps": 5, "lr": 1e-2}


def _growths(parametrization: str, optimizer: str, seeds: list[int]) -> dict[str, float]:
    with _threads(1):
        results = coord_check(COORD_WIDTHS, parametrization, CoordCheckSetup(optimizer=optimizer, **COORD_SETUP),
                              seeds=seeds)
    return {name: growth(results, name) for name in layer_names(2)}


class _threads:
    """One thread: the numbers (and the time budget) do not depend on the machine's core count."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def test_coord_check_adamw_is_flat_under_mup_and_grows_under_sp():
    mup, sp = _growths("mup", "adamw", [0, 1]), _growths("sp", "adamw", [0, 1])
    blocks = [name for name in mup if name.startswith("h.")]
    assert 0.4 < mup["logits"] < 2.0, mup
    assert sp["logits"] > 3.0, sp
    assert all(1 / 3 < mup[name] < 3.0 for name in blocks), mup
    assert all(sp[name] > 10.0 for name in blocks), sp
    assert 0.9 < mup["embeddings"] < 1.1  # embeddings are width-independent in both


@pytest.mark.skipif(not HAS_MUON, reason="torch.optim.Muon needs torch >= 2.9")
def test_coord_check_muon_is_flat_under_mup_and_grows_under_sp():
    mup, sp = _growths("mup", "muon", [0]), _growths("sp", "muon", [0])  # Muon is less noisy: one seed
    blocks = [name for name in mup if name.startswith("h.")]
    assert all(0.7 < mup[name] < 1.4 for name in blocks), mup
    assert all(sp[name] > 3.0 for name in blocks), sp
    assert 0.5 < mup["logits"] < 2.0, mup
