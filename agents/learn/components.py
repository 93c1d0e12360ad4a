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
    model = cfg.model.model
    if cfg.embedded_model:
        model = str(build_tiny_model(log=log))
    lora = LoraSettings(cfg.model.lora_r, cfg.model.lora_alpha, cfg.model.lora_dropout, cfg.model.lora_target_modules) if cfg.model.lora else None
    return Policy.from_pretrained(
        model or "",
        system_prompt=system_prompt(cfg.model.template),
        gguf_file=cfg.model.gguf_file,
        tokenizer=cfg.model.tokenizer,
        dtype=dtype or cfg.model.dtype,
        device=device or cfg.model.device,
        autocast_dtype=autocast_dtype,
        weights_device=weights_device,
        lora=lora,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        chat_template=cfg.model.chat_template,
        trust_remote_code=cfg.model.trust_remote_code,
    )


def check_model_paths(cfg: TrainConfig) -> None:
    """Refuse a missing local --model, --tokenizer or --critic-model path in one line (hub ids pass)."""
    for what in ("model", "tokenizer", "critic_model"):
        value = getattr(cfg.model, what, None)
        if value and not (what == "model" and cfg.model.gguf_file):  # with --gguf-file, --model may be a hub repo holding it
            check_model_path(value, what.replace("_", " "))


def simulator_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.env.simulator != "openai":  # the built-in users take no arguments
        return {}
    kwargs: dict[str, Any] = {"model": cfg.env.simulator_model, "base_url": cfg.env.simulator_base_url, "temperature": cfg.env.simulator_temperature}
    if cfg.env.simulator_kwargs:
        extra = json.loads(cfg.env.simulator_kwargs)
        if not isinstance(extra, dict):
            raise ValueError("--simulator-kwargs must be a JSON object")
        kwargs.update(extra)
    return {k: v for k, v in kwargs.items() if v is not None}


def make_envs(cfg: TrainConfig, num_envs: int, transcript_path: Path | None) -> SageVectorEnv:
    """`num_envs` dialogues that each play to the end (autoreset disabled: a GRPO group is never reset mid-batch)."""
    return SageVectorEnv(
        num_envs,
        scenarios=limited_scenarios(cfg.env.scenarios, cfg.env.scenario_limit),
        simulator=cfg.env.simulator,
        simulator_kwargs=simulator_kwargs(cfg),
        autoreset_mode="disabled",
        max_concurrency=cfg.env.max_concurrency,
        max_turns=cfg.env.max_turns,
        initial_emotion=cfg.env.initial_emotion,
        reward_mode=cfg.env.reward_mode,
        strip_think=True,
        transcript_path=transcript_path,
    )
