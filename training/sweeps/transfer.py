"""Tune small, train big (μP): the winner of a sweep run at a small width under ``--parametrization mup``, written
into a full-width preset with ``mup_base_width`` set to the width it was tuned at.

What carries over is what μP makes width-independent (Yang et al. 2022, "Tensor Programs V"): the learning rates,
the init scale, weight decay and Adam's constants. What does not (depth, batch size, the length of training and its
warmup, the data) is never copied from the small runs: the target preset keeps its own, and a winner that differs
from the others in one of those is refused (its advantage would not transfer).
"""

import math
from datetime import date
from pathlib import Path

import yaml

from ..cli import load_preset, run_config_from_values
from ..config import SECTION_OF
from ..errors import UserError
from .config import SweepConfig

TRANSFERABLE = ("max_lr", "min_lr", "muon_lr", "init_std", "weight_decay", "adam_beta1", "adam_beta2",
                "adam_epsilon", "z_loss")


def winner(rows: list[dict]) -> dict:
    """The sweep's best variant (its summary's first row), refused when it diverged or never ran."""
    best = rows[0] if rows else None
    if best is None or best["diverged"] or not best["seeds"]:
        raise UserError("the sweep has no winner to transfer (every variant diverged or none ran); fix the sweep "
                        "and run it again.")
    return best


def tuned_settings(config: SweepConfig, variant: str) -> dict:
    """The winner's transferable settings, and the width they were tuned at; refused when the sweep's runs were not
    μP at their own width (a standard-parametrization optimum moves with width) or when the variants differ in a
    setting μP does not transfer."""
    values = config.arguments(variant, config.seeds[0])
    if values.get("parametrization") != "mup":
        raise UserError(f"{config.path}: its runs use the standard parametrization, whose best learning rate moves "
                        "with width; tune under --parametrization mup (set it in the sweep's overrides).")
    width = int(values.get("n_embd") or 768)
    if int(values.get("mup_base_width") or width) != width:
        raise UserError(f"{config.path}: tune at the base width itself (mup_base_width {values['mup_base_width']} "
                        f"!= n_embd {width}): the transferred settings are the base width's.")
    untransferable = sorted({key for v in config.variants.values() for key in v} - set(TRANSFERABLE))
    if untransferable:
        raise UserError(f"{config.path}: its variants differ in {', '.join(untransferable)}, which μP does not "
                        f"transfer across width; tune only {', '.join(TRANSFERABLE)}.")
    return {"width": width, "n_head": int(values.get("n_head") or 12),
            "settings": {key: values[key] for key in TRANSFERABLE if values.get(key) is not None}}


def write_transferred(config: SweepConfig, rows: list[dict], target: str | Path, out: str | Path) -> Path:
    """The target preset (its model, data, batch and length) with the winner's settings and
    ``parametrization: mup, mup_base_width: <the tuned width>``, written to ``out`` (never over an existing file)."""
    out, best = Path(out), winner(rows)
    tuned = tuned_settings(config, best["variant"])
    if out.exists():
        raise UserError(f"--write {out} exists; name a new file (nothing was written).")
    flat = load_preset(target, say=lambda line: None)  # a valid preset, of any version's layout (errors name it)
    flat.update(tuned["settings"], parametrization="mup", mup_base_width=tuned["width"])
    n_head = int(flat.get("n_head") or 12)
    if n_head != tuned["n_head"]:
        raise UserError(f"{target}: n_head {n_head} differs from the tuned runs' {tuned['n_head']}; μP here widens "
                        "at a fixed number of heads: tune with the target's n_head.")
    run_config_from_values(flat)  # the preset to be written is valid (n_embd a multiple of the base width's heads...)
    preset: dict[str, dict] = {}
    for key, value in flat.items():
        preset.setdefault(SECTION_OF[key], {})[key] = value
    ratio = float(flat.get("n_embd") or 768) / tuned["width"]
    header = (f"# Written by scripts/sweep.py {config.path} --transfer_to {target} on {date.today()}: the winner of\n"
              f"# the sweep ({best['variant']}), tuned at width {tuned['width']}, transferred by μP to width "
              f"{flat.get('n_embd')} (m = {ratio:g}{'' if math.isclose(ratio, round(ratio)) else ', not a whole number'}"
              ").\n# Depth, batch and horizon are the target's own: μP does not transfer them (docs/mup.md).\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(preset, sort_keys=False))
    return out
