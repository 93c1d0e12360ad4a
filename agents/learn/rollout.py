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
from typing import Any

import numpy as np
import torch

from agents.learn.policy import Policy, Sampling

OVERLONG_MODES = ("mask", "keep")


@dataclass
class Episode:
    """One dialogue as the learner sees it (see the module docstring)."""

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
        for position, reward in zip(self.reward_positions, self.turn_rewards):
            rewards[position] += reward
        return rewards


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


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (run seed, step, purpose...), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _as_list(infos: dict[str, Any], key: str, n: int) -> list[Any]:
    values, mask = infos.get(key), infos.get(f"_{key}")
    if values is None:
        return [None] * n
    return [values[i] if mask is None or mask[i] else None for i in range(n)]


def collect_rollouts(
    policy: Policy,
    envs: Any,
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
    engine: Any = None,
) -> RolloutBatch:
    """Play every sub-env of `envs` (a `SageVectorEnv` with autoreset disabled) to the end.

    `scenario_ids` gives one scenario per group (num_envs // group_size of them, or None to let
    each group draw its own from `seed`). `group_offset` numbers this batch's groups after those
    of other ranks, so group ids are global. With `sample_seed`, turn k of global dialogue d is
    sampled from its own stream `derive_seed(sample_seed, d, k)`: the batch plays the same
    however the groups are split over ranks (otherwise `generator` drives the whole batch).
    `engine` generates instead of the policy (a vLLM engine); it follows the same contract.
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
    sampler = engine if engine is not None else policy
    chat = policy.chat
    context_limit = _context_limit(policy)
    max_action_chars = getattr(envs.single_action_space, "max_length", None)

    ids = [chat.prompt_ids(observations[i]) for i in range(n)]
    masks = [[0] * len(ids[i]) for i in range(n)]
    logprobs = [[0.0] * len(ids[i]) for i in range(n)]
    positions: list[list[int]] = [[] for _ in range(n)]
    rewards: list[list[float]] = [[] for _ in range(n)]
    replies: list[list[str]] = [[] for _ in range(n)]
    scenario_of = _as_list(infos, "scenario_id", n)
    outcome: list[str | None] = [None] * n
    emotion: list[float] = [float("nan")] * n
    errors: list[str] = []
    done = np.zeros(n, dtype=bool)
    sampled = 0
    generate_seconds = env_seconds = 0.0

    while not done.all():
        active = np.flatnonzero(~done).tolist()
        room = [context_limit - len(ids[i]) - 1 for i in active]  # -1 keeps space for a closing end-of-turn token
        if min(room) < 1:
            raise RuntimeError(
                f"a dialogue reached the model's context limit ({context_limit} tokens); lower max_turns or max_new_tokens"
            )
        started = time.perf_counter()
        seeds = None
        if sample_seed is not None:
            first = group_offset * group_size  # global index of this batch's first dialogue
            seeds = [derive_seed(sample_seed, first + i, len(positions[i])) for i in active]
        completions = sampler.sample([ids[i] for i in active], sampling, generator, max_new_tokens=room, seeds=seeds)
        generate_seconds += time.perf_counter() - started

        actions: list[str | None] = [None] * n
        for i, completion in zip(active, completions):
            ids[i] += completion.token_ids
            masks[i] += [1] * len(completion.token_ids)
            logprobs[i] += completion.logprobs
            positions[i].append(len(ids[i]) - 1)
            sampled += len(completion.token_ids)
            if not completion.stopped:  # out of tokens: close the turn with the template's end-of-turn token
                ids[i].append(chat.end_of_turn_id)
                masks[i].append(0)
                logprobs[i].append(0.0)
            text = chat.decode_reply(completion.token_ids)
            actions[i] = text[:max_action_chars] if max_action_chars else text
            replies[i].append(actions[i] or "")

        started = time.perf_counter()
        observations, step_rewards, terminated, truncated, infos = envs.step(actions)
        env_seconds += time.perf_counter() - started
        outcomes = _as_list(infos, "outcome", n)
        emotions = _as_list(infos, "emotion", n)
        step_errors = _as_list(infos, "error", n)
        for i in active:
            rewards[i].append(float(step_rewards[i]))
            if terminated[i] or truncated[i]:
                done[i] = True
                outcome[i] = outcomes[i] or ("truncated" if truncated[i] else "error")
                emotion[i] = float(emotions[i]) if emotions[i] is not None else float("nan")
                if outcome[i] == "error":
                    errors.append(str(step_errors[i]))
            else:
                delta = chat.user_turn_ids(observations[i])
                ids[i] += delta
                masks[i] += [0] * len(delta)
                logprobs[i] += [0.0] * len(delta)

    episodes, dropped, overlong_count = [], 0, 0
    for i in range(n):
        if outcome[i] == "error":
            dropped += 1
            continue
        episode = Episode(
            token_ids=ids[i], loss_mask=masks[i], logprobs=logprobs[i], reward_positions=positions[i], turn_rewards=rewards[i],
            group=group_offset + i // group_size, dialogue=group_offset * group_size + i, scenario_id=str(scenario_of[i]), outcome=outcome[i], final_emotion=emotion[i],
            turns=len(rewards[i]), replies=replies[i],
        )
        if max_seq_len is not None and len(episode) > max_seq_len:
            apply_length_budget(episode, max_seq_len, overlong)
            overlong_count += 1
        episodes.append(episode)
    return RolloutBatch(episodes, n, dropped, overlong_count, sampled, generate_seconds, env_seconds, errors)


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


# ----------------------------------------------------------------------------------------------
# episodes -> padded tensors


@dataclass
class MicroBatch:
    """Right-padded tensors of a few episodes (rows sorted by length, longest first)."""

    indices: list[int]  # positions of these episodes in the list they came from
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    loss_mask: torch.Tensor  # [B, L] float
    old_logprobs: torch.Tensor  # [B, L] float32

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(
            self.indices, *(t.to(device) for t in (self.input_ids, self.attention_mask, self.loss_mask, self.old_logprobs))
        )


def pack_length_sorted(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices into micro-batches, longest first, each at most `token_budget` padded tokens.

    Sorting by length means each micro-batch pads to a length close to its rows' own, so almost
    no compute is spent on padding; an episode longer than the budget gets a micro-batch alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def make_micro_batches(episodes: Sequence[Episode], indices: Sequence[int], token_budget: int, pad_id: int) -> list[MicroBatch]:
    """Micro-batches of `episodes[indices]`, sized by a token budget and sorted by length."""
    chosen = [episodes[i] for i in indices]
    batches = []
    for group in pack_length_sorted([len(e) for e in chosen], token_budget):
        rows = [chosen[j] for j in group]
        width = max(len(e) for e in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        loss_mask = torch.zeros((len(rows), width), dtype=torch.float32)
        old = torch.zeros((len(rows), width), dtype=torch.float32)
        for r, e in enumerate(rows):
            L = len(e)
            input_ids[r, :L] = torch.tensor(e.token_ids)
            attention[r, :L] = 1
            loss_mask[r, :L] = torch.tensor(e.loss_mask, dtype=torch.float32)
            old[r, :L] = torch.tensor(e.logprobs, dtype=torch.float32)
        batches.append(MicroBatch([indices[j] for j in group], input_ids, attention, loss_mask, old))
    return batches
