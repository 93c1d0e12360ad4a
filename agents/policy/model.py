"""The policy: a Hugging Face causal LM with its tokenizer and chat format, its forward passes and log-probs.

| piece | what it does |
|---|---|
| `Policy.from_pretrained` / `from_model` | a model loaded (`agents.policy.loading`) and placed once: its device, its mixed-precision dtype |
| `Policy.sample` | one agent turn for a batch of contexts (`agents.policy.hf_engine.sample`) |
| `Policy.token_logprobs` | the log-probs of chosen tokens under the current weights (the loss path), chunked so that full-vocabulary float32 logits are never held for a whole batch |
| `Policy.save` / `load_weights` | the weights (or the LoRA adapter) and the tokenizer of a checkpoint |

Sampling and the loss read the logits through one method (`_logits`, then
`log_softmax(logits / temperature)`), which is why recomputed log-probs equal the rollout's. With
LoRA the frozen reference policy is the same model with its adapters disabled (`adapters_disabled`).

Where the policy computes (`device`) and in which dtype (`autocast_dtype`) are fixed when it is
built; under torchrun the trainer has the policy wrap its forward module once (`distribute`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from agents.policy import hf_engine
from agents.policy.chat_format import ChatFormat
from agents.policy.hf_engine import Completion, Sampling, positions, scaled
from agents.policy.loading import LoraSettings, load_pretrained, prepared_model, resolve_device, resolve_dtype


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

    `device` is where it computes and `autocast_dtype` the dtype of its forward passes under mixed
    precision (float32 weights), both fixed here. `forward_module` runs every forward pass;
    `train_module` is what the loss calls: the same module, or after `distribute` its DDP wrapper
    (or itself sharded by FSDP2) under torchrun.
    """

    model: Any
    tokenizer: Any
    chat: ChatFormat
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    autocast_dtype: torch.dtype | None = None  # mixed precision: float32 weights, forward passes in this dtype
    logprob_chunk: int = 1024  # rows of the vocabulary projection computed at once in the loss path
    # float32 logits of a micro-batch small enough to keep for the backward pass; larger ones are
    # recomputed there (checkpointed chunks), which costs one more vocabulary projection
    logprob_keep_bytes: int = 256 * 2**20
    forward_module: PolicyForward = field(init=False, repr=False)
    _train_module: nn.Module = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.forward_module = PolicyForward(self)
        self._train_module = self.forward_module

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
        autocast_dtype: torch.dtype | None = None,
        weights_device: str | None = None,
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
        chat_template: str | None = None,
        trust_remote_code: bool = False,
    ) -> Policy:
        """Load `model` (`agents.policy.loading.load_pretrained`) to compute on `device`. `weights_device`:
        where the weights are loaded, when not there (the host, for a model FSDP2 shards afterwards)."""
        dev = resolve_device(device)
        hf_model, tok = load_pretrained(
            model, gguf_file=gguf_file, dtype=resolve_dtype(dtype, dev), tokenizer=tokenizer, trust_remote_code=trust_remote_code
        )
        return cls.from_model(
            hf_model, tok, system_prompt=system_prompt, device=dev, autocast_dtype=autocast_dtype, weights_device=weights_device,
            lora=lora, gradient_checkpointing=gradient_checkpointing, chat_template=chat_template,
        )

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        system_prompt: str | None,
        device: torch.device | str = "cpu",
        autocast_dtype: torch.dtype | None = None,
        weights_device: torch.device | str | None = None,
        lora: LoraSettings | None = None,
        gradient_checkpointing: bool = False,
        chat_template: str | None = None,
    ) -> Policy:
        """Wrap an already loaded model and tokenizer (tests and the tiny default model use this)."""
        device = torch.device(device)
        model = prepared_model(
            model, tokenizer, device=torch.device(weights_device or device), lora=lora,
            gradient_checkpointing=gradient_checkpointing, chat_template=chat_template,
        )
        return cls(model=model, tokenizer=tokenizer, chat=ChatFormat(tokenizer, system_prompt), device=device, autocast_dtype=autocast_dtype)

    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Under torchrun: from now on the loss calls `wrap(forward_module)` (DDP around it, or it sharded
        in place by FSDP2). Once, after the initial weights were copied and a checkpoint's loaded."""
        if self._train_module is not self.forward_module:
            raise RuntimeError("the policy's forward module is wrapped for training already")
        self._train_module = wrap(self.forward_module)

    @property
    def train_module(self) -> nn.Module:
        """What the loss calls: `forward_module`, or its wrapper after `distribute`."""
        return self._train_module

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

    @property
    def weights_device(self) -> torch.device:
        """Where the weights are now: `device`, except while a model to be sharded (FSDP2) still waits on the host."""
        return next(self.model.parameters()).device

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

    def sample(
        self,
        contexts: Sequence[Sequence[int]],
        sampling: Sampling,
        generator: torch.Generator | None = None,
        max_new_tokens: Sequence[int] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One turn for each context with the live weights (`agents.policy.hf_engine.sample`)."""
        return hf_engine.sample(self, contexts, sampling, generator, max_new_tokens=max_new_tokens, seeds=seeds)

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
        logprobs = torch.log_softmax(scaled(self._logits(hidden).float(), temperature), dim=-1)
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
        folder = Path(folder)
        if self.is_lora:
            from peft import set_peft_model_state_dict  # seconds to import: only for a LoRA policy

            state = load_file(str(folder / "adapter_model.safetensors"), device=str(self.weights_device))
            set_peft_model_state_dict(self.model, state)
            return
        files = sorted(folder.glob("model*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no model*.safetensors in {folder}")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f), device=str(self.weights_device)))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # tied embeddings are saved once; anything else missing is a real mismatch
        missing = [k for k in missing if not _is_tied(self.model, k)]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {folder} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _is_tied(model: Any, key: str) -> bool:
    return key.endswith("lm_head.weight") and bool(getattr(model.config, "tie_word_embeddings", False))
