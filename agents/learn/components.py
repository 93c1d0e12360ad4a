"""The parts a run is assembled from, by configuration: the policy and the environments it plays."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from agents.learn.config import TrainConfig
from agents.learn.tiny_model import build_tiny_model, limited_scenarios
from agents.policy.loading import LoraSettings
from agents.policy.model import Policy
from agents.policy.model_path import check_model_path
from sage_gym.prompts import default_prompts
from sage_gym.vector import SageVectorEnv


def system_prompt(template: str) -> str:
    return default_prompts().agent_system_prompt(template)


def load_policy(
    cfg: TrainConfig, log: Callable[[str], None] = print, device: str | None = None, dtype: str | None = None,
    autocast_dtype: torch.dtype | None = None, weights_device: str | None = None,
) -> Policy:
    """The policy of a config: the named model, or the embedded tiny chat model (built once, cached). `device`,
    `autocast_dtype` and `weights_device` (where the weights wait to be sharded): `Policy.from_pretrained`'s."""
    model = cfg.model
    if cfg.embedded_model:
        model = str(build_tiny_model(log=log))
    lora = LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules) if cfg.lora else None
    return Policy.from_pretrained(
        model or "",
        system_prompt=system_prompt(cfg.template),
        gguf_file=cfg.gguf_file,
        tokenizer=cfg.tokenizer,
        dtype=dtype or cfg.dtype,
        device=device or cfg.device,
        autocast_dtype=autocast_dtype,
        weights_device=weights_device,
        lora=lora,
        gradient_checkpointing=cfg.gradient_checkpointing,
        chat_template=cfg.chat_template,
        trust_remote_code=cfg.trust_remote_code,
    )


def check_model_paths(cfg: TrainConfig) -> None:
    """Refuse a missing local --model, --tokenizer or --critic-model path in one line (hub ids pass)."""
    for what in ("model", "tokenizer", "critic_model"):
        value = getattr(cfg, what, None)
        if value and not (what == "model" and cfg.gguf_file):  # with --gguf-file, --model may be a hub repo holding it
            check_model_path(value, what.replace("_", " "))


def simulator_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.simulator == "builtin":
        return {}
    kwargs: dict[str, Any] = {"model": cfg.simulator_model, "base_url": cfg.simulator_base_url, "temperature": cfg.simulator_temperature}
    if cfg.simulator_kwargs:
        extra = json.loads(cfg.simulator_kwargs)
        if not isinstance(extra, dict):
            raise ValueError("--simulator-kwargs must be a JSON object")
        kwargs.update(extra)
    return {k: v for k, v in kwargs.items() if v is not None}


def make_envs(cfg: TrainConfig, num_envs: int, transcript_path: Path | None) -> SageVectorEnv:
    """`num_envs` dialogues that each play to the end (autoreset disabled: a GRPO group is never reset mid-batch)."""
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
