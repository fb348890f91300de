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
from training.loop.trainer import Trainer

from .helpers import REPO, tiny_run_config

PLANTS = {
    # name: (data, overrides)
    "healthy": ("big", dict(max_lr=1e-3, min_lr=1e-5, max_steps=60, warmup_steps=10)),
    "lr_low": ("big", dict(max_lr=1e-6, min_lr=1e-7, max_steps=60, warmup_steps=10)),
    "lr_high": ("big", dict(max_lr=3.0, min_lr=1e-2, max_steps=60, warmup_steps=5, on_nonfinite="skip")),
    # ~3000 training tokens repeated for ~4 epochs, validated on other text
    "overfit": ("small", dict(max_lr=3e-3, min_lr=1e-3, max_steps=100, warmup_steps=10, n_embd=64)),
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
    for name, (data, overrides) in PLANTS.items():
        config = tiny_run_config(root / name, root / data, eval_every=10, callbacks=["grad_norm", "layer_ratios"],
                                 diagnostics_every=5, **overrides)
        trainer = Trainer(config)
        trainer.train()
        trainer.close()
        reports[name] = build_report(load_run(root / name))
    return root, reports


def ids(report):
    return {f["id"] for f in report["findings"]}


def test_planted_runs_get_their_diagnosis(planted):
    _, reports = planted
    assert "healthy" in ids(reports["healthy"])
    assert "lr_too_low" in ids(reports["lr_low"])
    assert "lr_too_high" in ids(reports["lr_high"])
    assert "overfitting" in ids(reports["overfit"])
    for problem in ("lr_too_low", "lr_too_high", "overfitting"):
        assert problem not in ids(reports["healthy"]), problem
    assert "healthy" not in ids(reports["lr_low"]) | ids(reports["lr_high"]) | ids(reports["overfit"])


def test_findings_cite_their_numbers(planted):
    _, reports = planted
    low = next(f for f in reports["lr_low"]["findings"] if f["id"] == "lr_too_low")
    median = reports["lr_low"]["update_ratio"]["overall_median"]
    assert median < 1e-4 and f"{median:.2e}" in low["evidence"] and "--max_lr" in low["recommendation"]
    overfit = next(f for f in reports["overfit"]["findings"] if f["id"] == "overfitting")
    loss = reports["overfit"]["loss"]
    assert f"step {loss['min_val_step']}" in overfit["evidence"] and loss["final_val_loss"] > loss["min_val_loss"]
    assert reports["overfit"]["tokens"]["epochs_started"] > 1
    init = next(f for f in reports["healthy"]["findings"] if f["id"] == "init_uniform")
    assert f"{math.log(50304):.4g}" in init["evidence"]


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
    run = load_run(root / "healthy", reference_loss=9.9)
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
    assert len(clipped.get_offsets()) == int((norm > 1.0).sum())
    ratios = plot_ratios(run, "update_ratio/", "update")
    panel = {ax.get_title(): ax for ax in ratios.axes}
    c_fc = [line for line in panel["mlp.c_fc"].lines if line.get_label().startswith("layer")]
    assert len(c_fc) == 2
    assert np.array_equal(c_fc[0].get_ydata(), run.series("update_ratio/h.0.mlp.c_fc.weight")[1])
    assert panel["mlp.c_fc"].get_yscale() == "log"


def test_analyze_run_script_writes_plots_and_report(planted, tmp_path):
    root, _ = planted
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "analyze_run.py"), str(root / "healthy"),
                             str(root / "overfit"), "--reference_loss", "9.9", "--out", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("lossGraph.png", "gradNorm.png", "grad_param_ratio.png", "update_ratio.png", "report.md",
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
