"""From a run's numbers to findings and recommendations (report.json and report.md).

Every finding cites the numbers it rests on, and every comparison in its words comes from ``thresholds.py``. The
rules name the setting that is off, resting on measured signals: update/weight ratios (the step the optimizer
actually took), their split into gradient-driven and weight-decay parts, the weights' RMS, the gradient norm
against the clip threshold, the loss and validation curves. Under AdamW a small raw gradient norm, or a small
std(grad)/std(weight), is not by itself evidence of vanishing gradients: Adam divides each step by the
gradient's running RMS. "Healthy" is said only when no finding is a warning or a problem.

A rule is one function ``rule(s: RunSummary, found: Diagnosis) -> Finding | list[Finding] | None`` that reads the
summary's typed sections (``summary_types.py``) and, where it must, the findings before it (``Diagnosis``); ``RULES``
lists them in the report's order, and a new finding is one more function in that list, with its id in ``ids.py``
(docs/development.md, "Adding a finding").
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .formatting import count, fmt, listed
from .ids import FindingId, VerdictId
from .rendering import render_markdown, write_report  # noqa: F401  (the report's outputs, re-exported)
from .runs import Run, shared_parent_steps
from .summaries import RunSummary, summarize
from .summary_types import LossSummary, Scenario, SpikeDetail
from .thresholds import (
    BARELY_MOVES,
    CHANGE_SETTLE_STEPS,
    CLIP_MIN_STEPS,
    CLIPPING_DOMINANT,
    DECAY_VS_GRADIENT,
    DEPTH_FLAT,
    DEPTH_TREND,
    DIVERGENCE_RISE,
    FAR_BELOW,
    GRAD_SPIKE_MIN_RELATIVE,
    HELD_PEAK_FRACTION,
    HELD_PEAK_MIN_STEPS,
    INIT_TOLERANCE,
    LOSS_FLAT,
    LOSS_FLAT_MIN_STEPS,
    LR_LIMITED,
    LR_RAISE_RANGE,
    MIN_BLOCKS_FOR_DEPTH,
    MIN_EVALUATIONS,
    MIN_STEPS_TO_JUDGE,
    MOVE_TOO_SMALL,
    NOISE_BATCH_FAR,
    OUTPACES,
    RATIO_TARGET,
    RATIO_UNSTABLE,
    SEED_IDEAL_GRAD_NORM,
    SLOW_BLOCK_FACTOR,
    SPIKE_Z,
    SPIKES_FOR_INSTABILITY,
    STANDARD_INIT_STD,
    VAL_AGREES_RISE,
    WARMUP_LATER_LR,
    WEIGHT_SHRINK,
    gap_trend,
    in_healthy_band,
    ratio_band,
)

SEVERE = ("warning", "problem")


@dataclass
class Advice:
    """One piece of advice. ``setting`` and ``direction`` ("raise" or "lower") say which knob it turns, so that the
    report can check that it never turns one knob both ways (``resolve_conflicts``)."""

    text: str
    setting: str | None = None
    direction: str | None = None


def raise_(setting: str, text: str) -> Advice:
    return Advice(text, setting, "raise")


def lower(setting: str, text: str) -> Advice:
    return Advice(text, setting, "lower")


@dataclass
class Finding:
    id: FindingId  # (any string works too: a finding of a rule outside ``ids.py``, as in the tests)
    severity: str  # info | warning | problem
    title: str
    evidence: str
    recommendation: str = ""  # advice that turns no setting
    advice: list[Advice] = field(default_factory=list)  # advice that does (said before ``recommendation``)
    data: dict = field(default_factory=dict)  # numbers the verdict reads

    def as_dict(self) -> dict:
        texts = [a.text for a in self.advice] + ([self.recommendation] if self.recommendation else [])
        return {"id": str(self.id), "severity": self.severity, "title": self.title, "evidence": self.evidence,
                "recommendation": " ".join(texts),
                "actions": [{"setting": a.setting, "direction": a.direction} for a in self.advice if a.setting],
                **({"data": self.data} if self.data else {})}


@dataclass
class Diagnosis:
    """What a rule may read besides the summary: the findings of the rules before it, in the report's order."""

    summary: RunSummary
    findings: list[Finding] = field(default_factory=list)

    def has(self, *ids: FindingId) -> bool:
        return any(f.id in ids for f in self.findings)

    @property
    def claimed_until(self) -> int:
        """The last step of an early phase whose spikes the warmup finding claimed (0: none): later rules leave
        them to it."""
        return self.summary.early_phase.settle_step if self.has(FindingId.WARMUP_TOO_SHORT) else 0

    def add(self, found: "Finding | list[Finding] | None") -> None:
        if isinstance(found, Finding):
            self.findings.append(found)
        elif found:
            self.findings.extend(found)


Rule = Callable[[RunSummary, Diagnosis], "Finding | list[Finding] | None"]

# Which advice wins when two findings would turn the same setting opposite ways: a run that is unstable must be made
# stable before it is made faster or bigger; a run that memorises must not be told to train longer; a run that does
# not learn at all comes before one that learns slowly. Lower rank wins.
PRIORITY_CLASSES = ("instability", "memorisation", "not learning", "speed and efficiency")
RANKS = {**{i: 0 for i in (FindingId.LR_TOO_HIGH, FindingId.LATE_DIVERGENCE, FindingId.WARMUP_TOO_SHORT,
                           FindingId.SPIKE_GUARD, FindingId.LOSS_SPIKES, FindingId.GRAD_NORM_SPIKES)},
         FindingId.OVERFITTING: 1,
         **{i: 2 for i in (FindingId.LR_TOO_LOW, FindingId.NOT_LEARNING, FindingId.LOSS_FLAT,
                           FindingId.MATRICES_FROZEN, FindingId.LAYERS_NOT_LEARNING, FindingId.DEPTH_STARVES_LAYERS,
                           FindingId.WEIGHT_DECAY_TOO_HIGH, FindingId.INIT_OVERCONFIDENT, FindingId.LAYERS_OUTPACE_LR,
                           FindingId.UNDERFITTING)}}
ADVICE_PRIORITY = ("Where findings would turn one setting opposite ways, the advice follows this priority: "
                   + ", then ".join(PRIORITY_CLASSES) + " (a tie goes to the safer direction).")
SAFE_DIRECTION = {"max_lr": "lower", "muon_lr": "lower", "warmup_steps": "raise"}  # ties between equal ranks


def rank(finding: Finding) -> int:
    return RANKS.get(finding.id, 3)


# ----------------------------------------------------------------------------------------------- rules
def init_finding(s: RunSummary, found: Diagnosis) -> Finding:
    """The initial loss against what a random model of this shape starts at: ln(vocab) plus half the variance of
    its random logits, n_embd x init_std^2 / 2 (0.154 nats for GPT-2 124M; thresholds.py says why). Too large: the
    start is above that expectation, or the expectation itself is above what GPT-2's 0.02 gives at this width."""
    loss = s.loss
    diff, expected, standard = loss.initial_minus_expected, loss.expected_initial_loss, loss.standard_initial_loss
    std = s.setting("init_std", STANDARD_INIT_STD)
    evidence = (f"initial train loss {fmt(loss.initial_train_loss)} vs {fmt(expected)} expected at "
                f"initialisation (ln(vocab) = {fmt(loss.uniform_loss)} plus n_embd x init_std^2 / 2"
                f"{' / m^2 (μP logit multiplier 1/m)' if s.setting('parametrization', 'sp') == 'mup' else ''} = "
                f"{fmt(expected - loss.uniform_loss, 3)} for the random logits; difference {fmt(diff, 3)}, "
                f"tolerance {INIT_TOLERANCE})")
    too_large = diff is not None and diff > INIT_TOLERANCE
    init_itself = diff is not None and diff >= -INIT_TOLERANCE and expected - standard > INIT_TOLERANCE
    if too_large or init_itself:
        why = (f": the initial logits are larger than init_std {std} should give (confidently wrong)" if too_large
               else f": init_std {std} itself makes the random logits large enough to start "
               f"{fmt(expected - standard, 3)} nats above what GPT-2's {STANDARD_INIT_STD} gives at this width "
               f"({fmt(standard)})")
        return Finding(FindingId.INIT_OVERCONFIDENT, "warning", "Initial loss above the expected start: init too large",
                       evidence + why + ".",
                       advice=[lower("init_std", f"Lower --init_std (now {std}; GPT-2 uses {STANDARD_INIT_STD}, with "
                                                 "residual projections scaled by 1/sqrt(2*n_layer)).")])
    if diff is None or abs(diff) <= INIT_TOLERANCE:
        return Finding(FindingId.INIT_UNIFORM, "info", "Initial loss as expected for a random model", evidence +
                       ": the randomly initialised model spreads probability as evenly as its init allows.")
    return Finding(FindingId.INIT_BELOW_UNIFORM, "info", "Initial loss below the expected start", evidence +
                   ": the run started from trained weights (--init_from) or the data is very repetitive.")


def too_short_finding(s: RunSummary, found: Diagnosis) -> list[Finding] | None:
    """A run too short to judge: said, with only a non-finite loss judged beside it (the instability finding);
    ``diagnose`` runs no rule after this one for such a run."""
    steps = s.loss.steps
    if steps >= MIN_STEPS_TO_JUDGE:
        return None
    ended = steps >= (s.setting("max_steps") or math.inf)
    short = Finding(FindingId.TOO_SHORT, "info", "Too short to judge",
                    f"the run has {steps} logged step(s); at least {MIN_STEPS_TO_JUDGE} are needed before trends, "
                    "spikes, warmup and clipping statistics say anything, so only a non-finite loss is judged.",
                    "" if ended else "Analyse again later (the report reads the logs as they grow).",
                    advice=[raise_("max_steps", f"Train for at least {MIN_STEPS_TO_JUDGE} steps (--max_steps, now "
                                                f"{steps}) to get a diagnosis.")] if ended else [])
    unstable = instability_finding(s, found, short=True)
    return [short, unstable] if unstable else [short]


def climbed_back(loss: LossSummary) -> bool:
    """The smoothed train loss rose DIVERGENCE_RISE above its minimum by the end, and validation agrees (a noisy
    stretch of training data can lift the smoothed train loss alone)."""
    rise = (loss.final_train_loss_smoothed or 0) - (loss.min_train_loss_smoothed or 0)
    val_agrees = loss.final_val_loss is None or loss.final_val_loss - loss.min_val_loss > VAL_AGREES_RISE
    return rise > DIVERGENCE_RISE and val_agrees


def held_peak_text(s: RunSummary) -> str:
    """What the run did at its peak learning rate before its first trouble, in words (for the findings that must
    say whether the warmup can be blamed)."""
    hold = s.peak_hold
    if not hold:
        return ""
    first, kinds = hold.first_trouble_step, " and ".join(hold.first_trouble)
    reached = (f"the learning rate reached {fmt(100 * HELD_PEAK_FRACTION, 3)}% of its peak at step "
               f"{hold.reached_step} ({hold.source})")
    if hold.trouble_before_peak:
        return f"the first trouble ({kinds} at step {first}) came before {reached}"
    return (f"{reached} and the run trained {hold.held_steps} step(s) there"
            + (f" before its first trouble ({kinds} at step {first})" if first else "")
            + (", the smoothed loss reaching new lows" if hold.loss_fell_while_held else
               ", without the smoothed loss reaching new lows"))


def warmup_may_be_blamed(s: RunSummary) -> bool:
    """The warmup can be the cause only of trouble that began before the run had held its peak learning rate
    stably (thresholds.py HELD_PEAK_FRACTION): after such a stretch the peak rate was shown to be sustainable."""
    return not (s.peak_hold is not None and s.peak_hold.held_stably)


def warmup_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The loss jumped only while Adam's steps were large relative to the weights (the early phase, in which the
    gradients of successive steps agree, so Adam's normalised step is close to the full learning rate), and training
    was stable afterwards at a similar learning rate: the warmup, not the peak learning rate, is too short."""
    early, loss = s.early_phase, s.loss
    if not early or not early.overshoot or early.settle_step is None or not early.early_jumps:
        return None
    if not warmup_may_be_blamed(s):
        return None  # the first trouble came after the peak had been held stably
    settle = early.settle_step
    later_spikes = [x for x in s.spikes.spike_steps if x > settle]
    if early.late_jumps or len(later_spikes) >= SPIKES_FOR_INSTABILITY or climbed_back(loss):
        return None  # unstable after the early phase too: the peak learning rate (instability rule) is the cause
    if not early.peak_lr or (early.max_lr_after_settle or 0) < WARMUP_LATER_LR * early.peak_lr:
        return None  # the schedule had decayed by then: a sustainable peak rate is not shown
    jumps = early.early_jumps
    jumped = listed([f"{x} (+{fmt(early.jump_excess[x], 3)} nats, gradient norm "
                     f"{fmt(early.jump_grad_norm[x], 3)})" for x in jumps])
    lr_text = (f", with the learning rate still up to {fmt(early.max_lr_after_settle)} "
               f"({fmt(100 * early.max_lr_after_settle / early.peak_lr, 3)}% of its peak; at least "
               f"{fmt(100 * WARMUP_LATER_LR, 3)}% is needed to clear the peak rate)")
    warmup = s.setting("warmup_steps", 0) or 0
    return Finding(FindingId.WARMUP_TOO_SHORT, "warning", "Warmup too short: the loss jumped in the early phase",
                   f"the median update/weight ratio peaked at {fmt(early.peak_ratio)} at step "
                   f"{early.peak_ratio_step} ({ratio_band(early.peak_ratio)}) and stayed above "
                   f"{fmt(RATIO_UNSTABLE)} (weights moving several percent per step) until step {settle}; in that "
                   f"phase the loss jumped above the steps around it at step(s) {jumped} (jump limit "
                   f"{fmt(early.jump_threshold, 3)} nats); after step {settle}{lr_text}, it did not jump again. "
                   "Early in training the gradients of successive steps agree, so Adam's normalised step is close to "
                   "the full learning rate: the instability belongs to that phase, not to the peak learning rate.",
                   f"The peak learning rate (--max_lr {s.setting('max_lr')}) ran without jumps after the "
                   "early phase.",
                   advice=[raise_("warmup_steps", f"Lengthen --warmup_steps (now {warmup}) to at least "
                                                  f"{max(2 * warmup, settle)} steps, so the learning rate is still low "
                                                  f"while the update ratios are above {fmt(RATIO_UNSTABLE)}.")],
                   data={"first_step": jumps[0]})


def late_divergence_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The loss climbed back after the run had held its peak learning rate stably (``peak_hold``): named as a
    divergence after a sustained peak, with its step and size; its cause came later, never the warmup. How long the
    stable stretch was does not matter beyond what the evidence needs (thresholds.py HELD_PEAK_MIN_STEPS)."""
    loss, hold = s.loss, s.peak_hold
    onset, low_step = loss.divergence_onset_step, loss.min_train_loss_step
    if onset is None or not climbed_back(loss) or not (hold is not None and hold.held_stably):
        return None
    rise = loss.final_train_loss_smoothed - loss.min_train_loss_smoothed
    return Finding(FindingId.LATE_DIVERGENCE, "problem",
                   "The loss diverged after the peak learning rate had been held stably",
                   f"{held_peak_text(s)}: the smoothed train loss fell to {fmt(loss.min_train_loss_smoothed)} at "
                   f"step {low_step}, then climbed from step {onset} (where it stood {fmt(DIVERGENCE_RISE / 2)} nats "
                   f"above that low) to {fmt(loss.final_train_loss_smoothed)} (+{fmt(rise, 3)} nats; limit "
                   f"{DIVERGENCE_RISE}). At least {HELD_PEAK_MIN_STEPS} steps at the "
                   "peak with a falling loss show that the peak rate was sustainable and the warmup long enough: the "
                   "cause came later (a stretch of data, or a learning rate too high for the sharper loss surface "
                   "later in training).",
                   "Or turn on --spike_guard to skip the damaging updates and roll back past them.",
                   advice=[lower("max_lr", f"Resume from the last checkpoint before step {low_step} with a lower "
                                           f"--max_lr (now {s.setting('max_lr')}).")],
                   data={"diverged_at": onset, "held_steps": hold.held_steps})


def instability_finding(s: RunSummary, found: Diagnosis, short: bool = False) -> Finding | None:
    """Training is unstable: non-finite losses, a loss that ended above its start or climbed back, or repeated loss
    spikes. A large update ratio alone is not instability (a small model's small weights move fast by design: see
    the update_ratios finding); it is cited as context when the run is unstable. Warmup advice is given only for
    trouble that began before the run had held its peak learning rate stably. ``short``: the run is too short to
    judge (``too_short_finding``): only its losses are read, not its spikes or a climb."""
    late = found.has(FindingId.LATE_DIVERGENCE)  # a climb after a held peak has its own finding
    spikes = [] if short else s.unexplained([x for x in s.spikes.spike_steps if x > found.claimed_until])
    reasons, diverged_at = _divergence_reasons(s.loss, late or short)
    if len(spikes) >= SPIKES_FOR_INSTABILITY:
        reasons.append(f"{len(spikes)} loss spikes (steps {listed([str(x) for x in spikes], limit=8)}; "
                       f"{s.spikes.source})")
    if not reasons:
        return None
    context = ""
    ratio = s.learning_ratio
    if ratio:
        context = (f" Context: the weight matrices moved a median {fmt(ratio.overall_median)} of their size per "
                   "step" + (f" (the run's own scale lr/rms(w) is {fmt(expected_scale(s))})" if expected_scale(s)
                             else "") + ".")
    warmup = s.setting("warmup_steps")
    advice = [lower("max_lr", f"Lower --max_lr (now {s.setting('max_lr')}) 3-10x.")]
    if s.setting("optimizer") == "muon":
        advice.append(lower("muon_lr", f"With Muon, lower --muon_lr too (now "
                                       f"{s.setting('muon_lr') or s.setting('max_lr')})."))
    hold = held_peak_text(s)
    if warmup_may_be_blamed(s):
        advice.append(raise_("warmup_steps", f"Or lengthen --warmup_steps (now {warmup}): the trouble began before "
                                             "the run had held its peak learning rate stably."))
        why = f" ({hold[0].upper()}{hold[1:]}.)" if hold else ""
    else:
        why = f" Not the warmup: {hold}." if hold else ""
    return Finding(FindingId.LR_TOO_HIGH, "problem", "Learning rate too high: training is unstable"
                   if diverged_at is None else "The run diverged: learning rate too high",
                   "; ".join(reasons) + "." + why + context,
                   "The spike guard (--spike_guard) can ride out isolated spikes.", advice=advice,
                   data={"diverged_at": diverged_at, "spikes": len(spikes)})


def _divergence_reasons(loss: LossSummary, no_climb: bool) -> tuple[list[str], int | None]:
    """The instability finding's reasons from the loss curve (non-finite losses, an end above the start, a climb
    back: ``no_climb`` when another finding speaks for a climb or the run is too short), and the step it diverged at
    (None: it did not)."""
    reasons, diverged_at = [], None
    if loss.nonfinite_steps:
        reasons.append(f"{loss.nonfinite_steps} step(s) with a non-finite loss (the first at step "
                       f"{loss.first_nonfinite_step})")
        diverged_at = loss.first_nonfinite_step
    rise = (loss.final_train_loss_smoothed or 0) - (loss.min_train_loss_smoothed or 0)
    # A flat loss that ends a hair above where it started is not divergence: require a rise of DIVERGENCE_RISE.
    if (loss.final_train_loss_smoothed or 0) > (loss.initial_train_loss or math.inf) + DIVERGENCE_RISE:
        reasons.append(f"the smoothed train loss ended at {fmt(loss.final_train_loss_smoothed)}, more than "
                       f"{DIVERGENCE_RISE} nats above the initial {fmt(loss.initial_train_loss)}: the run diverged")
        diverged_at = diverged_at or loss.divergence_onset_step or loss.min_train_loss_step
    elif climbed_back(loss) and not no_climb:
        reasons.append(f"the smoothed train loss climbed back {fmt(rise, 3)} nats (limit {DIVERGENCE_RISE}) above "
                       f"its minimum {fmt(loss.min_train_loss_smoothed)} at step {loss.min_train_loss_step} to "
                       f"{fmt(loss.final_train_loss_smoothed)}")
        diverged_at = diverged_at or loss.divergence_onset_step
    return reasons, diverged_at


def expected_scale(s: RunSummary) -> float | None:
    groups = s.expectation.groups if s.expectation else {}
    group = groups.get("adamw") or groups.get("muon")
    return group.median_expected if group else None


def _raise_factor(ratio: float) -> float:
    return min(LR_RAISE_RANGE[1], max(LR_RAISE_RANGE[0], RATIO_TARGET / max(ratio, 1e-12)))


def not_learning_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The seed's "high train loss + high validation loss": the run is not learning. Its cause is read from what
    the weights did: they moved as far as the learning rate let them but that was very little (the learning rate is
    too low: raise it); they did not move although the learning rate would have let them (frozen or starved
    matrices: the layer findings); or they moved normally and the loss still did not fall (not the learning rate:
    the data, the labels or the loss)."""
    loss = s.loss
    if s.scenario != Scenario.NOT_LEARNING or loss.steps < LOSS_FLAT_MIN_STEPS or loss.nonfinite_steps:
        return None  # (non-finite losses: the instability finding speaks for the run)
    head, move = _not_learning_head(s), s.movement
    small_ceiling = bool(move) and move.ceiling < MOVE_TOO_SMALL
    moved_text = (f"; over the whole run the learning rates ({move.lr_source}) let the weights move at most "
                  f"{fmt(move.ceiling)} of their size" + (f", below {fmt(MOVE_TOO_SMALL)}" if small_ceiling else "")
                  + f" (the sum of lr_t / rms(w), rms(w) {fmt(move.weight_rms, 3)} from {move.rms_source})"
                  ) if move else ""
    if s.expectation and s.expectation.groups:
        return _not_learning_by_ratios(s, head, moved_text, small_ceiling)
    if small_ceiling:  # no update ratios, but the learning rate alone could not have moved the weights
        return Finding(FindingId.LR_TOO_LOW, "problem", "Not learning: the learning rate is too low",
                       f"{head}{moved_text}: even if every step had agreed, the weights could not have changed much.",
                       "Enable the layer_ratios callback to see how the weights move.",
                       advice=[raise_("max_lr", f"Raise --max_lr (now {s.setting('max_lr')}) at least "
                                                f"{max(LR_RAISE_RANGE[0], MOVE_TOO_SMALL / move.ceiling):.0f}x.")],
                       data={"cause": "learning rate"})
    return Finding(FindingId.LOSS_FLAT, "warning", "Not learning: the loss barely moves",
                   f"{head}; no update ratios were logged" + moved_text + ", so whether the weights move cannot be "
                   "told.", "Enable the layer_ratios callback: it tells a learning rate that is too low (weights that "
                   "move as far as the rate allows, and little) from weights that do not move at all.",
                   data={"cause": "unknown"})


def _not_learning_head(s: RunSummary) -> str:
    """The numbers that make a run "not learning" (both losses barely fell), the opening of each of its findings."""
    regime, loss = s.regime, s.loss
    return (f"train loss fell only {fmt(regime.train_drop, 3)} nats in {loss.steps} steps ({fmt(regime.train_start)} "
            f"-> {fmt(loss.final_train_loss_smoothed)}; less than {fmt(regime.train_flat_limit, 3)}, the larger of "
            f"{LOSS_FLAT} and 3x its batch-to-batch noise {fmt(regime.train_noise, 3)})"
            + (f" and validation only {fmt(regime.val_drop, 3)} (less than {LOSS_FLAT})" if regime.val_drop is not None
               else "")
            + ": high train and high validation loss, the seed's \"not learning\" row")


def _not_learning_by_ratios(s: RunSummary, head: str, moved_text: str, small_ceiling: bool) -> Finding:
    """The not-learning finding when update ratios were logged: they tell the cause (a learning rate too low, weights
    that do not move, or weights that move and a loss that still does not fall)."""
    groups = s.expectation.groups
    adam = groups.get("adamw")
    all_barely = all(len(g.barely) >= g.matrices / 2 for g in groups.values()) and not small_ceiling
    consistent = adam is not None and adam.median_consistency >= LR_LIMITED
    if small_ceiling or consistent:
        ratio = (s.learning_ratio.overall_median if s.learning_ratio else None) or \
            (adam.median_ratio if adam else 0.0)
        return Finding(FindingId.LR_TOO_LOW, "problem", "Not learning: the learning rate is too low",
                       f"{head}. The weights moved a median {fmt(ratio)} of their size per step, "
                       + (f"{fmt(adam.median_consistency, 2)} of what the learning rate allows "
                          f"(lr/rms(w) = {fmt(adam.median_expected)}; successive steps "
                          + ("agree: the step size, not the gradient, is the limit)" if consistent else
                             "are as consistent as gradient noise makes them)") if adam else "")
                       + moved_text + f". For context, {fmt(ratio)} is {ratio_band(ratio)}.",
                       advice=[raise_("max_lr", f"Raise --max_lr (now {s.setting('max_lr')}) about "
                                                f"{_raise_factor(ratio):.0f}x (Adam's steps scale with the "
                                                "learning rate).")],
                       data={"cause": "learning rate"})
    if all_barely:
        return Finding(FindingId.NOT_LEARNING, "problem", "Not learning: the weights do not move",
                       f"{head}. Most weight matrices move far less than their learning rate allows (the layer "
                       "findings name them): the gradients do not reach them, so "
                       "raising the learning rate would not help." + moved_text + ".",
                       "Check requires_grad, the optimizer's parameter groups, and --adam_epsilon against the "
                       "gradients' size.", data={"cause": "weights do not move"})
    return Finding(FindingId.NOT_LEARNING, "problem", "Not learning, although the weights move",
                   f"{head}. The weights move as their learning rate implies (median consistency "
                   f"{fmt(adam.median_consistency, 2) if adam else 'n/a'}, within Adam's range)" + moved_text +
                   ", yet the loss does not fall: the learning rate is not the cause.",
                   "Check the data and the targets (shifted by one token? tokens in range?) and the loss.",
                   data={"cause": "not the learning rate"})


def lr_limited_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """A run that learns, whose Adam steps still agree from one step to the next over the later half of the run:
    the step size, not the gradient noise, limits it (info: a larger learning rate would likely be faster)."""
    adam = (s.expectation.groups if s.expectation else {}).get("adamw")
    later = adam.median_consistency_later if adam else None
    if later is None or later < LR_LIMITED or found.has(FindingId.LR_TOO_LOW, FindingId.NOT_LEARNING,
                                                         FindingId.LOSS_FLAT):
        return None
    if s.setting("optimizer") == "muon" and adam.matrices < 3:
        return None  # only the embeddings are on AdamW: their consistency says little about the run
    return Finding(FindingId.LR_LIMITED, "info", "Adam's steps still agree: the learning rate limits the speed",
                   f"over the later half of the run the AdamW matrices moved a median {fmt(later, 2)} of what their "
                   f"learning rate allows (at least {fmt(LR_LIMITED, 2)}: successive steps push the same way; gradient "
                   f"noise alone would give about {fmt(adam.band[0], 2)}).",
                   advice=[raise_("max_lr", f"A higher --max_lr (now {s.setting('max_lr')}) would likely "
                                            "train faster: raise it 2-3x in a short trial and keep it if the loss "
                                            "stays free of spikes.")])


def weight_decay_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """AdamW's decoupled decay pulls each matrix in by lr x wd per step (logged exactly); against the step the
    gradients move it (the gradient-driven update ratio) it says whether decay or learning sets the weights' size."""
    weights = s.weights
    against = weights.median_decay_vs_gradient if weights else None
    change = weights.median_rms_change if weights else None
    if against is None or change is None or against < DECAY_VS_GRADIENT or change >= -WEIGHT_SHRINK:
        return None
    return Finding(FindingId.WEIGHT_DECAY_TOO_HIGH, "warning", "Weight decay dominates: the weights shrink",
                   f"AdamW's decoupled decay step (lr x weight_decay) is a median {fmt(against, 3)}x the "
                   f"gradient-driven step of each weight matrix (limit {fmt(DECAY_VS_GRADIENT)}x), and the median "
                   f"weight RMS fell {fmt(-100 * change, 3)}% over the run (limit {fmt(100 * WEIGHT_SHRINK, 3)}%): "
                   "decay, not the gradients, sets the size of the weights.",
                   advice=[lower("weight_decay", f"Lower --weight_decay (now {s.setting('weight_decay')}; "
                                                 "GPT-2 runs use 0.1, the seed suggests trying 0.01).")])


def slow_blocks(s: RunSummary) -> list[int]:
    """Blocks whose learning ratio is more than a decade below the fastest block's, when depth starves them."""
    learning = s.depth.learning
    if not learning.starved:
        return []
    fastest = max(learning.per_block.values())
    return [b for b, value in learning.per_block.items() if value < fastest / SLOW_BLOCK_FACTOR]


def starved_side(s: RunSummary) -> list[int]:
    """When depth starves the blocks at one end, the blocks between that end and the fastest block: their barely
    moving matrices belong to the depth finding, not to a finding of their own."""
    learning = s.depth.learning
    if not learning.starved:
        return []
    per_block = learning.per_block
    fastest = max(per_block, key=per_block.get)
    return [b for b in per_block if (b < fastest if learning.starved == "first" else b > fastest)]


def depth_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """Does learning fade with depth? The seed write-up blamed "vanishing gradients through 12 layers" on raw
    gradient norms; the measured test is the learning ratio of each block against its depth (and the raw gradient
    ratio, which shows whether the gradient itself fades on its way down)."""
    learning, gradient = s.depth.learning, s.depth.gradient
    if learning.blocks < MIN_BLOCKS_FOR_DEPTH:
        return None  # with fewer blocks a depth trend cannot be told apart from two blocks that differ
    which, per_block = s.learning_ratio_name, learning.per_block
    first, last, decades = learning.first_block, learning.last_block, learning.trend_decades
    numbers = (f"the median {which} is {fmt(per_block[first])} in block {first} (nearest the input) and "
               f"{fmt(per_block[last])} in block {last} (nearest the output); a line fitted through all "
               f"{learning.blocks} blocks changes by {fmt(decades, 2)} decades from the first to the last")
    if learning.starved:
        slow = slow_blocks(s)
        where = "nearest the input" if learning.starved == "first" else "nearest the output"
        fades = (gradient.trend_decades is not None and abs(gradient.trend_decades) >= DEPTH_FLAT
                 and (gradient.trend_decades > 0) == (decades > 0))
        cause = (f"The raw gradient ratio std(grad)/std(w) changes by {fmt(gradient.trend_decades, 2)} decades "
                 "the same way: the gradient fades on its way through the layers." if fades else
                 "The raw gradient ratio does not fade the same way, so the optimizer's step, not a vanishing "
                 "gradient, differs with depth.")
        side = tuple(f"h.{b}." for b in starved_side(s)) or ("\0",)
        barely = sorted(n for g in (s.expectation.groups if s.expectation else {}).values() for n in g.barely
                        if n.startswith(side))
        also = (f" Matrices on that side that move less than {fmt(BARELY_MOVES, 2)} of the least their learning rate "
                f"implies: {listed(barely)}." if barely else "")
        return Finding(FindingId.DEPTH_STARVES_LAYERS, "warning", "Learning fades with depth",
                       f"{numbers} (limit {fmt(DEPTH_TREND, 2)}): the blocks {where} learn more than ten times "
                       f"slower (block(s) {listed([str(b) for b in slow])} more than a decade below the fastest). "
                       + cause + also,
                       advice=[lower("n_layer", f"Try fewer layers (--n_layer, now {s.setting('n_layer')})."),
                               raise_("init_std", "If the slow blocks' gradients are tiny, a larger --init_std (now "
                                                  f"{s.setting('init_std', 0.02)}) lets Adam see them."),
                               lower("adam_epsilon", "A smaller --adam_epsilon (now "
                                                     f"{s.setting('adam_epsilon', 1e-8)}) also lets Adam see "
                                                     "tiny gradients.")])
    words = ("does not depend on depth" if learning.flat else
             f"changes with depth by less than the {fmt(DEPTH_TREND, 2)}-decade limit")
    return Finding(FindingId.LEARNING_BY_DEPTH, "info", "Learning by depth",
                   f"{numbers}: learning {words} (flat below {fmt(DEPTH_FLAT, 2)} decades), so nothing here points to "
                   f"vanishing gradients through the {learning.blocks} layers; changing --n_layer would change "
                   "capacity and speed, not rescue starved layers.")


def layer_findings(s: RunSummary, found: Diagnosis) -> list[Finding]:
    """Matrices that never change, barely move or move faster than their learning rate allows, each judged against
    its own learning rate and weights (``expectation``); the seed's fixed 1e-3 is only the fallback yardstick for
    runs that logged no learning rate or weight RMS, and it never makes a matrix "too fast"."""
    ratio, learning, exp = s.update_ratio, s.learning_ratio, s.expectation
    if not ratio:
        return []
    out = []
    frozen = ratio.zero
    if frozen:
        out.append(Finding(FindingId.MATRICES_FROZEN, "warning", "Some weight matrices never change",
                           f"{len(frozen)} weight matrices have an update/weight ratio of exactly 0: "
                           f"{listed(frozen)}. They are frozen (requires_grad=False) or receive no gradient.",
                           "Unfreeze them if that is not intended, or check that they are used in the forward pass."))
    by_depth = tuple(f"h.{b}." for b in set(slow_blocks(s)) | set(starved_side(s))) or ("\0",)  # the depth finding
    advice = ("Look at these parameters: rows that never receive gradient (e.g. position embeddings beyond the "
              "trained context), gradients below --adam_epsilon, or a depth/init scaling that starves them.")
    if exp:
        return out + _layers_against_expectation(s, frozen, by_depth, advice)
    medians = learning.per_parameter_median
    slow = [n for n in learning.far_below if n not in frozen and not n.startswith(by_depth)]
    if slow and learning.overall_median >= FAR_BELOW:
        which = s.learning_ratio_name
        out.append(Finding(FindingId.LAYERS_NOT_LEARNING, "warning", "Some layers barely learn",
                           f"{len(slow)} weight matrices have a median {which} more than a decade below the seed's "
                           f"1e-3 heuristic (below {fmt(FAR_BELOW)}): {listed(slow, medians)}; overall median "
                           f"{fmt(learning.overall_median)}, {ratio_band(learning.overall_median)}. (No "
                           "learning rate or weight RMS was logged to judge them against their own scale.)", advice))
    return out


def _layers_against_expectation(s: RunSummary, frozen: list[str], by_depth: tuple[str, ...],
                                advice: str) -> list[Finding]:
    """The layer findings when each matrix can be judged against its own expected scale (``expectation``):
    matrices that barely move (less those frozen or the depth finding's) and matrices that outpace their rate."""
    exp, out = s.expectation, []
    per = exp.per_parameter
    slow = sorted(n for g in exp.groups.values() for n in g.barely if n not in frozen and not n.startswith(by_depth))
    if slow:
        adamw = exp.groups.get("adamw")
        out.append(Finding(FindingId.LAYERS_NOT_LEARNING, "warning", "Some layers barely learn",
                           f"{len(slow)} weight matrices move less than {fmt(BARELY_MOVES, 2)} of the least their "
                           "learning rate implies (measured ratio / expected lr-based scale: "
                           f"{listed(slow, {n: per[n].consistency for n in slow})}; Adam's pure-noise floor is "
                           f"{fmt((adamw.band if adamw else [0.23])[0], 2)}): their gradients are "
                           "below Adam's epsilon, cancel from step to step, or reach only a few rows.", advice))
    fast = sorted(n for g in exp.groups.values() for n in g.outpacing)
    if fast:
        out.append(Finding(FindingId.LAYERS_OUTPACE_LR, "warning", "Some matrices move faster than their learning rate "
                           "allows",
                           f"{len(fast)} weight matrices move more than {fmt(OUTPACES, 2)}x the most their "
                           "optimizer's step can give at the logged learning rate (measured / expected scale: "
                           f"{listed(fast, {n: per[n].consistency for n in fast})}): the learning rate "
                           "applied is not the one logged, or something besides the optimizer changes these "
                           "weights.", "Compare train/lr with the optimizer's param_groups after a resume, and "
                           "look for code that writes the weights."))
    return out


def update_ratio_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The update/weight ratios against the run's own expectation, per optimizer group, with the seed's 1e-3 as
    context (info)."""
    exp = s.expectation
    if not exp:
        return None
    parts = []
    for group, g in exp.groups.items():
        low, high = g.band
        e = g.median_consistency
        if group == "adamw":
            scale = "lr/rms(w)"
            where = ("below what gradient noise alone gives: some matrices barely move" if e < low / 2 else
                     "about what gradient noise gives: successive steps mostly cancel, as they do once the early "
                     "phase is over" if e < 0.5 else
                     "partly consistent steps" if e < LR_LIMITED else
                     "consistent steps: successive steps push the same way, so the step size limits the speed"
                     if e <= high * OUTPACES else "more than Adam's step can give: see the layers_outpace_lr finding")
            why = (f"Adam moves each element by at most about lr per step; gradient noise alone gives about "
                   f"{fmt(low, 2)} of it (beta1 {fmt(exp.betas[0])}), every step agreeing 1, and "
                   f"{fmt(high, 3)} is the bound for these betas")
        else:
            scale = "0.2 x lr_muon/rms(w)"
            where = ("as expected" if low <= e <= high else "below what an orthogonalised step gives" if e < low
                     else "above what Muon's step can give")
            why = ("Muon's orthogonalised step has an RMS of about 0.2 x lr with adjust_lr_fn=match_rms_adamw, "
                   f"whatever the gradient's consistency: {fmt(low, 2)}-{fmt(high, 3)} of it")
        parts.append(f"{'AdamW' if group == 'adamw' else 'Muon'} ({g.matrices} matrices): median ratio "
                     f"{fmt(g.median_ratio)} against an expected scale {scale} of {fmt(g.median_expected)}, "
                     f"i.e. {fmt(e, 2)} of it, {where} ({why})")
    overall = s.learning_ratio.overall_median
    why = ("; a small model's small weights at a larger learning rate move faster per step by design"
           if overall > 10 * RATIO_TARGET else "; larger weights or a smaller learning rate move less per step by "
           "design" if overall < RATIO_TARGET / 10 else "")
    return Finding(FindingId.UPDATE_RATIOS, "info", "Update ratios against the run's own learning rate and weights",
                   f"{'; '.join(parts)}. For context, the overall median {fmt(overall)} is {ratio_band(overall)}, "
                   f"the seed's heuristic for GPT-2-size weights at a learning rate near 6e-4{why}: each matrix is "
                   f"judged against its own scale here (measured {exp.source}).")


def regime_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The seed's table of train/validation behaviours, each row named for what it is, with advice that fits it:
    learning and generalising; memorising data read more than once (never "train longer"); validation that does not
    follow on data read once (not memorisation); high train loss with falling validation; a plateau. The "not
    learning" row has its own finding (its cause decides the advice); a diverging run belongs to the instability
    findings. Each row is worded by its own function (``REGIME_ROWS``)."""
    row = REGIME_ROWS.get(s.scenario)
    return row(s) if row else None


def _data_read(r) -> str:
    """How often the data was read, in words (epochs started, fraction of the dataset's tokens)."""
    epochs = r.epochs_started
    return (f"{epochs} epochs started" if epochs else "") + (
        f"{', ' if epochs else ''}{fmt(r.fraction_of_dataset, 3)}x the dataset's tokens"
        if r.fraction_of_dataset else "")


def _train_words(r) -> str:
    return (f"the smoothed train loss changed {fmt(r.train_change_later_half, 3)} nats over the later half "
            f"of the run ({r.train_trend})")


def _memorising(s: RunSummary) -> Finding:
    """Validation rose (a problem) or stayed flat (a warning) while training fell, on data read more than once: stop
    where validation stopped improving, regularise, and use more data; never "train longer"."""
    r, loss, gap = s.regime, s.loss, s.gap
    rising = r.val_trend == "rising"
    stop = loss.min_val_step if rising else r.val_settled_step
    after_best = gap.train_change_after_val_min if gap.train_change_after_val_min is not None else 0.0
    course = ((f"validation loss was lowest at step {loss.min_val_step} ({fmt(loss.min_val_loss)}) and "
               f"rose to {fmt(loss.final_val_loss)} while the smoothed train loss fell "
               f"{fmt(-after_best, 3)} more") if rising else
              (f"validation loss stopped improving at step {stop} (within a trend's size of its best, "
               f"{fmt(loss.min_val_loss)}) and stayed flat (it changed "
               f"{fmt(r.val_change_later_half, 3)} over the later half) while {_train_words(r)}"))
    evidence = (course + f"; the train/val gap is now {fmt(gap.gap_final, 3)}; the data was read more than "
                f"once ({_data_read(r)}): the model learns its training text by heart instead of what generalises.")
    advice = [lower("max_steps", f"Stop near step {stop}, where validation stopped improving (or stop on "
                                 "--target_val_loss); more passes over the same data will not help.")]
    shrinking = ((s.weights.median_rms_change if s.weights else None) or 0) < -WEIGHT_SHRINK
    if not shrinking:  # weights that already shrink are regularised enough by decay
        advice.append(raise_("weight_decay", f"Regularise: raise --weight_decay (now {s.setting('weight_decay')})."))
    if (s.setting("dropout") or 0) < 0.1:
        advice.append(raise_("dropout", f"A higher --dropout (now {s.setting('dropout', 0.0)}) also regularises."))
    return Finding(FindingId.OVERFITTING, "problem" if rising else "warning",
                   "Overfitting: memorising its data (validation loss " + ("rises" if rising else "stays flat")
                   + " while training loss falls)", evidence,
                   "Use more data (fewer passes over it): fresh tokens are the cure.", advice=advice,
                   data={"val_trend": r.val_trend, "best_step": stop})


def _val_not_following(s: RunSummary) -> Finding:
    r = s.regime
    return Finding(FindingId.VAL_NOT_FOLLOWING, "warning", "Validation does not follow training on data read once",
                   f"validation loss {'rose' if r.val_trend == 'rising' else 'stayed flat'} over the later "
                   f"evaluations ({fmt(r.val_change_later_half, 3)} nats) while {_train_words(r)}; the training "
                   f"data was read once ({_data_read(r) or 'no repeat logged'}), so this is not memorisation: every "
                   "training batch was new, and the training loss itself measures how the model does on unseen "
                   "text of the training distribution. The validation text differs from the training text.",
                   "Check that the validation split comes from the same distribution as the training data.")


def _val_falls_train_high(s: RunSummary) -> Finding:
    """The seed's "high train + decreasing val" (which it reads as underfitting): with dropout on, the training loss
    is measured with it (lower it); without, the training text is harder than the validation text."""
    r, gap = s.regime, s.gap
    dropout = s.setting("dropout") or 0
    evidence = (f"{_train_words(r)}, while validation loss fell {fmt(-r.val_change_later_half, 3)} nats over the "
                f"same stretch and ends {fmt(-(gap.gap_final if gap.gap_final is not None else 0.0), 3)} below the "
                "smoothed train loss: the seed's \"high train + decreasing val\" row, which it reads as underfitting. "
                "A model that improves on unseen validation text is learning, not underfitting")
    if dropout > 0:
        return Finding(FindingId.UNDERFITTING, "warning", "Training loss stays high while validation falls",
                       evidence + f"; the training loss is measured with dropout {dropout} on, validation "
                       "without it.",
                       advice=[lower("dropout", f"Lower --dropout (now {dropout}): it is regularising a model "
                                                "that is not overfitting.")])
    return Finding(FindingId.UNDERFITTING, "info", "Training loss stays high while validation falls",
                   evidence + ". Without dropout both losses are measured alike, so the training batches "
                   "are harder than the validation text (a stretch of harder data, or another source).",
                   "Compare the training and validation text (source, cleaning, language).")


def _plateau(s: RunSummary) -> Finding:
    r = s.regime
    more = ("more passes over the same data will not help (it was read more than once: " + _data_read(r) + ")"
            if r.repeated_data else "a new schedule from a higher rate, or a larger model, is what moves it")
    return Finding(FindingId.PLATEAU, "info", "Plateau: train and validation loss stopped falling",
                   f"{_train_words(r)}, and validation loss changed {fmt(r.val_change_later_half, 3)} nats over the "
                   f"same stretch (flat): the run has stopped improving at this learning rate and size; {more}.")


# Passes over the same data after which more steps are not advised: Muennighoff et al. 2023 ("Scaling Data-Constrained
# Language Models") found up to ~4 epochs of repeated data nearly as good as fresh, and fast-diminishing returns after.
WORTHWHILE_EPOCHS = 4.0


def _learning(s: RunSummary) -> Finding:
    """Learning and generalising; more tokens are advised only while validation is still at its lowest."""
    r, loss = s.regime, s.loss
    still = loss.min_val_step == loss.last_val_step and (loss.val_evaluations or 0) >= MIN_EVALUATIONS
    advice = []
    passes = max(r.fraction_of_dataset or 0.0, (r.epochs_started or 1) - 1)  # complete passes, at least
    if still and passes >= WORTHWHILE_EPOCHS:  # more steps would mostly repeat data already seen many times
        advice.append(Advice(f"Validation loss was still at its lowest at the last evaluation, but the data has "
                             f"been read {_data_read(r)}: past about {WORTHWHILE_EPOCHS:g} passes a repeated token "
                             "is worth much less than a fresh one (Muennighoff et al. 2023), so more data, not more "
                             "steps over this data, is what should help."))
    elif still:
        advice.append(raise_("max_steps", "More tokens should help: validation loss was at its lowest at the last "
                                          "evaluation" + (f" (the data has been read more than once, {_data_read(r)}: "
                                                          "watch validation, it will turn)" if r.repeated_data
                                                          else "") + "."))
    return Finding(FindingId.LEARNING, "info", "Learning and generalising: train and validation loss both fall",
                   f"validation loss fell to {fmt(loss.min_val_loss)} (best at step "
                   f"{loss.min_val_step}) and {_train_words(r)}.", advice=advice)


def _learning_no_validation(s: RunSummary) -> Finding:
    return Finding(FindingId.LEARNING, "info", "Learning (no validation loss logged)",
                   f"{_train_words(s.regime)}; without validation loss, learning cannot be told from memorising.",
                   "Set --eval_every to log validation loss.")


# The rows of the seed's table that ``regime_finding`` words (not learning and diverging have findings of their own).
REGIME_ROWS = {Scenario.MEMORISING: _memorising, Scenario.VAL_NOT_FOLLOWING: _val_not_following,
               Scenario.VAL_FALLS_TRAIN_HIGH: _val_falls_train_high, Scenario.PLATEAU: _plateau,
               Scenario.LEARNING: _learning, Scenario.LEARNING_NO_VALIDATION: _learning_no_validation}


def gap_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    gap, tokens, loss = s.gap, s.tokens, s.loss
    if gap.evaluations < MIN_EVALUATIONS:
        return None
    still_falling = loss.min_val_step == loss.last_val_step
    text = (f"validation minus smoothed train loss is {fmt(gap.gap_final, 3)} at the end "
            f"({fmt(gap.gap_mid, 3)} at mid-run): the gap {gap_trend(gap.gap_change_second_half)}, while "
            f"validation loss is {'at its lowest so far' if still_falling else 'above its minimum'}.")
    if tokens.epochs_started == 1:
        text += (" Every training token was seen once, so the gap cannot be memorisation: it reflects the "
                 "difference between the training and validation text and the lag of the smoothed curve, "
                 "not overfitting.")
    return Finding(FindingId.TRAIN_VAL_GAP, "info", "Train/validation gap", text)


def clipping_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    grad, ratio = s.grad_norm, s.update_ratio
    if found.has(FindingId.LR_TOO_HIGH):
        return None  # in an unstable run the large norms are a symptom: raising the clip threshold would be wrong
    if not grad or not grad.clip or grad.steps_after_warmup < CLIP_MIN_STEPS:
        return None
    if grad.clipped_fraction_after_warmup <= CLIPPING_DOMINANT:
        return None
    step = (f" The update ratios (median {fmt(ratio.overall_median)}) show the step the optimizer actually "
            "takes.") if ratio else ""
    return Finding(FindingId.CLIP_THRESHOLD_LOW, "warning", "The clip threshold sits below the typical gradient norm",
                   f"{fmt(100 * grad.clipped_fraction_after_warmup, 3)}% of the {grad.steps_after_warmup} steps "
                   f"after warmup (limit {fmt(100 * CLIPPING_DOMINANT, 3)}%) had a norm above --grad_clip "
                   f"{fmt(grad.clip)} (median norm {fmt(grad.median_after_warmup)}). Under AdamW a gradient "
                   "scaled down by a constant gives nearly the same step (Adam divides by the running RMS), so this "
                   "clipping does not make the steps smaller: it normalises every gradient, and outliers are no "
                   "longer told apart from ordinary steps." + step,
                   advice=[raise_("grad_clip", f"Raise --grad_clip to about {fmt(grad.p90_after_warmup, 2)} (the "
                                               "90th percentile of the norm after warmup) so that only outlier steps "
                                               "are clipped.")])


def _spike_list(steps: list[int], detail: dict[int, SpikeDetail]) -> str:
    return listed([f"{x} ({fmt(detail[x].value, 3)} vs {fmt(detail[x].level, 3)} around it)" for x in steps])


def grad_spike_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    if found.has(FindingId.LR_TOO_HIGH):
        return None  # in an unstable run the large norms are a symptom of it
    every = s.grad_spikes.after_warmup
    spikes = s.unexplained([x for x in every if x > found.claimed_until])  # earlier ones: the warmup finding
    if not spikes:
        return None
    return Finding(FindingId.GRAD_NORM_SPIKES, "warning", "Gradient-norm spikes after warmup",
                   f"{len(spikes)} step(s) after warmup had a gradient norm at least "
                   f"{fmt(1 + GRAD_SPIKE_MIN_RELATIVE, 2)}x the median of the steps around it and more than "
                   f"{fmt(SPIKE_Z)} robust standard deviations of its batch-to-batch noise above it: "
                   f"{_spike_list(spikes, s.grad_spikes.detail)}"
                   + (" (earlier ones belong to the early phase, see the warmup_too_short finding)"
                      if len(spikes) < len(every) else "") + ".",
                   "Look at the data around these steps; if the loss also jumps there, --spike_guard skips such "
                   "updates.")


def grad_norm_findings(s: RunSummary, found: Diagnosis) -> list[Finding]:
    grad, ratio, grad_ratio = s.grad_norm, s.update_ratio, s.grad_ratio
    if not grad:
        return []
    spikes = s.grad_spikes.after_warmup
    out = [Finding(FindingId.GRAD_NORM_REGIME, "info", "Gradient-norm regime",
                   f"initial peak {fmt(grad.initial_peak)} at step {grad.initial_peak_step}; after warmup the "
                   f"norm sits between {fmt(grad.p10_after_warmup)} and {fmt(grad.p90_after_warmup)} "
                   f"(10th-90th percentile, median {fmt(grad.median_after_warmup)}) with {len(spikes)} spike(s); "
                   f"{fmt(100 * grad.clipped_fraction, 3)}% of all steps were clipped at {fmt(grad.clip)}.")]
    looks_small = grad.median_after_warmup < SEED_IDEAL_GRAD_NORM or (
        grad_ratio and grad_ratio.overall_median < RATIO_TARGET)
    if looks_small:
        raw = (f"the raw gradient norm (median {fmt(grad.median_after_warmup)} after warmup, before clipping"
               + (f"; std(grad)/std(w) of the clipped gradient, median {fmt(grad_ratio.overall_median)}"
                  if grad_ratio else "") + ")")
        text = (f"{raw} looks small, but under AdamW that is not evidence of vanishing gradients: Adam divides "
                f"each step by the gradient's running RMS. {_what_the_weights_show(s, found)}." if ratio else
                f"{raw} looks small, but under AdamW that alone is not evidence of vanishing gradients; no "
                "update ratios were logged, so whether layers learn cannot be concluded.")
        out.append(Finding(FindingId.SMALL_RAW_GRADIENTS_NOT_VANISHING, "info", "Small raw gradients are not "
                           "vanishing gradients under AdamW", text,
                           "" if ratio else "Enable the layer_ratios callback to measure update/weight ratios."))
    return out


def _what_the_weights_show(s: RunSummary, found: Diagnosis) -> str:
    """What the update ratios show about the weights (the small-raw-gradients finding's answer), in words: against
    their own expected scale when it is known, else against the seed's healthy band; naming the finding that says
    more."""
    median = s.update_ratio.overall_median
    if s.expectation:
        barely = found.has(FindingId.LAYERS_NOT_LEARNING, FindingId.DEPTH_STARVES_LAYERS)
        consistency = min(g.median_consistency for g in s.expectation.groups.values())
        depth = FindingId.DEPTH_STARVES_LAYERS if found.has(FindingId.DEPTH_STARVES_LAYERS) else \
            FindingId.LAYERS_NOT_LEARNING
        verdict = (f"most weights move as far as their learning rate implies, but not every matrix (see the {depth} "
                   "finding)" if barely else
                   f"the weights move as far as their learning rate implies (a median {fmt(consistency, 2)} "
                   "or more of the scale lr/rms(w), see the update_ratios finding)")
        measured = f"the update/weight ratios (median {fmt(median)})"
    else:
        lr_finding = next((i for i in (FindingId.LR_TOO_LOW, FindingId.LR_TOO_HIGH, FindingId.NOT_LEARNING)
                           if found.has(i)), None)
        if in_healthy_band(median) and found.has(FindingId.DEPTH_STARVES_LAYERS):
            verdict = "most weights move at a healthy rate, but not every block (see the depth_starves_layers finding)"
        elif in_healthy_band(median):
            verdict = "the weights do move at a healthy rate"
        else:
            verdict = "the update ratios are themselves out of range" + (
                f" (see the {lr_finding} finding)" if lr_finding else "")
        measured = f"the update/weight ratios (median {fmt(median)}, {ratio_band(median)})"
    return f"{measured[0].upper() + measured[1:]} show {verdict}"


def reference_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    ref, loss, scenario = s.reference, s.loss, s.scenario
    if ref.reference_loss is None:
        return None
    if ref.val_crossing_step is not None:
        return Finding(FindingId.REFERENCE_REACHED, "info", "Reached the reference validation loss",
                       f"validation loss first reached {fmt(ref.reference_loss)} ({ref.reference_source}) at "
                       f"step {fmt(ref.val_crossing_step, 5)} ({fmt(ref.val_crossing_tokens)} tokens); the "
                       f"smoothed train loss at step {fmt(ref.train_crossing_step, 5)} "
                       f"({fmt(ref.train_crossing_tokens)} tokens).")
    best = loss.min_val_loss
    if best is None:
        return Finding(FindingId.REFERENCE_NOT_REACHED, "info", "Reference validation loss not reached",
                       f"no validation loss was logged to compare with the reference {fmt(ref.reference_loss)}.",
                       "Set --eval_every to log validation loss.")
    still = loss.min_val_step == loss.last_val_step
    if scenario == Scenario.MEMORISING:
        advice, note = [], ("More passes over the same data will not get there: the run is memorising it (see the "
                            "overfitting finding); more data or a larger model might.")
    elif still and scenario in (Scenario.LEARNING, Scenario.VAL_FALLS_TRAIN_HIGH):
        advice, note = [raise_("max_steps", "Train for more tokens: validation loss is still falling.")], ""
    else:
        advice, note = [], ("Validation loss is no longer falling: more tokens of this run alone are unlikely to get "
                            "there.")
    return Finding(FindingId.REFERENCE_NOT_REACHED, "info", "Reference validation loss not reached",
                   f"best validation loss {fmt(best)} vs reference {fmt(ref.reference_loss)} "
                   f"({ref.reference_source}); still {fmt(best - ref.reference_loss, 3)} above.", note,
                   advice=advice)


def loss_spike_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    spikes = s.unexplained([x for x in s.spikes.spike_steps if x > found.claimed_until])  # see the warmup finding
    detector = s.spikes.detector_steps
    note = ""
    if detector is not None:
        agree = sorted(set(detector) & set(s.spikes.spike_steps))
        note = (f" The spike_detector callback (llm.c's mean/std rule over its trailing window, which a falling "
                f"trend and the spikes themselves inflate) flagged {len(detector)} step(s)"
                + (f" ({listed([str(x) for x in detector])})" if detector else "")
                + f"; {len(agree)} of them are spikes by this rule.")
    if not spikes or found.has(FindingId.LR_TOO_HIGH):
        if detector and not spikes:
            return Finding(FindingId.LOSS_SPIKES, "info", "No loss spikes by the report's rule",
                           f"no step's loss stands out from its own batch-to-batch noise ({s.spikes.source})."
                           + note)
        return None
    return Finding(FindingId.LOSS_SPIKES, "warning", "Loss spikes",
                   f"{len(spikes)} spike(s) at steps {_spike_list(spikes, s.spikes.detail)} "
                   f"({s.spikes.source})." + note,
                   "A single spike the run recovers from is harmless; repeated ones point to the learning rate.")


def _value(value) -> str:
    return fmt(value) if isinstance(value, float) else repr(value)


def changes_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """Settings changed by hand on resume that survived: stated with their step, so no dynamics they caused is read
    as the run's own (spikes within CHANGE_SETTLE_STEPS steps after them are not counted as instability). Changes
    recorded at steps a later rollback abandoned are named apart and credited with nothing."""
    resumes = [c for c in s.changes if c.get("changes") or c.get("schedule")]
    dropped = [c for c in s.abandoned.changes if c.get("changes") or c.get("schedule")]
    if not resumes and not dropped:
        return None

    def describe(change):
        settings = ", ".join(f"{key} {_value(old)} -> {_value(new)}" for key, (old, new) in change["changes"].items())
        lr = (f"; learning rate {fmt(change['lr_before'])} -> {fmt(change['lr_after'])}"
              if change.get("lr_before") is not None and change.get("lr_before") != change.get("lr_after") else "")
        schedule = f"; schedule {change['schedule']}" if change.get("schedule") else ""
        why = f" ({change['reason']})" if change.get("reason") else ""
        return f"at step {change['step']}{why}: {settings or 'no setting'}{lr}{schedule}"

    text = ("; ".join(describe(c) for c in resumes) + f". What follows each of these steps reflects the change, not "
            f"the run's own dynamics: loss or gradient spikes within {CHANGE_SETTLE_STEPS} steps after it are not "
            "counted as instability.") if resumes else ""
    if dropped:
        text += ((" " if text else "") + "Left out, because the steps they were recorded at were later abandoned: "
                 + "; ".join(f"{describe(c)} ({c['abandoned_by']})" for c in dropped) + ". No spike is excused by "
                 "them; a rollback keeps the settings in force when it happens (the loop re-applies them to the "
                 "restored checkpoint).")
    return Finding(FindingId.SETTINGS_CHANGED, "info", "Settings changed by hand during the run", text)


def spike_guard_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """What the spike guard did: skipped updates, rollbacks (with the data skipped), a stop. Records of steps that a
    later rollback abandoned are counted apart, not as the run's."""
    records, dropped = s.interventions, s.abandoned.interventions
    unarmed = s.guard is not None and s.guard.armed_at is None
    never_armed = (f"the spike guard never armed: the run ended at step {s.guard.last_step}, before its band had "
                   "enough accepted steps (8), so only a divergence far above the first loss was watched for"
                   if unarmed else "")
    if not records and not dropped:
        return Finding(FindingId.SPIKE_GUARD, "info", "Spike guard never armed", never_armed + ".") if unarmed \
            else None
    skips = [r["step"] for r in records if r["action"] == "skip"]
    rollbacks = [r for r in records if r["action"] == "rollback"]
    stops = [r for r in records if r["action"] == "stop"]
    parts = [f"{len(skips)} update(s) skipped (steps {listed([str(x) for x in skips], limit=12)})"] if skips else []
    parts += [f"at step {r['step']} rolled back to step {r['to_step']} ({r['reason']}), data resumed at step "
              f"{r['data_resumes_at_step']}" + (f" (the updates it had skipped on the abandoned steps: "
                                                 f"{listed([str(x) for x in r['skipped_steps']])})"
                                                 if r.get("skipped_steps") else "") for r in rollbacks]
    parts += [f"stopped at step {r['step']}: {r['reason']}" for r in stops]
    if dropped:
        parts.append(f"{len(dropped)} record(s) of steps a later rollback abandoned are not counted as the run's "
                     f"({listed([str(r['action']) + ' at step ' + str(r['step']) for r in dropped], limit=6)})")
    if never_armed:
        parts.append(never_armed)
    severity = "problem" if stops else "warning" if rollbacks else "info"
    title = ("Spike guard stopped the run" if stops else "Spike guard rolled back past a spike" if rollbacks
             else "Spike guard skipped spiking updates")
    advice = []
    if stops:
        advice.append(lower("max_lr", f"The cause survived fresh data and an earlier state: lower --max_lr (now "
                                      f"{s.setting('max_lr')})."))
        if warmup_may_be_blamed(s):
            advice.append(raise_("warmup_steps", "Or lengthen --warmup_steps: the trouble began before the peak "
                                                 "learning rate had been held stably."))
    note = ("Look at the data around the first spiking step; repeated rollbacks point to the learning rate, not the "
            "data." if rollbacks and not stops else "")
    return Finding(FindingId.SPIKE_GUARD, severity, title, "; ".join(parts) + " (interventions.jsonl holds every "
                   "record; a rollback's abandoned steps are not in the curves).", note, advice=advice,
                   data={"stopped_at": stops[-1]["step"] if stops else None})


def branch_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    branch = s.branch
    if not branch:
        return None
    cooldown = branch.get("cooldown")
    what = (f"a cool-down of {cooldown['steps']} steps from step {cooldown['step']}" if cooldown else "a branch")
    shared = shared_parent_steps(branch)
    curves = f"its curves up to step {branch['step']} are the parent's" if shared >= branch["step"] else (
        f"its curves up to step {shared} are the parent's; steps {shared + 1}-{branch['step']} were on a line of the "
        "parent that a rollback or resume abandoned, whose curves the parent no longer holds (a gap, not another "
        "history's values)")
    return Finding(FindingId.BRANCHED_FROM, "info", "A branch of another run",
                   f"this run is {what} of {branch['parent_run']} (checkpoint {branch['checkpoint']}); {curves}.")


def batch_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """The run's tokens per step against the gradient noise scale it measured (McCandlish et al. 2018)."""
    noise = s.noise_scale
    if not noise or found.has(FindingId.LR_TOO_HIGH, FindingId.LATE_DIVERGENCE):
        return None  # (an unstable run's gradient noise scale measures the instability, not what the batch buys)
    if noise.undefined:
        return Finding(FindingId.NOISE_SCALE_UNDEFINED, "info",
                       "The gradient noise scale was measured but never defined",
                       f"at all {noise.measurements} measurement(s) the smoothed estimate of |G|^2 was at or below "
                       "0 (the gradient's noise drowned its signal at this batch, or a spike), so B_simple = "
                       "tr(Sigma) / |G|^2 has no value and the batch cannot be compared with it.",
                       "A longer run (|G|^2 is better resolved as training settles) or a larger batch gives it a "
                       "value.")
    ratio, batch, scale = noise.batch_over_noise, noise.tokens_per_step, noise.median_later
    evidence = (f"{count(batch)} tokens per step against a gradient noise scale B_simple of {count(scale)} tokens (the "
                f"median over the later half of training; it went from {count(noise.first)} to {count(noise.last)}):"
                f" the batch is {fmt(ratio, 3)}x B_simple. B_simple = tr(Sigma) / |G|^2 estimates the critical "
                "batch, where doubling the batch stops halving the steps (McCandlish et al. 2018; exact for a "
                "well-conditioned quadratic loss and plain SGD, a guide under Adam); it grows as the loss falls.")
    if ratio > NOISE_BATCH_FAR:
        return Finding(FindingId.BATCH_ABOVE_NOISE_SCALE, "warning", "The batch is far above the gradient noise scale",
                       evidence + f" Above about {fmt(NOISE_BATCH_FAR)}x, tokens go to averaging gradients that "
                       "already agree: each step costs more tokens than it needs.",
                       advice=[lower("total_batch_tokens", f"A smaller --total_batch_tokens (toward {count(scale)}) "
                                                           "should reach the same loss with fewer tokens (in more "
                                                           "steps).")])
    if ratio < 1 / NOISE_BATCH_FAR:
        return Finding(FindingId.BATCH_BELOW_NOISE_SCALE, "info", "The batch is far below the gradient noise scale",
                       evidence + f" Below about 1/{fmt(NOISE_BATCH_FAR)}, steps are dominated by gradient noise: "
                       "a larger batch would spend tokens as well and use each step better (fewer steps).",
                       advice=[raise_("total_batch_tokens", f"A larger --total_batch_tokens (toward {count(scale)}) "
                                                            "if steps, not tokens, are the limit.")])
    return Finding(FindingId.BATCH_NEAR_NOISE_SCALE, "info", "The batch is near the gradient noise scale",
                   evidence + f" Within {fmt(NOISE_BATCH_FAR)}x either way: near the critical batch.")


def healthy_finding(s: RunSummary, found: Diagnosis) -> Finding | None:
    """Only when nothing is wrong: no warning or problem."""
    if any(f.severity in SEVERE for f in found.findings):
        return None
    loss, ratio = s.loss, s.learning_ratio
    text = (f"train loss fell from {fmt(loss.initial_train_loss)} to {fmt(loss.final_train_loss_smoothed)}"
            + (f", validation to {fmt(loss.final_val_loss)}" if loss.final_val_loss is not None else "")
            + (f"; median update/weight ratio {fmt(ratio.overall_median)}" if ratio else "")
            + f"; {len(s.spikes.spike_steps)} loss spikes; no warning.")
    return Finding(FindingId.HEALTHY, "info", "Healthy run", text)


def resolve_conflicts(findings: list[Finding]) -> None:
    """No report turns one setting both ways. Where two findings would, the advice of the higher-priority finding
    (``RANKS``: instability, then memorisation, then not learning, then speed and efficiency; a tie goes to the
    safer direction, ``SAFE_DIRECTION``, else to lowering) stays, and the other finding says why its advice on that
    setting was left out."""
    by_setting: dict[str, dict[str, list[Finding]]] = {}
    for f in findings:
        for a in f.advice:
            if a.setting:
                by_setting.setdefault(a.setting, {}).setdefault(a.direction, []).append(f)
    for setting, directions in by_setting.items():
        if len(directions) < 2:
            continue
        best = {d: min(rank(f) for f in fs) for d, fs in directions.items()}
        safe = SAFE_DIRECTION.get(setting, "lower")
        keep = min(directions, key=lambda d: (best[d], d != safe))
        winner = min(directions[keep], key=rank)
        for direction, losers in directions.items():
            if direction == keep:
                continue
            for f in losers:
                if f is winner:
                    continue
                f.advice = [a for a in f.advice if a.setting != setting]
                f.advice.append(Advice(f"(Its advice on --{setting} is left out: the {winner.id} finding, about "
                                       f"{PRIORITY_CLASSES[rank(winner)]}, advises the opposite and takes priority"
                                       + (f" over {PRIORITY_CLASSES[rank(f)]}." if rank(f) != rank(winner) else ".")
                                       + ")"))


def instability_first(findings: list[Finding]) -> None:
    """A run with an instability problem gets no advice to go faster or further (more steps, a bigger batch, a
    higher clip threshold): it must be made stable first."""
    unstable = next((f for f in findings if rank(f) == 0 and f.severity == "problem"), None)
    if unstable is None:
        return
    for f in findings:
        if rank(f) == PRIORITY_CLASSES.index("speed and efficiency") and any(a.setting for a in f.advice):
            f.advice = [a for a in f.advice if not a.setting]
            f.advice.append(Advice(f"(Advice on speed is left for later: make the run stable first, see the "
                                   f"{unstable.id} finding.)"))

def verdict(summary: RunSummary, findings: list[Finding]) -> tuple[VerdictId, str]:
    """One line from the findings, in their priority order, never from anything else: (id, words)."""
    by_id = {f.id: f for f in findings}
    if FindingId.TOO_SHORT in by_id:
        return _short_verdict(summary, findings, by_id)
    if late := by_id.get(FindingId.LATE_DIVERGENCE):
        return VerdictId.DIVERGED, (f"diverged at step {late.data['diverged_at']}, after holding its peak learning "
                                    f"rate stably for {late.data['held_steps']} steps")
    high = by_id.get(FindingId.LR_TOO_HIGH)
    if high and high.data.get("diverged_at") is not None:
        return VerdictId.DIVERGED, f"diverged at step {high.data['diverged_at']}: learning rate too high"
    guard = by_id.get(FindingId.SPIKE_GUARD)
    if guard and guard.data.get("stopped_at") is not None:
        return VerdictId.STOPPED, f"unstable: the spike guard stopped the run at step {guard.data['stopped_at']}"
    if high:
        return VerdictId.UNSTABLE, f"unstable: {high.data['spikes']} loss spikes, learning rate too high"
    if warmup := by_id.get(FindingId.WARMUP_TOO_SHORT):
        return VerdictId.UNSTABLE_EARLY, ("unstable in the early phase (warmup too short), stable after it: loss jump "
                                          f"at step {warmup.data['first_step']}")
    if not_learning := _not_learning_verdict(by_id):
        return VerdictId.NOT_LEARNING, not_learning
    if overfitting := by_id.get(FindingId.OVERFITTING):
        trend = "rising" if overfitting.data["val_trend"] == "rising" else "flat"
        return VerdictId.MEMORISING, (f"memorising its data: validation loss {trend} since step "
                                      f"{overfitting.data['best_step']} on data read more than once")
    severe = [f for f in findings if f.severity in SEVERE]
    if severe:
        return VerdictId.WARNINGS, "learning, with warnings: " + "; ".join(f.title.lower() for f in severe)
    learning = by_id.get(FindingId.LEARNING)
    if learning and learning.advice:
        return VerdictId.HEALTHY, "healthy: learning and generalising, validation loss still falling"
    if FindingId.PLATEAU in by_id:
        return VerdictId.HEALTHY, "healthy, but on a plateau: train and validation loss stopped falling"
    return VerdictId.HEALTHY, "healthy"


def _short_verdict(summary: RunSummary, findings: list[Finding], by_id: dict) -> tuple[VerdictId, str]:
    """The verdict of a run too short to judge: a divergence (non-finite loss) still speaks; else its warnings."""
    steps = summary.loss.steps
    if FindingId.LR_TOO_HIGH in by_id:
        return VerdictId.DIVERGED, (f"diverged at step {by_id[FindingId.LR_TOO_HIGH].data['diverged_at']} (non-finite "
                                    f"loss), in a run too short ({steps} steps) to judge anything else")
    warned = [f.title.lower() for f in findings if f.severity in SEVERE]
    if warned:
        return VerdictId.TOO_SHORT, (f"too short to judge ({steps} steps; at least {MIN_STEPS_TO_JUDGE}), with "
                                     "warnings: " + "; ".join(warned))
    return VerdictId.TOO_SHORT, f"healthy so far, but too short to judge ({steps} steps; at least {MIN_STEPS_TO_JUDGE})"


def _not_learning_verdict(by_id: dict) -> str | None:
    """The words of a not-learning verdict, from the first not-learning finding in priority order (None: none)."""
    words = {FindingId.LR_TOO_LOW: "not learning: the learning rate is too low",
             FindingId.LOSS_FLAT: "not learning: the loss barely moves (the cause cannot be told without update "
                                  "ratios)"}
    if FindingId.NOT_LEARNING in by_id:
        cause = by_id[FindingId.NOT_LEARNING].data.get("cause")
        words[FindingId.NOT_LEARNING] = ("not learning: the weights do not move" if cause == "weights do not move"
                                         else "not learning, although the weights move: not the learning rate")
    return next((text for key, text in words.items() if key in by_id), None)


# ----------------------------------------------------------------------------------------------- the rules, in order
# Every rule, in the order its findings appear in the report. A rule reads the summary's typed sections and, where it
# must, the findings before it (``Diagnosis``); a new finding is one more function here (before ``healthy_finding``,
# which must see every warning). ``diagnose`` stops after ``too_short_finding`` for a run too short to judge.
RULES: list[Rule] = [
    init_finding, branch_finding, changes_finding, spike_guard_finding, too_short_finding,
    warmup_finding, late_divergence_finding, instability_finding,
    not_learning_finding, weight_decay_finding, regime_finding, depth_finding, layer_findings,
    update_ratio_finding, lr_limited_finding, clipping_finding, grad_spike_finding, gap_finding, reference_finding,
    batch_finding, grad_norm_findings, loss_spike_finding,
    healthy_finding,
]


def diagnose(summary: RunSummary) -> list[Finding]:
    """Every rule of ``RULES`` in order, each seeing the findings before it; then the advice is made one voice."""
    found = Diagnosis(summary)
    for rule in RULES:
        found.add(rule(summary, found))
        if found.has(FindingId.TOO_SHORT):
            break  # only a non-finite loss is judged (too_short_finding), and no advice is held back for stability
    else:
        instability_first(found.findings)
    resolve_conflicts(found.findings)
    return found.findings


# ----------------------------------------------------------------------------------------------- output
def build_report(run: Run, with_forecast: bool = False) -> dict:
    """The report as a dict (report.json); ``with_forecast`` adds the loss forecast (``forecast.py``: a fit with
    bootstrap refits, a few seconds)."""
    summary = summarize(run)
    report = summary.to_dict()
    if with_forecast:
        from .forecast import forecast

        predicted = forecast(run)
        report["forecast"] = predicted.to_dict() if predicted is not None else None
    findings = diagnose(summary)
    verdict_id, words = verdict(summary, findings)
    return {"verdict": words, "verdict_id": str(verdict_id), **report, "findings": [f.as_dict() for f in findings],
            "advice_priority": ADVICE_PRIORITY}
