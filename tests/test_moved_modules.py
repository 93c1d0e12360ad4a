"""Modules that moved into packages: the old import paths still work, each with a DeprecationWarning
that points at the importing line, and re-export the very objects of the new module."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

MOVED = [
    ("sage_gym.scenario_checks", "sage_gym.scenarios.checks", "validate_sets"),
    ("sage_gym.scenario_cli", "sage_gym.scenarios.cli", "main"),
    ("sage_gym.scenario_generator", "sage_gym.scenarios.generator", "check_candidate"),
    ("sage_gym.serve", "sage_gym.servers.env_server", "ServeConfig"),
    ("sage_gym.simulators.server", "sage_gym.servers.simulator_server", "run_server_in_thread"),
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


@pytest.mark.parametrize("module", ["sage_gym.serve", "sage_gym.simulators.server"])
def test_old_server_paths_still_run_as_scripts_and_say_so(module):
    """`python -m` on an old path runs the moved server's command line, and the warning is shown
    without any -W flag (it is attributed to __main__)."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m sage_gym.servers." in out.stdout
    assert f"DeprecationWarning: {module} is deprecated" in out.stderr


@pytest.mark.parametrize("warnings_flag", [[], ["-W", "always::DeprecationWarning"]])
def test_uvicorn_still_serves_the_old_app_path(warnings_flag):
    """`uvicorn sage_gym.serve:app` (what openenv.yaml named before the move): the shim's warning,
    shown or not, does not stop uvicorn from loading the app, and the app is the moved server."""
    env = {key: value for key, value in os.environ.items() if key != "SAGE_GYM_SERVE_TOKEN"}
    server = subprocess.Popen(
        [sys.executable, *warnings_flag, "-m", "uvicorn", "sage_gym.serve:app", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        log = []
        for line in server.stderr:  # uvicorn logs to stderr; its last start-up line names the port
            log.append(line)
            if "Uvicorn running on" in line:
                break
        assert server.poll() is None, "".join(log)
        port = int(log[-1].split("http://127.0.0.1:")[1].split()[0])
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metadata").status_code == 200
        if warnings_flag:
            assert any("sage_gym.serve is deprecated" in line for line in log), "".join(log)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_openenv_manifest_names_the_new_app_path():
    import importlib

    manifest = (ROOT / "openenv.yaml").read_text()
    app_line = next(line for line in manifest.splitlines() if line.startswith("app:"))
    module, attribute = app_line.split()[1].split(":")
    assert module == "sage_gym.servers.env_server"
    assert getattr(importlib.import_module(module), attribute) is not None
