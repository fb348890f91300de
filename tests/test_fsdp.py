"""Sharded parameters (FSDP2), tested on CPU with torch's own ``fully_shard`` over 2 gloo processes.

Accelerate cannot run its FSDP plugin on CPU: ``AcceleratorState`` switches ``distributed_type`` to FSDP only
inside its branch for accelerator process groups (MULTI_GPU, MULTI_XPU, MULTI_NPU, ...); with ``cpu=True`` the
state is MULTI_CPU, the plugin is ignored and ``prepare`` returns a DDP model. So these tests shard with
``fully_shard`` directly (what Accelerate's FSDP2 path calls) and run this project's code that must behave under
sharding: the per-layer statistics callbacks (whole matrices, every process joining the gathers), the gathered
state dict written by ``save_pretrained`` and loaded by ``from_pretrained``, and sampling on every process. Each
result is compared with the same computation on an unsharded copy of the model.
"""

import json
import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordingLogger:
    def __init__(self):
        self.metrics: dict[str, float] = {}

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def add_step_metrics(self, metrics):
        self.metrics.update(metrics)

    def log_histogram(self, tag, values, step):
        self.metrics[f"hist:{tag}"] = float(values.float().sum())

    def log_text(self, tag, text, step):
        pass


def _statistics(model, optimizer, batch, is_main):
    """One training step through the diagnostics callbacks; returns what they logged."""
    from transformers import TrainerControl, TrainerState

    from training.diagnostics.callbacks import GradNormCallback, HistogramCallback, LayerRatioCallback

    x, y = batch
    model(x, shift_labels=y, use_cache=False).loss.backward()
    state = TrainerState(global_step=0, is_world_process_zero=is_main, is_local_process_zero=is_main)
    args = type("Args", (), {"grad_clip": 1.0})()
    logger, control = RecordingLogger(), TrainerControl()
    callbacks = [GradNormCallback(every=1), LayerRatioCallback(every=1), HistogramCallback(every=1)]
    for callback in callbacks:
        callback.on_pre_optimizer_step(args, state, control, grad_norm=0.5, logger=logger, model=model)
    optimizer.step()
    for callback in callbacks:
        callback.on_optimizer_step(args, state, control, logger=logger, model=model)
    optimizer.zero_grad(set_to_none=True)
    return logger.metrics


def _checkpointing_under_fsdp(config, reference, batch) -> dict:
    """Activation checkpointing on a sharded copy of ``reference``: the same loss and whole-matrix gradients as the
    unsharded model without checkpointing (recomputation changes memory, not numbers)."""
    from torch.distributed.fsdp import fully_shard

    from modeling import GPTForCausalLM
    from training.distributed import full_tensor

    x, y = batch
    reference.zero_grad()
    plain_loss = reference(x, shift_labels=y, use_cache=False).loss
    plain_loss.backward()
    plain = {n: p.grad.detach().clone() for n, p in reference.named_parameters()}
    reference.zero_grad(set_to_none=True)
    checkpointed = GPTForCausalLM(config)
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.activation_checkpointing_enable()
    checkpointed.train()
    for block in checkpointed.transformer.h:
        fully_shard(block)
    fully_shard(checkpointed)
    loss = checkpointed(x, shift_labels=y, use_cache=False).loss
    loss.backward()
    difference = max(float((full_tensor(p.grad).detach() - plain[n]).abs().max())
                     for n, p in checkpointed.named_parameters())
    return {"loss": float(loss), "plain_loss": float(plain_loss), "max_grad_difference": difference,
            "recomputed": bool(checkpointed.transformer.h[0].gradient_checkpointing)}


def _worker(rank: int, world: int, port: int, out_dir: str, repo: str) -> None:
    sys.path.insert(0, repo)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from modeling import GPTConfig, GPTForCausalLM
    from modeling.tokenization import TiktokenGPT2
    from training.distributed import full_state_dict, is_sharded
    from training.evaluation.sampling import generate_samples

    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50304, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    reference = GPTForCausalLM(config)
    sharded = GPTForCausalLM(config)
    sharded.load_state_dict(reference.state_dict())
    for block in sharded.transformer.h:
        fully_shard(block)
    fully_shard(sharded)
    assert is_sharded(sharded) and not is_sharded(reference)

    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 50257, (4, 32), generator=generator)
    y = torch.randint(0, 50257, (4, 32), generator=generator)
    checkpointing = _checkpointing_under_fsdp(config, reference, (x, y))
    # Both processes see the same batch, so FSDP's averaged gradient equals the single-process one.
    sharded_stats = _statistics(sharded, torch.optim.AdamW(sharded.parameters(), lr=1e-2), (x, y), rank == 0)
    reference_stats = _statistics(reference, torch.optim.AdamW(reference.parameters(), lr=1e-2), (x, y), True)

    state_dict = full_state_dict(sharded)  # every process gathers
    tokenizer = TiktokenGPT2()
    samples = generate_samples(sharded, tokenizer, "Hello", num_samples=2, max_new_tokens=5, seed=3)
    if rank == 0:
        sharded.save_pretrained(os.path.join(out_dir, "saved"), state_dict=state_dict)
        reference.save_pretrained(os.path.join(out_dir, "reference"))
        expected = generate_samples(reference, tokenizer, "Hello", num_samples=2, max_new_tokens=5, seed=3)
        with open(os.path.join(out_dir, "result.json"), "w") as handle:
            json.dump({"sharded": sharded_stats, "reference": reference_stats, "samples": samples,
                       "expected_samples": expected, "checkpointing": checkpointing}, handle)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter teardown: gloo's background threads can abort a process at exit
    # ("terminate called without an active exception") after all the work above is done and written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def fsdp_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mp.spawn(_worker, args=(2, _free_port(), str(out), repo), nprocs=2, join=True)
    return out, json.loads((out / "result.json").read_text())


def test_per_layer_statistics_are_of_whole_matrices(fsdp_result):
    _, result = fsdp_result
    sharded, reference = result["sharded"], result["reference"]
    assert sharded.keys() == reference.keys()
    assert any(k.startswith("update_ratio/h.1.mlp.c_fc") for k in sharded)
    for key, value in reference.items():
        assert sharded[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_gathered_state_dict_saves_a_model_from_pretrained_loads(fsdp_result):
    from transformers import AutoModelForCausalLM

    import modeling  # noqa: F401  (registers the model with the Auto classes)

    out, _ = fsdp_result
    saved = AutoModelForCausalLM.from_pretrained(out / "saved")
    reference = AutoModelForCausalLM.from_pretrained(out / "reference")
    for (name, a), (_, b) in zip(saved.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_sampling_runs_on_every_process_and_matches_the_unsharded_model(fsdp_result):
    _, result = fsdp_result
    assert result["samples"] == result["expected_samples"]


def test_activation_checkpointing_under_fsdp_gives_the_same_loss_and_gradients(fsdp_result):
    _, result = fsdp_result
    check = result["checkpointing"]
    assert check["recomputed"] and check["loss"] == pytest.approx(check["plain_loss"], abs=1e-6)
    assert check["max_grad_difference"] < 1e-6
