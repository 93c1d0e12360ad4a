"""GRPO for multi-turn dialogue, one readable loop: rollout -> group advantages -> clipped update.

Each step:

1. **Rollout.** B scenarios x G copies are played to the end through `SageVectorEnv`
   (autoreset disabled) by `agents.learn.rollout.collect_rollouts`: token ids as sampled, the loss
   mask, rollout log-probs and per-turn rewards. Dialogues that ended in a simulator error are
   dropped and counted.
2. **Advantages.** The episode return R of each dialogue is compared with its group's
   (`agents.learn.advantages.group_advantages`): (R - mean) / std, or R - mean (Dr. GRPO). Groups with
   no spread are skipped and counted. The advantage is spread over all the policy's tokens.
3. **Update.** `epochs` passes over the dialogues, each split into `minibatches` optimizer
   steps; a mini-batch is cut into micro-batches of at most `micro_batch_tokens` padded tokens
   (sorted by length) whose gradients accumulate. The loss is the clipped surrogate against the
   rollout log-probs plus beta * KL to a frozen reference (`agents.learn.losses.policy_loss`), then
   gradient clipping, AdamW and a warm-up + constant/cosine/linear LR schedule.

`GRPOTrainer` owns the policy, the optional reference, the optimizer, the envs, logging and
checkpoints. PPO subclasses it and replaces `compute_advantages` and `update` (adding a critic).
Under torchrun (`agents.learn.distributed`) each rank plays its share of the scenarios (groups never
split), every rank draws the same global mini-batch plan and takes its own episodes of each
mini-batch, losses are normalised by global counts and metrics reduced across ranks: the run is
the single-process run up to floating-point noise, whatever the number of ranks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.learn.advantages import GroupAdvantages, group_advantages
from agents.learn.checkpoint import find_checkpoint, load_trainer_state, save_checkpoint
from agents.learn.config import TrainConfig
from agents.learn.distributed import (
    Distributed, full_model_state, full_optimizer_state, gradient_sync, is_sharded, load_optimizer_state, rank_device, shard_frozen, wrap_module,
)
from agents.learn.metrics import MetricSums, MetricsWriter, plot_learning_curve
from agents.learn.losses import Totals, policy_loss
from agents.learn.policy import LoraSettings, Policy, Sampling, resolve_dtype
from agents.learn.rollout import MicroBatch, RolloutBatch, collect_rollouts, derive_seed, make_micro_batches

# ----------------------------------------------------------------------------------------------
# small pieces every learner shares


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


def clip_gradients(parameters: list[torch.nn.Parameter], max_grad_norm: float) -> float:
    """Clip the global gradient norm (over all ranks' shards under FSDP2); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm > 0 else float("inf"))
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def episode_rows(micro: MicroBatch, per_episode: dict[int, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Right-padded [B, L] tensor of per-episode rows (reference log-probs, values...) for the episodes of a micro-batch."""
    out = torch.zeros(micro.input_ids.shape, dtype=torch.float32)
    for row, index in enumerate(micro.indices):
        values = per_episode[index]
        out[row, : len(values)] = values
    return out.to(device)


def system_prompt(template: str) -> str:
    from sage_gym.prompts import default_prompts

    return default_prompts().agent_system_prompt(template)


def load_policy(cfg: TrainConfig, log: Callable[[str], None] = print, device: str | None = None, dtype: str | None = None) -> Policy:
    """The policy of a config: the named model, or the embedded tiny chat model (built once, cached)."""
    model = cfg.model
    if cfg.embedded_model:
        from agents.learn.tiny_model import build_tiny_model

        model = str(build_tiny_model(log=log))
    lora = LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules) if cfg.lora else None
    return Policy.from_pretrained(
        model or "",
        system_prompt=system_prompt(cfg.template),
        gguf_file=cfg.gguf_file,
        tokenizer=cfg.tokenizer,
        dtype=dtype or cfg.dtype,
        device=device or cfg.device,
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
    from agents.learn.tiny_model import limited_scenarios
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
    min_group_size = 2  # a group is its own baseline

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

        self.device = policy.device if policy is not None else rank_device(cfg.device, self.dist)
        # the dtype forward passes run in; full fine-tunes keep float32 weights under mixed precision
        self.compute_dtype = resolve_dtype(cfg.dtype, self.device) if policy is None else policy.autocast_dtype or policy.dtype
        if policy is None:
            mixed = cfg.mixed_precision and not cfg.lora and self.compute_dtype != torch.float32
            weights = torch.float32 if mixed else self.compute_dtype
            # FSDP2 loads to host memory and shards from there, so no GPU ever holds the whole model
            sharded = self.dist.is_distributed and cfg.parallel == "fsdp2"
            policy = load_policy(cfg, log=self.log, device="cpu" if sharded else str(self.device), dtype=str(weights).removeprefix("torch."))
            policy.autocast_dtype = self.compute_dtype if mixed else None
        self.policy = policy
        self.sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
        self.step = 0
        state, path = None, None
        if cfg.resume:
            path = find_checkpoint(self.output_dir, cfg.resume)
            state = load_trainer_state(path)
            self.step = int(state["step"])
        # order matters: models copied from the initial policy first (the KL reference, PPO's
        # critic), then the checkpoint's weights, then the torchrun wrappers, then the optimizers
        self.setup_models(state)
        if path is not None:
            self.policy.load_weights(path / "policy")
        self.wrap_models()
        self.updates_per_step = cfg.epochs * cfg.minibatches
        self.build_optimizers()
        if state is not None:
            self.load_state(state)
            self.log(f"resumed from {path} at step {self.step}")
        self.engine = self._make_engine()

        self.groups_per_rank = cfg.scenarios_per_step // self.dist.world_size
        transcripts = None
        if cfg.transcripts:
            name = "transcripts.jsonl" if self.dist.is_main else f"transcripts-rank{self.dist.rank}.jsonl"
            transcripts = self.output_dir / name
        self.envs = make_envs(cfg, self.groups_per_rank * cfg.group_size, transcripts)
        self.scenario_ids = list(self.envs.scenarios.ids)
        self.writer = MetricsWriter(self.output_dir, tensorboard=cfg.tensorboard, purge_step=self.step + 1 if cfg.resume else None) if self.dist.is_main else None

    # -------------------------------------------------------------------- setup (hooks PPO extends)

    def _check_config(self) -> None:
        cfg = self.cfg
        if cfg.group_size < self.min_group_size:
            raise ValueError(f"group_size must be at least {self.min_group_size} (a group is its own baseline), got {cfg.group_size}")
        if cfg.scenarios_per_step < 1 or cfg.scenarios_per_step % self.dist.world_size:
            raise ValueError(f"scenarios_per_step ({cfg.scenarios_per_step}) must be a positive multiple of the number of ranks ({self.dist.world_size})")
        for name in ("steps", "epochs", "minibatches", "micro_batch_tokens", "max_turns", "max_new_tokens"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.rollout_engine == "vllm" and self.dist.is_distributed and cfg.parallel == "fsdp2":
            raise ValueError("--rollout-engine vllm needs whole weights on every rank to sync: use --parallel ddp with it")

    def setup_models(self, state: dict[str, Any] | None) -> None:
        """Models derived from the initial policy, before any checkpoint weights are loaded."""
        self.reference = self._make_reference()

    def wrap_models(self) -> None:
        """Under torchrun: DDP or FSDP2 around the policy (and the reference under FSDP2)."""
        if not self.dist.is_distributed:
            return
        self.policy.train_module = wrap_module(self.policy.forward_module, self.cfg.parallel, self.dist, self.device, self.compute_dtype)
        self.policy.device = self.device
        if isinstance(self.reference, Policy):
            shard_frozen(self.reference.forward_module, self.cfg.parallel, self.dist, self.device, self.compute_dtype)
            self.reference.device = self.device

    def build_optimizers(self) -> None:
        self.optimizer = build_optimizer(self.policy.trainable_parameters(), self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.cfg.steps * self.updates_per_step)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore optimizer and schedule (after `build_optimizers`) from a checkpoint's trainer state."""
        load_optimizer_state(self.policy.forward_module, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def _make_reference(self) -> Policy | str | None:
        """None when beta is 0 (nothing loaded); "adapters" with LoRA; else a frozen copy of the policy."""
        if self.cfg.beta == 0:
            return None
        if self.policy.is_lora:
            return "adapters"
        # frozen, so no master weights: it is kept in the dtype the policy computes in
        frozen = copy.deepcopy(self.policy.model).to(self.compute_dtype).eval()
        frozen.requires_grad_(False)
        return Policy(model=frozen, tokenizer=self.policy.tokenizer, chat=self.policy.chat, device=self.policy.device)

    def _make_engine(self) -> Any:
        """None: the policy samples its own rollouts; otherwise a separate engine (vLLM) kept in sync."""
        if self.cfg.rollout_engine == "hf":
            return None
        from agents.learn.vllm_engine import build_rollout_engine

        return build_rollout_engine(
            self.cfg.rollout_engine, self.policy, gpu_memory_utilization=self.cfg.vllm_gpu_memory_utilization,
            seed=self.cfg.seed, work_dir=self.output_dir / "vllm",
        )

    def trainer_state(self) -> dict[str, Any]:
        """What `trainer.pt` holds besides the step and RNG states (collective under FSDP2; PPO adds its critic)."""
        return {
            "optimizer": full_optimizer_state(self.policy.forward_module, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
        }

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
        # sub-env i is reset with seed + i and dialogue d samples from its own stream: offsetting
        # both by the global index makes every dialogue independent of the number of ranks
        env_seed = derive_seed(self.cfg.seed, step, 3) + first_group * self.cfg.group_size
        return collect_rollouts(
            self.policy, self.envs, self.sampling, group_size=self.cfg.group_size, seed=env_seed, scenario_ids=ids,
            sample_seed=derive_seed(self.cfg.seed, step, 2), max_seq_len=self.cfg.max_seq_len, overlong=self.cfg.overlong,
            group_offset=first_group, engine=self.engine,
        )

    def compute_advantages(self, batch: RolloutBatch) -> GroupAdvantages:
        returns = [e.episode_return for e in batch.episodes]
        groups = [e.group for e in batch.episodes]
        return group_advantages(returns, groups, normalize=self.cfg.adv_norm)

    def minibatch_plan(self, episodes: list, trainable: list[int], step: int) -> list[tuple[int, int, list[int], int]]:
        """(epoch, k, this rank's positions in `episodes`, global size) for every planned optimizer step.

        One permutation of the *global* trainable dialogues, drawn alike on every rank, is cut into
        `minibatches` parts; each rank keeps its own dialogues of each part. So the mini-batches
        are those of a single process, and a part that is empty everywhere is seen as such by all.
        """
        cfg = self.cfg
        total = cfg.scenarios_per_step * cfg.group_size
        flags = [0.0] * total
        position = {episodes[i].dialogue: i for i in trainable}
        for dialogue in position:
            flags[dialogue] = 1.0
        flags = self.dist.sum(flags)
        global_trainable = [d for d in range(total) if flags[d] > 0]
        rng = np.random.default_rng(derive_seed(cfg.seed, step, 4))
        plan = []
        for epoch in range(cfg.epochs):
            order = rng.permutation(global_trainable) if global_trainable else np.zeros(0, dtype=int)
            for k, part in enumerate(np.array_split(order, cfg.minibatches)):
                plan.append((epoch, k, [position[d] for d in part.tolist() if d in position], len(part)))
        return plan

    def lockstep(self, micros: list[MicroBatch]) -> list[MicroBatch | None]:
        """`micros`, padded with None (a zero-weight dummy pass) to the most any rank has.

        Every forward under FSDP2 gathers parameters and every synced backward under DDP reduces
        gradients: both are collectives, so every rank must run the same number of passes.
        """
        if not self.dist.is_distributed:
            return list(micros)
        most = int(self.dist.max([float(len(micros))])[0])
        return list(micros) + [None] * (most - len(micros))

    def dummy_batch(self) -> MicroBatch:
        """Two tokens, one scored: a pass that touches every weight, for a rank with nothing left to do."""
        pad = int(self.policy.tokenizer.pad_token_id)
        ids = torch.full((1, 2), pad, dtype=torch.long, device=self.device)
        zeros = torch.zeros((1, 2), dtype=torch.float32, device=self.device)
        mask = torch.tensor([[0.0, 1.0]], device=self.device)
        return MicroBatch([], ids, torch.ones_like(ids), mask, zeros)

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

    def all_reference_logprobs(self, episodes: list, indices: list[int]) -> dict[int, torch.Tensor]:
        """The reference's log-probs of `episodes[indices]` (once per step: the reference does not change)."""
        reference: dict[int, torch.Tensor] = {}
        if self.reference is None:
            return reference
        pad = int(self.policy.tokenizer.pad_token_id)
        for micro in self.lockstep(make_micro_batches(episodes, indices, self.cfg.micro_batch_tokens, pad)):
            ref = self.reference_logprobs(micro.to(self.device) if micro is not None else self.dummy_batch())
            for row, index in enumerate(micro.indices if micro is not None else []):
                reference[index] = ref[row, : len(episodes[index])].cpu()
        return reference

    def update(self, batch: RolloutBatch, adv: GroupAdvantages, step: int) -> MetricSums:
        """`epochs` x `minibatches` optimizer steps on this step's dialogues; returns metric sums."""
        metrics = MetricSums()
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if bool(adv.trainable[i]) and e.num_policy_tokens > 0]
        advantages = adv.advantages.to(self.device)
        self.policy.model.train()
        reference = self.all_reference_logprobs(episodes, trainable)
        for epoch, k, indices, global_size in self.minibatch_plan(episodes, trainable, step):
            if global_size:
                self._optimizer_step(episodes, indices, advantages, reference, metrics, epoch=epoch, first_update=(epoch == 0 and k == 0))
            self.scheduler.step()  # the schedule follows planned updates, so skipped groups do not shift it
        return metrics

    def global_totals(self, episodes: list, indices: list[int]) -> Totals:
        """The loss normalisers of a mini-batch over all ranks (each rank's loss is its share of the global loss)."""
        local = [float(sum(episodes[i].num_policy_tokens for i in indices)), float(len(indices))]
        tokens, sequences = self.dist.sum(local)
        return Totals(tokens=tokens, sequences=sequences, norm_tokens=float(self.cfg.max_turns * self.cfg.max_new_tokens))

    @property
    def once(self) -> float:
        """The count of a quantity every rank holds a share of: 1 on rank 0 only, so the reduced count is 1."""
        return 1.0 if self.dist.is_main else 0.0

    @property
    def loss_scale(self) -> float:
        """DDP and FSDP2 average gradients over ranks; the loss is already a share of the global sum."""
        return float(self.dist.world_size)

    def _optimizer_step(
        self, episodes: list, indices: list[int], advantages: torch.Tensor, reference: dict[int, torch.Tensor],
        metrics: MetricSums, epoch: int, first_update: bool,
    ) -> None:
        cfg, policy = self.cfg, self.policy
        totals = self.global_totals(episodes, indices)
        temperature = self.sampling.logprob_temperature
        pad = int(policy.tokenizer.pad_token_id)
        self.optimizer.zero_grad(set_to_none=True)
        micros = self.lockstep(make_micro_batches(episodes, indices, cfg.micro_batch_tokens, pad))
        for j, micro in enumerate(micros):
            with gradient_sync(policy.train_module, j == len(micros) - 1):
                if micro is None:
                    dummy = self.dummy_batch()
                    out = policy.token_logprobs(dummy.input_ids, dummy.attention_mask, dummy.loss_mask, temperature)
                    (out.logprobs.sum() * 0.0).backward()
                    continue
                micro = micro.to(policy.device)
                out = policy.token_logprobs(micro.input_ids, micro.attention_mask, micro.loss_mask, temperature, with_entropy=True)
                token_adv = advantages[micro.indices][:, None] * micro.loss_mask
                ref = episode_rows(micro, reference, policy.device) if self.reference is not None else None
                result = policy_loss(
                    out.logprobs, micro.old_logprobs, token_adv, micro.loss_mask, totals, aggregation=cfg.loss_agg,
                    clip_low=cfg.clip_low, clip_high=cfg.clip_high, beta=cfg.beta, ref_logprobs=ref, kl_estimator=cfg.kl_estimator,
                )
                (result.loss * self.loss_scale).backward()
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
        # the per-micro-batch pg shares (over all ranks) add up to the mini-batch loss: count it once per update
        metrics.counts["pg_loss"] += self.once
        metrics.add("grad_norm", clip_gradients(policy.trainable_parameters(), cfg.max_grad_norm), 1.0)
        metrics.add("lr", self.scheduler.get_last_lr()[0], 1.0)
        self.optimizer.step()

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
        if self.engine is not None:
            self.engine.sync_weights(self.policy)  # the next rollout samples from the updated weights
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
        reduced = sums.reduce(self.dist.all_reduce, self.dist.all_gather)
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
        """Every rank calls this (gathering sharded state is collective); rank 0 writes."""
        module = self.policy.forward_module
        weights = _strip_prefix(full_model_state(module), "model.") if is_sharded(module) else None
        state = self.trainer_state()
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.output_dir, self.step, self.policy, state, self.cfg.to_dict(), keep=self.cfg.keep_checkpoints, weights=weights)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.engine is not None:
            self.engine.close()
        self.envs.close()


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The HF model's own keys from those of the module that holds it as `model`."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
