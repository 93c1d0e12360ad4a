"""The live policy of a training run as an evaluation agent: how the trainer's held-out check plays it.

`play_policy` is what the training commands hand the trainer (`agents.learn.held_out_users.PlayPolicy`):
the policy as it is now, greedy, played by the evaluator of `python -m agents.evaluate` on one
slice of scenarios, written as an ordinary evaluation folder. No weights are saved or reloaded.
`paired_gain` (`agents.learn.held_out_users.CompareReports`) is `evaluate --compare` on two of
those folders: the trained minus the untrained policy's score, paired by user, and whether it is
beyond the noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.eval.evaluate import EvalSettings, evaluate
from agents.eval.trust import ManifestMismatch, compare
from agents.policy.hf_engine import Sampling
from agents.policy.model import Policy
from agents.replies.endpoint import AgentError


class PolicyAgent:
    """The live policy as an evaluation agent (`agents.eval.agent_api.EvalAgent`), greedy.

    Like `HFAgent`, each slot keeps its dialogue's token ids as the model produced them and
    appends user turns as chat-template deltas, so what is evaluated is exactly what the learner
    trains on; no weights are saved or reloaded.
    """

    kind = "policy"

    def __init__(self, policy: Policy, max_new_tokens: int, step: int, name: str = "policy") -> None:
        self.policy, self.step, self.name = policy, step, name
        self.sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens)
        self._contexts: dict[int, list[int] | None] = {}
        config = policy.base.config
        self._max_positions = int(getattr(getattr(config, "text_config", None) or config, "max_position_embeddings", None) or 1 << 20)

    def begin(self, slot: int, seed: int) -> None:
        self._contexts[slot] = None

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        chat = self.policy.chat
        contexts, budgets = [], []
        for slot, info in zip(slots, infos, strict=True):
            history, context = info["history"], self._contexts[slot]
            context = chat.prompt_ids(history[0]["content"]) if context is None else context + chat.user_turn_ids(history[-1]["content"])
            room = self._max_positions - len(context) - 1  # -1: space for a closing end-of-turn token
            if room < 1:
                raise AgentError(f"a held-out dialogue reached the model's context limit ({self._max_positions} tokens); lower --max-new-tokens")
            contexts.append(context)
            budgets.append(min(room, self.sampling.max_new_tokens))
        completions = self.policy.sample(contexts, self.sampling, max_new_tokens=budgets)
        replies = []
        for slot, context, completion in zip(slots, contexts, completions, strict=True):
            self._contexts[slot] = context + chat.closed_turn(completion.token_ids, completion.stopped)
            replies.append(chat.decode_reply(completion.token_ids))
        return replies

    def manifest(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "step": self.step, "temperature": 0.0, "max_new_tokens": self.sampling.max_new_tokens}


def play_policy(
    policy: Policy, folder: Path, *, scenarios: str, limit: int, max_new_tokens: int, step: int,
    simulator: str, simulator_kwargs: dict[str, Any], seed: int,
) -> Mapping[str, Any]:
    """The report of `policy`, greedy, on the first `limit` scenarios of `scenarios` (SAGE's settings), written to `folder` afresh."""
    settings = EvalSettings(scenarios=scenarios, simulator=simulator, simulator_kwargs=simulator_kwargs, limit=limit, seed=seed, num_envs=limit)
    agent = PolicyAgent(policy, max_new_tokens, step)  # `Policy.sample` runs in eval mode (no dropout)
    return evaluate(agent, folder, settings, overwrite=True, progress=False, plots=False)


def paired_gain(trained: Mapping[str, Any], untrained: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """trained - untrained over the users both played, with `evaluate --compare`'s paired bootstrap
    interval: {"difference", "ci", "scenarios", "beyond_noise"}; None when the two reports were made
    under different simulators, rules or scenarios (a run resumed with other code), which no
    difference can be read from."""
    try:
        (pair,) = compare([trained, untrained])
    except ManifestMismatch:
        return None
    return {key: pair[key] for key in ("difference", "ci", "scenarios", "beyond_noise")}
