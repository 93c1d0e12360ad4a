"""GRPO for multi-turn dialogue, one readable update: group advantages -> clipped policy steps.

Each step, after the rollout (`agents.learn.rollout`: B scenarios x G copies played to the end,
token ids as sampled, loss mask, rollout log-probs, per-turn rewards; failed dialogues dropped):

1. **Advantages.** The episode return R of each dialogue is compared with its group's
   (`agents.learn.advantages.group_advantages`): (R - mean) / std, or R - mean (Dr. GRPO).
   Groups with no spread are skipped and counted. The advantage is spread over all the
   policy's tokens.
2. **Update.** `epochs` passes over the dialogues, each split into `minibatches` optimizer
   steps; a mini-batch is cut into micro-batches of at most `micro_batch_tokens` padded tokens
   (sorted by length) whose gradients accumulate. The loss is the clipped surrogate against the
   rollout log-probs plus beta * KL to a frozen reference (`agents.learn.losses.policy_loss`),
   then gradient clipping, AdamW and a warm-up + constant/cosine/linear LR schedule.

The update itself (the KL reference, the policy's loss part `PolicyStep`, the loop over epochs,
mini-batches and micro-batches) is `agents.learn.update`, which PPO shares; this module holds
what is GRPO's own. `Trainer(cfg, algorithm=GRPO)` (`agents.learn.trainer`) runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.learn.advantages import GroupAdvantages, group_advantages
from agents.learn.config import TrainConfig
from agents.learn.metrics import MetricSums
from agents.learn.rollout import RolloutBatch
from agents.learn.update import PolicyStep, Reference, Run, UpdateBatch, make_reference, reference_logprobs, train_epochs


class GRPO:
    """Group-relative advantages and the clipped policy step (see the module docstring)."""

    name = "grpo"
    min_group_size = 2  # a group is its own baseline

    @staticmethod
    def check(cfg: TrainConfig) -> None:
        """Nothing beyond the trainer's own checks."""

    def __init__(self, run: Run, state: dict[str, Any] | None) -> None:
        self.run = run
        self.reference: Reference = make_reference(run)
        self.policy_step = PolicyStep(run, self.reference)

    def prepare(self, state: dict[str, Any] | None) -> None:
        self.policy_step.prepare(state)

    def advantages(self, batch: RolloutBatch) -> GroupAdvantages:
        returns = [e.episode_return for e in batch.episodes]
        groups = [e.group for e in batch.episodes]
        return group_advantages(returns, groups, normalize=self.run.cfg.objective.adv_norm)

    def update(self, batch: RolloutBatch, adv: GroupAdvantages, step: int) -> MetricSums:
        """`epochs` x `minibatches` optimizer steps on this step's dialogues; returns metric sums."""
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if bool(adv.trainable[i]) and e.num_policy_tokens > 0]
        # each dialogue's advantage on its policy tokens
        rows = {i: adv.advantages[i] * torch.tensor(episodes[i].loss_mask, dtype=torch.float32) for i in trainable}
        self.run.policy.model.train()
        reference = reference_logprobs(self.run, self.reference, episodes, trainable)
        metrics = train_epochs(self.run, UpdateBatch(episodes, trainable, rows, reference=reference), step, [self.policy_step])
        metrics.add("skipped_groups", adv.skipped_groups, 0.0)
        metrics.add("groups", adv.groups, 0.0)
        return metrics

    def state(self) -> dict[str, Any]:
        """What `trainer.pt` holds besides the step and RNG states (collective under FSDP2)."""
        return self.policy_step.optimized.state()

    def plots(self, output_dir: Path) -> list[Path]:
        return []

