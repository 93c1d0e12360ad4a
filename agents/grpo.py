"""GRPO for multi-turn dialogue, one readable loop: rollout -> group advantages -> clipped update.

Each step:

1. **Rollout.** B scenarios x G copies are played to the end through `SageVectorEnv`
   (autoreset disabled) by `agents.rollout.collect_rollouts`: token ids as sampled, the loss
   mask, rollout log-probs and per-turn rewards. Dialogues that ended in a simulator error are
   dropped and counted.
2. **Advantages.** The episode return R of each dialogue is compared with its group's
   (`agents.advantages.group_advantages`): (R - mean) / std, or R - mean (Dr. GRPO). Groups with
   no spread are skipped and counted. The advantage is spread over all the policy's tokens.
3. **Update.** `epochs` passes over the dialogues, each split into `minibatches` optimizer
   steps; a mini-batch is cut into micro-batches of at most `micro_batch_tokens` padded tokens
   (sorted by length) whose gradients accumulate. The loss is the clipped surrogate against the
   rollout log-probs plus beta * KL to a frozen reference (`agents.losses.policy_loss`), then
   gradient clipping, AdamW and a warm-up + constant/cosine/linear LR schedule.

`GRPOTrainer` owns the policy, the optional reference, the optimizer, the envs, logging and
checkpoints. PPO subclasses it and replaces `compute_advantages` and `update` (adding a critic);
a torchrun launcher passes a `Distributed` with its rank, world size and an all-reduce, and each
rank then plays its share of the scenarios (groups never split) and reduces its metrics and loss
normalisers across ranks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.advantages import GroupAdvantages, group_advantages
from agents.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from agents.config import TrainConfig
from agents.logging_utils import MetricSums, MetricsWriter, plot_learning_curve
from agents.losses import Totals, policy_loss
from agents.policy import LoraSettings, Policy, Sampling
from agents.rollout import MicroBatch, RolloutBatch, collect_rollouts, make_micro_batches

# ----------------------------------------------------------------------------------------------
# small pieces every learner shares


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (run seed, step, purpose...), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a torchrun job. The defaults are a single process.

    `all_reduce` sums a flat list of floats over ranks (None: a single process).
    """

    rank: int = 0
    world_size: int = 1
    all_reduce: Callable[[list[float]], list[float]] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        return self.all_reduce(values) if self.all_reduce is not None else values


def lr_factor(update: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step `update` (0-based)."""
    if warmup > 0 and update < warmup:
        return (update + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - (1 - min_ratio) * progress
    raise ValueError(f"lr_schedule must be constant, cosine or linear, got {schedule!r}")


def build_optimizer(parameters: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if not parameters:
        raise ValueError("the policy has no trainable parameters")
    return torch.optim.AdamW(parameters, lr=cfg.resolved_lr(), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_updates: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda u: lr_factor(u, cfg.warmup_steps, total_updates, cfg.lr_schedule, cfg.min_lr_ratio)
    )


def system_prompt(template: str) -> str:
    from sage_gym.prompts import default_prompts

    return default_prompts().agent_system_prompt(template)


def load_policy(cfg: TrainConfig, log: Callable[[str], None] = print) -> Policy:
    """The policy of a config: the named model, or the embedded tiny chat model (built once, cached)."""
    model = cfg.model
    if cfg.embedded_model:
        from agents.tiny_model import build_tiny_model

        model = str(build_tiny_model(log=log))
    lora = LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules) if cfg.lora else None
    return Policy.from_pretrained(
        model or "",
        system_prompt=system_prompt(cfg.template),
        gguf_file=cfg.gguf_file,
        tokenizer=cfg.tokenizer,
        dtype=cfg.dtype,
        device=cfg.device,
        lora=lora,
        gradient_checkpointing=cfg.gradient_checkpointing,
        chat_template=cfg.chat_template,
        trust_remote_code=cfg.trust_remote_code,
    )


def simulator_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.simulator == "builtin":
        return {}
    import json

    kwargs: dict[str, Any] = {"model": cfg.simulator_model, "base_url": cfg.simulator_base_url, "temperature": cfg.simulator_temperature}
    if cfg.simulator_kwargs:
        extra = json.loads(cfg.simulator_kwargs)
        if not isinstance(extra, dict):
            raise ValueError("--simulator-kwargs must be a JSON object")
        kwargs.update(extra)
    return {k: v for k, v in kwargs.items() if v is not None}


def make_envs(cfg: TrainConfig, num_envs: int, transcript_path: Path | None) -> Any:
    from agents.tiny_model import limited_scenarios
    from sage_gym.vector import SageVectorEnv

    return SageVectorEnv(
        num_envs,
        scenarios=limited_scenarios(cfg.scenarios, cfg.resolved_scenario_limit()),
        simulator=cfg.simulator,
        simulator_kwargs=simulator_kwargs(cfg),
        autoreset_mode="disabled",
        max_concurrency=cfg.max_concurrency,
        max_turns=cfg.max_turns,
        initial_emotion=cfg.initial_emotion,
        reward_mode=cfg.reward_mode,
        strip_think=True,
        transcript_path=transcript_path,
    )


# ----------------------------------------------------------------------------------------------
# the trainer


class GRPOTrainer:
    """Owns a GRPO run: `fit()` trains `cfg.steps` steps (resuming if asked), logging and saving."""

    algorithm = "grpo"

    def __init__(self, cfg: TrainConfig, dist: Distributed | None = None, policy: Policy | None = None, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.dist = dist or Distributed()
        self.log = log if self.dist.is_main else (lambda message: None)
        self._check_config()
        threads = cfg.resolved_threads()
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.output_dir = Path(cfg.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)

        self.policy = policy if policy is not None else load_policy(cfg, log=self.log)
        self.sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
        self.reference = self._make_reference()  # before any resume: the reference is the initial policy
        self.optimizer = build_optimizer(self.policy.trainable_parameters(), cfg)
        self.updates_per_step = cfg.epochs * cfg.minibatches
        self.scheduler = build_scheduler(self.optimizer, cfg, cfg.steps * self.updates_per_step)
        self.step = 0
        if cfg.resume:
            path = find_checkpoint(self.output_dir, cfg.resume)
            state = load_checkpoint(path, self.policy, self.optimizer, self.scheduler)
            self.step = int(state["step"])
            self.load_extra_state(state.get("extra", {}))
            self.log(f"resumed from {path} at step {self.step}")

        self.groups_per_rank = cfg.scenarios_per_step // self.dist.world_size
        transcripts = None
        if cfg.transcripts:
            name = "transcripts.jsonl" if self.dist.is_main else f"transcripts-rank{self.dist.rank}.jsonl"
            transcripts = self.output_dir / name
        self.envs = make_envs(cfg, self.groups_per_rank * cfg.group_size, transcripts)
        self.scenario_ids = list(self.envs.scenarios.ids)
        self.writer = MetricsWriter(self.output_dir, tensorboard=cfg.tensorboard, purge_step=self.step + 1 if cfg.resume else None) if self.dist.is_main else None

    # -------------------------------------------------------------------- setup helpers

    def _check_config(self) -> None:
        cfg = self.cfg
        if cfg.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a group is its own baseline), got {cfg.group_size}")
        if cfg.scenarios_per_step < 1 or cfg.scenarios_per_step % self.dist.world_size:
            raise ValueError(f"scenarios_per_step ({cfg.scenarios_per_step}) must be a positive multiple of the number of ranks ({self.dist.world_size})")
        for name in ("steps", "epochs", "minibatches", "micro_batch_tokens", "max_turns", "max_new_tokens"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")

    def _make_reference(self) -> Policy | str | None:
        """None when beta is 0 (nothing loaded); "adapters" with LoRA; else a frozen copy of the policy."""
        if self.cfg.beta == 0:
            return None
        if self.policy.is_lora:
            return "adapters"
        frozen = copy.deepcopy(self.policy.model).eval()
        frozen.requires_grad_(False)
        return Policy(model=frozen, tokenizer=self.policy.tokenizer, chat=self.policy.chat, device=self.policy.device)

    def extra_state(self) -> dict[str, Any]:
        """State a subclass adds to checkpoints (PPO: its critic)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""

    # -------------------------------------------------------------------- one step

    def scenario_plan(self, step: int) -> tuple[list[str], int]:
        """(this rank's scenario ids, index of its first group). All ranks draw the same global plan."""
        rng = np.random.default_rng(derive_seed(self.cfg.seed, step, 1))
        count = self.cfg.scenarios_per_step
        picks = rng.choice(len(self.scenario_ids), size=count, replace=count > len(self.scenario_ids))
        first = self.dist.rank * self.groups_per_rank
        return [self.scenario_ids[i] for i in picks[first : first + self.groups_per_rank]], first

    def rollout(self, step: int) -> RolloutBatch:
        ids, first_group = self.scenario_plan(step)
        generator = torch.Generator(device=self.policy.device).manual_seed(derive_seed(self.cfg.seed, step, 2, self.dist.rank))
        # sub-env i is reset with seed + i: offsetting by the global index keeps dialogues rank-independent
        env_seed = derive_seed(self.cfg.seed, step, 3) + first_group * self.cfg.group_size
        return collect_rollouts(
            self.policy, self.envs, self.sampling, group_size=self.cfg.group_size, seed=env_seed, scenario_ids=ids,
            generator=generator, max_seq_len=self.cfg.max_seq_len, overlong=self.cfg.overlong, group_offset=first_group,
        )

    def compute_advantages(self, batch: RolloutBatch) -> GroupAdvantages:
        returns = [e.episode_return for e in batch.episodes]
        groups = [e.group for e in batch.episodes]
        return group_advantages(returns, groups, normalize=self.cfg.adv_norm)

    def reference_logprobs(self, micro: MicroBatch) -> torch.Tensor | None:
        if self.reference is None:
            return None
        with torch.no_grad():
            if self.reference == "adapters":
                with self.policy.adapters_disabled():
                    out = self.policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, self.sampling.logprob_temperature)
            else:
                assert isinstance(self.reference, Policy)
                out = self.reference.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, self.sampling.logprob_temperature)
        return out.logprobs

    def update(self, batch: RolloutBatch, adv: GroupAdvantages, step: int) -> MetricSums:
        """`epochs` x `minibatches` optimizer steps on this step's dialogues; returns metric sums."""
        cfg, policy = self.cfg, self.policy
        metrics = MetricSums()
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if bool(adv.trainable[i]) and e.num_policy_tokens > 0]
        advantages = adv.advantages.to(policy.device)
        rng = np.random.default_rng(derive_seed(cfg.seed, step, 4, self.dist.rank))
        pad = int(policy.tokenizer.pad_token_id)
        temperature = self.sampling.logprob_temperature
        policy.model.train()
        # reference log-probs once per step (the reference does not change)
        reference: dict[int, torch.Tensor] = {}
        if self.reference is not None and trainable:
            for micro in make_micro_batches(episodes, trainable, cfg.micro_batch_tokens, pad):
                ref = self.reference_logprobs(micro.to(policy.device))
                for row, index in enumerate(micro.indices):
                    reference[index] = ref[row, : len(episodes[index])]
        for epoch in range(cfg.epochs):
            order = rng.permutation(trainable).tolist() if trainable else []
            for k, part in enumerate(np.array_split(np.asarray(order, dtype=int), cfg.minibatches)):
                indices = part.tolist()
                if indices:
                    self._optimizer_step(episodes, indices, advantages, reference, metrics, pad, temperature, epoch=epoch, first_update=(epoch == 0 and k == 0))
                self.scheduler.step()  # the schedule follows planned updates, so skipped groups do not shift it
        return metrics

    def _optimizer_step(
        self, episodes: list, indices: list[int], advantages: torch.Tensor, reference: dict[int, torch.Tensor],
        metrics: MetricSums, pad: int, temperature: float, epoch: int, first_update: bool,
    ) -> None:
        cfg, policy = self.cfg, self.policy
        # the loss divides by the mini-batch totals over all ranks; a DDP wrapper, which averages
        # gradients over ranks, must scale each rank's loss by world_size to keep this sum
        local = [float(sum(episodes[i].num_policy_tokens for i in indices)), float(len(indices))]
        tokens, sequences = self.dist.sum(local)
        totals = Totals(tokens=tokens, sequences=sequences, norm_tokens=float(cfg.max_turns * cfg.max_new_tokens))
        self.optimizer.zero_grad(set_to_none=True)
        for micro in make_micro_batches(episodes, indices, cfg.micro_batch_tokens, pad):
            micro = micro.to(policy.device)
            out = policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature, with_entropy=True)
            token_adv = advantages[micro.indices][:, None] * micro.loss_mask
            ref = None
            if self.reference is not None:
                ref = torch.zeros_like(out.logprobs)
                for row, index in enumerate(micro.indices):
                    ref[row, : len(episodes[index])] = reference[index]
            result = policy_loss(
                out.logprobs, micro.old_logprobs, token_adv, micro.loss_mask, totals, aggregation=cfg.loss_agg,
                clip_low=cfg.clip_low, clip_high=cfg.clip_high, beta=cfg.beta, ref_logprobs=ref, kl_estimator=cfg.kl_estimator,
            )
            result.loss.backward()
            n_tokens = float(micro.loss_mask.sum())
            metrics.add("pg_loss", float(result.pg_loss), 0.0)
            metrics.add("clip_fraction", float(result.clip_fraction_sum), n_tokens)
            metrics.add("ratio", float(result.ratio_sum), n_tokens)
            if ref is not None:
                metrics.add("kl", float(result.kl_sum), n_tokens)
            if epoch == 0:  # entropy of the rollout policy on its own tokens
                metrics.add("entropy", float((out.entropy.detach() * micro.loss_mask).sum()), n_tokens)
            if first_update:
                # before any weight change the recomputed log-probs must equal the rollout's (token in,
                # token out): ~1e-6 in float32; a large value means the rollout and the learner disagree
                gap = ((out.logprobs.detach() - micro.old_logprobs).abs() * micro.loss_mask).max()
                metrics.sums["logprob_mismatch"] = max(metrics.sums.get("logprob_mismatch", 0.0), float(gap))
                metrics.counts["logprob_mismatch"] = 1.0
            metrics.add("update_tokens", float(micro.num_tokens), 0.0)
        # the per-micro-batch pg shares add up to the mini-batch loss: count it once per update
        metrics.counts["pg_loss"] += 1.0
        norm = self._clip_gradients()
        metrics.add("grad_norm", norm, 1.0)
        metrics.add("lr", self.scheduler.get_last_lr()[0], 1.0)
        self.optimizer.step()

    def _clip_gradients(self) -> float:
        params = self.policy.trainable_parameters()
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def train_step(self) -> dict[str, float]:
        """One rollout and one update; returns the step's metrics (reduced across ranks)."""
        step = self.step + 1
        torch.manual_seed(derive_seed(self.cfg.seed, step, 5, self.dist.rank))  # dropout etc.: resumable
        started = time.perf_counter()
        batch = self.rollout(step)
        rollout_seconds = time.perf_counter() - started
        adv = self.compute_advantages(batch)
        started_update = time.perf_counter()
        sums = self.update(batch, adv, step)
        update_seconds = time.perf_counter() - started_update

        episodes = batch.episodes
        sums.add("return", sum(e.episode_return for e in episodes), len(episodes))
        sums.add("emotion", sum(e.final_emotion for e in episodes if e.final_emotion == e.final_emotion), len(episodes))
        for name in ("success", "failure", "left", "truncated"):
            sums.add(f"{name}_rate", sum(e.outcome == name for e in episodes), len(episodes))
        sums.add("turns", sum(e.turns for e in episodes), len(episodes))
        sums.add("episode_tokens", sum(len(e) for e in episodes), len(episodes))
        sums.add("policy_tokens", sum(e.num_policy_tokens for e in episodes), len(episodes))
        sums.add("dropped_errors", batch.dropped_errors, 0.0)
        sums.add("overlong", batch.overlong, 0.0)
        sums.add("skipped_groups", adv.skipped_groups, 0.0)
        sums.add("groups", adv.groups, 0.0)
        sums.add("sampled_tokens", batch.sampled_tokens, 0.0)
        sums.add("rollout_seconds", rollout_seconds, 1.0)
        sums.add("generate_seconds", batch.generate_seconds, 1.0)
        sums.add("env_seconds", batch.env_seconds, 1.0)
        sums.add("update_seconds", update_seconds, 1.0)
        reduced = sums.reduce(self.dist.all_reduce)
        metrics = reduced.means()
        for total in ("dropped_errors", "overlong", "skipped_groups", "groups", "sampled_tokens", "update_tokens"):
            metrics[total] = reduced.sums.get(total, 0.0)
        metrics["rollout_tokens_per_s"] = metrics["sampled_tokens"] / max(metrics["rollout_seconds"], 1e-9)
        metrics["update_tokens_per_s"] = metrics["update_tokens"] / max(metrics["update_seconds"], 1e-9)
        metrics["step_seconds"] = rollout_seconds + update_seconds
        self.step = step
        return metrics

    # -------------------------------------------------------------------- the run

    def fit(self, until: int | None = None) -> list[dict[str, float]]:
        """Train to step `until` (default `cfg.steps`), then checkpoint and (at the end) plot the curve."""
        cfg = self.cfg
        last = min(until or cfg.steps, cfg.steps)
        history = []
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=self.algorithm, unit="step", dynamic_ncols=True)
        try:
            while self.step < last:
                metrics = self.train_step()
                history.append(metrics)
                if self.writer is not None:
                    self.writer.write(self.step, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ret=f"{metrics['return']:+.3f}", emo=f"{metrics['emotion']:.0f}", kl=f"{metrics.get('kl', 0):.3f}")
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < last:
                    self.save()
            if history:
                self.save()
        finally:
            if bar is not None:
                bar.close()
        if self.step >= cfg.steps and self.dist.is_main and (self.output_dir / "metrics.jsonl").is_file():
            png = plot_learning_curve(self.output_dir / "metrics.jsonl", self.output_dir / "learning_curve.png", title=f"{self.algorithm.upper()} on SageDialogue")
            self.log(f"learning curve: {png}")
        return history

    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        return save_checkpoint(
            self.output_dir, self.step, self.policy, self.optimizer, self.scheduler, self.cfg.to_dict(),
            extra=self.extra_state(), keep=self.cfg.keep_checkpoints,
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.envs.close()
