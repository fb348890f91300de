#!/usr/bin/env python
"""Larger models on one card: step time, MFU and peak memory of GPT-2 124M and 350M (with and without activation
checkpointing), the memory planner's estimate against the measured peak (torch.cuda.max_memory_allocated), and the
largest micro-batch that fits, found by running it, against the planner's answer for the card.

Every step is the loop's own work in one process: bf16 autocast forward with the loss, backward, gradient clipping,
the fused AdamW step and zero_grad. The largest micro-batch is searched by doubling until a step runs out of memory
and then bisecting (each try one step); the planner's answer keeps a 1 GiB context and 10% fragmentation margin, so
it is expected at or below the measured one.

    python bench/gpu_memory.py                 # on a GPU (part of bench/gpu_check.sh); about 2 minutes on an H100
    python bench/gpu_memory.py --smoke         # tiny shapes on the CPU, to check the script (no memory figures)
"""

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from bench.common import machine, table  # noqa: E402
from modeling import GPTConfig, GPTForCausalLM  # noqa: E402
from training.optim.flops import device_peak_flops, model_flops_per_token  # noqa: E402
from training.optim.optimizers import build_optimizers  # noqa: E402
from training.planning.memory_plan import Shape, budget, estimate, format_bytes, largest_micro_batch  # noqa: E402

MODELS = {"124M": dict(n_layer=12, n_head=12, n_embd=768), "350M": dict(n_layer=24, n_head=16, n_embd=1024)}
SMOKE_MODELS = {"124M": dict(n_layer=2, n_head=2, n_embd=64), "350M": dict(n_layer=3, n_head=2, n_embd=96)}
# (model, micro-batch, activation checkpointing): the 350M preset's micro-batch of 16 with and without.
CASES = (("124M", 16, False), ("350M", 16, False), ("350M", 16, True))


class Args:  # what build_optimizers reads: the presets' AdamW settings
    optimizer, max_lr, muon_lr, weight_decay = "adamw", 3e-4, None, 0.1
    adam_beta1, adam_beta2, adam_epsilon, muon_momentum = 0.9, 0.95, 1e-8, 0.95


def build(dims: dict, seq_len: int, checkpointing: bool, device: torch.device):
    config = GPTConfig(vocab_size=50304, n_positions=seq_len, attn_implementation="sdpa", **dims)
    model = GPTForCausalLM(config).to(device).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    return model, build_optimizers(model, Args, device.type)


def train_step(model, optimizers, micro_batch: int, seq_len: int, device: torch.device) -> None:
    x = torch.randint(0, 50257, (micro_batch, seq_len), device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(x, shift_labels=x, use_cache=False)
    out.loss.backward()
    del out
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def shape_of(dims: dict, seq_len: int, micro_batch: int, checkpointing: bool, device: torch.device) -> Shape:
    return Shape(vocab_size=50304, seq_len=seq_len, micro_batch_size=micro_batch, grad_accum=1, num_processes=1,
                 mixed_precision="bf16" if device.type == "cuda" else "no", sharded=False,
                 checkpointing=checkpointing, optimizer="adamw", device=device.type, **dims)


def measure_case(dims: dict, seq_len: int, micro_batch: int, checkpointing: bool, steps: int,
                 device: torch.device) -> dict:
    """Seconds per step (median of ``steps`` after 2 warm-up steps), tokens/s, MFU, and the measured peak."""
    release(device)
    model, optimizers = build(dims, seq_len, checkpointing, device)
    times = []
    for step in range(steps + 2):
        synchronize(device)
        start = time.perf_counter()
        train_step(model, optimizers, micro_batch, seq_len, device)
        synchronize(device)
        if step >= 2:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    tokens_per_second = micro_batch * seq_len / seconds
    peak_flops = device_peak_flops(device)
    mfu = tokens_per_second * model_flops_per_token(model, seq_len) / peak_flops if peak_flops else None
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del model, optimizers
    release(device)
    return {"seconds": seconds, "tokens_per_second": tokens_per_second, "mfu": mfu, "peak": peak}


def step_fits(model, optimizers, seq_len: int, micro_batch: int, device: torch.device) -> bool:
    """One full training step at ``micro_batch`` runs without running out of memory."""
    release(device)
    try:
        train_step(model, optimizers, micro_batch, seq_len, device)
        synchronize(device)
        return True
    except torch.OutOfMemoryError:
        for optimizer in optimizers:  # what the failed backward left behind
            optimizer.zero_grad(set_to_none=True)
        return False
    finally:
        release(device)


def measured_largest(dims: dict, seq_len: int, device: torch.device, cap: int) -> tuple[int, bool]:
    """The largest micro-batch whose step runs (doubling, then bisection), and whether the search hit ``cap``.
    One model for all tries: its weights and, after the first step, its optimizer state stay, as in a run."""
    release(device)
    model, optimizers = build(dims, seq_len, False, device)
    low, high = 0, 1
    while high <= cap and step_fits(model, optimizers, seq_len, high, device):
        low, high = high, high * 2
    capped = high > cap
    while not capped and high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if step_fits(model, optimizers, seq_len, middle, device) else (low, middle)
    del model, optimizers
    release(device)
    return low, capped


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Tiny models on the CPU (checks the script only).")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per case (after 2 warm-up steps).")
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--cap", type=int, default=512, help="Largest micro-batch the search tries.")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    models, seq_len, cap = (SMOKE_MODELS, 32, 4) if args.smoke else (MODELS, args.seq_len, args.cap)
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    label = " (smoke: tiny)" if args.smoke else ""
    print(f"machine: {machine()}" + (f", {format_bytes(total)}" if total else " (no CUDA: no memory figures)"))

    rows = []
    for name, micro_batch, checkpointing in CASES:
        result = measure_case(models[name], seq_len, micro_batch, checkpointing, args.steps, device)
        planned = estimate(shape_of(models[name], seq_len, micro_batch, checkpointing, device)).peak_bytes
        peak = result["peak"]
        rows.append([f"GPT-2 {name}{label}", f"{micro_batch} x {seq_len}", "yes" if checkpointing else "no",
                     f"{1000 * result['seconds']:,.0f}", f"{result['tokens_per_second']:,.0f}",
                     f"{100 * result['mfu']:.1f}%" if result["mfu"] else "n/a",
                     format_bytes(peak) if peak else "n/a", format_bytes(planned),
                     f"{100 * (planned - peak) / peak:+.1f}%" if peak else "n/a"])
    print("\n" + table(["model", "micro-batch", "checkpointing", "ms/step", "tokens/s", "MFU", "measured peak",
                        "planned peak", "planned - measured"], rows))

    rows = []
    for name in ("124M", "350M"):
        found, capped = measured_largest(models[name], seq_len, device, cap)
        planned = (largest_micro_batch(shape_of(models[name], seq_len, 1, False, device), budget(total), None)[0]
                   if total else None)
        rows.append([f"GPT-2 {name}{label}", f"{found}{' (the cap)' if capped else ''}",
                     planned if planned is not None else "n/a (no card memory)"])
    print("\n" + table([f"model (T={seq_len}, bf16, no checkpointing)", "largest micro-batch that runs",
                        "planner's largest (with its margins)"], rows))


if __name__ == "__main__":
    main()
