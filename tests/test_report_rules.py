"""The report's rules on planted synthetic runs (tests/test_report_plants.py): a verdict that follows from the
findings, advice that never turns one setting both ways, no warmup advice for trouble after a sustained peak,
spikes judged against the run's own noise, update ratios judged against the run's own learning rate and weights,
the seed's train/validation table, and records of abandoned steps left out."""

import math
import re

import numpy as np
import pytest

from training.analysis.rendering import render_markdown
from training.analysis.report import build_report
from training.analysis.runs import Run
from training.analysis.summaries import robust_outliers, summarize

from .test_report_plants import PLANTS, Plant, late_divergence_short, rolled_back, tiny_cpu


def report_of(tmp_path, plant: Plant, name: str = "plant") -> dict:
    return build_report(plant.build(tmp_path, name))


def ids(report) -> set[str]:
    return {f["id"] for f in report["findings"]}


def severe(report) -> set[str]:
    return {f["id"] for f in report["findings"] if f["severity"] in ("warning", "problem")}


def finding(report, id_):
    return next(f for f in report["findings"] if f["id"] == id_)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("plants")
    return {name: report_of(root, make(), name) for name, make in PLANTS.items()}


# ----------------------------------------------------------------------------------------------- 1. the verdict
EXPECTED = {
    # name: (verdict id, the warning/problem findings, exactly)
    "healthy_124m": ("healthy", set()),
    "tiny_cpu": ("healthy", set()),
    "late_divergence_short": ("diverged", {"late_divergence"}),
    "diverged_in_warmup": ("diverged", {"lr_too_high"}),
    "memorising": ("memorising", {"overfitting"}),
    "memorising_flat": ("memorising", {"overfitting"}),
    "val_rises_data_once": ("warnings", {"val_not_following"}),
    "not_learning": ("not_learning", {"lr_too_low", "clip_threshold_low"}),
    "not_learning_no_ratios": ("not_learning", {"lr_too_low", "clip_threshold_low"}),
    "noisy_grad_norm": ("healthy", set()),
    "muon": ("healthy", set()),
    "ten_steps": ("too_short", set()),
    "unstable_spikes": ("unstable", {"lr_too_high"}),
    "val_falls_train_high": ("warnings", {"underfitting"}),
    "plateau": ("healthy", set()),
    "clipped_and_decayed": ("warnings", {"weight_decay_too_high", "clip_threshold_low"}),
    "rolled_back": ("warnings", {"spike_guard"}),
}


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_planted_run_gets_its_verdict_and_findings(reports, name):
    report = reports[name]
    verdict_id, findings = EXPECTED[name]
    assert report["verdict_id"] == verdict_id, (report["verdict"], severe(report))
    assert severe(report) == findings, report["verdict"]


@pytest.mark.parametrize("name", list(PLANTS))
def test_the_verdict_opens_the_report_and_agrees_with_the_findings(reports, name):
    report = reports[name]
    markdown = render_markdown(report, [])
    assert markdown.splitlines()[2] == f"**Verdict: {report['verdict']}.**"
    words, found = report["verdict"], severe(report)
    if report["verdict_id"] == "healthy":
        assert not found and "healthy" in ids(report)
    if found:
        assert not words.startswith("healthy") and "healthy" not in ids(report)
    if words.startswith("diverged at step"):
        step = int(re.match(r"diverged at step (\d+)", words)[1])
        assert any((f.get("data") or {}).get("diverged_at") == step for f in report["findings"])
    if report["verdict_id"] == "memorising":
        assert "overfitting" in found
    if report["verdict_id"] == "not_learning":
        assert found & {"lr_too_low", "not_learning", "loss_flat"}
    if report["verdict_id"] == "warnings":
        assert all(finding(report, i)["title"].lower() in words for i in found)


# ----------------------------------------------------------------------------------------------- 2. one voice
UP = r"(?:[Rr]aise|[Ll]engthen|[Ll]arger|[Hh]igher|[Ii]ncrease)"
DOWN = r"(?:[Ll]ower|[Ss]horten|[Ss]maller|[Rr]educe|[Dd]ecrease|[Ff]ewer)"


def directions(report) -> dict[str, set[str]]:
    """Every setting the report's advice turns, with the directions: from the structured actions and from the
    words (a verb right before the flag), which must agree."""
    out: dict[str, set[str]] = {}
    for f in report["findings"]:
        for action in f.get("actions", []):
            out.setdefault(action["setting"], set()).add(action["direction"])
        text = f["recommendation"]
        for word, flag in re.findall(rf"({UP}|{DOWN})\s+(?:\w+\s+\(|\(|)--(\w+)", text):
            direction = "raise" if re.fullmatch(UP, word) else "lower"
            out.setdefault(flag, set()).add(direction)
            assert {"setting": flag, "direction": direction} in f["actions"], (f["id"], text)
    return out


VARIANTS = {
    "as planted": lambda p: p,
    "clipped": lambda p: setattr(p, "grad_norm", lambda s, r: 3.0 * math.exp(0.1 * r.standard_normal())) or p,
    "decayed": lambda p: setattr(p, "weight_decay", 10.0) or p,
    "dropout": lambda p: setattr(p, "dropout", 0.3) or p,
    "large init": lambda p: setattr(p, "init_std", 0.1) or p,
    "repeated data": lambda p: setattr(p, "epoch_every", max(5, p.steps // 6)) or p,
    "spiky": lambda p: setattr(p, "extra", {"train/loss": {s: 25.0 for s in range(p.steps // 3, p.steps, 37)}}) or p,
    "no warmup": lambda p: setattr(p, "warmup", 0) or p,
}


def test_no_report_raises_and_lowers_one_setting(tmp_path):
    """Every planted run in every variant (more than a hundred reports): no setting is advised both ways, and each
    piece of advice's words match its structured action."""
    checked = 0
    for name, make in PLANTS.items():
        for variant, change in VARIANTS.items():
            report = report_of(tmp_path, change(make()), f"{name}-{variant}")
            for setting, ways in directions(report).items():
                assert len(ways) == 1, (name, variant, setting, report["verdict"])
            checked += 1
    assert checked == len(PLANTS) * len(VARIANTS)


def test_conflicting_advice_is_resolved_by_priority():
    from training.analysis.report import Finding, lower, raise_, resolve_conflicts

    unstable = Finding("lr_too_high", "problem", "t", "e", advice=[lower("max_lr", "Lower --max_lr.")])
    slow = Finding("lr_limited", "info", "t", "e", advice=[raise_("max_lr", "Raise --max_lr.")])
    memorising = Finding("overfitting", "problem", "t", "e", advice=[lower("max_steps", "Stop early.")])
    longer = Finding("learning", "info", "t", "e", advice=[raise_("max_steps", "Train longer.")])
    resolve_conflicts([slow, unstable, longer, memorising])
    assert [a.setting for a in unstable.advice] == ["max_lr"] and not any(a.setting for a in slow.advice)
    assert "the lr_too_high finding, about instability, advises the opposite" in slow.as_dict()["recommendation"]
    assert [a.setting for a in memorising.advice] == ["max_steps"] and not any(a.setting for a in longer.advice)


# ----------------------------------------------------------------------------------------------- 2. warmup advice
def test_no_warmup_advice_after_the_peak_was_held_whatever_the_run_length(tmp_path):
    """A 60-step run that held its peak learning rate for 30 steps with a falling loss, then climbed: diverged after
    a sustained peak, and nothing anywhere in the report blames or lengthens the warmup."""
    report = report_of(tmp_path, late_divergence_short())
    assert report["verdict"].startswith("diverged at step") and "late_divergence" in ids(report)
    assert "warmup_steps" not in directions(report) and "warmup_too_short" not in ids(report)
    assert report["peak_hold"]["held_stably"] and report["peak_hold"]["held_steps"] >= 20
    # The same after a non-finite loss at step 45 (instability finding, not a climb)
    plant = late_divergence_short()
    plant.loss = lambda s: 10.0 - 0.1 * min(s, 45)
    plant.extra = {"train/loss": {45: math.inf, 46: math.inf}}
    report = report_of(tmp_path, plant)
    assert "lr_too_high" in ids(report) and "warmup_steps" not in directions(report)
    assert "Not the warmup" in finding(report, "lr_too_high")["evidence"]
    assert report["verdict"] == "diverged at step 45: learning rate too high"
    # The same climb during a warmup that had not reached the peak: the warmup may be lengthened.
    from .test_report_plants import diverged_in_warmup

    report = report_of(tmp_path, diverged_in_warmup())
    assert directions(report)["warmup_steps"] == {"raise"} and not report["peak_hold"]["held_stably"]


# ----------------------------------------------------------------------------------------------- 3. spikes
def test_a_noisy_gradient_norm_is_not_a_spike_but_an_outlier_in_a_quiet_stretch_is(tmp_path):
    rng = np.random.default_rng(1)
    steps = np.arange(1, 401, dtype=float)
    noisy = 0.97 * np.exp(0.3 * rng.standard_normal(400))
    noisy[249] = 1.87  # 1.93x the median, inside the run's own noise
    found = robust_outliers(steps, noisy, 1.0, log=True)
    assert 250 not in found.steps and not found.steps
    quiet = 0.97 * np.exp(0.02 * rng.standard_normal(400))
    quiet[249] = 1.87  # the same value where the norm hardly moves: z ~ 30, but under 2x its level
    assert robust_outliers(steps, quiet, 1.0, log=True).steps == []
    quiet[249] = 4.0  # 4x the level where the norm hardly moves
    assert robust_outliers(steps, quiet, 1.0, log=True).steps == [250]
    report = report_of(tmp_path, PLANTS["noisy_grad_norm"]())
    assert report["grad_spikes"]["after_warmup"] == [] and "grad_norm_spikes" not in ids(report)


def test_a_falling_trend_and_the_early_phase_neither_make_nor_hide_spikes():
    rng = np.random.default_rng(2)
    steps = np.arange(1, 501, dtype=float)
    # a fast exponential fall with 1% noise: no spike anywhere, the steep start included
    loss = 3 + 8 * np.exp(-steps / 25) + 0.03 * rng.standard_normal(500)
    assert robust_outliers(steps, loss, 0.05).steps == []
    # a very noisy early phase (0.5 nats) and a quiet later one (0.02): a 0.4-nat spike at step 400 is found
    # (a global noise estimate from the whole run would hide it), and the early noise flags nothing
    noise = np.where(steps < 100, 0.5, 0.02) * rng.standard_normal(500)
    loss = 3 + 8 * np.exp(-steps / 25) + noise
    loss[399] += 0.4
    assert robust_outliers(steps, loss, 0.05).steps == [400]
    # a flat, noiseless curve: only the minimum relative size decides (MAD 0), so a 1% bump is not a spike
    flat = np.full(200, 3.0)
    flat[100] = 3.03
    flat[150] = 4.0
    assert robust_outliers(np.arange(1, 201, dtype=float), flat, 0.05).steps == [151]


# ----------------------------------------------------------------------------------------------- 4. update ratios
def _median_lr(plant: Plant, peak: float) -> float:
    """The median learning rate at the plant's diagnostics steps after the first 10% (what the report reads)."""
    from .test_report_plants import schedule

    lr = schedule(plant.steps, peak, plant.warmup, kind=plant.lr_kind)
    steps = [s for s in range(1, plant.steps + 1) if (s == 1 or s % plant.diagnostics_every == 0)
             and s >= 0.1 * plant.steps]
    return float(np.median([lr[s] for s in steps]))


def test_a_healthy_small_model_is_not_warned_for_being_one(reports):
    """lr 3e-3 on weights of RMS 0.02: ratios of several percent per step, 18x the seed's 1e-3; against the run's
    own scale lr/rms(w) = 0.15 they are what gradient noise gives. Healthy, and 1e-3 only as context."""
    report = reports["tiny_cpu"]
    assert not severe(report) and "healthy" in ids(report)
    ratios = finding(report, "update_ratios")["evidence"]
    assert "18x the 1e-3 heuristic" in ratios or "x the 1e-3 heuristic" in ratios
    group = report["expectation"]["groups"]["adamw"]
    c_fc = report["expectation"]["per_parameter"]["h.0.mlp.c_fc.weight"]
    assert c_fc["expected"] == pytest.approx(_median_lr(tiny_cpu(), 3e-3) / 0.02)  # lr_t / rms(w)
    assert 0.1 < group["median_consistency"] < 0.5
    assert "small_raw_gradients_not_vanishing" in ids(report)  # the seed's correction stays
    assert "not evidence of vanishing gradients" in finding(report, "small_raw_gradients_not_vanishing")["evidence"]
    assert not severe(reports["healthy_124m"]) and "healthy" in ids(reports["healthy_124m"])


def test_a_learning_rate_too_low_is_told_by_how_far_the_weights_could_move(reports):
    report = reports["not_learning"]
    low = finding(report, "lr_too_low")
    assert "successive steps agree" in low["evidence"] and {"setting": "max_lr", "direction": "raise"} in low["actions"]
    assert report["expectation"]["groups"]["adamw"]["median_consistency"] > 0.9
    assert "lr_too_low" in ids(reports["not_learning_no_ratios"])  # from lr / init_std alone
    assert report["movement"]["ceiling"] < 1e-2


def test_barely_moving_and_outpacing_matrices_are_judged_against_their_own_scale(tmp_path):
    plant = tiny_cpu()
    run = plant.build(tmp_path)
    for step in run.scalars["update_ratio_grad/h.1.mlp.c_fc.weight"]:
        run.scalars["update_ratio_grad/h.1.mlp.c_fc.weight"][step] *= 1e-3  # gradient below Adam's epsilon
        run.scalars["update_ratio_grad/h.2.attn.c_attn.weight"][step] *= 20  # faster than Adam's bound
    report = build_report(run)
    assert "h.1.mlp.c_fc.weight" in finding(report, "layers_not_learning")["evidence"]
    assert "h.2.attn.c_attn.weight" in finding(report, "layers_outpace_lr")["evidence"]
    assert "layers_too_fast" not in ids(report)


def test_muon_matrices_are_judged_against_muons_own_step(reports):
    report = reports["muon"]
    groups = report["expectation"]["groups"]
    assert groups["muon"]["matrices"] == 16 and groups["adamw"]["matrices"] == 2
    assert groups["muon"]["median_consistency"] == pytest.approx(0.9, rel=0.15)
    # 0.2 x lr_muon / rms(w) for a Muon matrix, lr / rms(w) for the embedding on AdamW
    per = report["expectation"]["per_parameter"]
    assert per["h.0.mlp.c_fc.weight"]["expected"] == pytest.approx(0.2 * _median_lr(tiny_cpu(), 2e-2) / 0.02)
    assert per["wte.weight"]["expected"] == pytest.approx(_median_lr(tiny_cpu(), 3e-3) / 0.02)
    assert not severe(report)
    assert "0.2 x lr_muon/rms(w)" in finding(report, "update_ratios")["evidence"]


# ----------------------------------------------------------------------------------------------- 5. the seed's table
SCENARIOS = {"healthy_124m": "learning", "tiny_cpu": "learning", "memorising": "memorising",
             "memorising_flat": "memorising", "val_rises_data_once": "val_not_following",
             "not_learning": "not_learning", "val_falls_train_high": "val_falls_train_high", "plateau": "plateau",
             "late_divergence_short": "diverging"}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_row_of_the_seeds_table_is_named(reports, name):
    report = reports[name]
    assert report["regime"]["scenario"] == SCENARIOS[name]
    named = {"learning": "learning", "memorising": "overfitting", "val_not_following": "val_not_following",
             "not_learning": "lr_too_low", "val_falls_train_high": "underfitting", "plateau": "plateau",
             "diverging": "late_divergence"}[SCENARIOS[name]]
    assert named in ids(report)


@pytest.mark.parametrize("name", ["memorising", "memorising_flat"])
def test_a_memorising_run_is_never_told_to_train_longer(reports, name):
    report = reports[name]
    assert directions(report).get("max_steps", set()) <= {"lower"}
    text = " ".join(f"{f['evidence']} {f['recommendation']}" for f in report["findings"]).lower()
    assert "train longer" not in text and "more tokens should help" not in text and "train for more" not in text
    assert report["regime"]["repeated_data"] and report["regime"]["epochs_started"] > 3
    assert "the data was read more than once (17 epochs started" in finding(report, "overfitting")["evidence"]


def test_validation_rising_on_data_read_once_is_not_overfitting(reports):
    report = reports["val_rises_data_once"]
    assert "overfitting" not in ids(report) and report["verdict_id"] != "memorising"
    assert "not memorisation" in finding(report, "val_not_following")["evidence"]
    assert "cannot be memorisation" in finding(report, "train_val_gap")["evidence"]


# ----------------------------------------------------------------------------------------------- 6. records
def test_records_of_abandoned_steps_are_not_the_runs(reports, tmp_path):
    report = reports["rolled_back"]
    guard = finding(report, "spike_guard")["evidence"]
    assert guard.startswith("1 update(s) skipped (steps 150)") and "at step 103 rolled back to step 100" in guard
    assert "3 record(s) of steps a later rollback abandoned are not counted" in guard
    changed = finding(report, "settings_changed")["evidence"]
    assert changed.startswith("Left out") and "at step 102: train.max_lr" in changed
    assert [r["step"] for r in report["interventions"]] == [103, 150] and report["changes"] == []
    # A spike right after the abandoned change is the run's own: not excused by it.
    summary = summarize(rolled_back().build(tmp_path))
    assert not summary.explained(105) and summary.explained(150)
    # TensorBoard is the witness when it logged the resumes: a change whose run/settings_changed survived the purge
    # is the run's, one whose tag is gone is not.
    plant = rolled_back()
    plant.changes = plant.changes + [{"step": 120, "changes": {"train.weight_decay": [0.1, 0.0]}}]
    plant.extra = {"run/settings_changed": {120: 1.0}}
    summary = summarize(plant.build(tmp_path))
    assert [c["step"] for c in summary.changes] == [120] and summary.explained(125)
    assert [c["step"] for c in summary.abandoned.changes] == [102]


def test_a_second_rollback_to_an_earlier_step_abandons_the_first(tmp_path):
    run = Run(name="r", run_dir=tmp_path, scalars={"train/loss": {s: 5.0 for s in range(1, 200)}},
              interventions=[{"step": 60, "action": "skip"},
                             {"step": 62, "action": "rollback", "to_step": 50, "data_resumes_at_step": 70},
                             {"step": 58, "action": "skip"},
                             {"step": 59, "action": "rollback", "to_step": 40, "data_resumes_at_step": 70},
                             {"step": 45, "action": "skip"}])
    summary = summarize(run)
    assert [(r["action"], r["step"]) for r in summary.interventions] == [("rollback", 59), ("skip", 45)]
    assert len(summary.abandoned.interventions) == 3


# ----------------------------------------------------------------------------------------------- rendering
def test_the_forecast_section_renders_rows_with_and_without_their_own_trust(reports):
    report = dict(reports["tiny_cpu"])
    row = {"what": "its own schedule to step 400", "steps": 400, "tokens": 204800.0, "loss": 5.6, "low": 5.5,
           "high": 5.7}
    report["forecast"] = {"fit": {"steps": [1, 2, 3], "source": "validation loss"}, "trusted": True, "warnings": [],
                          "current_schedule": row, "horizons": [], "target": None}
    plain = render_markdown(report, [])
    assert "| its own schedule to step 400 | 400 | 2.05e+05 | 5.6 (5.5-5.7) | yes |" in plain
    report["forecast"]["horizons"] = [{**row, "what": "one epoch", "trusted": False, "warnings": ["9.9x past the fit"],
                                       "assumes": ["a fresh run"]}]
    noted = render_markdown(report, [])
    assert "| one epoch | 400 | 2.05e+05 | 5.6 (5.5-5.7) | no: 9.9x past the fit |" in noted
    memorising = dict(reports["memorising"], forecast=report["forecast"])
    assert "Caution: the run memorises its data" in render_markdown(memorising, [])


def test_records_already_moved_out_by_the_writer_read_the_same(tmp_path):
    """The writers' newer form: the rollback record names the skips it abandoned (they went to the abandoned
    branch's folder), and settings re-applied by a rollback are a change recorded at the step it returned to."""
    plant = tiny_cpu()
    plant.interventions = [{"step": 103, "action": "rollback", "to_step": 100, "data_resumes_at_step": 110,
                            "first_spike": 101, "skipped_steps": [101, 102, 103], "checkpoint": "c",
                            "reason": "the loss stayed above its band for 3 steps"}]
    plant.changes = [{"step": 100, "changes": {"train.max_lr": [3e-3, 1e-3]}, "lr_before": 3e-3, "lr_after": 1e-3,
                      "reason": "a spike-guard rollback to a checkpoint written under other settings"}]
    plant.extra = {"run/settings_changed": {100: 1.0}}
    report = report_of(tmp_path, plant)
    guard = finding(report, "spike_guard")["evidence"]
    assert guard.startswith("at step 103 rolled back to step 100") and "abandoned steps: 101, 102, 103" in guard
    assert "not counted" not in guard
    assert finding(report, "settings_changed")["evidence"].startswith(
        "at step 100 (a spike-guard rollback to a checkpoint written under other settings): train.max_lr")


# ----------------------------------------------------------------------------------------------- 7. a new finding
def test_a_new_finding_is_one_rule_function(tmp_path, monkeypatch):
    """A rule is one function reading the summary's typed fields (and the findings before it); put in the rules'
    list, its finding is in report.json and report.md, and the verdict and the healthy finding take it into account."""
    from training.analysis import report as report_module
    from training.analysis.report import Finding, FindingId

    def tokens_per_step_rule(s, found):
        if s.tokens.tokens_per_step is None or found.has(FindingId.LR_TOO_HIGH):
            return None
        return Finding("tokens_per_step_noted", "warning", "Tokens per step noted",
                       f"{s.tokens.tokens_per_step:g} tokens per step over {s.loss.steps} steps.")

    rules = report_module.RULES
    monkeypatch.setattr(report_module, "RULES", [*rules[:-1], tokens_per_step_rule, rules[-1]])  # before healthy
    report = report_of(tmp_path, tiny_cpu())
    assert finding(report, "tokens_per_step_noted")["evidence"] == "512 tokens per step over 400 steps."
    assert report["verdict"] == "learning, with warnings: tokens per step noted" and "healthy" not in ids(report)
    assert ("- **Tokens per step noted** (warning, `tokens_per_step_noted`): 512 tokens per step over 400 steps."
            in render_markdown(report, []))
    monkeypatch.undo()
    assert "tokens_per_step_noted" not in ids(report_of(tmp_path, tiny_cpu()))


def test_a_mup_runs_hidden_matrices_are_judged_at_the_rate_they_trained_at(tmp_path):
    """Under μP the hidden matrices train at lr / m (AdamW) or lr / sqrt(m) (Muon); their expected update ratio
    follows, so a μP run is not called slow for what μP does on purpose. Embeddings keep the logged rate."""
    from training.analysis.runs import Run
    from training.analysis.summaries import expectation_summary, mup_lr_scale
    from training.layout import Tags

    steps = range(10, 101, 10)
    names = ["h.0.mlp.c_fc.weight", "wte.weight"]
    scalars = {Tags.TRAIN_LR: {s: 1e-3 for s in range(1, 101)}, Tags.TRAIN_LOSS: {s: 3.0 for s in range(1, 101)}}
    for name in names:
        scalars[Tags.WEIGHT_RMS + name] = {s: 0.02 for s in steps}
        scalars[Tags.UPDATE_RATIO + name] = {s: 1e-3 / 0.02 / (4 if name.startswith("h.") else 1) for s in steps}

    def run(**settings):
        return Run(name="r", run_dir=tmp_path, scalars=scalars, config={"model": {"n_embd": 256, **settings}})

    mup, sp = run(parametrization="mup", mup_base_width=64), run()
    assert mup_lr_scale(mup, names[0], "adamw") == 0.25 and mup_lr_scale(mup, names[0], "muon") == 0.5
    assert mup_lr_scale(mup, names[1], "adamw") == 1.0 and mup_lr_scale(sp, names[0], "adamw") == 1.0
    judged = expectation_summary(mup).per_parameter
    assert judged[names[0]].consistency == pytest.approx(1.0) and judged[names[1]].consistency == pytest.approx(1.0)
    assert expectation_summary(sp).per_parameter[names[0]].consistency == pytest.approx(0.25)
    # How far the weights could have moved: the hidden matrix at 0.1 / 4 / 0.02, the embedding at 0.1 / 0.02.
    from training.analysis.summaries import movement_ceiling

    assert movement_ceiling(mup).ceiling == pytest.approx((1.25 + 5.0) / 2)
    assert movement_ceiling(sp).ceiling == pytest.approx(5.0)


def test_a_learning_run_on_data_read_many_times_is_told_more_data_not_more_steps(tmp_path):
    """Validation still at its lowest after about 6 passes over the data: more steps would repeat what it has seen
    (past ~4 epochs a repeated token is worth much less than a fresh one): the advice is more data, not --max_steps."""
    plant = VARIANTS["repeated data"](PLANTS["healthy_124m"]())
    report = report_of(tmp_path, plant, "healthy-repeated")
    assert report["regime"]["repeated_data"]
    learning = finding(report, "learning")
    assert "max_steps" not in directions(report)
    assert "more data, not more steps" in learning["recommendation"] and "more tokens should help" not in \
        learning["recommendation"].lower()


def test_the_start_loss_a_mup_run_is_expected_at_follows_its_logit_multiplier(tmp_path):
    """ln V + n_embd std^2 / 2 under sp; under μP the logits are scaled by 1/m, so the excess by 1/m^2: what real
    models show (the same weights' first loss, sp against μP with m = 4)."""
    import math

    import torch

    from modeling import GPTConfig, GPTForCausalLM
    from training.analysis.runs import Run
    from training.analysis.summaries import expected_initial_loss

    settings = {"n_embd": 256, "init_std": 0.1, "vocab_size": 50304, "n_layer": 2, "n_head": 4}
    sp = Run(name="sp", run_dir=tmp_path, scalars={}, config={"model": settings})
    mup = Run(name="mup", run_dir=tmp_path, scalars={},
              config={"model": {**settings, "parametrization": "mup", "mup_base_width": 64}})
    uniform, sp_expected, _ = expected_initial_loss(sp)
    _, mup_expected, _ = expected_initial_loss(mup)
    assert (mup_expected - uniform) == pytest.approx((sp_expected - uniform) / 16)

    def first_loss(**kwargs) -> float:
        torch.manual_seed(0)
        model = GPTForCausalLM(GPTConfig(n_embd=256, n_head=4, n_layer=2, n_positions=64, **kwargs)).eval()
        tokens = torch.randint(0, 50257, (16, 64), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return float(model(tokens, labels=tokens).loss) - math.log(50304)

    sp_excess, mup_excess = first_loss(), first_loss(parametrization="mup", mup_base_width=64)
    assert sp_excess > 0.03 and mup_excess == pytest.approx(sp_excess / 16, abs=0.005)
