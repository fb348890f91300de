#!/usr/bin/env python
"""How well the loss forecast (Tissue et al. 2024's law, training/analysis/forecast.py) predicts runs it has not
seen: fit the law on part of a run, predict the final validation loss of runs with other lengths and schedules
(the same model, data and peak learning rate, each reading the data at most once), then train those runs and
compare. Three cases:

- cosine: fitted on a 200-step cosine run (validation every 10 steps), predicting fresh cosine and WSD runs 1.5-2.5x
  as long (the original cases);
- wsd: fitted on a 200-step stable run (WSD before its decay: constant lr after warmup) jointly with a 40-step
  cool-down branch from its last checkpoint (scripts/cooldown.py's machinery), predicting the same fresh runs, each
  with a full-length cool-down trained separately (the law's C comes from the branch alone), and the stable run
  alone (C cannot be told: the forecast must say so);
- quick-start: fitted on the first 300 steps of configs/cpu-tiny.yaml's own 400-step run (validation every 50
  steps), predicting the end of that run and a fresh 580-step run of the preset (just under one epoch).

Target: within 2%.

    OMP_NUM_THREADS=1 python bench/forecast.py --seeds 1337 1338 --out /tmp/fc_bench   # ~1.5 h on 2 free CPU cores
    python bench/forecast.py --seeds 1337 1338 --out /tmp/fc_bench --no_train   # evaluate what is trained (3 min)
    python bench/forecast.py --seeds 1337 --cases wsd quick --out /tmp/fc_bench  # train only some cases

Runs are ordinary run folders made by the sweep machinery (an interrupted benchmark resumes; --no_train evaluates
the runs already trained and skips the missing ones).
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
QUICK_FIT_STEPS = 300
QUICK_TARGET_STEPS = 580


def sweeps(args, out: Path):
    """The main sweep (cosine and WSD cases, every seed) and the quick-start sweep (the preset's own runs)."""
    from training.sweeps.config import load_sweep

    n = args.fit_steps
    targets = {"cosine_2x": {"max_steps": 2 * n}, "wsd_2x": {"max_steps": 2 * n, "lr_schedule": "wsd"},
               "cosine_2.5x": {"max_steps": 5 * n // 2}, "wsd_1.5x": {"max_steps": 3 * n // 2, "lr_schedule": "wsd"}}
    variants = {"fitted": {"max_steps": n, "eval_every": max(1, n // 20)},
                "stable": {"max_steps": n, "eval_every": max(1, n // 20), "lr_schedule": "wsd",
                           "decay_fraction": 0.0},
                **{name: {**spec, "eval_every": spec["max_steps"]} for name, spec in targets.items()}}
    main = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "runs"), "seeds": args.seeds,
            "overrides": {"warmup_steps": max(1, n // 5), "sample_every": 0, "save_every": 0, "keep_last": 1},
            "variants": variants}
    quick = {"base": str(Path(args.preset).resolve()), "output_dir": str(out / "quick"), "seeds": args.seeds[:1],
             "overrides": {"sample_every": 0, "save_every": 0, "keep_last": 1},
             "variants": {"preset": {}, f"preset_{QUICK_TARGET_STEPS}": {"max_steps": QUICK_TARGET_STEPS,
                                                                           "eval_every": QUICK_TARGET_STEPS}}}
    (out / "sweep.yaml").write_text(yaml.safe_dump(main, sort_keys=False))
    (out / "quick.yaml").write_text(yaml.safe_dump(quick, sort_keys=False))
    return load_sweep(out / "sweep.yaml"), load_sweep(out / "quick.yaml"), targets


def branch_dir(config, seed: int, step: int) -> Path:
    stable = config.run_dir("stable", seed)
    return stable.with_name(f"{stable.name}-cooldown-{step}")  # scripts/cooldown.py's default place


def train(config, quick, args) -> None:
    """The runs the cases need, one seed at a time, the most informative first (a benchmark cut short still
    measures something); each cool-down branch right after its stable run."""
    sys.path.insert(0, str(REPO / "scripts"))
    from cooldown import branch_values

    from training.cli import run_config_from_values
    from training.layout import checkpoint_name
    from training.trainer.trainer import Trainer
    from training.sweeps.runner import run_sweep

    def runs(sweep, names, seed):
        sub = dataclasses.replace(sweep, seeds=[seed], variants={k: v for k, v in sweep.variants.items()
                                                                  if k in names})
        run_sweep(sub, say=print)

    n, cool = args.fit_steps, args.fit_steps // 5
    if "quick" in args.cases:
        runs(quick, tuple(quick.variants), quick.seeds[0])
    for seed in config.seeds:
        if "cosine" in args.cases:
            runs(config, ("fitted",), seed)
        if "wsd" in args.cases:
            runs(config, ("stable",), seed)
            where = branch_dir(config, seed, n)
            if not (where / "final").is_dir():
                checkpoint = config.run_dir("stable", seed) / "checkpoints" / checkpoint_name(n)
                print(f"cool-down branch of stable seed {seed}: {cool} steps from step {n} in {where}")
                values = branch_values(checkpoint, cool, str(where), ["--eval_every", str(max(1, cool // 8))])
                values["overwrite_output_dir"] = True  # an interrupted branch starts again
                trainer = Trainer(run_config_from_values(values))
                try:
                    trainer.train()
                finally:
                    trainer.close()
            runs(config, ("wsd_2x",), seed)  # the target with a full-length cool-down first
        if "cosine" in args.cases or "wsd" in args.cases:
            runs(config, tuple(targets_of(config)), seed)


def targets_of(config) -> list[str]:
    return [name for name in config.variants if name not in ("fitted", "stable")]


def finished(run_dir: Path) -> bool:
    return (run_dir / "final").is_dir()


def truncated(run, last_step: int):
    """The run as it was at ``last_step`` (what a forecast made mid-run sees)."""
    scalars = {tag: {s: v for s, v in series.items() if s <= last_step} for tag, series in run.scalars.items()}
    return dataclasses.replace(run, scalars={tag: series for tag, series in scalars.items() if series})


def final_val(run_dir: Path) -> float | None:
    from training.analysis.runs import load_run
    from training.layout import Tags

    if not finished(run_dir):
        return None
    _, val = load_run(run_dir).series(Tags.VAL_LOSS)
    return float(val[-1]) if len(val) else None


def evaluate(config, quick, targets, args) -> None:
    from bench.common import machine, table
    from training.analysis.forecast import forecast
    from training.analysis.runs import load_run

    n = args.fit_steps
    rows, errors = [], {}

    def compare(case: str, seed: int, fitted, name: str, spec: dict, target_dir: Path, continuing: bool = False,
                branches=None):
        measured = final_val(target_dir)
        if measured is None:
            return
        spec = dict(spec)
        steps = spec.pop("max_steps")
        if continuing:
            result = forecast(fitted, max_steps=steps, bootstrap=args.bootstrap, branches=branches)
            row = result.current_schedule
        else:
            result = forecast(fitted, schedules=[{"max_steps": steps, **spec}], bootstrap=args.bootstrap,
                              branches=branches)
            row = result.horizons[-1] if result.horizons and result.horizons[-1]["steps"] == steps else None
        if row is None or row.get("loss") is None:
            rows.append([case, seed, name, steps, f"{measured:.4f}", "refused", "", "", "; ".join(result.warnings),
                         ""])
            return
        error = (row["loss"] - measured) / measured
        errors.setdefault((case, name), []).append(error)
        forecast_text = f"{row['loss']:.4f} ({row['low']:.4f}-{row['high']:.4f})"
        inside = "yes" if row["low"] <= measured <= row["high"] else "no"
        trusted = "yes" if row["trusted"] else "no: " + "; ".join(row["warnings"])[:70]
        rows.append([case, seed, name, steps, f"{measured:.4f}", forecast_text, f"{100 * error:+.2f}%", inside,
                     trusted, f"{result.fit['decay']:g}"])

    # What each target run is, said in full (the stable run's own settings hold no cool-down, the preset's are a
    # cosine with a 20% cool-down fraction for WSD).
    targets = {name: {"lr_schedule": "cosine", "decay_fraction": 0.2, **spec} for name, spec in targets.items()}
    for seed in config.seeds:
        fitted_dir = config.run_dir("fitted", seed)
        if finished(fitted_dir):
            fitted = load_run(fitted_dir)
            for name, spec in targets.items():
                compare("cosine", seed, fitted, name, spec, config.run_dir(name, seed))
        stable_dir = config.run_dir("stable", seed)
        if finished(stable_dir) and finished(branch_dir(config, seed, n)):
            stable = load_run(stable_dir)  # its cool-down branch beside it joins the fit
            for name, spec in targets.items():
                compare("wsd", seed, stable, name, spec, config.run_dir(name, seed))
        if finished(stable_dir):  # the stable run alone: what it can and cannot tell
            alone = load_run(stable_dir)
            for name in ("wsd_2x",):
                compare("stable alone", seed, alone, name, targets[name], config.run_dir(name, seed), branches=[])
    seed = quick.seeds[0]
    if finished(quick.run_dir("preset", seed)):
        preset = truncated(load_run(quick.run_dir("preset", seed)), QUICK_FIT_STEPS)
        compare("quick-start", seed, preset, "preset (own end)", {"max_steps": 400}, quick.run_dir("preset", seed),
                continuing=True)
        compare("quick-start", seed, preset, f"fresh {QUICK_TARGET_STEPS}", {"max_steps": QUICK_TARGET_STEPS},
                quick.run_dir(f"preset_{QUICK_TARGET_STEPS}", seed))
    print(machine())
    print(f"fit on {n}-step runs (cosine, or stable + a {n // 5}-step cool-down branch) and on the first "
          f"{QUICK_FIT_STEPS} steps of {Path(args.preset).name}; bootstrap {args.bootstrap}")
    print(table(["case", "seed", "target run", "steps", "measured final val", "forecast (5-95%)", "error",
                 "in interval", "trusted", "lambda"], rows))
    print(table(["case", "target", "mean |error|", "max |error|"],
                [[case, name, f"{100 * np.mean(np.abs(e)):.2f}%", f"{100 * np.max(np.abs(e)):.2f}%"]
                 for (case, name), e in errors.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "cpu-tiny.yaml"))
    parser.add_argument("--fit_steps", type=int, default=200, help="Length of the fitted runs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--bootstrap", type=int, default=None, help="Bootstrap refits (default: the forecast's).")
    parser.add_argument("--out", default=None)
    parser.add_argument("--no_train", action="store_true", help="Only evaluate the runs already trained.")
    parser.add_argument("--train_only", action="store_true", help="Only train.")
    parser.add_argument("--cases", nargs="+", choices=("cosine", "wsd", "quick"), default=["cosine", "wsd", "quick"],
                        help="The cases to train (evaluation reports whatever is trained).")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.bootstrap is None:
        from training.analysis.forecast import BOOTSTRAP

        args.bootstrap = BOOTSTRAP
    out = Path(args.out or tempfile.mkdtemp(prefix="forecast_"))
    out.mkdir(parents=True, exist_ok=True)
    config, quick, targets = sweeps(args, out)
    if not args.no_train:
        train(config, quick, args)
    if not args.train_only:
        evaluate(config, quick, targets, args)


if __name__ == "__main__":
    main()
