"""From a run's numbers to findings and recommendations (report.json and report.md).

Every finding cites the numbers it rests on. The diagnosis of "layers not learning" rests only on update-to-weight
ratios: under AdamW a small raw gradient norm, or a small std(grad)/std(weight), is not by itself evidence of
vanishing gradients, because Adam divides each step by the gradient's running RMS.
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..layout import Tags
from .runs import Run
from .summaries import (
    FAR_ABOVE,
    FAR_BELOW,
    RATIO_TARGET,
    gap_summary,
    grad_norm_summary,
    loss_summary,
    ratio_summary,
    reference_summary,
    spike_summary,
    token_summary,
)

# Thresholds, in the units of the logged numbers.
INIT_TOLERANCE = 0.15  # nats around ln(vocab) that count as "uniform at init"
DIVERGENCE_RISE = 0.5  # nats the smoothed train loss climbs back above its minimum
SPIKES_FOR_INSTABILITY = 2
RATIO_UNSTABLE = 3 * FAR_ABOVE  # a median update ratio this high moves weights several % per step
OVERFIT_VAL_RISE = 0.05  # nats validation loss rises from its minimum ...
OVERFIT_TRAIN_FALL = -0.05  # ... while the smoothed train loss keeps falling by this much
SEED_IDEAL_GRAD_NORM = 0.3  # the seed write-up's "ideal range 0.3-0.7" lower end
CLIPPING_DOMINANT = 0.5
MIN_STEPS_TO_JUDGE = 20  # fewer optimizer steps than this: trends, warmup and clipping statistics mean nothing yet


@dataclass
class Finding:
    id: str
    severity: str  # info | warning | problem
    title: str
    evidence: str
    recommendation: str = ""


def fmt(value, digits=4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and (abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3)):
        return f"{value:.2e}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@dataclass
class RunSummary:
    """What the rules read: one section per signal (the dicts of ``summaries.py``; empty when not logged)."""

    run: str
    loss: dict
    reference: dict
    tokens: dict
    gap: dict
    grad_norm: dict
    update_ratio: dict
    grad_ratio: dict
    spikes: dict


def summarize(run: Run) -> RunSummary:
    return RunSummary(run=run.name, loss=loss_summary(run), reference=reference_summary(run),
                      tokens=token_summary(run), gap=gap_summary(run), grad_norm=grad_norm_summary(run),
                      update_ratio=ratio_summary(run, Tags.UPDATE_RATIO), grad_ratio=ratio_summary(run, Tags.GRAD_RATIO),
                      spikes=spike_summary(run))


# ----------------------------------------------------------------------------------------------- rules
def init_finding(s: RunSummary) -> Finding:
    loss = s.loss
    diff = loss["initial_minus_uniform"]
    evidence = (f"initial train loss {fmt(loss['initial_train_loss'])} vs ln(vocab) = {fmt(loss['uniform_loss'])} "
                f"(difference {fmt(diff, 3)})")
    if diff is None or abs(diff) <= INIT_TOLERANCE:
        return Finding("init_uniform", "info", "Initial loss matches uniform prediction", evidence +
                       ": the randomly initialised model spreads probability evenly, as a well-scaled init should.")
    if diff > 0:
        return Finding("init_overconfident", "warning", "Initial loss above uniform prediction", evidence +
                       ": the initial logits are too large (confidently wrong).",
                       "Check the init std (0.02, residual projections scaled by 1/sqrt(2*n_layer)).")
    return Finding("init_below_uniform", "info", "Initial loss below uniform prediction", evidence +
                   ": the run started from trained weights (--init_from) or the data is very repetitive.")


def instability_finding(s: RunSummary) -> Finding | None:
    loss, spikes, ratio = s.loss, s.spikes["spike_steps"], s.update_ratio
    reasons = []
    if loss["nonfinite_steps"]:
        reasons.append(f"{loss['nonfinite_steps']} steps with a non-finite loss")
    rise = (loss["final_train_loss_smoothed"] or 0) - (loss["min_train_loss_smoothed"] or 0)
    # A noisy stretch of training data can lift the smoothed train loss; divergence needs validation to agree.
    val_agrees = "final_val_loss" not in loss or loss["final_val_loss"] - loss["min_val_loss"] > DIVERGENCE_RISE / 5
    if (loss["final_train_loss_smoothed"] or 0) > (loss["initial_train_loss"] or math.inf):
        reasons.append(f"the smoothed train loss ended at {fmt(loss['final_train_loss_smoothed'])}, above the initial "
                       f"{fmt(loss['initial_train_loss'])} (worse than uniform guessing): the run diverged")
    elif rise > DIVERGENCE_RISE and val_agrees:
        reasons.append(f"the smoothed train loss climbed back {fmt(rise, 3)} nats above its minimum "
                       f"{fmt(loss['min_train_loss_smoothed'])} to {fmt(loss['final_train_loss_smoothed'])}")
    if len(spikes) >= SPIKES_FOR_INSTABILITY:
        reasons.append(f"{len(spikes)} loss spikes (steps {', '.join(map(str, spikes[:8]))}"
                       f"{', ...' if len(spikes) > 8 else ''})")
    if ratio and ratio["overall_median"] > RATIO_UNSTABLE:
        reasons.append(f"median update/weight ratio {fmt(ratio['overall_median'])}, "
                       f"{fmt(ratio['overall_median'] / RATIO_TARGET, 2)}x the ~1e-3 target")
    if not reasons:
        return None
    return Finding("lr_too_high", "problem", "Learning rate too high: training is unstable", "; ".join(reasons) + ".",
                   "Lower --max_lr (3-10x), lengthen --warmup_steps, keep --grad_clip 1.0; the spike_detector "
                   "callback with skip_updates=true can ride out isolated spikes.")


def learning_rate_low_finding(s: RunSummary) -> Finding | None:
    ratio, loss = s.update_ratio, s.loss
    drop = (loss["initial_train_loss"] or 0) - (loss["final_train_loss_smoothed"] or 0)
    if ratio and ratio["overall_median"] < FAR_BELOW:
        factor = min(100.0, max(3.0, RATIO_TARGET / ratio["overall_median"]))
        return Finding("lr_too_low", "problem", "Learning rate too low: the weights barely move",
                       f"median update/weight ratio {fmt(ratio['overall_median'])} across "
                       f"{len(ratio['per_parameter_median'])} weight matrices (target ~1e-3, all below "
                       f"{fmt(ratio['max'])}); train loss fell only {fmt(drop, 3)} nats "
                       f"({fmt(loss['initial_train_loss'])} -> {fmt(loss['final_train_loss_smoothed'])}).",
                       f"Raise --max_lr about {fmt(factor, 2)}x (update ratios scale with the learning rate "
                       "under Adam).")
    if not ratio and loss["steps"] >= 50 and drop < 0.5:
        return Finding("loss_flat", "warning", "Loss barely moves",
                       f"train loss fell only {fmt(drop, 3)} nats in {loss['steps']} steps; no update ratios were "
                       "logged, so whether the weights move cannot be told.",
                       "Enable the layer_ratios callback; if update ratios are far below 1e-3, raise --max_lr.")
    return None


def layer_findings(s: RunSummary) -> list[Finding]:
    ratio = s.update_ratio
    if not ratio:
        return []
    out = []
    medians = ratio["per_parameter_median"]
    if ratio["far_below"] and ratio["overall_median"] >= FAR_BELOW:
        listed = ", ".join(f"{n} ({fmt(medians[n])})" for n in ratio["far_below"][:10])
        out.append(Finding("layers_not_learning", "warning", "Some layers barely learn",
                           f"{len(ratio['far_below'])} weight matrices have a median update/weight ratio below "
                           f"{fmt(FAR_BELOW)}: {listed} (overall median {fmt(ratio['overall_median'])}).",
                           "Look at these parameters: weight decay or a tiny learning rate for them, or rows that "
                           "never receive gradient (e.g. position embeddings beyond the trained context)."))
    if ratio["far_above"] and ratio["overall_median"] <= RATIO_UNSTABLE:
        listed = ", ".join(f"{n} ({fmt(medians[n])})" for n in ratio["far_above"][:10])
        out.append(Finding("layers_too_fast", "warning", "Some layers update very fast",
                           f"{len(ratio['far_above'])} weight matrices have a median update/weight ratio above "
                           f"{fmt(FAR_ABOVE)}: {listed}.",
                           "If the loss is noisy or spiky, lower --max_lr or lengthen --warmup_steps."))
    return out


def overfitting_finding(s: RunSummary) -> Finding | None:
    gap, loss, tokens = s.gap, s.loss, s.tokens
    if gap.get("evaluations", 0) < 2:
        return None
    epochs = tokens.get("epochs_started")
    rises = gap["val_rise_from_min"] > max(OVERFIT_VAL_RISE, 0.02 * loss["min_val_loss"])
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
    gap, tokens = s.gap, s.tokens
    if gap.get("evaluations", 0) < 2:
        return None
    one_pass = tokens.get("epochs_started") == 1
    trend = "widens" if gap["gap_change_second_half"] > 0.1 else "stays stable"
    text = (f"validation minus smoothed train loss is {fmt(gap['gap_final'], 3)} at the end "
            f"({fmt(gap['gap_mid'], 3)} at mid-run): the gap {trend}, while validation loss is still "
            f"{'falling' if gap['val_rise_from_min'] <= OVERFIT_VAL_RISE else 'above its minimum'}.")
    if one_pass:
        text += (" Every training token was seen once, so the gap cannot be memorisation: it reflects the "
                 "difference between the training and validation text and the lag of the smoothed curve, "
                 "not overfitting.")
    return Finding("train_val_gap", "info", "Train/validation gap", text)


def grad_norm_findings(s: RunSummary) -> list[Finding]:
    grad, ratio, grad_ratio = s.grad_norm, s.update_ratio, s.grad_ratio
    if not grad:
        return []
    out = [Finding("grad_norm_regime", "info", "Gradient-norm regime",
                   f"initial peak {fmt(grad['initial_peak'])} at step {grad['initial_peak_step']}; after warmup the "
                   f"norm sits between {fmt(grad['p10_after_warmup'])} and {fmt(grad['p90_after_warmup'])} "
                   f"(10th-90th percentile, median {fmt(grad['median_after_warmup'])}); "
                   f"{fmt(100 * grad['clipped_fraction'], 3)}% of all steps were clipped at {fmt(grad['clip'])}.")]
    if grad["clip"] and grad["clipped_fraction_after_warmup"] > CLIPPING_DOMINANT:
        out.append(Finding("clipping_dominant", "warning", "Clipping is active on most steps",
                           f"{fmt(100 * grad['clipped_fraction_after_warmup'], 3)}% of the steps after warmup had a "
                           f"norm above {fmt(grad['clip'])}, so the effective step is smaller than scheduled.",
                           "If the loss is stable, the learning rate may be too high for this clip value."))
    looks_small = grad["median_after_warmup"] < SEED_IDEAL_GRAD_NORM or (
        grad_ratio and grad_ratio["overall_median"] < RATIO_TARGET)
    if looks_small:
        raw = (f"the raw gradient norm (median {fmt(grad['median_after_warmup'])} after warmup"
               + (f", std(grad)/std(w) median {fmt(grad_ratio['overall_median'])}" if grad_ratio else "") + ")")
        if ratio:
            verdict = ("the weights do move at a healthy rate" if FAR_BELOW <= ratio["overall_median"] <= FAR_ABOVE
                       else "the update ratios are themselves out of range (see the learning-rate finding)")
            text = (f"{raw} looks small, but under AdamW that is not evidence of vanishing gradients: Adam divides "
                    f"each step by the gradient's running RMS. The update/weight ratios (median "
                    f"{fmt(ratio['overall_median'])}, target ~1e-3) show {verdict}.")
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
    return Finding("reference_not_reached", "info", "Reference validation loss not reached",
                   f"best validation loss {fmt(best)} vs reference {fmt(ref['reference_loss'])} "
                   f"({ref['reference_source']}); still {fmt((best or math.nan) - ref['reference_loss'], 3)} above.",
                   "Train for more tokens if validation loss is still falling.")


def healthy_finding(s: RunSummary, findings: list[Finding]) -> Finding | None:
    if any(f.severity == "problem" for f in findings):
        return None
    loss, ratio, spikes = s.loss, s.update_ratio, s.spikes["spike_steps"]
    text = (f"train loss fell from {fmt(loss['initial_train_loss'])} to {fmt(loss['final_train_loss_smoothed'])}"
            + (f", validation to {fmt(loss['final_val_loss'])}" if "final_val_loss" in loss else "")
            + (f"; median update/weight ratio {fmt(ratio['overall_median'])} (within a decade of 1e-3)"
               if ratio else "") + f"; {len(spikes)} loss spikes.")
    still_improving = "min_val_step" in loss and loss["min_val_step"] == loss["steps"]
    return Finding("healthy", "info", "Healthy run", text,
                   "Validation loss was still falling at the end: more tokens should help." if still_improving
                   else "")


def too_short_finding(s: RunSummary) -> Finding | None:
    steps = s.loss["steps"]
    if steps >= MIN_STEPS_TO_JUDGE:
        return None
    return Finding("too_short", "info", "Too short to judge",
                   f"the run has {steps} logged step(s); at least {MIN_STEPS_TO_JUDGE} are needed before trends, "
                   "warmup and clipping statistics say anything, so no verdict is given.",
                   "Train longer (or analyse again later: the report reads the logs as they grow).")


def diagnose(summary: RunSummary) -> list[Finding]:
    findings = [init_finding(summary)]
    too_short = too_short_finding(summary)
    if too_short:
        return findings + [too_short]
    for rule in (instability_finding, learning_rate_low_finding, overfitting_finding):
        finding = rule(summary)
        if finding:
            findings.append(finding)
    findings += layer_findings(summary)
    findings += [f for f in (gap_finding(summary), reference_finding(summary)) if f]
    findings += grad_norm_findings(summary)
    spikes = summary.spikes["spike_steps"]
    if spikes and not any(f.id == "lr_too_high" for f in findings):
        findings.append(Finding("loss_spikes", "warning", "Loss spikes", f"{len(spikes)} spike(s) at steps "
                                f"{', '.join(map(str, spikes[:10]))} ({summary.spikes['source']})."))
    healthy = healthy_finding(summary, findings)
    if healthy:
        findings.append(healthy)
    return findings


# ----------------------------------------------------------------------------------------------- output
def build_report(run: Run) -> dict:
    summary = summarize(run)
    return {**asdict(summary), "findings": [asdict(f) for f in diagnose(summary)]}


def render_markdown(report: dict, plots: list[str]) -> str:
    loss, tokens, ref = report["loss"], report["tokens"], report["reference"]
    lines = [f"# Run report: {report['run']}", ""]
    lines += ["## Findings", ""]
    for f in report["findings"]:
        lines.append(f"- **{f['title']}** ({f['severity']}, `{f['id']}`): {f['evidence']}")
        if f["recommendation"]:
            lines.append(f"  - Recommendation: {f['recommendation']}")
    lines += ["", "## Numbers", "",
              "| quantity | value |", "| --- | --- |",
              f"| initial train loss / ln(vocab) | {fmt(loss['initial_train_loss'])} / {fmt(loss['uniform_loss'])} |",
              f"| final train loss (smoothed) | {fmt(loss['final_train_loss_smoothed'])} |",
              f"| final / best validation loss | {fmt(loss.get('final_val_loss'))} / {fmt(loss.get('min_val_loss'))}"
              f" (step {loss.get('min_val_step', 'n/a')}) |",
              f"| steps, tokens per step | {fmt(loss['steps'])}, {fmt(tokens['tokens_per_step'])} |",
              f"| total tokens | {fmt(tokens['total_tokens'])} |",
              f"| dataset tokens, fraction used, steps per epoch | {fmt(tokens['dataset_tokens'])}, "
              f"{fmt(tokens.get('fraction_of_dataset'))}, {fmt(tokens.get('steps_per_epoch'))} |",
              f"| reference loss | {fmt(ref['reference_loss'])} ({ref['reference_source'] or 'none given'}) |",
              f"| reference reached (val / train) at step | {fmt(ref.get('val_crossing_step'), 5)} / "
              f"{fmt(ref.get('train_crossing_step'), 5)} |",
              f"| ... at tokens | {fmt(ref.get('val_crossing_tokens'))} / {fmt(ref.get('train_crossing_tokens'))} |"]
    grad = report["grad_norm"]
    if grad:
        lines.append(f"| grad norm: initial peak, median after warmup, clipped | {fmt(grad['initial_peak'])}, "
                     f"{fmt(grad['median_after_warmup'])}, {fmt(100 * grad['clipped_fraction'], 3)}% |")
    for key, title in (("update_ratio", "update/weight ratio"), ("grad_ratio", "std(grad)/std(w)")):
        if report[key]:
            lines.append(f"| {title}: median (min-max over parameters) | {fmt(report[key]['overall_median'])} "
                         f"({fmt(report[key]['min'])}-{fmt(report[key]['max'])}) |")
    lines.append(f"| loss spikes | {len(report['spikes']['spike_steps'])} |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path, plots: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, plots))
