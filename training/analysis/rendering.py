"""report.md: the findings and the numbers of a report (``report.build_report``) as Markdown, beside the plots."""

import json
from pathlib import Path

from .formatting import fmt, listed
from .thresholds import RATIO_UNSTABLE


def render_markdown(report: dict, plots: list[str]) -> str:
    loss, tokens, ref = report["loss"], report["tokens"], report["reference"]
    lines = [f"# Run report: {report['run']}", ""]
    if report.get("verdict"):
        lines += [f"**Verdict: {report['verdict']}.**", ""]
    lines += ["## Findings", ""]
    for f in report["findings"]:
        lines.append(f"- **{f['title']}** ({f['severity']}, `{f['id']}`): {f['evidence']}")
        if f["recommendation"]:
            lines.append(f"  - Recommendation: {f['recommendation']}")
    if report.get("advice_priority") and any(f.get("actions") for f in report["findings"]):
        lines += ["", f"_{report['advice_priority']}_"]
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
    for group, g in ((report.get("expectation") or {}).get("groups") or {}).items():
        lines.append(f"| {group}: median update ratio / expected scale ({'0.2 x ' if group == 'muon' else ''}lr/rms(w))"
                     f", consistency (range) | {fmt(g['median_ratio'])} / {fmt(g['median_expected'])}, "
                     f"{fmt(g['median_consistency'], 2)} ({fmt(g['band'][0], 2)}-{fmt(g['band'][1], 3)}) |")
    lines.append(f"| loss spikes | {len(report['spikes']['spike_steps'])} |")
    regime = report.get("regime") or {}
    if regime:
        lines.append(f"| epochs started / data read more than once / train, validation trend (later half) | "
                     f"{fmt(regime.get('epochs_started'))} / {'yes' if regime.get('repeated_data') else 'no'} / "
                     f"{regime.get('train_trend')}, {regime.get('val_trend', 'n/a')} |")
    hold = report.get("peak_hold") or {}
    if hold:
        lines.append(f"| peak learning rate reached at step, steps held before the first trouble (step), held stably |"
                     f" {hold['reached_step']}, {hold['held_steps']} ({fmt(hold['first_trouble_step'])}), "
                     f"{'yes' if hold['held_stably'] else 'no'} |")
    early = report["early_phase"]
    if early:
        lines.append(f"| early phase: peak median update ratio (step), settled below {fmt(RATIO_UNSTABLE)} at step, "
                     f"loss jumps before / after | {fmt(early['peak_ratio'])} ({early['peak_ratio_step']}), "
                     f"{fmt(early['settle_step'])}, {listed([str(x) for x in early['early_jumps']]) or 'none'} / "
                     f"{listed([str(x) for x in early['late_jumps']]) or 'none'} |")
    depth = report["depth"]["learning"]
    if "trend_decades" in depth:
        lines.append(f"| learning ratio by depth: block {depth['first_block']} / block {depth['last_block']}, trend "
                     f"| {fmt(depth['per_block'][depth['first_block']])} / {fmt(depth['per_block'][depth['last_block']])}"
                     f", {fmt(depth['trend_decades'], 2)} decades |")
    noise = report.get("noise_scale") or {}
    if noise.get("undefined"):
        lines.append(f"| gradient noise scale B_simple | undefined at all {noise['measurements']} measurements "
                     "(|G|^2 estimate <= 0) |")
    elif noise:
        lines.append(f"| gradient noise scale B_simple (later half, median) / tokens per step | "
                     f"{fmt(noise['median_later'])} / {fmt(noise['tokens_per_step'])} "
                     f"({fmt(noise['batch_over_noise'], 3)}x) |")
    lines += forecast_lines(report)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def forecast_lines(report: dict) -> list[str]:
    """The forecast section: one row per ``forecast.to_dict()`` prediction (what, steps, tokens, loss, low, high), with
    a row's own ``trusted`` / ``warnings`` / ``assumes`` when it carries them. A run that memorises its data gets a
    caution: the fitted law knows nothing of repeated data."""
    forecast = report.get("forecast") or {}
    if not forecast.get("current_schedule"):
        return []
    own = forecast["current_schedule"]
    fit = forecast.get("fit") or {}
    trusted, warnings = forecast.get("trusted", True), forecast.get("warnings") or []
    lines = ["", "## Forecast", "",
             f"Fitted on {len(fit.get('steps', []))} points of the {fit.get('source', 'loss')} with the scaling law "
             "with learning-rate annealing (Tissue et al. 2024); 5-95% intervals from bootstrap refits"
             + ("." if trusted and not warnings else
                "." + (" Warnings: " + "; ".join(warnings) + "." if warnings else "") if trusted else
                ", **not to be trusted blindly**" + (": " + "; ".join(warnings) if warnings else "") + ".")]
    if report.get("verdict_id") == "memorising":
        lines.append("")
        lines.append("Caution: the run memorises its data (see the verdict). The law fitted here assumes fresh data; "
                     "forecasts of longer runs over the same data describe the training curve, not validation.")
    rows = [own, *forecast.get("horizons", [])]
    notes = any(("trusted" in row) or row.get("warnings") or row.get("assumes") for row in rows)
    lines += ["", "| forecast | step | tokens | loss (5-95%) |" + (" notes |" if notes else ""),
              "| --- | --- | --- | --- |" + (" --- |" if notes else "")]
    for row in rows:
        line = (f"| {row.get('what', '')} | {fmt(row.get('steps'))} | {fmt(row.get('tokens'))} | "
                f"{fmt(row.get('loss'))} ({fmt(row.get('low'))}-{fmt(row.get('high'))}) |")
        if notes:
            parts = []
            if row.get("trusted") is False:
                parts.append("not trusted")
            parts += [str(w) for w in (row.get("warnings") or [])]
            if row.get("assumes"):
                assumes = row["assumes"]
                parts.append("assumes " + ("; ".join(map(str, assumes)) if isinstance(assumes, (list, tuple))
                                           else str(assumes)))
            if row.get("far_beyond_fit") and not row.get("warnings"):
                parts.append("far beyond the fitted steps")
            line += f" {'; '.join(parts)} |"
        lines.append(line)
    target = forecast.get("target")
    if target:
        reach = (f"{fmt(target['tokens'])} tokens ({fmt(target.get('low_tokens'))}-{fmt(target.get('high_tokens'))})"
                 if target.get("tokens") else "not within the forecast's range")
        lines.append(f"| tokens to reach {fmt(target['target'])} (its schedule, stretched) | "
                     f"{fmt(target.get('steps'))} | {reach} | |" + (" |" if notes else ""))
    return lines


def write_report(report: dict, out_dir: Path, plots: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, plots))
