"""Command line + YAML presets -> ``RunConfig`` with transformers' ``HfArgumentParser`` (used by the scripts; the
loop itself never parses arguments).

A preset is YAML with one section per component (``training/config.py`` lists them)::

    model: {n_layer: 12, n_head: 12, n_embd: 768}
    train: {max_steps: 19073, total_batch_tokens: 524288}
    optimizer: {max_lr: 6.0e-4, min_lr: 6.0e-5}

Command-line flags (``--max_lr 3e-4``) override the preset; unknown keys are errors that name the file. A preset of
an earlier version, whose ``train`` section also held the optimizer, schedule and other fields, is read with a
one-line note saying where they belong now.
"""

import argparse
from dataclasses import fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .config import ARGUMENT_CLASSES, SECTION_OF, SECTIONS, RunConfig, legacy_sections
from .errors import ConfigError

__all__ = ["ConfigError", "HelpFormatter", "build_parser", "run_config_from_values", "load_preset", "parse_run_config"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The scripts' docstrings as written (examples keep their lines), and every option's default shown, on lines as
    wide as the project's code (120 columns) so that each option takes one or two lines, not five."""

    def __init__(self, prog, indent_increment=2, max_help_position=34, width=None):
        super().__init__(prog, indent_increment, max_help_position, width=width or 120)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        name = action.option_strings[0]  # transformers adds --dashed-aliases of every --field_name: shown once
        return name if action.nargs == 0 else f"{name} {self._format_args(action, action.dest.upper())}"

    def _format_args(self, action, default_metavar):
        return "N" if action.nargs is None and action.type in (int, float) else \
            "X" if action.nargs in (None, "?") else super()._format_args(action, default_metavar)


# Every option is listed below the usage line, by section: the usage line itself names the forms only.
RUN_USAGE = "%(prog)s [--config PRESET.yaml] [--OPTION VALUE ...]   (options by section below; flags override the preset)"


def build_parser(description: str | None = None) -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES, description=description, formatter_class=HelpFormatter,
                              usage=RUN_USAGE)
    parser.add_argument("--config", type=str, default=None,
                        help="YAML preset (configs/*.yaml); command-line flags override its values.")
    return parser


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (plain YAML keeps the last value
    silently, so a preset that sets ``max_lr`` twice would train with whichever came last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {seen[key]} and line {line}): the later value would "
                    "silently win; keep one", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: Path, kind: str, where_to_look: str, expected: str) -> dict:
    """A YAML file that must hold a mapping (a preset, a sweep file), with errors that name the file."""
    if not path.is_file():
        raise ConfigError(f"{kind} {path} does not exist; see {where_to_look}.")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{kind} {path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} {path} must {expected}.")
    return raw


def load_preset(path: str | Path, say=print) -> dict:
    """Flatten a sectioned YAML preset into field -> value, rejecting unknown sections and fields (a field in another
    component's section is refused, naming its section; an earlier version's ``train`` section is read with a
    note)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "Config file", "configs/ for the presets",
                            f"hold a mapping of sections ({', '.join(SECTIONS)})")
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {section!r}; use {', '.join(SECTIONS)}.")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of field: value, not a "
                              f"{type(values).__name__}.")
    raw, moved = legacy_sections(raw)
    if moved:
        say(f"Note: {path} has the layout of an earlier version (its train section held {len(moved)} field(s) that "
            f"now have their own sections: {', '.join(moved[:6])}{' ...' if len(moved) > 6 else ''}); read as such.")
    flat = {}
    for section, values in raw.items():
        known = {f.name for f in fields(SECTIONS[section])}
        for key, value in (values or {}).items():
            if key not in known:
                home = f" (it belongs to the {SECTION_OF[key]!r} section)" if key in SECTION_OF else ""
                raise ConfigError(f"{path}: unknown field {key!r} in section {section!r}{home}; known fields: "
                                  f"{', '.join(sorted(known))}.")
            flat[key] = value
    return resolve_preset_paths(flat, path)


PATH_FIELDS = ("data", "hellaswag_path", "init_from")


def resolve_preset_paths(flat: dict, preset: Path) -> dict:
    """A relative path in a preset that does not exist from the working directory is taken relative to the
    repository holding the preset (configs/<name>.yaml -> the repository root), so the presets work from anywhere."""
    root = preset.resolve().parent.parent
    for key in PATH_FIELDS:
        value = flat.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and not Path(value).exists() \
                and (root / value).exists():
            flat[key] = str(root / value)
    return flat


def _compose(parsed) -> RunConfig:
    return RunConfig.from_sections(dict(zip(SECTIONS, parsed[:len(SECTIONS)])))


def run_config_from_values(values: dict) -> RunConfig:
    """A RunConfig from field -> value (a flattened preset plus overrides), validated like the command line."""
    parser = build_parser()
    parser.set_defaults(**values)
    try:
        return _compose(parser.parse_args_into_dataclasses(args=[]))
    except ConfigError:
        raise
    except ValueError as error:  # argparse's and HfArgumentParser's own complaints about a value
        raise ConfigError(str(error)) from error


def parse_run_config(argv: list[str] | None = None, description: str | None = None) -> RunConfig:
    parser = build_parser(description)
    known, _ = parser.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**load_preset(known.config))
    try:
        return _compose(parser.parse_args_into_dataclasses(args=argv))
    except ConfigError:
        raise
    except ValueError as error:  # argparse's and HfArgumentParser's own complaints about a value
        raise ConfigError(str(error)) from error
