"""report.md: the findings and the numbers of a report (``report.build_report``) as Markdown, beside the plots."""

import json
from pathlib import Path

from .formatting import fmt, listed
from .thresholds import RATIO_UNSTABLE


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
    if noise:
        lines.append(f"| gradient noise scale B_simple (later half, median) / tokens per step | "
                     f"{fmt(noise['median_later'])} / {fmt(noise['tokens_per_step'])} "
                     f"({fmt(noise['batch_over_noise'], 3)}x) |")
    forecast = report.get("forecast") or {}
    if forecast.get("current_schedule"):
        own = forecast["current_schedule"]
        lines += ["", "## Forecast", "",
                  f"Fitted on {len(forecast['fit']['steps'])} points of the {forecast['fit']['source']} with the "
                  "scaling law with learning-rate annealing (Tissue et al. 2024); 5-95% intervals from bootstrap "
                  "refits" + ("." if forecast["trusted"] else ", **not to be trusted blindly**: "
                              + "; ".join(forecast["warnings"]) + "."), "",
                  "| forecast | step | tokens | loss (5-95%) |", "| --- | --- | --- | --- |"]
        for row in [own, *forecast["horizons"]]:
            lines.append(f"| {row['what']} | {fmt(row['steps'])} | {fmt(row['tokens'])} | {fmt(row['loss'])} "
                         f"({fmt(row['low'])}-{fmt(row['high'])}) |")
        target = forecast.get("target")
        if target:
            reach = (f"{fmt(target['tokens'])} tokens ({fmt(target['low_tokens'])}-{fmt(target['high_tokens'])})"
                     if target["tokens"] else "not within the forecast's range")
            lines.append(f"| tokens to reach {fmt(target['target'])} (its schedule, stretched) | "
                         f"{fmt(target['steps'])} | {reach} | |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path, plots: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, plots))
