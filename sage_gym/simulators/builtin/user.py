"""The built-in user's turn: `assess` (the score with its thoughts), `react_sync` (the whole turn
as a pure function, in process and behind the local server) and `BuiltinSimulator`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sage_gym.scenarios import Scenario
from sage_gym.simulators import calibrated, coherence
from sage_gym.simulators.base import Message, Reaction, Rules, UserState, clamp_emotion, emotion_bucket
from sage_gym.simulators.builtin import lexicon_en, lexicon_zh
from sage_gym.simulators.builtin.lexicon import check_language, lexicon_for
from sage_gym.simulators.builtin.reply import _feeling, _meaning, _thoughts, compose_reply, ending_for
from sage_gym.simulators.builtin.scoring import (
    DEFAULT_VERSION,
    NOISE_STD,
    USER_VERSIONS,
    ReplyFeatures,
    _shingles,
    _text_features,
    judge,
    user_turns,
)
from sage_gym.simulators.reply_value import shipped_model as shipped_reply_value


@dataclass(frozen=True)
class Assessment:
    change: int
    score: float
    features: ReplyFeatures
    spoken: ReplyFeatures  # the features as the user speaks of them (`spoken`): what `compose_reply` takes
    goal: str  # "met", "partly" or "not met"
    thoughts: str
    feeling: str
    meaning: str



def spoken(features: ReplyFeatures, version: int) -> ReplyFeatures:
    """What the user objects to in its thoughts and its reply: every flag for the rule-based user;
    for the calibrated user only the flags it prices (its guards), so that it never says "You just
    said that twice" while its emotion rises (the analysis still lists every flag)."""
    if version == 0:
        return features
    return dataclasses.replace(features, flags=features.flags & calibrated.MUTING_FLAGS)


def assess(
    scenario: Scenario, rules: Rules, emotion: int, turn: int, seed: int, history: Sequence[Message], agent_reply: str, version: int = DEFAULT_VERSION
) -> Assessment:
    """Score one agent reply: the emotion-update half of a user turn. `version` 1 is the calibrated
    scoring (`sage_gym.simulators.calibrated`), 0 the rule-based one of SageDialogue-v0."""
    judged = judge(scenario, rules, turn, seed, history, agent_reply, version)
    feats, change = judged.features, judged.change
    lexicon = lexicon_for(scenario.language)
    said = spoken(feats, version)
    thoughts = _thoughts(scenario, feats, said.flags, judged.goal, change)
    return Assessment(change, judged.score, feats, said, judged.goal, thoughts, _feeling(change, lexicon), _meaning(feats, lexicon))


def react_sync(scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str, version: int = DEFAULT_VERSION) -> Reaction:
    """The whole user turn as a pure function (used in process and by the local server)."""
    turn = user_turns(history)
    judged = assess(scenario, state.rules, state.emotion, turn, state.seed, history, agent_reply, version)
    emotion = clamp_emotion(state.emotion + judged.change)
    bucket = emotion_bucket(emotion)
    ending = ending_for(state.rules, scenario, emotion)
    reply = compose_reply(scenario, bucket, ending, turn, state.seed, history, agent_reply, judged.spoken, judged.change)
    analysis: dict[str, Any] = {
        "meaning": judged.meaning,
        "goal": judged.goal,
        "feeling": judged.feeling,
        "score": judged.score,
        "strategies": sorted(judged.features.strategies),
        "flags": sorted(judged.features.flags),
    }
    return Reaction(
        emotion=emotion,
        change=judged.change,
        bucket=bucket,
        thoughts=judged.thoughts,
        reply=reply,
        leaves=bool(ending),
        state=UserState(emotion=emotion, rules=state.rules, turn=state.turn + 1, seed=state.seed),
        analysis=analysis,
    )


class BuiltinSimulator:
    """Deterministic simulated user (see the module docstring for its rules).

    `version=0` (the default, `"builtin"`, SageDialogue-v0's user) scores with the hand-set rules;
    `version=1` (`"builtin-v1"`, SageDialogue-v1's) with the weights calibrated on SAGE's recorded
    judgments.
    """

    kind = "builtin"
    version = DEFAULT_VERSION  # a class default too: subclasses with an __init__ of their own keep working

    def __init__(self, version: int = DEFAULT_VERSION) -> None:
        if version not in USER_VERSIONS:
            raise ValueError(f"unknown built-in user version {version!r}; expected one of {USER_VERSIONS}")
        self.version = version

    async def open(self, scenario: Scenario, rng: np.random.Generator, rules: Rules) -> UserState:
        check_language(scenario)
        return UserState(emotion=rules.initial_emotion, rules=rules, turn=0, seed=int(rng.integers(2**31 - 1)))

    async def react(self, scenario: Scenario, state: UserState, history: Sequence[Message], agent_reply: str) -> Reaction:
        return react_sync(scenario, state, history, agent_reply, self.version)

    def manifest(self) -> dict[str, Any]:
        # the manifest's version counts scoring changes: 1 is the rule-based user, 2 and up the
        # calibrated one (3: later replies valued among later ones, `ignored` and `repeated` guards;
        # 4: `echoed` also for the user's sentences cut up and rejoined; 5: `echoed` costs 2.2; 6: a long
        # clause quoted inside a reply of the agent's own is no longer `echoed`; 7: it is again where
        # it speaks in the user's first person outside quotation marks, and an English reply whose
        # last sentence ends on a determiner or a conjunction is `truncated`); the fitted
        # constants are in it too, so that an evaluation never resumes across a refit
        if self.version == 0:
            return {"kind": self.kind, "model": "sage_gym.builtin", "version": 1, "noise_std": NOISE_STD}
        fitted, value = calibrated.shipped_weights(), shipped_reply_value()
        constants = {**fitted.to_json(), "value": {k: v for k, v in value.to_json().items() if k != "source"}}
        return {"kind": self.kind, "model": "sage_gym.builtin", "version": 7, "noise_std": fitted.noise_std, "calibration": fitted.source, "fitted": constants}


def clear_caches() -> None:
    """Empty the per-text caches of the analysis (they only save time: results never depend on them)."""
    for cached in (_text_features, lexicon_en.content, _shingles, lexicon_zh.content, lexicon_zh.phrases):
        cached.cache_clear()
    coherence.clear_caches()
    if "sage_gym.embedding" in sys.modules:  # the calibrated user's sentence vectors (imported on first use)
        sys.modules["sage_gym.embedding"]._encode_cached.cache_clear()
