"""Loss forecasts (Tissue et al. 2024): the fit recovers a known law, predicts other schedules, says when not to
trust it, and the script prints JSON for the run's own schedule stretched to N steps."""

import json
from pathlib import Path

import numpy as np
import pytest

from training.analysis.forecast import areas, fit_run, forecast, law, planned_lrs, run_schedule
from training.analysis.runs import Run
from training.optim.schedules import Schedule

TRUE = (2.0, 3.0, 0.5, 0.002)  # L0, A, alpha, C with learning rates in units of the peak


def synthetic_run(max_steps=400, fitted_steps=400, kind="cosine", noise=0.0, epochs=0.0, **train) -> Run:
    """A run whose validation loss follows the law exactly (plus noise) under its own schedule."""
    config = {"max_lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20, "max_steps": max_steps, "lr_schedule": kind,
              "decay_fraction": 0.2, **train}
    lrs = 3e-3 * Schedule.from_args(config).factors()
    s1, s2 = areas(lrs / 3e-3)
    loss = law(TRUE, s1, s2) + noise * np.random.default_rng(0).standard_normal(len(lrs))
    steps = range(1, fitted_steps + 1)
    scalars = {"train/lr": {s: float(lrs[s - 1]) for s in steps},
               "train/loss": {s: float(loss[s - 1]) for s in steps},
               "val/loss": {s: float(loss[s - 1]) for s in steps if s % 10 == 0},
               "run/tokens_per_step": {0: 512.0}, "train/epoch": {s: epochs for s in steps}}
    return Run(name="synthetic", run_dir=Path("."), scalars=scalars, config={"train": config})


def test_the_fit_recovers_a_known_law_and_predicts_other_schedules():
    run = synthetic_run(max_steps=400, fitted_steps=200)  # half-way through its cosine
    fit = fit_run(run, bootstrap=5)
    assert fit.trusted and fit.source == "validation loss" and fit.residual_rms < 1e-4
    for kind, steps in (("cosine", 800), ("wsd", 800), ("cosine", 400)):
        schedule = run_schedule(run, steps, lr_schedule=kind)
        truth = synthetic_run(max_steps=steps, fitted_steps=steps, kind=kind)
        predicted = fit.final(planned_lrs(run, schedule, keep_history=False))[0]
        assert predicted == pytest.approx(truth.scalars["train/loss"][steps], rel=2e-3), (kind, steps)


def test_the_forecast_answers_the_users_questions_with_intervals():
    run = synthetic_run(max_steps=400, fitted_steps=200, noise=0.01)
    run.dataset_tokens = 512 * 1000
    run.reference_loss = synthetic_run(max_steps=800, fitted_steps=800).scalars["train/loss"][800]
    result = forecast(run, schedules=[{"lr_schedule": "wsd", "max_steps": 600, "decay_steps": 120}], bootstrap=10)
    own = result.current_schedule
    truth = synthetic_run(max_steps=400, fitted_steps=400).scalars["train/loss"][400]
    assert own["steps"] == 400 and own["low"] <= truth <= own["high"] and own["high"] > own["low"]
    assert [h["steps"] for h in result.horizons] == [1000, 600]  # a full epoch, then the asked-for WSD
    assert result.horizons[0]["loss"] < own["loss"]  # more data, lower loss
    # The target is what the same cosine reaches at 800 steps: the interval of the answer holds 800 steps.
    assert result.target["low_tokens"] <= 800 * 512 <= result.target["high_tokens"]
    assert result.target["tokens"] == result.target["steps"] * 512


def test_it_says_when_not_to_trust_it():
    assert "still in its warmup" in " ".join(fit_run(synthetic_run(fitted_steps=15), bootstrap=0).warnings)
    assert "only 6 loss point(s)" in " ".join(fit_run(synthetic_run(fitted_steps=26), bootstrap=0).warnings)
    repeated = fit_run(synthetic_run(fitted_steps=200, epochs=1.0), bootstrap=0)
    assert not repeated.trusted and "read its data more than once" in " ".join(repeated.warnings)


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
    assert script("forecast").main([str(tmp_path)]) == 0
    assert (tmp_path / "analysis" / "forecast.png").stat().st_size > 0
