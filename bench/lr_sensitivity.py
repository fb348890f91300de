#!/usr/bin/env python
"""Learning-rate sensitivity, after Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training
instabilities", arXiv 2309.14322): final validation loss against the peak learning rate over a grid, for the default
model and for QK-layernorm + z-loss, on the CPU quick-start model, with several seeds. Prints a table per arm, the
arms' "lr sensitivity" and writes lr_sensitivity.png and lr_sensitivity.json.

lr sensitivity (their definition) = the mean over the grid of min(L(lr), L0) - min over the grid of L, with L0 the
loss at initialisation (ln of the vocabulary): how much the loss suffers, on average, from not having picked the best
learning rate, a diverged run counting as L0. Lower is more robust.

    python bench/lr_sensitivity.py --steps 200 --seeds 1337 1338       # 6 rates x 2 arms x 2 seeds, ~1 h on 2 cores
    python bench/lr_sensitivity.py --steps 30 --seeds 1 --lrs 1e-3 1e-2 --out /tmp/lrs   # a quick look
    python bench/lr_sensitivity.py --sweep configs/sweeps/lr-sensitivity-124m.yaml --out reports/lrs  # the GPU
                                                      # sweep at 124M, after scripts/sweep.py has trained it

Every run is an ordinary run folder made by the sweep machinery (an interrupted benchmark resumes).
"""

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
ARMS = {"default": {}, "qk_norm+z_loss": {"qk_norm": True, "z_loss": 1e-4}}


def variant_name(arm: str, lr: float) -> str:
    return f"{arm.replace('+', '_')}_lr{lr:g}"


def sensitivity(losses: dict[float, float], initial: float) -> float:
    """Wortsman et al.'s lr sensitivity of one arm: E_lr[min(L(lr), L0)] - min_lr L(lr)."""
    capped = [min(v, initial) if math.isfinite(v) else initial for v in losses.values()]
    return float(np.mean(capped) - min(capped))


def cpu_grid(args, out: Path) -> Path:
    """The sweep file of the CPU grid: every arm at every rate, min_lr a tenth of the peak."""
    variants = {variant_name(arm, lr): {**extra, "max_lr": lr, "min_lr": lr / 10} for arm, extra in ARMS.items()
                for lr in args.lrs}
    sweep = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": args.seeds,
             "overrides": {"max_steps": args.steps, "warmup_steps": max(1, args.steps // 10),
                           "eval_every": args.steps, "sample_every": 0, "save_every": args.steps, "keep_last": 1},
             "variants": variants}
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    return out / "sweep.yaml"


def arm_of(settings: dict) -> str:
    return "qk_norm+z_loss" if settings.get("qk_norm") else "default"


def collect(config) -> tuple[dict, list[float], float]:
    """Final validation loss per arm, rate and seed from the sweep's run folders (a diverged run: inf)."""
    from training.analysis.runs import load_run
    from training.layout import Tags
    from training.sweeps.runner import run_status

    lrs = sorted({float(config.arguments(v, config.seeds[0])["max_lr"]) for v in config.variants})
    results = {arm: {lr: [] for lr in lrs} for arm in sorted({arm_of(v) for v in config.variants.values()},
                                                              key=list(ARMS).index)}
    initial = None
    for variant, settings in config.variants.items():
        for seed in config.seeds:
            status = run_status(config, variant, seed)
            if status not in ("done", "diverged"):
                raise SystemExit(f"{config.run_dir(variant, seed)} is {status}: train the sweep first "
                                 f"(scripts/sweep.py {config.path}).")
            run = load_run(config.run_dir(variant, seed))
            _, val = run.series(Tags.VAL_LOSS)
            initial = initial or math.log(run.vocab_size)
            lr = float(config.arguments(variant, seed)["max_lr"])
            results[arm_of(settings)][lr].append(float(val[-1]) if status == "done" and len(val) else math.inf)
    return results, lrs, initial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2],
                        help="Peak learning rates (min_lr is a tenth of each).")
    parser.add_argument("--sweep", default=None,
                        help="Summarise this sweep file's runs instead of the CPU grid, once scripts/sweep.py has "
                             "trained them (e.g. configs/sweeps/lr-sensitivity-124m.yaml on GPUs); arms by qk_norm.")
    parser.add_argument("--out", default=None, help="Folder for the runs (CPU grid), the table's JSON and the plot.")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.common import machine, table
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep

    out = Path(args.out or tempfile.mkdtemp(prefix="lr_sensitivity_"))
    out.mkdir(parents=True, exist_ok=True)
    config = load_sweep(args.sweep or cpu_grid(args, out))
    if not args.sweep:
        run_sweep(config, say=print)
    results, lrs, initial = collect(config)
    steps = config.arguments(next(iter(config.variants)), config.seeds[0]).get("max_steps")

    rows, summary = [], {}
    for arm in results:
        means = {lr: float(np.mean(v)) for lr, v in results[arm].items()}
        per_seed = [sensitivity({lr: results[arm][lr][i] for lr in lrs}, initial) for i in range(len(config.seeds))]
        summary[arm] = {"final_val_loss": {str(lr): results[arm][lr] for lr in lrs},
                        "lr_sensitivity": sensitivity(means, initial), "lr_sensitivity_per_seed": per_seed,
                        "best_lr": min(means, key=means.get), "best_loss": min(means.values())}
        for lr in lrs:
            values = results[arm][lr]
            spread = f" +- {np.std(values, ddof=1):.3f}" if len(values) > 1 and all(map(math.isfinite, values)) else ""
            rows.append([arm, f"{lr:g}", f"{np.mean(values):.4f}{spread}"])
    print(machine())
    print(f"{steps} steps per run, seeds {config.seeds}, L0 = ln(vocab) = {initial:.3f}; runs in {config.output_dir}")
    print(table(["arm", "peak lr", "final val loss (mean +- sd over seeds)"], rows))
    print(table(["arm", "lr sensitivity (seed-mean curve)", "per seed", "best lr", "best loss"],
                [[arm, f"{s['lr_sensitivity']:.4f}", ", ".join(f"{v:.4f}" for v in s["lr_sensitivity_per_seed"]),
                  f"{s['best_lr']:g}", f"{s['best_loss']:.4f}"] for arm, s in summary.items()]))
    (out / "lr_sensitivity.json").write_text(json.dumps({"steps": steps, "seeds": config.seeds, "lrs": lrs,
                                                         "initial_loss": initial, "arms": summary}, indent=2))
    plot(results, lrs, initial, out / "lr_sensitivity.png")
    print(f"wrote {out / 'lr_sensitivity.png'} and lr_sensitivity.json")


def plot(results: dict, lrs: list[float], initial: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for arm, values in results.items():
        means = [min(np.mean(values[lr]), initial) for lr in lrs]
        low = [min(np.min(values[lr]), initial) for lr in lrs]
        high = [min(np.max(values[lr]), initial) for lr in lrs]
        axis.plot(lrs, means, marker="o", label=arm)
        axis.fill_between(lrs, low, high, alpha=0.2)
    axis.axhline(initial, color="grey", linestyle=":", label="loss at init (diverged)")
    axis.set_xscale("log")
    axis.set_xlabel("peak learning rate")
    axis.set_ylabel("final validation loss")
    axis.set_title("Learning-rate sensitivity (Wortsman et al. 2023)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
