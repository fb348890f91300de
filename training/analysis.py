"""Reading a run's TensorBoard logs back (and, built on that, the run report and plots)."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator


def event_files(run_dir: str | Path) -> list[Path]:
    """Every TensorBoard event file under ``run_dir``, oldest first (by the wall time of its first event)."""
    files = [p for p in Path(run_dir).rglob("events.out.tfevents.*") if p.is_file()]
    return sorted(files, key=lambda p: (_first_wall_time(p), p.name))


def _first_wall_time(path: Path) -> float:
    try:
        name_time = float(path.name.split(".")[3])
    except (IndexError, ValueError):
        name_time = path.stat().st_mtime
    return name_time


def read_run_scalars(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over all event files; a step written twice (a resumed run re-doing steps after its
    last checkpoint) keeps the value written last."""
    scalars: dict[str, dict[int, float]] = {}
    for path in event_files(run_dir):
        accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0}, purge_orphaned_data=False)
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            series = scalars.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                series[event.step] = event.value
    return {tag: dict(sorted(series.items())) for tag, series in scalars.items()}


def read_run_texts(run_dir: str | Path) -> dict[str, dict[int, str]]:
    """Text summaries (samples, config): tag -> {step: text}."""
    texts: dict[str, dict[int, str]] = {}
    for path in event_files(run_dir):
        accumulator = EventAccumulator(str(path), size_guidance={TENSORS: 0}, purge_orphaned_data=False)
        accumulator.Reload()
        for tag in accumulator.Tags().get("tensors", []):
            for event in accumulator.Tensors(tag):
                values = event.tensor_proto.string_val
                if values:
                    texts.setdefault(tag.replace("/text_summary", ""), {})[event.step] = values[0].decode()
    return texts


# ----------------------------------------------------------------------------------------------- run data
RATIO_TARGET = 1e-3  # healthy per-step update/weight ratio (order of magnitude)
FAR_BELOW = RATIO_TARGET / 10
FAR_ABOVE = RATIO_TARGET * 10


@dataclass
class Run:
    """One run's logs and facts, as the analysis needs them."""

    name: str
    run_dir: Path
    scalars: dict[str, dict[int, float]]
    config: dict = field(default_factory=dict)
    reference_loss: float | None = None
    reference_source: str | None = None
    dataset_tokens: int | None = None

    def series(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        data = self.scalars.get(tag, {})
        return np.array(list(data.keys()), dtype=float), np.array(list(data.values()), dtype=float)

    def has(self, tag: str) -> bool:
        return bool(self.scalars.get(tag))

    def first(self, tag: str, default=None):
        data = self.scalars.get(tag)
        return next(iter(data.values())) if data else default

    @property
    def tokens_per_step(self) -> float | None:
        value = self.first("run/tokens_per_step")
        if value is None and self.has("train/tokens_seen"):
            steps, tokens = self.series("train/tokens_seen")
            value = tokens[0] / steps[0]
        return value

    @property
    def vocab_size(self) -> int:
        value = self.first("run/vocab_size") or self.config.get("model", {}).get("vocab_size") or 50304
        return int(value)

    @property
    def grad_clip(self) -> float | None:
        value = self.first("run/grad_clip")
        if value is None:
            value = self.config.get("train", {}).get("grad_clip")
        return value

    def tags(self, prefix: str) -> list[str]:
        return sorted(t for t in self.scalars if t.startswith(prefix))


def load_run(run_dir: str | Path, reference_loss: float | None = None, reference_eval: str | Path | None = None,
             dataset_tokens: int | None = None) -> Run:
    """Scalars, resolved config, the reference loss (given > --reference_eval JSON > the run's own
    reference_eval.json > its reference/val_loss tag) and the dataset size (meta.json of the run's data)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} does not exist.")
    if not event_files(run_dir):
        raise FileNotFoundError(f"{run_dir} holds no TensorBoard event files (expected {run_dir}/tensorboard/).")
    scalars = read_run_scalars(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    run = Run(name=run_dir.name, run_dir=run_dir, scalars=scalars, config=config, dataset_tokens=dataset_tokens)
    if reference_loss is not None:
        run.reference_loss, run.reference_source = reference_loss, "given (--reference_loss)"
    elif reference_eval is not None or (run_dir / "reference_eval.json").exists():
        path = Path(reference_eval or run_dir / "reference_eval.json")
        payload = json.loads(path.read_text())
        reference = payload.get("reference", payload)
        run.reference_loss = reference["val_loss"]
        run.reference_source = f"measured: {reference.get('name', 'reference')} ({path})"
    elif run.has("reference/val_loss"):
        run.reference_loss, run.reference_source = run.first("reference/val_loss"), "measured (TensorBoard)"
    if run.dataset_tokens is None:
        run.dataset_tokens = _dataset_tokens(config)
    return run


def _dataset_tokens(config: dict) -> int | None:
    candidates = []
    data = config.get("data", {}).get("data")
    if data:
        candidates.append(Path(data))
    if config.get("train", {}).get("output_dir"):
        candidates.append(Path(config["train"]["output_dir"]) / "data" / "shards")
    for folder in candidates:
        meta = folder / "meta.json"
        if meta.exists():
            return int(json.loads(meta.read_text()).get("tokens", {}).get("train", 0)) or None
    return None


# ----------------------------------------------------------------------------------------------- numbers
def ema(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Exponential moving average (bias-corrected), for noisy per-step curves."""
    out = np.empty_like(values)
    average, weight = 0.0, 0.0
    for i, value in enumerate(values):
        average = (1 - alpha) * average + alpha * value
        weight = (1 - alpha) * weight + alpha
        out[i] = average / weight
    return out


def first_crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float | None:
    """The first step where the curve reaches ``level`` from above, linearly interpolated between points."""
    below = np.flatnonzero(values <= level)
    if len(below) == 0:
        return None
    i = below[0]
    if i == 0:
        return float(steps[0])
    x0, x1, y0, y1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(x0 + (y0 - level) / (y0 - y1) * (x1 - x0))


def loss_summary(run: Run) -> dict:
    steps, loss = run.series("train/loss")
    finite = np.isfinite(loss)
    uniform = math.log(run.vocab_size)
    initial = float(loss[0]) if len(loss) else None
    smooth = ema(np.where(finite, loss, np.nan_to_num(loss, nan=np.nanmax(loss[finite]) if finite.any() else 0)))
    summary = {"initial_train_loss": initial, "uniform_loss": uniform,
               "initial_minus_uniform": None if initial is None else initial - uniform,
               "final_train_loss_smoothed": float(smooth[-1]) if len(smooth) else None,
               "min_train_loss_smoothed": float(np.nanmin(smooth)) if len(smooth) else None,
               "steps": int(steps[-1]) if len(steps) else 0, "nonfinite_steps": int((~finite).sum())}
    val_steps, val = run.series("val/loss")
    if len(val):
        best = int(np.argmin(val))
        summary.update({"initial_val_loss": float(val[0]), "final_val_loss": float(val[-1]),
                        "min_val_loss": float(val[best]), "min_val_step": int(val_steps[best])})
    return summary


def tokens_at(run: Run, step: float | None) -> float | None:
    if step is None or run.tokens_per_step is None:
        return None
    return float(step * run.tokens_per_step)


def reference_summary(run: Run) -> dict:
    out = {"reference_loss": run.reference_loss, "reference_source": run.reference_source}
    if run.reference_loss is None:
        return out
    steps, loss = run.series("train/loss")
    val_steps, val = run.series("val/loss")
    train_cross = first_crossing(steps, ema(loss), run.reference_loss) if len(loss) else None
    val_cross = first_crossing(val_steps, val, run.reference_loss) if len(val) else None
    out.update({"train_crossing_step": train_cross, "train_crossing_tokens": tokens_at(run, train_cross),
                "val_crossing_step": val_cross, "val_crossing_tokens": tokens_at(run, val_cross)})
    return out


def token_summary(run: Run) -> dict:
    steps, tokens = run.series("train/tokens_seen")
    total = float(tokens[-1]) if len(tokens) else None
    out = {"tokens_per_step": run.tokens_per_step, "total_tokens": total, "dataset_tokens": run.dataset_tokens}
    if run.dataset_tokens and total:
        out["fraction_of_dataset"] = total / run.dataset_tokens
        out["steps_per_epoch"] = run.dataset_tokens / run.tokens_per_step
    _, epoch = run.series("train/epoch")
    out["epochs_started"] = int(epoch[-1]) + 1 if len(epoch) else None
    return out


def gap_summary(run: Run) -> dict:
    """Validation minus smoothed training loss at every evaluation, and its trend over the second half."""
    steps, loss = run.series("train/loss")
    val_steps, val = run.series("val/loss")
    if len(val) < 2 or len(loss) == 0:
        return {"evaluations": int(len(val))}
    smooth = ema(loss)
    train_at = np.interp(val_steps, steps, smooth)
    gap = val - train_at
    half = len(gap) // 2
    return {"evaluations": int(len(val)), "gap_steps": val_steps.tolist(), "gap": gap.tolist(),
            "gap_final": float(gap[-1]), "gap_mid": float(gap[half]), "gap_change_second_half":
            float(gap[-1] - gap[half]), "val_rise_from_min": float(val[-1] - val.min()),
            "train_change_after_val_min": float(train_at[-1] - train_at[int(np.argmin(val))])}


def grad_norm_summary(run: Run) -> dict:
    steps, norm = run.series("train/grad_norm")
    finite = np.isfinite(norm)
    if not finite.any():
        return {}
    steps, norm = steps[finite], norm[finite]
    early = max(1, len(norm) // 20)
    warmup = int(run.config.get("train", {}).get("warmup_steps", 0) or 0)
    after = norm[steps > min(warmup, steps[-1] // 2)] if (steps > min(warmup, steps[-1] // 2)).any() else norm
    clip = run.grad_clip
    return {"initial_peak": float(norm[:early].max()), "initial_peak_step": int(steps[int(np.argmax(norm[:early]))]),
            "median": float(np.median(norm)), "p10_after_warmup": float(np.percentile(after, 10)),
            "p90_after_warmup": float(np.percentile(after, 90)), "median_after_warmup": float(np.median(after)),
            "clip": clip, "clipped_fraction": float((norm > clip).mean()) if clip else 0.0,
            "clipped_fraction_after_warmup": float((after > clip).mean()) if clip else 0.0}


def ratio_summary(run: Run, prefix: str) -> dict:
    """Per parameter: median ratio over the measurements after the first 10% of steps, and where it sits."""
    tags = run.tags(prefix)
    if not tags:
        return {}
    last_step = max(max(run.scalars[t]) for t in tags)
    per_param = {}
    for tag in tags:
        steps, values = run.series(tag)
        keep = steps >= 0.1 * last_step
        values = values[keep] if keep.any() else values
        values = values[np.isfinite(values)]
        if len(values):
            per_param[tag[len(prefix):]] = float(np.median(values))
    if not per_param:
        return {}
    medians = np.array(list(per_param.values()))
    return {"per_parameter_median": per_param, "overall_median": float(np.median(medians)),
            "far_below": sorted(n for n, v in per_param.items() if v < FAR_BELOW),
            "far_above": sorted(n for n, v in per_param.items() if v > FAR_ABOVE),
            "min": float(medians.min()), "max": float(medians.max())}


def spike_summary(run: Run, z_threshold: float = 5.0, window: int = 50) -> dict:
    """Loss spikes: the spike detector's own log when present, else a z-score of the loss against the trailing
    window (llm.c's rule) computed here."""
    if run.has("spikes/is_spike"):
        steps, flags = run.series("spikes/is_spike")
        return {"source": "spike_detector", "spike_steps": [int(s) for s, f in zip(steps, flags) if f > 0]}
    steps, loss = run.series("train/loss")
    spikes = []
    for i in range(window // 4, len(loss)):
        history = loss[max(0, i - window):i]
        history = history[np.isfinite(history)]
        if len(history) < 8:
            continue
        std = history.std()
        if not np.isfinite(loss[i]) or (std > 0 and (loss[i] - history.mean()) / std > z_threshold):
            spikes.append(int(steps[i]))
    return {"source": f"loss z-score > {z_threshold} over the previous {window} steps", "spike_steps": spikes}
