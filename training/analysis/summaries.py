"""The numbers the report and plots rest on, computed from a ``Run``'s scalars, and ``RunSummary``, the data model
the report's rules read (one section per signal)."""

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..layout import Tags
from .runs import Run
from .thresholds import (
    CHANGE_SETTLE_STEPS,
    DEPTH_FLAT,
    DEPTH_TREND,
    DIVERGENCE_RISE,
    EARLY_FRACTION,
    EMA_ALPHA,
    FAR_ABOVE,
    FAR_BELOW,
    JUMP_GRAD_FACTOR,
    JUMP_MIN_NATS,
    JUMP_NEIGHBOURS,
    JUMP_NOISE_FACTOR,
    MIN_BLOCKS_FOR_DEPTH,
    RATIO_SKIP_FRACTION,
    RATIO_UNSTABLE,
    REFERENCE_TOLERANCE,
    SPIKE_MIN_HISTORY,
    SPIKE_WINDOW,
    SPIKE_Z,
    STANDARD_INIT_STD,
)

__all__ = ["FAR_ABOVE", "FAR_BELOW", "RunSummary", "ema", "first_crossing", "summarize"]


def ema(values: np.ndarray, alpha: float = EMA_ALPHA) -> np.ndarray:
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


def expected_initial_loss(run: Run) -> tuple[float, float, float]:
    """ln(vocab), the loss expected at initialisation with the run's init_std, and with GPT-2's 0.02 at the same
    width: ln(vocab) + n_embd * std^2 / 2 (thresholds.py says why), for a run started from random weights."""
    model = run.config.get("model", {})
    uniform = math.log(run.vocab_size)
    width, std = model.get("n_embd"), model.get("init_std")
    if not width or not std:
        return uniform, uniform, uniform
    return uniform, uniform + width * std ** 2 / 2, uniform + width * STANDARD_INIT_STD ** 2 / 2


def finite_smoothed(loss: np.ndarray) -> np.ndarray:
    """The EMA of a loss curve in which a non-finite value counts as the largest finite one (an inf must not
    become 1.8e308 and dominate every smoothed value after it)."""
    finite = np.isfinite(loss)
    return ema(np.where(finite, loss, loss[finite].max() if finite.any() else 0.0))


def loss_summary(run: Run) -> dict:
    steps, loss = run.series(Tags.TRAIN_LOSS)
    finite = np.isfinite(loss)
    uniform, expected, standard = expected_initial_loss(run)
    initial = float(loss[0]) if len(loss) else None
    smooth = finite_smoothed(loss)
    summary = {"initial_train_loss": initial, "uniform_loss": uniform, "expected_initial_loss": expected,
               "standard_initial_loss": standard,
               "initial_minus_uniform": None if initial is None else initial - uniform,
               "initial_minus_expected": None if initial is None else initial - expected,
               "final_train_loss_smoothed": float(smooth[-1]) if len(smooth) else None,
               "min_train_loss_smoothed": float(np.nanmin(smooth)) if len(smooth) else None,
               "steps": int(steps[-1]) if len(steps) else 0, "nonfinite_steps": int((~finite).sum()),
               **divergence_onset(steps, smooth)}
    val_steps, val = run.series(Tags.VAL_LOSS)
    if len(val):
        best = int(np.argmin(val))
        summary.update({"initial_val_loss": float(val[0]), "final_val_loss": float(val[-1]),
                        "min_val_loss": float(val[best]), "min_val_step": int(val_steps[best]),
                        "last_val_step": int(val_steps[-1]), "val_evaluations": int(len(val))})
    return summary


def divergence_onset(steps: np.ndarray, smooth: np.ndarray) -> dict:
    """Where the smoothed loss reached its minimum and the first step after it at which it stood DIVERGENCE_RISE / 2
    above (the onset of a climb), with the length of the stable stretch before the minimum."""
    if not len(smooth):
        return {}
    low = int(np.nanargmin(smooth))
    above = np.flatnonzero(smooth[low:] > smooth[low] + DIVERGENCE_RISE / 2)
    onset = int(steps[low + above[0]]) if len(above) else None
    return {"min_train_loss_step": int(steps[low]), "divergence_onset_step": onset}


def tokens_at(run: Run, step: float | None) -> float | None:
    if step is None or run.tokens_per_step is None:
        return None
    return float(step * run.tokens_per_step)


def reference_summary(run: Run) -> dict:
    out = {"reference_loss": run.reference_loss, "reference_source": run.reference_source}
    if run.reference_loss is None:
        return out
    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
    # Within REFERENCE_TOLERANCE counts as reached: the same model measured twice agrees to about that much.
    def crossing(x, y):
        if not len(y):
            return None
        found = first_crossing(x, y, run.reference_loss)
        return found if found is not None else first_crossing(x, y, run.reference_loss + REFERENCE_TOLERANCE)

    train_cross, val_cross = crossing(steps, ema(loss)), crossing(val_steps, val)
    out.update({"train_crossing_step": train_cross, "train_crossing_tokens": tokens_at(run, train_cross),
                "val_crossing_step": val_cross, "val_crossing_tokens": tokens_at(run, val_cross)})
    return out


def token_summary(run: Run) -> dict:
    steps, tokens = run.series(Tags.TRAIN_TOKENS_SEEN)
    total = float(tokens[-1]) if len(tokens) else None
    out = {"tokens_per_step": run.tokens_per_step, "total_tokens": total, "dataset_tokens": run.dataset_tokens}
    if run.dataset_tokens and total:
        out["fraction_of_dataset"] = total / run.dataset_tokens
        out["steps_per_epoch"] = run.dataset_tokens / run.tokens_per_step
    _, epoch = run.series(Tags.TRAIN_EPOCH)
    out["epochs_started"] = int(epoch[-1]) + 1 if len(epoch) else None
    return out


def gap_summary(run: Run) -> dict:
    """Validation minus smoothed training loss at every evaluation, and its trend over the second half."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
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
    steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    finite = np.isfinite(norm)
    if not finite.any():
        return {}
    steps, norm = steps[finite], norm[finite]
    early = max(1, len(norm) // EARLY_FRACTION)
    warmup = int(run.config.get("train", {}).get("warmup_steps", 0) or 0)
    after_mask = steps > warmup
    after = norm[after_mask] if after_mask.any() else norm  # percentiles of all steps when none is after warmup
    clip = run.grad_clip
    return {"initial_peak": float(norm[:early].max()), "initial_peak_step": int(steps[int(np.argmax(norm[:early]))]),
            "median": float(np.median(norm)), "p10_after_warmup": float(np.percentile(after, 10)),
            "p90_after_warmup": float(np.percentile(after, 90)), "median_after_warmup": float(np.median(after)),
            "clip": clip, "clipped_fraction": float((norm > clip).mean()) if clip else 0.0,
            "clipped_fraction_after_warmup": float((after > clip).mean()) if clip else 0.0,
            "steps_after_warmup": int(after_mask.sum())}


def ratio_summary(run: Run, prefix: str) -> dict:
    """Per parameter: median ratio over the measurements after the first 10% of steps, and where it sits."""
    tags = run.tags(prefix)
    if not tags:
        return {}
    last_step = max(max(run.scalars[t]) for t in tags)
    per_param = {}
    for tag in tags:
        steps, values = run.series(tag)
        keep = steps >= RATIO_SKIP_FRACTION * last_step
        values = values[keep] if keep.any() else values
        values = values[np.isfinite(values)]
        if len(values):
            per_param[tag[len(prefix):]] = float(np.median(values))
    if not per_param:
        return {}
    medians = np.array(list(per_param.values()))
    return {"per_parameter_median": per_param, "overall_median": float(np.median(medians)),
            "zero": sorted(n for n, v in per_param.items() if v == 0),
            "far_below": sorted(n for n, v in per_param.items() if v < FAR_BELOW),
            "far_above": sorted(n for n, v in per_param.items() if v > FAR_ABOVE),
            "min": float(medians.min()), "max": float(medians.max())}


def zscore_outliers(steps: np.ndarray, values: np.ndarray, z_threshold: float = SPIKE_Z,
                    window: int = SPIKE_WINDOW) -> list[int]:
    """Steps whose value is more than ``z_threshold`` standard deviations above the trailing ``window`` (or not
    finite), llm.c's outlier rule; needs 8 finite values of history."""
    out = []
    for i in range(window // 4, len(values)):
        history = values[max(0, i - window):i]
        history = history[np.isfinite(history)]
        if len(history) < SPIKE_MIN_HISTORY:
            continue
        std = history.std()
        if not np.isfinite(values[i]) or (std > 0 and (values[i] - history.mean()) / std > z_threshold):
            out.append(int(steps[i]))
    return out


def grad_spike_summary(run: Run) -> dict:
    """Gradient-norm outliers after warmup (the early, large norms of warmup are expected and not counted)."""
    steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    warmup = int(run.config.get("train", {}).get("warmup_steps", 0) or 0)
    spikes = [s for s in zscore_outliers(steps, norm) if s > warmup]
    return {"after_warmup": spikes, "values": {s: float(run.scalars[Tags.TRAIN_GRAD_NORM][s]) for s in spikes}}


def weight_summary(run: Run) -> dict:
    """How the weights' size evolves (RMS per matrix, first vs last measurement) and how much of each matrix's
    update is AdamW's decoupled weight decay (lr * wd, logged exactly) rather than gradient-driven."""
    rms_tags = run.tags(Tags.WEIGHT_RMS)
    if not rms_tags:
        return {}
    change = {}
    for tag in rms_tags:
        _, values = run.series(tag)
        if len(values) >= 2 and values[0] > 0:
            change[tag[len(Tags.WEIGHT_RMS):]] = float(values[-1] / values[0] - 1)
    decay_share, decay_vs_gradient = {}, {}
    for tag in run.tags(Tags.UPDATE_RATIO_DECAY):
        name = tag[len(Tags.UPDATE_RATIO_DECAY):]
        decay_steps, decay = run.series(tag)
        total = run.scalars.get(Tags.UPDATE_RATIO + name, {})
        shares = [d / total[int(s)] for s, d in zip(decay_steps, decay) if total.get(int(s), 0) > 0]
        if shares:
            decay_share[name] = float(np.median(shares))
        learning = run.scalars.get(Tags.UPDATE_RATIO_GRAD + name, {})
        against = [d / learning[int(s)] for s, d in zip(decay_steps, decay) if learning.get(int(s), 0) > 0]
        if against:
            decay_vs_gradient[name] = float(np.median(against))
    def median(values: dict) -> float | None:
        return float(np.median(list(values.values()))) if values else None

    return {"rms_change": change, "median_rms_change": median(change), "decay_share": decay_share,
            "median_decay_share": median(decay_share), "decay_vs_gradient": decay_vs_gradient,
            "median_decay_vs_gradient": median(decay_vs_gradient)}


def spike_summary(run: Run, z_threshold: float = SPIKE_Z, window: int = SPIKE_WINDOW) -> dict:
    """Loss spikes: a z-score of the loss against the trailing window (llm.c's rule), always computed here from the
    logged loss, so the count does not depend on whether the spike_detector callback ran (its defaults are the same
    rule; what it flagged is in its own tags)."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    spikes = zscore_outliers(steps, loss, z_threshold, window)
    return {"source": f"loss z-score > {z_threshold} over the previous {window} steps", "spike_steps": spikes}


def loss_jumps(run: Run) -> dict:
    """Steps where the optimizer pushed the weights somewhere worse: the loss stands out above the medians of the
    steps on both sides (so a falling trend does not count) and the gradient norm is large at the same step (so a
    hard batch, which raises the loss alone, does not count). Thresholds in ``thresholds.py``."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    grad_steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    k = JUMP_NEIGHBOURS
    if len(loss) < 2 * k + 1 or not len(norm):
        return {"steps": [], "threshold": None}
    loss = np.where(np.isfinite(loss), loss, np.nanmax(loss[np.isfinite(loss)], initial=0) + 10 * JUMP_MIN_NATS)
    excess = np.full(len(loss), np.nan)
    for i in range(len(loss)):
        before, after = loss[max(0, i - k):i], loss[i + 1:i + 1 + k]
        if len(before) and len(after):
            excess[i] = loss[i] - max(np.median(before), np.median(after))
    residual = excess[np.isfinite(excess)]
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))  # robust batch-to-batch spread
    threshold = max(JUMP_MIN_NATS, JUMP_NOISE_FACTOR * noise)
    grad_at = dict(zip(grad_steps.astype(int).tolist(), norm.tolist()))
    grad_limit = JUMP_GRAD_FACTOR * float(np.median(norm[np.isfinite(norm)]))
    jumps = [int(s) for s, e in zip(steps, excess)
             if e >= threshold and not grad_at.get(int(s), math.inf) < grad_limit]
    return {"steps": jumps, "threshold": threshold,
            "excess": {int(s): float(e) for s, e in zip(steps, excess) if int(s) in jumps},
            "grad_norm": {s: grad_at.get(s, math.nan) for s in jumps}}


def median_ratio_trace(run: Run, prefix: str = Tags.UPDATE_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """The median over weight matrices of a per-matrix ratio at every diagnostics step."""
    tags = run.tags(prefix)
    if not tags:
        return np.array([]), np.array([])
    steps = sorted({s for t in tags for s in run.scalars[t]})
    medians = [np.nanmedian([run.scalars[t].get(s, np.nan) for t in tags]) for s in steps]
    return np.array(steps), np.array(medians, dtype=float)


def early_phase_summary(run: Run) -> dict:
    """The phase at the start in which Adam's steps are large relative to the weights (early gradients agree from
    step to step, so Adam's normalised step is close to the full learning rate) and whether the run was damaged
    in it: where the median update ratio was above RATIO_UNSTABLE, when it settled below for good, and the loss
    jumps before and after that."""
    steps, trace = median_ratio_trace(run)
    if not len(trace):
        return {}
    peak = int(np.nanargmax(trace))
    above = np.flatnonzero(trace > RATIO_UNSTABLE)
    settle = None
    if len(above) and above[-1] + 1 < len(trace):
        settle = int(steps[above[-1] + 1])
    jumps = loss_jumps(run)
    boundary = settle if settle is not None else (math.inf if len(above) else 0)
    out = {"peak_ratio": float(trace[peak]), "peak_ratio_step": int(steps[peak]), "settle_step": settle,
           "overshoot": bool(len(above)), "jump_threshold": jumps["threshold"],
           "early_jumps": [s for s in jumps["steps"] if s <= boundary],
           "late_jumps": [s for s in jumps["steps"] if s > boundary],
           "jump_excess": jumps.get("excess", {}), "jump_grad_norm": jumps.get("grad_norm", {})}
    lr_steps, lr = run.series(Tags.TRAIN_LR)
    if settle is not None and len(lr):
        later = lr[lr_steps >= settle]
        out["peak_lr"], out["max_lr_after_settle"] = float(lr.max()), float(later.max()) if len(later) else None
    return out


_MATRIX = re.compile(r"^h\.(\d+)\.(.+)\.weight$")


def block_and_kind(name: str) -> tuple[int | None, str]:
    """``h.3.mlp.c_fc.weight`` -> (3, "mlp.c_fc"); a matrix outside the blocks (wte, wpe) -> (None, "embeddings")."""
    match = _MATRIX.match(name)
    return (int(match[1]), match[2]) if match else (None, "embeddings")


def depth_summary(per_parameter: dict[str, float]) -> dict:
    """How a per-matrix ratio depends on depth: the median of each transformer block's matrices, and the change
    from the first to the last block of a least-squares line through log10 of those medians (in decades)."""
    blocks: dict[int, list[float]] = {}
    for name, value in per_parameter.items():
        block = block_and_kind(name)[0]
        if block is not None and value > 0:
            blocks.setdefault(block, []).append(value)
    if len(blocks) < MIN_BLOCKS_FOR_DEPTH:
        return {"blocks": len(blocks)}
    index = np.array(sorted(blocks), dtype=float)
    medians = np.array([np.median(blocks[int(i)]) for i in index])
    slope, intercept = np.polyfit(index, np.log10(medians), 1)
    decades = float(slope * (index[-1] - index[0]))
    return {"blocks": len(blocks), "per_block": {int(i): float(m) for i, m in zip(index, medians)},
            "fitted": {int(i): float(10 ** (intercept + slope * i)) for i in index},
            "trend_decades": decades, "first_block": int(index[0]), "last_block": int(index[-1]),
            "starved": "first" if decades >= DEPTH_TREND else "last" if decades <= -DEPTH_TREND else None,
            "flat": abs(decades) < DEPTH_FLAT}


# ----------------------------------------------------------------------------------------------- the data model
@dataclass
class RunSummary:
    """What the report's rules read: one section per signal (the dicts above; empty when not logged), and the
    run's records of what was done to it (changes on resume, spike-guard interventions, its branch origin)."""

    run: str
    config: dict
    loss: dict
    reference: dict
    tokens: dict
    gap: dict
    grad_norm: dict
    grad_spikes: dict
    update_ratio: dict
    update_ratio_grad: dict
    grad_ratio: dict
    weights: dict
    spikes: dict
    early_phase: dict
    noise_scale: dict
    changes: list
    interventions: list
    branch: dict | None

    @cached_property  # read by several rules and the report; not a field, so asdict leaves it out
    def depth(self) -> dict:
        """The learning ratio and the raw gradient ratio per transformer block, with their trend over depth."""
        return {"learning": depth_summary(self.learning_ratio.get("per_parameter_median", {})),
                "gradient": depth_summary(self.grad_ratio.get("per_parameter_median", {}))}

    def explained(self, step: int) -> bool:
        """Whether a spike at ``step`` is explained by something done to the run: settings changed by hand up to
        CHANGE_SETTLE_STEPS steps before, or an update the spike guard skipped (stated in its own finding)."""
        if any(0 <= step - c["step"] <= CHANGE_SETTLE_STEPS for c in self.changes):
            return True
        return any(r["action"] == "skip" and r["step"] == step for r in self.interventions)

    def unexplained(self, steps: list[int]) -> list[int]:
        return [x for x in steps if not self.explained(x)]

    def setting(self, section: str, name: str, default=None):
        return self.config.get(section, {}).get(name, default)

    @property
    def learning_ratio(self) -> dict:
        """The gradient-driven update ratios when logged (weight decay removed), else the whole update ratios."""
        return self.update_ratio_grad or self.update_ratio

    @property
    def learning_ratio_name(self) -> str:
        return "gradient-driven update/weight ratio" if self.update_ratio_grad else "update/weight ratio"


def noise_scale_summary(run: Run) -> dict:
    """The gradient noise scale B_simple logged by the loop (in tokens), against the run's tokens per step, over
    the second half of the measurements (the first half is the fast early phase)."""
    steps, noise = run.series(Tags.NOISE_SCALE_TOKENS)
    keep = np.isfinite(noise) & (noise > 0)
    steps, noise = steps[keep], noise[keep]
    if not len(noise) or not run.tokens_per_step:
        return {}
    later = noise[len(noise) // 2:]
    median = float(np.median(later))
    return {"steps": steps.tolist(), "values": noise.tolist(), "median_later": median,
            "first": float(noise[0]), "last": float(noise[-1]), "tokens_per_step": float(run.tokens_per_step),
            "batch_over_noise": float(run.tokens_per_step / median)}


def summarize(run: Run) -> RunSummary:
    return RunSummary(run=run.name, config=run.config, loss=loss_summary(run), reference=reference_summary(run),
                      tokens=token_summary(run), gap=gap_summary(run), grad_norm=grad_norm_summary(run),
                      grad_spikes=grad_spike_summary(run), update_ratio=ratio_summary(run, Tags.UPDATE_RATIO),
                      update_ratio_grad=ratio_summary(run, Tags.UPDATE_RATIO_GRAD),
                      grad_ratio=ratio_summary(run, Tags.GRAD_RATIO), weights=weight_summary(run),
                      spikes=spike_summary(run), early_phase=early_phase_summary(run),
                      noise_scale=noise_scale_summary(run), changes=run.changes, interventions=run.interventions,
                      branch=run.branch)
