"""Advantages from episode returns: GRPO's group-relative baseline (and Dr. GRPO's unscaled variant).

GRPO samples G dialogues per scenario (a group) and uses the group itself as the baseline:

    A_i = (R_i - mean_g(R)) / (std_g(R) + eps)      normalize="std"   (GRPO, DeepSeekMath)
    A_i =  R_i - mean_g(R)                          normalize="none"  (Dr. GRPO)

`std_g` is the unbiased sample standard deviation of the group's returns (what `torch.std`
gives). Dividing by it makes groups whose returns barely differ count as much as groups with a
wide spread, which Dr. GRPO (Liu et al., 2025) shows biases the update towards easy or hopeless
prompts; "none" removes that. The advantage of a dialogue is then spread over every token the
policy sampled in it.

A group whose returns are all equal (spread <= `eps`) carries no learning signal: every
advantage would be 0. Such groups are *skipped* (their dialogues get no gradient) and counted,
as are groups left with a single dialogue after errors were dropped.

R is the sum of the env's per-turn rewards: with reward_mode "delta" that is
(e_T - e_0) / 100, with "final" e_T / 100 (RLVER). Within a group e_0 is the same, so the two
modes give GRPO the same advantages; per-turn credit needs a critic (PPO, GAE).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

NORMALIZE_MODES = ("std", "none")


@dataclass
class GroupAdvantages:
    advantages: torch.Tensor  # [N] float32, 0 for skipped dialogues
    trainable: torch.Tensor  # [N] bool: False for dialogues in skipped groups
    groups: int
    skipped_groups: int


def group_advantages(returns: Sequence[float] | torch.Tensor, groups: Sequence[int] | torch.Tensor, normalize: str = "std", eps: float = 1e-6) -> GroupAdvantages:
    """Group-relative advantages of episode returns (see the module docstring)."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    returns = torch.as_tensor(returns, dtype=torch.float64)
    groups = torch.as_tensor(groups, dtype=torch.long)
    if returns.shape != groups.shape or returns.dim() != 1:
        raise ValueError(f"returns and groups must be 1-D and of equal length, got {tuple(returns.shape)} and {tuple(groups.shape)}")
    advantages = torch.zeros_like(returns)
    trainable = torch.zeros(returns.shape, dtype=torch.bool)
    unique = torch.unique(groups)
    skipped = 0
    for g in unique.tolist():
        members = groups == g
        values = returns[members]
        spread = values.std(unbiased=True) if len(values) > 1 else torch.tensor(0.0, dtype=returns.dtype)
        if len(values) < 2 or float(values.max() - values.min()) <= eps:
            skipped += 1
            continue
        centred = values - values.mean()
        advantages[members] = centred / (spread + eps) if normalize == "std" else centred
        trainable[members] = True
    return GroupAdvantages(advantages.float(), trainable, len(unique), skipped)


# ----------------------------------------------------------------------------------------------
# PPO: token-level GAE over the policy's own tokens, and batch whitening


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation over the tokens where `mask` is 1.

    Tensors are [L] or [B, L] (right-padded rows). The MDP's steps are the policy's own tokens
    only: system, user and template tokens between two agent turns are *skipped*, not counted as
    steps, so they neither discount nor get a value. With p_0 < p_1 < ... < p_{n-1} the masked
    positions of a row, r_k its reward and V_k its value at p_k:

        delta_k = r_k + gamma * V_{k+1} - V_k          (V_n = 0: the dialogue is over)
        A_k     = delta_k + gamma * lam * A_{k+1}      (A_n = 0)
        R_k     = A_k + V_k                            (the critic's target)

    A reward that sits on a non-policy token counts for the last policy token before it (the
    action that led to it); one before the first policy token has no action to credit and is
    dropped. Outputs are 0 off the mask. With gamma = lam = 1, A_k + V_k is the return-to-go.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    if not (rewards.shape == values.shape == mask.shape):
        raise ValueError(f"rewards, values and mask must have one shape, got {tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}")
    single = rewards.dim() == 1
    if single:
        rewards, values, mask = rewards[None], values[None], mask[None]
    advantages = torch.zeros(rewards.shape, dtype=torch.float32)
    returns = torch.zeros(rewards.shape, dtype=torch.float32)
    for row in range(rewards.shape[0]):
        keep = mask[row].detach().cpu().bool()
        positions = torch.nonzero(keep).flatten()
        if len(positions) == 0:
            continue
        r_all = rewards[row].detach().cpu().double()
        # index (into positions) of the last policy token at or before each position; -1 before the first
        owner = torch.searchsorted(positions, torch.arange(len(keep)), right=True) - 1
        credited = owner >= 0
        r = torch.zeros(len(positions), dtype=torch.float64).index_add_(0, owner[credited], r_all[credited])
        v = values[row].detach().cpu().double()[positions].tolist()
        adv = [0.0] * len(positions)
        next_value, next_adv = 0.0, 0.0
        for k in range(len(positions) - 1, -1, -1):
            delta = float(r[k]) + gamma * next_value - v[k]
            next_adv = delta + gamma * lam * next_adv
            next_value = v[k]
            adv[k] = next_adv
        adv_t = torch.tensor(adv, dtype=torch.float64)
        advantages[row, positions] = adv_t.float()
        returns[row, positions] = (adv_t + torch.tensor(v, dtype=torch.float64)).float()
    if single:
        return advantages[0], returns[0]
    return advantages, returns


def whiten(values: torch.Tensor, mask: torch.Tensor, sum_across_ranks: Callable[[list[float]], list[float]] | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries of the whole batch; 0 off the mask.

    Mean and (population) variance are over every policy token of the batch, summed across
    ranks by `sum_across_ranks` when given, so all ranks whiten with the same statistics.
    """
    m = mask.to(torch.float64)
    x = values.to(torch.float64)
    totals = [float((x * m).sum()), float((x * x * m).sum()), float(m.sum())]
    if sum_across_ranks is not None:
        totals = sum_across_ranks(totals)
    total, squares, count = totals
    if count == 0:
        return torch.zeros_like(values)
    mean = total / count
    var = max(squares / count - mean * mean, 0.0)
    return (((x - mean) / (var + eps) ** 0.5) * m).to(values.dtype)


def explained_variance(
    returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, sum_across_ranks: Callable[[list[float]], list[float]] | None = None
) -> float:
    """1 - Var(R - V) / Var(R) over the masked tokens: 1 is a perfect critic, 0 no better than a constant."""
    m = mask.double()
    r, v = returns.double(), values.double()
    e = r - v
    sums = [float((r * m).sum()), float((r * r * m).sum()), float((e * m).sum()), float((e * e * m).sum()), float(m.sum())]
    if sum_across_ranks is not None:
        sums = sum_across_ranks(sums)
    sr, srr, se, see, n = sums
    if n < 2:
        return float("nan")
    var_r = srr / n - (sr / n) ** 2
    var_e = see / n - (se / n) ** 2
    return float("nan") if var_r <= 1e-12 else 1.0 - var_e / var_r
