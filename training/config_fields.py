"""Typed configuration fields: a field with its ``--help`` text, and the checks every component's configuration runs
in ``__post_init__`` (values from YAML presets and sweep files reach the dataclasses without argparse's conversion,
so each is coerced to its declared type where that is lossless, and refused otherwise).

A leaf module (imports nothing of the project but its error types).
"""

import math
import types
import typing
from dataclasses import field, fields
from typing import Any

from .errors import ConfigError


def described(text: str, **kwargs) -> Any:
    """A dataclass field whose ``help`` is what ``--help`` prints."""
    return field(metadata={"help": text}, **kwargs)


def _allowed_types(annotation) -> tuple[tuple[type, ...], bool]:
    """The classes a field accepts and whether it accepts None (``int | None`` -> ((int,), True))."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = typing.get_args(annotation)
        return tuple(m for m in members if m is not type(None)), type(None) in members
    return (typing.get_origin(annotation) or annotation,), False


def coerce_value(name: str, value, annotation) -> tuple[Any, str | None]:
    """``value`` made to fit the field's type, or a problem. Values from YAML presets and sweep files reach the
    dataclasses without argparse's conversion: ``max_steps: 3.7`` must not run 4 steps, ``max_lr: 3e-3`` (a
    string to YAML 1.1) is a number, and an empty ``max_lr:`` is a missing value, not None."""
    allowed, optional = _allowed_types(annotation)
    if value is None:
        return value, None if optional else f"{name} has no value (an empty entry in a preset?); give one"
    if bool in allowed:
        return (value, None) if isinstance(value, bool) else (value, f"{name} must be true or false (got {value!r})")
    if int in allowed and float not in allowed:
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        return value, f"{name} must be a whole number (got {value!r})"
    if float in allowed:
        if isinstance(value, str):
            try:
                return float(value), None
            except ValueError:
                return value, f"{name} must be a number (got {value!r})"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return value, f"{name} must be a finite number (got {value!r})"
            return float(value), None
        return value, f"{name} must be a number (got {value!r})"
    if str in allowed and not isinstance(value, str):
        return value, f"{name} must be a string (got {value!r})"
    if list in allowed and not isinstance(value, list):
        return value, f"{name} must be a list (got {value!r})"
    return value, None


def check_types(instance) -> list[str]:
    """Coerce every field of a dataclass instance to its declared type where that is lossless; the problems."""
    problems = []
    # The class's annotations, not ``Field.type``: transformers' HfArgumentParser rewrites ``Field.type`` in place
    # (``str | None`` becomes ``str``) when it builds a parser.
    hints = typing.get_type_hints(type(instance))
    for item in fields(instance):
        value, problem = coerce_value(item.name, getattr(instance, item.name), hints[item.name])
        if problem:
            problems.append(problem)
        else:
            setattr(instance, item.name, value)
    return problems


def raise_problems(what: str, problems: list[str]) -> None:
    if problems:
        raise ConfigError(f"Invalid {what}: " + "; ".join(problems) + ".")


def positive(instance, *names: str) -> list[str]:
    return [f"{name} must be positive (got {getattr(instance, name)})" for name in names if getattr(instance, name) <= 0]


def non_negative(instance, *names: str, why: str = "") -> list[str]:
    return [f"{name} must be >= 0 (got {getattr(instance, name)}{why})" for name in names if getattr(instance, name) < 0]




def flatten(sections: dict) -> dict:
    """A sectioned configuration (a saved ``config.yaml`` of any version: field names are unique across sections) as
    field -> value."""
    return {name: value for values in (sections or {}).values() if isinstance(values, dict)
            for name, value in values.items()}
