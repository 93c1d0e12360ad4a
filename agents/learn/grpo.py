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

`PolicyStep` (one micro-batch's policy loss and its metrics) and `train_epochs` (the loop over
epochs, mini-batches and micro-batches) are shared with PPO, which adds its critic's value step
(`agents.learn.ppo`). Under torchrun the loop's iterators (`agents.learn.distributed`) plan the
same global mini-batches on every rank, normalise by global counts and pad every rank's passes
to the same number, so the update below reads as single-process code and the run is the
single-process run up to floating-point noise, whatever the number of ranks.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from agents.learn.advantages import GroupAdvantages, group_advantages
from agents.learn.batching import MicroBatch, episode_rows
from agents.learn.config import TrainConfig
from agents.learn.critic import capture_hidden
from agents.learn.distributed import MiniBatch, accumulating, global_totals, minibatch_plan, shard_frozen
from agents.learn.losses import Totals, entropy_bonus, policy_loss
from agents.learn.metrics import MetricSums
from agents.learn.optim import Optimized
from agents.learn.policy import Policy
from agents.learn.rollout import Episode, RolloutBatch
from agents.learn.seeds import Stream, stream_seed
from agents.learn.trainer import Run, Trainer

Reference = Policy | str | None  # a frozen copy, "adapters" (the LoRA policy with its adapters off), or None (beta 0)


# ----------------------------------------------------------------------------------------------
# the parts GRPO and PPO share


def make_reference(run: Run) -> Reference:
    """None when beta is 0 (nothing loaded); "adapters" with LoRA; else a frozen copy of the initial policy."""
    policy = run.policy
    if run.cfg.beta == 0:
        return None
    if policy.is_lora:
        return "adapters"
    # frozen, so no master weights: it is kept in the dtype the policy computes in
    frozen = copy.deepcopy(policy.model).to(run.compute_dtype).eval()
    frozen.requires_grad_(False)
    return Policy(model=frozen, tokenizer=policy.tokenizer, chat=policy.chat, device=policy.device)


def reference_logprobs(run: Run, reference: Reference, episodes: list[Episode], indices: list[int]) -> dict[int, torch.Tensor]:
    """The reference's log-probs of `episodes[indices]` (once per step: the reference does not change)."""
    if reference is None:
        return {}
    temperature = run.sampling.logprob_temperature

    def logprobs(micro: MicroBatch) -> torch.Tensor:
        if reference == "adapters":
            with run.policy.adapters_disabled():
                return run.policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature).logprobs
        assert isinstance(reference, Policy)
        return reference.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature).logprobs

    return run.per_episode_rows(episodes, indices, logprobs)


class UpdatePart(Protocol):
    """One trained model's share of an optimizer step: its loss on a micro-batch, then its optimizer step."""

    optimized: Optimized
    module: torch.nn.Module  # what the loss calls (a DDP wrapper reduces its gradients in the last pass)
    active: bool  # False: the part sits this step out (PPO's policy during critic warm-up)

    def loss(self, micro: MicroBatch, mb: MiniBatch, totals: Totals, metrics: MetricSums | None) -> torch.Tensor: ...

    def finish(self, metrics: MetricSums) -> None: ...


class PolicyStep:
    """The policy's part of an update: the clipped surrogate (+ beta KL, - ent_coef entropy) and its metrics.

    Before `train_epochs`, the algorithm sets `token_advantages` (micro-batch -> [B, L] advantages
    on the policy tokens) and `reference` (per-episode reference log-probs, empty without a KL
    term). With `keep_hidden`, `hidden` holds the policy's last hidden states of the latest
    micro-batch (PPO's head critic reads them instead of running the backbone again).
    """

    def __init__(self, run: Run, reference: Reference, ent_coef: float = 0.0, keep_hidden: bool = False) -> None:
        self.run, self.cfg, self.policy = run, run.cfg, run.policy
        self.reference, self.ent_coef, self.keep_hidden = reference, ent_coef, keep_hidden
        self.active = True
        self.token_advantages: Callable[[MicroBatch], torch.Tensor] = lambda micro: torch.zeros_like(micro.loss_mask)
        self.reference_rows: dict[int, torch.Tensor] = {}
        self.hidden: torch.Tensor | None = None

    def prepare(self, state: dict[str, Any] | None) -> None:
        """Under torchrun: shard the frozen reference like the policy. Then the optimizer (and its checkpoint state)."""
        run = self.run
        if run.dist.is_distributed and isinstance(self.reference, Policy):
            shard_frozen(self.reference.forward_module, run.cfg.parallel, run.dist, run.device, run.compute_dtype)
            self.reference.device = run.device
        self.optimized = Optimized("policy", self.policy.forward_module, self.policy.trainable_parameters(), self.cfg.resolved_lr(), self.cfg, run.updates)
        if state is not None:
            self.optimized.load_state(state["optimizer"], state["scheduler"])

    @property
    def module(self) -> torch.nn.Module:
        return self.policy.train_module

    def begin(self, episodes: list[Episode], trainable: list[int], token_advantages: Callable[[MicroBatch], torch.Tensor]) -> None:
        """Before a step's epochs: the advantages to train on, and the reference's log-probs of the dialogues."""
        self.token_advantages = token_advantages
        self.reference_rows = reference_logprobs(self.run, self.reference, episodes, trainable)

    def loss(self, micro: MicroBatch, mb: MiniBatch, totals: Totals, metrics: MetricSums | None) -> torch.Tensor:
        cfg, policy, mask = self.cfg, self.policy, micro.loss_mask
        capture = capture_hidden(policy) if self.keep_hidden else contextlib.nullcontext([])
        with capture as captured:
            out = policy.token_logprobs(micro.input_ids, micro.attention_mask, mask, self.run.sampling.logprob_temperature, with_entropy=True)
        self.hidden = captured[-1] if captured else None
        ref = episode_rows(micro, self.reference_rows, self.run.device) if self.reference is not None else None  # zeros for a dummy pass
        result = policy_loss(
            out.logprobs, micro.old_logprobs, self.token_advantages(micro), mask, totals, aggregation=cfg.loss_agg,
            clip_low=cfg.clip_low, clip_high=cfg.clip_high, beta=cfg.beta, ref_logprobs=ref, kl_estimator=cfg.kl_estimator,
        )
        loss = result.loss
        if self.ent_coef:
            loss = loss - self.ent_coef * entropy_bonus(out.entropy, mask, totals, cfg.loss_agg)
        if metrics is not None:
            n_tokens = float(mask.sum())
            metrics.add("pg_loss", float(result.pg_loss), 0.0)  # shares of the mini-batch loss: counted once in `finish`
            metrics.add("clip_fraction", float(result.clip_fraction_sum), n_tokens)
            metrics.add("ratio", float(result.ratio_sum), n_tokens)
            if ref is not None:
                metrics.add("kl", float(result.kl_sum), n_tokens)
            if mb.epoch == 0:  # entropy of the rollout policy on its own tokens
                metrics.add("entropy", float((out.entropy.detach() * mask).sum()), n_tokens)
            if mb.first:
                # before any weight change the recomputed log-probs must equal the rollout's (token in,
                # token out): ~1e-6 in float32; a large value means the rollout and the learner disagree
                metrics.add_max("logprob_mismatch", float(((out.logprobs.detach() - micro.old_logprobs).abs() * mask).max()))
        return loss

    def finish(self, metrics: MetricSums) -> None:
        metrics.counts["pg_loss"] += self.run.dist.once
        grad_norm, lr = self.optimized.step()
        metrics.add("grad_norm", grad_norm, 1.0)
        metrics.add("lr", lr, 1.0)


def train_epochs(run: Run, episodes: list[Episode], trainable: list[int], step: int, parts: Sequence[UpdatePart], metrics: MetricSums) -> None:
    """`epochs` x `minibatches` optimizer steps of every part on `episodes[trainable]`."""
    cfg = run.cfg
    position = {episodes[i].dialogue: i for i in trainable}
    seed = stream_seed(cfg.seed, step, Stream.MINIBATCHES)
    for mb in minibatch_plan(run.dist, position, cfg.scenarios_per_step * cfg.group_size, cfg.epochs, cfg.minibatches, seed):
        if mb.global_size:
            optimizer_step(run, episodes, mb, parts, metrics)
        for part in parts:
            part.optimized.schedule()  # the schedule follows planned updates, so skipped groups do not shift it


def optimizer_step(run: Run, episodes: list[Episode], mb: MiniBatch, parts: Sequence[UpdatePart], metrics: MetricSums) -> None:
    """One mini-batch: the parts' losses summed per micro-batch, gradients accumulated, then each active part steps."""
    totals = global_totals(run.dist, [episodes[i].num_policy_tokens for i in mb.indices], float(run.cfg.max_turns * run.cfg.max_new_tokens))
    for part in parts:
        part.optimized.zero_grad()
    active = [part for part in parts if part.active]
    for micro, real in accumulating(run.dist, run.micro_batches(episodes, mb.indices), run.dummy, [part.module for part in parts]):
        micro = micro.to(run.device) if real else micro
        terms = [part.loss(micro, mb, totals, metrics if real else None) for part in active]
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
        (loss * (run.dist.loss_scale if real else 0.0)).backward()  # a dummy pass has weight 0
        if real:
            metrics.add("update_tokens", float(micro.num_tokens), 0.0)
    for part in active:
        part.finish(metrics)


# ----------------------------------------------------------------------------------------------
# GRPO


class GRPO:
    """Group-relative advantages and the clipped policy step (see the module docstring)."""

    name = "grpo"
    min_group_size = 2  # a group is its own baseline

    @staticmethod
    def check(cfg: TrainConfig) -> None:
        """Nothing beyond the trainer's own checks."""

    def __init__(self, run: Run, state: dict[str, Any] | None) -> None:
        self.run = run
        self.reference = make_reference(run)
        self.policy_step = PolicyStep(run, self.reference)

    def prepare(self, state: dict[str, Any] | None) -> None:
        self.policy_step.prepare(state)

    def advantages(self, batch: RolloutBatch) -> GroupAdvantages:
        returns = [e.episode_return for e in batch.episodes]
        groups = [e.group for e in batch.episodes]
        return group_advantages(returns, groups, normalize=self.run.cfg.adv_norm)

    def update(self, batch: RolloutBatch, adv: GroupAdvantages, step: int) -> MetricSums:
        """`epochs` x `minibatches` optimizer steps on this step's dialogues; returns metric sums."""
        metrics = MetricSums()
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if bool(adv.trainable[i]) and e.num_policy_tokens > 0]
        advantages = adv.advantages.to(self.run.device)

        def token_advantages(micro: MicroBatch) -> torch.Tensor:  # each dialogue's advantage on its policy tokens
            return advantages[micro.indices][:, None] * micro.loss_mask if micro.indices else torch.zeros_like(micro.loss_mask)

        self.run.policy.model.train()
        self.policy_step.begin(episodes, trainable, token_advantages)
        train_epochs(self.run, episodes, trainable, step, [self.policy_step], metrics)
        metrics.add("skipped_groups", adv.skipped_groups, 0.0)
        metrics.add("groups", adv.groups, 0.0)
        return metrics

    def state(self) -> dict[str, Any]:
        """What `trainer.pt` holds besides the step and RNG states (collective under FSDP2)."""
        return self.policy_step.optimized.state()

    def plots(self, output_dir: Path) -> list[Path]:
        return []


class GRPOTrainer(Trainer):
    """Owns a GRPO run: `fit()` trains `cfg.steps` steps (resuming if asked), logging and saving."""

    algorithm_cls = GRPO
    algorithm: GRPO
