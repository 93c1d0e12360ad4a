"""One set of trained parameters with its AdamW, learning-rate schedule and gradient clipping.

The policy has one (`lr`); a PPO critic has its own (`critic_lr`). The schedule is a linear
warm-up, then constant, cosine or linear decay, and it advances once per *planned* optimizer
step: a mini-batch that is empty on every rank, or a PPO critic warm-up step, still moves it, so
the schedule does not depend on which groups happened to carry signal.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from agents.learn.config import OptimizerConfig
from agents.learn.distributed import full_optimizer_state, load_optimizer_state


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


def clip_gradients(parameters: list[nn.Parameter], max_grad_norm: float) -> float:
    """Clip the global gradient norm (over all ranks' shards under FSDP2); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm > 0 else float("inf"))
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


class Optimized:
    """`parameters` of `module` under AdamW at `lr`, scheduled over `total_updates` planned optimizer steps."""

    def __init__(self, name: str, module: nn.Module, parameters: list[nn.Parameter], lr: float, settings: OptimizerConfig, total_updates: int) -> None:
        if not parameters:
            raise ValueError(f"the {name} has no trainable parameters")
        self.module, self.parameters, self.max_grad_norm = module, parameters, settings.max_grad_norm
        self.optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(settings.adam_beta1, settings.adam_beta2), weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda u: lr_factor(u, settings.warmup_steps, total_updates, settings.lr_schedule, settings.min_lr_ratio)
        )

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> tuple[float, float]:
        """Clip, then take the optimizer step; returns (gradient norm before clipping, learning rate)."""
        norm = clip_gradients(self.parameters, self.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        return norm, lr

    def schedule(self) -> None:
        """Advance the schedule by one planned optimizer step, taken or not."""
        with warnings.catch_warnings():
            # torch warns when a schedule moves before its optimizer's first step; here that is the
            # point (an empty mini-batch, or the policy during PPO's critic warm-up)
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()

    def state(self) -> dict[str, Any]:
        """Optimizer state keyed by parameter name (collective under FSDP2) and the schedule."""
        return {"optimizer": full_optimizer_state(self.module, self.optimizer), "scheduler": self.scheduler.state_dict()}

    def load_state(self, optimizer: dict[str, Any], scheduler: dict[str, Any]) -> None:
        load_optimizer_state(self.module, self.optimizer, optimizer)
        self.scheduler.load_state_dict(scheduler)
