"""The policy: a Hugging Face causal LM, its chat template seen as tokens, sampling and log-probs.

Three pieces, each used by every learner (GRPO, PPO) and by the rollout:

| piece | what it does |
|---|---|
| `ChatFormat` | the chat template as token *deltas*: the opening prompt (system + first user message + generation prompt), and the tokens that close an agent turn and append a user turn. Dialogues are grown from these pieces and never re-tokenized. |
| `Policy.sample` | batched sampling with temperature / top-p / max new tokens per turn, stopping at the end-of-turn token, with a KV cache; returns the sampled ids as sampled and their log-probs. |
| `Policy.token_logprobs` | recomputes the log-probs of chosen tokens under the current weights (the loss path), chunked so that full-vocabulary float32 logits are never held for a whole batch. |

Both sampling and the loss read the logits through the same function (`_logits`, then
`log_softmax(logits / temperature)`), which is why recomputed log-probs equal the rollout's.

Models load from a local folder, a hub id, a GGUF file (`gguf_file=`, converted once by
transformers and cached as safetensors), or a named offline model (`agents.learn.models`). LoRA adapters come from `peft`; with LoRA the frozen
reference policy is the same model with its adapters disabled (`Policy.adapters_disabled`).

Longer than the other modules on purpose: sampling and the loss's log-probs must read the logits
through one function, and keeping the chat format, loading, sampling and log-prob paths of one
model side by side is what lets a reader check that they agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from agents.cli import UsageError
from agents.learn.distributed import gathered
from agents.learn.model_path import check_model_path

PLACEHOLDER = "\u2063SAGE_PLACEHOLDER\u2063"  # text no real message contains: marks where content goes in a template


def cache_root() -> Path:
    """Where built and converted models are cached (`SAGE_GYM_CACHE` or ~/.cache/sage_gym)."""
    return Path(os.environ.get("SAGE_GYM_CACHE", Path.home() / ".cache" / "sage_gym"))


# ----------------------------------------------------------------------------------------------
# sampling settings


@dataclass(frozen=True)
class Sampling:
    """How the policy samples one agent turn. temperature 0 means greedy (log-probs then at temperature 1)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def logprob_temperature(self) -> float:
        """The temperature the log-probs are taken at (the loss must use the same one)."""
        return self.temperature if self.temperature > 0 else 1.0


@dataclass
class Completion:
    """One sampled agent turn: token ids as sampled (the stop token included when it was sampled)."""

    token_ids: list[int]
    logprobs: list[float]
    stopped: bool  # True when the end-of-turn token was sampled, False when the token budget ran out


# ----------------------------------------------------------------------------------------------
# chat template as token deltas


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


class ChatFormat:
    """The tokenizer's chat template, reduced to the token pieces a multi-turn rollout needs.

    The template is rendered once around placeholders to learn (a) the opening prompt, (b) the
    end-of-turn token that closes an assistant message and (c) the text between that token and
    the next assistant turn (the user turn "delta"). Message contents are tokenized on their own
    with special tokens split, so a user who types `<|im_end|>` cannot forge a turn boundary.
    """

    def __init__(self, tokenizer: Any, system_prompt: str | None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                "pass --chat-template (a Jinja file, or 'chatml') to give it one"
            )
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []

        opening = _render(tokenizer, system + [{"role": "user", "content": PLACEHOLDER}], True)
        if opening.count(PLACEHOLDER) != 1:
            raise ValueError("the chat template does not render the first user message exactly once")
        self._prompt_parts = opening.split(PLACEHOLDER)

        base = system + [{"role": "user", "content": "hello"}, {"role": "assistant", "content": PLACEHOLDER}]
        with_reply = _render(tokenizer, base, False)
        with_user = _render(tokenizer, base + [{"role": "user", "content": PLACEHOLDER + "2"}], True)
        if not with_user.startswith(with_reply):
            raise ValueError(
                "the chat template re-renders earlier turns when a user turn is added, so turns cannot be "
                "appended as token deltas; use a template whose rendering of a dialogue prefix is stable"
            )
        after_reply = with_reply[with_reply.rindex(PLACEHOLDER) + len(PLACEHOLDER) :]
        self.end_of_turn = self._end_of_turn_token(after_reply)
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        trailing = after_reply[len(self.end_of_turn) :]
        delta = trailing + with_user[len(with_reply) :]
        self._user_parts = delta.split(PLACEHOLDER + "2")
        if len(self._user_parts) != 2:
            raise ValueError("the chat template does not render a user message exactly once")
        # ids are cached: the template pieces never change
        self._prompt_prefix = self._encode(self._prompt_parts[0])
        self._prompt_suffix = self._encode(self._prompt_parts[1])
        self._user_prefix = self._encode(self._user_parts[0])
        self._user_suffix = self._encode(self._user_parts[1])
        stop = {self.end_of_turn_id}
        if tokenizer.eos_token_id is not None:
            stop.add(int(tokenizer.eos_token_id))
        self.stop_ids = tuple(sorted(stop))

    def _end_of_turn_token(self, after_reply: str) -> str:
        """The special token that ends an assistant message (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`...)."""
        specials = set(self.tokenizer.all_special_tokens) | {
            t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)
        }
        matches = [s for s in specials if s and after_reply.startswith(s)]
        if not matches:
            raise ValueError(
                f"cannot find the end-of-turn token: the template writes {after_reply[:40]!r} after an assistant "
                "message, which does not start with a special token"
            )
        return max(matches, key=len)

    def _encode(self, text: str, split_special: bool = False) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"])

    def prompt_ids(self, first_user_message: str) -> list[int]:
        """System prompt + the user's opening message + the assistant generation prompt."""
        return self._prompt_prefix + self._encode(first_user_message, split_special=True) + self._prompt_suffix

    def user_turn_ids(self, user_message: str) -> list[int]:
        """Tokens that follow the agent's end-of-turn token: the user's message and the next generation prompt."""
        return self._user_prefix + self._encode(user_message, split_special=True) + self._user_suffix

    def reply_ids(self, reply: str) -> list[int]:
        """A reply as the model would emit it (content, then end-of-turn); used for supervised warm-start."""
        return self._encode(reply, split_special=True) + [self.end_of_turn_id]

    def decode_reply(self, token_ids: Sequence[int]) -> str:
        """The text of a sampled turn, without its stop token."""
        ids = [t for t in token_ids if t not in self.stop_ids]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def closed_turn(self, token_ids: Sequence[int], stopped: bool) -> list[int]:
        """The ids a sampled turn leaves in the dialogue's context: a turn cut off at its token
        budget gets an end-of-turn token, so the next user delta follows the template."""
        return list(token_ids) if stopped else [*token_ids, self.end_of_turn_id]


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ----------------------------------------------------------------------------------------------
# LoRA settings and loading


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is bfloat16 on a GPU that supports it and float32 otherwise."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def gguf_cache_dir(gguf_path: Path) -> Path:
    """A converted GGUF model is cached under a key of its path, size and modification time."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf_path.stem}-{key}"


def resolve_gguf(model: str | None, gguf_file: str | None) -> tuple[str, str | None]:
    """(model folder or hub id, gguf file name or None). A named model (`agents.learn.models`) is its package's GGUF file."""
    from agents.learn.models import named_model

    named = named_model(model)
    if named is not None:
        path = named.locate()
        return str(path.parent), path.name
    if gguf_file is None:
        if model is not None and model.endswith(".gguf") and Path(model).is_file():
            return str(Path(model).parent), Path(model).name
        return model or "", None
    path = Path(gguf_file)
    if path.is_absolute() or model is None:
        return str(path.parent), path.name
    return model, gguf_file


def convert_gguf(gguf_path: Path, trust_remote_code: bool = False) -> Path:
    """The float32 safetensors folder of a GGUF file: converted on first use, then read from the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = gguf_cache_dir(gguf_path)
    if (cached / "config.json").is_file():
        return cached
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError("loading a GGUF file needs the `gguf` package: pip install gguf (or 'sage-gym[gguf]')") from None
    # transformers dequantizes the GGUF weights into a regular float32 model (tens of seconds): do it once
    source, name = str(gguf_path.parent), gguf_path.name
    converted = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name, trust_remote_code=trust_remote_code)
    # the weights are plain float32 now, but transformers still marks the model as GGUF-quantized
    # and refuses to save it ("quantized with gguf and is not serializable") until the marks go
    converted.hf_quantizer = None
    converted.is_quantized = False
    converted.quantization_method = None
    if hasattr(converted.config, "quantization_config"):
        del converted.config.quantization_config
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}")
    converted.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(cached)
    return cached


def load_pretrained(
    model: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype = torch.float32,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a folder, a hub id, a GGUF file (converted once, then cached) or a named model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.learn.models import named_model

    source, gguf_name = resolve_gguf(model, gguf_file)
    if gguf_name is not None:
        gguf_path = Path(source) / gguf_name
        if not gguf_path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
        source = str(convert_gguf(gguf_path, trust_remote_code))
    if not source:
        raise UsageError("no model given: pass a folder, a hub id or a GGUF file")
    check_model_path(source)
    if tokenizer:
        check_model_path(tokenizer, "tokenizer")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    loaded = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    tok = AutoTokenizer.from_pretrained(tokenizer or source, **kwargs)
    if named_model(model) is not None:
        # a LoRA adapter trained on it then names the model, not this machine's cache folder
        loaded.name_or_path = model
    return loaded, tok


# ----------------------------------------------------------------------------------------------
# the policy


@dataclass
class LogprobOutput:
    """Per-token results aligned with `input_ids` (index t scores token t given tokens < t)."""

    logprobs: torch.Tensor  # [B, L] float32, 0 where not requested
    entropy: torch.Tensor | None = None  # [B, L] float32, 0 where not requested


class PolicyForward(nn.Module):
    """Every forward pass of a `Policy` as a call of one module: what DDP and FSDP2 wrap.

    The policy reads hidden states from the decoder and projects only the scored positions onto
    the vocabulary, instead of calling the model's own `forward`. A wrapper only sees (DDP: syncs
    the gradients of; FSDP2: gathers) what runs inside its module's `forward`, so both kinds of
    pass go through here: "backbone" (sampling, a head critic) and "logprobs" (the loss).
    """

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.model = policy.model
        self._policy = [policy]  # in a list: not a submodule

    def forward(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        policy = self._policy[0]
        with policy.autocast():
            if kind == "backbone":
                return policy.base.get_decoder()(**kwargs)
            if kind == "logprobs":
                out = policy._token_logprobs(*args, **kwargs)
                return out.logprobs, out.entropy  # tensors, not a dataclass: wrappers look into outputs
        raise ValueError(f"unknown forward kind {kind!r}")


@dataclass
class Policy:
    """A causal LM with its tokenizer and chat format. Construct with `Policy.from_pretrained`.

    `forward_module` runs every forward pass; `train_module` is what the loss calls: the same
    module, or its DDP wrapper under torchrun (`agents.learn.distributed.wrap_module`).
    """

    model: Any
    tokenizer: Any
    chat: ChatFormat
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    logprob_chunk: int = 1024  # rows of the vocabulary projection computed at once in the loss path
    # float32 logits of a micro-batch small enough to keep for the backward pass; larger ones are
    # recomputed there (checkpointed chunks), which costs one more vocabulary projection
    logprob_keep_bytes: int = 256 * 2**20
    forward_module: Any = field(default=None, repr=False)
    train_module: Any = field(default=None, repr=False)
    autocast_dtype: torch.dtype | None = None  # mixed precision: float32 weights, forward passes in this dtype

    def __post_init__(self) -> None:
        if self.forward_module is None:
            self.forward_module = PolicyForward(self)
        if self.train_module is None:
            self.train_module = self.forward_module

    # -------------------------------------------------------------------- construction

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        system_prompt: str | None,
        gguf_file: str | None = None,
        tokenizer: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
        chat_template: str | None = None,
        trust_remote_code: bool = False,
    ) -> Policy:
        dev = resolve_device(device)
        hf_model, tok = load_pretrained(
            model, gguf_file=gguf_file, dtype=resolve_dtype(dtype, dev), tokenizer=tokenizer, trust_remote_code=trust_remote_code
        )
        return cls.from_model(
            hf_model, tok, system_prompt=system_prompt, device=dev, lora=lora,
            gradient_checkpointing=gradient_checkpointing, chat_template=chat_template,
        )

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        system_prompt: str | None,
        device: torch.device | str = "cpu",
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
        chat_template: str | None = None,
    ) -> Policy:
        """Wrap an already loaded model and tokenizer (tests and the tiny default model use this)."""
        if chat_template is not None:
            tokenizer.chat_template = CHATML_TEMPLATE if chat_template == "chatml" else Path(chat_template).read_text()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        device = torch.device(device)
        model.to(device)
        model.config.use_cache = True
        if gradient_checkpointing:
            # non-reentrant checkpointing works with LoRA without forcing input grads
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=_targets(lora.target_modules), task_type="CAUSAL_LM"),
            )
        return cls(model=model, tokenizer=tokenizer, chat=ChatFormat(tokenizer, system_prompt), device=device)

    # -------------------------------------------------------------------- structure

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def base(self) -> Any:
        """The underlying transformers CausalLM (with LoRA layers injected, if any)."""
        return self.model.get_base_model() if self.is_lora else self.model

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """With LoRA: the base model (the KL reference). Without LoRA this is an error, not a silent no-op."""
        if not self.is_lora:
            raise RuntimeError("adapters_disabled() needs a LoRA policy; a full fine-tune keeps a separate frozen reference")
        with self.model.disable_adapter():
            yield

    def autocast(self) -> contextlib.AbstractContextManager:
        """Under mixed precision, run the block in `autocast_dtype` (the weights stay float32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _backbone(self, **kwargs: Any) -> Any:
        return self.forward_module("backbone", **kwargs)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, H] final hidden states of a right-padded batch (what a head critic reads)."""
        return self._backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=False).last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits from final hidden states, exactly as the model's own forward computes them."""
        logits = self.base.get_output_embeddings()(hidden)
        softcap = getattr(self.base.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    # -------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self,
        contexts: Sequence[Sequence[int]],
        sampling: Sampling,
        generator: torch.Generator | None = None,
        max_new_tokens: Sequence[int] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """Sample one turn for each context (left-padded batch, KV cache), until its stop token or budget.

        `max_new_tokens` overrides `sampling.max_new_tokens` per context (the rollout's length budget).
        Log-probs are `log_softmax(logits / T)` of the sampled token, before top-p truncation: the
        same quantity the loss recomputes, so the importance ratio starts at exactly 1.

        `seeds` (one per context) gives every row its own random stream (inverse-CDF sampling on
        uniforms drawn from that seed), so what a row samples does not depend on the other rows
        in the batch: a dialogue plays the same on one process or on any rank of a torchrun job.
        Without `seeds`, one `generator` drives the whole batch.
        """
        n = len(contexts)
        if n == 0:
            return []
        limits = turn_budgets(n, sampling, max_new_tokens, seeds)
        was_training = self.model.training
        self.model.eval()
        try:
            # FSDP2: gather once, not in each of a rank's own number of steps; the vocabulary
            # projection runs outside the forward module, so it needs the autocast too
            with gathered(self.forward_module), self.autocast():
                return self._sample(contexts, sampling, generator, limits, seeds)
        finally:
            self.model.train(was_training)

    def _sample(
        self, contexts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator | None, limits: list[int], seeds: Sequence[int] | None
    ) -> list[Completion]:
        from transformers.cache_utils import DynamicCache

        n, dev = len(contexts), self.device
        input_ids, attention = left_padded(contexts, int(self.tokenizer.pad_token_id))
        input_ids, attention = input_ids.to(dev), attention.to(dev)
        position_ids = positions(attention)
        stop = torch.tensor(self.chat.stop_ids, dtype=torch.long, device=dev)
        steps = max(limits)
        limit = torch.tensor(limits, device=dev)
        temperature = sampling.logprob_temperature
        uniforms = row_uniforms(seeds, steps, dev) if seeds is not None else None

        # the sampled tokens and their log-probs stay on the device until the end: a step costs
        # one small host transfer (which rows finished), not one per row and value
        tokens = torch.zeros((n, steps), dtype=torch.long, device=dev)
        chosen_lp = torch.zeros((n, steps), dtype=torch.float32, device=dev)
        lengths, stopped = list(limits), [False] * n
        running = list(range(n))  # which original contexts the cache rows belong to
        rows = torch.arange(n, device=dev)
        # the cache object is updated in place by the model, so it is passed and kept, never read back
        cache = DynamicCache()
        cache_kwarg = {self._cache_argument(): cache}
        hidden = self._backbone(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=True, **cache_kwarg)
        last = hidden.last_hidden_state[:, -1]
        next_pos = position_ids[:, -1] + 1
        for t in range(steps):
            logprobs = torch.log_softmax(_scaled(self._logits(last).float(), temperature), dim=-1)
            token = self._choose(logprobs, sampling, generator, uniforms[rows, t] if uniforms is not None else None)
            tokens[rows, t] = token
            chosen_lp[rows, t] = logprobs.gather(-1, token[:, None])[:, 0]
            is_stop = torch.isin(token, stop)
            done = is_stop | (t + 1 >= limit)
            finished = torch.stack([done, is_stop]).tolist()  # the step's one host sync
            if any(finished[0]):
                for j, i in enumerate(running):
                    if finished[0][j]:
                        lengths[i], stopped[i] = t + 1, finished[1][j]
                keep_rows = [j for j, d in enumerate(finished[0]) if not d]
                if not keep_rows:
                    break
                # drop finished rows so later steps cost only what is still running
                keep = torch.tensor(keep_rows, device=dev)
                cache.batch_select_indices(keep)
                running = [running[j] for j in keep_rows]
                rows, token, attention, next_pos, limit = rows[keep], token[keep], attention[keep], next_pos[keep], limit[keep]
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            hidden = self._backbone(input_ids=token[:, None], attention_mask=attention, position_ids=next_pos[:, None], use_cache=True, **cache_kwarg)
            last = hidden.last_hidden_state[:, -1]
            next_pos = next_pos + 1
        token_rows, lp_rows = tokens.tolist(), chosen_lp.tolist()
        return [Completion(token_rows[i][: lengths[i]], lp_rows[i][: lengths[i]], stopped[i]) for i in range(n)]

    def _cache_argument(self) -> str:
        """The decoder's name for the KV cache argument: `cache` from transformers 5.x (which
        deprecates `past_key_values`), `past_key_values` before."""
        parameters = inspect.signature(self.base.get_decoder().forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    @staticmethod
    def _choose(logprobs: torch.Tensor, sampling: Sampling, generator: torch.Generator | None, uniform: torch.Tensor | None) -> torch.Tensor:
        """The next token of every row: greedy, or a draw from the (top-p truncated) distribution.

        With `uniform` (one number in [0, 1) per row) the draw is the inverse CDF at that number,
        so it depends on the row's own stream only; otherwise `torch.multinomial` with `generator`.
        """
        if sampling.temperature == 0:
            return logprobs.argmax(-1)
        probs = logprobs.exp()
        order = None
        if sampling.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)
            # keep the smallest set whose mass reaches top_p (the most likely token always stays)
            outside = probs.cumsum(-1) - probs >= sampling.top_p
            probs = probs.masked_fill(outside, 0.0)
        if uniform is not None:
            choice = inverse_cdf(probs, uniform)[:, None]
        else:
            choice = torch.multinomial(probs, 1, generator=generator)
        return (order.gather(-1, choice) if order is not None else choice)[:, 0]

    def sync_weights(self, policy: Policy) -> None:
        """The rollout-engine hook: the policy samples with its own live weights, so nothing to copy."""

    def close(self) -> None:
        """The rollout-engine hook: nothing to free (the trainer owns the model)."""

    # -------------------------------------------------------------------- the loss path

    def token_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        score_mask: torch.Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> LogprobOutput:
        """Log-probs (and optionally entropies) of the tokens where `score_mask` is 1, under the current weights.

        Right-padded batch [B, L]. Only the scored positions go through the vocabulary projection,
        in chunks of `logprob_chunk` rows; with gradients on, each chunk is checkpointed so its
        float32 logits are recomputed in the backward pass instead of being stored, unless the
        whole micro-batch's logits (and their log-softmax) take less than `logprob_keep_bytes`.
        """
        logprobs, entropy = self.train_module("logprobs", input_ids, attention_mask, score_mask, temperature, with_entropy)
        return LogprobOutput(logprobs, entropy)

    def _token_logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, score_mask: torch.Tensor, temperature: float, with_entropy: bool
    ) -> LogprobOutput:
        hidden = self.base.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=False
        ).last_hidden_state
        # hidden[:, t] predicts token t + 1
        scored = score_mask[:, 1:].bool()
        rows = hidden[:, :-1][scored]
        targets = input_ids[:, 1:][scored]
        lp_parts, ent_parts = [], []
        vocab = getattr(self.base.get_output_embeddings(), "out_features", None)
        recompute = torch.is_grad_enabled() and (vocab is None or 2 * 4 * rows.shape[0] * vocab > self.logprob_keep_bytes)
        for start in range(0, rows.shape[0], self.logprob_chunk):
            h, y = rows[start : start + self.logprob_chunk], targets[start : start + self.logprob_chunk]
            if recompute:
                lp, ent = checkpoint(self._chunk_logprobs, h, y, temperature, with_entropy, use_reentrant=False)
            else:
                lp, ent = self._chunk_logprobs(h, y, temperature, with_entropy)
            lp_parts.append(lp)
            ent_parts.append(ent)
        # put the results back where the scored tokens sit (index t + 1)
        at_token = torch.cat([torch.zeros_like(scored[:, :1]), scored], dim=1)
        empty = torch.zeros(0, device=input_ids.device)
        zeros = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
        logprobs = zeros.masked_scatter(at_token, torch.cat(lp_parts) if lp_parts else empty)
        entropy = zeros.masked_scatter(at_token, torch.cat(ent_parts) if ent_parts else empty) if with_entropy else None
        return LogprobOutput(logprobs, entropy)

    def _chunk_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs = torch.log_softmax(_scaled(self._logits(hidden).float(), temperature), dim=-1)
        chosen = logprobs.gather(-1, targets[:, None])[:, 0]
        if with_entropy:
            entropy = -(logprobs.exp() * logprobs).sum(-1)
        else:
            entropy = torch.zeros_like(chosen)
        return chosen, entropy

    # -------------------------------------------------------------------- saving

    def save(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Model weights (or only the LoRA adapter) and the tokenizer. `state_dict`: the model's
        whole weights when the live ones are sharded (FSDP2; `agents.learn.distributed.full_model_state`)."""
        folder = Path(folder)
        if state_dict is not None:  # gathered shards hold tied weights twice; a model's own save writes them once
            state_dict = {k: v for k, v in state_dict.items() if not _is_tied(self.model, k)}
        # LoRA: peft would look the base model up on the hub to decide whether to save the
        # embeddings too; they are never trained here, and a named model is no hub id
        lora_only = {"save_embedding_layers": False} if self.is_lora else {}
        self.model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict, **lora_only)
        self.tokenizer.save_pretrained(folder)
        (folder / "sage_policy.json").write_text(json.dumps({"lora": self.is_lora, "system_prompt": self.chat.system_prompt}, indent=1))

    def load_weights(self, folder: str | Path) -> None:
        """Load weights saved by `save` into this policy, in place (optimizer references stay valid)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if self.is_lora:
            from peft import set_peft_model_state_dict

            state = load_file(str(folder / "adapter_model.safetensors"), device=str(self.device))
            set_peft_model_state_dict(self.model, state)
            return
        files = sorted(folder.glob("model*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no model*.safetensors in {folder}")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f), device=str(self.device)))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # tied embeddings are saved once; anything else missing is a real mismatch
        missing = [k for k in missing if not _is_tied(self.model, k)]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {folder} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def left_padded(contexts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id contexts as one left-padded batch (ids, attention mask), on the CPU: how the sampler
    lays out a turn's prompts, so that a comparison with another generator feeds it the same tensors."""
    width = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for row, context in enumerate(contexts):
        ids[row, width - len(context) :] = torch.tensor(list(context), dtype=torch.long)
        mask[row, width - len(context) :] = 1
    return ids, mask


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a padded batch (left or right): each row counts its own tokens from 0."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def turn_budgets(n: int, sampling: Sampling, max_new_tokens: Sequence[int] | None, seeds: Sequence[int] | None) -> list[int]:
    """Each context's token budget for one turn (`max_new_tokens` capped by `sampling`), checking `seeds`."""
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} contexts")
    limits = list(max_new_tokens) if max_new_tokens is not None else [sampling.max_new_tokens] * n
    return [min(int(m), sampling.max_new_tokens) for m in limits]


def row_uniforms(seeds: Sequence[int], steps: int, device: torch.device) -> torch.Tensor:
    """[len(seeds), steps] float64 uniforms in [0, 1), row i drawn from its own generator seeded by seeds[i]."""
    return torch.tensor(np.stack([np.random.default_rng(int(s)).random(steps) for s in seeds]), device=device)


CDF_BLOCK = 1024  # vocabulary entries per block of the two-level inverse CDF


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """[n] index of each row's first entry whose cumulative mass exceeds `uniform * total` (float64).

    `probs` [n, V] (unnormalized, zeros allowed), `uniform` [n] in [0, 1). A zero-probability entry
    is never chosen. The sums are float64, as a float64 cumulative sum over the whole row would
    give, but in two levels: block sums pick the block, then only that block's `CDF_BLOCK`
    entries are summed in order. That reads the row once instead of converting all of it to
    float64 and scanning it (a full-vocabulary pass saved per token at 151k entries).
    """
    n, vocab = probs.shape
    target = uniform.to(torch.float64)
    if vocab <= 2 * CDF_BLOCK:
        cdf = probs.double().cumsum(-1)
        return torch.searchsorted(cdf, (target * cdf[:, -1])[:, None], right=True)[:, 0].clamp(max=vocab - 1)
    blocks, tail = divmod(vocab, CDF_BLOCK)
    sums = probs[:, : blocks * CDF_BLOCK].view(n, blocks, CDF_BLOCK).sum(-1, dtype=torch.float64)
    if tail:
        sums = torch.cat([sums, probs[:, blocks * CDF_BLOCK :].sum(-1, keepdim=True, dtype=torch.float64)], dim=1)
    block_cdf = sums.cumsum(-1)
    target = target * block_cdf[:, -1]
    # the block holding the target (a block of zero mass is never the first to exceed it; nor,
    # should rounding put the target at the very end, past the last block with mass)
    last_block = (torch.arange(sums.shape[1], device=probs.device) * (sums > 0)).amax(-1, keepdim=True)
    block = torch.minimum(torch.searchsorted(block_cdf, target[:, None], right=True), last_block)
    before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)), torch.zeros_like(target[:, None]))
    index = block * CDF_BLOCK + torch.arange(CDF_BLOCK, device=probs.device)
    inside = index < vocab
    mass = probs.gather(1, index.clamp(max=vocab - 1)).double() * inside
    within = torch.searchsorted(before + mass.cumsum(-1), target[:, None], right=True)
    # the two levels sum in different orders: should the target land past the block's own sum by a
    # rounding error, take the block's last entry with mass instead of stepping into the next block
    last = (torch.arange(CDF_BLOCK, device=probs.device) * (mass > 0)).amax(-1, keepdim=True)
    return (index.gather(1, torch.minimum(within, last)))[:, 0]


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`logits / temperature`, skipping the full-vocabulary pass when it is 1 (the result is the same)."""
    return logits if temperature == 1.0 else logits / temperature


def _is_tied(model: Any, key: str) -> bool:
    return key.endswith("lm_head.weight") and bool(getattr(model.config, "tie_word_embeddings", False))


def _targets(target_modules: str | tuple[str, ...]) -> str | list[str]:
    if isinstance(target_modules, str) and target_modules != "all-linear":
        return [t.strip() for t in target_modules.split(",") if t.strip()]
    return target_modules if isinstance(target_modules, str) else list(target_modules)
