import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from modeling.tokenization import TiktokenGPT2
from training.analysis.plots import plot_grad_norm, plot_loss, plot_ratios
from training.analysis.report import build_report
from training.analysis.runs import load_run, read_run_scalars
from training.analysis.summaries import first_crossing
from training.data.preparation import PrepareConfig, prepare
from training.data.shards import write_shard_atomic
from training.trainer.trainer import Trainer

from .helpers import REPO, tiny_run_config

# Planted runs: each has one setting off (the healthy one none), and the test asserts the exact set of warning and
# problem findings its report must contain. Tiny models (width 32) move a matrix by up to ~lr/0.02 per Adam step; the
# report judges that against each run's own lr/rms(w), never against the seed's fixed 1e-3, so the fast steps of the
# overfitting and warmup plants (lr 3e-3 and 9e-3 on weights of RMS 0.02) are not findings of their own: earlier
# versions of these expectations carried "layers_too_fast", the 1e-3 yardstick's false alarm for a small model. The
# clip threshold is raised above this model's typical norm (~1.3) except in the clipping plant.
COMMON = dict(max_steps=60, warmup_steps=10, max_lr=2e-4, min_lr=2e-5, grad_clip=5.0)
PLANTS = {
    # name: (data, overrides, exact set of warning/problem findings)
    "healthy": ("big", {}, set()),
    "lr_low": ("big", dict(max_lr=1e-6, min_lr=1e-7), {"lr_too_low"}),
    "lr_high": ("big", dict(max_lr=3.0, min_lr=1e-2, warmup_steps=5, on_nonfinite="skip", max_consecutive_skips=100),
                {"lr_too_high"}),
    "clip": ("big", dict(grad_clip=0.05), {"clip_threshold_low"}),
    "weight_decay": ("big", dict(weight_decay=30.0), {"weight_decay_too_high"}),
    "frozen": ("big", dict(callbacks=["tests.helpers.FreezeMatrix"]), {"matrices_frozen"}),
    "init": ("big", dict(init_std=0.1, grad_clip=10.0), {"init_overconfident"}),
    # ~3000 training tokens repeated for ~4 epochs, validated on other text
    "overfit": ("small", dict(max_lr=3e-3, min_lr=1e-3, max_steps=100, n_embd=64),
                {"overfitting", "grad_norm_spikes"}),
    # No warmup at a peak learning rate this model trains at once settled: the first Adam steps move every weight
    # ~45% (update ratio lr/0.02), and at step ~12 the loss jumps 6 nats with a large gradient; after the ratios
    # settle (step 20) it never jumps again at 90% of the peak rate. A 4-layer, width-128 model on 512-token batches:
    # on the planted width-32 model early jumps drown in batch noise. Its 512 tokens per step are ~3.7x the gradient
    # noise scale it measures (batch_above_noise_scale, true of the run).
    "warmup": ("big", dict(max_lr=9e-3, min_lr=9e-5, warmup_steps=0, max_steps=100, n_layer=4, n_embd=128, seq_len=64,
                           micro_batch_size=8, total_batch_tokens=512, seed=3, diagnostics_every=10),
               {"warmup_too_short", "batch_above_noise_scale"}),
    # Gradients scaled down 1e3x per block on their way to the input: blocks 0-1 fall below Adam's epsilon.
    "depth": ("big", dict(n_layer=4, callbacks=["tests.helpers.VanishingGradient"]), {"depth_starves_layers"}),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, shakespeare_path):
    root = tmp_path_factory.mktemp("planted")
    prepare(PrepareConfig(output_dir=str(root / "big"), files=[str(shakespeare_path)], shard_tokens=100_000,
                          val_tokens=8_192, progress=False))
    ids = np.array([50256] + TiktokenGPT2().encode(shakespeare_path.read_text()[:200_000]), dtype=np.uint16)
    (root / "small").mkdir()
    write_shard_atomic(root / "small" / "s_val_000000.npy", ids[-8192:])
    write_shard_atomic(root / "small" / "s_train_000001.npy", ids[:3000])
    reports = {}
    for name, (data, overrides, _) in PLANTS.items():
        overrides = {**COMMON, **overrides}
        callbacks = ["grad_norm", "layer_ratios"] + overrides.pop("callbacks", [])
        overrides.setdefault("diagnostics_every", 5)
        config = tiny_run_config(root / name, root / data, eval_every=10, callbacks=callbacks, **overrides)
        trainer = Trainer(config)
        trainer.train()
        trainer.close()
        reports[name] = build_report(load_run(root / name))
    return root, reports


def ids(report):
    return {f["id"] for f in report["findings"]}


def severe(report):
    return {f["id"] for f in report["findings"] if f["severity"] in ("warning", "problem")}


@pytest.mark.parametrize("name", list(PLANTS))
def test_planted_run_gets_exactly_its_diagnosis(planted, name):
    _, reports = planted
    assert severe(reports[name]) == PLANTS[name][2]
    assert ("healthy" in ids(reports[name])) == (name == "healthy")


@pytest.mark.parametrize("name", list(PLANTS))
def test_report_words_agree_with_its_numbers(planted, name):
    """No sentence states a comparison that the report's own numbers contradict."""
    import re

    from training.analysis.thresholds import DEPTH_FLAT, DEPTH_TREND, RATIO_UNSTABLE, gap_trend, ratio_band

    report = planted[1][name]
    texts = [f"{f['evidence']} {f['recommendation']}" for f in report["findings"]]
    for text in texts:
        for number, words in re.findall(r"update/weight ratio ([0-9.e+-]+)\)?, (within a decade|more than a decade "
                                        r"below|more than a decade above|zero)", text):
            assert ratio_band(float(number)).startswith(words), (number, words, text)
        for words in re.findall(r"the gap (widens|narrows|stays stable)", text):
            assert words == gap_trend(report["gap"]["gap_change_second_half"]), text
        for target in re.findall(r"see the (\w+) finding", text):
            assert target in ids(report), text
        for clipped, steps in re.findall(r"([0-9.]+)% of the (\d+) steps after warmup", text):
            assert int(steps) > 0
        for decades, words in re.findall(r"changes by ([0-9.e+-]+) decades from the first to the last(?: \(limit "
                                         r"[0-9.]+\))?: (the blocks|learning does not|learning changes)", text):
            size = abs(float(decades))
            assert {"the blocks": size >= DEPTH_TREND, "learning does not": size < DEPTH_FLAT,
                    "learning changes": DEPTH_FLAT <= size < DEPTH_TREND}[words], text
        for peak, limit in re.findall(r"peaked at ([0-9.e+-]+) at step \d+ .*? stayed above ([0-9.e+-]+)", text):
            assert float(peak) > float(limit) == RATIO_UNSTABLE, text
        for excess in re.findall(r"\(\+([0-9.]+) nats, gradient norm", text):
            limit = float(re.search(r"jump limit ([0-9.]+) nats", text).group(1))
            assert float(excess) >= limit, text
    loss = report["loss"]
    gap = next((f for f in report["findings"] if f["id"] == "train_val_gap"), None)
    if gap:
        assert ("at its lowest so far" in gap["evidence"]) == (loss["min_val_step"] == loss["last_val_step"])
    healthy = next((f for f in report["findings"] if f["id"] == "healthy"), None)
    if healthy:
        assert not severe(report)


def test_update_is_split_into_decay_and_gradient_parts(planted):
    root, reports = planted
    from training.analysis.runs import read_run_scalars

    scalars = read_run_scalars(root / "weight_decay")
    name = "h.0.mlp.c_fc.weight"
    lr = scalars["train/lr"]
    for step, decay in scalars[f"update_ratio_decay/{name}"].items():
        assert decay == pytest.approx(lr[step] * 30.0, rel=1e-5)  # lr * weight_decay, exactly
    frozen = read_run_scalars(root / "frozen")
    assert set(frozen["update_ratio/h.0.attn.c_attn.weight"].values()) == {0.0}
    assert "grad_ratio/h.0.attn.c_attn.weight" not in frozen  # no gradient: no gradient ratio
    shrink = reports["weight_decay"]["weights"]["median_rms_change"]
    assert shrink < -0.15 and reports["healthy"]["weights"]["median_rms_change"] > -0.15


def test_findings_cite_their_numbers(planted):
    _, reports = planted
    low = next(f for f in reports["lr_low"]["findings"] if f["id"] == "lr_too_low")
    median = reports["lr_low"]["update_ratio_grad"]["overall_median"]
    assert median < 1e-4 and f"{median:.2e}" in low["evidence"] and "--max_lr" in low["recommendation"]
    overfit = next(f for f in reports["overfit"]["findings"] if f["id"] == "overfitting")
    loss = reports["overfit"]["loss"]
    assert f"step {loss['min_val_step']}" in overfit["evidence"] and loss["final_val_loss"] > loss["min_val_loss"]
    assert reports["overfit"]["tokens"]["epochs_started"] > 1
    init = next(f for f in reports["healthy"]["findings"] if f["id"] == "init_uniform")
    assert f"{math.log(50304):.4g}" in init["evidence"]
    assert "--grad_clip" in next(f for f in reports["clip"]["findings"] if f["id"] == "clip_threshold_low")[
        "recommendation"]
    assert "--weight_decay (now 30.0" in next(f for f in reports["weight_decay"]["findings"]
                                              if f["id"] == "weight_decay_too_high")["recommendation"]
    assert "h.0.attn.c_attn.weight" in next(f for f in reports["frozen"]["findings"]
                                            if f["id"] == "matrices_frozen")["evidence"]
    assert "--init_std (now 0.1" in next(f for f in reports["init"]["findings"]
                                         if f["id"] == "init_overconfident")["recommendation"]


def _write_events(folder, scalars_by_step, wall_offset=0.0):
    writer = SummaryWriter(str(folder))
    for step, values in scalars_by_step.items():
        for tag, value in values.items():
            writer.add_scalar(tag, value, step, walltime=time.time() + wall_offset)
    writer.close()


def test_reference_crossing_on_synthetic_logs(tmp_path):
    # val loss falls linearly from 10 at step 0 by 0.05 per step; reference 4.0 is reached at step 120.
    steps = range(0, 201, 10)
    events = {s: {"val/loss": 10 - 0.05 * s, "train/loss": 10 - 0.05 * s, "train/tokens_seen": 1000.0 * max(s, 1)}
              for s in steps}
    events[0]["run/tokens_per_step"] = 1000.0
    _write_events(tmp_path / "tensorboard", events)
    run = load_run(tmp_path, reference_loss=4.0)
    report = build_report(run)
    assert report["reference"]["val_crossing_step"] == pytest.approx(120.0)
    assert report["reference"]["val_crossing_tokens"] == pytest.approx(120_000.0)
    assert "reference_reached" in ids(report)
    assert first_crossing(np.array([0, 10, 20.0]), np.array([5.0, 4.0, 2.0]), 3.0) == pytest.approx(15.0)
    assert first_crossing(np.array([0, 10.0]), np.array([5.0, 4.0]), 3.0) is None


def test_resumed_runs_keep_the_last_value_per_step(tmp_path):
    _write_events(tmp_path / "tensorboard", {s: {"train/loss": 1.0} for s in range(1, 11)})
    time.sleep(1.1)  # event file names carry the creation time
    _write_events(tmp_path / "tensorboard", {s: {"train/loss": 2.0} for s in range(6, 13)}, wall_offset=5)
    scalars = read_run_scalars(tmp_path)
    assert sorted(scalars["train/loss"]) == list(range(1, 13))
    assert [scalars["train/loss"][s] for s in (1, 5, 6, 12)] == [1.0, 1.0, 2.0, 2.0]


def test_small_raw_gradients_are_not_called_vanishing(tmp_path):
    events = {}
    for s in range(1, 201):
        events[s] = {"train/loss": 10 - 3 * s / 200, "train/grad_norm": 0.1, "train/tokens_seen": 100.0 * s}
        if s % 25 == 0:
            events[s].update({"grad_ratio/h.0.mlp.c_fc.weight": 4e-4, "grad_ratio/wte.weight": 3e-4,
                              "update_ratio/h.0.mlp.c_fc.weight": 1.2e-3, "update_ratio/wte.weight": 9e-4})
    _write_events(tmp_path / "with" / "tensorboard", events)
    report = build_report(load_run(tmp_path / "with"))
    finding = next(f for f in report["findings"] if f["id"] == "small_raw_gradients_not_vanishing")
    assert "not evidence of vanishing gradients" in finding["evidence"] and "healthy rate" in finding["evidence"]
    assert not {"lr_too_low", "layers_not_learning"} & ids(report)
    without = {s: {k: v for k, v in e.items() if not k.startswith("update_ratio/")} for s, e in events.items()}
    _write_events(tmp_path / "without" / "tensorboard", without)
    finding = next(f for f in build_report(load_run(tmp_path / "without"))["findings"]
                   if f["id"] == "small_raw_gradients_not_vanishing")
    assert "cannot be concluded" in finding["evidence"]


def test_plots_are_drawn_from_the_logs(planted, tmp_path):
    root, _ = planted
    run = load_run(root / "clip", reference_loss=9.9)  # clipped on most steps: the markers are exercised
    val_steps, val = run.series("val/loss")
    figure = plot_loss(run)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    assert np.array_equal(lines["validation loss"].get_xdata(), val_steps)
    assert np.array_equal(lines["validation loss"].get_ydata(), val)
    assert np.array_equal(lines["train loss"].get_ydata(), run.series("train/loss")[1])
    assert any("reference 9.9000" in label for label in lines)
    steps, norm = run.series("train/grad_norm")
    grad = plot_grad_norm(run)
    assert np.array_equal(grad.axes[0].lines[0].get_ydata(), norm)
    clipped = [c for c in grad.axes[0].collections if "clipped" in c.get_label()][0]
    assert len(clipped.get_offsets()) == int((norm > run.grad_clip).sum())  # the healthy plant clips at 5.0
    ratios = plot_ratios(run, "update_ratio/", "update")
    panel = {ax.get_title(): ax for ax in ratios.axes}
    c_fc = [line for line in panel["mlp.c_fc"].lines if line.get_label().startswith("layer")]
    assert len(c_fc) == 2
    assert np.array_equal(c_fc[0].get_ydata(), run.series("update_ratio/h.0.mlp.c_fc.weight")[1])
    assert panel["mlp.c_fc"].get_yscale() == "log"


def test_early_phase_and_depth_plots_show_what_the_rules_read(planted):
    from training.analysis.plots import plot_depth, plot_early_phase
    from training.analysis.summaries import depth_summary, early_phase_summary, median_ratio_trace, ratio_summary

    root, _ = planted
    run = load_run(root / "warmup")
    figure = plot_early_phase(run)
    ratio_line = next(line for line in figure.axes[0].lines if line.get_label() == "median update/weight ratio")
    steps, trace = median_ratio_trace(run)
    assert np.array_equal(ratio_line.get_xdata(), steps) and np.allclose(ratio_line.get_ydata(), trace)
    jumps = next(c for c in figure.axes[1].collections if c.get_label() == "loss jump, early phase")
    assert [int(x) for x, _ in jumps.get_offsets()] == early_phase_summary(run).early_jumps

    run = load_run(root / "depth")
    figure = plot_depth(run)
    learning = next(line for line in figure.axes[0].lines if line.get_label() == "update/weight (learning)")
    per_block = depth_summary(ratio_summary(run, "update_ratio_grad/").per_parameter_median).per_block
    assert list(learning.get_xdata()) == sorted(per_block)
    assert np.allclose(learning.get_ydata(), [per_block[b] for b in sorted(per_block)])


def test_analyze_run_script_writes_plots_and_report(planted, tmp_path):
    root, _ = planted
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "analyze_run.py"), str(root / "healthy"),
                             str(root / "overfit"), "--reference_loss", "9.9", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("lossGraph.png", "gradNorm.png", "grad_param_ratio.png", "update_ratio.png", "early_phase.png",
                 "depth.png", "report.md",
                 "report.json"):
        path = tmp_path / "healthy" / name
        assert path.exists() and path.stat().st_size > (10_000 if name.endswith(".png") else 200), name
    assert (tmp_path / "compare_loss.png").stat().st_size > 10_000
    report = json.loads((tmp_path / "overfit" / "report.json").read_text())
    assert "overfitting" in ids(report)
    markdown = (tmp_path / "overfit" / "report.md").read_text()
    assert "Overfitting" in markdown and "![lossGraph](lossGraph.png)" in markdown
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "analyze_run.py"), str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_single_loss_spike_is_reported_from_synthetic_logs(tmp_path):
    from training.analysis.runs import Run

    losses = {step: 10.0 - 0.05 * step for step in range(1, 101)}
    losses[60] = 25.0
    run = Run(name="synthetic", run_dir=tmp_path, scalars={"train/loss": losses})
    findings = {f["id"]: f for f in build_report(run)["findings"]}
    assert "loss_spikes" in findings and "steps 60" in findings["loss_spikes"]["evidence"]


def _early_phase_run(tmp_path, jumps=(), hard_batch=False, ratio_start=0.2, later_lr=1e-3):
    """200 steps of a falling, noisy loss; update ratios that start at ``ratio_start`` and settle below 0.03 by
    step 40 (no warmup: Adam's first steps are large relative to the weights); loss jumps at ``jumps`` with a large
    gradient norm (or an ordinary one: a hard batch)."""
    from training.analysis.runs import Run

    rng = np.random.default_rng(0)
    loss = {s: 4 + 6 * math.exp(-s / 30) + 0.1 * rng.standard_normal() for s in range(1, 201)}
    grad = {s: 1.0 + 0.05 * rng.standard_normal() for s in range(1, 201)}
    for step in jumps:
        loss[step] += 3.0
        grad[step] = 1.0 if hard_batch else 20.0
    lr = {s: 1e-3 if s < 20 else later_lr for s in range(1, 201)}  # the ratios settle at step 20
    scalars = {"train/loss": loss, "train/grad_norm": grad, "train/lr": lr}
    for name in ("h.0.mlp.c_fc.weight", "h.0.attn.c_attn.weight", "wte.weight"):
        scalars[f"update_ratio/{name}"] = {s: max(3e-3, ratio_start * math.exp(-s / 8)) for s in [1, *range(10, 201, 10)]}
    return Run(name="synthetic", run_dir=tmp_path, scalars=scalars, config={"train": {"warmup_steps": 0}})


def test_warmup_is_named_only_for_jumps_confined_to_the_phase_of_large_steps(tmp_path):
    findings = {f["id"]: f for f in build_report(_early_phase_run(tmp_path, jumps=[15]))["findings"]}
    warmup = findings["warmup_too_short"]
    assert "step(s) 15 (+" in warmup["evidence"] and "--warmup_steps (now 0)" in warmup["recommendation"]
    assert "lr_too_high" not in findings
    # The same jump with another one long after the ratios settled: the peak learning rate is not sustainable.
    assert "warmup_too_short" not in ids(build_report(_early_phase_run(tmp_path, jumps=[15, 150])))
    # Ratios that never left the healthy range: an early jump cannot be blamed on large early steps.
    assert "warmup_too_short" not in ids(build_report(_early_phase_run(tmp_path, jumps=[15], ratio_start=0.02)))
    # The schedule had halved the learning rate by the time the ratios settled: a sustainable peak is not shown.
    assert "warmup_too_short" not in ids(build_report(_early_phase_run(tmp_path, jumps=[15], later_lr=5e-4)))
    # A hard batch (the loss jumps, the gradient norm does not) is not damage done by the optimizer.
    assert "warmup_too_short" not in ids(build_report(_early_phase_run(tmp_path, jumps=[15], hard_batch=True)))


def test_depth_trend_is_measured_per_block():
    from training.analysis.summaries import depth_summary

    def blocks(values):
        return {f"h.{i}.{kind}.weight": v for i, v in enumerate(values) for kind in ("attn.c_attn", "mlp.c_fc")}

    flat = depth_summary(blocks([1e-3, 1.1e-3, 0.9e-3, 1e-3]) | {"wte.weight": 1e-5})
    assert flat.flat and flat.starved is None and abs(flat.trend_decades) < 0.1
    starved_input = depth_summary(blocks([1e-6, 1e-5, 1e-4, 1e-3]))
    assert starved_input.starved == "first" and starved_input.trend_decades == pytest.approx(3.0)
    starved_output = depth_summary(blocks([1e-3, 1e-4, 1e-5]))
    assert starved_output.starved == "last" and starved_output.trend_decades == pytest.approx(-2.0)
    mild = depth_summary(blocks([1e-3, 2e-3, 4e-3]))
    assert not mild.flat and mild.starved is None
    assert depth_summary(blocks([1e-3, 1e-6])).to_dict() == {"blocks": 2}  # two blocks: no trend can be told


# ----------------------------------------------------------------------------------------------- right at 124M
def _synthetic(tmp_path, losses: dict, config: dict | None = None, **scalars):
    from training.analysis.runs import Run

    return Run(name="synthetic", run_dir=tmp_path, scalars={"train/loss": losses, **scalars}, config=config or {})


def test_the_expected_start_comes_from_the_config(tmp_path):
    """GPT-2 124M's init (768 wide, std 0.02) starts n_embd * std^2 / 2 = 0.154 nats above ln(vocab): as expected,
    not "overconfident"; the same init at 4x the std is too large even when the loss matches its own expectation."""
    uniform = math.log(50304)

    def init_ids(initial, width, std):
        losses = {s: initial - 0.01 * s for s in range(1, 40)}
        run = _synthetic(tmp_path, losses, {"model": {"n_embd": width, "init_std": std, "vocab_size": 50304}})
        return {f["id"] for f in build_report(run)["findings"] if f["id"].startswith("init")}

    assert init_ids(uniform + 0.154, 768, 0.02) == {"init_uniform"}
    assert init_ids(uniform + 0.154 + 0.3, 768, 0.02) == {"init_overconfident"}  # above its own expectation
    assert init_ids(uniform + 768 * 0.08 ** 2 / 2, 768, 0.08) == {"init_overconfident"}  # the init itself is large
    finding = next(f for f in build_report(_synthetic(tmp_path, {s: uniform + 0.15 for s in range(1, 40)},
                                                      {"model": {"n_embd": 768, "init_std": 0.02}}))["findings"]
                   if f["id"] == "init_uniform")
    assert f"{uniform + 0.1536:.4g} expected" in finding["evidence"]


def test_one_infinite_loss_does_not_dominate_the_smoothed_curve(tmp_path):
    losses = {s: 10.0 - 0.02 * s for s in range(1, 101)}
    losses[50] = math.inf
    report = build_report(_synthetic(tmp_path, losses))
    assert report["loss"]["final_train_loss_smoothed"] < 10.0 and report["loss"]["nonfinite_steps"] == 1


def test_a_late_divergence_is_named_as_such_never_as_warmup(tmp_path):
    """300 steps of steady decline after a 20-step warmup, then a climb from step 330: a late divergence."""
    losses = {s: 10.0 - 0.012 * s for s in range(1, 321)}
    losses.update({s: losses[320] + 0.05 * (s - 320) for s in range(321, 401)})
    run = _synthetic(tmp_path, losses, {"train": {"warmup_steps": 20}},
                     **{"train/grad_norm": {s: 1.0 for s in range(1, 401)}})
    findings = {f["id"]: f for f in build_report(run)["findings"]}
    late = findings["late_divergence"]
    assert late["severity"] == "problem" and "climbed from step 3" in late["evidence"]
    assert "warmup_too_short" not in findings and "climbed back" not in findings.get("lr_too_high", {}).get(
        "evidence", "")
    # The same climb before the run had held its peak learning rate (it climbs from step 40 of a 50-step warmup)
    # is not "late", and the warmup may be lengthened. (This used to be a climb 20 steps after a 20-step warmup:
    # 20 steps at the peak with a falling loss do show a sustained peak, so that run is now "late" too.)
    early = {s: 10.0 - 0.05 * s for s in range(1, 41)}
    early.update({s: early[40] + 0.05 * (s - 40) for s in range(41, 141)})
    report = build_report(_synthetic(tmp_path, early, {"train": {"warmup_steps": 50}}))
    assert "late_divergence" not in ids(report) and "lr_too_high" in ids(report)
    assert "--warmup_steps" in next(f for f in report["findings"] if f["id"] == "lr_too_high")["recommendation"]


def test_weight_decay_is_compared_with_the_gradient_step(planted):
    _, reports = planted
    finding = next(f for f in reports["weight_decay"]["findings"] if f["id"] == "weight_decay_too_high")
    against = reports["weight_decay"]["weights"]["median_decay_vs_gradient"]
    assert against > 0.6 and f"{against:.3g}x the gradient-driven step" in finding["evidence"]
    assert "% of each weight matrix's update is" not in finding["evidence"]  # the old, misleading reading


def test_the_report_lists_the_detectors_flags_beside_its_own_spikes(tmp_path, shakespeare_shards):
    """The spike_detector callback flags by llm.c's mean/std rule over a trailing window; the report judges spikes
    against the run's own batch-to-batch noise (median/MAD of detrended residuals, with a minimum size), so the two
    may differ: the report lists the callback's flags as they were logged, beside its own. (This test used to assert
    that both agree: the report then used the callback's rule, which a falling trend and the spikes themselves
    inflate.)"""
    from .helpers import tiny_run_config
    from .helpers import train as run_training

    run_training(tiny_run_config(tmp_path, shakespeare_shards, max_steps=40, max_lr=3e-2, min_lr=3e-3,
                                 callbacks=["spike_detector"]))
    run = load_run(tmp_path)
    flagged = [s for s, v in run.scalars["spikes/is_spike"].items() if v > 0]
    report = build_report(run)
    assert report["spikes"]["detector_steps"] == flagged
    assert set(report["spikes"]["spike_steps"]) <= set(run.scalars["train/loss"])
    texts = " ".join(f["evidence"] for f in report["findings"])
    assert not flagged or f"flagged {len(flagged)} step(s)" in texts or "lr_too_high" in ids(report)


def test_the_batch_is_compared_with_the_noise_scale(tmp_path):
    from training.analysis.runs import Run

    losses = {s: 10.0 - 0.02 * s for s in range(1, 101)}
    for noise, expected in ((1_000.0, "batch_above_noise_scale"), (100_000.0, "batch_below_noise_scale"),
                            (10_000.0, "batch_near_noise_scale")):
        run = Run(name="n", run_dir=tmp_path, scalars={
            "train/loss": losses, "run/tokens_per_step": {0: 10_000.0},
            "noise/b_simple_tokens": {s: noise for s in range(1, 101, 10)}})
        finding = next(f for f in build_report(run)["findings"] if f["id"].startswith("batch_"))
        assert finding["id"] == expected and f"of {noise:,.0f} tokens" in finding["evidence"]
        assert finding["evidence"].startswith("10,000 tokens per step")
