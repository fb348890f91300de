"""Tune small, train big (μP): the winner of a sweep run at a small width under ``--parametrization mup``, written
into a full-width preset with ``mup_base_width`` set to the width it was tuned at.

What carries over is what μP makes width-independent (Yang et al. 2022, "Tensor Programs V"): the learning rates,
the init scale, weight decay, the optimizer and its constants. They are copied as the winner trained with them,
defaults included (a target's own ``init_std`` or ``adam_beta2`` beside a learning rate tuned under other values
would be a silent mismatch). What μP does not carry (depth, batch, sequence length, the length of training and its
schedule, clipping, the data) stays the target's own; each such difference from the tuned runs is said, on the
terminal and in the written file's header, because the tuned optimum is only known under the tuned runs' values.

Everything that can be checked without the sweep's results is checked by ``plan_transfer`` before anything trains.
"""

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from ..cli import load_preset, run_config_from_values
from ..config import SECTION_OF
from ..config_fields import flatten
from ..errors import UserError
from .config import SweepConfig

TRANSFERABLE = ("max_lr", "min_lr", "muon_lr", "init_std", "weight_decay", "adam_beta1", "adam_beta2",
                "adam_epsilon", "z_loss", "optimizer", "muon_momentum")
# What the tuned optimum depends on but μP does not make width-independent: the target keeps its own, and each
# difference from the tuned runs is reported.
NOT_TRANSFERRED = ("n_layer", "seq_len", "total_batch_tokens", "max_steps", "lr_schedule", "warmup_steps",
                   "decay_fraction", "decay_steps", "decay_shape", "grad_clip", "dropout", "bias", "qk_norm",
                   "vocab_size", "data", "mixed_precision", "spike_guard")
# What does not change what a run learns: variants may differ in these (how often it evaluates, logs or saves).
BOOKKEEPING = {key for key, section in SECTION_OF.items() if section in ("checkpoint", "evaluation", "logging", "hub")} \
    | {"compile", "check_memory", "target_val_loss", "callbacks", "metric_for_best_model", "greater_is_better",
       "load_best_model_at_end", "attn_implementation", "gradient_checkpointing", "cpu"}


@dataclass
class TransferPlan:
    """A checked ``--transfer_to TARGET --write OUT``: the sweep, the target's values, the base width and heads."""

    sweep: SweepConfig
    target: Path
    out: Path
    target_values: dict  # the target preset as written (field -> value)
    base_width: int
    n_head: int


def plan_transfer(config: SweepConfig, target: str | Path, out: str | Path) -> TransferPlan:
    """Everything about a transfer that does not need the sweep's results, refused before anything trains: the sweep
    tunes μP at its base width and its variants differ only in what μP transfers; the target is a valid preset at
    least as wide as the base, with the tuned runs' heads; ``out`` is a new file in a folder that can exist."""
    values = resolved(config.arguments(next(iter(config.variants)), config.seeds[0]))  # defaults included
    if values["parametrization"] != "mup":
        raise UserError(f"{config.path}: its runs use the standard parametrization, whose best learning rate moves "
                        "with width; tune under --parametrization mup (set it in the sweep's overrides).")
    width, n_head = values["n_embd"], values["n_head"]
    if values["mup_base_width"] != width:
        raise UserError(f"{config.path}: tune at the base width itself (mup_base_width {values['mup_base_width']} "
                        f"!= n_embd {width}): the transferred settings are the base width's.")
    varied = sorted({key for v in config.variants.values() for key in v} - set(TRANSFERABLE) - BOOKKEEPING)
    if varied:
        raise UserError(f"{config.path}: its variants differ in {', '.join(varied)}, which μP does not transfer "
                        f"across width; tune only {', '.join(TRANSFERABLE)}.")
    out = Path(out)
    _check_output(out)
    target_values = load_preset(target, say=lambda line: None)  # a valid preset, of any version's layout
    shape = resolved(target_values)
    if shape["n_head"] != n_head:
        raise UserError(f"{target}: n_head {shape['n_head']} differs from the tuned runs' {n_head}; μP here widens "
                        "at a fixed number of heads: tune with the target's n_head.")
    if shape["n_embd"] < width:
        raise UserError(f"{target}: n_embd {shape['n_embd']} is narrower than the width the sweep tunes at "
                        f"({width}); tune small, train big: transfer to a preset at least as wide as the sweep's runs.")
    return TransferPlan(config, Path(target), out, target_values, width, n_head)


def _check_output(out: Path) -> None:
    if out.exists():
        raise UserError(f"--write {out} exists; name a new file (nothing was written).")
    folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise UserError(f"--write {out}: {folder} is a file, not a folder; name a path in a folder.")


def winner(rows: list[dict]) -> dict:
    """The sweep's best variant (its summary's first row), refused when it diverged or never ran."""
    best = rows[0] if rows else None
    if best is None or best["diverged"] or not best["seeds"]:
        raise UserError("the sweep has no winner to transfer (every variant diverged or none ran); fix the sweep "
                        "and run it again.")
    return best


def resolved(values: dict) -> dict:
    """Every setting a run with these values trains with, defaults included (field -> value)."""
    return flatten(run_config_from_values(values).to_dict())


def untransferred_differences(tuned: dict, target: dict) -> list[str]:
    """``key: tuned -> target`` for each setting μP does not transfer that the target sets otherwise."""
    return [f"{key}: {tuned.get(key)!r} -> {target.get(key)!r}" for key in NOT_TRANSFERRED
            if tuned.get(key) != target.get(key)]


def write_transferred(plan: TransferPlan, rows: list[dict], say=print) -> Path:
    """The target preset (its model, data, batch and length) with the winner's transferable settings as it trained
    with them and ``parametrization: mup, mup_base_width: <the tuned width>``, written to a new file; the settings
    μP does not transfer that differ from the tuned runs are said and recorded in the file's header."""
    best = winner(rows)
    _check_output(plan.out)
    tuned = resolved(plan.sweep.arguments(best["variant"], plan.sweep.seeds[0]))
    flat = dict(plan.target_values)
    for key in TRANSFERABLE:
        if tuned.get(key) is None:
            flat.pop(key, None)
        else:
            flat[key] = tuned[key]
    flat.update(parametrization="mup", mup_base_width=plan.base_width)
    written = resolved(flat)  # (validates the preset to be written, too)
    differences = untransferred_differences(tuned, written)
    preset: dict[str, dict] = {}
    for key, value in flat.items():
        preset.setdefault(SECTION_OF[key], {})[key] = value
    ratio = written["n_embd"] / plan.base_width
    header = (f"# Written by scripts/sweep.py {plan.sweep.path} --transfer_to {plan.target} on {date.today()}: the\n"
              f"# winner of the sweep ({best['variant']}), tuned at width {plan.base_width}, transferred by μP to width "
              f"{written['n_embd']} (m = {ratio:g}{'' if math.isclose(ratio, round(ratio)) else ', not whole'})"
              f".\n# Copied as the winner trained with them: {', '.join(TRANSFERABLE)}.\n")
    if differences:
        header += ("# Not transferred by μP and set otherwise here than in the tuned runs (the optimum is only known "
                   "under the\n# tuned values; docs/mup.md):\n" + "".join(f"#   {line}\n" for line in differences))
        say(f"Note: {plan.target} differs from the tuned runs in settings μP does not transfer (the tuned optimum is "
            "only known under the tuned values):\n" + "\n".join(f"  {line}" for line in differences))
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(header + yaml.safe_dump(preset, sort_keys=False))
    return plan.out
