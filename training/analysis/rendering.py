"""report.md: the findings and the numbers of a report (``report.build_report``) as Markdown, beside the plots."""

import json
from pathlib import Path

from .formatting import fmt, listed
from .ids import VerdictId
from .summaries import RunSummary
from .thresholds import RATIO_UNSTABLE


def render_markdown(report: dict, plots: list[str]) -> str:
    """report.md from a report (``report.build_report``, the dict report.json holds): the verdict, the findings, a
    table of the numbers (read from the summary's typed sections), the forecast and the plots."""
    lines = [f"# Run report: {report['run']}", ""]
    if report.get("verdict"):
        lines += [f"**Verdict: {report['verdict']}.**", ""]
    lines += finding_lines(report)
    summary = RunSummary.from_report(report)
    lines += ["", "## Numbers", "", "| quantity | value |", "| --- | --- |"]
    lines += curve_rows(summary) + step_rows(summary) + phase_rows(summary)
    lines += forecast_lines(report)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def finding_lines(report: dict) -> list[str]:
    """Each finding with its evidence and recommendation; the advice priority when some advice turns a setting."""
    lines = ["## Findings", ""]
    for f in report["findings"]:
        lines.append(f"- **{f['title']}** ({f['severity']}, `{f['id']}`): {f['evidence']}")
        if f["recommendation"]:
            lines.append(f"  - Recommendation: {f['recommendation']}")
    if report.get("advice_priority") and any(f.get("actions") for f in report["findings"]):
        lines += ["", f"_{report['advice_priority']}_"]
    return lines


def curve_rows(s: RunSummary) -> list[str]:
    """The table's rows of the loss curves, the tokens and the reference loss (every run has them)."""
    loss, tokens, ref = s.loss, s.tokens, s.reference
    return [f"| initial train loss / ln(vocab) | {fmt(loss.initial_train_loss)} / {fmt(loss.uniform_loss)} |",
            f"| final train loss (smoothed) | {fmt(loss.final_train_loss_smoothed)} |",
            f"| final / best validation loss | {fmt(loss.final_val_loss)} / {fmt(loss.min_val_loss)}"
            f" (step {loss.min_val_step if loss.min_val_step is not None else 'n/a'}) |",
            f"| steps, tokens per step | {fmt(loss.steps)}, {fmt(tokens.tokens_per_step)} |",
            f"| total tokens | {fmt(tokens.total_tokens)} |",
            f"| dataset tokens, fraction used, steps per epoch | {fmt(tokens.dataset_tokens)}, "
            f"{fmt(tokens.fraction_of_dataset)}, {fmt(tokens.steps_per_epoch)} |",
            f"| reference loss | {fmt(ref.reference_loss)} ({ref.reference_source or 'none given'}) |",
            f"| reference reached (val / train) at step | {fmt(ref.val_crossing_step, 5)} / "
            f"{fmt(ref.train_crossing_step, 5)} |",
            f"| ... at tokens | {fmt(ref.val_crossing_tokens)} / {fmt(ref.train_crossing_tokens)} |"]


def step_rows(s: RunSummary) -> list[str]:
    """The rows of the optimizer's steps: gradient norm, ratios, update ratios against their expected scale, spikes
    (each only when logged)."""
    lines = []
    grad = s.grad_norm
    if grad:
        lines.append(f"| grad norm: initial peak, median after warmup, clipped | {fmt(grad.initial_peak)}, "
                     f"{fmt(grad.median_after_warmup)}, {fmt(100 * grad.clipped_fraction, 3)}% |")
    for ratio, title in ((s.update_ratio, "update/weight ratio"), (s.grad_ratio, "std(grad)/std(w)")):
        if ratio:
            lines.append(f"| {title}: median (min-max over parameters) | {fmt(ratio.overall_median)} "
                         f"({fmt(ratio.min)}-{fmt(ratio.max)}) |")
    for group, g in (s.expectation.groups if s.expectation else {}).items():
        lines.append(f"| {group}: median update ratio / expected scale ({'0.2 x ' if group == 'muon' else ''}lr/rms(w))"
                     f", consistency (range) | {fmt(g.median_ratio)} / {fmt(g.median_expected)}, "
                     f"{fmt(g.median_consistency, 2)} ({fmt(g.band[0], 2)}-{fmt(g.band[1], 3)}) |")
    lines.append(f"| loss spikes | {len(s.spikes.spike_steps)} |")
    return lines


def phase_rows(s: RunSummary) -> list[str]:
    """The rows of the run's course: its regime, the peak learning rate held, the early phase, learning by depth and
    the gradient noise scale (each only when known)."""
    lines = []
    if regime := s.regime:
        lines.append(f"| epochs started / data read more than once / train, validation trend (later half) | "
                     f"{fmt(regime.epochs_started)} / {'yes' if regime.repeated_data else 'no'} / "
                     f"{regime.train_trend}, {regime.val_trend if regime.val_trend is not None else 'n/a'} |")
    if hold := s.peak_hold:
        lines.append(f"| peak learning rate reached at step, steps held before the first trouble (step), held stably |"
                     f" {hold.reached_step}, {hold.held_steps} ({fmt(hold.first_trouble_step)}), "
                     f"{'yes' if hold.held_stably else 'no'} |")
    if early := s.early_phase:
        lines.append(f"| early phase: peak median update ratio (step), settled below {fmt(RATIO_UNSTABLE)} at step, "
                     f"loss jumps before / after | {fmt(early.peak_ratio)} ({early.peak_ratio_step}), "
                     f"{fmt(early.settle_step)}, {listed([str(x) for x in early.early_jumps]) or 'none'} / "
                     f"{listed([str(x) for x in early.late_jumps]) or 'none'} |")
    depth = s.depth.learning
    if depth.trend_decades is not None:
        lines.append(f"| learning ratio by depth: block {depth.first_block} / block {depth.last_block}, trend "
                     f"| {fmt(depth.per_block[depth.first_block])} / {fmt(depth.per_block[depth.last_block])}"
                     f", {fmt(depth.trend_decades, 2)} decades |")
    noise = s.noise_scale
    if noise and noise.undefined:
        lines.append(f"| gradient noise scale B_simple | undefined at all {noise.measurements} measurements "
                     "(|G|^2 estimate <= 0) |")
    elif noise:
        lines.append(f"| gradient noise scale B_simple (later half, median) / tokens per step | "
                     f"{fmt(noise.median_later)} / {fmt(noise.tokens_per_step)} "
                     f"({fmt(noise.batch_over_noise, 3)}x) |")
    return lines


def forecast_lines(report: dict) -> list[str]:
    """The forecast section: one row per prediction (what it assumes, step, tokens, loss with its interval, whether to
    trust it and why not), the refused rows with their reason, and what would make the forecast trustworthy. A run
    that memorises its data gets a caution: the fitted law knows nothing of repeated data."""
    forecast = report.get("forecast") or {}
    if not forecast.get("current_schedule"):
        return []
    own, fit = forecast["current_schedule"], forecast.get("fit") or {}
    trusted, warnings = forecast.get("trusted", True), forecast.get("warnings") or []
    source = fit.get("source", "loss")
    fitted = source if source.startswith("validation loss (") else \
        f"{len(fit.get('steps', []))} points of the {source}"
    branches = fit.get("branch_points") or []
    lines = ["", "## Forecast", "",
             f"Fitted on {fitted}" + (f" and {sum(len(b['steps']) for b in branches)} points of its cool-down "
                                      "branches" if branches else "")
             + " with the scaling law with learning-rate annealing (Tissue et al. 2024). "
             + forecast.get("interval", "low-high: 5-95% intervals from bootstrap refits")
             + "; fresh-run rows add a 1% run-to-run spread"
             + ("." if trusted and not warnings else
                "." + (" Warnings: " + "; ".join(warnings) + "." if warnings else "") if trusted else
                ". **The headline forecast is not to be trusted blindly**" + (": " + "; ".join(warnings) if warnings
                                                                              else "") + ".")]
    if forecast.get("advice"):
        lines += ["", f"To make it trustworthy: {forecast['advice']}"]
    if report.get("verdict_id") == VerdictId.MEMORISING:
        lines += ["", "Caution: the run memorises its data (see the verdict). The law fitted here assumes fresh data; "
                  "forecasts of longer runs over the same data describe the training curve, not validation."]
    rows = [own, *forecast.get("horizons", [])]
    lines += ["", "| forecast (what it assumes) | step | tokens | loss (interval) | trust |",
              "| --- | --- | --- | --- | --- |"]
    for row in rows:
        notes = [str(w) for w in (row.get("warnings") or [])]
        if row.get("far_beyond_fit") and not notes:
            notes.append("far beyond the fitted steps")
        trust = ("yes" if row.get("trusted", True) else "no") + (": " + "; ".join(notes) if notes else "")
        lines.append(f"| {row.get('what', '')} | {fmt(row.get('steps'))} | {fmt(row.get('tokens'))} | "
                     f"{fmt(row.get('loss'))} ({fmt(row.get('low'))}-{fmt(row.get('high'))}) | {trust} |")
    for row in forecast.get("refused") or []:
        lines.append(f"| {row.get('what', '')} | {fmt(row.get('steps'))} | | refused | {row.get('reason', '')} |")
    target = forecast.get("target")
    if target:
        reach = (f"{fmt(target['tokens'])} tokens ({fmt(target.get('low_tokens'))}-{fmt(target.get('high_tokens'))})"
                 if target.get("tokens") else "not within the forecast's range")
        trust = ("yes" if target.get("trusted", True) else "no") + (
            ": " + "; ".join(map(str, target["warnings"])) if target.get("warnings") else "")
        lines.append(f"| tokens to reach {fmt(target['target'])} (a fresh run of its schedule shape) | "
                     f"{fmt(target.get('steps'))} | {reach} | | {trust} |")
    return lines


def write_report(report: dict, out_dir: Path, plots: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, plots))
