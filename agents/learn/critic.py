"""The critic: a value V(s_t) for every token of a dialogue, read by a linear head from a causal LM's hidden states.

Two kinds (`--critic`):

| kind | what it is | what the value loss trains | extra cost |
|---|---|---|---|
| `head` | a linear value head on the policy's own backbone | the head (at `--critic-lr`); with `--critic-backbone-grad` also the shared backbone (at the policy's lr; only its LoRA adapters under `--lora`) | none in the update: the head reads the hidden states of the policy's own forward pass |
| `separate` | its own transformer initialised from a causal LM, plus a value head: `--critic-model` names it (a smaller model with the same tokenizer works), default a copy of the policy's initial weights | all of its weights (at `--critic-lr`) | one more forward and backward per micro-batch, and its weights and optimizer state in memory |

**Alignment.** The value of the state in which the policy chose token t is read from the hidden
state at position t - 1: the same position whose logits score token t. V and log pi therefore
refer to the same decision, and position 0 (never a policy token) gets no value.

The head is float32 whatever the backbone's dtype (bf16 on a GPU): it is tiny, and a value
regression in bf16 loses the small per-turn differences it exists to learn.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from agents.policy.hf_engine import positions
from agents.policy.loading import load_pretrained
from agents.policy.model import Policy

CRITIC_KINDS = ("head", "separate")


def _hidden_size(model: Any) -> int:
    config = model.config
    config = getattr(config, "text_config", None) or config
    return int(config.hidden_size)


class ValueHead(nn.Module):
    """hidden [B, L, H] -> values [B, L]: values[:, t] from hidden[:, t - 1] (0 at t = 0)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        # the first values are exactly 0 (explained variance 0, not noise the size of the returns);
        # the head's own gradient is not 0, so it starts learning on the first update
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = self.proj(hidden[:, :-1].float())[..., 0]
        return torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)


class Critic(nn.Module):
    """Values of every token position; `reads_policy_hidden` says whether it can reuse the policy's forward."""

    kind: str = ""
    reads_policy_hidden: bool = False
    _policy: list[Policy]  # the policy it serves, in a list so that its weights are not the critic's

    @property
    def policy(self) -> Policy:
        return self._policy[0]

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor | None = None, backbone_grad: bool = True) -> torch.Tensor:
        """[B, L] float32 values. `hidden`: the policy's final hidden states, for a `head` critic."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor | None = None, backbone_grad: bool = True) -> torch.Tensor:
        # `values` as the module's forward: what a DDP or FSDP2 wrapper sees and syncs
        return self.values(input_ids, attention_mask, hidden=hidden, backbone_grad=backbone_grad)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class HeadCritic(Critic):
    """A value head on the policy's backbone. Its state (and optimizer) is the head alone."""

    kind = "head"
    reads_policy_hidden = True

    def __init__(self, policy: Policy, backbone_grad: bool = False) -> None:
        super().__init__()
        self.head = ValueHead(_hidden_size(policy.base)).to(policy.device)
        self.backbone_grad = backbone_grad
        self._policy = [policy]  # in a list: the policy's weights are not this module's (its state_dict stays the head)

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor | None = None, backbone_grad: bool = True) -> torch.Tensor:
        grad = self.backbone_grad and backbone_grad
        if hidden is None:
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                hidden = self.policy.hidden_states(input_ids, attention_mask)
        # without backbone_grad the head is a probe on the policy's features: the value loss must not move them
        return self.head(hidden if grad else hidden.detach())


class SeparateCritic(Critic):
    """Its own transformer (a causal LM without its vocabulary projection) and a value head."""

    kind = "separate"

    def __init__(self, backbone: nn.Module, hidden_size: int, policy: Policy) -> None:
        super().__init__()
        self.backbone = backbone
        self._policy = [policy]  # for its autocast settings; in a list: not a submodule
        device = next(backbone.parameters()).device
        self.head = ValueHead(hidden_size).to(device)

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor | None = None, backbone_grad: bool = True) -> torch.Tensor:
        with self.policy.autocast():  # the policy's mixed precision, if any (a copy of its weights is float32 too)
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask), use_cache=False)
        return self.head(out.last_hidden_state)


@contextlib.contextmanager
def capture_hidden(policy: Policy) -> Iterator[list[torch.Tensor]]:
    """Collect the final hidden states of the policy's backbone while the block runs.

    A forward hook on the decoder: `Policy.token_logprobs` runs it once per call, so a `head`
    critic gets the hidden states of the loss forward pass (with their graph) at no extra cost.
    """
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = policy.base.get_decoder().register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _same_vocabulary(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab()


def build_critic(
    kind: str,
    policy: Policy,
    *,
    model: str | None = None,
    backbone_grad: bool = False,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
) -> Critic:
    """A critic of `kind` for `policy` (see the module docstring). Initialise the RNG first for a reproducible head."""
    if kind not in CRITIC_KINDS:
        raise ValueError(f"critic must be one of {CRITIC_KINDS}, got {kind!r}")
    if kind == "head":
        if model is not None:
            raise ValueError("--critic-model needs --critic separate (a head critic sits on the policy's own backbone)")
        return HeadCritic(policy, backbone_grad=backbone_grad)
    if backbone_grad:
        raise ValueError("--critic-backbone-grad is for --critic head (a separate critic always trains its own backbone)")
    if model is None:
        # the policy's initial weights, without LoRA layers and without the vocabulary projection
        if policy.is_lora:
            lm = copy.deepcopy(policy.model).merge_and_unload()
        else:
            lm = copy.deepcopy(policy.base)
    else:
        lm, tokenizer = load_pretrained(model, dtype=policy.dtype, trust_remote_code=trust_remote_code)
        if not _same_vocabulary(tokenizer, policy.tokenizer):
            raise ValueError(
                f"critic model {model!r} has another tokenizer than the policy: the critic reads the policy's "
                "token ids as sampled, so it needs the same vocabulary (pick a model of the same family)"
            )
        lm.to(policy.device)
        if gradient_checkpointing:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.requires_grad_(True)
    lm.train()
    return SeparateCritic(lm.get_decoder(), _hidden_size(lm), policy)
