#!/usr/bin/env python
"""μP coordinate check (Tensor Programs V; Microsoft mup's ``get_coord_data``): the RMS of every layer's output
(embeddings, each block's attention and MLP branch, the logits) after a few steps at one fixed learning rate, over
widths 64 -> 1024, under sp and mup, with AdamW and with Muon. Under a correct μP every row is flat in width; under
sp the block outputs and the logits grow. Prints one table per arm and writes bench/figures/mup_coord_check.png.

The models are 2 layers, 4 heads (head size grows with width, as μP's base-width convention assumes), base width
64, 5 steps at lr 1e-2 on random tokens, 2 x 16 tokens per step (few tokens per step on purpose: with random tokens
the part of an update that is correlated with a layer's input is ~ sqrt(width / tokens) times the uncorrelated
part, so the check only reaches μP's limit at widths well above the tokens per step; see docs/mup.md).

    python bench/mup_coord_check.py                          # both optimizers, 2 seeds; ~5 min on 2 CPU cores
    python bench/mup_coord_check.py --optimizers adamw --widths 64 128 256 --seeds 0     # a quick look
"""

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import machine, table
from training.diagnostics.coord_check import (
    CoordCheckSetup,
    coord_check,
    growth,
    layer_names,
)

FIGURE = Path(__file__).resolve().parent / "figures" / "mup_coord_check.png"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "muon"], choices=["adamw", "muon"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--out", type=Path, default=FIGURE)
    return parser.parse_args()


def arm_table(results: dict[int, dict[str, float]]) -> str:
    """One row per layer: its output RMS at each width and its growth from the smallest width to the largest."""
    widths = sorted(results)
    names = layer_names(sum(1 for name in results[widths[0]] if name.endswith(".attn")))
    rows = [[name, *(f"{results[w][name]:.3g}" for w in widths), f"{growth(results, name):.2f}x"] for name in names]
    return table(["output RMS", *(f"width {w}" for w in widths), "growth"], rows)


def plot(all_results: dict[tuple[str, str], dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = sorted(all_results, key=lambda arm: (arm[1], arm[0] != "sp"))
    columns = 2
    rows = (len(arms) + 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), squeeze=False, sharey=True)
    for axis, arm in zip(axes.flat, arms):
        results = all_results[arm]
        widths = sorted(results)
        for name in results[widths[0]]:
            axis.plot(widths, [results[w][name] for w in widths], marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_title(f"{arm[0]}, {arm[1]}")
        axis.set_xlabel("width (n_embd)")
        axis.set_ylabel("output RMS after training")
    for axis in list(axes.flat)[len(arms):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("Coordinate check: flat in width under μP, growing under sp")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    args = parse_args()
    print(f"{machine()}; widths {args.widths}, base width {args.widths[0]}, {args.steps} steps at lr {args.lr}, "
          f"seeds {args.seeds}")
    all_results = {}
    for optimizer in args.optimizers:
        setup = CoordCheckSetup(base_width=args.widths[0], seq_len=16, batch_size=2, steps=args.steps, lr=args.lr,
                                optimizer=optimizer)
        for parametrization in ("sp", "mup"):
            results = coord_check(args.widths, parametrization, setup, seeds=args.seeds)
            all_results[(parametrization, optimizer)] = results
            print(f"\n{parametrization}, {optimizer}\n{arm_table(results)}")
    plot(all_results, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
