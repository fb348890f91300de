"""From a run's numbers to findings and recommendations (report.json and report.md).

Every finding cites the numbers it rests on, and every comparison in its words comes from ``thresholds.py``. The
rules name the setting that is off, resting on measured signals: update/weight ratios (the step the optimizer
actually took), their split into gradient-driven and weight-decay parts, the weights' RMS, the gradient norm
against the clip threshold, the loss and validation curves. Under AdamW a small raw gradient norm, or a small
std(grad)/std(weight), is not by itself evidence of vanishing gradients: Adam divides each step by the
gradient's running RMS. "Healthy" is said only when no finding is a warning or a problem.
"""

import math
from dataclasses import asdict, dataclass

from .formatting import count, fmt, listed
from .rendering import render_markdown, write_report  # noqa: F401  (the report's outputs, re-exported)
from .runs import Run
from .summaries import RunSummary, summarize
from .thresholds import (
    CHANGE_SETTLE_STEPS,
    CLIP_MIN_STEPS,
    CLIPPING_DOMINANT,
    DECAY_VS_GRADIENT,
    DEPTH_FLAT,
    DEPTH_TREND,
    DIVERGENCE_RISE,
    FAR_ABOVE,
    FAR_BELOW,
    INIT_TOLERANCE,
    LATE_DIVERGENCE_STABLE_STEPS,
    LOSS_FLAT,
    LOSS_FLAT_MIN_STEPS,
    LR_RAISE_RANGE,
    MIN_BLOCKS_FOR_DEPTH,
    MIN_EVALUATIONS,
    MIN_STEPS_TO_JUDGE,
    NOISE_BATCH_FAR,
    OVERFIT_TRAIN_FALL,
    OVERFIT_VAL_RISE,
    OVERFIT_VAL_RISE_RELATIVE,
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
class Finding:
    id: str
    severity: str  # info | warning | problem
    title: str
    evidence: str
    recommendation: str = ""


# ----------------------------------------------------------------------------------------------- rules
def init_finding(s: RunSummary) -> Finding:
    """The initial loss against what a random model of this shape starts at: ln(vocab) plus half the variance of
    its random logits, n_embd x init_std^2 / 2 (0.154 nats for GPT-2 124M; thresholds.py says why). Too large: the
    start is above that expectation, or the expectation itself is above what GPT-2's 0.02 gives at this width."""
    loss = s.loss
    diff, expected, standard = loss["initial_minus_expected"], loss["expected_initial_loss"], \
        loss["standard_initial_loss"]
    std = s.setting("model", "init_std", STANDARD_INIT_STD)
    evidence = (f"initial train loss {fmt(loss['initial_train_loss'])} vs {fmt(expected)} expected at "
                f"initialisation (ln(vocab) = {fmt(loss['uniform_loss'])} plus n_embd x init_std^2 / 2 = "
                f"{fmt(expected - loss['uniform_loss'], 3)} for the random logits; difference {fmt(diff, 3)}, "
                f"tolerance {INIT_TOLERANCE})")
    too_large = diff is not None and diff > INIT_TOLERANCE
    init_itself = diff is not None and diff >= -INIT_TOLERANCE and expected - standard > INIT_TOLERANCE
    if too_large or init_itself:
        why = (f": the initial logits are larger than init_std {std} should give (confidently wrong)" if too_large
               else f": init_std {std} itself makes the random logits large enough to start "
               f"{fmt(expected - standard, 3)} nats above what GPT-2's {STANDARD_INIT_STD} gives at this width "
               f"({fmt(standard)})")
        return Finding("init_overconfident", "warning", "Initial loss above the expected start: init too large",
                       evidence + why + ".",
                       f"Lower --init_std (now {std}; GPT-2 uses {STANDARD_INIT_STD}, with residual projections "
                       "scaled by 1/sqrt(2*n_layer)).")
    if diff is None or abs(diff) <= INIT_TOLERANCE:
        return Finding("init_uniform", "info", "Initial loss as expected for a random model", evidence +
                       ": the randomly initialised model spreads probability as evenly as its init allows.")
    return Finding("init_below_uniform", "info", "Initial loss below the expected start", evidence +
                   ": the run started from trained weights (--init_from) or the data is very repetitive.")


def too_short_finding(s: RunSummary) -> Finding | None:
    steps = s.loss["steps"]
    if steps >= MIN_STEPS_TO_JUDGE:
        return None
    return Finding("too_short", "info", "Too short to judge",
                   f"the run has {steps} logged step(s); at least {MIN_STEPS_TO_JUDGE} are needed before trends, "
                   "warmup and clipping statistics say anything, so no verdict is given.",
                   "Train longer (or analyse again later: the report reads the logs as they grow).")


def climbed_back(loss: dict) -> bool:
    """The smoothed train loss rose DIVERGENCE_RISE above its minimum by the end, and validation agrees (a noisy
    stretch of training data can lift the smoothed train loss alone)."""
    rise = (loss["final_train_loss_smoothed"] or 0) - (loss["min_train_loss_smoothed"] or 0)
    val_agrees = "final_val_loss" not in loss or loss["final_val_loss"] - loss["min_val_loss"] > VAL_AGREES_RISE
    return rise > DIVERGENCE_RISE and val_agrees


def warmup_finding(s: RunSummary) -> Finding | None:
    """The loss jumped only while Adam's steps were large relative to the weights (the early phase, in which the
    gradients of successive steps agree, so Adam's normalised step is close to the full learning rate), and training
    was stable afterwards at a similar learning rate: the warmup, not the peak learning rate, is too short."""
    early, loss = s.early_phase, s.loss
    if not early or not early["overshoot"] or early["settle_step"] is None or not early["early_jumps"]:
        return None
    settle = early["settle_step"]
    later_spikes = [x for x in s.spikes["spike_steps"] if x > settle]
    if early["late_jumps"] or len(later_spikes) >= SPIKES_FOR_INSTABILITY or climbed_back(loss):
        return None  # unstable after the early phase too: the peak learning rate (instability rule) is the cause
    if not early.get("peak_lr") or (early.get("max_lr_after_settle") or 0) < WARMUP_LATER_LR * early["peak_lr"]:
        return None  # the schedule had decayed by then: a sustainable peak rate is not shown
    jumps = early["early_jumps"]
    jumped = listed([f"{x} (+{fmt(early['jump_excess'][x], 3)} nats, gradient norm "
                     f"{fmt(early['jump_grad_norm'][x], 3)})" for x in jumps])
    lr_text = (f", with the learning rate still up to {fmt(early['max_lr_after_settle'])} "
               f"({fmt(100 * early['max_lr_after_settle'] / early['peak_lr'], 3)}% of its peak; at least "
               f"{fmt(100 * WARMUP_LATER_LR, 3)}% is needed to clear the peak rate)")
    warmup = s.setting("train", "warmup_steps", 0) or 0
    return Finding("warmup_too_short", "warning", "Warmup too short: the loss jumped in the early phase",
                   f"the median update/weight ratio peaked at {fmt(early['peak_ratio'])} at step "
                   f"{early['peak_ratio_step']} ({ratio_band(early['peak_ratio'])}) and stayed above "
                   f"{fmt(RATIO_UNSTABLE)} (weights moving several percent per step) until step {settle}; in that "
                   f"phase the loss jumped above the steps around it at step(s) {jumped} (jump limit "
                   f"{fmt(early['jump_threshold'], 3)} nats); after step {settle}{lr_text}, it did not jump again. "
                   "Early in training the gradients of successive steps agree, so Adam's normalised step is close to "
                   "the full learning rate: the instability belongs to that phase, not to the peak learning rate.",
                   f"Lengthen --warmup_steps (now {warmup}) to at least {max(2 * warmup, settle)} steps, so the learning "
                   f"rate is still low while the update ratios are above {fmt(RATIO_UNSTABLE)}; --max_lr (now "
                   f"{s.setting('train', 'max_lr')}) ran without jumps after the early phase.")


def late_divergence_finding(s: RunSummary) -> Finding | None:
    """The loss climbed back after a long stable stretch past the early phase: named as a late divergence with its
    step and size (its cause came late: never the warmup)."""
    loss = s.loss
    onset, low_step = loss.get("divergence_onset_step"), loss.get("min_train_loss_step")
    if onset is None or not climbed_back(loss):
        return None
    early_end = max(s.setting("train", "warmup_steps", 0) or 0, (s.early_phase or {}).get("settle_step") or 0)
    if low_step - early_end < LATE_DIVERGENCE_STABLE_STEPS:
        return None
    rise = loss["final_train_loss_smoothed"] - loss["min_train_loss_smoothed"]
    return Finding("late_divergence", "problem", "The loss diverged late, after a long stable stretch",
                   f"the smoothed train loss fell steadily to {fmt(loss['min_train_loss_smoothed'])} at step {low_step} "
                   f"({low_step - early_end} steps after the early phase ended at step {early_end}, at least "
                   f"{LATE_DIVERGENCE_STABLE_STEPS} count as stable), then climbed from step {onset} to "
                   f"{fmt(loss['final_train_loss_smoothed'])} (+{fmt(rise, 3)} nats; limit {DIVERGENCE_RISE}). The "
                   "warmup is long past: the cause came later (a stretch of data, or a learning rate too high for the "
                   "sharper loss surface late in training).",
                   f"Resume from the last checkpoint before step {onset} with a lower --max_lr, or turn on "
                   "--spike_guard to skip the damaging updates and roll back past them.")


def instability_finding(s: RunSummary, claimed_until: int = 0, late: bool = False) -> Finding | None:
    loss, ratio = s.loss, s.learning_ratio
    spikes = s.unexplained([x for x in s.spikes["spike_steps"] if x > claimed_until])  # see the warmup finding
    reasons = []
    if loss["nonfinite_steps"]:
        reasons.append(f"{loss['nonfinite_steps']} steps with a non-finite loss")
    rise = (loss["final_train_loss_smoothed"] or 0) - (loss["min_train_loss_smoothed"] or 0)
    # A flat loss that ends a hair above where it started is not divergence: require a rise of DIVERGENCE_RISE.
    if (loss["final_train_loss_smoothed"] or 0) > (loss["initial_train_loss"] or math.inf) + DIVERGENCE_RISE:
        reasons.append(f"the smoothed train loss ended at {fmt(loss['final_train_loss_smoothed'])}, more than "
                       f"{DIVERGENCE_RISE} nats above the initial {fmt(loss['initial_train_loss'])}: the run diverged")
    elif climbed_back(loss) and not late:  # a late climb has its own finding
        reasons.append(f"the smoothed train loss climbed back {fmt(rise, 3)} nats (limit {DIVERGENCE_RISE}) above "
                       f"its minimum {fmt(loss['min_train_loss_smoothed'])} to {fmt(loss['final_train_loss_smoothed'])}")
    if len(spikes) >= SPIKES_FOR_INSTABILITY:
        reasons.append(f"{len(spikes)} loss spikes (steps {listed([str(x) for x in spikes], limit=8)})")
    if ratio and ratio["overall_median"] > RATIO_UNSTABLE:
        reasons.append(f"median update/weight ratio {fmt(ratio['overall_median'])}, "
                       f"{ratio_band(ratio['overall_median'])}")
    if not reasons:
        return None
    warmup = s.setting("train", "warmup_steps")
    return Finding("lr_too_high", "problem", "Learning rate too high: training is unstable", "; ".join(reasons) + ".",
                   f"Lower --max_lr (now {s.setting('train', 'max_lr')}) 3-10x, or lengthen --warmup_steps (now "
                   f"{warmup}); the spike_detector callback with skip_updates=true can ride out isolated spikes.")


def learning_rate_low_finding(s: RunSummary) -> Finding | None:
    ratio, loss = s.learning_ratio, s.loss
    drop = (loss["initial_train_loss"] or 0) - (loss["final_train_loss_smoothed"] or 0)
    which = s.learning_ratio_name
    if ratio and ratio["overall_median"] < FAR_BELOW:
        factor = min(LR_RAISE_RANGE[1], max(LR_RAISE_RANGE[0], RATIO_TARGET / max(ratio["overall_median"], 1e-12)))
        return Finding("lr_too_low", "problem", "Learning rate too low: the weights barely move",
                       f"median {which} {fmt(ratio['overall_median'])} across "
                       f"{len(ratio['per_parameter_median'])} weight matrices, {ratio_band(ratio['overall_median'])} "
                       f"(the largest is {fmt(ratio['max'])}); train loss fell only {fmt(drop, 3)} nats "
                       f"({fmt(loss['initial_train_loss'])} -> {fmt(loss['final_train_loss_smoothed'])}).",
                       f"Raise --max_lr (now {s.setting('train', 'max_lr')}) about {fmt(factor, 2)}x (update ratios "
                       "scale with the learning rate under Adam).")
    if not ratio and loss["steps"] >= LOSS_FLAT_MIN_STEPS and drop < LOSS_FLAT:
        return Finding("loss_flat", "warning", "Loss barely moves",
                       f"train loss fell only {fmt(drop, 3)} nats (less than {LOSS_FLAT}) in {loss['steps']} steps; no "
                       "update ratios were logged, so whether the weights move cannot be told.",
                       "Enable the layer_ratios callback; if update ratios are far below 1e-3, raise --max_lr.")
    return None


def weight_decay_finding(s: RunSummary) -> Finding | None:
    """AdamW's decoupled decay pulls each matrix in by lr x wd per step (logged exactly); against the step the
    gradients move it (the gradient-driven update ratio) it says whether decay or learning sets the weights' size."""
    weights = s.weights
    against, change = weights.get("median_decay_vs_gradient"), weights.get("median_rms_change")
    if against is None or change is None or against < DECAY_VS_GRADIENT or change >= -WEIGHT_SHRINK:
        return None
    return Finding("weight_decay_too_high", "warning", "Weight decay dominates: the weights shrink",
                   f"AdamW's decoupled decay step (lr x weight_decay) is a median {fmt(against, 3)}x the "
                   f"gradient-driven step of each weight matrix (limit {fmt(DECAY_VS_GRADIENT)}x), and the median "
                   f"weight RMS fell {fmt(-100 * change, 3)}% over the run (limit {fmt(100 * WEIGHT_SHRINK, 3)}%): "
                   "decay, not the gradients, sets the size of the weights.",
                   f"Lower --weight_decay (now {s.setting('train', 'weight_decay')}; GPT-2 runs use 0.1, the seed "
                   "suggests trying 0.01).")


def slow_blocks(s: RunSummary) -> list[int]:
    """Blocks whose learning ratio is more than a decade below the fastest block's, when depth starves them."""
    learning = s.depth["learning"]
    if not learning.get("starved"):
        return []
    fastest = max(learning["per_block"].values())
    return [b for b, value in learning["per_block"].items() if value < fastest / SLOW_BLOCK_FACTOR]


def depth_finding(s: RunSummary) -> Finding | None:
    """Does learning fade with depth? The seed write-up blamed "vanishing gradients through 12 layers" on raw
    gradient norms; the measured test is the learning ratio of each block against its depth (and the raw gradient
    ratio, which shows whether the gradient itself fades on its way down)."""
    learning, gradient = s.depth["learning"], s.depth["gradient"]
    if learning.get("blocks", 0) < MIN_BLOCKS_FOR_DEPTH:
        return None  # with fewer blocks a depth trend cannot be told apart from two blocks that differ
    which, per_block = s.learning_ratio_name, learning["per_block"]
    first, last, decades = learning["first_block"], learning["last_block"], learning["trend_decades"]
    numbers = (f"the median {which} is {fmt(per_block[first])} in block {first} (nearest the input) and "
               f"{fmt(per_block[last])} in block {last} (nearest the output); a line fitted through all "
               f"{learning['blocks']} blocks changes by {fmt(decades, 2)} decades from the first to the last")
    if learning["starved"]:
        slow = slow_blocks(s)
        where = "nearest the input" if learning["starved"] == "first" else "nearest the output"
        fades = (gradient.get("trend_decades") is not None and abs(gradient["trend_decades"]) >= DEPTH_FLAT
                 and (gradient["trend_decades"] > 0) == (decades > 0))
        cause = (f"The raw gradient ratio std(grad)/std(w) changes by {fmt(gradient['trend_decades'], 2)} decades "
                 "the same way: the gradient fades on its way through the layers." if fades else
                 "The raw gradient ratio does not fade the same way, so the optimizer's step, not a vanishing "
                 "gradient, differs with depth.")
        return Finding("depth_starves_layers", "warning", "Learning fades with depth",
                       f"{numbers} (limit {fmt(DEPTH_TREND, 2)}): the blocks {where} learn more than ten times "
                       f"slower (block(s) {listed([str(b) for b in slow])} more than a decade below the fastest). "
                       + cause,
                       f"Try fewer layers (--n_layer, now {s.setting('model', 'n_layer')}); if the slow blocks' "
                       f"gradients are tiny, a larger --init_std (now {s.setting('model', 'init_std', 0.02)}) or a "
                       f"smaller --adam_epsilon (now {s.setting('train', 'adam_epsilon', 1e-8)}) lets Adam see "
                       "them.")
    words = ("does not depend on depth" if learning["flat"] else
             f"changes with depth by less than the {fmt(DEPTH_TREND, 2)}-decade limit")
    return Finding("learning_by_depth", "info", "Learning by depth",
                   f"{numbers}: learning {words} (flat below {fmt(DEPTH_FLAT, 2)} decades), so nothing here points to "
                   f"vanishing gradients through the {learning['blocks']} layers; changing --n_layer would change "
                   "capacity and speed, not rescue starved layers.")


def layer_findings(s: RunSummary) -> list[Finding]:
    ratio, learning = s.update_ratio, s.learning_ratio
    if not ratio:
        return []
    out = []
    frozen = ratio.get("zero", [])
    if frozen:
        out.append(Finding("matrices_frozen", "warning", "Some weight matrices never change",
                           f"{len(frozen)} weight matrices have an update/weight ratio of exactly 0: "
                           f"{listed(frozen)}. They are frozen (requires_grad=False) or receive no gradient.",
                           "Unfreeze them if that is not intended, or check that they are used in the forward pass."))
    medians = learning["per_parameter_median"]
    by_depth = tuple(f"h.{b}." for b in slow_blocks(s))  # explained by the depth finding
    slow = [n for n in learning["far_below"] if n not in frozen and not n.startswith(by_depth or ("\0",))]
    if slow and learning["overall_median"] >= FAR_BELOW:
        which = s.learning_ratio_name
        out.append(Finding("layers_not_learning", "warning", "Some layers barely learn",
                           f"{len(slow)} weight matrices have a median {which} more than a decade below 1e-3 "
                           f"(below {fmt(FAR_BELOW)}): {listed(slow, medians)}; overall median "
                           f"{fmt(learning['overall_median'])}, {ratio_band(learning['overall_median'])}.",
                           "Look at these parameters: rows that never receive gradient (e.g. position embeddings "
                           "beyond the trained context), or a depth/init scaling that starves them (--init_std, "
                           "--n_layer)."))
    fast = learning["far_above"]
    if fast and learning["overall_median"] <= RATIO_UNSTABLE:
        which = s.learning_ratio_name
        out.append(Finding("layers_too_fast", "warning", "Some layers update very fast",
                           f"{len(fast)} weight matrices have a median {which} more than a decade above "
                           f"1e-3 (above {fmt(FAR_ABOVE)}): {listed(fast, medians)}.",
                           f"Lower --max_lr (now {s.setting('train', 'max_lr')}) or lengthen --warmup_steps if the "
                           "loss is noisy or spiky."))
    return out


def overfitting_finding(s: RunSummary) -> Finding | None:
    gap, loss, tokens = s.gap, s.loss, s.tokens
    if gap.get("evaluations", 0) < MIN_EVALUATIONS:
        return None
    epochs = tokens.get("epochs_started")
    rises = gap["val_rise_from_min"] > max(OVERFIT_VAL_RISE, OVERFIT_VAL_RISE_RELATIVE * loss["min_val_loss"])
    if rises and gap["train_change_after_val_min"] < OVERFIT_TRAIN_FALL:
        return Finding("overfitting", "problem", "Overfitting: validation loss rises while training loss falls",
                       f"validation loss was lowest at step {loss['min_val_step']} ({fmt(loss['min_val_loss'])}) "
                       f"and rose to {fmt(loss['final_val_loss'])} while the smoothed train loss fell "
                       f"{fmt(-gap['train_change_after_val_min'], 3)} more; the train/val gap is now "
                       f"{fmt(gap['gap_final'], 3)}; the data was repeated ({epochs} epochs started).",
                       f"Use more data (fewer passes over it), stop near step {loss['min_val_step']} "
                       "(--target_val_loss), or regularise (weight decay, dropout).")
    return None


def gap_finding(s: RunSummary) -> Finding | None:
    gap, tokens, loss = s.gap, s.tokens, s.loss
    if gap.get("evaluations", 0) < MIN_EVALUATIONS:
        return None
    still_falling = loss.get("min_val_step") == loss.get("last_val_step")
    text = (f"validation minus smoothed train loss is {fmt(gap['gap_final'], 3)} at the end "
            f"({fmt(gap['gap_mid'], 3)} at mid-run): the gap {gap_trend(gap['gap_change_second_half'])}, while "
            f"validation loss is {'at its lowest so far' if still_falling else 'above its minimum'}.")
    if tokens.get("epochs_started") == 1:
        text += (" Every training token was seen once, so the gap cannot be memorisation: it reflects the "
                 "difference between the training and validation text and the lag of the smoothed curve, "
                 "not overfitting.")
    return Finding("train_val_gap", "info", "Train/validation gap", text)


def clipping_finding(s: RunSummary) -> Finding | None:
    grad, ratio = s.grad_norm, s.update_ratio
    if not grad or not grad["clip"] or grad["steps_after_warmup"] < CLIP_MIN_STEPS:
        return None
    if grad["clipped_fraction_after_warmup"] <= CLIPPING_DOMINANT:
        return None
    step = (f" The update ratios (median {fmt(ratio['overall_median'])}, {ratio_band(ratio['overall_median'])}) "
            "show the step the optimizer actually takes.") if ratio else ""
    return Finding("clip_threshold_low", "warning", "The clip threshold sits below the typical gradient norm",
                   f"{fmt(100 * grad['clipped_fraction_after_warmup'], 3)}% of the {grad['steps_after_warmup']} steps "
                   f"after warmup (limit {fmt(100 * CLIPPING_DOMINANT, 3)}%) had a norm above --grad_clip "
                   f"{fmt(grad['clip'])} (median norm {fmt(grad['median_after_warmup'])}). Under AdamW a gradient "
                   "scaled down by a constant gives nearly the same step (Adam divides by the running RMS), so this "
                   "clipping does not make the steps smaller: it normalises every gradient, and outliers are no "
                   "longer told apart from ordinary steps." + step,
                   f"Raise --grad_clip to about {fmt(grad['p90_after_warmup'], 2)} (the 90th percentile of the norm "
                   "after warmup) so that only outlier steps are clipped.")


def grad_spike_finding(s: RunSummary, claimed_until: int = 0) -> Finding | None:
    every = s.grad_spikes.get("after_warmup", []) if s.grad_spikes else []
    spikes = s.unexplained([x for x in every if x > claimed_until])  # earlier ones: the warmup finding
    if not spikes:
        return None
    values = s.grad_spikes["values"]
    return Finding("grad_norm_spikes", "warning", "Gradient-norm spikes after warmup",
                   f"{len(spikes)} step(s) after warmup had a gradient norm more than {fmt(SPIKE_Z)} standard deviations above "
                   f"the previous steps: {listed([str(x) for x in spikes], {str(k): v for k, v in values.items()})}"
                   + (" (earlier ones belong to the early phase, see the warmup_too_short finding)"
                      if len(spikes) < len(every) else "") + ".",
                   "Look at the data around these steps; if the loss also jumps there, the spike_detector callback "
                   "with skip_updates=true skips such updates.")


def grad_norm_findings(s: RunSummary, findings: list[Finding]) -> list[Finding]:
    grad, ratio, grad_ratio = s.grad_norm, s.update_ratio, s.grad_ratio
    if not grad:
        return []
    spikes = s.grad_spikes.get("after_warmup", []) if s.grad_spikes else []
    out = [Finding("grad_norm_regime", "info", "Gradient-norm regime",
                   f"initial peak {fmt(grad['initial_peak'])} at step {grad['initial_peak_step']}; after warmup the "
                   f"norm sits between {fmt(grad['p10_after_warmup'])} and {fmt(grad['p90_after_warmup'])} "
                   f"(10th-90th percentile, median {fmt(grad['median_after_warmup'])}) with {len(spikes)} spike(s); "
                   f"{fmt(100 * grad['clipped_fraction'], 3)}% of all steps were clipped at {fmt(grad['clip'])}.")]
    looks_small = grad["median_after_warmup"] < SEED_IDEAL_GRAD_NORM or (
        grad_ratio and grad_ratio["overall_median"] < RATIO_TARGET)
    if looks_small:
        raw = (f"the raw gradient norm (median {fmt(grad['median_after_warmup'])} after warmup, before clipping"
               + (f"; std(grad)/std(w) of the clipped gradient, median {fmt(grad_ratio['overall_median'])}"
                  if grad_ratio else "") + ")")
        if ratio:
            median = ratio["overall_median"]
            lr_finding = next((f.id for f in findings if f.id in ("lr_too_low", "lr_too_high")), None)
            if in_healthy_band(median) and any(f.id == "depth_starves_layers" for f in findings):
                verdict = ("most weights move at a healthy rate, but not every block (see the depth_starves_layers "
                           "finding)")
            elif in_healthy_band(median):
                verdict = "the weights do move at a healthy rate"
            else:
                verdict = "the update ratios are themselves out of range" + (
                    f" (see the {lr_finding} finding)" if lr_finding else "")
            text = (f"{raw} looks small, but under AdamW that is not evidence of vanishing gradients: Adam divides "
                    f"each step by the gradient's running RMS. The update/weight ratios (median {fmt(median)}, "
                    f"{ratio_band(median)}) show {verdict}.")
        else:
            text = (f"{raw} looks small, but under AdamW that alone is not evidence of vanishing gradients; no "
                    "update ratios were logged, so whether layers learn cannot be concluded.")
        out.append(Finding("small_raw_gradients_not_vanishing", "info", "Small raw gradients are not vanishing "
                           "gradients under AdamW", text,
                           "" if ratio else "Enable the layer_ratios callback to measure update/weight ratios."))
    return out


def reference_finding(s: RunSummary) -> Finding | None:
    ref, loss = s.reference, s.loss
    if ref["reference_loss"] is None:
        return None
    if ref.get("val_crossing_step") is not None:
        return Finding("reference_reached", "info", "Reached the reference validation loss",
                       f"validation loss first reached {fmt(ref['reference_loss'])} ({ref['reference_source']}) at "
                       f"step {fmt(ref['val_crossing_step'], 5)} ({fmt(ref['val_crossing_tokens'])} tokens); the "
                       f"smoothed train loss at step {fmt(ref['train_crossing_step'], 5)} "
                       f"({fmt(ref['train_crossing_tokens'])} tokens).")
    best = loss.get("min_val_loss")
    if best is None:
        return Finding("reference_not_reached", "info", "Reference validation loss not reached",
                       f"no validation loss was logged to compare with the reference {fmt(ref['reference_loss'])}.",
                       "Set --eval_every to log validation loss.")
    return Finding("reference_not_reached", "info", "Reference validation loss not reached",
                   f"best validation loss {fmt(best)} vs reference {fmt(ref['reference_loss'])} "
                   f"({ref['reference_source']}); still {fmt(best - ref['reference_loss'], 3)} above.",
                   "Train for more tokens if validation loss is still falling.")


def loss_spike_finding(s: RunSummary, findings: list[Finding], claimed_until: int = 0) -> Finding | None:
    spikes = s.unexplained([x for x in s.spikes["spike_steps"] if x > claimed_until])  # see the warmup finding
    if not spikes or any(f.id == "lr_too_high" for f in findings):
        return None
    return Finding("loss_spikes", "warning", "Loss spikes", f"{len(spikes)} spike(s) at steps "
                   f"{listed([str(x) for x in spikes])} ({s.spikes['source']}).")


def _value(value) -> str:
    return fmt(value) if isinstance(value, float) else repr(value)


def changes_finding(s: RunSummary) -> Finding | None:
    """Settings changed by hand on resume: stated with their step, so no dynamics they caused is read as the
    run's own (spikes within CHANGE_SETTLE_STEPS steps after them are not counted as instability)."""
    resumes = [c for c in s.changes if c.get("changes") or c.get("schedule")]
    if not resumes:
        return None
    parts = []
    for change in resumes:
        settings = ", ".join(f"{key} {_value(old)} -> {_value(new)}" for key, (old, new) in change["changes"].items())
        lr = (f"; learning rate {fmt(change['lr_before'])} -> {fmt(change['lr_after'])}"
              if change.get("lr_before") is not None and change.get("lr_before") != change.get("lr_after") else "")
        schedule = f"; schedule {change['schedule']}" if change.get("schedule") else ""
        parts.append(f"at step {change['step']}: {settings or 'no setting'}{lr}{schedule}")
    return Finding("settings_changed", "info", "Settings changed by hand during the run",
                   "; ".join(parts) + f". What follows each of these steps reflects the change, not the run's own "
                   f"dynamics: loss or gradient spikes within {CHANGE_SETTLE_STEPS} steps after it are not counted "
                   "as instability.")


def spike_guard_finding(s: RunSummary) -> Finding | None:
    """What the spike guard did: skipped updates, rollbacks (with the data skipped), a stop."""
    records = s.interventions
    if not records:
        return None
    skips = [r["step"] for r in records if r["action"] == "skip"]
    rollbacks = [r for r in records if r["action"] == "rollback"]
    stops = [r for r in records if r["action"] == "stop"]
    parts = [f"{len(skips)} update(s) skipped (steps {listed([str(x) for x in skips], limit=12)})"] if skips else []
    parts += [f"at step {r['step']} rolled back to step {r['to_step']} ({r['reason']}), data resumed at step "
              f"{r['data_resumes_at_step']}" for r in rollbacks]
    parts += [f"stopped at step {r['step']}: {r['reason']}" for r in stops]
    severity = "problem" if stops else "warning" if rollbacks else "info"
    title = ("Spike guard stopped the run" if stops else "Spike guard rolled back past a spike" if rollbacks
             else "Spike guard skipped spiking updates")
    advice = ("The cause survived fresh data and an earlier state: lower --max_lr or lengthen --warmup_steps."
              if stops else "Look at the data around the first spiking step; repeated rollbacks point to the "
              "learning rate, not the data." if rollbacks else "")
    return Finding("spike_guard", severity, title, "; ".join(parts) + " (interventions.jsonl holds every record; a "
                   "rollback's abandoned steps are not in the curves).", advice)


def branch_finding(s: RunSummary) -> Finding | None:
    branch = s.branch
    if not branch:
        return None
    cooldown = branch.get("cooldown")
    what = (f"a cool-down of {cooldown['steps']} steps from step {cooldown['step']}" if cooldown else "a branch")
    return Finding("branched_from", "info", "A branch of another run",
                   f"this run is {what} of {branch['parent_run']} (checkpoint {branch['checkpoint']}); its curves up "
                   f"to step {branch['step']} are the parent's.")


def batch_finding(s: RunSummary) -> Finding | None:
    """The run's tokens per step against the gradient noise scale it measured (McCandlish et al. 2018)."""
    noise = s.noise_scale
    if not noise:
        return None
    ratio, batch, scale = noise["batch_over_noise"], noise["tokens_per_step"], noise["median_later"]
    evidence = (f"{count(batch)} tokens per step against a gradient noise scale B_simple of {count(scale)} tokens (the "
                f"median over the later half of training; it went from {count(noise['first'])} to {count(noise['last'])}):"
                f" the batch is {fmt(ratio, 3)}x B_simple. B_simple = tr(Sigma) / |G|^2 estimates the critical "
                "batch, where doubling the batch stops halving the steps (McCandlish et al. 2018; exact for a "
                "well-conditioned quadratic loss and plain SGD, a guide under Adam); it grows as the loss falls.")
    if ratio > NOISE_BATCH_FAR:
        return Finding("batch_above_noise_scale", "warning", "The batch is far above the gradient noise scale",
                       evidence + f" Above about {fmt(NOISE_BATCH_FAR)}x, tokens go to averaging gradients that "
                       "already agree: each step costs more tokens than it needs.",
                       f"A smaller --total_batch_tokens (toward {count(scale)}) should reach the same loss with fewer "
                       "tokens (in more steps).")
    if ratio < 1 / NOISE_BATCH_FAR:
        return Finding("batch_below_noise_scale", "info", "The batch is far below the gradient noise scale",
                       evidence + f" Below about 1/{fmt(NOISE_BATCH_FAR)}, steps are dominated by gradient noise: "
                       "a larger batch would spend tokens as well and use each step better (fewer steps).",
                       f"A larger --total_batch_tokens (toward {count(scale)}) if steps, not tokens, are the limit.")
    return Finding("batch_near_noise_scale", "info", "The batch is near the gradient noise scale",
                   evidence + f" Within {fmt(NOISE_BATCH_FAR)}x either way: near the critical batch.")


def healthy_finding(s: RunSummary, findings: list[Finding]) -> Finding | None:
    """Only when nothing is wrong: no warning or problem, and every weight matrix learning."""
    if any(f.severity in SEVERE for f in findings):
        return None
    loss, ratio = s.loss, s.update_ratio
    text = (f"train loss fell from {fmt(loss['initial_train_loss'])} to {fmt(loss['final_train_loss_smoothed'])}"
            + (f", validation to {fmt(loss['final_val_loss'])}" if "final_val_loss" in loss else "")
            + (f"; median update/weight ratio {fmt(ratio['overall_median'])}, {ratio_band(ratio['overall_median'])}"
               if ratio else "") + f"; {len(s.spikes['spike_steps'])} loss spikes; no warning.")
    still_improving = "min_val_step" in loss and loss["min_val_step"] == loss.get("last_val_step") and \
        loss.get("val_evaluations", 0) >= MIN_EVALUATIONS
    return Finding("healthy", "info", "Healthy run", text,
                   "Validation loss was at its lowest at the last evaluation: more tokens should help."
                   if still_improving else "")


def diagnose(summary: RunSummary) -> list[Finding]:
    findings = [init_finding(summary)]
    findings += [f for f in (branch_finding(summary), changes_finding(summary), spike_guard_finding(summary)) if f]
    too_short = too_short_finding(summary)
    if too_short:
        return findings + [too_short]
    claimed_until = 0  # the last step of an early phase whose spikes a warmup finding has claimed
    if warmup := warmup_finding(summary):
        findings.append(warmup)
        claimed_until = summary.early_phase["settle_step"]
    late = late_divergence_finding(summary)
    if late:
        findings.append(late)
    if unstable := instability_finding(summary, claimed_until, late=late is not None):
        findings.append(unstable)
    for rule in (learning_rate_low_finding, weight_decay_finding, overfitting_finding, depth_finding):
        if finding := rule(summary):
            findings.append(finding)
    findings += layer_findings(summary)
    if not any(f.id == "lr_too_high" for f in findings):
        # In an unstable run the large norms are a symptom; raising the clip threshold would be the wrong advice.
        findings += [f for f in (clipping_finding(summary), grad_spike_finding(summary, claimed_until)) if f]
    findings += [f for f in (gap_finding(summary), reference_finding(summary), batch_finding(summary)) if f]
    findings += grad_norm_findings(summary, findings)
    if spike := loss_spike_finding(summary, findings, claimed_until):
        findings.append(spike)
    if healthy := healthy_finding(summary, findings):
        findings.append(healthy)
    return findings


# ----------------------------------------------------------------------------------------------- output
def build_report(run: Run, with_forecast: bool = False) -> dict:
    """The report as a dict (report.json); ``with_forecast`` adds the loss forecast (``forecast.py``: a fit with
    bootstrap refits, a few seconds)."""
    summary = summarize(run)
    report = asdict(summary)
    report.pop("config")
    report["depth"] = summary.depth
    if with_forecast:
        from .forecast import forecast

        predicted = forecast(run)
        report["forecast"] = predicted.to_dict() if predicted is not None else None
    return {**report, "findings": [asdict(f) for f in diagnose(summary)]}


