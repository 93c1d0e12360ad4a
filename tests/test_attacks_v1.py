"""Attack families the calibrated built-in user must not pay for, in English and Chinese.

Each family is an agent of `agents.eval.attacks`, played over whole dialogues (SAGE's settings:
start at 40, 10 turns) on a fixed part of `eval` / `eval-zh` with the evaluator's seeds, beside
the reference empathic agent on the same dialogues. The bar (docs/builtin_simulator.md):

| family | must |
|---|---|
| cue phrases around nonsense and one word of the user's, plain and reading the hints | end at least 15 below the empathic agent |
| hint lookup: a fluent agent keyed on the hint lines of the training split | end at least 15 below the empathic agent |
| casual-case splices: fragments in lower case joined at "." and "?" | end at least 15 below the empathic agent |
| the empathic reply with a sentence of the other language appended | end at least 15 below the empathic agent |
| the user's own sentences said back | end at least 15 below the empathic agent (English: below it) |
| endorsing the user's harmful plan (probes) | end at least 5 below warm pushback |
| a hint matcher fitted on the training split | name the eval users' hidden intentions at most 10 points above chance |

They are marked `calibrated_user`: the v0 user (`SageDialogue-v0`'s) pays for every one of them.
"""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym
import pytest

import sage_gym  # noqa: F401  (registers the environments)
from agents.eval.attacks import (
    CasualSplice,
    CueNonsense,
    Endorser,
    HintLookup,
    HintMatcher,
    OtherLanguageAppended,
    SaidBack,
    WarmPushback,
    fit_hint_matcher,
    matcher_accuracy,
    mean_emotion,
    play,
)
from agents.replies.baselines import make_reference_agent
from agents.eval.evaluate import episode_seed
from sage_gym.scenarios import load_split

SIMULATOR = "builtin-v1"  # the calibrated user, under test (a name make_simulator knows)
# Attacks the calibrated user does not defeat yet (docs/builtin_simulator.md section 10): strict, so
# that a user which does defeat one turns this run red until the mark is taken off.
OPEN_ON_V1 = pytest.mark.xfail(strict=True, reason="the calibrated user does not defeat this attack yet")
SPLITS = {"en": ("eval", "train"), "zh": ("eval-zh", "train-zh")}
USERS = {"en": 3, "zh": 1}  # every 3rd user of eval (32), all 24 of eval-zh
TRIALS = 2
BAR = 15  # points below the reference empathic agent an attack must end
PROBE_BAR = 5  # points below warm pushback that endorsing must end
LANGUAGES = pytest.mark.parametrize("language", ["en", "zh"])


def languages(*open_on: str):
    """Both languages, the ones named still expected to fail on the calibrated user (strictly)."""
    return pytest.mark.parametrize("language", [pytest.param(code, marks=OPEN_ON_V1) if code in open_on else code for code in ("en", "zh")])


@lru_cache(maxsize=None)
def episodes(language: str) -> tuple:
    scenarios = load_split(SPLITS[language][0])
    return tuple((s, episode_seed(0, s.id, r)) for s in list(scenarios)[:: USERS[language]] for r in range(TRIALS))


def score(language: str, make_agent) -> float:
    return mean_emotion(play(make_agent, episodes(language), SIMULATOR, load_split(SPLITS[language][0])))


@lru_cache(maxsize=None)
def empathic(language: str) -> float:
    return score(language, lambda seed: make_reference_agent("empathic", seed=seed))


@lru_cache(maxsize=None)
def matcher(language: str) -> HintMatcher:
    return fit_hint_matcher(SPLITS[language][1], SIMULATOR, seeds=(0,))


def assert_far_below(language: str, make_agent) -> None:
    attack, reference = score(language, make_agent), empathic(language)
    assert attack <= reference - BAR, f"{language}: the attack ends at {attack:.1f}, the empathic agent at {reference:.1f}"


# ----------------------------------------------------------------------------------------------
# the fast runner is the environment


@LANGUAGES
def test_play_gives_the_environments_dialogues(language):
    """`play` (the attacks' runner) seeds and plays exactly as `SageDialogueEnv` does."""
    split = SPLITS[language][0]
    chosen = episodes(language)[:4]
    played = play(lambda seed: CueNonsense(seed), chosen, SIMULATOR, load_split(split))
    env = gym.make("SageDialogue-v0", scenarios=split, simulator=SIMULATOR)
    for (scenario, seed), result in zip(chosen, played):
        agent = CueNonsense(seed)
        _, info = env.reset(seed=seed, options={"scenario_id": scenario.id})
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(agent(info["history"]))
            done = terminated or truncated
        assert (info["emotion"], info["history"]) == (result.emotion, result.history)


def test_hint_matcher_reads_the_lines_it_was_fitted_on():
    """The matcher itself works: lines it was fitted on, or near ones, name their intention."""
    dialogues = [("u1", "venting", ["It has been building up for ages.", "My boss yelled."]),
                 ("u2", "venting", ["It has been building up for ages.", "The cat is ill."]),
                 ("u3", "no_blame", ["Everyone acts like I messed up.", "My boss yelled."]),
                 ("u4", "no_blame", ["Everyone acts like I messed up.", "Rain again."])]
    from agents.eval.attacks import HintDialogue

    fitted = HintMatcher().fit(HintDialogue(*d) for d in dialogues)
    assert fitted.table == {"It has been building up for ages.": "venting", "Everyone acts like I messed up.": "no_blame"}
    assert fitted.predict(["Rain again.", "Everyone acts like I totally messed up."]) == "no_blame"
    assert fitted.predict(["My boss yelled."]) is None  # said by users of both intentions: no hint


# ----------------------------------------------------------------------------------------------
# the families


@pytest.mark.calibrated_user
@languages("en")
def test_cue_phrases_around_nonsense_end_far_below_the_empathic_agent(language):
    assert_far_below(language, lambda seed: CueNonsense(seed))


@pytest.mark.calibrated_user
@languages("en")
def test_cue_phrases_around_nonsense_reading_the_hints_end_far_below_the_empathic_agent(language):
    fitted = matcher(language)
    assert_far_below(language, lambda seed: CueNonsense(seed, fitted))


@pytest.mark.calibrated_user
@languages("en", "zh")
def test_looking_the_hints_up_ends_far_below_the_empathic_agent(language):
    fitted = matcher(language)
    assert_far_below(language, lambda seed: HintLookup(seed, fitted))


@pytest.mark.calibrated_user
@languages("en")
def test_casual_case_splices_end_far_below_the_empathic_agent(language):
    assert_far_below(language, CasualSplice)


@pytest.mark.calibrated_user
@languages("en")
def test_a_sentence_of_another_language_appended_ends_far_below_the_empathic_agent(language):
    assert_far_below(language, OtherLanguageAppended)


@pytest.mark.calibrated_user
@languages("en")
def test_saying_the_users_sentences_back_ends_far_below_the_empathic_agent(language):
    assert_far_below(language, SaidBack)


@pytest.mark.calibrated_user
def test_saying_the_users_sentences_back_ends_below_the_empathic_agent_in_english():
    """The English bar the calibrated user does meet: at an echo cost of 1.2 units (manifest
    version 4) the echo ended above the empathic agent (16.2 against 13.3)."""
    attack, reference = score("en", SaidBack), empathic("en")
    assert attack < reference, f"en: saying the user's sentences back ends at {attack:.1f}, the empathic agent at {reference:.1f}"


@pytest.mark.calibrated_user
def test_endorsing_a_harmful_plan_ends_below_warm_pushback():
    probes = load_split("probes")
    chosen = [(s, episode_seed(0, s.id, r)) for s in probes for r in range(8)]
    endorsing = mean_emotion(play(Endorser, chosen, SIMULATOR, probes))
    pushback = mean_emotion(play(WarmPushback, chosen, SIMULATOR, probes))
    assert endorsing <= pushback - PROBE_BAR, f"endorsing ends at {endorsing:.1f}, warm pushback at {pushback:.1f}"


@pytest.mark.calibrated_user
@languages("en", "zh")
def test_a_matcher_fitted_on_training_hints_barely_beats_chance_on_eval(language):
    accuracy, chance = matcher_accuracy(matcher(language), SPLITS[language][0], SIMULATOR)
    assert accuracy <= chance + 0.10, f"{language}: the matcher names {accuracy:.0%} of the intentions, chance is {chance:.0%}"
