"""A sweep file: YAML naming a base preset, overrides for every run, named variants and seeds::

    base: ../cpu-tiny.yaml               # a run preset, relative to this file
    output_dir: runs/sweeps/cpu-recommendations
    seeds: [1337, 1338]
    target_val_loss: 6.2                 # a number, or the path of a reference_eval.json / evaluate JSON
    overrides: {max_steps: 300}          # every run
    variants:
      baseline: {}
      lr_3e-3: {max_lr: 3.0e-3}

Overrides are the normal arguments by field name (the ones ``pretrain.py --help`` lists).
"""

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..analysis.runs import RunReadError, read_reference_eval
from ..cli import load_preset, read_yaml_mapping
from ..config import ARGUMENT_CLASSES
from ..errors import ConfigError

KNOWN_FIELDS = {f.name for cls in ARGUMENT_CLASSES for f in fields(cls)}
# A variant's name is a folder name inside the sweep's output_dir: no separators, no "..".
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# Set by the sweep itself for every run; a variant or the overrides may not set them.
SWEEP_OWNED = ("seed", "output_dir", "resume_from_checkpoint", "overwrite_output_dir")


@dataclass
class SweepConfig:
    path: Path
    base: Path
    output_dir: Path
    variants: dict[str, dict]
    seeds: list[int] = field(default_factory=lambda: [1337])
    overrides: dict = field(default_factory=dict)
    target_val_loss: float | None = None
    target_source: str | None = None

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.output_dir / variant / f"seed{seed}"

    def runs(self) -> list[tuple[str, int]]:
        return [(variant, seed) for variant in self.variants for seed in self.seeds]

    def arguments(self, variant: str, seed: int) -> dict:
        """Every argument of one run: the base preset, the sweep's overrides, the variant's, the seed and folder."""
        values = load_preset(self.base)
        values.update(self.overrides)
        values.update(self.variants[variant])
        values.update(seed=seed, output_dir=str(self.run_dir(variant, seed)))
        return values


def _check_fields(where: str, values, path: Path) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {where} must be a mapping of argument: value.")
    unknown = sorted(set(values) - KNOWN_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown argument(s) {unknown} in {where}; see scripts/pretrain.py --help.")
    owned = sorted(set(values) & set(SWEEP_OWNED))
    if owned:
        raise ConfigError(f"{path}: {where} sets {owned}, which the sweep sets for every run (seeds come from the "
                          "sweep's seeds: list, folders from its output_dir); remove them from the variant.")
    return dict(values)


def _check_variant_name(name, path: Path) -> str:
    name = str(name)
    if not VARIANT_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"{path}: variant name {name!r} is not a plain folder name (letters, digits, '.', '_', "
                          "'+', '-'; no '/' or '..'): each variant is a folder inside the sweep's output_dir.")
    return name


def _target(raw, path: Path) -> tuple[float | None, str | None]:
    if raw is None:
        return None, None
    if isinstance(raw, (int, float)):
        return float(raw), "given in the sweep file"
    reference = Path(raw) if Path(raw).is_absolute() else path.parent / raw
    if not reference.exists() and Path(raw).exists():
        reference = Path(raw)
    try:
        return float(read_reference_eval(reference)["val_loss"]), f"measured ({reference})"
    except RunReadError as error:
        raise ConfigError(f"{path}: target_val_loss: {error}") from error


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, "Sweep file", "configs/sweeps/", "be a mapping (base, variants, seeds, ...)")
    unknown = sorted(set(raw) - {"base", "output_dir", "variants", "seeds", "overrides", "target_val_loss"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; use base, output_dir, seeds, target_val_loss, "
                          "overrides, variants.")
    if "base" not in raw or not raw.get("variants"):
        raise ConfigError(f"{path}: a sweep needs a base preset (base:) and at least one variant (variants:).")
    base = Path(raw["base"]) if Path(raw["base"]).is_absolute() else path.parent / raw["base"]
    if not base.is_file():
        raise ConfigError(f"{path}: base preset {base} does not exist.")
    variants = raw["variants"]
    if not isinstance(variants, dict):
        raise ConfigError(f"{path}: variants must map a name to its overrides.")
    seeds = raw.get("seeds", [1337])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: seeds {seeds} repeat a seed (its runs would share one folder); list each once.")
    target, source = _target(raw.get("target_val_loss"), path)
    if not isinstance(raw.get("output_dir", ""), str):
        raise ConfigError(f"{path}: output_dir must be a folder path.")
    sweep = SweepConfig(path=path, base=base, output_dir=Path(raw.get("output_dir", f"runs/sweeps/{path.stem}")),
                       variants={_check_variant_name(name, path): _check_fields(f"variant {name!r}", values, path)
                                 for name, values in variants.items()},
                       seeds=seeds, overrides=_check_fields("overrides", raw.get("overrides"), path),
                       target_val_loss=target, target_source=source)
    check_every_run(sweep)
    return sweep


def check_every_run(config: SweepConfig) -> None:
    """Every (variant, seed) must make a valid run: found now, before the first run trains, not when its turn
    comes after hours of the others."""
    from ..cli import run_config_from_values

    problems = []
    for variant in config.variants:
        try:
            run_config_from_values(config.arguments(variant, config.seeds[0]))
        except (ConfigError, ValueError) as error:
            problems.append(f"variant {variant!r}: {error}")
    if problems:
        raise ConfigError(f"{config.path}: " + " ".join(problems))


def describe(config: SweepConfig) -> str:
    return json.dumps({"base": str(config.base), "variants": config.variants, "seeds": config.seeds,
                       "overrides": config.overrides, "target_val_loss": config.target_val_loss}, indent=2)
