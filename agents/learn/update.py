"""The update GRPO and PPO share: per-token training rows in, `epochs` x `minibatches` optimizer steps out.

An algorithm (`agents.learn.grpo`, `agents.learn.ppo`) turns a rollout into an `UpdateBatch`:
the step's dialogues and, for each trainable one, per-token rows (its advantages; PPO adds the
critic's return targets and rollout values). The update then reads top to bottom:

    reference_logprobs(run, reference, ...)       once per step: the frozen KL reference's log-probs
    train_epochs(run, batch, step, parts)          epochs x mini-batches, in a plan every rank shares
      optimizer_step(run, batch, minibatch, ...)   one mini-batch, cut into micro-batches that accumulate:
        inputs = loss_input(batch, micro, ...)       a frozen `LossInput` (tokens, masks, rows, totals)
        output = part.loss(inputs)                   each part in order: a frozen `LossOutput`;
                                                     its hidden states go into the next part's input
        (sum of the parts' losses).backward()
      part.finish()                                each part clips, steps its optimizer, logs

A loss part (`PolicyStep` here, PPO's `ValueStep`) owns one trained model's loss, optimizer and
schedule; nothing outside it sets its attributes: all it learns of a micro-batch comes in the
`LossInput`, and all it tells comes back in the `LossOutput`. The metrics it logs travel in its
outputs as well, and the loop adds them to the step's sums.

Under torchrun the iterators of `agents.learn.distributed` plan the same global mini-batches on
every rank, normalise by global counts and pad every rank's passes to the same number, and the
trainer wraps or shards the models before the parts build their optimizers (`Run.trained`,
`Run.frozen`), so this module reads as single-process code and the run is the single-process run
up to floating-point noise, whatever the number of ranks.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from agents.learn.batching import MicroBatch, dummy_batch, episode_rows, make_micro_batches
from agents.learn.config import TrainConfig
from agents.learn.critic import capture_hidden
from agents.learn.distributed import (
    Distributed,
    MiniBatch,
    accumulating,
    global_totals,
    lockstep,
    minibatch_plan,
    shard_frozen,
    wrap_module,
)
from agents.learn.losses import Totals, entropy_bonus, policy_loss
from agents.learn.metrics import MetricSums
from agents.learn.optim import Optimized
from agents.learn.rollout import Episode
from agents.learn.seeds import Stream, stream_seed
from agents.policy.hf_engine import Sampling
from agents.policy.model import Policy

Reference = Policy | str | None  # a frozen copy, "adapters" (the LoRA policy with its adapters off), or None (beta 0)
Rows = dict[int, torch.Tensor]  # an episode's index -> a [len(episode)] row (0 off the policy's tokens)


# ----------------------------------------------------------------------------------------------
# what an algorithm works with


@dataclass
class Run:
    """What an algorithm works with: the configuration, the policy, where it computes, and this rank's place."""

    cfg: TrainConfig
    dist: Distributed  # read by the lock-step iterators of agents.learn.distributed only
    policy: Policy
    device: torch.device
    compute_dtype: torch.dtype  # forward passes run in it; full fine-tunes keep float32 weights under mixed precision
    sampling: Sampling
    output_dir: Path
    log: Callable[[str], None]

    @property
    def updates(self) -> int:
        """Planned optimizer steps of the whole run (the schedules' length)."""
        return self.cfg.run.steps * self.cfg.optimizer.epochs * self.cfg.optimizer.minibatches

    @property
    def all_reduce(self) -> Callable[[list[float]], list[float]] | None:
        """Sums a flat list of floats over ranks (None on one process): for statistics of the whole batch."""
        return self.dist.all_reduce

    def trained(self, module: nn.Module) -> nn.Module:
        """`module` as its loss should call it: itself on one process; under torchrun DDP around it, or sharded in place (FSDP2)."""
        return wrap_module(module, self.cfg.model.parallel, self.dist, self.device, self.compute_dtype)

    def frozen(self, policy: Policy) -> None:
        """Place a frozen copy of the policy (the KL reference) as the policy is placed: under torchrun
        sharded like it (FSDP2) or whole on this rank's device (DDP); left as it is on one process."""
        shard_frozen(policy.forward_module, self.cfg.model.parallel, self.dist, self.device, self.compute_dtype)

    def micro_batches(self, episodes: list[Episode], indices: list[int]) -> list[MicroBatch]:
        return make_micro_batches(episodes, indices, self.cfg.optimizer.micro_batch_tokens, int(self.policy.tokenizer.pad_token_id))

    def dummy(self) -> MicroBatch:
        return dummy_batch(int(self.policy.tokenizer.pad_token_id), self.device)

    @torch.no_grad()
    def per_episode_rows(self, episodes: list[Episode], indices: list[int], rows_of: Callable[[MicroBatch], torch.Tensor]) -> Rows:
        """`rows_of(micro)` ([B, L], no gradient) for every episode of `episodes[indices]`, cut to its length, on the CPU.

        Micro-batches run in lock-step over ranks (a rank with fewer runs dummy passes): the
        forwards of a sharded model are collectives.
        """
        out: Rows = {}
        for micro, real in lockstep(self.dist, self.micro_batches(episodes, indices), self.dummy):
            batch = micro.to(self.device) if real else micro
            rows = rows_of(batch)
            for row, index in enumerate(batch.indices):
                out[index] = rows[row, : len(episodes[index])].cpu()
        return out


# ----------------------------------------------------------------------------------------------
# the KL reference


def make_reference(run: Run) -> Reference:
    """None when beta is 0 (nothing loaded); "adapters" with LoRA; else a frozen copy of the initial policy."""
    policy = run.policy
    if run.cfg.objective.beta == 0:
        return None
    if policy.is_lora:
        return "adapters"
    # frozen, so no master weights: it is kept in the dtype the policy computes in
    frozen = copy.deepcopy(policy.model).to(run.compute_dtype).eval()
    frozen.requires_grad_(False)
    return Policy(model=frozen, tokenizer=policy.tokenizer, chat=policy.chat, device=run.device)  # placed there by `Run.frozen`


def reference_logprobs(run: Run, reference: Reference, episodes: list[Episode], indices: list[int]) -> Rows | None:
    """The reference's log-probs of `episodes[indices]` (once per step: the reference does not change); None without one."""
    if reference is None:
        return None
    temperature = run.sampling.logprob_temperature

    def logprobs(micro: MicroBatch) -> torch.Tensor:
        if reference == "adapters":
            with run.policy.adapters_disabled():
                return run.policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature).logprobs
        assert isinstance(reference, Policy)
        return reference.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature).logprobs

    return run.per_episode_rows(episodes, indices, logprobs)


# ----------------------------------------------------------------------------------------------
# what a loss part reads and returns


@dataclass(frozen=True)
class UpdateBatch:
    """What one step's update trains on: the dialogues, and per-token rows of the trainable ones."""

    episodes: list[Episode]
    trainable: list[int]  # indices of the episodes to train on
    advantages: Rows
    reference: Rows | None = None  # the KL reference's log-probs (None: no KL term)
    returns: Rows | None = None  # the critic's targets (PPO)
    values: Rows | None = None  # the rollout critic's values (PPO)


@dataclass(frozen=True)
class LossInput:
    """One micro-batch as every loss part reads it: [B, L] tensors on the device, rows sorted by length."""

    micro: MicroBatch  # token ids, attention mask, loss mask (the policy's tokens), rollout log-probs
    minibatch: MiniBatch  # which optimizer step of the training step (`first`: the rollout's weights)
    totals: Totals  # the mini-batch's counts the loss aggregation divides by
    advantages: torch.Tensor
    reference: torch.Tensor | None  # the KL reference's log-probs
    returns: torch.Tensor | None
    values: torch.Tensor | None
    hidden: torch.Tensor | None = None  # the policy's last hidden states, from the part before (PPO's head critic)


Metric = tuple[str, float, float]  # (name, sum, count) for `MetricSums.add`


@dataclass(frozen=True)
class Logged:
    """Metrics a part reports: (name, sum, count) entries, maxima, and values counted once per optimizer step."""

    sums: tuple[Metric, ...] = ()
    maxima: tuple[tuple[str, float], ...] = ()
    counted: tuple[str, ...] = ()  # each counted once per optimizer step (its shares came with count 0: `MetricSums.count_once`)

    def add_to(self, metrics: MetricSums) -> None:
        for name, value, count in self.sums:
            metrics.add(name, value, count)
        for name, value in self.maxima:
            metrics.add_max(name, value)
        for name in self.counted:
            metrics.count_once(name)


@dataclass(frozen=True)
class LossOutput:
    """A part's term of the micro-batch loss, its metrics, and what the next part may read."""

    loss: torch.Tensor
    logged: Logged
    hidden: torch.Tensor | None = None  # the policy's last hidden states (with their graph), when asked for


class LossPart(Protocol):
    """One trained model's share of an optimizer step: its loss on a micro-batch, then its optimizer step."""

    optimized: Optimized

    @property
    def module(self) -> torch.nn.Module:
        """What the loss calls (a DDP wrapper reduces its gradients in the last pass)."""

    def loss(self, inputs: LossInput) -> LossOutput: ...

    def finish(self) -> Logged: ...


# ----------------------------------------------------------------------------------------------
# the policy's part


class PolicyStep:
    """The policy's part of an update: the clipped surrogate (+ beta KL, - ent_coef entropy) and its metrics.

    With `keep_hidden`, its output carries the policy's last hidden states of the micro-batch
    (PPO's head critic reads them instead of running the backbone again).
    """

    def __init__(self, run: Run, reference: Reference, ent_coef: float = 0.0, keep_hidden: bool = False) -> None:
        self.run, self.cfg, self.policy = run, run.cfg, run.policy
        self.reference, self.ent_coef, self.keep_hidden = reference, ent_coef, keep_hidden

    def prepare(self, state: dict[str, Any] | None) -> None:
        """The frozen reference placed like the policy, then the optimizer (and its checkpoint state)."""
        if isinstance(self.reference, Policy):
            self.run.frozen(self.reference)
        self.optimized = Optimized("policy", self.policy.forward_module, self.policy.trainable_parameters(), self.cfg.resolved_lr(), self.cfg.optimizer, self.run.updates)
        if state is not None:
            self.optimized.load_state(state["optimizer"], state["scheduler"])

    @property
    def module(self) -> torch.nn.Module:
        return self.policy.train_module

    def loss(self, inputs: LossInput) -> LossOutput:
        cfg, micro = self.cfg, inputs.micro
        mask = micro.loss_mask
        capture: contextlib.AbstractContextManager[list[torch.Tensor]] = capture_hidden(self.policy) if self.keep_hidden else contextlib.nullcontext([])
        with capture as captured:
            out = self.policy.token_logprobs(micro.input_ids, micro.attention_mask, mask, self.run.sampling.logprob_temperature, with_entropy=True)
        assert out.entropy is not None
        result = policy_loss(
            out.logprobs, micro.old_logprobs, inputs.advantages, mask, inputs.totals, aggregation=cfg.objective.loss_agg,
            clip_low=cfg.objective.clip_low, clip_high=cfg.objective.clip_high, beta=cfg.objective.beta, ref_logprobs=inputs.reference, kl_estimator=cfg.objective.kl_estimator,
        )
        loss = result.loss
        if self.ent_coef:
            loss = loss - self.ent_coef * entropy_bonus(out.entropy, mask, inputs.totals, cfg.objective.loss_agg)
        n_tokens = float(mask.sum())
        sums: list[Metric] = [
            ("pg_loss", float(result.pg_loss), 0.0),  # shares of the mini-batch loss: counted once in `finish`
            ("clip_fraction", float(result.clip_fraction_sum), n_tokens),
            ("ratio", float(result.ratio_sum), n_tokens),
        ]
        if inputs.reference is not None:
            sums.append(("kl", float(result.kl_sum), n_tokens))
        if inputs.minibatch.epoch == 0:  # entropy of the rollout policy on its own tokens
            sums.append(("entropy", float((out.entropy.detach() * mask).sum()), n_tokens))
        maxima: tuple[tuple[str, float], ...] = ()
        if inputs.minibatch.first:
            # before any weight change the recomputed log-probs must equal the rollout's (token in,
            # token out): ~1e-6 in float32; a large value means the rollout and the learner disagree
            maxima = (("logprob_mismatch", float(((out.logprobs.detach() - micro.old_logprobs).abs() * mask).max())),)
        return LossOutput(loss, Logged(tuple(sums), maxima), hidden=captured[-1] if captured else None)

    def finish(self) -> Logged:
        grad_norm, lr = self.optimized.step()
        return Logged((("grad_norm", grad_norm, 1.0), ("lr", lr, 1.0)), counted=("pg_loss",))


# ----------------------------------------------------------------------------------------------
# epochs, mini-batches, micro-batches


def train_epochs(run: Run, batch: UpdateBatch, step: int, parts: Sequence[LossPart], idle: Sequence[LossPart] = ()) -> MetricSums:
    """`epochs` x `minibatches` optimizer steps of `parts` on `batch`; returns the metric sums.

    `idle` parts sit this step out (PPO's policy during the critic's warm-up): their schedules
    still advance, so the schedule follows planned updates, as it does over empty mini-batches.
    """
    cfg, metrics = run.cfg, MetricSums()
    position = {batch.episodes[i].dialogue: i for i in batch.trainable}
    seed = stream_seed(cfg.run.seed, step, Stream.MINIBATCHES)
    for mb in minibatch_plan(run.dist, position, cfg.rollout.scenarios_per_step * cfg.rollout.group_size, cfg.optimizer.epochs, cfg.optimizer.minibatches, seed):
        if mb.global_size:
            optimizer_step(run, batch, mb, parts, idle, metrics)
        for part in [*parts, *idle]:
            part.optimized.schedule()
    return metrics


def optimizer_step(run: Run, batch: UpdateBatch, mb: MiniBatch, parts: Sequence[LossPart], idle: Sequence[LossPart], metrics: MetricSums) -> None:
    """One mini-batch: the parts' losses summed per micro-batch, gradients accumulated, then each part steps."""
    everyone = [*parts, *idle]
    totals = global_totals(run.dist, [batch.episodes[i].num_policy_tokens for i in mb.indices], float(run.cfg.env.max_turns * run.cfg.rollout.max_new_tokens))
    for part in everyone:
        part.optimized.zero_grad()
    for micro, real in accumulating(run.dist, run.micro_batches(batch.episodes, mb.indices), run.dummy, [part.module for part in everyone]):
        micro = micro.to(run.device) if real else micro
        inputs = loss_input(batch, micro, mb, totals, run.device)
        loss = None
        for part in parts:
            out = part.loss(inputs)
            inputs = replace(inputs, hidden=out.hidden)  # what the next part may read of this one's pass
            loss = out.loss if loss is None else loss + out.loss
            if real:  # a dummy pass logs nothing
                out.logged.add_to(metrics)
        assert loss is not None, "an update needs at least one loss part"
        (loss * run.dist.loss_weight(real)).backward()
        if real:
            metrics.add("update_tokens", float(micro.num_tokens), 0.0)
    for part in parts:
        part.finish().add_to(metrics)


def loss_input(batch: UpdateBatch, micro: MicroBatch, mb: MiniBatch, totals: Totals, device: torch.device) -> LossInput:
    """The rows of the micro-batch's episodes as [B, L] tensors (zeros for a dummy pass's empty micro-batch)."""

    def rows(per_episode: Rows | None) -> torch.Tensor | None:
        return episode_rows(micro, per_episode, device) if per_episode is not None else None

    advantages = episode_rows(micro, batch.advantages, device)
    return LossInput(micro, mb, totals, advantages, rows(batch.reference), rows(batch.returns), rows(batch.values))
