"""The calibrated built-in user (SageDialogue-v1's default) and its fit on SAGE's recorded judgments."""

from __future__ import annotations

import builtins
import json
import lzma

import gymnasium as gym
import numpy as np
import pytest

import sage_gym  # noqa: F401  (registers the environments)
from sage_gym.calibrate import HELD_OUT_JUDGE, load_vendored, summarize
from sage_gym.calibrate import fit as calibration_fit
from sage_gym.scenarios import load_split
from sage_gym.simulators import BuiltinSimulator, make_simulator
from sage_gym.simulators import calibrated
from sage_gym.simulators.base import Rules, UserState
from sage_gym.simulators.builtin import react_sync
from sage_gym.simulators.reply_value import shipped_model


def test_versions_are_selectable_and_manifests_differ():
    latest, legacy = make_simulator("builtin-v1"), make_simulator("builtin")
    assert (latest.version, legacy.version) == (1, 0)
    assert latest.manifest()["version"] == 2 and "calibration" in latest.manifest()
    assert legacy.manifest() == {"kind": "builtin", "model": "sage_gym.builtin", "version": 1, "noise_std": 0.2}
    with pytest.raises(ValueError, match="version"):
        BuiltinSimulator(version=7)


def test_the_env_picks_its_user():
    v0 = gym.make("SageDialogue-v0", scenarios="eval")
    assert v0.unwrapped.simulator.version == 0
    assert gym.make("SageDialogue-v0", scenarios="eval", simulator="builtin-v1").unwrapped.simulator.version == 1
    assert sage_gym.ENV_ID == "SageDialogue-v0"


def test_shipped_files_name_their_source_and_load():
    weights = calibrated.shipped_weights()
    assert "deepseek-v3" in weights.source and set(weights.parts) == set(calibrated.PARTS)
    model = shipped_model()
    assert "deepseek-v3" in model.source and len(model.weight) > 1000


def _first_reply_change(scenario, reply, version):
    state = UserState(emotion=40, rules=Rules(), turn=0, seed=3)
    return react_sync(scenario, state, [{"role": "user", "content": scenario.first_message}], reply, version).change


def test_a_long_careful_chinese_reply_is_not_punished_for_its_length():
    """The rule-based user flagged 77% of GPT-4.1's replies too long; SAGE's users liked them."""
    dialogues = [d for d in load_vendored() if d.model == "gpt-4.1"][:30]
    v0 = [_first_reply_change(d.scenario, d.turns[0].reply, 0) for d in dialogues]
    v1 = [_first_reply_change(d.scenario, d.turns[0].reply, 1) for d in dialogues]
    assert np.mean(v1) > np.mean(v0)
    assert np.mean(v1) > 0


def test_reply_value_reads_chinese_only():
    english = load_split("eval")[0]
    parts_en, _ = calibration_fit.builtin.calibrated_parts(english, [{"role": "user", "content": english.first_message}], "That sounds hard.", 0.0)
    assert parts_en["reply_value"] == 0.0
    assert shipped_model().value("") == 0.0


def test_fitting_never_opens_the_held_out_judge(monkeypatch):
    """The fit reads the DeepSeek-V3 judge only: no GPT-4o file is opened, and its dialogues are refused."""
    opened = []
    real_lzma_open, real_open = lzma.open, builtins.open

    def spy_lzma(path, *args, **kwargs):
        opened.append(str(path))
        return real_lzma_open(path, *args, **kwargs)

    def spy_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lzma, "open", spy_lzma)
    monkeypatch.setattr(builtins, "open", spy_open)
    dialogues = [d for d in load_vendored() if d.model in ("gpt-4.1", "qwen2.5-72b")][:24]
    items = calibration_fit.examples(dialogues)
    weights = calibration_fit.fit_weights(items, np.zeros(len(items)), "test")
    assert set(weights.parts) == set(calibrated.PARTS)
    assert opened and not any(HELD_OUT_JUDGE in p for p in opened)
    monkeypatch.undo()
    held_out = load_vendored(judge=HELD_OUT_JUDGE)[:2]
    with pytest.raises(ValueError, match="deepseek-v3"):
        calibration_fit.examples(held_out)


def test_fit_orders_a_better_model_above_a_worse_one_on_the_fitting_data():
    """A small fit (two models) through the public pieces: the model SAGE scores higher gains more."""
    dialogues = [d for d in load_vendored() if d.model in ("gpt-4.1", "qwen2.5-72b")][:60]
    items = calibration_fit.examples(dialogues)
    weights = calibration_fit.fit_weights(items, np.zeros(len(items)), "test")
    changes = iter(calibration_fit.predicted_change(e, 0.0, weights) for e in items)
    per_dialogue = [[next(changes) for _ in d.turns] for d in dialogues]
    m = summarize(dialogues, per_dialogue, bootstrap=10)
    rows = {r.model: r for r in m.models}
    assert rows["gpt-4.1"].our_change > rows["qwen2.5-72b"].our_change


def test_weights_file_round_trips():
    weights = calibrated.shipped_weights()
    again = calibrated.Weights.from_json(json.loads(json.dumps(weights.to_json())))
    assert again == calibrated.Weights.from_json(weights.to_json())


@pytest.mark.slow
def test_calibrate_fit_reproduces_the_shipped_files(tmp_path):
    """`python -m sage_gym.calibrate fit` on the vendored data writes exactly what ships (minutes)."""
    from importlib import resources

    from sage_gym.calibrate.__main__ import main

    assert main(["fit", "--out", str(tmp_path)]) == 0
    shipped = resources.files("sage_gym.simulators").joinpath("data")
    for name in ("builtin_v1.json", "reply_value_zh.json.gz"):
        assert (tmp_path / name).read_bytes() == shipped.joinpath(name).read_bytes(), name


def test_chance_relevance_is_what_unrelated_openings_share():
    """The per-language baselines of `relevance` are the mean cosine of unrelated users' openings."""
    from sage_gym import embedding

    def mean_unrelated(texts):
        vectors = embedding.encode(texts)
        sims = vectors @ vectors.T
        return float(sims[~np.eye(len(texts), dtype=bool)].mean())

    english = [s.first_message for s in load_split("train")][:240] + [s.first_message for s in load_split("eval")]
    chinese = sorted({d.scenario.first_message for d in load_vendored()})
    assert mean_unrelated(english) == pytest.approx(calibrated.CHANCE_RELEVANCE["en"], abs=0.01)
    assert mean_unrelated(chinese) == pytest.approx(calibrated.CHANCE_RELEVANCE["zh"], abs=0.005)
