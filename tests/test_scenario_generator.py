"""The scenario generator against the local OpenAI-compatible server."""

import asyncio
import subprocess
import sys

import pytest

from sage_gym.scenarios.checks import balance_table, find_duplicates, validate_sets
from sage_gym.scenarios.generator import check_candidate, generate, thinnest_cell, writer_request
from sage_gym.scenarios import CHARACTER_TYPES, HIDDEN_INTENTIONS, ScenarioSet, load_scenarios, load_split
from sage_gym.simulators.openai_sim import OpenAISimulator
from sage_gym.servers.simulator_server import run_server_in_thread


@pytest.fixture(scope="module")
def server_url():
    with run_server_in_thread(port=0) as url:
        yield url


def _client(url):
    return OpenAISimulator(model="sage_gym.builtin", base_url=url, max_retries=2, backoff_initial=0.01, timeout=10)


def test_generator_writes_valid_new_scenarios_and_fills_thin_cells(server_url, tmp_path):
    reference = list(load_split("eval"))[:30]  # leaves most cells thin
    out = tmp_path / "gen.jsonl"
    report = asyncio.run(generate(_client(server_url), out, 6, reference, seed=1, progress=False))
    generated = load_scenarios(out)
    assert len(generated) == 6 and report.accepted == 6
    check = validate_sets([generated], library=True)
    assert check.ok, check.errors
    assert find_duplicates([("ref", s) for s in reference] + [("gen", s) for s in generated]) == []
    before = balance_table(reference)
    all_cells = [(i, c) for i in HIDDEN_INTENTIONS for c in CHARACTER_TYPES]
    first = generated[0]
    assert before.get((first.hidden_intention, first.character_type), 0) == min(before.get(cell, 0) for cell in all_cells)


def test_generator_resumes_where_it_stopped(server_url, tmp_path):
    reference = list(load_split("eval"))[:20]
    out = tmp_path / "gen.jsonl"
    asyncio.run(generate(_client(server_url), out, 2, reference, seed=3, progress=False))
    first = out.read_text().splitlines()
    asyncio.run(generate(_client(server_url), out, 4, reference, seed=3, progress=False))
    lines = out.read_text().splitlines()
    assert lines[:2] == first and len(lines) == 4
    assert len({s.id for s in load_scenarios(out)}) == 4


def test_duplicates_and_wrong_cells_are_rejected():
    known = list(load_split("eval"))[:5]
    original = known[0]
    request = writer_request("gen-0001", (original.hidden_intention, original.character_type), "work", known)
    copy = original.to_dict()
    scenario, reason = check_candidate(copy, request, known)
    assert scenario is None and reason.startswith("duplicate")
    wrong = {**copy, "hidden_intention": "venting" if original.hidden_intention != "venting" else "no_blame"}
    assert check_candidate(wrong, request, known) == (None, "wrong cell")


def test_thinnest_cell():
    import numpy as np

    counts = {(i, c): 3 for i in ("venting", "no_blame") for c in ("negative", "passive")}
    assert thinnest_cell(counts, np.random.default_rng(0)) not in counts


def test_generate_command_line(server_url, tmp_path):
    ref = tmp_path / "ref.jsonl"
    from sage_gym.scenarios import write_scenarios

    write_scenarios(list(load_split("eval"))[:10], ref)
    out = tmp_path / "gen.jsonl"
    cmd = [sys.executable, "-m", "sage_gym.scenarios", "generate", "--n", "2", "--out", str(out), "--against", str(ref),
           "--base-url", server_url, "--model", "sage_gym.builtin"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"accepted": 2' in result.stdout
    assert len(ScenarioSet(load_scenarios(out))) == 2
