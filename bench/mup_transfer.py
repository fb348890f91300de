#!/usr/bin/env python
"""μTransfer, measured: does the best learning rate stay put across width under μP, and move under sp?

Widths 64 / 128 / 256 / 512 at fixed depth (2 layers, 4 heads), a learning-rate grid of 7 points over 64x
(2^-12 .. 2^-6), 2 seeds, 300 steps, under the standard parametrization and under μP (base width 64), AdamW (or
--optimizer muon), the project's own model and optimizer groups (modeling/, training/optim/optimizers.py). The data is tiny shakespeare as bytes (a 256-token vocabulary): with
GPT-2's 50304-wide logits a width-512 model is too slow for this grid on a CPU, and μP's width rules do not depend on
the vocabulary. Prints the final validation loss per width and lr, the best lr per width, and how far the optimum
moves over the 8x width range; writes bench/figures/mup_transfer.png (loss against lr, one line per width: the
standard μTransfer plot).

What it can show: whether the optimum learning rate transfers across width at this depth, batch and horizon (a best
lr at the edge of the grid is marked: then the move is a bound, not a measurement). What it cannot: depth, batch
size or horizon transfer (μP does not claim them), whether μP beats a re-tuned sp, or anything at GPT-2's scale.

    python bench/mup_transfer.py --data ../shared/data/tinyshakespeare.txt            # ~1.5 h on 2 CPU cores
    python bench/mup_transfer.py --data ... --widths 64 256 --seeds 0 --steps 60      # a quick look
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import torch

from bench.common import machine, table
from modeling import GPTConfig, GPTForCausalLM
from training.optim.config import OptimizerArguments
from training.optim.optimizers import build_optimizers

FIGURE = Path(__file__).resolve().parent / "figures" / "mup_transfer.png"
BASE_WIDTH = 64


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="A text file (tinyshakespeare.txt).")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--lrs", type=float, nargs="+", default=[2.0 ** k for k in range(-12, -5)])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=64)
    parser.add_argument("--clip", type=float, default=1.0, help="Global gradient-norm clip (0: none). A global norm is "
                        "not width-invariant: under μP the gradient norm grows with width, so a fixed clip slows wide "
                        "models more.")
    parser.add_argument("--parametrizations", nargs="+", default=["sp", "mup"], choices=["sp", "mup"])
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"],
                        help="adamw, or muon (Muon on the hidden matrices at the same lr, AdamW on the rest: the "
                        "training run's own --optimizer muon).")
    parser.add_argument("--out", type=Path, default=FIGURE, help="The plot (PNG); the losses go beside it as the same "
                        "name with .json (an existing .json that is not this benchmark's output is refused).")
    return parser.parse_args()


def byte_data(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.tensor(np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.int64))
    split = int(0.9 * len(data))
    return data[:split], data[split:]


def batches(data: torch.Tensor, count: int, batch: int, seq_len: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - seq_len - 1, (count, batch), generator=generator)
    return [torch.stack([data[s:s + seq_len] for s in row]) for row in starts]


def train_one(width: int, parametrization: str, lr: float, seed: int, train, val, args) -> float:
    """Final validation loss of one run (inf if it diverged): warmup 10% then cosine to 10%, wd 0.1, the gradient
    clipped at --clip, the training run's own optimizers and groups (``build_optimizers``: under μP each group
    already holds its scaled peak, which the loop below multiplies by the schedule)."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=256, n_positions=args.seq_len, n_embd=width, n_layer=2, n_head=4,
                       bos_token_id=0, eos_token_id=0, parametrization=parametrization,
                       mup_base_width=BASE_WIDTH if parametrization == "mup" else None)
    model = GPTForCausalLM(config)
    optimizers = build_optimizers(model, OptimizerArguments(optimizer=args.optimizer, max_lr=lr, min_lr=lr / 10,
                                                            weight_decay=0.1))
    groups = [group for optimizer in optimizers for group in optimizer.param_groups]
    peaks = [group["lr"] for group in groups]
    warmup = max(1, args.steps // 10)
    for step, tokens in enumerate(batches(train, args.steps, args.batch, args.seq_len, seed)):
        factor = (step + 1) / warmup if step < warmup else \
            0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))
        for group, peak in zip(groups, peaks):
            group["lr"] = peak * factor
        loss = model(tokens, labels=tokens).loss
        if not torch.isfinite(loss):
            return math.inf
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        losses = [float(model(t, labels=t).loss) for t in batches(val, 8, args.batch, args.seq_len, 1234)]
    value = float(np.mean(losses))
    return value if math.isfinite(value) else math.inf


def at_grid_edge(losses: dict[float, float]) -> bool:
    """The lowest loss is at the smallest or largest lr of the grid: the optimum may lie beyond it, and a "move" of
    the best lr measured with it is a bound, not a measurement."""
    lrs = sorted(losses)
    i = int(np.argmin([losses[lr] for lr in lrs]))
    return i in (0, len(lrs) - 1)


def best_lr(losses: dict[float, float]) -> float:
    """The grid point with the lowest loss, refined by a parabola through it and its neighbours in log lr."""
    lrs = sorted(losses)
    i = int(np.argmin([losses[lr] for lr in lrs]))
    if 0 < i < len(lrs) - 1 and all(math.isfinite(losses[lrs[j]]) for j in (i - 1, i, i + 1)):
        x = np.log2([lrs[i - 1], lrs[i], lrs[i + 1]])
        y = [losses[lrs[i - 1]], losses[lrs[i]], losses[lrs[i + 1]]]
        a, b, _ = np.polyfit(x, y, 2)
        if a > 0:
            return float(2 ** np.clip(-b / (2 * a), x[0], x[2]))
    return lrs[i]


def plot(results: dict, widths: list[int], optimizer: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), sharey=True, squeeze=False)
    axes = axes[0]
    for axis, parametrization in zip(axes, results):
        for width in widths:
            lrs = sorted(results[parametrization][width])
            axis.plot(lrs, [results[parametrization][width][lr] for lr in lrs], marker="o", label=f"width {width}")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("learning rate")
        axis.set_title(f"{parametrization}, {optimizer}: validation loss (mean of seeds)")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("validation loss (bytes)")
    top = min(min(v.values()) for r in results.values() for v in r.values()) + 1.5
    axes[0].set_ylim(top=top)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def check_output(json_path: Path) -> None:
    """Refuse to replace a .json beside --out that this benchmark did not write (it may be the user's)."""
    if not json_path.exists():
        return
    try:
        previous = json.loads(json_path.read_text())
        ours = isinstance(previous, dict) and previous and set(previous) <= {"sp", "mup"}
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise SystemExit(f"error: {json_path} exists and is not this benchmark's output; pass another --out "
                         "(the losses are written beside the plot, as .json).")


def main() -> None:
    args = parse_args()
    check_output(args.out.with_suffix(".json"))
    torch.set_num_threads(2)
    train, val = byte_data(args.data)
    results = {p: {} for p in args.parametrizations}
    started = time.perf_counter()
    for parametrization in args.parametrizations:
        for width in args.widths:
            per_lr = {}
            for lr in args.lrs:
                per_lr[lr] = float(np.mean([train_one(width, parametrization, lr, seed, train, val, args)
                                            for seed in args.seeds]))
            results[parametrization][width] = per_lr
            print(f"{parametrization} width {width}: " + ", ".join(f"{lr:.2g}: {v:.3f}" for lr, v in per_lr.items())
                  + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    moves = {}
    for parametrization in args.parametrizations:
        best = {w: best_lr(results[parametrization][w]) for w in args.widths}
        moves[parametrization] = max(best.values()) / min(best.values())
        rows += [[parametrization, w, f"{best[w]:.3g}" + (" (grid edge)" if at_grid_edge(results[parametrization][w])
                                                           else ""),
                  f"{min(results[parametrization][w].values()):.3f}"] for w in args.widths]
    print(f"\n{machine()}; {args.optimizer}, {args.steps} steps of {args.batch}x{args.seq_len} bytes, "
          f"seeds {args.seeds}, {time.perf_counter() - started:.0f} s\n")
    print(table(["parametrization", "width", "best lr", "best val loss"], rows))
    for parametrization, move in moves.items():
        edges = [w for w in args.widths if at_grid_edge(results[parametrization][w])]
        caveat = (f" (not measured: the best lr of width(s) {', '.join(map(str, edges))} is at the edge of the grid, "
                  "so the optimum may lie beyond it; widen --lrs)") if edges else ""
        print(f"{parametrization}: the best lr moves {move:.2f}x over widths {args.widths[0]}-{args.widths[-1]}"
              + caveat)
    plot(results, args.widths, args.optimizer, args.out)
    args.out.with_suffix(".json").write_text(json.dumps({p: {str(w): {str(lr): v for lr, v in r.items()}
                                                             for w, r in d.items()} for p, d in results.items()},
                                                        indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
