"""A sweep's results: per run (tokens to reach the target, final and best validation loss, validation loss at equal
tokens, training time and tokens/s, the analysis verdict), per variant (mean and spread over seeds), a ranking
by tokens to the target, and the outputs: ``sweep.json``, ``sweep.md`` and ``compare_loss.png``.

Tokens to the target is the first crossing of the validation curve, interpolated between evaluations. A variant
whose difference from the best is not larger than the seed-to-seed spread is reported as no different.
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..analysis.ids import VerdictId
from ..analysis.plots import plot_comparison
from ..analysis.report import SEVERE, build_report
from ..analysis.runs import Run, RunReadError, load_run
from ..analysis.summaries import first_crossing
from ..layout import RunLayout, Tags
from .config import SweepConfig
from .runner import diverged_record

VERDICT_WORDS = {VerdictId.TOO_SHORT: "too short to judge", VerdictId.DIVERGED: "diverged",
                 VerdictId.STOPPED: "stopped by the spike guard", VerdictId.UNSTABLE: "unstable",
                 VerdictId.UNSTABLE_EARLY: "unstable early (warmup too short)",
                 VerdictId.NOT_LEARNING: "not learning", VerdictId.MEMORISING: "memorising its data",
                 VerdictId.HEALTHY: "healthy"}


@dataclass
class RunResult:
    variant: str
    seed: int
    run_dir: str
    tokens_to_target: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    total_tokens: float | None
    train_seconds: float
    tokens_per_sec: float | None
    verdict: str
    val_loss_at_equal_tokens: float | None = None
    diverged: dict | None = None  # {"last_good_step", "last_good_loss", "error"} when the run stopped early


def _val_curve(run: Run) -> tuple[np.ndarray, np.ndarray]:
    steps, val = run.series(Tags.VAL_LOSS)
    return steps * (run.tokens_per_step or 0), val


def train_seconds(run: Run) -> float:
    """Time spent in optimizer steps: the mean logged step time times the number of steps (with --log_every N only
    every N-th step is logged, so a plain sum would count a fraction of them)."""
    logged_steps, step_ms = run.series(Tags.TRAIN_STEP_TIME_MS)
    if not len(step_ms):
        return 0.0
    return float(step_ms.mean() / 1000 * logged_steps.max())


def run_result(variant: str, seed: int, run: Run, target: float | None, diverged: dict | None = None) -> RunResult:
    tokens, val = _val_curve(run)
    crossing = first_crossing(tokens, val, target) if target is not None and len(val) else None
    _, seen = run.series(Tags.TRAIN_TOKENS_SEEN)
    seconds = train_seconds(run)
    total = float(seen[-1]) if len(seen) else None
    report = build_report(run)
    severe = sorted(f["id"] for f in report["findings"] if f["severity"] in SEVERE)
    # The report's own verdict, in a word that does not vary from seed to seed (the table lists distinct ones).
    verdict = (", ".join(severe) or "learning, with warnings") if report["verdict_id"] == VerdictId.WARNINGS else \
        VERDICT_WORDS.get(report["verdict_id"], report["verdict"])
    return RunResult(variant=variant, seed=seed, run_dir=str(run.run_dir), tokens_to_target=crossing,
                     final_val_loss=float(val[-1]) if len(val) else None,
                     best_val_loss=float(val.min()) if len(val) else None, total_tokens=total,
                     train_seconds=seconds, tokens_per_sec=total / seconds if total and seconds else None,
                     verdict="diverged" if diverged else verdict, diverged=diverged)


def collect(config: SweepConfig) -> tuple[list[RunResult], dict[str, Run]]:
    results, runs = [], {}
    for variant, seed in config.runs():
        folder, diverged = config.run_dir(variant, seed), diverged_record(config, variant, seed)
        try:
            run = load_run(folder) if RunLayout(folder).event_files() else None
        except RunReadError:  # started but stopped before its first logged step
            run = None
        if run is None:
            if diverged:  # diverged before it logged a step: ranked last like every diverged run, with its step
                results.append(RunResult(variant=variant, seed=seed, run_dir=str(folder), tokens_to_target=None,
                                         final_val_loss=None, best_val_loss=None, total_tokens=None,
                                         train_seconds=0.0, tokens_per_sec=None, verdict="diverged",
                                         diverged=diverged))
            continue
        run.name = f"{variant}/seed{seed}"
        runs[run.name] = run
        results.append(run_result(variant, seed, run, config.target_val_loss, diverged))
    common = min((r.total_tokens for r in results if r.total_tokens), default=None)
    for result in results:  # everyone's validation loss at the tokens the shortest run reached
        if f"{result.variant}/seed{result.seed}" not in runs:
            continue
        tokens, val = _val_curve(runs[f"{result.variant}/seed{result.seed}"])
        if common and len(val) and tokens[0] <= common:
            result.val_loss_at_equal_tokens = float(np.interp(common, tokens, val))
    return results, runs


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None when a value is missing, or for the spread, with one seed)."""
    if not values or any(v is None for v in values):
        return None, None
    mean = float(np.mean(values))
    return mean, float(np.std(values, ddof=1)) if len(values) > 1 else None


def rank(config: SweepConfig, results: list[RunResult]) -> list[dict]:
    rows, missing = [], []
    for variant in config.variants:
        mine = [r for r in results if r.variant == variant]
        if not mine:
            missing.append(variant)
            continue
        tokens, tokens_spread = _stats([r.tokens_to_target for r in mine])
        final, final_spread = _stats([r.final_val_loss for r in mine])
        equal, equal_spread = _stats([r.val_loss_at_equal_tokens for r in mine])
        best = min((r.best_val_loss for r in mine if r.best_val_loss is not None), default=None)
        diverged = [{"seed": r.seed, **r.diverged} for r in mine if r.diverged]
        rows.append({"variant": variant, "seeds": len(mine), "diverged": diverged, "tokens_to_target": tokens,
                     "tokens_to_target_spread": tokens_spread, "reached": tokens is not None,
                     "final_val_loss": final, "final_val_loss_spread": final_spread,
                     "val_loss_at_equal_tokens": equal, "val_loss_at_equal_tokens_spread": equal_spread,
                     "best_val_loss": best, "train_seconds": float(np.mean([r.train_seconds for r in mine])),
                     "tokens_per_sec": _stats([r.tokens_per_sec for r in mine])[0],
                     "verdicts": sorted({r.verdict for r in mine})})
    rows.sort(key=_rank_key)
    _compare_with_the_best(rows)
    return rows + [_not_run_row(variant) for variant in missing]


def _not_run_row(variant: str) -> dict:
    """A variant with no run to read (the sweep stopped before it, or it never logged a step): ranked last, said."""
    return {"variant": variant, "seeds": 0, "diverged": [], "tokens_to_target": None, "tokens_to_target_spread": None,
            "reached": False, "final_val_loss": None, "final_val_loss_spread": None, "val_loss_at_equal_tokens": None,
            "val_loss_at_equal_tokens_spread": None, "best_val_loss": None, "train_seconds": 0.0,
            "tokens_per_sec": None, "verdicts": ["not run"], "versus_best": "not run (no logged step to rank)"}


def _rank_key(row: dict) -> tuple:
    """Diverged variants last; then those that reached the target, by tokens; then the rest by validation loss at
    equal tokens (the quantity they are compared by, so a difference is never negative)."""
    equal = row.get("val_loss_at_equal_tokens")
    fallback = row.get("best_val_loss")
    return (bool(row.get("diverged")), not row["reached"], row["tokens_to_target"] if row["reached"] else math.inf,
            equal if equal is not None else fallback if fallback is not None else math.inf)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _diverged_words(row: dict) -> str:
    parts = [f"seed {d['seed']} after step {d['last_good_step']}" +
             (f" (loss {d['last_good_loss']:.4f})" if d.get("last_good_loss") is not None else "")
             for d in row["diverged"]]
    return f"diverged ({len(row['diverged'])} of {row['seeds']} seeds: {'; '.join(parts)})"


def _compare_with_the_best(rows: list[dict]) -> None:
    """Mark each variant as no different from / worse than the first (rows come ranked by ``_rank_key``), against
    the seed-to-seed spread, on the quantity the ranking used."""
    if not rows:
        return
    best = rows[0]
    key = "tokens_to_target" if best["reached"] else "val_loss_at_equal_tokens"
    best["versus_best"] = _diverged_words(best) if best.get("diverged") else "best"
    for row in rows[1:]:
        a, b = row.get(key), best.get(key)
        spreads = [s for s in (row.get(f"{key}_spread"), best.get(f"{key}_spread")) if s is not None]
        if row.get("diverged"):
            row["versus_best"] = _diverged_words(row)
        elif key == "tokens_to_target" and not row["reached"]:
            row["versus_best"] = "worse (target not reached)"
        elif a is None or b is None:
            row["versus_best"] = "cannot compare"
        elif a == b:
            row["versus_best"] = "no difference (equal)"
        elif not spreads:
            row["versus_best"] = f"worse by {_num(a - b)} (one seed: spread unknown)"
        elif a - b <= max(spreads):
            row["versus_best"] = f"no difference ({_num(a - b)} <= seed spread {_num(max(spreads))})"
        else:
            row["versus_best"] = f"worse by {_num(a - b)} (> seed spread {_num(max(spreads))})"


def _fmt(value, pattern="{:,.0f}"):
    return "-" if value is None else pattern.format(value)


def render_markdown(config: SweepConfig, rows: list[dict]) -> str:
    target = (f"{config.target_val_loss:.4f} ({config.target_source})" if config.target_val_loss is not None
              else "none (ranked by validation loss at equal tokens)")
    lines = [f"# Sweep: {config.path.stem}", "", f"Base preset `{config.base.resolve().name}`; seeds {config.seeds}; target "
             f"validation loss {target}.", "",
             "| rank | variant | tokens to target (mean +- sd) | final val loss | val loss at equal tokens | "
             "train time s | tokens/s | verdicts (distinct, over seeds) | versus the best |", "|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(rows, start=1):
        tokens = (f"{_fmt(row['tokens_to_target'])} +- {_fmt(row['tokens_to_target_spread'])}" if row["reached"]
                  else "diverged" if row.get("diverged")
                  else f"no target (best {_fmt(row['best_val_loss'], '{:.4f}')})" if config.target_val_loss is None
                  else f"not reached (best {_fmt(row['best_val_loss'], '{:.4f}')})")
        lines.append(f"| {i} | {row['variant']} | {tokens} | {_fmt(row['final_val_loss'], '{:.4f}')} +- "
                     f"{_fmt(row['final_val_loss_spread'], '{:.4f}')} | "
                     f"{_fmt(row['val_loss_at_equal_tokens'], '{:.4f}')} | {row['train_seconds']:.0f} | "
                     f"{_fmt(row['tokens_per_sec'])} | {'; '.join(row['verdicts'])} | {row['versus_best']} |")
    lines += ["", "![loss against tokens](compare_loss.png)", ""]
    return "\n".join(lines)


def ranked(config: SweepConfig) -> list[dict]:
    """The sweep's variants, best first (as sweep.md ranks them)."""
    return rank(config, collect(config)[0])


def write_summary(config: SweepConfig) -> Path:
    """sweep.json, sweep.md and compare_loss.png in the sweep's output folder; returns sweep.md."""
    import matplotlib.pyplot as plt

    results, runs = collect(config)
    rows = rank(config, results)
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"sweep": str(config.path), "target_val_loss": config.target_val_loss,
                                                "target_source": config.target_source, "ranking": rows,
                                                "runs": [asdict(r) for r in results]}, indent=2) + "\n")
    (out / "sweep.md").write_text(render_markdown(config, rows))
    if runs:
        figure = plot_comparison(list(runs.values()))
        if config.target_val_loss is not None:
            figure.axes[0].axhline(config.target_val_loss, color="black", linestyle=":",
                                   label=f"target {config.target_val_loss:.4f}")
            figure.axes[0].legend(fontsize=8)
        figure.savefig(out / "compare_loss.png", dpi=110)
        plt.close(figure)
    return out / "sweep.md"
