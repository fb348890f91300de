"""The memory planner: its activation terms are what autograd saves (sdpa and eager attention, dropout, fp32 and
16-bit autocast), its verdicts on the presets, the script's JSON and its input checks, and the refusal a GPU run gets
when it will not fit. (Its peaks against measured ones: bench/memory_plan.py.)"""

import json

import pytest
import torch

from training.planning.memory_plan import (
    GIB,
    Shape,
    attention_matrix_bytes,
    block_activation_bytes,
    card_memory,
    estimate,
    plan_run,
)

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def traced_block_bytes(n_embd, n_head, batch, seq_len, autocast, attn="sdpa", dropout=0.0, qk_norm=False) -> int:
    """What one real block saves for its backward, counted with autograd's saved-tensor hooks (each storage once,
    the block's own parameters left out: they exist anyway). ``autocast``: False/None, True (bf16) or a dtype."""
    from modeling import GPTConfig
    from modeling.modeling_gpt import GPTBlock

    config = GPTConfig(n_embd=n_embd, n_head=n_head, n_layer=4, n_positions=seq_len, vocab_size=50304,
                       dropout=dropout, qk_norm=qk_norm)
    config._attn_implementation = attn
    block = GPTBlock(config, 0).train()
    params = {p.untyped_storage()._cdata for p in block.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in params:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    x = torch.randn(batch, seq_len, n_embd, requires_grad=True)
    dtype = torch.bfloat16 if autocast is True else autocast
    context = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        block(x)
    return sum(saved.values())


def _cpu_shape(n_embd, n_head, batch, seq_len, precision, **changes) -> Shape:
    values = dict(n_layer=1, n_head=n_head, n_embd=n_embd, vocab_size=50304, seq_len=seq_len, micro_batch_size=batch,
                  grad_accum=1, num_processes=1, mixed_precision="no" if precision == "fp32" else precision,
                  sharded=False, checkpointing=False, optimizer="adamw", device="cpu")
    return Shape(**{**values, **changes})


@pytest.mark.parametrize("n_embd, n_head, batch, seq_len", [(64, 4, 2, 128), (96, 3, 3, 64)])
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_the_block_term_is_what_autograd_saves(n_embd, n_head, batch, seq_len, autocast):
    shape = Shape(n_layer=1, n_head=n_head, n_embd=n_embd, vocab_size=64, seq_len=seq_len, micro_batch_size=batch,
                  grad_accum=1, num_processes=1, mixed_precision="bf16" if autocast else "no", sharded=False,
                  checkpointing=False, optimizer="adamw")
    traced = traced_block_bytes(n_embd, n_head, batch, seq_len, autocast)
    assert block_activation_bytes(shape) == pytest.approx(traced, rel=0.02)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dropout", [0.0, 0.1], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("qk_norm", [False, True], ids=["", "qk_norm"])
def test_every_kernel_and_precision_is_planned_tensor_by_tensor(attn, dropout, precision, qk_norm):
    """The whole per-block formula on CPU, byte for byte: eager keeps the float32 softmax output (and its 16-bit copy,
    or the dropout noise and the dropped probabilities) and a T x T causal mask; sdpa on CPU keeps nothing T x T
    without dropout, and its float32 math fallback's matrices with it."""
    traced = traced_block_bytes(64, 4, 2, 128, AUTOCAST[precision], attn, dropout, qk_norm)
    shape = _cpu_shape(64, 4, 2, 128, precision, attn_implementation=attn, dropout=dropout, qk_norm=qk_norm)
    assert block_activation_bytes(shape) == traced


@pytest.mark.parametrize("precision, per_element", [("fp32", 4), ("bf16", 6)])
def test_eager_attention_adds_the_t_by_t_matrices_that_a_real_block_saves(precision, per_element):
    """The term the planner ignored: eager attention's extra bytes over sdpa, traced on a real block at a T where the
    T x T part dominates, are the attention matrices (4 S float32 softmax output, + 2 S for its bf16 copy under
    autocast, S = B x H x T x T) and the causal mask, less the log-sum-exp that sdpa keeps and eager does not."""
    batch, heads, seq_len = 2, 4, 256
    extra = traced_block_bytes(64, heads, batch, seq_len, AUTOCAST[precision], "eager") - \
        traced_block_bytes(64, heads, batch, seq_len, AUTOCAST[precision], "sdpa")
    eager = _cpu_shape(64, heads, batch, seq_len, precision, attn_implementation="eager")
    s = batch * heads * seq_len ** 2
    assert attention_matrix_bytes(eager) == per_element * s + seq_len ** 2
    assert extra == attention_matrix_bytes(eager) - 4 * batch * seq_len * heads  # sdpa's log-sum-exp
    assert attention_matrix_bytes(_cpu_shape(64, heads, batch, seq_len, precision)) == 0  # sdpa: none


def test_eager_attention_is_in_the_plan_of_gpt2_124m():
    """GPT-2 124M, B=16, T=1024, bf16: eager keeps 12 x 16 x 12 x 1024^2 x 6 bytes = 13.5 GiB more than sdpa, and
    the largest micro-batch for an 80 GB card shrinks accordingly."""
    base = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, seq_len=1024, micro_batch_size=16, grad_accum=32,
                num_processes=1, mixed_precision="bf16", sharded=False, checkpointing=False, optimizer="adamw")
    sdpa = plan_run(Shape(**base), 80 * GIB, "H100", total_batch_tokens=524_288)
    eager = plan_run(Shape(**base, attn_implementation="eager"), 80 * GIB, "H100", total_batch_tokens=524_288)
    matrices = [v for k, v in eager.terms.items() if k.startswith("activations: attention matrices")]
    assert matrices and matrices[0] / GIB == pytest.approx(13.5, abs=0.05)
    assert eager.peak_bytes - sdpa.peak_bytes > 13 * GIB
    assert eager.largest_micro_batch < sdpa.largest_micro_batch
    big = Shape(**{**base, "micro_batch_size": eager.largest_micro_batch, "attn_implementation": "eager"})
    assert estimate(big).peak_bytes <= eager.budget_bytes
    assert eager.shape["attn_implementation"] == "eager" and "eager" in eager.attention


def _preset_shape(path, processes, sharded, **changes) -> Shape:
    from training.cli import parse_run_config

    config = parse_run_config(["--config", path])
    train, model = config.train, config.model
    values = dict(n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd, vocab_size=model.vocab_size,
                  seq_len=train.seq_len, micro_batch_size=train.micro_batch_size,
                  grad_accum=train.grad_accum_steps(processes), num_processes=processes, mixed_precision="bf16",
                  sharded=sharded, checkpointing=model.gradient_checkpointing, optimizer=config.optimizer.optimizer)
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
    from training.trainer.builders import memory_verdict

    from .helpers import tiny_run_config

    config = tiny_run_config(tmp_path, shakespeare_shards, micro_batch_size=64, total_batch_tokens=4096, seq_len=64)
    arch = GPTConfig(n_layer=2, n_head=4, n_embd=32, n_positions=64)
    problem = memory_verdict(config, arch, 1, 1, "bf16", False, False, 2 * GIB, "a 2 GiB card")
    assert problem.startswith("This run will not fit on a 2 GiB card: the planned peak is ")
    assert "--micro_batch_size " in problem and "keeps the total batch" in problem
    assert memory_verdict(config, arch, 1, 1, "bf16", False, False, 80 * GIB, "H100") is None


def test_fp16_plans_like_bf16():
    """fp16 autocast saves the same 2-byte activations as bf16 (traced above); the GradScaler's state is a few
    scalars and its unscale is in place."""
    values = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, seq_len=1024, micro_batch_size=8, grad_accum=1,
                  num_processes=1, sharded=False, checkpointing=False, optimizer="adamw")
    assert estimate(Shape(**values, mixed_precision="fp16")).peak_bytes == \
        estimate(Shape(**values, mixed_precision="bf16")).peak_bytes


# ------------------------------------------------------------------------------------------ scripts/plan.py inputs
def _plan_main(argv, capsys) -> tuple[int, str, str]:
    from .test_errors import script

    code = script("plan").main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY = ["--config", "configs/cpu-tiny.yaml"]


@pytest.mark.parametrize("argv, names", [
    (["--num_processes", "-2"], "--num_processes"),
    (["--num_processes", "0"], "--num_processes"),
    (["--mfu", "5"], "--mfu"),
    (["--mfu", "0"], "--mfu"),
    (["--mfu", "nan"], "--mfu"),
    (["--card_memory_gb", "0"], "--card_memory_gb"),
    (["--card_memory_gb", "-1"], "--card_memory_gb"),
    (["--card_memory_gb", "inf"], "--card_memory_gb"),
    (["--card", "unknown"], "--card"),
    (["--card", " "], "--card"),
    (["--attn_implementation", "banana"], "--attn_implementation"),
    (["--mixed_precision", "fp8"], "fp8"),
    (["--mixed_precision", "bf17"], "--mixed_precision"),
    (["--micro_batch_size", "16"], "total_batch_tokens"),  # more sequences than the per-process share (8)
    (["--card", "H100"], "CPU run"),  # cpu-tiny trains on the CPU: no card, and no H100 FLOP/s for its tokens/s
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_each_absurd_option_is_a_clear_error(argv, names, capsys):
    code, out, err = _plan_main(TINY + argv, capsys)
    assert code == 2 and out == "" and err.startswith("error: ") and names in err
    assert "Traceback" not in err


ACCELERATE_CONFIGS = {
    "not YAML": ("distributed_type: MULTI_GPU\nnum_processes: [8\n", "not valid YAML (line"),
    "a list": ("- MULTI_GPU\n- 8\n", "must hold a mapping"),
    "empty": ("", "it is empty"),
    "no distributed_type": ("num_processes: 2\n", "distributed_type is missing"),
    "no num_processes": ("distributed_type: MULTI_GPU\n", "num_processes is missing"),
    "unknown distributed_type": ("distributed_type: MULTI_TPU\nnum_processes: 2\n", "distributed_type 'MULTI_TPU'"),
    "DeepSpeed": ("distributed_type: DEEPSPEED\nnum_processes: 2\n", "distributed_type DEEPSPEED"),
    "zero processes": ("distributed_type: MULTI_GPU\nnum_processes: 0\n", "num_processes must be a positive"),
    "processes as text": ("distributed_type: MULTI_GPU\nnum_processes: '2'\n", "num_processes must be a positive"),
    "fractional processes": ("distributed_type: MULTI_GPU\nnum_processes: 2.5\n", "num_processes must be a positive"),
    "negative machines": ("distributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: -1\n",
                          "num_machines must be a positive"),
    "machines do not divide": ("distributed_type: MULTI_GPU\nnum_processes: 3\nnum_machines: 2\n",
                               "multiple of num_machines"),
    "NO with 2 processes": ("distributed_type: NO\nnum_processes: 2\n", "distributed_type NO launches one process"),
    "fp8": ("distributed_type: MULTI_GPU\nnum_processes: 2\nmixed_precision: fp8\n", "mixed_precision fp8"),
    "unknown precision": ("distributed_type: MULTI_GPU\nnum_processes: 2\nmixed_precision: bf17\n",
                          "mixed_precision 'bf17'"),
    "fsdp_config a list": ("distributed_type: FSDP\nnum_processes: 2\nfsdp_config: [1]\n",
                           "fsdp_config must be a mapping"),
    "CPU offload": ("distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  fsdp_version: 2\n"
                    "  fsdp_offload_params: true\n", "fsdp_config.fsdp_offload_params"),
    "fsdp_version 3": ("distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n  fsdp_version: 3\n",
                       "fsdp_config.fsdp_version"),
}


@pytest.mark.parametrize("name", list(ACCELERATE_CONFIGS))
def test_each_broken_accelerate_config_is_a_clear_error_naming_the_file_and_key(name, tmp_path, capsys):
    text, expected = ACCELERATE_CONFIGS[name]
    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    code, out, err = _plan_main(TINY + ["--accelerate_config", path], capsys)
    assert code == 2 and out == "" and err.startswith("error: ")
    assert str(path) in err and expected in err, err


def test_a_missing_accelerate_config_is_a_clear_error(tmp_path, capsys):
    code, _, err = _plan_main(TINY + ["--accelerate_config", tmp_path / "missing.yaml"], capsys)
    assert code == 2 and "missing.yaml does not exist" in err


def test_accelerate_counts_processes_over_all_machines(tmp_path, capsys):
    """accelerate's num_processes is the total (launch gives each machine num_processes / num_machines): two
    machines and num_processes 2 is two processes, not four. YAML's unquoted `no` is accelerate's 'no'."""
    path = tmp_path / "accelerate.yaml"
    path.write_text("distributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: 2\nmixed_precision: no\n")
    code, out, _ = _plan_main(TINY + ["--accelerate_config", path, "--mixed_precision", "no", "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["shape"]["num_processes"] == 2 and payload["shape"]["mixed_precision"] == "no"


def test_the_plan_names_attention_precision_optimizer_and_checkpointing(tmp_path, capsys):
    path = tmp_path / "fsdp.yaml"
    path.write_text("distributed_type: FSDP\nnum_processes: 2\nmixed_precision: fp16\nfsdp_config:\n"
                    "  fsdp_version: 2\n  fsdp_activation_checkpointing: true\n")
    argv = ["--config", "configs/gpt2-124m-seed.yaml", "--accelerate_config", path, "--attn_implementation", "eager",
            "--optimizer", "muon", "--card", "H100 80GB"]
    code, text, _ = _plan_main(argv, capsys)
    assert code == 0
    for expected in ("attention eager", "precision fp16", "optimizer muon", "activation checkpointing", "(FSDP)"):
        assert expected in text, expected
    code, out, _ = _plan_main(argv + ["--json"], capsys)
    shape = json.loads(out)["shape"]
    assert (shape["attn_implementation"], shape["mixed_precision"], shape["optimizer"], shape["checkpointing"],
            shape["sharded"]) == ("eager", "fp16", "muon", True, True)


def test_an_init_from_context_shorter_than_seq_len_is_a_clear_error(tmp_path, capsys):
    from modeling import GPTConfig

    GPTConfig(n_layer=4, n_head=4, n_embd=128, n_positions=32, vocab_size=50304).save_pretrained(tmp_path)
    code, out, err = _plan_main(TINY + ["--init_from", tmp_path], capsys)
    assert code == 2 and out == "" and "context of 32 tokens, shorter than seq_len=64" in err


def test_the_verdict_depends_on_the_attention_kernel(tmp_path):
    """GPT-2 124M at B=16, T=1024, bf16 fits a 24 GB card with sdpa; with eager attention its 12 blocks keep 13.5
    GiB of attention matrices more, and the same run is refused, naming sdpa as a way out."""
    from modeling import GPTConfig
    from training.trainer.builders import memory_verdict

    from .helpers import tiny_run_config

    def verdict(attention, via_model: bool):
        config = tiny_run_config(tmp_path, n_layer=12, n_head=12, n_embd=768, seq_len=1024, micro_batch_size=16,
                                 total_batch_tokens=16 * 1024 * 8, attn_implementation="sdpa" if via_model else
                                 attention)
        arch = GPTConfig(n_layer=12, n_head=12, n_embd=768, n_positions=1024,
                         **({"attn_implementation": attention} if via_model else {}))
        return memory_verdict(config, arch, 8, 1, "bf16", False, False, 24 * GIB, "an RTX 4090")

    for via_model in (False, True):
        assert verdict("sdpa", via_model) is None
        problem = verdict("eager", via_model)
        assert problem and problem.startswith("This run will not fit on an RTX 4090")
        assert "--attn_implementation sdpa" in problem and "attention eager" in problem
