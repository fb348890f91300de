#!/usr/bin/env python
"""What building a KV cache costs during training: forward + backward with ``use_cache=True`` (what the model did
before training forwards passed ``use_cache=False``) vs ``use_cache=False``, tokens/s and peak memory. Each mode
runs in its own process so peak RSS (CPU) or peak allocated memory (CUDA) belongs to it alone.

    python bench/kv_cache_training.py [--layers 4 --width 256 --batch 8 --seq 256 --steps 5]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def measure(use_cache: bool, args) -> dict:
    from modeling import GPTConfig, GPTForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(n_layer=args.layers, n_head=max(1, args.width // 64), n_embd=args.width,
                                     n_positions=args.seq)).to(device)
    x = torch.randint(0, 50257, (args.batch, args.seq), device=device)
    model(x, shift_labels=x, use_cache=use_cache).loss.backward()  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        model.zero_grad(set_to_none=True)
        model(x, shift_labels=x, use_cache=use_cache).loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tokens_per_sec": args.steps * args.batch * args.seq / elapsed, "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mode", choices=["cache", "no_cache"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode == "cache", args)))
        return
    from bench.common import machine, table

    rows = []
    for mode in ("cache", "no_cache"):
        out = subprocess.run([sys.executable, "-m", "bench.kv_cache_training", *sys.argv[1:], "--mode", mode],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        rows.append([f"use_cache={mode == 'cache'}", f"{result['tokens_per_sec']:,.0f}",
                     f"{result['peak_bytes'] / 2**20:,.0f}"])
    print(machine())
    print(f"{args.layers}L/{args.width}W B={args.batch} T={args.seq}, {args.steps} steps of forward + backward")
    print(table(["training forward", "tokens/s", "peak memory MiB"], rows))


if __name__ == "__main__":
    main()
