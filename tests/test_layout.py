"""The codebase's shape: import directions between stages, and the shared names living only in ``training.layout``."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from training import layout
from training.layout import RunLayout, Tags, checkpoint_name, checkpoint_step, run_of_model_folder

REPO = Path(__file__).resolve().parents[1]


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, function-local imports included, relative imports made absolute."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def imports_of(folder: str) -> dict[Path, set[str]]:
    return {path: imported_modules(path) for path in python_files(folder)}


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {module}" for path, modules in imports_of(folder).items()
            for module in sorted(modules) if module.startswith(forbidden)]


def test_modeling_imports_nothing_of_training():
    assert offenders("modeling", ("training",)) == []


def test_analysis_imports_nothing_of_the_loop_evaluation_or_hub():
    assert offenders("training/analysis", ("training.trainer", "training.evaluation", "training.hub", "training.cli")) == []


def test_the_loop_and_its_components_import_neither_the_cli_nor_analysis_nor_hub():
    for folder in ("training/trainer", "training/optim", "training/run", "training/guards", "training/diagnostics",
                   "training/planning"):
        assert offenders(folder, ("training.cli", "training.analysis", "training.hub", "training.sweeps")) == []


def test_earlier_stages_do_not_import_later_ones():
    assert offenders("training/data", ("training.evaluation", "training.trainer", "training.analysis", "training.hub",
                                       "training.cli")) == []
    assert offenders("training/evaluation", ("training.trainer", "training.analysis", "training.hub",
                                             "training.cli")) == []


def test_only_the_scripts_use_the_sweeps():
    for stage in ("training/data", "training/evaluation", "training/trainer", "training/analysis", "training/hub"):
        assert offenders(stage, ("training.sweeps",)) == []


def test_layout_is_a_leaf():
    assert {m for m in imported_modules(REPO / "training" / "layout.py") if m.startswith(("training", "modeling"))} \
        == set()


def test_trainer_import_closure_has_no_cli_analysis_hub_or_matplotlib():
    code = ("import sys, training.trainer.trainer; "
            "print('\\n'.join(m for m in sys.modules if m.startswith(('training.', 'matplotlib'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO).stdout.split()
    assert "training.trainer.trainer" in loaded
    # (the hub's configuration section is part of every run's configuration; the hub's code is not loaded)
    assert [m for m in loaded if m.startswith(("training.cli", "training.analysis", "training.hub", "matplotlib"))
            and m not in ("training.hub", "training.hub.config")] == []


def test_no_script_touches_sys_path():
    for path in python_files("scripts"):
        tree = ast.parse(path.read_text())
        touched = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "path"
                   and isinstance(node.value, ast.Name) and node.value.id == "sys"]
        assert not touched, f"{path.name} edits sys.path"


def test_no_script_shadows_an_installed_library():
    import importlib.util

    for path in python_files("scripts"):
        assert importlib.util.find_spec(path.stem) is None, f"scripts/{path.name} shadows the {path.stem} module"


# ----------------------------------------------------------------------------------------------- literals
def _shared_names() -> set[str]:
    """Tag names and the run-folder names distinctive enough to search for (generic words such as "data" or
    "model" are used as plain English keys elsewhere)."""
    tags = {value for name, value in vars(Tags).items() if name.isupper()} - {Tags.SAMPLES, Tags.CONFIG_TEXT}
    files = {layout.CONFIG_FILE, layout.LEGACY_TENSORBOARD_DIR, layout.REFERENCE_EVAL_FILE, layout.CHECKPOINTS_DIR,
             layout.FINAL_DIR, layout.TRAINING_STATE_FILE, layout.RUN_CONFIG_FILE}
    return tags | files


def _string_constants(tree: ast.AST):
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            docstrings.add(id(node.body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_no_tag_or_run_folder_literal_outside_the_layout_module():
    names = _shared_names()
    found = []
    for path in python_files("training", "scripts"):
        if path.name == "layout.py":
            continue
        for node in _string_constants(ast.parse(path.read_text())):
            value = node.value
            if value in names or value.startswith("step_") or any(
                    value.startswith(tag) for tag in names if tag.endswith("/")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {value!r}")
    assert found == []


# ----------------------------------------------------------------------------------------------- names
def test_checkpoint_names_round_trip():
    assert checkpoint_name(1000) == "step_0001000"
    assert checkpoint_step(checkpoint_name(42)) == 42
    assert checkpoint_step(layout.temporary_name(checkpoint_name(42))) is None
    assert checkpoint_step("final") is None


@pytest.mark.parametrize("folder, expected", [
    ("runs/seed/final", ("runs/seed", "final")),
    ("runs/seed/checkpoints/step_0000500/model", ("runs/seed", "step_0000500")),
    ("runs/seed/checkpoints/step_0000500", ("runs/seed", "step_0000500")),
    ("gpt2", None),
    ("some/folder/model", None),
])
def test_run_of_model_folder(folder, expected):
    found = run_of_model_folder(folder)
    assert (None if found is None else (str(found[0].root), found[1])) == expected


def test_run_layout_paths_agree_with_the_helpers(tmp_path):
    run = RunLayout(tmp_path / "run")
    assert run.checkpoint_model_dir(7).parent == run.checkpoint_dir(7)
    assert run_of_model_folder(run.checkpoint_model_dir(7)) == (run, checkpoint_name(7))
    assert run_of_model_folder(run.final_dir) == (run, layout.FINAL_DIR)


def test_a_checkpoint_of_an_abandoned_branch_belongs_to_the_run_above_it(tmp_path):
    """A cool-down of such a checkpoint must land beside the run, never inside its checkpoints/ folder."""
    from training.layout import run_of_checkpoint

    run = tmp_path / "run"
    assert run_of_checkpoint(run / "checkpoints" / "step_0000006") == (run, None)
    assert run_of_checkpoint(run / "checkpoints" / "abandoned" / "after_step_0000002_x" / "step_0000006") == \
        (run, "after_step_0000002_x")
