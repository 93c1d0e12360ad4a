"""Token-level GAE over the policy's tokens only, batch whitening, and per-turn rewards, against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.learn.advantages import token_gae, whiten

# A dialogue: prompt (2 tokens), agent turn 1 (2 tokens), user turn (2), agent turn 2 (3), user turn (1), agent turn 3 (1).
MASK = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.float32)
# each turn's reward on the last token the agent sampled in it
REWARDS = torch.tensor([0, 0, 0, 1.0, 0, 0, 0, 0, -0.5, 0, 2.0])
# values off the mask are junk on purpose: user and template tokens must not be steps
VALUES = torch.tensor([99, 99, 0.5, 0.4, 99, 99, 0.3, 0.2, 0.1, 99, 0.6])


def test_gae_skips_user_and_template_tokens_by_hand() -> None:
    # policy tokens k = 0..5 at positions 2, 3, 6, 7, 8, 10; r = [0, 1, 0, 0, -0.5, 2]; V = [.5, .4, .3, .2, .1, .6]
    # gamma = 0.9, lam = 0.5 (gamma * lam = 0.45), V_6 = 0 (the dialogue is over):
    # k=5: delta = 2 - 0.6 = 1.4                          A = 1.4
    # k=4: delta = -0.5 + 0.9*0.6 - 0.1 = -0.06          A = -0.06 + 0.45*1.4 = 0.57
    # k=3: delta = 0.9*0.1 - 0.2 = -0.11                  A = -0.11 + 0.45*0.57 = 0.1465
    # k=2: delta = 0.9*0.2 - 0.3 = -0.12                  A = -0.12 + 0.45*0.1465 = -0.054075
    # k=1: delta = 1 + 0.9*0.3 - 0.4 = 0.87               A = 0.87 + 0.45*(-0.054075) = 0.84566625
    # k=0: delta = 0.9*0.4 - 0.5 = -0.14                  A = -0.14 + 0.45*0.84566625 = 0.2405498125
    adv, ret = token_gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.5)
    expected = [0.2405498125, 0.84566625, -0.054075, 0.1465, 0.57, 1.4]
    positions = [2, 3, 6, 7, 8, 10]
    torch.testing.assert_close(adv[positions], torch.tensor(expected))
    torch.testing.assert_close(ret[positions], torch.tensor(expected) + VALUES[positions])
    off = torch.tensor([0, 1, 4, 5, 9])
    assert torch.count_nonzero(adv[off]) == 0 and torch.count_nonzero(ret[off]) == 0


def test_gamma_and_lambda_one_give_returns_to_go() -> None:
    # with gamma = lam = 1 the values cancel: A_k + V_k = sum of the rewards from k on
    adv, ret = token_gae(REWARDS, VALUES, MASK, gamma=1.0, lam=1.0)
    positions = [2, 3, 6, 7, 8, 10]
    torch.testing.assert_close(ret[positions], torch.tensor([2.5, 2.5, 1.5, 1.5, 1.5, 2.0]))
    torch.testing.assert_close(adv[positions], torch.tensor([2.5, 2.5, 1.5, 1.5, 1.5, 2.0]) - VALUES[positions])


def test_lambda_zero_is_one_step_td() -> None:
    adv, _ = token_gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.0)
    positions = [2, 3, 6, 7, 8, 10]
    torch.testing.assert_close(adv[positions], torch.tensor([-0.14, 0.87, -0.12, -0.11, -0.06, 1.4]))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=1, max_size=12),
    st.lists(st.integers(0, 3), min_size=13, max_size=13),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_inserted_user_tokens_change_nothing(steps: list[tuple[float, float]], gaps: list[int], gamma: float, lam: float) -> None:
    """The same policy tokens with any number of masked tokens (any values, no rewards) between them give the same GAE."""
    rewards = torch.tensor([r for r, _ in steps])
    values = torch.tensor([v for _, v in steps])
    dense_adv, dense_ret = token_gae(rewards, values, torch.ones(len(steps)), gamma, lam)
    r, v, m = [], [], []
    for k, (reward, value) in enumerate(steps):
        r += [0.0] * gaps[k] + [reward]
        v += [5.0] * gaps[k] + [value]
        m += [0.0] * gaps[k] + [1.0]
    r += [0.0] * gaps[-1]
    v += [5.0] * gaps[-1]
    m += [0.0] * gaps[-1]
    adv, ret = token_gae(torch.tensor(r), torch.tensor(v), torch.tensor(m), gamma, lam)
    keep = torch.tensor(m).bool()
    torch.testing.assert_close(adv[keep], dense_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret[keep], dense_ret, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-2, 2)), min_size=1, max_size=15))
def test_returns_to_go_whatever_the_values(steps: list[tuple[float, float]]) -> None:
    rewards = torch.tensor([r for r, _ in steps])
    values = torch.tensor([v for _, v in steps])
    _, ret = token_gae(rewards, values, torch.ones(len(steps)), 1.0, 1.0)
    to_go = torch.flip(torch.cumsum(torch.flip(rewards, [0]), 0), [0])
    torch.testing.assert_close(ret, to_go, atol=1e-5, rtol=1e-5)


def test_a_reward_on_a_non_policy_token_credits_the_action_before_it() -> None:
    mask = torch.tensor([0, 1, 1, 0, 0, 1.0])
    values = torch.zeros(6)
    moved = token_gae(torch.tensor([0, 0, 0, 0.7, 0, 0]), values, mask, 1.0, 1.0)[0]
    on_token = token_gae(torch.tensor([0, 0, 0.7, 0, 0, 0]), values, mask, 1.0, 1.0)[0]
    torch.testing.assert_close(moved, on_token)
    # before the first policy token there is no action to credit
    dropped = token_gae(torch.tensor([0.7, 0, 0, 0, 0, 0]), values, mask, 1.0, 1.0)[0]
    assert torch.count_nonzero(dropped) == 0


def test_batched_rows_equal_single_rows() -> None:
    rows = torch.stack([MASK, torch.cat([MASK[:6], torch.zeros(5)])])
    rewards = torch.stack([REWARDS, torch.cat([REWARDS[:4], torch.zeros(7)])])
    values = torch.stack([VALUES, VALUES.flip(0)])
    adv, ret = token_gae(rewards, values, rows, 0.95, 0.9)
    for b in range(2):
        single = token_gae(rewards[b], values[b], rows[b], 0.95, 0.9)
        torch.testing.assert_close(adv[b], single[0])
        torch.testing.assert_close(ret[b], single[1])
    empty = token_gae(torch.ones(3), torch.ones(3), torch.zeros(3), 1.0, 1.0)
    assert torch.count_nonzero(empty[0]) == 0


def test_gae_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="gamma"):
        token_gae(REWARDS, VALUES, MASK, gamma=1.5, lam=1.0)
    with pytest.raises(ValueError, match="one shape"):
        token_gae(REWARDS, VALUES[:-1], MASK, gamma=1.0, lam=1.0)


# ----------------------------------------------------------------------------------------------
# whitening


def test_whitening_over_the_masked_tokens_of_the_batch() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = whiten(x, mask, eps=0.0)
    # masked entries 1, 2, 3: mean 2, population variance 2/3
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]) / (2 / 3) ** 0.5)
    assert float(whiten(x, torch.zeros_like(x)).abs().sum()) == 0.0


def test_whitening_across_ranks_uses_global_statistics() -> None:
    torch.manual_seed(0)
    x, mask = torch.randn(6, 5), (torch.rand(6, 5) > 0.3).float()
    whole = whiten(x, mask)
    halves = [(x[:2], mask[:2]), (x[2:], mask[2:])]

    def local_sums(part: torch.Tensor, m: torch.Tensor) -> list[float]:
        return [float((part * m).sum()), float((part * part * m).sum()), float(m.sum())]

    def all_reduce_for(rank: int):  # a fake all-reduce that adds the other rank's sums
        other = local_sums(*halves[1 - rank])
        return lambda mine: [a + b for a, b in zip(mine, other)]

    parts = [whiten(p, m, all_reduce_for(r)) for r, (p, m) in enumerate(halves)]
    torch.testing.assert_close(torch.cat(parts), whole)


# ----------------------------------------------------------------------------------------------
# per-turn rewards from real rollouts: delta rewards telescope, final puts e_T on the last token


def _rollout(reward_mode: str):
    from agents.policy.hf_engine import Sampling
    from agents.policy.model import Policy
    from agents.learn.rollout import collect_rollouts
    from agents.learn.tiny_model import TinyModelSpec, system_prompts, tiny_random_model, tokenizer_corpus, train_tokenizer
    from sage_gym.vector import SageVectorEnv

    tokenizer = train_tokenizer(tokenizer_corpus([]), 1024)
    spec = TinyModelSpec(hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64)
    policy = Policy.from_model(tiny_random_model(tokenizer, spec), tokenizer, system_prompt=system_prompts()["direct"])
    envs = SageVectorEnv(2, scenarios="train", autoreset_mode="disabled", max_turns=3, reward_mode=reward_mode)
    try:
        batch = collect_rollouts(policy, envs, Sampling(1.0, 1.0, 6), group_size=1, seed=3, generator=torch.Generator().manual_seed(0))
    finally:
        envs.close()
    return batch.episodes


def test_turn_rewards_sit_on_each_turns_last_token_and_delta_telescopes() -> None:
    delta, final = _rollout("delta"), _rollout("final")
    for d, f in zip(delta, final):
        assert d.token_ids == f.token_ids  # the same dialogue under both reward modes
        rewards_d = torch.tensor(d.token_rewards())
        rewards_f = torch.tensor(f.token_rewards())
        mask = torch.tensor(d.loss_mask, dtype=torch.float32)
        # one reward per agent turn, each on that turn's last sampled (policy) token
        assert len(d.reward_positions) == d.turns
        assert all(d.loss_mask[p] == 1 and (p + 1 == len(d) or d.loss_mask[p + 1] == 0) for p in d.reward_positions)
        # final: only the last policy token carries e_T / 100
        assert torch.count_nonzero(rewards_f) <= 1
        assert float(rewards_f.sum()) == pytest.approx(f.final_emotion / 100)
        # gamma = lam = 1, no critic: the first token's advantage is the whole return,
        # (e_T - e_0) / 100 with deltas and e_T / 100 with final; they differ by the constant e_0 / 100
        first = int(torch.nonzero(mask)[0])
        adv_d = token_gae(rewards_d, torch.zeros(len(d)), mask, 1.0, 1.0)[0]
        adv_f = token_gae(rewards_f, torch.zeros(len(f)), mask, 1.0, 1.0)[0]
        assert float(adv_d[first]) == pytest.approx((d.final_emotion - 40) / 100, abs=1e-6)
        assert float(adv_f[first] - adv_d[first]) == pytest.approx(0.40, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10, 10), st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=6),
    st.integers(10, 90),
    st.floats(0, 1),
    st.randoms(use_true_random=False),
)
def test_with_an_exact_critic_delta_and_final_rewards_give_the_same_advantages(turns, start: int, lam: float, rng) -> None:
    """Delta rewards are the final reward shaped by the potential e/100 (docs/training.md): with gamma = 1 and
    values that differ by the current emotion, V_final = V_delta + e/100, GAE gives identical advantages."""
    rewards_delta, rewards_final, v_delta, v_final, mask = [], [], [], [], []
    emotion = start
    for k, (change, length, user_tokens) in enumerate(turns):
        for t in range(length):  # the agent's turn: the emotion is the one it started with
            value = rng.uniform(-1, 1)
            v_delta.append(value)
            v_final.append(value + emotion / 100)
            last = t == length - 1
            rewards_delta.append(change / 100 if last else 0.0)
            rewards_final.append((emotion + change) / 100 if last and k == len(turns) - 1 else 0.0)
            mask.append(1.0)
        emotion += change
        for _ in range(user_tokens if k < len(turns) - 1 else 0):  # the user's reply: not a step
            for values, junk in ((rewards_delta, 0.0), (rewards_final, 0.0), (v_delta, 9.0), (v_final, -9.0), (mask, 0.0)):
                values.append(junk)
    m = torch.tensor(mask)
    adv_delta = token_gae(torch.tensor(rewards_delta), torch.tensor(v_delta), m, 1.0, lam)[0]
    adv_final = token_gae(torch.tensor(rewards_final), torch.tensor(v_final), m, 1.0, lam)[0]
    torch.testing.assert_close(adv_delta, adv_final, atol=1e-5, rtol=1e-5)
