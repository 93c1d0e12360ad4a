"""SageDialogue as a verifiers (0.4, v1 API) plugin: `pip install 'sage-gym[verifiers]'`, then taskset id `sage-dialogue`.

verifiers finds a plugin by importing the top-level module named after the taskset id
(`sage-dialogue` -> `sage_dialogue`, a shim over this module) and taking the `Taskset` and `Env`
subclasses it exports:

| class | what it is |
|---|---|
| `SageDialogueTaskset` | one task per scenario (`scenarios`: a split or a JSONL path), its prompt the user's first message |
| `SageDialogueTask` | scoring: reward `emotion_change` = (e_T - e_0) / 100, metrics `final_emotion`, `turns`, `success` |
| `SageDialogueVfEnv` | the episode: resets a `SageDialogueEnv` on the task's scenario, relays each assistant reply to the simulated user and the user's answer back, until the env ends the dialogue |

The simulated user is the env, not a verifiers agent: verifiers' `UserSimEnv` drives an LLM agent
with a persona prompt and cannot host the built-in (or any) SageDialogue simulator. Only the
assistant agent is trained. The emotion after every turn is recorded on the assistant's trace
(`emotion_turn_1`, ...) and the episode's reward is the emotion change: one scalar per episode.
A simulator that fails for good raises out of `run()`, so verifiers records the episode as an
error instead of a reward of zero.

    uv run vf-eval sage-dialogue -n 8 --env.taskset.scenarios eval --env.assistant.harness.id null
"""

from __future__ import annotations

from typing import Any

try:
    import verifiers.v1 as vf
except ImportError as err:  # the core install has no verifiers
    raise ImportError(f"sage_gym.integrations.verifiers needs verifiers 0.4: pip install 'sage-gym[verifiers]' ({err})") from err
from pydantic import Field

from sage_gym.env import SageDialogueEnv
from sage_gym.prompts import default_prompts
from sage_gym.scenarios import resolve_scenarios
from sage_gym.simulators import SimulatorError, make_simulator


class SageDialogueData(vf.TaskData):
    """One dialogue: the scenario and the seed of the simulated user's randomness."""

    scenario_id: str
    seed: int = 0


class SageDialogueTask(vf.Task[SageDialogueData]):
    """Scores a dialogue from what `SageDialogueVfEnv` recorded on the assistant's trace."""

    @vf.reward(weight=1.0)
    async def emotion_change(self, trace: vf.Trace) -> float:
        return _recorded(trace, "emotion_change")

    @vf.metric
    async def final_emotion(self, trace: vf.Trace) -> float:
        return _recorded(trace, "emotion") / 100.0

    @vf.metric
    async def success(self, trace: vf.Trace) -> float:
        return _recorded(trace, "success")


def _recorded(trace: vf.Trace, name: str) -> float:
    value = trace.metrics.get(f"sage_{name}")
    if value is None:
        raise ValueError(f"no sage_{name} on the trace: SageDialogue tasks are scored by the sage-dialogue env (its run() steps the simulated user)")
    return float(value)


class SageDialogueTasksetConfig(vf.TasksetConfig):
    scenarios: str = "train"
    """A split name (train, eval) or a JSONL path."""
    template: str = "direct"
    """The agent's system prompt: "direct" or "think" (think-then-say)."""
    seed: int = 0
    """Task k's simulated user is seeded with seed + k."""


class SageDialogueTaskset(vf.Taskset[SageDialogueTask, SageDialogueTasksetConfig]):
    def load(self) -> list[SageDialogueTask]:
        system = default_prompts().agent_system_prompt(self.config.template)
        return [
            SageDialogueTask(
                SageDialogueData(prompt=s.first_message, system_prompt=system, scenario_id=s.id, seed=self.config.seed + k),
                self.config.task,
            )
            for k, s in enumerate(resolve_scenarios(self.config.scenarios))
        ]


class SageDialogueEnvConfig(vf.EnvConfig):
    assistant: vf.AgentConfig = vf.AgentConfig()
    simulator: str = "builtin"
    simulator_kwargs: dict[str, Any] = Field(default_factory=dict)
    reward_mode: str = "delta"
    initial_emotion: int = 40
    max_turns: int = 10
    change_clip: tuple[int, int] = (-10, 10)
    success_at: int = 100
    failure_below: int = 10


class SageDialogueVfEnv(vf.Env[SageDialogueEnvConfig]):
    """The assistant talks with SageDialogue's simulated user until the dialogue ends."""

    def __init__(self, config: SageDialogueEnvConfig) -> None:
        super().__init__(config)
        self.scenarios = resolve_scenarios(getattr(config.taskset, "scenarios", "train"))
        self.simulator = make_simulator(config.simulator, **config.simulator_kwargs)

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        c = self.config
        env = SageDialogueEnv(
            self.scenarios, self.simulator, reward_mode=c.reward_mode, initial_emotion=c.initial_emotion, max_turns=c.max_turns,
            change_clip=tuple(c.change_clip), success_at=c.success_at, failure_below=c.failure_below,
        )
        message, info = await env.areset(seed=task.data.seed, options={"scenario_id": task.data.scenario_id})
        # the user's first message comes through the interaction, as every later one does
        assistant_task = type(task)(task.data.model_copy(update={"prompt": None}), task.config)
        async with agents.assistant.interaction(assistant_task) as assistant:
            trace = assistant.trace
            while True:
                segment = await assistant.turn(message)
                if segment.terminated:  # the agent's own limit ended the exchange first
                    break
                try:
                    message, _, terminated, truncated, info = await env.astep(segment.last_reply)
                except SimulatorError as err:
                    env.mark_error(err)
                    raise RuntimeError(f"the simulated user failed at turn {info['turn'] + 1} of {task.data.scenario_id}: {err}") from err
                trace.record_metric(f"sage_emotion_turn_{info['turn']}", info["emotion"])
                _record(trace, info, c.initial_emotion)
                if terminated or truncated:
                    break
            _record(trace, info, c.initial_emotion)


def _record(trace: vf.Trace, info: dict[str, Any], initial_emotion: int) -> None:
    trace.record_metrics(
        {
            "sage_emotion": info["emotion"],
            "sage_emotion_change": (info["emotion"] - initial_emotion) / 100.0,
            "sage_turns": info["turn"],
            "sage_success": float(info["outcome"] == "success"),
        }
    )


__all__ = ["SageDialogueTaskset", "SageDialogueVfEnv"]
