"""Token-level PPO for multi-turn dialogue: GRPO's loop with a critic, GAE and per-turn credit.

`PPOTrainer` is a `GRPOTrainer` (same rollout, policy loss, KL, aggregation, micro-batches,
logging, checkpoints and command line) that replaces two steps:

1. **Advantages** (`compute_advantages`). The critic values every token of the step's
   dialogues (one no-grad pass). Each turn's reward sits on the last token the policy sampled
   in that turn (`reward_mode` delta: the emotion change of that turn; final: the last emotion,
   on the last turn only). Token-level GAE with `gamma` and `lam` runs over the policy's own
   tokens only: user, system and template tokens are skipped, not steps
   (`agents.learn.advantages.token_gae`). The advantages are then whitened over every policy token of
   the batch, and the critic's targets are the unwhitened advantages plus the values.
2. **Update** (`update`). `epochs` x `minibatches` optimizer steps over micro-batches of at most
   `micro_batch_tokens` tokens, as in GRPO. Per micro-batch:

       loss = policy_loss(log pi, log pi_old, A_t)           clipped surrogate + beta * KL (shared with GRPO)
            - ent_coef * entropy                             aggregated like the policy loss
            + vf_coef * value_loss(V, V_old, R_t, value_clip)

   The policy and the critic have their own AdamW optimizers, learning rates (`lr`,
   `critic_lr`), gradient clipping and schedules. During the first `critic_warmup_steps` steps
   only the critic learns (the policy's schedule still counts those planned updates, as it
   counts updates of skipped GRPO groups).

Checkpoints carry the critic, its optimizer and its schedule (`extra_state`), so `--resume`
continues exactly. Metrics add the value loss, explained variance, value clip fraction, the
critic's lr and grad norm, and the mean value and return; `critic_curve.png` plots the first two.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.learn.advantages import token_gae, whiten
from agents.learn.config import TrainConfig, option
from agents.learn.critic import CRITIC_KINDS, build_critic, capture_hidden
from agents.learn.distributed import full_model_state, full_optimizer_state, gradient_sync, load_optimizer_state, wrap_module
from agents.learn.grpo import GRPOTrainer, clip_gradients, derive_seed, episode_rows, lr_factor
from agents.learn.metrics import MetricSums, read_metrics
from agents.learn.losses import entropy_bonus, policy_loss, value_loss
from agents.learn.rollout import Episode, RolloutBatch, make_micro_batches


@dataclass
class PPOConfig(TrainConfig):
    """`TrainConfig` plus the critic and GAE. Defaults: the embedded tiny model on the built-in simulator."""

    # --- defaults that differ from GRPO
    group_size: int = option(4, "dialogues per scenario (PPO needs no groups: 1 is fine; copies of a scenario still help the critic)")
    scenarios_per_step: int = option(8, "scenarios per step; a step plays scenarios-per-step x group-size dialogues")
    steps: int = option(40, "training steps (each: one rollout, then the update); 40 keeps the default CPU run under 10 minutes with its critic")
    minibatches: int = option(4, "optimizer steps per epoch (the dialogues are split into this many mini-batches); PPO's critic needs more than one step per rollout")
    output_dir: str = option("runs/ppo", "where metrics, TensorBoard logs, transcripts, checkpoints and the learning curves go")

    # --- critic
    critic: str = option("separate", "head: a value head on the policy's backbone; separate: its own model initialised from a causal LM", choices=CRITIC_KINDS)
    critic_model: str | None = option(None, "separate critic: model folder or hub id with the policy's tokenizer (may be smaller); default: a copy of the policy's initial weights")
    critic_backbone_grad: bool = option(False, "head critic: let the value loss train the shared backbone too (at the policy's lr; only LoRA adapters under --lora)")
    critic_lr: float | None = option(None, "critic learning rate; default 3e-3 for the embedded tiny model, else 1e-4 (head) or 1e-5 (separate)")
    critic_warmup_steps: int = option(0, "first steps in which only the critic learns (the policy stays as it is)")
    vf_coef: float = option(0.5, "weight of the value loss (matters when it shares the backbone with the policy)")
    value_clip: float = option(0.2, "clip each value's move per update to +-this around the rollout's value, in return units (0 disables)")

    # --- advantages and policy objective
    gamma: float = option(1.0, "discount per policy token (user and template tokens are not steps)")
    lam: float = option(1.0, "GAE lambda: 1 is Monte Carlo (returns-to-go minus V), 0 is one-step TD")
    whiten_advantages: bool = option(True, "whiten the advantages over all policy tokens of the batch (mean 0, std 1)")
    ent_coef: float = option(0.0, "entropy bonus coefficient (the loss subtracts ent_coef x the aggregated entropy)")

    def resolved_critic_lr(self) -> float:
        if self.critic_lr is not None:
            return self.critic_lr
        if self.model is None and self.gguf_file is None:  # the embedded tiny model
            return 3e-3
        return 1e-4 if self.critic == "head" else 1e-5


@dataclass
class TokenAdvantages:
    """Per-token advantages of a rollout. Dicts map an episode's index to a [len(episode)] tensor, 0 off its mask."""

    advantages: dict[int, torch.Tensor]  # whitened if asked
    returns: dict[int, torch.Tensor]  # the critic's targets R_t = A_t + V_t
    values: dict[int, torch.Tensor]  # the rollout critic's V_t
    trainable: list[int]  # episodes with at least one policy token
    groups: int
    skipped_groups: int = 0  # PPO skips no group; kept so the shared metrics read the same
    explained_variance: float = float("nan")  # of the rollout critic, against the discounted returns-to-go
    value_mean: float = float("nan")
    return_mean: float = float("nan")  # mean discounted return-to-go over policy tokens
    raw_advantage_std: float = float("nan")
    seconds: float = 0.0


def explained_variance(returns: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, sum_across_ranks: Any = None) -> float:
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


def plot_critic_curve(metrics_path: str | Path, png_path: str | Path, title: str = "PPO critic") -> Path:
    """Value loss and explained variance per step, as a PNG (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, name, label in ((axes[0], "value_loss", "value loss"), (axes[1], "explained_variance", "explained variance")):
        ax.plot(steps, [r.get(name) if r.get(name) is not None else float("nan") for r in records])
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


class PPOTrainer(GRPOTrainer):
    """Owns a PPO run: GRPO's trainer with a critic (see the module docstring)."""

    algorithm = "ppo"
    cfg: PPOConfig

    min_group_size = 1  # PPO needs no groups: the critic is the baseline

    def __init__(self, cfg: PPOConfig, dist: Any = None, policy: Any = None, log: Any = print) -> None:
        if not isinstance(cfg, PPOConfig):
            raise TypeError(f"PPOTrainer needs a PPOConfig, got {type(cfg).__name__}")
        super().__init__(cfg, dist=dist, policy=policy, log=log)

    # -------------------------------------------------------------------- setup and checkpoints

    def _check_config(self) -> None:
        super()._check_config()
        cfg = self.cfg
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(cfg, name)}")
        for name in ("critic_warmup_steps", "value_clip", "vf_coef", "ent_coef"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
        if cfg.critic_warmup_steps >= cfg.steps:
            raise ValueError(f"critic_warmup_steps ({cfg.critic_warmup_steps}) must be below steps ({cfg.steps}), or the policy never learns")

    def setup_models(self, state: dict[str, Any] | None) -> None:
        """The reference, then the critic (a separate one copies the *initial* policy), with its checkpoint weights."""
        super().setup_models(state)
        cfg = self.cfg
        devices = [self.policy.device] if self.policy.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # a reproducible head that leaves the run's RNG streams alone
            torch.manual_seed(derive_seed(cfg.seed, 0, 7))
            self.critic = build_critic(
                cfg.critic, self.policy, model=cfg.critic_model, backbone_grad=cfg.critic_backbone_grad,
                gradient_checkpointing=cfg.gradient_checkpointing, trust_remote_code=cfg.trust_remote_code,
            )
        if state is not None:
            if "critic" not in state:
                raise ValueError("the checkpoint holds no critic (was it written by GRPO?); PPO cannot resume from it")
            if state["critic"]["kind"] != cfg.critic:
                raise ValueError(f"the checkpoint's critic is {state['critic']['kind']!r} but --critic is {cfg.critic!r}")
            self.critic.load_state_dict(state["critic"]["weights"])

    def wrap_models(self) -> None:
        super().wrap_models()
        # what the value loss calls: the critic, or its DDP wrapper (FSDP2 shards it in place)
        self.critic_module = wrap_module(self.critic, self.cfg.parallel, self.dist, self.device, self.compute_dtype)

    def build_optimizers(self) -> None:
        super().build_optimizers()
        cfg = self.cfg
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.trainable_parameters(), lr=cfg.resolved_critic_lr(), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay
        )
        total = cfg.steps * self.updates_per_step
        self.critic_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.critic_optimizer, lambda u: lr_factor(u, cfg.warmup_steps, total, cfg.lr_schedule, cfg.min_lr_ratio)
        )

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        load_optimizer_state(self.critic, self.critic_optimizer, state["critic"]["optimizer"])
        self.critic_scheduler.load_state_dict(state["critic"]["scheduler"])

    def trainer_state(self) -> dict[str, Any]:
        critic = {
            "kind": self.cfg.critic,
            "weights": full_model_state(self.critic),
            "optimizer": full_optimizer_state(self.critic, self.critic_optimizer),
            "scheduler": self.critic_scheduler.state_dict(),
        }
        return {**super().trainer_state(), "critic": critic}

    # -------------------------------------------------------------------- advantages

    def rollout_values(self, episodes: list[Episode], indices: list[int]) -> dict[int, torch.Tensor]:
        """The critic's V_t for every token of `episodes[indices]` (no gradient), on the CPU."""
        pad = int(self.policy.tokenizer.pad_token_id)
        values: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for micro in self.lockstep(make_micro_batches(episodes, indices, self.cfg.micro_batch_tokens, pad)):
                batch = micro.to(self.device) if micro is not None else self.dummy_batch()
                v = self.critic(batch.input_ids, batch.attention_mask).float().cpu()
                for row, index in enumerate(batch.indices):
                    values[index] = v[row, : len(episodes[index])]
        return values

    def compute_advantages(self, batch: RolloutBatch) -> TokenAdvantages:  # type: ignore[override]
        cfg = self.cfg
        started = time.perf_counter()
        episodes = batch.episodes
        trainable = [i for i, e in enumerate(episodes) if e.num_policy_tokens > 0]
        values = self.rollout_values(episodes, trainable)
        advantages, returns, masks, to_go = {}, {}, {}, {}
        for i in trainable:
            e = episodes[i]
            masks[i] = torch.tensor(e.loss_mask, dtype=torch.float32)
            rewards = torch.tensor(e.token_rewards())
            advantages[i], returns[i] = token_gae(rewards, values[i], masks[i], cfg.gamma, cfg.lam)
            to_go[i] = token_gae(rewards, values[i], masks[i], cfg.gamma, 1.0)[1]  # lam = 1: the discounted return-to-go
        out = TokenAdvantages(advantages, returns, values, trainable, groups=len({e.group for e in episodes}))
        if trainable:
            flat_adv = torch.cat([advantages[i] for i in trainable])
            flat_mask = torch.cat([masks[i] for i in trainable])
            flat_to_go = torch.cat([to_go[i] for i in trainable])
            flat_val = torch.cat([values[i] * masks[i] for i in trainable])
            tokens = flat_mask.sum().clamp(min=1)
            out.raw_advantage_std = float(((flat_adv - (flat_adv * flat_mask).sum() / tokens).square() * flat_mask).sum() / tokens) ** 0.5
            out.value_mean = float((flat_val * flat_mask).sum() / tokens)
            out.return_mean = float((flat_to_go * flat_mask).sum() / tokens)
            # against what actually followed, not the GAE targets (which contain V itself when lam < 1)
            out.explained_variance = explained_variance(flat_to_go, flat_val, flat_mask, self.dist.all_reduce)
            if cfg.whiten_advantages:
                whitened = whiten(flat_adv, flat_mask, self.dist.all_reduce)
                for i, part in zip(trainable, torch.split(whitened, [len(episodes[i]) for i in trainable])):
                    advantages[i] = part
        out.seconds = time.perf_counter() - started
        return out

    # -------------------------------------------------------------------- update

    def update(self, batch: RolloutBatch, adv: TokenAdvantages, step: int) -> MetricSums:  # type: ignore[override]
        """`epochs` x `minibatches` optimizer steps of the policy and the critic; returns metric sums."""
        cfg, policy = self.cfg, self.policy
        metrics = MetricSums()
        episodes = batch.episodes
        trainable = adv.trainable
        train_policy = step > cfg.critic_warmup_steps
        policy.model.train()
        self.critic.train()
        reference = self.all_reference_logprobs(episodes, trainable) if train_policy else {}
        for epoch, k, indices, global_size in self.minibatch_plan(episodes, trainable, step):
            if global_size:
                self._ppo_step(episodes, indices, adv, reference, metrics, epoch=epoch, first_update=(epoch == 0 and k == 0), train_policy=train_policy)
            with warnings.catch_warnings():
                # in critic warm-up the policy's optimizer does not step, and torch warns about that
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                self.scheduler.step()  # planned updates, as in GRPO: warm-up steps count too
            self.critic_scheduler.step()
        metrics.add("explained_variance", adv.explained_variance, 1.0)
        metrics.add("value_mean", adv.value_mean, 1.0)
        metrics.add("return_to_go", adv.return_mean, 1.0)
        metrics.add("advantage_std", adv.raw_advantage_std, 1.0)
        metrics.add("value_seconds", adv.seconds, 1.0)
        metrics.add("critic_warmup", float(not train_policy), 1.0)
        return metrics

    def _ppo_step(
        self, episodes: list[Episode], indices: list[int], adv: TokenAdvantages, reference: dict[int, torch.Tensor],
        metrics: MetricSums, epoch: int, first_update: bool, train_policy: bool,
    ) -> None:
        cfg, policy, device = self.cfg, self.policy, self.device
        totals = self.global_totals(episodes, indices)
        self.optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        temperature = self.sampling.logprob_temperature
        pad = int(policy.tokenizer.pad_token_id)
        micros = self.lockstep(make_micro_batches(episodes, indices, cfg.micro_batch_tokens, pad))
        for j, micro in enumerate(micros):
            last = j == len(micros) - 1
            # a rank out of data runs a dummy pass of weight 0 (no episodes: zero advantages and returns)
            dummy = micro is None
            micro = self.dummy_batch() if dummy else micro.to(device)
            mask = micro.loss_mask
            n_tokens = float(mask.sum())
            with contextlib.ExitStack() as stack:
                stack.enter_context(gradient_sync(policy.train_module, last))
                stack.enter_context(gradient_sync(self.critic_module, last))
                loss = torch.zeros((), device=device)
                hidden = None
                if train_policy:
                    capture = capture_hidden(policy) if self.critic.reads_policy_hidden else contextlib.nullcontext([])
                    with capture as captured:
                        out = policy.token_logprobs(micro.input_ids, micro.attention_mask, mask, temperature, with_entropy=True)
                    if captured:
                        hidden = captured[-1]
                    ref = episode_rows(micro, reference, device) if reference else None
                    result = policy_loss(
                        out.logprobs, micro.old_logprobs, episode_rows(micro, adv.advantages, device), mask, totals, aggregation=cfg.loss_agg,
                        clip_low=cfg.clip_low, clip_high=cfg.clip_high, beta=cfg.beta, ref_logprobs=ref, kl_estimator=cfg.kl_estimator,
                    )
                    loss = result.loss
                    if cfg.ent_coef:
                        loss = loss - cfg.ent_coef * entropy_bonus(out.entropy, mask, totals, cfg.loss_agg)
                values = self.critic_module(micro.input_ids, micro.attention_mask, hidden=hidden, backbone_grad=train_policy)
                returns = episode_rows(micro, adv.returns, device)
                vl = value_loss(values, episode_rows(micro, adv.values, device), returns, mask, totals, aggregation=cfg.loss_agg, clip=cfg.value_clip)
                loss = loss + cfg.vf_coef * vl.loss
                (loss * (0.0 if dummy else self.loss_scale)).backward()
            if dummy:
                continue
            if train_policy:
                metrics.add("pg_loss", float(result.pg_loss), 0.0)
                metrics.add("clip_fraction", float(result.clip_fraction_sum), n_tokens)
                metrics.add("ratio", float(result.ratio_sum), n_tokens)
                if ref is not None:
                    metrics.add("kl", float(result.kl_sum), n_tokens)
                if epoch == 0:  # entropy of the rollout policy on its own tokens, as GRPO logs it
                    metrics.add("entropy", float((out.entropy.detach() * mask).sum()), n_tokens)
                if first_update:  # as in GRPO: before any weight change, recomputed == rollout log-probs
                    gap = ((out.logprobs.detach() - micro.old_logprobs).abs() * mask).max()
                    metrics.sums["logprob_mismatch"] = max(metrics.sums.get("logprob_mismatch", 0.0), float(gap))
                    metrics.counts["logprob_mismatch"] = 1.0
            metrics.add("value_loss", float(vl.loss.detach()), 0.0)
            metrics.add("value_clip_fraction", float(vl.clip_fraction_sum), n_tokens)
            metrics.add("value_error", float(vl.error_sum), n_tokens)
            metrics.add("update_tokens", float(micro.num_tokens), 0.0)
        # per-micro-batch shares (over all ranks) add up to the mini-batch losses: count each once per update
        metrics.counts["value_loss"] += self.once
        if train_policy:
            metrics.counts["pg_loss"] += self.once
            metrics.add("grad_norm", clip_gradients(policy.trainable_parameters(), cfg.max_grad_norm), 1.0)
            metrics.add("lr", self.scheduler.get_last_lr()[0], 1.0)
            self.optimizer.step()
        metrics.add("critic_grad_norm", clip_gradients(self.critic.trainable_parameters(), cfg.max_grad_norm), 1.0)
        metrics.add("critic_lr", self.critic_scheduler.get_last_lr()[0], 1.0)
        self.critic_optimizer.step()

    # -------------------------------------------------------------------- the run

    def fit(self, until: int | None = None) -> list[dict[str, float]]:
        history = super().fit(until)
        metrics_path = self.output_dir / "metrics.jsonl"
        if self.step >= self.cfg.steps and self.dist.is_main and metrics_path.is_file():
            png = plot_critic_curve(metrics_path, self.output_dir / "critic_curve.png")
            self.log(f"critic curve: {png}")
        return history
