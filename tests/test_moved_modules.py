"""Modules that moved into packages: the old import paths still work, each with a DeprecationWarning
that points at the importing line, and re-export the very objects of the new module."""

import importlib
import subprocess
import sys

import pytest

MOVED = [
    ("sage_gym.scenario_checks", "sage_gym.scenarios.checks", "validate_sets"),
    ("sage_gym.scenario_cli", "sage_gym.scenarios.cli", "main"),
    ("sage_gym.scenario_generator", "sage_gym.scenarios.generator", "check_candidate"),
]


@pytest.mark.parametrize("old, new, name", MOVED)
def test_old_path_warns_and_reexports(old, new, name):
    sys.modules.pop(old, None)  # a module warns once, on its first import
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_old_path_warning_names_the_importing_line():
    """stacklevel=2: the warning is reported at the `import` that uses the old path, not inside the shim."""
    code = "import warnings\nwarnings.simplefilter('always')\nimport sage_gym.scenario_checks\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "<string>:3: DeprecationWarning: sage_gym.scenario_checks is deprecated" in out.stderr


def test_old_path_reexports_private_names_too():
    sys.modules.pop("sage_gym.scenario_checks", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("sage_gym.scenario_checks")
    from sage_gym.scenarios import checks

    assert old._UNIT is checks._UNIT


def test_scenarios_package_keeps_its_names():
    """Every name imported from `sage_gym.scenarios` before it became a package, without a warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from sage_gym.scenarios import (  # noqa: F401
            CHARACTER_TYPES,
            EMOTIONAL_INTENTIONS,
            HIDDEN_INTENTIONS,
            INTENTION_TEXT,
            RATIONAL_INTENTIONS,
            SAGE_TASKS,
            SAGE_THEME_MARKER,
            SPLITS,
            Background,
            Persona,
            Scenario,
            ScenarioError,
            ScenarioSet,
            _has_cjk,
            from_sage,
            iter_jsonl,
            load_scenarios,
            load_split,
            resolve_scenarios,
            to_sage,
            write_scenarios,
        )


def test_python_m_scenarios_runs_the_package_main():
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", "sage_gym.scenarios", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "validate" in out.stdout and "import-sage" in out.stdout and "generate" in out.stdout
