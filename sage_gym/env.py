"""SageDialogue-v0: talk with a simulated user whose emotion is the reward.

## Description

The agent converses with a simulated user (a scenario: persona, background, character type and a
hidden intention). After every agent reply the simulator updates the user's emotion, a number in
[0, 100], and answers. The episode ends when the user is fully satisfied, walks out, says goodbye,
or the turn limit is reached. This follows SAGE (Sentient Agent as a Judge) and RLVER.

| | |
|---|---|
| Action space | `UnicodeText(max_action_chars)`: the agent's message, any Unicode string. With `strip_think=True` a leading `<think>...</think>` is private: only the rest reaches the user. |
| Observation space | `UnicodeText(max_observation_chars)`: the user's latest message (the scenario's first message after `reset`). |
| Reward | `reward_mode="delta"` (default): `(e_t - e_{t-1}) / 100` after each reply, so an episode sums to `(e_T - e_0) / 100`. `"final"`: 0 until the last step, then `e_T / 100` (RLVER's reward). |
| Starting state | emotion `initial_emotion` (40, SAGE evaluation; RLVER trained from 30); scenario drawn by the seed from `scenarios` or chosen with `options={"scenario_id": ...}`. |
| Termination | emotion >= `success_at` (100, outcome `success`); emotion < `failure_below` (10, outcome `failure`); the user says goodbye (outcome `left`). |
| Truncation | `max_turns` agent replies (10, SAGE evaluation; RLVER trained with 8): outcome `truncated`. |

## Info

| key | meaning |
|---|---|
| `emotion` | the user's emotion after this step, int in [0, 100] |
| `change` | the simulator's signed change, clipped to `change_clip`; the realised difference can be smaller at the caps |
| `bucket` | `"high"` (>= 70), `"medium"` (>= 40) or `"low"` |
| `grade` | SAGE's grade of the emotion: S, A, B, C or F |
| `thoughts` | the user's inner thoughts about the reply (for analysis; never shown to the agent) |
| `turn` | number of agent replies so far |
| `outcome` | `None` while running, then `success`, `failure`, `left` or `truncated` (`error` when the vectorized env ends a dialogue whose simulator failed for good; `info["error"]` then names the cause) |
| `history` | the visible dialogue in OpenAI chat format (user = simulated user, assistant = agent) |
| `scenario_id` | the scenario of this episode |
| `thinking` | the agent's private thought this step (think-then-say), `""` if none |
| `analysis` | the simulator's analysis of the reply (read-only mapping; for the built-in user the strategies, risk and parts it found), `{}` after `reset` |
| `observation_truncated` | present and `True` only when the user's message was longer than `max_observation_chars` and was cut |

## Bad input

A non-string action raises `TypeError`; an action longer than `max_action_chars`, or one that
is not encodable as UTF-8 (a lone surrogate such as `"\\ud800"`, also inside `<think>`), raises
`ValueError`; `step` before `reset` or after the episode ended raises
`gymnasium.error.ResetNeeded`; an unknown scenario id raises `KeyError`, a non-string one
`TypeError`. None of these change the environment. An empty action is valid: the user reacts to an empty reply (and does not like it).
A `SimulatorError` from the simulator propagates and also leaves the state unchanged, so the same
step can be retried.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.error import ResetNeeded

from sage_gym._loop import run_sync
from sage_gym.prompts import PromptLibrary, default_prompts
from sage_gym.redaction import RedactedSpec
from sage_gym.scenarios import Scenario, ScenarioSet, resolve_scenarios
from sage_gym.simulators import Simulator, make_simulator
from sage_gym.simulators.base import EMOTION_MAX, EMOTION_MIN, Reaction, Rules, UserState, emotion_bucket, emotion_grade
from sage_gym.spaces import UnicodeText
from sage_gym.thinking import split_think
from sage_gym.transcripts import TranscriptWriter

REWARD_MODES = ("delta", "final")


def check_text(text: str, what: str) -> None:
    """Raise ValueError unless `text` encodes as UTF-8 (a lone surrogate such as "\\ud800" does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} is not valid Unicode text: {err.reason} at character {err.start} ({text[err.start:err.end]!r})") from None
TERMINAL_OUTCOMES = ("success", "failure", "left")


def package_version() -> str:
    try:
        return metadata.version("sage-gym")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class SageDialogueEnv(gym.Env[str, str]):
    __doc__ = __doc__

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    action_space: UnicodeText
    observation_space: UnicodeText
    spec = RedactedSpec()  # gym.make records the kwargs here: keep API keys out of str(env.spec)

    def __init__(
        self,
        scenarios: str | Path | ScenarioSet | Iterable[Scenario] = "train",
        simulator: str | Simulator = "builtin",
        simulator_kwargs: Mapping[str, Any] | None = None,
        *,
        reward_mode: str = "delta",
        initial_emotion: int = 40,
        change_clip: tuple[int, int] = (-10, 10),
        max_turns: int = 10,
        success_at: int = 100,
        failure_below: int = 10,
        strip_think: bool = True,
        max_action_chars: int = 8000,
        max_observation_chars: int = 8000,
        transcript_path: str | Path | None = None,
        render_mode: str | None = None,
        prompts: PromptLibrary | str | Path | None = None,
    ) -> None:
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
        for name, value in (("max_action_chars", max_action_chars), ("max_observation_chars", max_observation_chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.rules = Rules(
            initial_emotion=initial_emotion,
            change_clip=tuple(change_clip) if isinstance(change_clip, list) else change_clip,
            success_at=success_at,
            failure_below=failure_below,
        )
        self.scenarios = resolve_scenarios(scenarios)
        simulator_kwargs = dict(simulator_kwargs or {})
        if simulator == "openai" and prompts is not None:
            simulator_kwargs.setdefault("prompts", prompts)  # custom templates reach the LLM simulator too
        self.simulator = make_simulator(simulator, **simulator_kwargs)
        self.prompts = prompts if isinstance(prompts, PromptLibrary) else (PromptLibrary(prompts) if prompts else default_prompts())
        self.reward_mode = reward_mode
        self.max_turns = max_turns
        self.strip_think = strip_think
        self.render_mode = render_mode
        self.recorder = TranscriptWriter(transcript_path) if transcript_path is not None else None

        self.action_space = UnicodeText(max_action_chars)
        self.observation_space = UnicodeText(max_observation_chars)

        self._scenario: Scenario | None = None
        self._state: UserState | None = None
        self._history: list[dict[str, str]] = []
        self._turns: list[dict[str, Any]] = []
        self._outcome: str | None = None
        self._episode_seed: int | None = None
        self._started_at = 0.0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ properties

    @property
    def scenario(self) -> Scenario | None:
        return self._scenario

    @property
    def emotion(self) -> int | None:
        return None if self._state is None else self._state.emotion

    @property
    def outcome(self) -> str | None:
        return self._outcome

    @property
    def history(self) -> list[dict[str, str]]:
        return [dict(m) for m in self._history]

    @property
    def done(self) -> bool:
        return self._outcome is not None

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        return run_sync(self.areset(seed=seed, options=options))

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return run_sync(self.astep(action))

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Async `reset`: start a new dialogue (the vectorized env awaits many of these together)."""
        options = dict(options or {})
        unknown = set(options) - {"scenario_id", "scenario"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'scenario_id' or 'scenario'")
        if "scenario" in options and not isinstance(options["scenario"], Scenario):
            raise TypeError(f"options['scenario'] must be a Scenario, got {type(options['scenario']).__name__}")
        # resolve the scenario before touching any state, so a bad id changes nothing
        chosen = options.get("scenario") or (self.scenarios.get(options["scenario_id"]) if "scenario_id" in options else None)
        super().reset(seed=seed)
        # always draw, even when the scenario is given, so a seed fixes the simulator's randomness
        # the same way whichever scenario is chosen (a transcript's seed and id replay it exactly)
        sampled = self.scenarios.sample(self.np_random)
        scenario = chosen or sampled
        state = await self.simulator.open(scenario, self.np_random, self.rules)
        self._scenario, self._state = scenario, state
        self._history = [{"role": "user", "content": scenario.first_message}]
        self._turns, self._outcome, self._episode_seed = [], None, seed
        self._started_at = time.time()
        info = self._info(change=0, thoughts="", thinking="")
        return self._observation(scenario.first_message, info), info

    async def astep(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Async `step`: the user's reaction to `action`."""
        self._check_action(action)
        assert self._scenario is not None and self._state is not None
        thinking, visible = split_think(action) if self.strip_think else ("", action)
        previous = self._state.emotion
        reaction = await self.simulator.react(self._scenario, self._state, tuple(self._history), visible)
        self._check_reaction(reaction)

        # commit: nothing above this line changed the environment
        self._state = reaction.state
        self._history += [{"role": "assistant", "content": visible}, {"role": "user", "content": reaction.reply}]
        turn = len(self._turns) + 1
        self._outcome = self._outcome_for(reaction, turn)
        terminated = self._outcome in TERMINAL_OUTCOMES
        truncated = self._outcome == "truncated"
        if self.reward_mode == "delta":
            reward = (reaction.emotion - previous) / 100.0
        else:
            reward = reaction.emotion / 100.0 if self._outcome else 0.0
        self._turns.append(
            {
                "turn": turn,
                "agent_text": action,
                "thinking": thinking,
                "agent_reply": visible,
                "user_reply": reaction.reply,
                "emotion": reaction.emotion,
                "change": reaction.change,
                "bucket": reaction.bucket,
                "thoughts": reaction.thoughts,
                "analysis": dict(reaction.analysis),
                "reward": reward,
            }
        )
        info = self._info(change=reaction.change, thoughts=reaction.thoughts, thinking=thinking, analysis=dict(reaction.analysis))
        if self._outcome:
            self._record()
        return self._observation(reaction.reply, info), float(reward), terminated, truncated, info

    def mark_error(self, cause: BaseException | str) -> dict[str, Any]:
        """End the running episode with outcome `error` (a simulator failed for good).

        Used by the vectorized env so that one failed dialogue ends loudly while the others go on.
        The transcript records the error; a learner must drop the episode, never score it zero.
        """
        if self._state is None or self._outcome is not None:
            raise ResetNeeded("mark_error needs a running episode")
        self._outcome = "error"
        self._record(error=f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause))
        info = self._info(change=0, thoughts="", thinking="")
        info["error"] = self._last_error
        return info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._scenario is None:
            return "(no episode: call reset)\n"
        lines = [f"Scenario {self._scenario.id} ({self._scenario.persona.name}, {self._scenario.persona.age}) emotion {self.rules.initial_emotion}"]
        lines.append(f"  USER : {self._scenario.first_message}")
        for t in self._turns:
            lines.append(f"  AGENT: {t['agent_reply']}")
            lines.append(f"  USER : {t['user_reply']}")
            lines.append(f"         emotion {t['emotion']:3d} ({t['change']:+d}, {t['bucket']})  thinks: {t['thoughts']}")
        if self._outcome:
            lines.append(f"  -> {self._outcome} with emotion {self.emotion}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ manifest and transcripts

    def manifest(self) -> dict[str, Any]:
        """Everything needed to reproduce this environment's numbers."""
        return {
            "package": "sage-gym",
            "version": package_version(),
            "simulator": self.simulator.manifest(),
            "rules": {
                "initial_emotion": self.rules.initial_emotion,
                "change_clip": list(self.rules.change_clip),
                "success_at": self.rules.success_at,
                "failure_below": self.rules.failure_below,
                "max_turns": self.max_turns,
            },
            "reward_mode": self.reward_mode,
            "strip_think": self.strip_think,
            "prompts_sha256": self.prompts.sha256(),
            "scenarios": {"name": self.scenarios.name, "count": len(self.scenarios), "sha256": self.scenarios.sha256},
        }

    def episode_record(self) -> dict[str, Any]:
        """The current episode as a transcript record."""
        assert self._scenario is not None and self._state is not None
        return {
            "scenario_id": self._scenario.id,
            "hidden_intention": self._scenario.hidden_intention,
            "character_type": self._scenario.character_type,
            "seed": self._episode_seed,
            "initial_emotion": self.rules.initial_emotion,
            "final_emotion": self._state.emotion,
            "outcome": self._outcome,
            "turns": list(self._turns),
            "first_message": self._scenario.first_message,
            "started_at": self._started_at,
            "finished_at": time.time(),
            "manifest": self.manifest(),
        }

    def _record(self, error: str | None = None) -> None:
        self._last_error = error
        if self.recorder is None:
            return
        record = self.episode_record()
        if error is not None:
            record["error"] = error
        self.recorder.write(record)

    # ------------------------------------------------------------------ helpers

    def _check_action(self, action: Any) -> str:
        """`action`, once it is known to be a message this env accepts now."""
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        if self._outcome is not None:
            raise ResetNeeded(f"the episode has ended (outcome {self._outcome!r}); call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"action must be a str (the agent's message), got {type(action).__name__}")
        if len(action) > self.action_space.max_length:
            raise ValueError(
                f"action has {len(action)} characters, more than max_action_chars={self.action_space.max_length}; "
                "shorten it or raise max_action_chars"
            )
        check_text(action, "action")
        return action

    def _check_reaction(self, reaction: Reaction) -> None:
        if not (EMOTION_MIN <= reaction.emotion <= EMOTION_MAX) or reaction.state.emotion != reaction.emotion:
            raise ValueError(f"simulator {self.simulator.kind!r} returned an invalid reaction: emotion {reaction.emotion!r}")

    def _outcome_for(self, reaction: Reaction, turn: int) -> str | None:
        if reaction.emotion >= self.rules.success_at:
            return "success"
        if reaction.emotion < self.rules.failure_below:
            return "failure"
        if reaction.leaves:
            return "left"
        if turn >= self.max_turns:
            return "truncated"
        return None

    def _observation(self, text: str, info: dict[str, Any]) -> str:
        limit = self.observation_space.max_length
        if len(text) > limit:  # an LLM simulator rambled: keep the observation in its space, say so
            info["observation_truncated"] = True
            return text[:limit]
        return text

    def _info(self, *, change: int, thoughts: str, thinking: str, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._scenario is not None and self._state is not None
        emotion = self._state.emotion
        return {
            "emotion": emotion,
            "change": change,
            "bucket": emotion_bucket(emotion),
            "grade": emotion_grade(emotion),
            "thoughts": thoughts,
            "turn": len(self._turns),
            "outcome": self._outcome,
            "history": self.history,
            "scenario_id": self._scenario.id,
            "thinking": thinking,
            "analysis": analysis or {},
        }
