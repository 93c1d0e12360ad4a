"""Token-level PPO for multi-turn dialogue: GRPO's update with a critic, GAE and per-turn credit.

PPO runs in the same trainer as GRPO (same rollout, micro-batches, logging, checkpoints and
command line: `Trainer(cfg, algorithm=PPO)`) and trains the policy with the shared update of
`agents.learn.update` (`PolicyStep`: clipped surrogate, KL, aggregation). It differs in two places:

1. **Advantages** (`PPO.advantages`). The critic values every token of the step's dialogues (one
   no-grad pass). Each turn's reward sits on the last token the policy sampled in that turn
   (`reward_mode` delta: the emotion change of that turn; final: the last emotion, on the last
   turn only). Token-level GAE with `gamma` and `lam` runs over the policy's own tokens only:
   user, system and template tokens are skipped, not steps (`agents.learn.advantages.token_gae`).
   The advantages are then whitened over every policy token of the batch, and the critic's
   targets are the unwhitened advantages plus the values.
2. **Update** (`PPO.update`). The shared `train_epochs` with a second loss part after the
   policy's, the critic's `ValueStep` (a head critic reads the policy's hidden states from the
   policy part's output). Per micro-batch:

       loss = policy_loss(log pi, log pi_old, A_t)           clipped surrogate + beta * KL (PolicyStep, shared with GRPO)
            - ent_coef * entropy                             aggregated like the policy loss
            + vf_coef * value_loss(V, V_old, R_t, value_clip)   (ValueStep)

   The policy and the critic have their own AdamW optimizers, learning rates (`lr`,
   `critic_lr`), gradient clipping and schedules. During the first `critic_warmup_steps` steps
   only the critic learns (the policy's schedule still counts those planned updates, as it
   counts updates of skipped GRPO groups).

Checkpoints carry the critic, its optimizer and its schedule, so `--resume` continues exactly.
Metrics add the value loss, explained variance, value clip fraction, the critic's lr and grad
norm, and the mean value and return; `critic_curve.png` plots the first two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.cli import UsageError
from agents.learn.advantages import explained_variance, token_gae, whiten
from agents.learn.config import ModelConfig, ObjectiveConfig, OptimizerConfig, RolloutConfig, RunConfig, TrainConfig, option
from agents.learn.critic import CRITIC_KINDS, Critic, build_critic
from agents.learn.distributed import full_model_state
from agents.learn.losses import value_loss
from agents.learn.metrics import MetricSums, plot_critic_curve
from agents.learn.optim import Optimized
from agents.learn.rollout import RolloutBatch
from agents.learn.seeds import Stream, stream_seed
from agents.learn.update import (
    Logged,
    LossInput,
    LossOutput,
    PolicyStep,
    Reference,
    Run,
    UpdateBatch,
    make_reference,
    reference_logprobs,
    train_epochs,
)


@dataclass(frozen=True)
class PPOModelConfig(ModelConfig):
    """GRPO's model options plus the critic's model."""

    critic: str = option("separate", "head: a value head on the policy's backbone; separate: its own model initialised from a causal LM", choices=CRITIC_KINDS)
    critic_model: str | None = option(None, "separate critic: model folder or hub id with the policy's tokenizer (may be smaller); default: a copy of the policy's initial weights")
    critic_backbone_grad: bool = option(False, "head critic: let the value loss train the shared backbone too (at the policy's lr; only LoRA adapters under --lora)")


@dataclass(frozen=True)
class PPORolloutConfig(RolloutConfig):
    """GRPO's rollout options with PPO's defaults."""

    group_size: int = option(4, "dialogues per scenario (PPO needs no groups: 1 is fine; copies of a scenario still help the critic)")
    scenarios_per_step: int = option(8, "scenarios per step; a step plays scenarios-per-step x group-size dialogues")
    temperature: float | None = option(1.0, "sampling temperature (log-probs are taken at this temperature); PPO's default run was measured at 1.0")


@dataclass(frozen=True)
class PPOObjectiveConfig(ObjectiveConfig):
    """GRPO's policy loss plus the value loss, GAE, whitening and the entropy bonus."""

    vf_coef: float = option(0.5, "weight of the value loss (matters when it shares the backbone with the policy)")
    value_clip: float = option(0.2, "clip each value's move per update to +-this around the rollout's value, in return units (0 disables)")
    gamma: float = option(1.0, "discount per policy token (user and template tokens are not steps)")
    lam: float = option(1.0, "GAE lambda: 1 is Monte Carlo (returns-to-go minus V), 0 is one-step TD")
    whiten_advantages: bool = option(True, "whiten the advantages over all policy tokens of the batch (mean 0, std 1)")
    ent_coef: float = option(0.0, "entropy bonus coefficient (the loss subtracts ent_coef x the aggregated entropy)")


@dataclass(frozen=True)
class PPOOptimizerConfig(OptimizerConfig):
    """GRPO's optimizer options with PPO's defaults, plus the critic's learning rate and warm-up."""

    minibatches: int = option(4, "optimizer steps per epoch (the dialogues are split into this many mini-batches); PPO's critic needs more than one step per rollout")
    critic_lr: float | None = option(None, "critic learning rate; default 3e-3 for the embedded tiny model, else 1e-4 (head) or 1e-5 (separate)")
    critic_warmup_steps: int = option(0, "first steps in which only the critic learns (the policy stays as it is)")


@dataclass(frozen=True)
class PPORunConfig(RunConfig):
    """GRPO's run options with PPO's defaults (fewer steps; runs go to runs/ppo)."""

    steps: int = option(40, "training steps (each: one rollout, then the update); 40 keeps the default CPU run under 10 minutes with its critic")
    output_dir: str | None = option(None, "where metrics, TensorBoard logs, transcripts, checkpoints and the learning curves go; default: a new folder runs/ppo/<YYYYmmdd-HHMMSS> for every run, with runs/ppo/latest pointing at it. A folder that holds a run already is refused unless --resume or --overwrite")


@dataclass(frozen=True)
class PPOConfig(TrainConfig):
    """`TrainConfig` plus the critic and GAE, in the same groups. Defaults: the embedded tiny model on the built-in simulator."""

    model: PPOModelConfig = field(default_factory=PPOModelConfig)
    rollout: PPORolloutConfig = field(default_factory=PPORolloutConfig)
    objective: PPOObjectiveConfig = field(default_factory=PPOObjectiveConfig)
    optimizer: PPOOptimizerConfig = field(default_factory=PPOOptimizerConfig)
    run: PPORunConfig = field(default_factory=PPORunConfig)

    def resolved_critic_lr(self) -> float:
        if self.optimizer.critic_lr is not None:
            return self.optimizer.critic_lr
        if self.embedded_model:  # the embedded tiny model
            return 3e-3
        return 1e-4 if self.model.critic == "head" else 1e-5


@dataclass
class TokenAdvantages:
    """Per-token advantages of a rollout. Dicts map an episode's index to a [len(episode)] tensor, 0 off its mask."""

    advantages: dict[int, torch.Tensor]  # whitened if asked
    returns: dict[int, torch.Tensor]  # the critic's targets R_t = A_t + V_t
    values: dict[int, torch.Tensor]  # the rollout critic's V_t
    trainable: list[int]  # episodes with at least one policy token
    groups: int
    explained_variance: float = float("nan")  # of the rollout critic, against the discounted returns-to-go
    value_mean: float = float("nan")
    return_mean: float = float("nan")  # mean discounted return-to-go over policy tokens
    raw_advantage_std: float = float("nan")
    seconds: float = 0.0


class ValueStep:
    """The critic's part of an update: the clipped value loss on the step's return targets, and its metrics."""

    def __init__(self, run: Run, cfg: PPOConfig, state: dict[str, Any] | None) -> None:
        self.run, self.cfg = run, cfg
        devices = [run.policy.device] if run.policy.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # a reproducible head that leaves the run's RNG streams alone
            torch.manual_seed(stream_seed(cfg.run.seed, 0, Stream.CRITIC_INIT))
            self.critic: Critic = build_critic(
                cfg.model.critic, run.policy, model=cfg.model.critic_model, backbone_grad=cfg.model.critic_backbone_grad,
                gradient_checkpointing=cfg.model.gradient_checkpointing, trust_remote_code=cfg.model.trust_remote_code,
            )
        if state is not None:
            if "critic" not in state:
                raise UsageError("the checkpoint holds no critic (was it written by GRPO?); PPO cannot resume from it")
            if state["critic"]["kind"] != cfg.model.critic:
                raise UsageError(f"the checkpoint's critic is {state['critic']['kind']!r} but --critic is {cfg.model.critic!r}")
            self.critic.load_state_dict(state["critic"]["weights"])

    def prepare(self, state: dict[str, Any] | None) -> None:
        """The critic as its loss calls it (wrapped or sharded under torchrun), its optimizer and their checkpoint state."""
        self.module = self.run.trained(self.critic)
        self.optimized = Optimized("critic", self.critic, self.critic.trainable_parameters(), self.cfg.resolved_critic_lr(), self.cfg.optimizer, self.run.updates)
        if state is not None:
            self.optimized.load_state(state["critic"]["optimizer"], state["critic"]["scheduler"])

    def loss(self, inputs: LossInput) -> LossOutput:
        cfg, micro = self.cfg, inputs.micro
        assert inputs.returns is not None and inputs.values is not None, "the value loss needs the step's return targets"
        # the policy's hidden states come with their graph only when its part ran before this one: only
        # then may the value loss reach the shared backbone (a head critic with --critic-backbone-grad)
        policy_ran = inputs.hidden is not None
        values = self.module(micro.input_ids, micro.attention_mask, hidden=inputs.hidden, backbone_grad=policy_ran)
        vl = value_loss(values, inputs.values, inputs.returns, micro.loss_mask, inputs.totals, aggregation=cfg.objective.loss_agg, clip=cfg.objective.value_clip)
        n_tokens = float(micro.loss_mask.sum())
        logged = Logged((
            ("value_loss", float(vl.loss.detach()), 0.0),  # shares of the mini-batch loss: counted once in `finish`
            ("value_clip_fraction", float(vl.clip_fraction_sum), n_tokens),
            ("value_error", float(vl.error_sum), n_tokens),
        ))
        return LossOutput(cfg.objective.vf_coef * vl.loss, logged)

    def finish(self) -> Logged:
        grad_norm, lr = self.optimized.step()
        return Logged((("critic_grad_norm", grad_norm, 1.0), ("critic_lr", lr, 1.0)), counted=("value_loss",))

    def state(self) -> dict[str, Any]:
        return {"kind": self.cfg.model.critic, "weights": full_model_state(self.critic), **self.optimized.state()}


class PPO:
    """Critic values, token-level GAE and whitening, then the policy and value steps (see the module docstring)."""

    name = "ppo"
    min_group_size = 1  # PPO needs no groups: the critic is the baseline

    @staticmethod
    def check(cfg: TrainConfig) -> None:
        if not isinstance(cfg, PPOConfig):
            raise TypeError(f"PPO needs a PPOConfig, got {type(cfg).__name__}")
        options = cfg.options()
        for name in ("gamma", "lam"):
            if not 0.0 <= options[name] <= 1.0:
                raise UsageError(f"{name} must lie in [0, 1], got {options[name]}")
        for name in ("critic_warmup_steps", "value_clip", "vf_coef", "ent_coef"):
            if options[name] < 0:
                raise UsageError(f"{name} must be >= 0, got {options[name]}")
        if cfg.optimizer.critic_warmup_steps >= cfg.run.steps:
            raise UsageError(f"critic_warmup_steps ({cfg.optimizer.critic_warmup_steps}) must be below steps ({cfg.run.steps}), or the policy never learns")

    def __init__(self, run: Run, state: dict[str, Any] | None) -> None:
        cfg = run.cfg
        assert isinstance(cfg, PPOConfig)
        self.run, self.cfg = run, cfg
        self.reference: Reference = make_reference(run)
        self.value_step = ValueStep(run, cfg, state)  # a separate critic copies the *initial* policy
        # a head critic reads the hidden states of the policy's own loss pass
        self.policy_step = PolicyStep(run, self.reference, ent_coef=cfg.objective.ent_coef, keep_hidden=self.value_step.critic.reads_policy_hidden)

    def prepare(self, state: dict[str, Any] | None) -> None:
        self.policy_step.prepare(state)
        self.value_step.prepare(state)

    @property
    def critic(self) -> Critic:
        return self.value_step.critic

    def advantages(self, batch: RolloutBatch) -> TokenAdvantages:
        cfg = self.cfg
        started = time.perf_counter()
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if e.num_policy_tokens > 0]
        values = self.run.per_episode_rows(episodes, trainable, lambda micro: self.critic(micro.input_ids, micro.attention_mask).float())
        advantages, returns, masks, to_go = {}, {}, {}, {}
        for i in trainable:
            e = episodes[i]
            masks[i] = torch.tensor(e.loss_mask, dtype=torch.float32)
            rewards = torch.tensor(e.token_rewards())
            advantages[i], returns[i] = token_gae(rewards, values[i], masks[i], cfg.objective.gamma, cfg.objective.lam)
            to_go[i] = token_gae(rewards, values[i], masks[i], cfg.objective.gamma, 1.0)[1]  # lam = 1: the discounted return-to-go
        out = TokenAdvantages(advantages, returns, values, trainable, groups=len({e.group for e in episodes}))
        if trainable:
            self._batch_statistics(out, masks, to_go, [len(episodes[i]) for i in trainable])
        out.seconds = time.perf_counter() - started
        return out

    def _batch_statistics(self, out: TokenAdvantages, masks: dict[int, torch.Tensor], to_go: dict[int, torch.Tensor], lengths: list[int]) -> None:
        """The critic's statistics over every policy token of the batch (all ranks), and the whitening."""
        trainable, advantages = out.trainable, out.advantages
        flat_adv = torch.cat([advantages[i] for i in trainable])
        flat_mask = torch.cat([masks[i] for i in trainable])
        flat_to_go = torch.cat([to_go[i] for i in trainable])
        flat_val = torch.cat([out.values[i] * masks[i] for i in trainable])
        tokens = flat_mask.sum().clamp(min=1)
        out.raw_advantage_std = float(((flat_adv - (flat_adv * flat_mask).sum() / tokens).square() * flat_mask).sum() / tokens) ** 0.5
        out.value_mean = float((flat_val * flat_mask).sum() / tokens)
        out.return_mean = float((flat_to_go * flat_mask).sum() / tokens)
        # against what actually followed, not the GAE targets (which contain V itself when lam < 1)
        out.explained_variance = explained_variance(flat_to_go, flat_val, flat_mask, self.run.all_reduce)
        if self.cfg.objective.whiten_advantages:
            whitened = whiten(flat_adv, flat_mask, self.run.all_reduce)
            for i, part in zip(trainable, torch.split(whitened, lengths), strict=True):
                advantages[i] = part

    def update(self, batch: RolloutBatch, adv: TokenAdvantages, step: int) -> MetricSums:
        """`epochs` x `minibatches` optimizer steps of the policy and the critic; returns metric sums."""
        episodes = batch.episodes
        train_policy = step > self.cfg.optimizer.critic_warmup_steps
        self.run.policy.model.train()
        self.critic.train()
        reference = reference_logprobs(self.run, self.reference, episodes, adv.trainable) if train_policy else None
        update = UpdateBatch(episodes, adv.trainable, adv.advantages, reference=reference, returns=adv.returns, values=adv.values)
        if train_policy:  # the policy's part first: a head critic reads its hidden states
            metrics = train_epochs(self.run, update, step, [self.policy_step, self.value_step])
        else:
            metrics = train_epochs(self.run, update, step, [self.value_step], idle=[self.policy_step])
        metrics.add("explained_variance", adv.explained_variance, 1.0)
        metrics.add("value_mean", adv.value_mean, 1.0)
        metrics.add("return_to_go", adv.return_mean, 1.0)
        metrics.add("advantage_std", adv.raw_advantage_std, 1.0)
        metrics.add("value_seconds", adv.seconds, 1.0)
        metrics.add("critic_warmup", float(not train_policy), 1.0)
        metrics.add("groups", adv.groups, 0.0)
        return metrics

    def state(self) -> dict[str, Any]:
        """What `trainer.pt` holds besides the step and RNG states (collective under FSDP2)."""
        critic = self.value_step.state()
        return {**self.policy_step.optimized.state(), "critic": critic}

    def plots(self, output_dir: Path) -> list[Path]:
        return [plot_critic_curve(output_dir / "metrics.jsonl", output_dir / "critic_curve.png")]

