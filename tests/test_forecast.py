"""Loss forecasts (Tissue et al. 2024): the fit recovers a known law, predicts other schedules, says when not to
trust it (C not identified, diverged, past one epoch, a curve the law does not follow), never prints an impossible
loss, computes any horizon without per-step arrays, labels what each number assumes, and the script prints JSON for
this run continued to N steps."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from training.analysis.forecast import (
    Plan,
    areas,
    continued_schedule,
    fit_run,
    forecast,
    law,
    planned_lrs,
    run_schedule,
    schedule_factors,
)
from training.analysis.runs import Run
from training.optim.schedules import Anchor, Schedule

TRUE = (2.0, 3.0, 0.5, 0.002)  # L0, A, alpha, C with learning rates in units of the peak
PEAK = 3e-3


def law_run(lrs: np.ndarray, fitted_steps: int, config: dict, noise=0.0, every=10, params=TRUE, name="synthetic",
            run_dir=Path("."), epochs=0.0, seed=0) -> Run:
    """A run whose losses follow ``params`` under the learning rates ``lrs`` (per step), times (1 + noise * N(0,1))."""
    s1, s2 = areas(lrs / PEAK)
    loss = law(params, s1, s2) * (1 + noise * np.random.default_rng(seed).standard_normal(len(lrs)))
    steps = range(1, fitted_steps + 1)
    scalars = {"train/lr": {s: float(lrs[s - 1]) for s in steps},
               "train/loss": {s: float(loss[s - 1]) for s in steps},
               "val/loss": {s: float(loss[s - 1]) for s in steps if s % every == 0},
               "run/tokens_per_step": {0: 512.0}, "train/epoch": {s: epochs for s in steps}}
    return Run(name=name, run_dir=run_dir, scalars=scalars, config={"train": config})


def synthetic_run(max_steps=400, fitted_steps=400, kind="cosine", noise=0.0, epochs=0.0, every=10, params=TRUE,
                  run_dir=Path("."), **train) -> Run:
    """A run whose validation loss follows the law exactly (plus noise) under its own schedule."""
    config = {"max_lr": PEAK, "min_lr": 3e-4, "warmup_steps": 20, "max_steps": max_steps, "lr_schedule": kind,
              "decay_fraction": 0.2, **train}
    lrs = PEAK * Schedule.from_args(config).factors()
    return law_run(lrs, fitted_steps, config, noise, every, params, run_dir=run_dir, epochs=epochs)


def truth(kind="cosine", steps=400, **train) -> float:
    config = {"max_lr": PEAK, "min_lr": 3e-4, "warmup_steps": 20, "max_steps": steps, "lr_schedule": kind,
              "decay_fraction": 0.2, **train}
    s1, s2 = areas(Schedule.from_args(config).factors())
    return float(law(TRUE, s1, s2)[-1])


def rows(result) -> list[dict]:
    return [r for r in [result.current_schedule, *result.horizons] if r]


def test_the_fit_recovers_a_known_law_and_predicts_other_schedules():
    run = synthetic_run(max_steps=400, fitted_steps=200)  # half-way through its cosine
    fit = fit_run(run, bootstrap=5)
    assert fit.trusted and fit.source == "validation loss" and fit.residual_rms < 1e-4 and fit.identified
    for kind, steps in (("cosine", 800), ("wsd", 800), ("cosine", 400)):
        schedule = run_schedule(run, steps, lr_schedule=kind)
        predicted = fit.final(planned_lrs(run, schedule, keep_history=False))[0]
        assert predicted == pytest.approx(truth(kind, steps), rel=2e-3), (kind, steps)


def test_the_forecast_answers_the_users_questions_with_intervals():
    run = synthetic_run(max_steps=400, fitted_steps=200, noise=0.01)
    run.dataset_tokens = 512 * 1000
    run.reference_loss = truth("cosine", 800)
    result = forecast(run, schedules=[{"lr_schedule": "wsd", "max_steps": 600, "decay_steps": 120}], bootstrap=10)
    own = result.current_schedule
    assert own["steps"] == 400 and own["low"] <= truth() <= own["high"] and own["high"] > own["low"]
    assert [h["steps"] for h in result.horizons] == [1000, 600]  # a full epoch, then the asked-for WSD
    assert result.horizons[0]["loss"] < own["loss"]  # more data, lower loss
    assert result.trusted and own["trusted"] and result.horizons[1]["trusted"]
    assert not result.horizons[0]["trusted"] and "5x past the last fitted step" in " ".join(
        result.horizons[0]["warnings"])
    # The target is what the same cosine reaches at 800 steps: the interval of the answer holds 800 steps.
    assert result.target["low_tokens"] <= 800 * 512 <= result.target["high_tokens"]
    assert result.target["tokens"] == result.target["steps"] * 512


def test_it_says_when_not_to_trust_it():
    assert "still in its warmup" in " ".join(fit_run(synthetic_run(fitted_steps=15), bootstrap=0).warnings)
    assert "only 6 loss point(s)" in " ".join(fit_run(synthetic_run(fitted_steps=26), bootstrap=0).warnings)
    repeated = fit_run(synthetic_run(fitted_steps=200, epochs=1.0), bootstrap=0)
    assert not repeated.trusted and "read its data more than once" in " ".join(repeated.warnings)


def test_few_validations_take_their_shape_from_the_training_loss_and_forecast_the_validation_loss():
    # The quick-start preset validates every 50 steps: 6 points by step 300. Its training loss (other text than the
    # validation split) runs lower; a fit on it alone forecast a validation loss several percent too low.
    run = synthetic_run(max_steps=400, fitted_steps=300, every=50, noise=0.002)
    for step in run.scalars["train/loss"]:
        run.scalars["train/loss"][step] *= 0.93
    fit = fit_run(run, bootstrap=5)
    assert fit.source.startswith("validation loss (6 points") and fit.steps == [50, 100, 150, 200, 250, 300]
    assert math.exp(fit.offset) == pytest.approx(0.93, rel=0.01)
    result = forecast(run, bootstrap=5)
    assert result.current_schedule["loss"] == pytest.approx(truth(), rel=0.01)


# ------------------------------------------------------------------------------------------- identifiability
def stable_and_branch(tmp_path: Path, stable_steps=300, cool=60, noise=0.0):
    """A warmup-stable run (constant lr after warmup) in tmp_path/stable with a checkpoint at its end, and a cool-down
    branch from it (1-sqrt to the floor over ``cool`` steps) as scripts/cooldown.py and load_run make it: the parent's
    scalars up to the branch step, then its own."""
    config = {"max_lr": PEAK, "min_lr": 3e-4, "warmup_steps": 20, "max_steps": stable_steps, "lr_schedule": "wsd",
              "decay_fraction": 0.0}
    stable_dir = tmp_path / "stable"
    (stable_dir / "checkpoints" / "step_0000300").mkdir(parents=True)
    stable = synthetic_run(max_steps=stable_steps, fitted_steps=stable_steps, kind="wsd", decay_fraction=0.0,
                           noise=noise, run_dir=stable_dir)
    schedule = Schedule.from_args(config)
    branch_schedule = Schedule.from_args({**config, "max_steps": stable_steps + cool},
                                         anchor=Anchor(stable_steps, schedule.factor(stable_steps), "1-sqrt"))
    lrs = PEAK * branch_schedule.factors()
    branch = law_run(lrs, stable_steps + cool, {**config, "max_steps": stable_steps + cool, "cooldown_steps": cool},
                     noise, every=5, name="stable-cooldown-300", run_dir=tmp_path / "stable-cooldown-300")
    branch.branch = {"parent_run": str(stable_dir), "checkpoint": str(stable_dir / "checkpoints" / "step_0000300"),
                     "step": stable_steps, "cooldown": {"step": stable_steps, "steps": cool}}
    return stable, branch


def test_a_stable_history_cannot_tell_a_cool_down_and_says_which_branch_would(tmp_path):
    stable, _ = stable_and_branch(tmp_path)
    wsd = {"lr_schedule": "wsd", "max_steps": 600, "decay_steps": 120}
    result = forecast(stable, schedules=[wsd], bootstrap=10)
    fit = result.fit
    assert not fit["identified"] and fit["params"][3] == 0.0
    assert result.current_schedule["trusted"]  # continuing at the peak to its end: no annealing to know
    decaying = [r for r in result.horizons if r["steps"] in (345, 600)]  # its cool-down, and the fresh WSD
    assert len(decaying) == 2
    for row in decaying:
        assert not row["trusted"] and any("not identified" in w for w in row["warnings"])
        assert row["loss"] - row["low"] > 0.05  # not a zero-width interval: the gain is unknown
    fresh_wsd = decaying[1]
    assert fresh_wsd["low"] <= truth("wsd", 600, decay_steps=120) <= fresh_wsd["high"]
    assert f"python scripts/cooldown.py {tmp_path / 'stable' / 'checkpoints' / 'step_0000300'} --steps 45" \
        in result.advice


def test_a_cool_down_branch_gives_the_fit_its_c(tmp_path):
    stable, branch = stable_and_branch(tmp_path, noise=0.001)
    fit = fit_run(stable, bootstrap=5, branches=[branch])
    assert fit.identified and fit.branch_points and fit.branch_points[0]["step"] == 300
    assert fit.params[3] == pytest.approx(TRUE[3], rel=0.25)
    wsd = {"lr_schedule": "wsd", "max_steps": 600, "decay_steps": 120}
    result = forecast(stable, schedules=[wsd], bootstrap=10, branches=[branch])
    row = result.horizons[-1]
    assert row["trusted"] and row["loss"] == pytest.approx(truth("wsd", 600, decay_steps=120), rel=0.01)
    assert result.advice is None


def test_branches_beside_the_run_are_found(tmp_path):
    from training.analysis.forecast import find_branches

    run_dir, other = tmp_path / "wsd", tmp_path / "other"
    for folder in (run_dir, tmp_path / "wsd-cooldown-100", other, tmp_path / "other-cooldown-50"):
        folder.mkdir()
    (tmp_path / "wsd-cooldown-100" / "branch.json").write_text(json.dumps({"parent_run": str(run_dir), "step": 100}))
    (tmp_path / "other-cooldown-50" / "branch.json").write_text(json.dumps({"parent_run": str(other), "step": 50}))
    run = Run(name="wsd", run_dir=run_dir, scalars={})
    assert find_branches(run) == [tmp_path / "wsd-cooldown-100"]


# ------------------------------------------------------------------------------------------- bounds
def test_no_forecast_is_impossible():
    # A short, steep run whose law anneals a lot: the old fit extrapolated C * S2 past L0 (negative losses).
    steep = (3.0, 3.0, 0.5, 0.01)
    run = synthetic_run(max_steps=60, fitted_steps=60, warmup_steps=2, every=1, noise=0.003, params=steep)
    run.dataset_tokens = 512 * 5000
    result = forecast(run, max_steps=100_000, schedules=[{"max_steps": 1}, {"max_steps": 20_000},
                                                         {"max_steps": 20_000, "min_lr": 0.0}], bootstrap=10)
    initial = run.scalars["train/loss"][1]
    for row in rows(result):
        assert 0 < row["low"] <= row["loss"] <= row["high"] <= initial, row
    assert result.initial_loss == initial and len(rows(result)) == 4
    l0, _, _, c = result.fit["params"]
    assert l0 - c * 0.9 / (1 - result.fit["decay"]) >= -1e-9  # the infinitely long anneal of its schedules stays positive
    # The law's value for a 1-step run is above the initial loss (refused) or at least outside the fitted range;
    # annealing to 0 instead of the run's floor goes past what the bound covers: refused or said.
    answers = {(r["steps"], "0x" in r["what"]): r for r in [*result.horizons, *result.refused]}
    one_step, to_zero = answers[(1, False)], answers[(20_000, True)]
    assert "outside (0, 7.2" in one_step.get("refused", "") or \
        "shorter than the fitted range" in " ".join(one_step.get("warnings", []))
    assert "impossible" in to_zero.get("refused", "") or "more than the" in " ".join(to_zero.get("warnings", []))
    assert result.refused and all("outside (0," in r["refused"] for r in result.refused)


def test_an_absurd_horizon_is_answered_without_per_step_arrays(monkeypatch):
    run = synthetic_run(max_steps=400, fitted_steps=200)
    run.reference_loss = 0.1  # below anything reachable (the law's fully annealed floor is 0.2)
    real = {name: getattr(np, name) for name in ("arange", "empty", "zeros", "ones", "full", "empty_like")}

    def guarded(name):
        def allocate(*args, **kwargs):
            result = real[name](*args, **kwargs)
            assert result.size < 10_000_000, f"np.{name} of {result.size:,} elements"
            return result
        return allocate

    def guarded_arange(*args, **kwargs):
        stop = args[1] if len(args) > 1 else args[0]
        start = args[0] if len(args) > 1 else 0
        assert stop - start < 10_000_000, f"np.arange of {stop - start:,} elements"
        return real["arange"](*args, **kwargs)

    for name in ("empty", "zeros", "ones", "full"):
        monkeypatch.setattr(np, name, guarded(name))
    monkeypatch.setattr(np, "arange", guarded_arange)
    started = time.perf_counter()
    result = forecast(run, max_steps=10 ** 12, schedules=[{"lr_schedule": "wsd", "max_steps": 10 ** 12,
                                                           "decay_steps": 10 ** 11}], bootstrap=5)
    assert time.perf_counter() - started < 30
    for row in rows(result):
        assert row["steps"] == 10 ** 12 and 0 < row["loss"] and not row["trusted"]
    assert result.target["steps"] is None
    with pytest.raises(ValueError, match="too long"):
        planned_lrs(run, run_schedule(run, 10 ** 12), keep_history=False)


def test_the_areas_of_a_plan_are_those_of_its_steps():
    for schedule in (Schedule("cosine", 20, 300_000, 0.1), Schedule("wsd", 20, 250_000, 0.1, 50_000, "1-sqrt"),
                     Schedule("wsd", 20, 200_000, 0.1, 0), Schedule("cosine", 20, 300_000, 0.0,
                                                                    anchor=Anchor(100_000, 0.7, "cosine"))):
        assert np.allclose(schedule_factors(schedule, np.arange(1000.0)), schedule.factors(1000))
        for end in (schedule.max_steps, schedule.max_steps + 50_000, schedule.max_steps // 3):
            factors = schedule_factors(schedule, np.arange(end, dtype=float))
            s1, s2 = areas(factors)
            got = Plan(factors[:5000], schedule, end).areas()
            assert got[0] == pytest.approx(s1[-1], rel=1e-9) and got[1] == pytest.approx(s2[-1], rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------------------------- refusals
def test_a_diverged_run_is_not_forecast():
    nan_run = synthetic_run(max_steps=400, fitted_steps=200)
    nan_run.scalars["train/loss"][150] = float("nan")
    climbing = synthetic_run(max_steps=400, fitted_steps=300)
    for step in range(150, 301):
        climbing.scalars["train/loss"][step] += 0.02 * (step - 150)
        if step % 10 == 0:
            climbing.scalars["val/loss"][step] += 0.02 * (step - 150)
    # Blown up at once and never back (--max_lr 5): a flat curve far above its start, whose first validation (at
    # step 10) is already high; its start is its first logged loss, not its first validation.
    blown = synthetic_run(max_steps=400, fitted_steps=200)
    for step in range(2, 201):
        blown.scalars["train/loss"][step] = 200.0 + (step % 7) * 0.1
        if step % 10 == 0:
            blown.scalars["val/loss"][step] = 199.0
    for run in (nan_run, climbing, blown):
        result = forecast(run, bootstrap=0)
        assert result.current_schedule is None and not result.trusted and not result.horizons
        assert "diverged" in " ".join(result.warnings)


# ------------------------------------------------------------------------------------------- honest intervals
def test_a_noisy_run_lies_inside_its_own_intervals():
    run = synthetic_run(max_steps=400, fitted_steps=400, noise=0.01, every=5)
    fit = fit_run(run, bootstrap=20)
    lrs = planned_lrs(run, run_schedule(run), keep_history=True)
    inside = [fit.final(lrs[:step])[1] <= loss <= fit.final(lrs[:step])[2] for step, loss in zip(fit.steps,
                                                                                               fit.losses)]
    assert np.mean(inside) >= 0.8 and fit.trusted and fit.outside <= 0.2 * len(inside)


def test_a_curve_the_law_does_not_follow_is_untrusted():
    run = synthetic_run(max_steps=400, fitted_steps=400, noise=0.002, every=5)
    for step in run.scalars["val/loss"]:  # a plateau then a drop: no power law
        run.scalars["val/loss"][step] += 0.3 * math.tanh((step - 200) / 20)
    fit = fit_run(run, bootstrap=10)
    assert not fit.trusted and "outside the 5-95% band" in " ".join(fit.warnings)


# ------------------------------------------------------------------------------------------- epochs
def test_a_forecast_past_one_epoch_is_untrusted_on_its_row():
    run = synthetic_run(max_steps=400, fitted_steps=200)
    run.dataset_tokens = 512 * 300  # one epoch is 300 steps; its own schedule ends at 400
    result = forecast(run, schedules=[{"max_steps": 250}, {"max_steps": 600}], bootstrap=5)
    own = result.current_schedule
    assert own["past_epoch"] and not own["trusted"] and "past one epoch" in " ".join(own["warnings"])
    assert not result.trusted and "past one epoch" in " ".join(result.warnings)  # the headline is past it
    short, long = result.horizons[-2:]
    assert short["trusted"] and not short["past_epoch"]
    assert not long["trusted"] and "past one epoch" in " ".join(long["warnings"])


# ------------------------------------------------------------------------------------------- labels, monotony
def test_labels_say_whether_a_number_continues_the_run_or_starts_afresh():
    run = synthetic_run(max_steps=400, fitted_steps=200, noise=0.005)
    run.dataset_tokens = 512 * 1000
    result = forecast(run, max_steps=600, schedules=[{"lr_schedule": "cosine", "max_steps": 600}], bootstrap=5)
    own, epoch, fresh = result.current_schedule, *result.horizons
    assert own["kind"] == "continuing" and own["what"].startswith("continuing this run (its logged history to step "
                                                                  "200, then its schedule re-planned")
    for row in (epoch, fresh):
        assert row["kind"] == "fresh" and "a fresh run of" in row["what"] and "from step 0" in row["what"]
    assert "epoch" in epoch["what"]
    # The run's own schedule continued to its end and a fresh run of that same schedule follow one learning-rate
    # path: one number.
    same = forecast(run, schedules=[{"lr_schedule": "cosine", "max_steps": 400}], bootstrap=0)
    assert same.current_schedule["loss"] == pytest.approx(same.horizons[-1]["loss"], rel=1e-9)


def test_a_longer_run_of_the_same_shape_is_not_forecast_worse():
    run = synthetic_run(max_steps=400, fitted_steps=200, noise=0.005)
    run.dataset_tokens = 512 * 100_000
    continued = [forecast(run, max_steps=n, bootstrap=0).current_schedule["loss"] for n in (400, 600, 800, 1200)]
    assert continued == sorted(continued, reverse=True)
    result = forecast(run, max_steps=800, schedules=[{"max_steps": n} for n in (400, 1000, 2000)], bootstrap=0)
    fresh = [row["loss"] for row in result.horizons[-3:]]
    assert fresh == sorted(fresh, reverse=True)
    # continuing to 800 steps (re-planned from where the run is, no jump back up) is not better than a fresh 1000
    assert result.current_schedule["loss"] >= fresh[1]
    # a resume re-plans without raising the learning rate again
    schedule = continued_schedule(run, 800, 200)
    assert schedule.factor(200) == pytest.approx(run_schedule(run).factor(200))


# ------------------------------------------------------------------------------------------- the script
def test_the_script_prints_json_for_a_stretched_schedule(tmp_path, shakespeare_shards, capsys):
    from .helpers import tiny_run_config, train
    from .test_errors import script

    train(tiny_run_config(tmp_path, shakespeare_shards, max_steps=60, warmup_steps=5, eval_every=5))
    capsys.readouterr()
    code = script("forecast").main([str(tmp_path), "--max_steps", "120", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["steps"] == 120 and "final_val_loss" in payload
    low, high = payload["final_val_loss_interval"]
    assert low <= payload["final_val_loss"] <= high and payload["fitted_on"] == "validation loss"
    assert payload["kind"] == "continuing" and "re-planned" in payload["what"]
    assert script("forecast").main([str(tmp_path)]) == 0
    assert (tmp_path / "analysis" / "forecast.png").stat().st_size > 0
    capsys.readouterr()
    (tmp_path / "analysis" / "forecast.png").unlink()
    assert script("forecast").main([str(tmp_path), "--max_steps", str(10 ** 12)]) == 0
    out = capsys.readouterr().out
    assert "not trusted" in out  # far beyond the fit; the plot is drawn on a bounded grid all the same
    assert (tmp_path / "analysis" / "forecast.png").stat().st_size > 0
    assert script("forecast").main([str(tmp_path), "--schedule", "wsd", "--max_steps", "100", "--decay_steps",
                                    "200"]) == 2
    assert "longer than the schedule" in capsys.readouterr().err
