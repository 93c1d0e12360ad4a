"""Multi-turn rollouts, token in and token out, through `SageVectorEnv` with autoreset disabled.

One call plays B scenarios x G copies (the GRPO groups) to the end and returns, per dialogue,
the record every learner reads (docs/design.md, "The episode record"):

| field | meaning |
|---|---|
| `token_ids` | the whole dialogue as the policy saw it: the opening prompt, then for each turn the tokens it sampled *as sampled*, then the user turn appended as a chat-template delta |
| `loss_mask` | 1 exactly on the tokens the policy sampled (its thinking and its end-of-turn token included), 0 on system, user and template tokens |
| `logprobs` | the rollout log-prob of each sampled token, `log_softmax(logits / T)` (0 where the mask is 0) |
| `reward_positions`, `turn_rewards` | one entry per agent turn: the index of the turn's last sampled token, and the env's reward for that turn |
| `group`, `scenario_id`, `outcome`, `final_emotion`, `turns` | bookkeeping for advantages and metrics |

Nothing is re-tokenized: the env receives the decoded visible text, but the learner keeps the ids.
Dialogues that end with outcome `error` (the simulator failed for good) are dropped and counted,
never scored as zero.

**Length budget** (`max_seq_len`): generation is never cut short by it (the model's context
limit is the only hard stop); it bounds the training sequence. A dialogue longer than the
budget is, by `overlong`:

- `"mask"` (default): kept in the batch (its return still counts in its group's baseline) but
  its loss mask is zeroed, so it adds no gradient (DAPO's overlong filtering);
- `"keep"`: cut at the budget and trained on the kept part; rewards of turns past the cut move
  to the last kept policy token, so the return is unchanged.

A turn that runs out of `max_new_tokens` is closed by an end-of-turn token with mask 0 (the
template's, not the policy's), so the dialogue stays well formed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from agents.learn.seeds import turn_seed
from agents.policy.chat_format import ChatFormat
from agents.policy.hf_engine import Completion, Sampling
from agents.policy.model import Policy

if TYPE_CHECKING:
    from sage_gym.vector import SageVectorEnv

OVERLONG_MODES = ("mask", "keep")


class RolloutEngine(Protocol):
    """What samples the rollouts: the policy itself (the default) or a `VLLMEngine` kept in sync with it."""

    chat: ChatFormat

    def sample(
        self, contexts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator | None = None,
        max_new_tokens: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
    ) -> list[Completion]: ...

    def sync_weights(self, policy: Policy) -> None: ...

    def close(self) -> None: ...


@dataclass
class Episode:
    """One dialogue as the learner sees it (see the module docstring), grown turn by turn as it is played."""

    token_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    reward_positions: list[int]
    turn_rewards: list[float]
    group: int
    dialogue: int = -1  # index in the step's global batch (over all ranks), errors included
    scenario_id: str = ""
    outcome: str | None = None
    final_emotion: float = float("nan")
    turns: int = 0
    overlong: bool = False
    replies: list[str] = field(default_factory=list)
    error: str | None = None  # why the simulator failed, when the outcome is `error`

    @classmethod
    def opening(cls, prompt_ids: list[int], group: int, dialogue: int, scenario_id: str) -> Episode:
        """A dialogue that has only its opening prompt (system + first user message), nothing sampled yet."""
        return cls(prompt_ids, [0] * len(prompt_ids), [0.0] * len(prompt_ids), [], [], group, dialogue, scenario_id)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def episode_return(self) -> float:
        return float(sum(self.turn_rewards))

    @property
    def num_policy_tokens(self) -> int:
        return int(sum(self.loss_mask))

    def token_rewards(self) -> list[float]:
        """Dense per-token rewards: each turn's reward on its last sampled token, 0 elsewhere."""
        rewards = [0.0] * len(self.token_ids)
        for position, reward in zip(self.reward_positions, self.turn_rewards, strict=True):
            rewards[position] += reward
        return rewards

    def add_reply(self, completion: Completion, end_of_turn_id: int, reply: str) -> None:
        """The tokens the policy sampled, as sampled (mask 1); a turn cut by its budget is closed by the template's end-of-turn token (mask 0)."""
        self.token_ids += completion.token_ids
        self.loss_mask += [1] * len(completion.token_ids)
        self.logprobs += completion.logprobs
        self.reward_positions.append(len(self.token_ids) - 1)
        if not completion.stopped:
            self.token_ids.append(end_of_turn_id)
            self.loss_mask.append(0)
            self.logprobs.append(0.0)
        self.replies.append(reply)

    def add_user_turn(self, delta: list[int]) -> None:
        """The user's next message, as the chat template's tokens (mask 0)."""
        self.token_ids += delta
        self.loss_mask += [0] * len(delta)
        self.logprobs += [0.0] * len(delta)

    def finish(self, outcome: str, emotion: float | None) -> None:
        self.outcome = outcome
        self.final_emotion = float(emotion) if emotion is not None else float("nan")
        self.turns = len(self.turn_rewards)


class SimulatorFailed(RuntimeError):
    """The simulator failed every dialogue of a training step or of a held-out evaluation: the run stops (exit status 1)."""


def one_line(text: str) -> str:
    """An error message fit for one line of a log."""
    return " ".join(str(text).split())


@dataclass
class RolloutBatch:
    """The episodes of one rollout plus what happened on the way (for metrics)."""

    episodes: list[Episode]
    dialogues: int  # started, errors included
    dropped_errors: int
    overlong: int
    sampled_tokens: int
    generate_seconds: float
    env_seconds: float
    errors: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # with `records=True`: every dialogue's transcript record, errors included


def _as_list(infos: dict[str, Any], key: str, n: int) -> list[Any]:
    values, mask = infos.get(key), infos.get(f"_{key}")
    if values is None:
        return [None] * n
    return [values[i] if mask is None or mask[i] else None for i in range(n)]


def collect_rollouts(
    policy: Policy,
    envs: SageVectorEnv,
    sampling: Sampling,
    *,
    group_size: int,
    seed: int,
    scenario_ids: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
    sample_seed: int | None = None,
    max_seq_len: int | None = None,
    overlong: str = "mask",
    group_offset: int = 0,
    engine: RolloutEngine | None = None,
    records: bool = False,
) -> RolloutBatch:
    """Play every sub-env of `envs` (a `SageVectorEnv` with autoreset disabled) to the end.

    `scenario_ids` gives one scenario per group (num_envs // group_size of them, or None to let
    each group draw its own from `seed`). `group_offset` numbers this batch's groups after those
    of other ranks, so group ids are global. With `sample_seed`, turn k of global dialogue d is
    sampled from its own stream `turn_seed(sample_seed, d, k)`: the batch plays the same
    however the groups are split over ranks (otherwise `generator` drives the whole batch).
    `engine` samples (default: the policy itself); it follows `Policy.sample`'s contract.
    With `records`, the batch also carries each dialogue's transcript record (the env's
    `episode_record()`, plus its `group`, its global `dialogue` index and any `error`), so the
    caller can write transcripts that say which step and group each dialogue belongs to.
    """
    if overlong not in OVERLONG_MODES:
        raise ValueError(f"overlong must be one of {OVERLONG_MODES}, got {overlong!r}")
    mode = envs.metadata.get("autoreset_mode")
    if getattr(mode, "value", mode) not in ("Disabled", "disabled"):
        raise ValueError(f"rollouts need a vector env with autoreset disabled (got {mode}); GRPO groups must not be reset mid-batch")
    n = envs.num_envs
    options: dict[str, Any] = {"group_size": group_size}
    if scenario_ids is not None:
        options["scenario_ids"] = list(scenario_ids)
    observations, infos = envs.reset(seed=seed, options=options)
    first = group_offset * group_size  # global index of this batch's first dialogue
    scenario_of = _as_list(infos, "scenario_id", n)
    episodes = [Episode.opening(policy.chat.prompt_ids(observations[i]), group_offset + i // group_size, first + i, str(scenario_of[i])) for i in range(n)]
    player = _Player(policy, envs, sampling, engine or policy, generator, sample_seed)
    while not all(e.outcome for e in episodes):
        player.turn(episodes)
    batch = _batch(episodes, player, max_seq_len, overlong)
    if records:
        batch.records = [transcript_record(envs, i, e) for i, e in enumerate(episodes)]
    return batch


def transcript_record(envs: SageVectorEnv, index: int, episode: Episode) -> dict[str, Any]:
    """Sub-env `index`'s finished dialogue as a transcript record, with the learner's bookkeeping."""
    record = envs.envs[index].episode_record()
    record.update(group=episode.group, dialogue=episode.dialogue)
    if episode.error is not None:
        record["error"] = episode.error
    return record


class _Player:
    """Plays one turn of every unfinished dialogue at a time: sample a reply for each, then step the envs."""

    def __init__(
        self, policy: Policy, envs: SageVectorEnv, sampling: Sampling, engine: RolloutEngine, generator: torch.Generator | None, sample_seed: int | None,
    ) -> None:
        self.chat, self.envs, self.sampling, self.engine = policy.chat, envs, sampling, engine
        self.generator, self.sample_seed = generator, sample_seed
        self.context_limit = _context_limit(policy)
        self.max_action_chars = getattr(envs.single_action_space, "max_length", None)
        self.sampled, self.generate_seconds, self.env_seconds = 0, 0.0, 0.0
        self.errors: list[str] = []

    def turn(self, episodes: list[Episode]) -> None:
        active = [i for i, e in enumerate(episodes) if not e.outcome]
        room = [self.context_limit - len(episodes[i]) - 1 for i in active]  # -1 keeps space for a closing end-of-turn token
        if min(room) < 1:
            raise RuntimeError(f"a dialogue reached the model's context limit ({self.context_limit} tokens); lower max_turns or max_new_tokens")
        started = time.perf_counter()
        seeds = None
        if self.sample_seed is not None:
            seeds = [turn_seed(self.sample_seed, episodes[i].dialogue, len(episodes[i].reward_positions)) for i in active]
        completions = self.engine.sample([episodes[i].token_ids for i in active], self.sampling, self.generator, max_new_tokens=room, seeds=seeds)
        self.generate_seconds += time.perf_counter() - started

        actions: list[str | None] = [None] * len(episodes)
        for i, completion in zip(active, completions, strict=True):
            text = self.chat.decode_reply(completion.token_ids)
            actions[i] = text[: self.max_action_chars] if self.max_action_chars else text
            episodes[i].add_reply(completion, self.chat.end_of_turn_id, actions[i] or "")
            self.sampled += len(completion.token_ids)

        started = time.perf_counter()
        observations, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.env_seconds += time.perf_counter() - started
        n = len(episodes)
        outcomes, emotions, errors = _as_list(infos, "outcome", n), _as_list(infos, "emotion", n), _as_list(infos, "error", n)
        for i in active:
            episode = episodes[i]
            episode.turn_rewards.append(float(rewards[i]))
            if terminated[i] or truncated[i]:
                episode.finish(outcomes[i] or ("truncated" if truncated[i] else "error"), emotions[i])
                if episode.outcome == "error":
                    episode.error = str(errors[i])
                    self.errors.append(episode.error)
            else:
                episode.add_user_turn(self.chat.user_turn_ids(observations[i]))


def _batch(episodes: list[Episode], player: _Player, max_seq_len: int | None, overlong: str) -> RolloutBatch:
    """The finished dialogues: errors dropped and counted (never scored as zero), the length budget applied."""
    kept, overlong_count = [], 0
    for episode in episodes:
        if episode.outcome == "error":
            continue
        if max_seq_len is not None and len(episode) > max_seq_len:
            apply_length_budget(episode, max_seq_len, overlong)
            overlong_count += 1
        kept.append(episode)
    return RolloutBatch(
        kept, len(episodes), len(episodes) - len(kept), overlong_count, player.sampled, player.generate_seconds, player.env_seconds, player.errors
    )


def apply_length_budget(episode: Episode, max_seq_len: int, overlong: str) -> None:
    """Handle a dialogue longer than the budget in place (see the module docstring)."""
    episode.overlong = True
    if overlong == "mask":
        episode.loss_mask = [0] * len(episode.loss_mask)
        return
    keep = max_seq_len
    episode.token_ids = episode.token_ids[:keep]
    episode.loss_mask = episode.loss_mask[:keep]
    episode.logprobs = episode.logprobs[:keep]
    policy_positions = [t for t, m in enumerate(episode.loss_mask) if m]
    last = policy_positions[-1] if policy_positions else keep - 1
    episode.reward_positions = [p if p < keep else last for p in episode.reward_positions]


def _context_limit(policy: Policy) -> int:
    config = policy.base.config
    text_config = getattr(config, "text_config", None) or config
    return int(getattr(text_config, "max_position_embeddings", None) or 1 << 20)
