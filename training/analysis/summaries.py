"""The numbers the report and plots rest on, computed from a ``Run``'s scalars, and ``RunSummary``, the data model
the report's rules read: one typed section per signal (``summary_types.py``, which states the convention: a section
the run did not log is None, a field it did not log is None)."""

import math
import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, get_type_hints

import numpy as np

from ..config_fields import flatten
from ..layout import Tags
from .runs import Run
from .summary_types import (
    Abandoned,
    Depth,
    DepthTrend,
    EarlyPhase,
    Expectation,
    ExpectedRatio,
    GapSummary,
    GradNormSummary,
    GradSpikes,
    GroupExpectation,
    Guard,
    LossSpikes,
    LossSummary,
    Movement,
    NoiseScale,
    Outliers,
    PeakHold,
    RatioSummary,
    ReferenceSummary,
    Regime,
    Scenario,
    SpikeDetail,
    TokenSummary,
    Trend,
    WeightSummary,
    plain,
    typed,
)
from .thresholds import (
    BARELY_MOVES,
    CHANGE_SETTLE_STEPS,
    DEPTH_FLAT,
    DEPTH_TREND,
    DIVERGENCE_RISE,
    EARLY_FRACTION,
    EMA_ALPHA,
    FAR_ABOVE,
    FAR_BELOW,
    GRAD_SPIKE_MIN_RELATIVE,
    HELD_PEAK_FRACTION,
    HELD_PEAK_MIN_STEPS,
    JUMP_GRAD_FACTOR,
    JUMP_MIN_NATS,
    JUMP_NEIGHBOURS,
    JUMP_NOISE_FACTOR,
    LOSS_FLAT,
    LOSS_FLAT_NOISE,
    LOSS_SPIKE_MIN_RELATIVE,
    MIN_BLOCKS_FOR_DEPTH,
    MIN_EVALUATIONS,
    MIN_EVALUATIONS_FOR_TREND,
    MUON_CONSISTENCY_BAND,
    MUON_RMS_SCALE,
    OUTPACES,
    OVERFIT_TRAIN_FALL,
    OVERFIT_VAL_RISE,
    OVERFIT_VAL_RISE_RELATIVE,
    RATIO_SKIP_FRACTION,
    RATIO_UNSTABLE,
    REFERENCE_TOLERANCE,
    SPIKE_MIN_RESIDUALS,
    SPIKE_NEIGHBOURS,
    SPIKE_NOISE_WINDOW,
    SPIKE_Z,
    STANDARD_INIT_STD,
    VAL_AGREES_RISE,
    adam_band,
    trend_limit,
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
    model = run.settings
    uniform = math.log(run.vocab_size)
    width, std = model.get("n_embd"), model.get("init_std")
    if not width or not std:
        return uniform, uniform, uniform
    # Under μP the logits are multiplied by 1/m (docs/mup.md): their variance, and the excess, by 1/m^2.
    multiplier = 1.0
    if model.get("parametrization") == "mup" and model.get("mup_base_width"):
        multiplier = (float(model["mup_base_width"]) / float(width)) ** 2
    excess = width * std ** 2 / 2 * multiplier
    return uniform, uniform + excess, uniform + width * STANDARD_INIT_STD ** 2 / 2 * multiplier


def finite_smoothed(loss: np.ndarray) -> np.ndarray:
    """The EMA of a loss curve in which a non-finite value counts as the largest finite one (an inf must not
    become 1.8e308 and dominate every smoothed value after it)."""
    finite = np.isfinite(loss)
    return ema(np.where(finite, loss, loss[finite].max() if finite.any() else 0.0))


def loss_summary(run: Run) -> LossSummary:
    steps, loss = run.series(Tags.TRAIN_LOSS)
    finite = np.isfinite(loss)
    uniform, expected, standard = expected_initial_loss(run)
    initial = float(loss[0]) if len(loss) else None
    smooth = finite_smoothed(loss)
    val_steps, val = run.series(Tags.VAL_LOSS)
    best = int(np.argmin(val)) if len(val) else None
    low_step, onset = divergence_onset(steps, smooth)
    return LossSummary(
        initial_train_loss=initial, uniform_loss=uniform, expected_initial_loss=expected,
        standard_initial_loss=standard, initial_minus_uniform=None if initial is None else initial - uniform,
        initial_minus_expected=None if initial is None else initial - expected,
        final_train_loss_smoothed=float(smooth[-1]) if len(smooth) else None,
        min_train_loss_smoothed=float(np.nanmin(smooth)) if len(smooth) else None,
        steps=int(steps[-1]) if len(steps) else 0, nonfinite_steps=int((~finite).sum()),
        first_nonfinite_step=int(steps[~finite][0]) if (~finite).any() else None,
        min_train_loss_step=low_step, divergence_onset_step=onset,
        **({} if best is None else dict(
            initial_val_loss=float(val[0]), final_val_loss=float(val[-1]), min_val_loss=float(val[best]),
            min_val_step=int(val_steps[best]), last_val_step=int(val_steps[-1]), val_evaluations=int(len(val)))))


def divergence_onset(steps: np.ndarray, smooth: np.ndarray) -> tuple[int | None, int | None]:
    """Where the smoothed loss reached its minimum and the first step after it at which it stood DIVERGENCE_RISE / 2
    above (the onset of a climb, None if none); (None, None) without a loss."""
    if not len(smooth):
        return None, None
    low = int(np.nanargmin(smooth))
    above = np.flatnonzero(smooth[low:] > smooth[low] + DIVERGENCE_RISE / 2)
    onset = int(steps[low + above[0]]) if len(above) else None
    return int(steps[low]), onset


def tokens_at(run: Run, step: float | None) -> float | None:
    if step is None or run.tokens_per_step is None:
        return None
    return float(step * run.tokens_per_step)


def reference_summary(run: Run) -> ReferenceSummary:
    if run.reference_loss is None:
        return ReferenceSummary(reference_loss=None, reference_source=run.reference_source)
    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
    # Within REFERENCE_TOLERANCE counts as reached: the same model measured twice agrees to about that much.
    def crossing(x, y):
        if not len(y):
            return None
        found = first_crossing(x, y, run.reference_loss)
        return found if found is not None else first_crossing(x, y, run.reference_loss + REFERENCE_TOLERANCE)

    train_cross, val_cross = crossing(steps, ema(loss)), crossing(val_steps, val)
    return ReferenceSummary(reference_loss=run.reference_loss, reference_source=run.reference_source,
                            train_crossing_step=train_cross, train_crossing_tokens=tokens_at(run, train_cross),
                            val_crossing_step=val_cross, val_crossing_tokens=tokens_at(run, val_cross))


def token_summary(run: Run) -> TokenSummary:
    steps, tokens = run.series(Tags.TRAIN_TOKENS_SEEN)
    total = float(tokens[-1]) if len(tokens) else None
    known = bool(run.dataset_tokens and total)
    _, epoch = run.series(Tags.TRAIN_EPOCH)
    return TokenSummary(tokens_per_step=run.tokens_per_step, total_tokens=total, dataset_tokens=run.dataset_tokens,
                        fraction_of_dataset=total / run.dataset_tokens if known else None,
                        steps_per_epoch=run.dataset_tokens / run.tokens_per_step if known else None,
                        epochs_started=int(epoch[-1]) + 1 if len(epoch) else None)


def gap_summary(run: Run) -> GapSummary:
    """Validation minus smoothed training loss at every evaluation, and its trend over the second half."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
    if len(val) < 2 or len(loss) == 0:
        return GapSummary(evaluations=int(len(val)))
    smooth = ema(loss)
    train_at = np.interp(val_steps, steps, smooth)
    gap = val - train_at
    half = len(gap) // 2
    return GapSummary(evaluations=int(len(val)), gap_steps=val_steps.tolist(), gap=gap.tolist(),
                      gap_final=float(gap[-1]), gap_mid=float(gap[half]),
                      gap_change_second_half=float(gap[-1] - gap[half]), val_rise_from_min=float(val[-1] - val.min()),
                      train_change_after_val_min=float(train_at[-1] - train_at[int(np.argmin(val))]))


def grad_norm_summary(run: Run) -> GradNormSummary | None:
    steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    finite = np.isfinite(norm)
    if not finite.any():
        return None
    steps, norm = steps[finite], norm[finite]
    early = max(1, len(norm) // EARLY_FRACTION)
    warmup = int(run.settings.get("warmup_steps", 0) or 0)
    after_mask = steps > warmup
    after = norm[after_mask] if after_mask.any() else norm  # percentiles of all steps when none is after warmup
    clip = run.grad_clip
    return GradNormSummary(
        initial_peak=float(norm[:early].max()), initial_peak_step=int(steps[int(np.argmax(norm[:early]))]),
        median=float(np.median(norm)), p10_after_warmup=float(np.percentile(after, 10)),
        p90_after_warmup=float(np.percentile(after, 90)), median_after_warmup=float(np.median(after)),
        clip=clip, clipped_fraction=float((norm > clip).mean()) if clip else 0.0,
        clipped_fraction_after_warmup=float((after > clip).mean()) if clip else 0.0,
        steps_after_warmup=int(after_mask.sum()))


def ratio_summary(run: Run, prefix: str) -> RatioSummary | None:
    """Per parameter: median ratio over the measurements after the first 10% of steps, and where it sits."""
    tags = run.tags(prefix)
    if not tags:
        return None
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
        return None
    medians = np.array(list(per_param.values()))
    return RatioSummary(per_parameter_median=per_param, overall_median=float(np.median(medians)),
                        zero=sorted(n for n, v in per_param.items() if v == 0),
                        far_below=sorted(n for n, v in per_param.items() if v < FAR_BELOW),
                        far_above=sorted(n for n, v in per_param.items() if v > FAR_ABOVE),
                        min=float(medians.min()), max=float(medians.max()))


def robust_outliers(steps: np.ndarray, values: np.ndarray, min_relative: float, log: bool = False,
                    z_threshold: float = SPIKE_Z) -> Outliers:
    """Steps whose value is an outlier against the run's own batch-to-batch noise (thresholds.py, "spikes"): more
    than ``z_threshold`` robust standard deviations of the local detrended residuals above the larger of the medians
    of the steps before and after it, and at least ``min_relative`` above that level. ``log``: judge the logarithm
    (a gradient norm's noise is multiplicative). Non-finite values are left out (the loss's own count says them).
    Returns the steps with, for each, its value, level, size above the level (relative) and z."""
    finite = np.isfinite(values) & ((values > 0) if log else True)
    steps, raw = steps[finite], values[finite]
    y = np.log(raw) if log else raw
    k, n = SPIKE_NEIGHBOURS, len(y)
    if n < k + SPIKE_MIN_RESIDUALS:
        return Outliers(steps=[], detail={})
    level, residual = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        before, after = y[max(0, i - k):i], y[i + 1:i + 1 + k]
        if len(before) < k:  # the first steps have no history to stand out from
            continue
        level[i] = max(np.median(before), np.median(after)) if len(after) else np.median(before)
        residual[i] = y[i] - np.median(np.concatenate([before, after]))
    half = SPIKE_NOISE_WINDOW // 2
    out, detail = [], {}
    for i in range(n):
        if not np.isfinite(level[i]):
            continue
        # The noise on each side of the step, the larger one: where the noise level changes (the end of the fast
        # early phase), a step must stand out from the noisier side too.
        sides = [side[np.isfinite(side)] for side in (residual[max(0, i - half):i], residual[i + 1:i + half + 1])]
        if sum(len(side) for side in sides) < SPIKE_MIN_RESIDUALS:
            continue
        sigma = max(1.4826 * float(np.median(np.abs(side - np.median(side))))
                    for side in sides if len(side) >= SPIKE_MIN_RESIDUALS // 2)
        excess = y[i] - level[i]
        size = (math.exp(excess) - 1) if log else excess / max(abs(level[i]), 1e-12)
        z = excess / sigma if sigma > 0 else (math.inf if excess > 0 else 0.0)
        if z > z_threshold and size >= min_relative:
            out.append(int(steps[i]))
            detail[int(steps[i])] = SpikeDetail(value=float(raw[i]),
                                                level=float(math.exp(level[i]) if log else level[i]),
                                                above=float(size), z=float(min(z, 1e9)))
    return Outliers(steps=out, detail=detail)


def grad_spike_summary(run: Run) -> GradSpikes:
    """Gradient-norm outliers after warmup (the early, large norms of warmup are expected and not counted), by the
    robust rule on the norm's logarithm (at least GRAD_SPIKE_MIN_RELATIVE above the local level)."""
    steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    warmup = int(run.settings.get("warmup_steps", 0) or 0)
    found = robust_outliers(steps, norm, GRAD_SPIKE_MIN_RELATIVE, log=True)
    spikes = [s for s in found.steps if s > warmup]
    return GradSpikes(after_warmup=spikes, values={s: found.detail[s].value for s in spikes},
                      detail={s: found.detail[s] for s in spikes})


def weight_summary(run: Run) -> WeightSummary | None:
    """How the weights' size evolves (RMS per matrix, first vs last measurement) and how much of each matrix's
    update is AdamW's decoupled weight decay (lr * wd, logged exactly) rather than gradient-driven."""
    rms_tags = run.tags(Tags.WEIGHT_RMS)
    if not rms_tags:
        return None
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

    return WeightSummary(rms_change=change, median_rms_change=median(change), decay_share=decay_share,
                         median_decay_share=median(decay_share), decay_vs_gradient=decay_vs_gradient,
                         median_decay_vs_gradient=median(decay_vs_gradient))


def spike_summary(run: Run) -> LossSpikes:
    """Loss spikes by the robust rule (thresholds.py, "spikes"), always computed here from the logged loss; where
    the spike_detector callback ran, the steps it flagged by its own mean/std rule are listed beside them."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    found = robust_outliers(steps, loss, LOSS_SPIKE_MIN_RELATIVE)
    detector = ([int(s) for s, v in run.scalars[Tags.SPIKE_IS_SPIKE].items() if v > 0]
                if run.has(Tags.SPIKE_IS_SPIKE) else None)
    return LossSpikes(source=f"loss more than {fmt_plain(SPIKE_Z)} robust standard deviations of its local "
                             f"batch-to-batch noise and at least {fmt_plain(100 * LOSS_SPIKE_MIN_RELATIVE)}% above the "
                             "median of the steps around it",
                      spike_steps=found.steps, detail=found.detail, detector_steps=detector)


def fmt_plain(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class LossJumps:
    """``loss_jumps``' result: the steps, the limit, and each jump's size and gradient norm."""

    steps: list[int]  # the jumps' steps
    threshold: float | None  # the limit in nats (None: too few steps)
    excess: dict[int, float] = field(default_factory=dict)  # step -> nats above the steps around it
    grad_norm: dict[int, float] = field(default_factory=dict)  # step -> the gradient norm there


def loss_jumps(run: Run) -> LossJumps:
    """Steps where the optimizer pushed the weights somewhere worse: the loss stands out above the medians of the
    steps on both sides (so a falling trend does not count) and the gradient norm is large at the same step (so a
    hard batch, which raises the loss alone, does not count). Thresholds in ``thresholds.py``."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    grad_steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    k = JUMP_NEIGHBOURS
    if len(loss) < 2 * k + 1 or not len(norm):
        return LossJumps(steps=[], threshold=None)
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
    return LossJumps(steps=jumps, threshold=threshold,
                     excess={int(s): float(e) for s, e in zip(steps, excess) if int(s) in jumps},
                     grad_norm={s: grad_at.get(s, math.nan) for s in jumps})


def median_ratio_trace(run: Run, prefix: str = Tags.UPDATE_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """The median over weight matrices of a per-matrix ratio at every diagnostics step."""
    tags = run.tags(prefix)
    if not tags:
        return np.array([]), np.array([])
    steps = sorted({s for t in tags for s in run.scalars[t]})
    medians = [np.nanmedian([run.scalars[t].get(s, np.nan) for t in tags]) for s in steps]
    return np.array(steps), np.array(medians, dtype=float)


def early_phase_summary(run: Run) -> EarlyPhase | None:
    """The phase at the start in which Adam's steps are large relative to the weights (early gradients agree from
    step to step, so Adam's normalised step is close to the full learning rate) and whether the run was damaged
    in it: where the median update ratio was above RATIO_UNSTABLE, when it settled below for good, and the loss
    jumps before and after that."""
    steps, trace = median_ratio_trace(run)
    if not len(trace):
        return None
    peak = int(np.nanargmax(trace))
    above = np.flatnonzero(trace > RATIO_UNSTABLE)
    settle = None
    if len(above) and above[-1] + 1 < len(trace):
        settle = int(steps[above[-1] + 1])
    jumps = loss_jumps(run)
    boundary = settle if settle is not None else (math.inf if len(above) else 0)
    lr_steps, lr = run.series(Tags.TRAIN_LR)
    peak_lr = max_after = None  # without a settle step or a logged learning rate: not known
    if settle is not None and len(lr):
        later = lr[lr_steps >= settle]
        peak_lr, max_after = float(lr.max()), float(later.max()) if len(later) else None
    return EarlyPhase(peak_ratio=float(trace[peak]), peak_ratio_step=int(steps[peak]), settle_step=settle,
                      overshoot=bool(len(above)), jump_threshold=jumps.threshold,
                      early_jumps=[s for s in jumps.steps if s <= boundary],
                      late_jumps=[s for s in jumps.steps if s > boundary], jump_excess=jumps.excess,
                      jump_grad_norm=jumps.grad_norm, peak_lr=peak_lr, max_lr_after_settle=max_after)


_MATRIX = re.compile(r"^h\.(\d+)\.(.+)\.weight$")


def block_and_kind(name: str) -> tuple[int | None, str]:
    """``h.3.mlp.c_fc.weight`` -> (3, "mlp.c_fc"); a matrix outside the blocks (wte, wpe) -> (None, "embeddings")."""
    match = _MATRIX.match(name)
    return (int(match[1]), match[2]) if match else (None, "embeddings")


def depth_summary(per_parameter: dict[str, float]) -> DepthTrend:
    """How a per-matrix ratio depends on depth: the median of each transformer block's matrices, and the change
    from the first to the last block of a least-squares line through log10 of those medians (in decades)."""
    blocks: dict[int, list[float]] = {}
    for name, value in per_parameter.items():
        block = block_and_kind(name)[0]
        if block is not None and value > 0:
            blocks.setdefault(block, []).append(value)
    if len(blocks) < MIN_BLOCKS_FOR_DEPTH:
        return DepthTrend(blocks=len(blocks))
    index = np.array(sorted(blocks), dtype=float)
    medians = np.array([np.median(blocks[int(i)]) for i in index])
    slope, intercept = np.polyfit(index, np.log10(medians), 1)
    decades = float(slope * (index[-1] - index[0]))
    return DepthTrend(blocks=len(blocks), per_block={int(i): float(m) for i, m in zip(index, medians)},
                      fitted={int(i): float(10 ** (intercept + slope * i)) for i in index},
                      trend_decades=decades, first_block=int(index[0]), last_block=int(index[-1]),
                      starved="first" if decades >= DEPTH_TREND else "last" if decades <= -DEPTH_TREND else None,
                      flat=abs(decades) < DEPTH_FLAT)


# ----------------------------------------------------------------------------------------------- expectations
def _step_lookup(run: Run, tag: str):
    """A logged per-step series as a function of the step (the last logged value at or before it), or None."""
    steps, values = run.series(tag)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    if not len(steps):
        return None

    def at(step: float) -> float:
        i = int(np.searchsorted(steps, step, side="right")) - 1
        return float(values[max(i, 0)])
    return at


def is_muon_matrix(name: str) -> bool:
    """The matrices ``--optimizer muon`` gives to Muon: the 2-D weights inside the blocks (training/optim/
    optimizers.py ``hidden_matrices``); embeddings and the tied head stay on AdamW."""
    return block_and_kind(name)[0] is not None


def expectation_summary(run: Run) -> Expectation | None:
    """Each weight matrix's update/weight ratio against what the run's own learning rate, optimizer and weights
    imply (thresholds.py, "update ratios"): the expected scale lr_t / rms(w) (Adam; 0.2 x lr_t / rms(w) for a Muon
    matrix) at every measurement, and the measured ratio divided by it, the consistency e. Measurements in the first
    RATIO_SKIP_FRACTION of the run are left out, like ``ratio_summary``'s. None without weight RMS or learning
    rates."""
    train = run.settings
    optimizer = train.get("optimizer") or "adamw"
    beta1, beta2 = float(train.get("adam_beta1", 0.9) or 0.9), float(train.get("adam_beta2", 0.95) or 0.95)
    prefix = Tags.UPDATE_RATIO_GRAD if run.tags(Tags.UPDATE_RATIO_GRAD) else Tags.UPDATE_RATIO
    tags = run.tags(prefix)
    if not tags or not run.tags(Tags.WEIGHT_RMS):
        return None
    lr_adam, lr_muon = _step_lookup(run, Tags.TRAIN_LR), _step_lookup(run, Tags.TRAIN_LR_MUON)
    lr_of = {"adamw": lr_adam, "muon": lr_muon or lr_adam}  # each group's logged learning rate (or None)
    last_step = max(max(run.scalars[t]) for t in tags)
    per_param = {}
    for tag in tags:
        name = tag[len(prefix):]
        group = "muon" if optimizer == "muon" and is_muon_matrix(name) else "adamw"
        if (matrix := _expected_ratio(run, tag, name, group, lr_of[group], last_step)) is not None:
            per_param[name] = matrix
    if not per_param:
        return None
    bands = {"adamw": adam_band(beta1, beta2), "muon": MUON_CONSISTENCY_BAND}
    groups = {}
    for group in ("adamw", "muon"):
        members = {n: p for n, p in per_param.items() if p.group == group}
        if members:
            groups[group] = _group_expectation(members, bands[group])
    return Expectation(optimizer=optimizer, betas=[beta1, beta2], source=prefix.rstrip("/"),
                       per_parameter=per_param, groups=groups)


def mup_lr_scale(run: Run, name: str, group: str) -> float:
    """The factor on the logged learning rate that a matrix actually trained at: under μP the hidden matrices (the
    2-D weights inside the blocks) get x 1/m with AdamW and x 1/sqrt(m) with Muon, m = n_embd / mup_base_width
    (training/optim/optimizers.py, docs/mup.md); 1 for every other matrix and under the standard parametrization.
    Without it a μP run's hidden matrices would read m times slower than they are."""
    settings = run.settings
    if settings.get("parametrization") != "mup" or not settings.get("mup_base_width") or not is_muon_matrix(name):
        return 1.0
    m = float(settings.get("n_embd") or settings["mup_base_width"]) / float(settings["mup_base_width"])
    return 1.0 / math.sqrt(m) if group == "muon" else 1.0 / m


def _expected_ratio(run: Run, tag: str, name: str, group: str, lr_at, last_step: float) -> ExpectedRatio | None:
    """One matrix's measured ratios against its expected scale, at each measurement after the first
    RATIO_SKIP_FRACTION of the run that has a weight RMS and a learning rate (``lr_at``, its group's logged rate;
    without one, lr x wd / wd from the logged decay step); None when no measurement has both."""
    weight_decay = float(run.settings.get("weight_decay", 0.0) or 0.0)
    decay = run.scalars.get(Tags.UPDATE_RATIO_DECAY + name, {})
    rms = run.scalars.get(Tags.WEIGHT_RMS + name, {})
    scale = (MUON_RMS_SCALE if group == "muon" else 1.0) * mup_lr_scale(run, name, group)
    rows = []
    for step, ratio in run.scalars[tag].items():
        if step < RATIO_SKIP_FRACTION * last_step or not rms.get(step) or not np.isfinite(ratio):
            continue
        lr = lr_at(step) if lr_at else (decay[step] / weight_decay if weight_decay and step in decay else None)
        if not lr:
            continue
        expected = scale * lr / rms[step]
        rows.append((step, ratio, expected, ratio / expected))
    if not rows:
        return None
    steps, ratios, expected, consistency = (np.array(column, dtype=float) for column in zip(*rows))
    later = consistency[steps >= steps[0] + (steps[-1] - steps[0]) / 2]
    return ExpectedRatio(group=group, ratio=float(np.median(ratios)), expected=float(np.median(expected)),
                         consistency=float(np.median(consistency)),
                         consistency_later=float(np.median(later)) if len(later) else None)


def _group_expectation(members: dict[str, ExpectedRatio], band: tuple[float, float]) -> GroupExpectation:
    """An optimizer group's medians, and its matrices that barely move or outpace their band (matrices whose ratio is
    exactly 0 are frozen: the consistencies are taken over the ones that move)."""
    low, high = band
    moving = {n: p for n, p in members.items() if p.ratio > 0}
    later = [p.consistency_later for p in moving.values() if p.consistency_later is not None]
    return GroupExpectation(
        matrices=len(members), band=[low, high],
        median_ratio=float(np.median([p.ratio for p in members.values()])),
        median_expected=float(np.median([p.expected for p in members.values()])),
        median_consistency=float(np.median([p.consistency for p in moving.values()])) if moving else 0.0,
        median_consistency_later=float(np.median(later)) if later else None,
        barely=sorted(n for n, p in moving.items() if p.consistency < BARELY_MOVES * low),
        outpacing=sorted(n for n, p in moving.items() if p.consistency > OUTPACES * high))


def movement_ceiling(run: Run) -> Movement | None:
    """How far the weights could have moved over the whole run, relative to their size, had every step agreed:
    the sum over steps of lr_t / rms(w) (Adam's bound), with rms(w) the median logged weight RMS or, when not
    logged, the init's standard deviation. A cheap test of "the learning rate is too low to learn" that needs no
    diagnostics callback."""
    steps, lr = run.series(Tags.TRAIN_LR)
    train, model = run.settings, run.settings
    loss_steps, _ = run.series(Tags.TRAIN_LOSS)
    if not len(loss_steps):
        return None
    if len(lr):
        keep = np.isfinite(lr)
        steps, lr = steps[keep], lr[keep]
        if not len(lr):
            return None
        # every step's rate (the logged steps' rates carried over unlogged ones)
        total = float(np.sum(np.interp(np.arange(1, loss_steps[-1] + 1), steps, lr)))
        source = "the logged learning rate"
    elif train.get("max_lr"):
        total, source = float(train["max_lr"]) * float(loss_steps[-1]), "--max_lr (no learning rate was logged)"
    else:
        return None
    tags = run.tags(Tags.WEIGHT_RMS)
    rms_values = [float(np.median(list(run.scalars[t].values()))) for t in tags]
    rms = float(np.median(rms_values)) if rms_values else float(model.get("init_std") or STANDARD_INIT_STD)
    ceiling = total / rms
    if train.get("parametrization") == "mup":  # per matrix, at the rate it trained at (hidden: logged lr x 1/m)
        group = "muon" if train.get("optimizer") == "muon" else "adamw"
        ceilings = [total * mup_lr_scale(run, t[len(Tags.WEIGHT_RMS):], group) / r
                    for t, r in zip(tags, rms_values) if r > 0]
        ceiling = float(np.median(ceilings)) if ceilings else ceiling
    return Movement(sum_lr=total, weight_rms=rms, ceiling=ceiling, lr_source=source,
                    rms_source="the logged weight RMS" if rms_values else "the init's standard deviation")


# ----------------------------------------------------------------------------------------------- peak and trouble
def peak_hold_summary(run: Run, troubles: dict[str, list[int]]) -> PeakHold | None:
    """Whether the run held its peak learning rate stably before its first trouble (thresholds.py,
    HELD_PEAK_FRACTION): where the rate first reached HELD_PEAK_FRACTION of its peak (from train/lr, else from the
    configured linear warmup), the first troubled step (``troubles``: spikes, jumps, non-finite losses, the start of a
    climb), the steps trained at the peak before it, and whether the smoothed loss reached new lows there."""
    steps, loss = run.series(Tags.TRAIN_LOSS)
    if not len(steps):
        return None
    lr_steps, lr = run.series(Tags.TRAIN_LR)
    keep = np.isfinite(lr)
    lr_steps, lr = lr_steps[keep], lr[keep]
    if len(lr):
        peak = float(lr.max())
        reached = int(lr_steps[np.flatnonzero(lr >= HELD_PEAK_FRACTION * peak)[0]])
        at_peak = np.interp(steps, lr_steps, lr) >= HELD_PEAK_FRACTION * peak
        source = Tags.TRAIN_LR
    else:
        peak = run.settings.get("max_lr")
        warmup = int(run.settings.get("warmup_steps", 0) or 0)
        reached = max(int(steps[0]), math.ceil(HELD_PEAK_FRACTION * warmup))
        at_peak = steps >= reached
        source = "the configured warmup" if warmup else "no warmup (none configured, no learning rate logged)"
    events = sorted({int(s) for values in troubles.values() for s in values})
    first = events[0] if events else None
    kinds = [kind for kind, values in troubles.items() if first is not None and first in values]
    end = first if first is not None else math.inf
    stretch = (steps >= reached) & (steps < end)
    held = int((stretch & at_peak).sum())
    smooth = finite_smoothed(loss)[stretch]
    fell = bool(len(smooth) >= 2 and smooth.min() < smooth[0] and int(np.argmin(smooth)) > 0)
    return PeakHold(peak_lr=peak, reached_step=reached, source=source, first_trouble_step=first,
                    first_trouble=kinds, held_steps=held, loss_fell_while_held=fell,
                    held_stably=held >= HELD_PEAK_MIN_STEPS and fell,
                    trouble_before_peak=first is not None and first < reached)


# ----------------------------------------------------------------------------------------------- learning regime
def _trend(change: float, limit: float) -> Trend:
    return "falling" if change < -limit else "rising" if change > limit else "flat"


def batch_noise(values: np.ndarray) -> float:
    """The robust per-step noise of a curve: 1.4826 x the MAD of each value minus the median of its neighbours."""
    values = values[np.isfinite(values)]
    k = SPIKE_NEIGHBOURS
    if len(values) < 2 * k:
        return 0.0
    residual = np.array([values[i] - np.median(np.concatenate([values[max(0, i - k):i], values[i + 1:i + 1 + k]]))
                         for i in range(len(values))])
    return 1.4826 * float(np.median(np.abs(residual - np.median(residual))))


def regime_summary(run: Run, loss: LossSummary, gap: GapSummary, tokens: TokenSummary) -> Regime | None:
    """The seed's table of train/validation behaviours: how far each curve fell from its start, its trend over
    the later half (falling, flat, rising: thresholds.py TREND_*), and whether the data was read more than once;
    ``scenario`` names the row (report.py words it)."""
    steps, raw = run.series(Tags.TRAIN_LOSS)
    if not len(steps):
        return None
    smooth = finite_smoothed(raw)
    noise = batch_noise(raw)
    half = int(np.searchsorted(steps, steps[0] + (steps[-1] - steps[0]) / 2))
    train_change = float(smooth[-1] - smooth[half])
    first = raw[:5][np.isfinite(raw[:5])]
    start = float(np.median(first)) if len(first) else math.nan
    train_drop = float(start - smooth[-1]) if math.isfinite(start) else 0.0
    epochs, fraction = tokens.epochs_started, tokens.fraction_of_dataset
    flat_limit = max(LOSS_FLAT, LOSS_FLAT_NOISE * noise)
    regime = Regime(train_start=start, train_drop=train_drop, train_noise=noise, train_flat_limit=flat_limit,
                    train_change_later_half=train_change, train_trend=_trend(train_change, trend_limit(noise)),
                    train_high=train_drop < flat_limit, repeated_data=bool((epochs or 0) > 1 or (fraction or 0) > 1),
                    epochs_started=epochs, fraction_of_dataset=fraction,
                    **_validation_regime(run, float(steps[half]), start, train_change, noise, gap),
                    climbed_back=_climbed_back(loss), ended_above_start=_ended_above_start(loss))
    # the row is read from all of the above, so it is filled in last
    return replace(regime, scenario=_scenario(regime, gap))


def _validation_regime(run: Run, middle: float, start: float, train_change: float, noise: float,
                       gap: GapSummary) -> dict:
    """The validation half of the regime (its ``val_*`` fields), with at least MIN_EVALUATIONS evaluations; the
    same window as the train trend: from the run's middle step (interpolated) to the last evaluation."""
    val_steps, val = run.series(Tags.VAL_LOSS)
    if len(val) < MIN_EVALUATIONS:
        return {}
    val_mid = float(np.interp(middle, val_steps, val)) if val_steps[0] <= middle else float(val[0])
    val_change = float(val[-1] - val_mid)
    best = float(val.min())
    rise = float(val[-1] - best)
    limit = trend_limit()  # a fixed validation set: its changes are the model's, not sampling noise
    if rise > max(OVERFIT_VAL_RISE, OVERFIT_VAL_RISE_RELATIVE * best):
        val_trend = "rising"
    elif val_change < -limit or (len(val) < MIN_EVALUATIONS_FOR_TREND and val[-1] < val[0] - limit):
        val_trend = "falling"
    else:
        val_trend = "flat"
    val_start = max(float(val[0]), start if math.isfinite(start) else float(val[0]))
    both = max(limit, trend_limit(noise))
    return dict(val_trend=val_trend, val_change_later_half=val_change,
                val_lags_train=val_change - train_change > both,  # validation fell clearly less
                val_drop=val_start - best, val_high=val_start - best < LOSS_FLAT,
                val_below_train=float(gap.gap_final if gap.gap_final is not None else 0.0) < -both,
                val_evaluations=int(len(val)), val_rise_from_min=rise,
                # the first evaluation within a trend's size of the best: where validation stopped improving
                val_settled_step=int(val_steps[np.flatnonzero(val <= best + limit)[0]]))


def _climbed_back(loss: LossSummary) -> bool:
    """The report's divergence: the smoothed train loss climbed back, and validation (if any) agrees."""
    val_agrees = loss.final_val_loss is None or loss.final_val_loss - loss.min_val_loss > VAL_AGREES_RISE
    return bool(loss.final_train_loss_smoothed is not None and val_agrees and
                loss.final_train_loss_smoothed - loss.min_train_loss_smoothed > DIVERGENCE_RISE)


def _ended_above_start(loss: LossSummary) -> bool:
    """... or, as the report's instability rule says, it ended above its start, or went non-finite."""
    return bool(loss.final_train_loss_smoothed is not None and
                loss.final_train_loss_smoothed > (loss.initial_train_loss or math.inf) + DIVERGENCE_RISE) or \
        bool(loss.nonfinite_steps)


def _scenario(r: Regime, gap: GapSummary) -> Scenario:
    val = r.val_trend
    if r.climbed_back or r.ended_above_start or r.train_drop < -DIVERGENCE_RISE:
        return Scenario.DIVERGING  # the instability findings speak for it (validation rises with it)
    if r.train_high and (val is None or r.val_high):
        return Scenario.NOT_LEARNING
    if val is None:
        return Scenario.LEARNING_NO_VALIDATION if r.train_trend == "falling" else Scenario.PLATEAU_NO_VALIDATION
    if val == "falling" and r.train_trend != "falling" and (r.train_high or r.val_below_train):
        return Scenario.VAL_FALLS_TRAIN_HIGH
    if val == "falling":
        return Scenario.LEARNING
    after_best = gap.train_change_after_val_min
    train_fell_after_best = (after_best if after_best is not None else 0.0) < OVERFIT_TRAIN_FALL
    if val == "rising" and (train_fell_after_best or r.train_trend != "rising"):
        return Scenario.MEMORISING if r.repeated_data else Scenario.VAL_NOT_FOLLOWING
    if val == "flat" and r.train_trend == "falling":
        if not r.val_lags_train:
            return Scenario.LEARNING  # both moved about as much: within the noise of the trend
        return Scenario.MEMORISING if r.repeated_data else Scenario.VAL_NOT_FOLLOWING
    if val == "flat" and r.train_trend == "flat":
        return Scenario.PLATEAU
    return Scenario.MIXED


# ----------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Records:
    """``surviving_records``' result: the run's records (rows as the record files hold them), split in two."""

    changes: list[dict]  # settings changed on resume that survived
    interventions: list[dict]  # spike-guard records that survived
    abandoned: Abandoned  # those of steps a later rollback abandoned, with "abandoned_by"


def surviving_records(run: Run) -> Records:
    """The run's records of what was done to it, less those that belong to steps a later rollback abandoned.

    Spike-guard interventions (``interventions.jsonl``, in the order they happened): a rollback to step T abandons
    every earlier record placed after T (a skip or stop at its step; an earlier rollback at the step it returned
    to). Settings changed on resume (``changes.jsonl``, a separate file): a change recorded at step c is abandoned
    when the run was later rolled back to a step before c. TensorBoard is the witness of the order: a resume logs
    run/settings_changed at its step and a rollback purges the steps after the one it returns to, so a change whose
    step still carries that tag survived and one whose tag is gone (while other changes' tags are there) did not.
    When a run logged no such tag (older runs), a change inside a rollback's abandoned stretch (to_step, step] is
    assumed to have come before the rollback (a resume made after a rollback, at a step inside the stretch it
    abandoned, cannot be told apart from the records alone)."""
    kept, abandoned = [], []
    for record in run.interventions:
        if record.get("action") == "rollback" and record.get("to_step") is not None:
            target = int(record["to_step"])
            for earlier in list(kept):
                if _position(earlier) > target:
                    kept.remove(earlier)
                    abandoned.append({**earlier, "abandoned_by": f"rollback to step {target}"})
        kept.append(record)
    rollbacks = [r for r in run.interventions if r.get("action") == "rollback" and r.get("to_step") is not None]
    witness = run.scalars.get(Tags.RUN_SETTINGS_CHANGED)
    changes, dropped = [], []
    for change in run.changes:
        step = int(change.get("step", 0))
        if witness:
            survived = step in witness
            why = "its TensorBoard record was purged by a rollback"
        else:
            hits = [r for r in rollbacks if int(r["to_step"]) < step <= int(r["step"])]
            survived, why = not hits, (f"the run was rolled back from step {hits[0]['step']} to step "
                                       f"{hits[0]['to_step']}" if hits else "")
        if survived:
            changes.append(change)
        else:
            dropped.append({**change, "abandoned_by": why})
    return Records(changes=changes, interventions=kept,
                   abandoned=Abandoned(changes=dropped, interventions=abandoned))


def _position(record: dict) -> int:
    """Where a spike-guard record sits in the run's history: a rollback at the step it returned to."""
    return int(record["to_step"] if record.get("action") == "rollback" else record["step"])


# ----------------------------------------------------------------------------------------------- the data model
def _optional(**default) -> Any:
    """A RunSummary field holding a section the run may not have logged: None then, written to report.json as {}."""
    return field(metadata={"optional": True}, **default)


@dataclass
class RunSummary:
    """What the report's rules read: one typed section per signal (``summary_types.py``; None when the run did not
    log it), and the run's records of what was done to it (changes on resume, spike-guard interventions, its branch
    origin: rows as their files hold them). ``to_dict`` is its report.json form."""

    run: str  # the run's name
    config: dict  # its saved configuration (not written to report.json)
    loss: LossSummary  # the train and validation loss curves
    reference: ReferenceSummary  # where it reached a reference loss
    tokens: TokenSummary  # tokens trained on, against the dataset
    gap: GapSummary  # validation minus smoothed train loss
    grad_norm: GradNormSummary | None = _optional()  # the gradient norm against the clip threshold
    grad_spikes: GradSpikes = field()  # gradient-norm outliers after warmup
    update_ratio: RatioSummary | None = _optional()  # the whole update / weight
    update_ratio_grad: RatioSummary | None = _optional()  # its gradient-driven part (weight decay removed)
    grad_ratio: RatioSummary | None = _optional()  # std(grad)/std(w)
    weights: WeightSummary | None = _optional()  # the weights' size and the weight decay's share
    spikes: LossSpikes = field()  # loss spikes
    early_phase: EarlyPhase | None = _optional()  # the phase of large update ratios at the start
    noise_scale: NoiseScale | None = _optional()  # the gradient noise scale against the batch
    changes: list[dict] = field()  # settings changed by hand on resume that survived (changes.jsonl rows)
    interventions: list[dict] = field()  # spike-guard records that survived (interventions.jsonl rows)
    branch: dict | None = field()  # branch.json: where a branched run came from
    expectation: Expectation | None = _optional(default=None)  # update ratios against the run's own lr and weights
    movement: Movement | None = _optional(default=None)  # how far the learning rate let the weights move
    peak_hold: PeakHold | None = _optional(default=None)  # whether the peak learning rate was held stably
    regime: Regime | None = _optional(default=None)  # the seed's train/validation table: which row the run is in
    abandoned: Abandoned = field(default_factory=Abandoned)  # records of steps a later rollback abandoned
    guard: Guard | None = _optional(default=None)  # --spike_guard: whether and when it armed

    @cached_property  # read by several rules and the report; not a field
    def depth(self) -> Depth:
        """The learning ratio and the raw gradient ratio per transformer block, with their trend over depth."""
        def per_parameter(ratio: RatioSummary | None) -> dict[str, float]:
            return ratio.per_parameter_median if ratio else {}

        return Depth(learning=depth_summary(per_parameter(self.learning_ratio)),
                     gradient=depth_summary(per_parameter(self.grad_ratio)))

    def to_dict(self) -> dict:
        """The report.json form: the fields in order (an absent section as {}), less the configuration, then
        ``depth``: the same keys and values as when the sections were dicts."""
        out = {}
        for f in fields(self):
            if f.name == "config":
                continue
            value = getattr(self, f.name)
            out[f.name] = {} if value is None and f.metadata.get("optional") else plain(value)
        out["depth"] = self.depth.to_dict()
        return out

    @classmethod
    def from_report(cls, report: dict) -> "RunSummary":
        """The summary back from its report.json form (``to_dict``), for what reads a report (its Markdown)."""
        hints = get_type_hints(cls)
        values = {f.name: typed(hints[f.name], report.get(f.name) or None) for f in fields(cls)
                  if f.name not in ("config", "changes", "interventions", "abandoned")}
        summary = cls(config={}, changes=list(report.get("changes", [])),
                      interventions=list(report.get("interventions", [])),
                      abandoned=Abandoned.from_dict(report.get("abandoned") or {}), **values)
        if report.get("depth"):
            summary.__dict__["depth"] = Depth.from_dict(report["depth"])  # the report's own, not recomputed
        return summary

    def explained(self, step: int) -> bool:
        """Whether a spike at ``step`` is explained by something done to the run: settings changed by hand up to
        CHANGE_SETTLE_STEPS steps before, or an update the spike guard skipped (stated in its own finding)."""
        if any(0 <= step - c["step"] <= CHANGE_SETTLE_STEPS for c in self.changes):
            return True
        return any(r["action"] == "skip" and r["step"] == step for r in self.interventions)

    def unexplained(self, steps: list[int]) -> list[int]:
        return [x for x in steps if not self.explained(x)]

    def setting(self, name: str, default=None):
        """A setting of the run by name (its saved configuration, of any version's sections)."""
        return flatten(self.config).get(name, default)

    @property
    def learning_ratio(self) -> RatioSummary | None:
        """The gradient-driven update ratios when logged (weight decay removed), else the whole update ratios."""
        return self.update_ratio_grad or self.update_ratio

    @property
    def learning_ratio_name(self) -> str:
        return "gradient-driven update/weight ratio" if self.update_ratio_grad else "update/weight ratio"

    @property
    def scenario(self) -> Scenario | None:
        """The regime's row (None without a train loss)."""
        return self.regime.scenario if self.regime else None


def noise_scale_summary(run: Run) -> NoiseScale | None:
    """The gradient noise scale B_simple logged by the loop (in tokens), against the run's tokens per step, over
    the second half of the measurements (the first half is the fast early phase)."""
    steps, noise = run.series(Tags.NOISE_SCALE_TOKENS)
    measured = len(noise)
    keep = np.isfinite(noise) & (noise > 0)
    steps, noise = steps[keep], noise[keep]
    if measured and not len(noise):
        # Measured, but never defined: the |G|^2 estimate stayed at or below 0 (gradient noise drowns the signal at
        # this batch, or a spike), so there is no B_simple to compare the batch with; said, not dropped.
        return NoiseScale(undefined=True, measurements=measured)
    if not len(noise) or not run.tokens_per_step:
        return None
    later = noise[len(noise) // 2:]
    median = float(np.median(later))
    return NoiseScale(steps=steps.tolist(), values=noise.tolist(), median_later=median, first=float(noise[0]),
                      last=float(noise[-1]), tokens_per_step=float(run.tokens_per_step),
                      batch_over_noise=float(run.tokens_per_step / median))


def guard_summary(run: Run) -> Guard | None:
    """With --spike_guard: the step it armed at (its band had enough accepted steps), or None if the run ended first
    (only a divergence far above the first loss was watched for)."""
    armed = run.scalars.get(Tags.SPIKE_GUARD_ARMED, {})
    if not armed:
        return None
    steps, _ = run.series(Tags.TRAIN_LOSS)
    return Guard(armed_at=next((step for step, value in sorted(armed.items()) if value >= 1), None),
                 last_step=int(steps[-1]) if len(steps) else None)


def summarize(run: Run) -> RunSummary:
    records = surviving_records(run)
    loss, tokens, gap = loss_summary(run), token_summary(run), gap_summary(run)
    summary = RunSummary(run=run.name, config=run.config, loss=loss, reference=reference_summary(run),
                         tokens=tokens, gap=gap, grad_norm=grad_norm_summary(run),
                         grad_spikes=grad_spike_summary(run), update_ratio=ratio_summary(run, Tags.UPDATE_RATIO),
                         update_ratio_grad=ratio_summary(run, Tags.UPDATE_RATIO_GRAD),
                         grad_ratio=ratio_summary(run, Tags.GRAD_RATIO), weights=weight_summary(run),
                         spikes=spike_summary(run), early_phase=early_phase_summary(run),
                         noise_scale=noise_scale_summary(run), changes=records.changes,
                         interventions=records.interventions, branch=run.branch,
                         expectation=expectation_summary(run), movement=movement_ceiling(run),
                         regime=regime_summary(run, loss, gap, tokens), abandoned=records.abandoned,
                         guard=guard_summary(run))
    # the peak hold needs the troubles, and which of them are explained needs the summary's records
    summary.peak_hold = peak_hold_summary(run, troubles(run, summary))
    return summary


def troubles(run: Run, summary: RunSummary) -> dict[str, list[int]]:
    """The run's troubled steps by kind (for ``peak_hold_summary``): unexplained loss spikes and jumps, non-finite
    losses, and the start of a climb of the smoothed loss."""
    steps, raw = run.series(Tags.TRAIN_LOSS)
    early, loss = summary.early_phase, summary.loss
    found = {"loss spike": summary.unexplained(summary.spikes.spike_steps),
             "loss jump": summary.unexplained(early.early_jumps + early.late_jumps if early else []),
             "non-finite loss": [int(s) for s, v in zip(steps, raw) if not math.isfinite(v)]}
    if loss.final_train_loss_smoothed is not None and \
            loss.final_train_loss_smoothed - loss.min_train_loss_smoothed > DIVERGENCE_RISE:
        found["climb"] = [loss.min_train_loss_step]
    return found
