"""The seed's three plots (lossGraph, gradNorm, grad_param_ratio), the update-ratio plot, and a comparison of
several runs. Each ``plot_*`` returns the matplotlib Figure (tests read the plotted arrays back from it)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..layout import Tags  # noqa: E402
from .runs import Run  # noqa: E402
from .summaries import (  # noqa: E402
    block_and_kind,
    depth_summary,
    early_phase_summary,
    ema,
    first_crossing,
    median_ratio_trace,
    ratio_summary,
)
from .thresholds import MIN_BLOCKS_FOR_DEPTH, RATIO_TARGET, RATIO_UNSTABLE  # noqa: E402

KINDS = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "embeddings"]


GRID = 300  # points a forecast curve is evaluated at


def _token_axis(ax, run: Run):
    per_step = run.tokens_per_step
    if per_step:
        axis = ax.secondary_xaxis("top", functions=(lambda s: s * per_step / 1e6, lambda t: t * 1e6 / per_step))
        axis.set_xlabel("tokens (millions)")


def plot_loss(run: Run):
    fig, ax = plt.subplots(figsize=(10, 6))
    steps, loss = run.series(Tags.TRAIN_LOSS)
    val_steps, val = run.series(Tags.VAL_LOSS)
    ax.plot(steps, loss, color="gold", alpha=0.35, linewidth=0.8, label="train loss")
    smooth = ema(loss) if len(loss) else loss
    ax.plot(steps, smooth, color="goldenrod", linewidth=1.8, label="train loss (smoothed)")
    if len(val):
        ax.plot(val_steps, val, color="green", marker="o", markersize=3, linewidth=1.5, label="validation loss")
    title = f"{run.name}: loss"
    if run.reference_loss is not None:
        # A short label: the source (which can be a long path) goes under the title, not into the legend.
        ax.axhline(run.reference_loss, color="purple", linestyle="--", label=f"reference {run.reference_loss:.4f}")
        title += f"\nreference: {run.reference_source}"
        for x, y, color, name, offset in ((steps, smooth, "goldenrod", "train", -15), (val_steps, val, "green",
                                                                                     "val", 10)):
            crossing = first_crossing(x, y, run.reference_loss) if len(y) else None
            if crossing is not None:
                ax.axvline(crossing, color=color, linestyle=":", linewidth=1)
                ax.annotate(f"{name} reaches it: step {crossing:.0f}", (crossing, run.reference_loss),
                            textcoords="offset points", xytext=(5, offset), color=color, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", framealpha=0.85)
    _token_axis(ax, run)
    fig.tight_layout()
    return fig


def plot_grad_norm(run: Run):
    fig, ax = plt.subplots(figsize=(10, 5))
    steps, norm = run.series(Tags.TRAIN_GRAD_NORM)
    ax.plot(steps, norm, color="tab:blue", linewidth=0.9, label="gradient norm (before clipping)")
    clip = run.grad_clip
    if clip:
        ax.axhline(clip, color="red", linestyle="--", label=f"clip threshold {clip:g}")
        clipped = norm > clip
        ax.scatter(steps[clipped], norm[clipped], color="red", s=10, zorder=3,
                   label=f"clipped steps ({int(clipped.sum())})")
    ax.set_xlabel("step")
    ax.set_ylabel("global L2 norm")
    ax.set_title(f"{run.name}: gradient norm")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_ratios(run: Run, prefix: str, title: str):
    """One panel per parameter kind (2 rows x 3, readable at column width), one line per layer coloured by depth
    with a single depth colour bar instead of per-panel legends (so 50+ lines stay readable)."""
    tags = run.tags(prefix)
    layers = sorted({block_and_kind(t[len(prefix):])[0] for t in tags} - {None})
    cmap = plt.cm.viridis
    colors = cmap(np.linspace(0, 1, max(1, len(layers))))
    fig, grid = plt.subplots(2, 3, figsize=(13, 7.5), sharey=True)
    axes = list(grid.flat)
    for ax, kind in zip(axes, KINDS):
        for tag in tags:
            name = tag[len(prefix):]
            layer, this_kind = block_and_kind(name)
            if this_kind != kind:
                continue
            steps, values = run.series(tag)
            color = colors[layers.index(layer)] if layer is not None else None
            ax.plot(steps, values, color=color, linewidth=1.2, label=name if layer is None else f"layer {layer}")
        ax.axhline(RATIO_TARGET, color="black", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(kind, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        if kind == "embeddings" and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    legend_ax = axes[len(KINDS)]
    legend_ax.axis("off")
    if layers:
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(min(layers), max(layers)),
                                                 cmap=cmap), ax=legend_ax, location="left", fraction=0.5)
        bar.set_ticks(layers if len(layers) <= 12 else layers[:: max(1, len(layers) // 12)])
        bar.set_label("layer (depth)", fontsize=11)
    legend_ax.text(0.55, 0.5, "dashed: 1e-3", transform=legend_ax.transAxes, fontsize=11, va="center")
    for row in grid:
        row[0].set_ylabel(title, fontsize=10)
    fig.suptitle(f"{run.name}: {title}", fontsize=12)
    fig.tight_layout()
    return fig


def plot_early_phase(run: Run):
    """The early phase the warmup rule reads: the median update ratio over steps (log) with the 3e-2 line and where
    it settled below it for good, and the train loss with the jumps it found (before / after settling)."""
    early = early_phase_summary(run)
    fig, ax = plt.subplots(figsize=(10, 5))
    steps, trace = median_ratio_trace(run)
    ax.plot(steps, trace, color="tab:purple", marker="o", markersize=3, linewidth=1.4,
            label="median update/weight ratio")
    ax.axhline(RATIO_UNSTABLE, color="tab:purple", linestyle="--", linewidth=1, label=f"{RATIO_UNSTABLE:g}")
    if early is not None and early.settle_step is not None:
        ax.axvline(early.settle_step, color="gray", linestyle=":", label=f"settled: step {early.settle_step}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("update / weight (median over matrices)")
    loss_ax = ax.twinx()
    loss_steps, loss = run.series(Tags.TRAIN_LOSS)
    loss_ax.plot(loss_steps, loss, color="goldenrod", alpha=0.5, linewidth=0.8, label="train loss")
    at = dict(zip(loss_steps.astype(int).tolist(), loss.tolist()))
    for jumps, color, name in ((early.early_jumps if early else [], "red", "loss jump, early phase"),
                               (early.late_jumps if early else [], "black", "loss jump, later")):
        if jumps:
            loss_ax.scatter(jumps, [at[j] for j in jumps], color=color, zorder=3, s=25, label=name)
    loss_ax.set_ylabel("train loss (nats)")
    handles = [h for a in (ax, loss_ax) for h in a.get_legend_handles_labels()[0]]
    labels = [lab for a in (ax, loss_ax) for lab in a.get_legend_handles_labels()[1]]
    ax.legend(handles, labels, loc="upper right", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"{run.name}: early phase (large steps relative to the weights) and loss jumps")
    fig.tight_layout()
    return fig


def plot_depth(run: Run):
    """What the depth rule reads: per transformer block, the median learning ratio (gradient-driven update/weight
    when logged) and the raw std(grad)/std(weight), on a log scale, each with its fitted trend line."""
    learning = ratio_summary(run, Tags.UPDATE_RATIO_GRAD) or ratio_summary(run, Tags.UPDATE_RATIO)
    series = (("update/weight (learning)", learning, "tab:green"),
              ("std(grad)/std(weight) (raw)", ratio_summary(run, Tags.GRAD_RATIO), "tab:blue"))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, summary, color in series:
        depth = depth_summary(summary.per_parameter_median) if summary else None
        if depth is None or depth.per_block is None:
            continue
        blocks = sorted(depth.per_block)
        ax.plot(blocks, [depth.per_block[b] for b in blocks], color=color, marker="o", linewidth=1.4, label=name)
        ax.plot(blocks, [depth.fitted[b] for b in blocks], color=color, linestyle="--", linewidth=1,
                label=f"trend: {depth.trend_decades:+.2f} decades")
    if not ax.lines:
        ax.text(0.5, 0.5, f"fewer than {MIN_BLOCKS_FOR_DEPTH} transformer blocks with logged ratios:\nno trend with "
                "depth can be told", transform=ax.transAxes, ha="center", va="center", fontsize=11)
    ax.axhline(RATIO_TARGET, color="black", linestyle=":", linewidth=1, label="1e-3")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("block (0 = nearest the input)")
    ax.set_ylabel("median over the block's matrices")
    ax.set_title(f"{run.name}: learning by depth")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_comparison(runs: list[Run]):
    fig, ax = plt.subplots(figsize=(10, 6))
    for i, run in enumerate(runs):
        color = plt.cm.tab10(i % 10)
        steps, loss = run.series(Tags.TRAIN_LOSS)
        per_step = run.tokens_per_step or 1
        if len(loss):
            ax.plot(steps * per_step, ema(loss), color=color, alpha=0.6, linewidth=1, label=f"{run.name} train")
        val_steps, val = run.series(Tags.VAL_LOSS)
        if len(val):
            ax.plot(val_steps * per_step, val, color=color, marker="o", markersize=3, label=f"{run.name} val")
    # A reference is a measurement on one run's validation data: draw it once when every run shares it, else
    # one line per run in that run's colour, so no run is compared with another's reference.
    references = {(r.reference_loss, json.dumps({k: r.settings.get(k) for k in ("data", "download_url", "val_tokens")}, sort_keys=True)) for r in runs
                  if r.reference_loss is not None}
    if len(references) == 1 and all(r.reference_loss is not None for r in runs):
        ax.axhline(runs[0].reference_loss, color="purple", linestyle="--",
                   label=f"reference {runs[0].reference_loss:.4f}")
    else:
        for i, run in enumerate(runs):
            if run.reference_loss is not None:
                ax.axhline(run.reference_loss, color=plt.cm.tab10(i % 10), linestyle="--", linewidth=1,
                           label=f"{run.name} reference {run.reference_loss:.4f}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats)")
    ax.set_title("loss against tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_forecast(run: Run, result) -> plt.Figure:
    """Observed losses (what the law was fitted to), the fitted curve over the run's learning-rate history and its
    continuation to the headline row's step, with the curve's own 5-95% band, and every other row as a point with its
    prediction interval (hollow: not to be trusted). Evaluated on a grid of at most GRID points, so any horizon
    draws (no per-step arrays)."""
    from .forecast import Fit, Plan, continued_schedule, lr_history

    fit = Fit(**result.fit)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(fit.steps, fit.losses, "o", markersize=3, color="black", label=f"observed ({fit.source[:40]})")
    last, own = result.last_step, result.current_schedule
    continuing = own.get("kind", "continuing") == "continuing"
    end = own["steps"] if continuing else last
    schedule = continued_schedule(run, end, last) if continuing and end > last else None
    history = lr_history(run) / fit.scale
    first = max(min(fit.steps), 1)
    ahead = np.geomspace(last, end, GRID // 2) if end > last else np.array([])  # dense near now, any horizon
    grid = np.unique(np.concatenate([np.linspace(first, last, GRID // 2), ahead]).round().astype(int))
    predicted = np.array([fit.predict(Plan(history, schedule if s > len(history) else None, int(s)))
                          for s in grid])
    fitted = grid <= last
    ax.plot(grid[fitted], predicted[fitted, 0], color="tab:blue", label="fitted")
    if (~fitted).any():
        ahead = grid >= last
        ax.plot(grid[ahead], predicted[ahead, 0], color="tab:blue", linestyle="--", label=own["what"][:60])
    ax.fill_between(grid, predicted[:, 3], predicted[:, 4], color="tab:blue", alpha=0.15,
                    label="5-95% of the fitted curve")
    points = ([] if continuing else [own]) + list(result.horizons)
    for row in points:
        trusted = row.get("trusted", True)
        ax.errorbar([row["steps"]], [row["loss"]], yerr=[[row["loss"] - row["low"]], [row["high"] - row["loss"]]],
                    fmt="s", markersize=5, capsize=3, mfc=None if trusted else "none",
                    label=row["what"][:55] + ("" if trusted else " (not trusted)"))
    if run.reference_loss is not None:
        ax.axhline(run.reference_loss, color="tab:red", linestyle=":", label=f"reference {run.reference_loss:.4f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    shown = [*fit.losses, *predicted[:, 0], *(row["low"] for row in points)]
    ax.set_ylim(min(shown) - 0.1, max(fit.losses) + 0.3)
    if max(end, last, *(row["steps"] for row in points)) > 50 * last:
        ax.set_xscale("log")
    ax.set_title(f"{run.name}: loss forecast (Tissue et al. 2024)" + ("" if result.trusted else " - not trusted"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_plots(run: Run, out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"lossGraph.png": plot_loss(run), "gradNorm.png": plot_grad_norm(run)}
    if run.tags(Tags.GRAD_RATIO):
        figures["grad_param_ratio.png"] = plot_ratios(run, Tags.GRAD_RATIO, "std(grad) / std(weight)")
    if run.tags(Tags.UPDATE_RATIO):
        figures["update_ratio.png"] = plot_ratios(run, Tags.UPDATE_RATIO, "std(update) / std(weight)")
        figures["early_phase.png"] = plot_early_phase(run)
        figures["depth.png"] = plot_depth(run)
    written = []
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        written.append(str(out_dir / name))
    return written
