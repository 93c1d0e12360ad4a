"""Rollouts through SageVectorEnv: token in / token out, the loss mask, rewards, errors, length budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policy.hf_engine import Sampling
from agents.policy.model import Policy
from agents.learn.batching import make_micro_batches, pack_length_sorted
from agents.learn.rollout import Episode, apply_length_budget, collect_rollouts
from agents.learn.tiny_model import system_prompts, tiny_random_model
from tests.tiny import SMALL, one_thread, tokenizer  # noqa: F401  (fixtures)
from sage_gym.simulators import BuiltinSimulator, SimulatorError
from sage_gym.vector import SageVectorEnv


class RecordingPolicy(Policy):
    """Remembers every completion it sampled, so a test can rebuild the dialogue it should produce."""

    def sample(self, contexts, sampling, generator=None, max_new_tokens=None, seeds=None):  # type: ignore[override]
        out = super().sample(contexts, sampling, generator, max_new_tokens, seeds)
        self.calls.append(([list(c) for c in contexts], out))
        return out


def make_policy(tokenizer, template: str, cls: type = Policy, seed: int = 0) -> Policy:
    policy = cls.from_model(tiny_random_model(tokenizer, SMALL, seed=seed), tokenizer, system_prompt=system_prompts()[template])
    policy.calls = []  # type: ignore[attr-defined]
    return policy


def envs(n: int, max_turns: int = 3, **kwargs) -> SageVectorEnv:
    return SageVectorEnv(n, autoreset_mode="disabled", max_turns=max_turns, **kwargs)


def recompute(policy: Policy, episodes: list[Episode], temperature: float) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        for micro in make_micro_batches(episodes, list(range(len(episodes))), 10_000, policy.tokenizer.pad_token_id):
            lp = policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature).logprobs
            for row, index in enumerate(micro.indices):
                out.append((index, lp[row, : len(episodes[index])]))
    return [lp for _, lp in sorted(out, key=lambda pair: pair[0])]


@pytest.mark.parametrize("template", ["think", "direct"])
def test_recomputed_logprobs_equal_rollout_logprobs(tokenizer, template: str) -> None:
    """Token in, token out: the loss path scores every sampled token exactly as sampling did."""
    policy = make_policy(tokenizer, template)
    sampling = Sampling(temperature=0.9, top_p=1.0, max_new_tokens=12)
    batch = collect_rollouts(policy, envs(4, max_turns=3), sampling, group_size=2, seed=11, generator=torch.Generator().manual_seed(0))
    assert all(e.turns >= 2 for e in batch.episodes)  # several turns, so deltas and cache reuse are exercised
    for episode, lp in zip(batch.episodes, recompute(policy, batch.episodes, 0.9)):
        mask = torch.tensor(episode.loss_mask, dtype=torch.bool)
        rollout = torch.tensor(episode.logprobs)
        assert mask.sum() > 0
        torch.testing.assert_close(lp[mask], rollout[mask], atol=1e-5, rtol=0)
        assert torch.count_nonzero(rollout[~mask]) == 0


class ThinkingPolicy(Policy):
    """A random policy nudged to write <think> ... </think>: the bias is part of its logits, in sampling and loss alike."""

    def _logits(self, hidden):
        logits = super()._logits(hidden)
        bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
        bias[self.tokenizer.convert_tokens_to_ids("<think>")] = 6.0
        bias[self.tokenizer.convert_tokens_to_ids("</think>")] = 4.0
        return logits + bias


def test_thinking_tokens_are_trained_and_never_reach_the_user(tokenizer) -> None:
    policy = make_policy(tokenizer, "think", ThinkingPolicy)
    vec = envs(4, max_turns=3)
    batch = collect_rollouts(policy, vec, Sampling(1.0, 1.0, 16), group_size=2, seed=3, generator=torch.Generator().manual_seed(1))
    think = tokenizer.convert_tokens_to_ids("<think>")
    sampled_think = 0
    for episode, lp in zip(batch.episodes, recompute(policy, batch.episodes, 1.0)):
        mask = torch.tensor(episode.loss_mask, dtype=torch.bool)
        torch.testing.assert_close(lp[mask], torch.tensor(episode.logprobs)[mask], atol=1e-5, rtol=0)
        # (the system prompt mentions <think> too: look after it)
        first_reply = episode.loss_mask.index(1)
        positions = [t for t, token in enumerate(episode.token_ids) if token == think and t >= first_reply]
        sampled_think += len(positions)
        assert all(episode.loss_mask[t] == 1 for t in positions)  # every later <think> was the policy's
    assert sampled_think > 0
    for env in vec.envs:  # only the visible replies reached the simulated user
        assert all("<think>" not in m["content"] for m in env.history if m["role"] == "assistant")


def test_mask_is_one_exactly_on_sampled_tokens(tokenizer) -> None:
    policy = make_policy(tokenizer, "think", RecordingPolicy)
    sampling = Sampling(1.0, 1.0, 10)
    batch = collect_rollouts(policy, envs(2, max_turns=3), sampling, group_size=2, seed=5, generator=torch.Generator().manual_seed(2))
    chat = policy.chat
    for row, episode in enumerate(batch.episodes):
        # rebuild the dialogue from the prompt, the recorded completions and the chat-template deltas;
        # at sampling call t the running dialogues are passed in order, so this row's index is the
        # number of running rows before it
        expected_ids = list(policy.calls[0][0][row])
        expected_mask = [0] * len(expected_ids)
        for turn, (contexts, completions) in enumerate(policy.calls[: episode.turns]):
            index = sum(1 for other in batch.episodes[:row] if other.turns > turn)
            assert contexts[index] == expected_ids
            completion = completions[index]
            expected_ids += completion.token_ids
            expected_mask += [1] * len(completion.token_ids)
            if not completion.stopped:
                expected_ids.append(chat.end_of_turn_id)
                expected_mask.append(0)
            if turn + 1 < episode.turns:
                following = policy.calls[turn + 1][0][sum(1 for other in batch.episodes[:row] if other.turns > turn + 1)]
                delta = following[len(expected_ids) :]
                assert following[: len(expected_ids)] == expected_ids
                assert tokenizer.decode(delta).startswith("\n<|im_start|>user\n")
                assert delta == chat.user_turn_ids(tokenizer.decode(delta).split("user\n", 1)[1].split("<|im_end|>")[0])
                expected_ids += delta
                expected_mask += [0] * len(delta)
        assert episode.token_ids == expected_ids
        assert episode.loss_mask == expected_mask
        # the prompt's system and user tokens are never trained
        assert sum(episode.loss_mask[: len(policy.calls[0][0][row])]) == 0


def test_rewards_sit_on_the_last_token_of_each_agent_turn(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct")
    batch = collect_rollouts(policy, envs(4, max_turns=3, reward_mode="delta", initial_emotion=40), Sampling(1.0, 1.0, 8), group_size=2, seed=9,
                             generator=torch.Generator().manual_seed(4))
    for episode in batch.episodes:
        assert len(episode.reward_positions) == len(episode.turn_rewards) == episode.turns
        for position in episode.reward_positions:
            assert episode.loss_mask[position] == 1  # a sampled token
            assert position + 1 == len(episode) or episode.loss_mask[position + 1] == 0  # ... the turn's last one
        dense = episode.token_rewards()
        assert sum(dense) == pytest.approx(episode.episode_return)
        assert episode.episode_return == pytest.approx((episode.final_emotion - 40) / 100)
    assert [e.group for e in batch.episodes] == [0, 0, 1, 1]


def test_group_copies_share_a_scenario(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct")
    vec = envs(4, max_turns=1)
    ids = list(vec.scenarios.ids[:2])
    batch = collect_rollouts(policy, vec, Sampling(1.0, 1.0, 4), group_size=2, seed=1, scenario_ids=ids, group_offset=10)
    assert [e.scenario_id for e in batch.episodes] == [ids[0], ids[0], ids[1], ids[1]]
    assert [e.group for e in batch.episodes] == [10, 10, 11, 11]


class FlakySimulator(BuiltinSimulator):
    """Fails for good on the second reply of dialogues with an odd seed."""

    async def react(self, scenario, state, history, agent_reply):
        if state.seed % 2 == 1 and sum(m["role"] == "assistant" for m in history) == 1:
            raise SimulatorError("simulated outage")
        return await super().react(scenario, state, history, agent_reply)


def test_error_dialogues_are_dropped_and_counted(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct")
    vec = SageVectorEnv(8, simulator=FlakySimulator(), autoreset_mode="disabled", max_turns=3)
    batch = collect_rollouts(policy, vec, Sampling(1.0, 1.0, 6), group_size=2, seed=0, generator=torch.Generator().manual_seed(0))
    seeds = [env._state.seed for env in vec.envs]
    failed = sum(s % 2 == 1 for s in seeds)
    assert failed > 0
    assert batch.dropped_errors == failed
    assert len(batch.episodes) == 8 - failed
    assert all(e.outcome != "error" for e in batch.episodes)
    assert all("simulated outage" in message for message in batch.errors)


def test_rollout_needs_autoreset_disabled(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct")
    with pytest.raises(ValueError, match="autoreset disabled"):
        collect_rollouts(policy, SageVectorEnv(2, autoreset_mode="next_step"), Sampling(), group_size=2, seed=0)


def test_turns_cut_by_max_new_tokens_are_closed_by_a_template_token(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct", RecordingPolicy)
    batch = collect_rollouts(policy, envs(2, max_turns=2), Sampling(1.0, 1.0, 2), group_size=2, seed=2, generator=torch.Generator().manual_seed(0))
    eot = policy.chat.end_of_turn_id
    for episode in batch.episodes:
        for position in episode.reward_positions:
            closer = episode.token_ids[position + 1] if position + 1 < len(episode) else None
            sampled_stop = episode.token_ids[position] in policy.chat.stop_ids
            assert sampled_stop or (closer == eot and episode.loss_mask[position + 1] == 0)


# ----------------------------------------------------------------------------------------------
# length budget and batching


def _episode(length: int, turns: list[int]) -> Episode:
    mask = [0] * length
    for p in turns:
        mask[p - 1] = mask[p] = 1
    return Episode(list(range(length)), mask, [-0.5 * m for m in mask], list(turns), [0.1] * len(turns), group=0)


def test_overlong_mask_zeroes_the_loss_mask() -> None:
    e = _episode(20, [5, 12, 18])
    apply_length_budget(e, 10, "mask")
    assert e.overlong and sum(e.loss_mask) == 0 and len(e) == 20
    assert e.episode_return == pytest.approx(0.3)


def test_overlong_keep_cuts_and_moves_late_rewards() -> None:
    e = _episode(20, [5, 12, 18])
    apply_length_budget(e, 10, "keep")
    assert len(e) == len(e.loss_mask) == len(e.logprobs) == 10
    assert e.reward_positions == [5, 5, 5]  # turns past the cut credit the last kept policy token
    assert e.episode_return == pytest.approx(0.3)
    assert sum(e.token_rewards()) == pytest.approx(0.3)


def test_overlong_episodes_are_handled_in_rollouts(tokenizer) -> None:
    policy = make_policy(tokenizer, "direct")
    batch = collect_rollouts(policy, envs(2, max_turns=2), Sampling(1.0, 1.0, 4), group_size=2, seed=0, max_seq_len=50, overlong="mask")
    assert batch.overlong == 2 and all(e.num_policy_tokens == 0 for e in batch.episodes)
    with pytest.raises(ValueError, match="overlong"):
        collect_rollouts(policy, envs(2), Sampling(), group_size=2, seed=0, overlong="drop")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=40), st.integers(1, 1000))
def test_length_sorted_packing(lengths: list[int], budget: int) -> None:
    batches = pack_length_sorted(lengths, budget)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        padded = len(b) * max(lengths[i] for i in b)
        assert padded <= budget or len(b) == 1
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    # longest first across batches too: padding waste stays small
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_micro_batches_hold_the_episode_records() -> None:
    episodes = [_episode(12, [4, 9]), _episode(7, [3]), _episode(15, [5, 14])]
    micro = make_micro_batches(episodes, [0, 1, 2], token_budget=30, pad_id=99)
    assert [m.indices for m in micro] == [[2, 0], [1]]
    first = micro[0]
    assert first.input_ids.shape == (2, 15)
    assert first.input_ids[1, 12:].tolist() == [99, 99, 99]
    assert first.attention_mask[1].tolist() == [1] * 12 + [0] * 3
    assert first.loss_mask[1].tolist() == [float(m) for m in episodes[0].loss_mask] + [0.0] * 3
    assert episodes[0].token_rewards()[9] == pytest.approx(0.1)  # row 1 is episode 0
    assert np.isclose(first.old_logprobs[0].sum().item(), sum(episodes[2].logprobs))
