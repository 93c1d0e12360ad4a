"""Episodes to padded tensors: length-sorted micro-batches under a token budget, and per-episode rows.

A mini-batch of dialogues is cut into micro-batches of at most `micro_batch_tokens` padded
tokens whose gradients accumulate. Sorting by length first means each micro-batch pads to a
length close to its rows' own, so almost no compute is spent on padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agents.learn.rollout import Episode


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


def episode_rows(micro: MicroBatch, per_episode: dict[int, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Right-padded [B, L] tensor of per-episode rows (reference log-probs, values...) for the episodes of a micro-batch."""
    out = torch.zeros(micro.input_ids.shape, dtype=torch.float32)
    for row, index in enumerate(micro.indices):
        values = per_episode[index]
        out[row, : len(values)] = values
    return out.to(device)


def dummy_batch(pad_id: int, device: torch.device) -> MicroBatch:
    """Two tokens, one scored, no episode: a pass of weight 0 that touches every weight (docs/scaling.md)."""
    ids = torch.full((1, 2), pad_id, dtype=torch.long, device=device)
    zeros = torch.zeros((1, 2), dtype=torch.float32, device=device)
    mask = torch.tensor([[0.0, 1.0]], device=device)
    return MicroBatch([], ids, torch.ones_like(ids), mask, zeros)

