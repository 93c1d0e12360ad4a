"""Token-level policy losses shared by GRPO and PPO: clipped surrogate, KL to a reference, aggregation.

All functions take per-token tensors [B, L] and a mask that is 1 on the policy's own tokens.

**Clipped surrogate** (PPO, with DAPO's asymmetric clip). With r_t = exp(log pi(a_t) - log pi_old(a_t)):

    loss_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - clip_low, 1 + clip_high))

`clip_fraction` is the share of tokens where the clipped term is the larger one (it gets no
gradient). pi_old is the rollout policy: its log-probs are the rollout's own, which equal a
recomputation (token in, token out), so no extra forward pass is needed.

**KL to a frozen reference** (added as beta * kl_t), estimators of KL(pi || pi_ref) from
samples of pi (Schulman, "Approximating KL divergence"), with d_t = log pi_ref - log pi:

    k1 = -d_t                      unbiased, can be negative
    k2 = d_t^2 / 2                 biased, low variance
    k3 = exp(d_t) - d_t - 1        unbiased, always >= 0 (GRPO's choice)

**Aggregation** of per-token losses into one number over a mini-batch:

| mode | formula | used by |
|---|---|---|
| `token-mean` | sum_i sum_t l_it / sum_i T_i | DAPO, verl default |
| `seq-mean-token-mean` | (1/N) sum_i (sum_t l_it / T_i) | original GRPO |
| `seq-mean-token-sum-norm` | (1/N) sum_i sum_t l_it / T_max | Dr. GRPO: a constant length normaliser, no length bias |

T_i counts sequence i's policy tokens, N the sequences, T_max a constant (the most policy
tokens a dialogue can have). Under gradient accumulation every micro-batch divides by the
totals of the whole mini-batch (`totals`), so the accumulated gradient equals that of the
mini-batch in one piece; with several ranks the totals are summed over ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def clipped_surrogate(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token loss, clipped indicator, ratio) of the PPO clipped objective."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).float(), ratio


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) at the sampled tokens."""
    d = ref_logprobs - logprobs
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d.square()
    if estimator == "k3":
        # clamp as verl does: exp of a large log-ratio would overflow and dominate the batch
        d = d.clamp(-20.0, 20.0)
        return torch.exp(d) - d - 1.0
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


@dataclass(frozen=True)
class Totals:
    """Mini-batch totals the aggregation divides by (summed over micro-batches and ranks)."""

    tokens: float  # policy tokens
    sequences: float  # sequences with at least one policy token
    norm_tokens: float = 1.0  # T_max for seq-mean-token-sum-norm


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, totals: Totals) -> torch.Tensor:
    """This micro-batch's share of the mini-batch loss (see the module docstring)."""
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / max(totals.tokens, 1.0)
    per_sequence = (values * mask).sum(-1)
    if mode == "seq-mean-token-mean":
        lengths = mask.sum(-1)
        return (per_sequence / lengths.clamp(min=1.0)).sum() / max(totals.sequences, 1.0)
    if mode == "seq-mean-token-sum-norm":
        return per_sequence.sum() / (max(totals.sequences, 1.0) * totals.norm_tokens)
    raise ValueError(f"loss aggregation must be one of {AGGREGATIONS}, got {mode!r}")


@dataclass
class PolicyLossOutput:
    loss: torch.Tensor  # this micro-batch's share of the mini-batch loss (backward on it)
    pg_loss: torch.Tensor  # detached shares, for metrics
    kl: torch.Tensor
    clip_fraction_sum: torch.Tensor  # sums over tokens (divide by the token total for the mean)
    kl_sum: torch.Tensor
    ratio_sum: torch.Tensor


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    totals: Totals,
    *,
    aggregation: str = "token-mean",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    kl_estimator: str = "k3",
) -> PolicyLossOutput:
    """Clipped surrogate plus beta * KL, aggregated; the one policy loss of GRPO and PPO."""
    per_token, clipped, ratio = clipped_surrogate(logprobs, old_logprobs, advantages, clip_low, clip_high)
    pg = aggregate(per_token, mask, aggregation, totals)
    kl_share = torch.zeros((), device=logprobs.device)
    kl_sum = torch.zeros((), device=logprobs.device)
    if ref_logprobs is not None:
        kl_tokens = kl_penalty(logprobs, ref_logprobs, kl_estimator)
        kl_share = aggregate(kl_tokens, mask, aggregation, totals)
        kl_sum = (kl_tokens * mask).sum().detach()
    elif beta:
        raise ValueError("beta > 0 needs reference log-probs")
    loss = pg + beta * kl_share if beta else pg
    return PolicyLossOutput(
        loss=loss,
        pg_loss=pg.detach(),
        kl=kl_share.detach(),
        clip_fraction_sum=(clipped * mask).sum().detach(),
        kl_sum=kl_sum,
        ratio_sum=(ratio.detach() * mask).sum(),
    )


# ----------------------------------------------------------------------------------------------
# PPO's critic loss and entropy bonus (aggregated like the policy loss)


@dataclass
class ValueLossOutput:
    loss: torch.Tensor  # this micro-batch's share of the mini-batch value loss (backward on it)
    clip_fraction_sum: torch.Tensor  # tokens where the clipped error was the larger one
    error_sum: torch.Tensor  # sum of squared errors (V - R)^2, for metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    totals: Totals,
    *,
    aggregation: str = "token-mean",
    clip: float = 0.0,
) -> ValueLossOutput:
    """0.5 * (V - R)^2 per token, or with `clip` > 0 PPO's clipped form, aggregated like the policy loss:

        V_clip = V_old + clip(V - V_old, -clip, +clip)
        loss_t = 0.5 * max((V - R)^2, (V_clip - R)^2)

    Clipping keeps one update from moving the value of a token far from what the rollout's
    critic said (the value counterpart of the ratio clip); `clip` is in return units.
    """
    error = (values - returns).square()
    if clip > 0:
        clipped_values = old_values + (values - old_values).clamp(-clip, clip)
        clipped_error = (clipped_values - returns).square()
        per_token = 0.5 * torch.maximum(error, clipped_error)
        clip_sum = ((clipped_error > error).float() * mask).sum().detach()
    else:
        per_token = 0.5 * error
        clip_sum = torch.zeros((), device=values.device)
    return ValueLossOutput(
        loss=aggregate(per_token, mask, aggregation, totals),
        clip_fraction_sum=clip_sum,
        error_sum=(error.detach() * mask).sum(),
    )


def entropy_bonus(entropy: torch.Tensor, mask: torch.Tensor, totals: Totals, aggregation: str = "token-mean") -> torch.Tensor:
    """The policy's entropy at its own tokens, aggregated like the policy loss (subtract coef * this)."""
    return aggregate(entropy, mask, aggregation, totals)
