"""The typed sections of a run's summary (``summaries.RunSummary``): one small frozen dataclass per signal, the
values the report's rules read as attributes.

Convention: a section the run did not log at all (no gradient norm, no update ratios, no noise scale, ...) is
``None`` on the ``RunSummary``, never an empty object; inside a section, a field the run did not log is ``None``.
Sections that always exist (loss, reference, tokens, gap, spikes, grad_spikes, abandoned, depth) are never ``None``.

Serialisation (report.json): ``to_dict`` writes a section with exactly the keys and values it had when sections were
dicts, and ``RunSummary.to_dict`` writes an absent section as ``{}``. Two field markers keep that exact: a field made
with ``logged()`` is left out when it is None (the old dict had the key only when the signal was logged; when
present it is never None), and one made with ``written_with(name)`` is written exactly when field ``name`` is not
None (its own value may be None). Every other field is always written. ``from_dict`` reads a section back from that
form (the Markdown rendering reads a report's sections as attributes through it).
"""

from dataclasses import dataclass, field, fields
from enum import Enum
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .ids import StrId

_OMIT = "omit"  # field metadata: when to leave the field out of the section's dict


def logged() -> Any:
    """A field the section's dict had only when its signal was logged: None here, and left out of ``to_dict``."""
    return field(default=None, metadata={_OMIT: None})


def written_with(name: str) -> Any:
    """A field written to ``to_dict`` exactly when field ``name`` is not None (its own value may be None)."""
    return field(default=None, metadata={_OMIT: name})


def plain(value):
    """``value`` in the report's JSON form: sections as dicts, enums as their strings, containers copied."""
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def typed(hint, value):
    """``value`` (the report's JSON form) as the type ``hint`` names: dicts become sections, strings enums."""
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, UnionType):  # X | None: the one type that is not None
        return typed(next(a for a in get_args(hint) if a is not NoneType), value)
    if origin is dict:
        _, item = get_args(hint)
        return {k: typed(item, v) for k, v in value.items()}
    if origin is not None:  # list[...], Literal[...]: as they are
        return value
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    return value


class Section:
    """A summary section: written to and read from the report's JSON form (module docstring)."""

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if _OMIT in f.metadata:
                decides = f.metadata[_OMIT]
                if (value if decides is None else getattr(self, decides)) is None:
                    continue
            out[f.name] = plain(value)
        return out

    @classmethod
    def from_dict(cls, data: dict):
        hints = get_type_hints(cls)
        return cls(**{f.name: typed(hints[f.name], data.get(f.name)) for f in fields(cls)})


Trend = Literal["falling", "flat", "rising"]


class Scenario(StrId):
    """The rows of the seed's train/validation table a run can be in (``regime_summary``; report.py words them)."""

    DIVERGING = "diverging"
    NOT_LEARNING = "not_learning"
    LEARNING_NO_VALIDATION = "learning_no_validation"
    PLATEAU_NO_VALIDATION = "plateau_no_validation"
    VAL_FALLS_TRAIN_HIGH = "val_falls_train_high"
    LEARNING = "learning"
    MEMORISING = "memorising"
    VAL_NOT_FOLLOWING = "val_not_following"
    PLATEAU = "plateau"
    MIXED = "mixed"


# ----------------------------------------------------------------------------------------------- the curves
@dataclass(frozen=True)
class LossSummary(Section):
    """The train and validation loss curves."""

    initial_train_loss: float | None  # the first logged train loss
    uniform_loss: float  # ln(vocab)
    expected_initial_loss: float  # ln(vocab) + n_embd x init_std^2 / 2: a random model's start
    standard_initial_loss: float  # the same with GPT-2's init_std 0.02
    initial_minus_uniform: float | None  # first loss - ln(vocab)
    initial_minus_expected: float | None  # first loss - the expected start
    final_train_loss_smoothed: float | None  # the EMA of the train loss at the last step
    min_train_loss_smoothed: float | None  # the lowest EMA of the train loss
    steps: int  # the last logged step (0: none)
    nonfinite_steps: int  # steps whose loss was nan or inf
    first_nonfinite_step: int | None  # the first of them
    min_train_loss_step: int | None = logged()  # where the smoothed train loss was lowest
    divergence_onset_step: int | None = written_with("min_train_loss_step")  # first step DIVERGENCE_RISE/2 above it
    initial_val_loss: float | None = logged()  # the first validation loss
    final_val_loss: float | None = logged()  # the last validation loss
    min_val_loss: float | None = logged()  # the best validation loss
    min_val_step: int | None = logged()  # its step
    last_val_step: int | None = logged()  # the last evaluation's step
    val_evaluations: int | None = logged()  # how many evaluations


@dataclass(frozen=True)
class ReferenceSummary(Section):
    """Where the run first reached a reference loss (e.g. gpt2's measured validation loss)."""

    reference_loss: float | None  # None: no reference given or measured
    reference_source: str | None  # where it came from
    train_crossing_step: float | None = written_with("reference_loss")  # smoothed train loss reached it (interpolated)
    train_crossing_tokens: float | None = written_with("reference_loss")  # ... after these tokens
    val_crossing_step: float | None = written_with("reference_loss")  # validation loss reached it
    val_crossing_tokens: float | None = written_with("reference_loss")  # ... after these tokens


@dataclass(frozen=True)
class TokenSummary(Section):
    """Tokens trained on, against the dataset's size."""

    tokens_per_step: float | None  # tokens per optimizer step
    total_tokens: float | None  # tokens seen by the last step
    dataset_tokens: int | None  # training tokens in the dataset
    fraction_of_dataset: float | None = logged()  # total / dataset tokens
    steps_per_epoch: float | None = logged()  # dataset tokens / tokens per step
    epochs_started: int | None = None  # the last logged epoch + 1


@dataclass(frozen=True)
class GapSummary(Section):
    """Validation minus smoothed train loss at every evaluation (values with at least two evaluations)."""

    evaluations: int  # validation losses logged
    gap_steps: list[float] | None = logged()  # the evaluations' steps
    gap: list[float] | None = logged()  # the gap at each
    gap_final: float | None = logged()  # at the last evaluation
    gap_mid: float | None = logged()  # at the middle evaluation
    gap_change_second_half: float | None = logged()  # final - mid
    val_rise_from_min: float | None = logged()  # last validation loss - its minimum
    train_change_after_val_min: float | None = logged()  # smoothed train loss change since the best validation


@dataclass(frozen=True)
class GradNormSummary(Section):
    """The gradient norm (before clipping) against the clip threshold."""

    initial_peak: float  # the largest norm in the first 1/EARLY_FRACTION of steps
    initial_peak_step: int  # its step
    median: float  # over all steps
    p10_after_warmup: float  # 10th percentile after warmup
    p90_after_warmup: float  # 90th percentile after warmup
    median_after_warmup: float  # median after warmup
    clip: float | None  # --grad_clip (None: not known)
    clipped_fraction: float  # steps with a norm above the clip threshold
    clipped_fraction_after_warmup: float  # ... after warmup
    steps_after_warmup: int  # steps after warmup


@dataclass(frozen=True)
class SpikeDetail(Section):
    """One outlier step (``robust_outliers``)."""

    value: float  # the logged value
    level: float  # the larger of the medians before and after it
    above: float  # its size above the level, relative
    z: float  # robust standard deviations of the local noise above the level


@dataclass(frozen=True)
class Outliers(Section):
    """Steps that stand out from their own batch-to-batch noise (``robust_outliers``)."""

    steps: list[int]  # the outlier steps
    detail: dict[int, SpikeDetail]  # step -> its numbers


@dataclass(frozen=True)
class GradSpikes(Section):
    """Gradient-norm outliers after warmup."""

    after_warmup: list[int]  # their steps
    values: dict[int, float]  # step -> the norm
    detail: dict[int, SpikeDetail]  # step -> its numbers


@dataclass(frozen=True)
class LossSpikes(Section):
    """Loss spikes by the robust rule, and those the spike_detector callback flagged by its own rule."""

    source: str  # the rule, in words
    spike_steps: list[int]  # steps that are spikes by the rule
    detail: dict[int, SpikeDetail]  # step -> its numbers
    detector_steps: list[int] | None = logged()  # the callback's steps (None: it did not run)


@dataclass(frozen=True)
class RatioSummary(Section):
    """A per-matrix ratio (update/weight, gradient-driven update/weight, std(grad)/std(w)) after the first 10%."""

    per_parameter_median: dict[str, float]  # matrix -> its median
    overall_median: float  # the median over matrices
    zero: list[str]  # matrices whose median is exactly 0
    far_below: list[str]  # below FAR_BELOW
    far_above: list[str]  # above FAR_ABOVE
    min: float  # the smallest matrix median
    max: float  # the largest


@dataclass(frozen=True)
class WeightSummary(Section):
    """How the weights' size evolved, and how much of each update was AdamW's weight decay."""

    rms_change: dict[str, float]  # matrix -> last / first RMS - 1
    median_rms_change: float | None  # over matrices (None: no matrix had two measurements)
    decay_share: dict[str, float]  # matrix -> median decay step / whole update
    median_decay_share: float | None  # over matrices
    decay_vs_gradient: dict[str, float]  # matrix -> median decay step / gradient-driven step
    median_decay_vs_gradient: float | None  # over matrices


@dataclass(frozen=True)
class EarlyPhase(Section):
    """The phase at the start in which the median update ratio is above RATIO_UNSTABLE, and loss jumps in it."""

    peak_ratio: float  # the largest median update ratio
    peak_ratio_step: int  # its step
    settle_step: int | None  # the first step below RATIO_UNSTABLE for good (None: never, or never above)
    overshoot: bool  # whether the ratio was ever above RATIO_UNSTABLE
    jump_threshold: float | None  # the jump limit in nats (None: too few steps)
    early_jumps: list[int]  # loss jumps up to the settle step
    late_jumps: list[int]  # loss jumps after it
    jump_excess: dict[int, float]  # step -> nats above the steps around it
    jump_grad_norm: dict[int, float]  # step -> the gradient norm there
    peak_lr: float | None = logged()  # the peak learning rate (with a settle step and a logged lr)
    max_lr_after_settle: float | None = written_with("peak_lr")  # the largest learning rate after the settle step


@dataclass(frozen=True)
class NoiseScale(Section):
    """The gradient noise scale B_simple against the batch; ``undefined`` when measured but never defined."""

    undefined: bool | None = logged()  # True: every measurement's |G|^2 estimate was <= 0
    measurements: int | None = logged()  # with ``undefined``: how many
    steps: list[float] | None = logged()  # the defined measurements' steps
    values: list[float] | None = logged()  # B_simple in tokens at each
    median_later: float | None = logged()  # the median over the later half
    first: float | None = logged()  # the first value
    last: float | None = logged()  # the last value
    tokens_per_step: float | None = logged()  # the run's batch in tokens
    batch_over_noise: float | None = logged()  # tokens per step / median_later


@dataclass(frozen=True)
class ExpectedRatio(Section):
    """One matrix's update ratio against the scale its learning rate and weights imply."""

    group: Literal["adamw", "muon"]  # the optimizer that moves it
    ratio: float  # the median measured ratio
    expected: float  # the median expected scale lr / rms(w) (x 0.2 for Muon)
    consistency: float  # the median of ratio / expected
    consistency_later: float | None  # ... over the later half of its measurements


@dataclass(frozen=True)
class GroupExpectation(Section):
    """An optimizer group's matrices against their expected scale."""

    matrices: int  # how many
    band: list[float]  # the consistency range this optimizer gives [low, high]
    median_ratio: float  # the median measured ratio
    median_expected: float  # the median expected scale
    median_consistency: float  # over the matrices that move (0 when none)
    median_consistency_later: float | None  # ... over the later half
    barely: list[str]  # matrices below BARELY_MOVES x low
    outpacing: list[str]  # matrices above OUTPACES x high


@dataclass(frozen=True)
class Expectation(Section):
    """Update ratios against what the run's own learning rate, optimizer and weights imply."""

    optimizer: str  # adamw | muon
    betas: list[float]  # Adam's beta1, beta2
    source: str  # the ratio tag read (update_ratio_grad or update_ratio)
    per_parameter: dict[str, ExpectedRatio]  # matrix -> its numbers
    groups: dict[str, GroupExpectation]  # "adamw" / "muon" -> its numbers


@dataclass(frozen=True)
class Movement(Section):
    """How far the learning rate let the weights move over the whole run, had every step agreed."""

    sum_lr: float  # the sum of the learning rate over steps
    weight_rms: float  # the weights' RMS it is compared with
    ceiling: float  # sum_lr / weight_rms
    lr_source: str  # where the learning rate came from
    rms_source: str  # where the RMS came from


@dataclass(frozen=True)
class PeakHold(Section):
    """Whether the run held its peak learning rate stably before its first trouble."""

    peak_lr: float | None  # the peak learning rate (None: neither logged nor configured)
    reached_step: int  # the first step at HELD_PEAK_FRACTION of it
    source: str  # what that step was read from
    first_trouble_step: int | None  # the first spike, jump, non-finite loss or climb (None: none)
    first_trouble: list[str]  # what happened there
    held_steps: int  # steps trained at the peak before it
    loss_fell_while_held: bool  # the smoothed loss reached new lows there
    held_stably: bool  # at least HELD_PEAK_MIN_STEPS steps, with the loss falling
    trouble_before_peak: bool  # the first trouble came before the peak was reached


@dataclass(frozen=True)
class Regime(Section):
    """The seed's train/validation table: each curve's drop and later trend, and the row (``scenario``)."""

    train_start: float  # the median of the first finite losses
    train_drop: float  # start - final smoothed loss
    train_noise: float  # the train loss's batch-to-batch noise
    train_flat_limit: float  # a drop below this is "high" (not learning)
    train_change_later_half: float  # smoothed change over the later half
    train_trend: Trend  # that change against the noise
    train_high: bool  # drop < flat limit
    repeated_data: bool  # the data was read more than once
    epochs_started: int | None  # from the tokens section
    fraction_of_dataset: float | None  # from the tokens section
    val_trend: Trend | None = logged()  # the validation trend (with MIN_EVALUATIONS evaluations)
    val_change_later_half: float | None = logged()  # over the same window as the train trend
    val_lags_train: bool | None = logged()  # validation fell clearly less than train
    val_drop: float | None = logged()  # start - best validation loss
    val_high: bool | None = logged()  # val_drop < LOSS_FLAT
    val_below_train: bool | None = logged()  # the final gap is clearly negative
    val_evaluations: int | None = logged()  # how many evaluations
    val_rise_from_min: float | None = logged()  # last - best validation loss
    val_settled_step: int | None = logged()  # the first evaluation within a trend's size of the best
    climbed_back: bool = False  # the smoothed train loss climbed back (and validation agrees)
    ended_above_start: bool = False  # it ended above its start, or went non-finite
    scenario: Scenario = Scenario.MIXED  # the table's row


@dataclass(frozen=True)
class Guard(Section):
    """--spike_guard: when it armed."""

    armed_at: int | None  # the step (None: the run ended first)
    last_step: int | None  # the run's last logged step


@dataclass(frozen=True)
class Abandoned(Section):
    """Records of steps a later rollback abandoned (not the run's); rows as the record files hold them."""

    changes: list[dict] = field(default_factory=list)  # changes.jsonl rows, with "abandoned_by"
    interventions: list[dict] = field(default_factory=list)  # interventions.jsonl rows, with "abandoned_by"


@dataclass(frozen=True)
class DepthTrend(Section):
    """A per-matrix ratio against depth (values with at least MIN_BLOCKS_FOR_DEPTH blocks)."""

    blocks: int  # transformer blocks with a positive value
    per_block: dict[int, float] | None = logged()  # block -> the median of its matrices
    fitted: dict[int, float] | None = logged()  # block -> the least-squares line through log10 of them
    trend_decades: float | None = logged()  # the line's change from the first to the last block
    first_block: int | None = logged()  # the first block
    last_block: int | None = logged()  # the last block
    starved: Literal["first", "last"] | None = written_with("per_block")  # which end learns a decade slower
    flat: bool | None = logged()  # |trend| < DEPTH_FLAT


@dataclass(frozen=True)
class Depth(Section):
    """The learning ratio and the raw gradient ratio per transformer block."""

    learning: DepthTrend  # the gradient-driven (or whole) update ratio
    gradient: DepthTrend  # std(grad)/std(w)
