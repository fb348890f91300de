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
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..analysis.runs import RunReadError, read_reference_eval
from ..cli import load_preset, read_yaml_mapping
from ..loop.arguments import ARGUMENT_CLASSES, ConfigError

KNOWN_FIELDS = {f.name for cls in ARGUMENT_CLASSES for f in fields(cls)}


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
    return dict(values)


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
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers.")
    target, source = _target(raw.get("target_val_loss"), path)
    return SweepConfig(path=path, base=base, output_dir=Path(raw.get("output_dir", f"runs/sweeps/{path.stem}")),
                       variants={str(name): _check_fields(f"variant {name!r}", values, path)
                                 for name, values in variants.items()},
                       seeds=seeds, overrides=_check_fields("overrides", raw.get("overrides"), path),
                       target_val_loss=target, target_source=source)


def describe(config: SweepConfig) -> str:
    return json.dumps({"base": str(config.base), "variants": config.variants, "seeds": config.seeds,
                       "overrides": config.overrides, "target_val_loss": config.target_val_loss}, indent=2)
