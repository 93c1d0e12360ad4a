"""The built wheel carries personas/ and prompts/ and works from a fresh virtual environment."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys, gymnasium as gym
import sage_gym
from sage_gym.resources import data_root
from sage_gym.scenarios import load_split
from sage_gym.prompts import default_prompts
assert sys.argv[1] in sage_gym.__file__, sage_gym.__file__
assert "_data" in str(data_root("personas")), data_root("personas")
print(len(load_split("train")), len(load_split("eval")), default_prompts().sha256()[:8])
env = gym.make("sage_gym:SageDialogue-v0", scenarios="eval")
obs, info = env.reset(seed=0)
print(env.step("That sounds hard. What happened?")[4]["emotion"])
"""


@pytest.mark.timeout(600)
def test_wheel_installs_and_finds_its_data(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("sage_gym-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "sage_gym/_data/personas/eval.jsonl" in names and "sage_gym/_data/prompts/agent_think.j2" in names
    assert any(n.startswith("agents/") for n in names)

    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    # dependencies come from the test's own environment (a .pth file), the package itself from the wheel
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([str(python), "-c", CHECK, str(fresh)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert int(lines[0]) > 0 and int(lines[1]) > 0
