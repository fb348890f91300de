#!/usr/bin/env python
"""Sample efficiency of Muon against AdamW: tokens each needs to reach the AdamW baseline's final validation loss
(per seed: both arms of a seed see the same data order), same model and data. Uses the sweep machinery (every arm x
seed is an ordinary run folder, so an interrupted benchmark resumes).

Two protocols:

- cosine (``--steps N``): each arm runs one cosine schedule of N steps; Muon's curve is read mid-schedule against
  AdamW's annealed end. Biased: an annealed end is lower than the same run's mid-schedule loss, so the arm compared
  mid-schedule is handicapped... and the arm that reaches the level before annealing looks better than it is.
- cool-downs (``--cooldown_at P1 P2 ...``, the fair one): each arm runs warmup-stable (no decay) to the largest
  point; from its checkpoints at every point P a branch cools down over ``--cooldown_fraction`` x P steps
  (scripts/cooldown.py's mechanism). Both arms are compared only at annealed ends, at the same token counts: the
  target is AdamW's cooled loss at the largest point whose cooled end reads the data at most once (``--target_point``
  to choose another), and Muon's tokens to reach it are interpolated between its own cooled points.

    python bench/sample_efficiency.py --cooldown_at 200 400 600 800 --seeds 1337 1338   # ~1.5 h on 2 CPU cores
    python bench/sample_efficiency.py --steps 1200 --seeds 1337 1338     # the cosine protocol, ~30 min
    python bench/sample_efficiency.py --steps 100 --out /tmp/se          # a quick look
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"), help="Base run preset.")
    parser.add_argument("--steps", type=int, default=1200, help="Optimizer steps per run.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--muon_lr", type=float, default=None, help="Muon's peak lr (default: the preset's max_lr).")
    parser.add_argument("--out", default=None, help="Output folder (default: a temporary folder).")
    parser.add_argument("--cooldown_at", type=int, nargs="+", default=None,
                        help="The fair protocol: cool down both arms from these steps of a warmup-stable run.")
    parser.add_argument("--cooldown_fraction", type=float, default=0.2,
                        help="Cool-down length as a fraction of the step it starts from (Hagele et al.: 10-20%%).")
    parser.add_argument("--target_point", type=int, default=None,
                        help="Cool-down protocol: AdamW's cooled loss from this point is the target (default: the "
                             "largest point whose cooled end reads the training data at most once).")
    args = parser.parse_args()
    if args.cooldown_at:
        cooldown_protocol(args)
        return
    sys.path.insert(0, str(REPO))  # bench/ is run as a script; the project itself is installed
    from bench.common import machine, table
    from training.analysis.runs import load_run
    from training.analysis.summaries import first_crossing
    from training.layout import Tags
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep

    out = Path(args.out or tempfile.mkdtemp(prefix="sample_efficiency_"))
    out.mkdir(parents=True, exist_ok=True)
    muon = {"optimizer": "muon", **({"muon_lr": args.muon_lr} if args.muon_lr else {})}
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": args.seeds,
        "overrides": {"max_steps": args.steps, "warmup_steps": max(1, args.steps // 10),
                      "eval_every": max(1, args.steps // 20), "sample_every": 0, "save_every": args.steps // 2},
        "variants": {"adamw": {}, "muon": muon}}))
    config = load_sweep(sweep_file)
    run_sweep(config)

    curves = {}
    for variant, seed in config.runs():
        run = load_run(config.run_dir(variant, seed))
        steps, val = run.series(Tags.VAL_LOSS)
        curves[(variant, seed)] = (steps * run.tokens_per_step, val)
    # Each seed's AdamW run defines that seed's target (its own final validation loss): both arms then see the same
    # data order, and the baseline reaches its target by construction (at the end, or earlier if its curve is not
    # monotone). A mean target over seeds would leave the baseline seed that ends above the mean "not reached".
    rows, ratios = [], []
    for seed in args.seeds:
        target = float(curves[("adamw", seed)][1][-1])
        needed = {arm: first_crossing(*curves[(arm, seed)], target) for arm in ("adamw", "muon")}
        ratio = needed["muon"] / needed["adamw"] if needed["muon"] is not None else None
        ratios.append(ratio)
        rows.append([seed, f"{target:.4f}", f"{curves[('muon', seed)][1][-1]:.4f}", f"{needed['adamw']:,.0f}",
                     "not reached" if needed["muon"] is None else f"{needed['muon']:,.0f}",
                     "n/a (> 1)" if ratio is None else f"{ratio:.3f}"])
    print(machine())
    print(f"{args.steps} steps x {curves[('adamw', args.seeds[0])][0][-1] / args.steps:,.0f} tokens per run from "
          f"{args.preset}; target per seed = that seed's AdamW final validation loss")
    print(table(["seed", "target (AdamW final val)", "Muon final val", "AdamW tokens to target",
                 "Muon tokens to target", "Muon / AdamW"], rows))
    if all(r is not None for r in ratios):
        spread = f" +- {np.std(ratios, ddof=1):.3f} (sd over {len(ratios)} seeds)" if len(ratios) > 1 else ""
        print(f"Muon / AdamW tokens to target: {np.mean(ratios):.3f}{spread}; target <= 0.67")
    else:
        print("Muon did not reach AdamW's final loss in every seed: the ratio is above 1 there.")

def cooldown_protocol(args) -> None:
    """Warmup-stable runs per arm and seed, cool-down branches from each point, compared at annealed ends."""
    import math

    sys.path.insert(0, str(REPO))
    from bench.common import machine, table
    from training.analysis.runs import load_run
    from training.analysis.summaries import first_crossing
    from training.cli import run_config_from_values
    from training.layout import RunLayout, Tags
    from training.sweeps.config import load_sweep
    from training.sweeps.runner import run_sweep
    from training.trainer.trainer import Trainer

    points = sorted(args.cooldown_at)
    out = Path(args.out or tempfile.mkdtemp(prefix="sample_efficiency_cooldowns_"))
    out.mkdir(parents=True, exist_ok=True)
    muon = {"optimizer": "muon", **({"muon_lr": args.muon_lr} if args.muon_lr else {})}
    sweep_file = out / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "base": str(Path(args.preset).resolve()), "output_dir": str(out / "stable"), "seeds": args.seeds,
        "overrides": {"max_steps": points[-1], "warmup_steps": max(1, points[0] // 5), "lr_schedule": "wsd",
                      "decay_fraction": 0.0, "eval_every": points[0], "sample_every": 0,
                      "save_every": math.gcd(*points), "keep_last": 0},
        "variants": {"adamw": {}, "muon": muon}}))
    config = load_sweep(sweep_file)
    run_sweep(config)

    cooled = {}  # (arm, seed) -> [(tokens, val loss)] at each point's annealed end
    dataset_tokens = None
    for arm, seed in config.runs():
        stable = RunLayout(config.run_dir(arm, seed))
        for point in points:
            steps = max(1, round(args.cooldown_fraction * point))
            branch = out / "cooldowns" / arm / f"seed{seed}" / f"from{point}"
            if not (RunLayout(branch).final_dir / "model.safetensors").exists():
                values = config.arguments(arm, seed)
                values.update(resume_from_checkpoint=str(stable.checkpoint_dir(point)), cooldown_steps=steps,
                              output_dir=str(branch), eval_every=steps, save_every=0, overwrite_output_dir=False)
                print(f"{arm} seed {seed}: cooling down from step {point} over {steps} steps", flush=True)
                trainer = Trainer(run_config_from_values(values))
                try:
                    trainer.train()
                finally:
                    trainer.close()
            run = load_run(branch)
            dataset_tokens = dataset_tokens or run.dataset_tokens
            _, val = run.series(Tags.VAL_LOSS)
            cooled.setdefault((arm, seed), []).append(((point + steps) * run.tokens_per_step, float(val[-1])))

    target_index = choose_target(points, [t for t, _ in cooled[("adamw", args.seeds[0])]], dataset_tokens,
                                 args.target_point)
    rows, ratios = [], []
    for seed in args.seeds:
        target_tokens, target = cooled[("adamw", seed)][target_index]
        # Linear between cooled points; a first point already below the target counts at its own tokens (an upper
        # bound: nothing is known before it).
        reached = first_crossing(*np.array(cooled[("muon", seed)]).T, target)
        ratio = reached / target_tokens if reached is not None else None
        ratios.append(ratio)
        for (tokens, adamw), (_, muon_loss) in zip(cooled[("adamw", seed)], cooled[("muon", seed)]):
            rows.append([seed, f"{tokens:,.0f}", f"{tokens / dataset_tokens:.2f}" if dataset_tokens else "?",
                         f"{adamw:.4f}", f"{muon_loss:.4f}", f"{muon_loss - adamw:+.4f}"])
        rows.append([seed, f"Muon tokens to AdamW's cooled loss from step {points[target_index]}", "",
                     f"{target:.4f}", "not reached" if reached is None else f"{reached:,.0f}",
                     "n/a" if ratio is None else f"ratio {ratio:.3f}"])
    print(machine())
    print(f"warmup-stable runs to step {points[-1]}; cool-downs of {args.cooldown_fraction:g} x the start step from "
          f"steps {points}; {args.preset}; target: AdamW's cooled loss from step {points[target_index]}")
    print(table(["seed", "tokens (after cool-down)", "epochs of the training data", "AdamW cooled val",
                 "Muon cooled val", "Muon - AdamW"], rows))
    if all(r is not None for r in ratios):
        spread = f" +- {np.std(ratios, ddof=1):.3f} (sd over {len(ratios)} seeds)" if len(ratios) > 1 else ""
        print(f"Muon / AdamW tokens to AdamW's cooled loss from step {points[target_index]}: {np.mean(ratios):.3f}"
              f"{spread} (target <= 0.6)")
    else:
        print("Muon did not reach AdamW's target in every seed.")


def choose_target(points: list[int], tokens: list[float], dataset_tokens: int | None, requested: int | None) -> int:
    """Index of the point whose AdamW cooled loss is the target: the requested one, else the largest whose cooled end
    reads the training data at most once (past one epoch the validation loss also measures memorisation, which the
    two optimizers need not share), else the first."""
    if requested is not None:
        if requested not in points:
            raise SystemExit(f"--target_point {requested} is not one of --cooldown_at {points}.")
        return points.index(requested)
    if dataset_tokens:
        within = [i for i, t in enumerate(tokens) if t <= dataset_tokens]
        if within:
            return within[-1]
        print(f"Note: every cooled end reads the {dataset_tokens:,} training tokens more than once.")
    return 0

if __name__ == "__main__":
    main()
