"""The house the import graph draws: every part of ``training/`` imports only parts listed before it (so there are
no cycles and nothing imports upward), ``modeling/`` imports nothing of ``training/``, scripts stay thin, and no
function is longer than a screen. A new module that breaks this fails here, with the edge or the function named."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# From the bottom of the house up. Each component's ``config.py`` (its section of the run's configuration) is its
# own layer, "sections", below the configuration that composes them and above the leaf modules it uses.
ORDER = [
    "modeling",
    "errors", "layout", "config_fields", "storage", "cadence", "distributed", "spike_rule", "ownership",
    "callback_spec", "schedules",
    "sections", "config", "cli",
    "optim", "data", "evaluation", "guards", "diagnostics", "run", "planning",
    "trainer",
    "analysis", "hub", "sweeps",
]
MAX_FUNCTION_LINES = 60
MAX_SCRIPT_LINES = 180  # thin entry points: parse, call the library, report


def component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "modeling":
        return "modeling"
    if parts[0] != "training" or len(parts) < 2:
        return None
    if parts[1:3] == ["optim", "schedules"]:
        return "schedules"  # the registry of schedule kinds, whose names the optimizer section's choices read
    if len(parts) >= 3 and parts[2] == "config" and parts[1] != "sweeps":  # a sweep file is not a run section
        return "sections"
    return parts[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, relative ones resolved, lazy ones included."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                found += [(node.lineno, f"{target}.{a.name}" if not node.module else target) for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def import_edges():
    for path in sorted((REPO / "training").rglob("*.py")) + sorted((REPO / "modeling").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        source = component(module.removesuffix(".__init__"))
        for line, target in imported_modules(path):
            other = component(target)
            if other is not None and other != source:
                yield path.relative_to(REPO), line, source, other


def test_every_part_imports_only_parts_below_it():
    known = set(ORDER)
    upward = []
    for path, line, source, target in import_edges():
        assert source in known and target in known, f"{path}:{line}: add {source!r} or {target!r} to ORDER"
        if ORDER.index(target) > ORDER.index(source):
            upward.append(f"{path}:{line}: {source} imports {target}, which is above it")
    assert not upward, "\n".join(upward)


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted((REPO / "training").rglob("*.py")) + sorted((REPO / "modeling").rglob("*.py")) + \
            sorted((REPO / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_scripts_are_thin():
    fat = [f"{p.name}: {n} lines" for p in sorted((REPO / "scripts").glob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_SCRIPT_LINES]
    assert not fat, fat
