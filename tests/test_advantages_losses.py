"""GRPO advantages and the shared policy losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.learn.advantages import group_advantages
from agents.learn.losses import Totals, aggregate, clipped_surrogate, kl_penalty, policy_loss


# ----------------------------------------------------------------------------------------------
# advantages


def test_group_advantages_std_normalised_by_hand() -> None:
    # group 0: returns 1, 2, 3 -> mean 2, unbiased std 1; group 1: no spread -> skipped
    out = group_advantages([1.0, 2.0, 3.0, 5.0, 5.0, 5.0], [0, 0, 0, 1, 1, 1], normalize="std", eps=1e-6)
    expected = torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]) / torch.tensor([1 + 1e-6] * 3 + [1.0] * 3)
    torch.testing.assert_close(out.advantages, expected)
    assert out.trainable.tolist() == [True, True, True, False, False, False]
    assert (out.groups, out.skipped_groups) == (2, 1)


def test_group_advantages_std_uses_the_unbiased_std() -> None:
    # returns 0, 0, 0, 1: mean 0.25, unbiased std sqrt(0.25) = 0.5
    out = group_advantages([0.0, 0.0, 0.0, 1.0], [7, 7, 7, 7], normalize="std", eps=0.0)
    torch.testing.assert_close(out.advantages, torch.tensor([-0.5, -0.5, -0.5, 1.5]))


def test_dr_grpo_advantages_are_only_centred() -> None:
    out = group_advantages([0.2, -0.1, 0.5, 0.0], [0, 0, 1, 1], normalize="none")
    torch.testing.assert_close(out.advantages, torch.tensor([0.15, -0.15, 0.25, -0.25]))
    assert out.skipped_groups == 0


def test_single_member_group_is_skipped() -> None:
    out = group_advantages([1.0, 0.0, 2.0], [0, 1, 1], normalize="std")
    assert out.trainable.tolist() == [False, True, True]
    assert out.skipped_groups == 1


def test_group_advantages_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="normalize"):
        group_advantages([1.0], [0], normalize="mad")
    with pytest.raises(ValueError, match="equal length"):
        group_advantages([1.0, 2.0], [0], normalize="std")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=8), st.sampled_from(["std", "none"]))
def test_advantages_of_a_group_sum_to_zero(returns: list[float], normalize: str) -> None:
    out = group_advantages(returns, [0] * len(returns), normalize=normalize)
    assert abs(float(out.advantages.sum())) < 1e-4 * max(1.0, len(returns))


# ----------------------------------------------------------------------------------------------
# clipped surrogate and KL


def test_clipped_surrogate_by_hand() -> None:
    old = torch.zeros(4)
    logp = torch.tensor([math.log(1.5), math.log(1.1), math.log(0.5), math.log(0.9)])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, clipped, ratio = clipped_surrogate(logp, old, adv, clip_low=0.2, clip_high=0.28)
    # ratio 1.5, A=+1: min(1.5, 1.28) -> loss -1.28 (clipped); ratio 1.1: -1.1 (not clipped)
    # ratio 0.5, A=-1: max(0.5, 0.8) -> loss 0.8 (clipped); ratio 0.9: 0.9 (not clipped)
    torch.testing.assert_close(loss, torch.tensor([-1.28, -1.1, 0.8, 0.9]))
    assert clipped.tolist() == [1.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(ratio, torch.tensor([1.5, 1.1, 0.5, 0.9]))


def test_clipped_surrogate_gradient_vanishes_when_clipped() -> None:
    logp = torch.tensor([math.log(1.5), math.log(1.1)], requires_grad=True)
    loss, _, _ = clipped_surrogate(logp, torch.zeros(2), torch.ones(2), 0.2, 0.2)
    loss.sum().backward()
    # d(-ratio)/d logp = -ratio for the unclipped token, 0 for the clipped one
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, -1.1]))


def test_kl_estimators_by_hand() -> None:
    logp, ref = torch.tensor([-1.0]), torch.tensor([-1.5])  # d = ref - logp = -0.5
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([0.5]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([0.125]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([math.exp(-0.5) + 0.5 - 1.0]))
    with pytest.raises(ValueError, match="estimator"):
        kl_penalty(logp, ref, "k4")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-8, 0, allow_nan=False), min_size=1, max_size=10), st.sampled_from(["k1", "k2", "k3"]))
def test_kl_is_zero_against_itself_and_k3_nonnegative(values: list[float], estimator: str) -> None:
    logp = torch.tensor(values)
    assert torch.count_nonzero(kl_penalty(logp, logp.clone(), estimator)) == 0
    assert bool((kl_penalty(logp, logp - 0.3, "k3") >= 0).all())


# ----------------------------------------------------------------------------------------------
# aggregation


VALUES = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


def test_aggregation_modes_by_hand() -> None:
    totals = Totals(tokens=4, sequences=2, norm_tokens=4)
    assert float(aggregate(VALUES, MASK, "token-mean", totals)) == pytest.approx(10 / 4)
    assert float(aggregate(VALUES, MASK, "seq-mean-token-mean", totals)) == pytest.approx((6 / 3 + 4 / 1) / 2)
    assert float(aggregate(VALUES, MASK, "seq-mean-token-sum-norm", totals)) == pytest.approx((6 + 4) / (2 * 4))
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(VALUES, MASK, "sum", totals)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(1, 5), min_size=n, max_size=n), st.integers(1, 5))),
    st.sampled_from(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]),
)
def test_micro_batch_shares_add_up_to_the_whole(shape: tuple[int, list[int], int], mode: str) -> None:
    n, lengths, split = shape
    split = min(split, n - 1)
    torch.manual_seed(n)
    width = max(lengths)
    values = torch.randn(n, width)
    mask = torch.zeros(n, width)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    totals = Totals(tokens=float(mask.sum()), sequences=float(n), norm_tokens=7.0)
    whole = aggregate(values, mask, mode, totals)
    parts = aggregate(values[:split], mask[:split], mode, totals) + aggregate(values[split:], mask[split:], mode, totals)
    torch.testing.assert_close(parts, whole)


def test_policy_loss_combines_surrogate_and_kl() -> None:
    logp = torch.tensor([[math.log(1.1), math.log(0.9)]])
    old = torch.zeros(1, 2)
    ref = torch.tensor([[0.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    totals = Totals(tokens=2, sequences=1)
    out = policy_loss(logp, old, adv, mask, totals, beta=0.5, ref_logprobs=ref, kl_estimator="k1", clip_low=0.2, clip_high=0.2)
    pg = (-1.1 - 0.9) / 2
    kl = (math.log(1.1) + math.log(0.9)) / 2
    assert float(out.loss) == pytest.approx(pg + 0.5 * kl)
    assert float(out.pg_loss) == pytest.approx(pg)
    assert float(out.kl) == pytest.approx(kl)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(logp, old, adv, mask, totals, beta=0.1)
