"""The agents an evaluation can run, behind one small interface.

The evaluator steps many dialogues at once through `SageVectorEnv`; each sub-env is a *slot*. An
agent is told when a dialogue starts in a slot and is asked for the replies of several slots at
once, so a model can batch its generation and an endpoint can take concurrent requests.

| method | called |
|---|---|
| `begin(slot, seed)` | when a new dialogue starts in `slot`; `seed` is the episode's seed (the agent's own randomness for that dialogue derives from it) |
| `act(slots, infos) -> list[str]` | for the slots that need a reply; `infos[k]` is slot `slots[k]`'s latest step info (`history`, `turn`, `bucket`, ... see `SageDialogueEnv`) |
| `manifest() -> dict` | once, for the report: everything that determines the agent's replies |

Text agents read only `info["history"]`, the visible dialogue (the user's lines have role
"user"), exactly what a deployed chat model would see.

| kind | class | what it is |
|---|---|---|
| `empathic`, `solution`, `dismissive`, `random`, `keyword_stuffer` | `ReferenceAgent` | the template agents of `agents.replies.baselines` |
| `listener`, `warmth`, `advice`, `dismissive_ind`, `long_careful`, `endorser`, `pushback`, `injection` | `agents.eval.independent.IndependentAgent` | reply styles written apart from the built-in simulator, to check it |
| `hf` | `HFAgent` | a local Hugging Face causal LM, a `train_grpo`/`train_ppo` checkpoint, or a LoRA adapter folder |
| `openai` | `OpenAIChatAgent` | any chat model behind an OpenAI-compatible endpoint |
| `sb3` | `agents.eval.sb3_agent.SB3StrategyAgent` | a stable-baselines3 policy choosing among strategy templates |
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agents.cli import MissingPathError
from agents.eval import independent
from agents.policy.model_path import is_local_path
from agents.policy.models import named_model
from agents.policy.run_folder import find_checkpoint, follow_latest
from agents.replies import baselines
from agents.replies.endpoint import AgentError, ChatEndpoint
from sage_gym._loop import run_sync
from sage_gym.prompts import AGENT_TEMPLATES, default_prompts

AGENT_KINDS = tuple(baselines.REFERENCE_AGENTS) + independent.INDEPENDENT_AGENTS + ("hf", "openai", "sb3")
SYSTEM_TEMPLATES = tuple(AGENT_TEMPLATES) + ("none",)


@runtime_checkable
class EvalAgent(Protocol):
    name: str

    def begin(self, slot: int, seed: int) -> None: ...

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]: ...

    def manifest(self) -> dict[str, Any]: ...


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (the agent's seed, a dialogue's seed, a turn)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def system_prompt_for(template: str, max_reply_words: int | None = None) -> str | None:
    """The agent system prompt of `template` ("think", "direct"), or None for "none"."""
    if template not in SYSTEM_TEMPLATES:
        raise ValueError(f"unknown agent template {template!r}; expected one of {SYSTEM_TEMPLATES}")
    if template == "none":
        return None
    return default_prompts().agent_system_prompt(template, max_reply_words=max_reply_words)


# ----------------------------------------------------------------------------------------------
# reference agents


class ReferenceAgent:
    """A reference template agent per slot, re-seeded with each dialogue's seed."""

    kind = "reference"

    def __init__(self, name: str) -> None:
        baselines.make_reference_agent(name)  # fails early, naming the known agents
        self.name = name
        self._agents: dict[int, Any] = {}

    def begin(self, slot: int, seed: int) -> None:
        self._agents[slot] = baselines.make_reference_agent(self.name, seed)

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self._agents[slot](info["history"]) for slot, info in zip(slots, infos, strict=True)]

    def manifest(self) -> dict[str, Any]:
        # the templates live in baselines.py: its hash pins them
        return {"kind": self.kind, "name": self.name, "source_sha256": hashlib.sha256(Path(baselines.__file__).read_bytes()).hexdigest()}


# ----------------------------------------------------------------------------------------------
# a local Hugging Face model


class HFAgent:
    """A local causal LM (a folder, a hub id, a trained checkpoint or a LoRA adapter folder).

    Each slot keeps the token ids of its dialogue as the model produced them, think part
    included; user turns are appended as chat-template deltas, never re-tokenized from text (the
    same way the learners' rollouts grow a dialogue). A LoRA adapter folder (one holding
    `adapter_config.json`) is loaded onto its base model, named in the adapter config or by
    `base_model`. A checkpoint folder is read from its `policy/`, and a training run's output
    folder from its latest checkpoint. The system prompt is the `template`'s ("think" or
    "direct"), or, when `template` is None, the one a `train_grpo`/`train_ppo` checkpoint saved
    (`sage_policy.json`), else "think". Decoding is greedy by default (`temperature=0`); with
    sampling, each dialogue draws from its own stream seeded by its episode seed and turn, so an
    evaluation is reproducible and resumable either way, whichever dialogues share a batch.
    """

    kind = "hf"

    def __init__(
        self,
        model: str,
        *,
        base_model: str | None = None,
        template: str | None = None,
        max_reply_words: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        device: str = "auto",
        dtype: str = "auto",
        chat_template: str | None = None,
        seed: int = 0,
    ) -> None:
        if is_local_path(model) and not Path(model).expanduser().exists():  # before the heavy imports: one line at once
            raise MissingPathError(f"no model at {model}: give a training run's folder (its latest checkpoint is used), a checkpoint, a model or LoRA adapter folder, or a hub id")
        # torch and transformers come with the `train` extra: the other agents evaluate without them
        from agents.policy.hf_engine import Sampling
        from agents.policy.loading import load_pretrained, resolve_device, resolve_dtype
        from agents.policy.model import Policy

        folder = policy_folder(Path(model))
        self.name = model_name_of(model, folder)
        model = str(folder) if folder != Path(model) else model
        saved = _saved_policy_settings(folder)
        if template is None and saved.get("system_prompt") is not None:
            self.template, system_prompt = "checkpoint", saved["system_prompt"]
        else:
            self.template = template or "think"
            system_prompt = system_prompt_for(self.template, max_reply_words)
        self.model_name, self.adapter = model, None
        if (folder / "adapter_config.json").is_file():
            self.adapter = str(folder)
            config = json.loads((folder / "adapter_config.json").read_text())
            base_model = base_model or config.get("base_model_name_or_path")
            if not base_model:
                raise ValueError(f"LoRA adapter {folder} does not name its base model; pass base_model (--base-model)")
            self.model_name = base_model
        self.sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        torch_device = resolve_device(device)
        if self.adapter is None:
            self.policy = Policy.from_pretrained(model, system_prompt=system_prompt, dtype=dtype, device=device, chat_template=chat_template)
        else:
            from peft import PeftModel  # the `train` extra, as above

            has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
            base, tokenizer = load_pretrained(self.model_name, dtype=resolve_dtype(dtype, torch_device), tokenizer=str(folder) if has_tokenizer else None)
            self.policy = Policy.from_model(
                PeftModel.from_pretrained(base, str(folder)), tokenizer, system_prompt=system_prompt, device=torch_device, chat_template=chat_template
            )
        self.policy.model.eval()
        self.system_prompt = system_prompt
        self.seed = seed
        self._contexts: dict[int, list[int] | None] = {}
        self._seeds: dict[int, int] = {}
        self._max_positions = getattr(self.policy.base.config, "max_position_embeddings", None)

    def begin(self, slot: int, seed: int) -> None:
        self._contexts[slot] = None
        self._seeds[slot] = seed

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        chat = self.policy.chat
        contexts, seeds = [], []
        for slot, info in zip(slots, infos, strict=True):
            history = info["history"]
            context = self._contexts[slot]
            # first turn: the opening prompt; later: the user's newest line as a template delta
            context = chat.prompt_ids(history[0]["content"]) if context is None else context + chat.user_turn_ids(history[-1]["content"])
            if self._max_positions and len(context) + self.sampling.max_new_tokens > self._max_positions:
                raise AgentError(
                    f"dialogue in slot {slot} needs {len(context) + self.sampling.max_new_tokens} positions, more than the model's "
                    f"{self._max_positions}; lower --max-new-tokens or --max-turns"
                )
            contexts.append(context)
            seeds.append(hash_seed(self.seed, self._seeds[slot], info.get("turn", len(history))))
        completions = self.policy.sample(contexts, self.sampling, seeds=seeds)
        replies = []
        for slot, context, completion in zip(slots, contexts, completions, strict=True):
            self._contexts[slot] = context + chat.closed_turn(completion.token_ids, completion.stopped)
            replies.append(chat.decode_reply(completion.token_ids))
        return replies

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "model": self.model_name,
            "adapter": self.adapter,
            "weights_sha256": _weights_sha256(Path(self.adapter) if self.adapter else _weights_source(self.model_name)),
            "template": self.template,
            "system_prompt_sha256": sha256_text(self.system_prompt or ""),
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_new_tokens": self.sampling.max_new_tokens,
            "seed": self.seed,
            "dtype": str(self.policy.dtype).removeprefix("torch."),
        }


def policy_folder(path: Path) -> Path:
    """The model folder to load: `path` itself, the `policy/` of a checkpoint folder, or the latest
    checkpoint's `policy/` when `path` is a `train_grpo`/`train_ppo` run folder, or a parent of
    runs (`runs/grpo`, whose `latest` names the newest run)."""
    path = follow_latest(path)
    if (path / "policy" / "sage_policy.json").is_file():
        return path / "policy"
    if (path / "checkpoints").is_dir():
        return find_checkpoint(path, "auto") / "policy"
    return path


def adapter_base(model: str | None) -> str | None:
    """The base model a LoRA adapter (a folder, checkpoint or run) names, else None."""
    if not model or not is_local_path(model) or not Path(model).expanduser().exists():
        return None
    config = policy_folder(Path(model).expanduser()) / "adapter_config.json"
    return json.loads(config.read_text()).get("base_model_name_or_path") if config.is_file() else None


def model_name_of(model: str, folder: Path) -> str:
    """A name that tells evaluated models apart (it names the default output folder): a
    checkpoint's run and step (`grpo-20250101-120000-step-000050`), else the model's last part
    (`Qwen2.5-0.5B-Instruct`)."""
    if folder.name == "policy" and folder != Path(model):  # a checkpoint's policy/, reached from a run or a checkpoint folder
        checkpoint = folder.parent
        if checkpoint.parent.name == "checkpoints":
            run = checkpoint.parent.parent
            parts = [run.parent.name, run.name, checkpoint.name]
        else:
            parts = [checkpoint.name]
        return "-".join(p for p in parts if p and p not in (".", "..", "runs")) or "policy"
    return Path(model).name or model


def _saved_policy_settings(folder: Path) -> dict[str, Any]:
    path = folder / "sage_policy.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _weights_source(model: str) -> Path:
    """Where a model's weights are read from: a named model's GGUF file, else the folder."""
    named = named_model(model)
    return named.locate() if named else Path(model)


def _weights_sha256(folder: Path) -> str | None:
    """Hash of a local model's weight files, or of one weights file (None for a hub id): pins the exact checkpoint."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class OpenAIChatAgent:
    """A chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...) as the agent.

    Each request is the system prompt of `template` ("direct" by default; "think" asks for
    `<think>...</think>` first, which the environment hides from the user; "none" sends no
    system prompt) followed by the visible dialogue. The replies of all slots are requested
    concurrently. A request that keeps failing raises `AgentError` (a refused key, `AgentAuthError`
    at once); the evaluation stops, and rerunning it resumes where it stopped. The key is `api_key`,
    else the environment variable `api_key_env`; it and `headers` never reach a manifest.
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        template: str = "direct",
        max_reply_words: int | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 512,
        api_key_env: str = "OPENAI_API_KEY",
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        max_concurrency: int = 32,
    ) -> None:
        self.endpoint = ChatEndpoint(
            base_url, model, api_key_env=api_key_env, api_key=api_key, headers=headers, timeout=timeout, max_retries=max_retries, max_concurrency=max_concurrency
        )
        self.template = template
        self.system_prompt = system_prompt_for(template, max_reply_words)
        self.sampling = {"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens)}
        self.name = model
        self._seeds: dict[int, int] = {}

    def begin(self, slot: int, seed: int) -> None:
        """Every request carries the whole visible dialogue; only the dialogue's seed is kept."""
        self._seeds[slot] = seed

    def request_seed(self, slot: int, history: Sequence[Mapping[str, str]]) -> int:
        """The sampling seed sent with a request: the dialogue's seed plus the turn (servers that
        honour `seed` then sample each trial differently and each rerun alike)."""
        return (self._seeds.get(slot, 0) + sum(1 for m in history if m["role"] == "assistant")) % 2**31

    def messages(self, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": m["role"], "content": m["content"]} for m in history]

    def act(self, slots: Sequence[int], infos: Sequence[Mapping[str, Any]]) -> list[str]:
        async def all_replies() -> list[str]:
            return list(
                await asyncio.gather(
                    *(
                        self.endpoint.complete(self.messages(info["history"]), seed=self.request_seed(slot, info["history"]), **self.sampling)
                        for slot, info in zip(slots, infos, strict=True)
                    )
                )
            )

        return run_sync(all_replies())

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            **self.endpoint.manifest(),
            "template": self.template,
            "system_prompt_sha256": sha256_text(self.system_prompt or ""),
            **self.sampling,
            "seed": "dialogue seed + turn",
        }


# ----------------------------------------------------------------------------------------------
# construction by name


def make_agent(kind: str, **options: Any) -> EvalAgent:
    """An evaluation agent by kind (see `AGENT_KINDS`); `options` are the class's keyword arguments."""
    if kind in baselines.REFERENCE_AGENTS:
        if options:
            raise ValueError(f"the reference agent {kind!r} takes no options, got {sorted(options)}")
        return ReferenceAgent(kind)
    if kind in independent.INDEPENDENT_AGENTS:
        if options:
            raise ValueError(f"the independent agent {kind!r} takes no options, got {sorted(options)}")
        return independent.IndependentAgent(kind)
    if kind == "hf":
        # a named model brings the reply settings it was measured at, and so does an adapter trained
        # from one (trained and untrained reply alike); options given override them
        named = named_model(options.get("model")) or named_model(options.get("base_model") or adapter_base(options.get("model")))
        return HFAgent(**{**(named.eval_preset if named else {}), **options})
    if kind == "openai":
        return OpenAIChatAgent(**options)
    if kind == "sb3":
        from agents.eval.sb3_agent import SB3StrategyAgent  # stable-baselines3 and torch: the `sb3` extra

        return SB3StrategyAgent(**options)
    raise ValueError(f"unknown agent kind {kind!r}; expected one of {AGENT_KINDS}")
