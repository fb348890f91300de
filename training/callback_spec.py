"""How a callback is named in a preset or on the command line (``--callbacks``): ``"name"``,
``"name:key=value,key=value"`` or a mapping with ``name``. Read by the trainer (to build callbacks) and by the memory
planner (to count the weight copies some callbacks hold), so it sits below both.

A leaf module (imports only the project's error types).
"""

import yaml

from .errors import ConfigError


def parse_callback_spec(spec) -> tuple[str, dict]:
    """``"name"`` / ``"name:key=value,key=value"`` / ``{"name": ..., key: value}`` -> (name, kwargs)."""
    if isinstance(spec, dict):
        spec = dict(spec)
        return spec.pop("name"), spec
    name, _, rest = str(spec).partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Callback option {item!r} in {spec!r} must look like key=value.")
        kwargs[key.strip()] = yaml.safe_load(value)
    return name.strip(), kwargs
