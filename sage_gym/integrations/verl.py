"""SageDialogue as a verl interaction: the simulated user answers every turn of verl's multi-turn rollout.

verl (0.7; 0.8 removed `verl.interactions`) runs a multi-turn rollout as: the policy
writes a reply, then an *interaction* object returns the user's answer, a turn score and whether
the dialogue is over. `SageInteraction` plays that part with one `SageDialogueEnv` per rollout:

| verl calls | SageInteraction does |
|---|---|
| `start_interaction(instance_id, scenario_id=..., seed=...)` | resets a fresh env on that scenario (the dataset's prompt holds its first message) |
| `generate_response(instance_id, messages)` | steps the env with the last assistant message; returns `(done, the user's reply, the emotion change / 100, {emotion, turn, outcome, ...})` |
| `calculate_score(instance_id)` | the dialogue's return so far: `(e_t - e_0) / 100` (`reward_mode="delta"`) or `e_t / 100` (`"final"`) |
| `finalize_interaction(instance_id)` | drops the env (and its result) |

`done` is the env's own end (success, failure, the user left, or its `max_turns`). When the
simulator fails for good the dialogue ends with outcome `error` and a `None` turn score, which
verl's agent loop leaves out of `turn_scores`: never a silent zero. verl keeps the turn scores
per turn (`extra_fields["turn_scores"]`) for a reward function to use
(`sage_gym/integrations/verl_reward.py` sums them); see docs/integrations.md for the
interaction YAML and the rollout settings.

verl 0.7's agent loop never calls `finalize_interaction`, so an env is dropped as soon as its
dialogue ends (only its return is kept, for `calculate_score`), and at most
`max_live_dialogues` (default 4096) envs are held: a dialogue that verl stopped on its own limit
without ending it is dropped, oldest first, with a warning.

Importing this module does not import verl: the class follows `verl.interactions.base.BaseInteraction`
(and subclasses it when verl is importable), so verl's registry can load it by its dotted name.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any
from uuid import uuid4

from sage_gym.env import SageDialogueEnv
from sage_gym.prompts import default_prompts
from sage_gym.scenarios import resolve_scenarios
from sage_gym.simulators import SimulatorError, make_simulator

try:  # verl's base class when verl is installed (it pulls torch and ray); the same interface otherwise
    from verl.interactions.base import BaseInteraction
except ImportError:

    class BaseInteraction:  # type: ignore[no-redef]
        def __init__(self, config: dict[str, Any]) -> None:
            self.config = config
            self.name: str = config.get("name", "interaction_agent")


logger = logging.getLogger(__name__)

ENV_OPTIONS = ("reward_mode", "initial_emotion", "change_clip", "max_turns", "success_at", "failure_below", "strip_think", "max_action_chars", "max_observation_chars", "transcript_path")


class SageInteraction(BaseInteraction):
    """verl interaction over SageDialogue. `config`: `scenarios`, `simulator`, `simulator_kwargs`, `max_live_dialogues` and any env option."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        unknown = set(config) - {"name", "scenarios", "simulator", "simulator_kwargs", "max_live_dialogues", *ENV_OPTIONS}
        if unknown:
            raise ValueError(f"unknown SageInteraction config keys {sorted(unknown)}; expected name, scenarios, simulator, simulator_kwargs, max_live_dialogues or {list(ENV_OPTIONS)}")
        self.max_live_dialogues = int(config.get("max_live_dialogues", 4096))
        if self.max_live_dialogues < 1:
            raise ValueError(f"max_live_dialogues must be at least 1, got {self.max_live_dialogues}")
        self.scenarios = resolve_scenarios(config.get("scenarios", "train"))
        self.simulator = make_simulator(config.get("simulator", "builtin"), **dict(config.get("simulator_kwargs") or {}))
        self.env_kwargs = {k: config[k] for k in ENV_OPTIONS if k in config}
        if isinstance(self.env_kwargs.get("change_clip"), list):
            self.env_kwargs["change_clip"] = tuple(self.env_kwargs["change_clip"])
        self._envs: OrderedDict[str, SageDialogueEnv] = OrderedDict()  # dialogues in play, oldest first
        self._ended: OrderedDict[str, float | None] = OrderedDict()  # ended dialogues: their return (None: simulator error)

    async def start_interaction(self, instance_id: str | None = None, scenario_id: str | None = None, seed: int | None = None, **kwargs: Any) -> str:
        instance_id = instance_id or str(uuid4())
        env = SageDialogueEnv(self.scenarios, self.simulator, **self.env_kwargs)
        await env.areset(seed=seed, options={"scenario_id": scenario_id} if scenario_id else None)
        if len(self._envs) >= self.max_live_dialogues:
            stale, _ = self._envs.popitem(last=False)
            logger.warning("SageInteraction holds %d dialogues in play: dropped the oldest (%s), which verl stopped without ending it", self.max_live_dialogues, stale)
        self._envs[instance_id] = env
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[bool, str, float | None, dict[str, Any]]:
        env = self._env(instance_id)
        reply = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "assistant"), None)
        if reply is None:
            raise ValueError("generate_response needs the agent's reply: messages hold no assistant message")
        try:
            observation, reward, terminated, truncated, info = await env.astep(reply)
        except SimulatorError as err:
            info = env.mark_error(err)
            self._end(instance_id)
            return True, "", None, {"outcome": "error", "error": info["error"], "emotion": info["emotion"], "turn": info["turn"]}
        metadata = {key: info[key] for key in ("emotion", "change", "turn", "outcome", "scenario_id")}
        done = bool(terminated or truncated)
        if done:
            self._end(instance_id)
        return done, observation, float(reward), metadata

    async def calculate_score(self, instance_id: str, **kwargs: Any) -> float:
        if instance_id in self._ended:
            score = self._ended[instance_id]
        else:
            score = _return(self._env(instance_id))
        if score is None:
            raise RuntimeError(f"dialogue {instance_id} ended in a simulator error: drop it rather than score it")
        return score

    async def finalize_interaction(self, instance_id: str, **kwargs: Any) -> None:
        self._envs.pop(instance_id, None)
        self._ended.pop(instance_id, None)

    def _end(self, instance_id: str) -> None:
        """The dialogue is over: free its env, keep its return (a float, bounded like the envs)."""
        self._ended[instance_id] = _return(self._envs.pop(instance_id))
        while len(self._ended) > self.max_live_dialogues:
            self._ended.popitem(last=False)

    def _env(self, instance_id: str) -> SageDialogueEnv:
        try:
            return self._envs[instance_id]
        except KeyError:
            raise KeyError(f"no interaction {instance_id!r} in play: call start_interaction first") from None


def _return(env: SageDialogueEnv) -> float | None:
    """The dialogue's return so far, which its turn scores sum to; None after a simulator error."""
    emotion = env.emotion
    if env.outcome == "error" or emotion is None:  # None: no dialogue was started
        return None
    if env.reward_mode == "final":
        return emotion / 100.0
    return (emotion - env.rules.initial_emotion) / 100.0


AGENT_LOOP = "sage_agent"  # the name verl_agent_loop.yaml registers SageAgentLoop under


def verl_dataset_rows(scenarios: Any = "train", *, split: str = "train", interaction_name: str = "sage", template: str = "direct", seed: int = 0, agent_name: str = AGENT_LOOP) -> list[dict[str, Any]]:
    """Rows for verl's RLHFDataset (write them with pandas `to_parquet`): the prompt, the agent loop and the interaction's kwargs.

    `agent_name` picks verl's agent loop per row; without it verl runs its `single_turn_agent`,
    which never calls the interaction.
    """
    system = default_prompts().agent_system_prompt(template)
    rows = []
    for k, scenario in enumerate(resolve_scenarios(scenarios)):
        rows.append(
            {
                "data_source": "sage_gym",
                "agent_name": agent_name,
                "prompt": [{"role": "system", "content": system}, {"role": "user", "content": scenario.first_message}],
                "ability": "empathy",
                "reward_model": {"style": "rule", "ground_truth": ""},
                "extra_info": {"split": split, "index": k, "interaction_kwargs": {"name": interaction_name, "scenario_id": scenario.id, "seed": seed + k}},
            }
        )
    return rows
