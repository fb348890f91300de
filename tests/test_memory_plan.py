"""The memory planner: its activation terms are what autograd saves, its verdicts on the presets, the script's JSON,
and the refusal a GPU run gets when it will not fit. (Its peaks against measured ones: bench/memory_plan.py.)"""

import json

import pytest
import torch

from training.loop.memory_plan import GIB, Shape, block_activation_bytes, card_memory, estimate, plan_run


def traced_block_bytes(n_embd, n_head, batch, seq_len, autocast: bool) -> int:
    """What one real block saves for its backward, counted with autograd's saved-tensor hooks (each storage once,
    the block's own parameters left out: they exist anyway)."""
    from modeling import GPTConfig
    from modeling.modeling_gpt import GPTBlock

    config = GPTConfig(n_embd=n_embd, n_head=n_head, n_layer=4, n_positions=seq_len, vocab_size=64)
    config._attn_implementation = "sdpa"
    block = GPTBlock(config, 0)
    params = {p.untyped_storage()._cdata for p in block.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    x = torch.randn(batch, seq_len, n_embd, requires_grad=True)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        block(x)
    return sum(saved.values())


@pytest.mark.parametrize("n_embd, n_head, batch, seq_len", [(64, 4, 2, 128), (96, 3, 3, 64)])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_the_block_term_is_what_autograd_saves(n_embd, n_head, batch, seq_len, autocast):
    shape = Shape(n_layer=1, n_head=n_head, n_embd=n_embd, vocab_size=64, seq_len=seq_len, micro_batch_size=batch,
                  grad_accum=1, num_processes=1, mixed_precision="bf16" if autocast else "no", sharded=False,
                  checkpointing=False, optimizer="adamw")
    traced = traced_block_bytes(n_embd, n_head, batch, seq_len, autocast)
    assert block_activation_bytes(shape) == pytest.approx(traced, rel=0.02)


def _preset_shape(path, processes, sharded, **changes) -> Shape:
    from training.cli import parse_run_config

    config = parse_run_config(["--config", path])
    train, model = config.train, config.model
    values = dict(n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, vocab_size=model.vocab_size,
                  seq_len=train.seq_len, micro_batch_size=train.micro_batch_size,
                  grad_accum=train.grad_accum_steps(processes), num_processes=processes, mixed_precision="bf16",
                  sharded=sharded, checkpointing=model.gradient_checkpointing, optimizer=train.optimizer)
    values.update(changes)
    return Shape(**values)


@pytest.mark.parametrize("preset, sharded", [("configs/gpt2-350m.yaml", False), ("configs/gpt2-774m.yaml", False),
                                             ("configs/gpt2-1558m.yaml", True)])
def test_every_preset_fits_the_card_and_layout_it_is_meant_for(preset, sharded):
    plan = plan_run(_preset_shape(preset, 8, sharded), card_memory("H100 80GB"), "H100 80GB")
    assert plan.fits and plan.peak_bytes < 60 * GIB


def test_gpt2_xl_on_ddp_and_40_gb_cards_is_refused_with_the_way_out():
    """transformers#7152: gpt2-xl out of memory at batch 1 on 32 GB cards. Without checkpointing, with DDP, the
    planner says it will not fit an A100 40GB at the preset's micro-batch, and names one that does."""
    plan = plan_run(_preset_shape("configs/gpt2-1558m.yaml", 8, False, checkpointing=False),
                    card_memory("A100 40GB"), "A100 40GB", total_batch_tokens=1_048_576)
    assert not plan.fits and plan.terms["DDP gradient buckets"] == 4 * plan_parameters(plan)
    assert plan.largest_micro_batch is None or plan.largest_micro_batch < 16


def plan_parameters(plan) -> int:
    return Shape(**plan.shape).parameters


def test_the_script_plans_the_same_run_as_pretrain_would(capsys):
    from .test_errors import script

    code = script("plan").main(["--config", "configs/cpu-tiny.yaml", "--n_layer", "6", "--micro_batch_size", "4",
                                "--json"])
    payload = json.loads(capsys.readouterr().out)
    shape = Shape(n_layer=6, n_head=4, n_embd=128, vocab_size=50304, seq_len=64, micro_batch_size=4, grad_accum=2,
                  num_processes=1, mixed_precision="no", sharded=False, checkpointing=False, optimizer="adamw",
                  device="cpu")
    assert code == 0 and payload["peak_bytes"] == estimate(shape).peak_bytes
    assert payload["shape"]["n_layer"] == 6 and payload["shape"]["grad_accum"] == 2


def test_a_gpu_run_that_will_not_fit_is_refused_before_the_first_step(tmp_path, shakespeare_shards):
    from modeling import GPTConfig
    from training.loop.builders import memory_verdict

    from .helpers import tiny_run_config

    config = tiny_run_config(tmp_path, shakespeare_shards, micro_batch_size=64, total_batch_tokens=4096, seq_len=64)
    arch = GPTConfig(n_layer=2, n_head=4, n_embd=32, n_positions=64)
    problem = memory_verdict(config, arch, 1, 1, "bf16", False, False, 2 * GIB, "a 2 GiB card")
    assert problem.startswith("This run will not fit on a 2 GiB card: the planned peak is ")
    assert "--micro_batch_size " in problem and "keeps the total batch" in problem
    assert memory_verdict(config, arch, 1, 1, "bf16", False, False, 80 * GIB, "H100") is None
