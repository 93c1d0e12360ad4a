"""The Hugging Face sampling engine: one agent turn for a batch of token-id contexts, with a KV cache.

| piece | what it does |
|---|---|
| `Sampling` | temperature / top-p / max new tokens of a turn; temperature 0 is greedy (log-probs then at temperature 1) |
| `sample` | a left-padded batch sampled until each row's stop token or budget; returns the ids as sampled and their log-probs |
| `inverse_cdf` | a row's draw from its own uniforms, so what a row samples does not depend on the other rows |

The engine reads the policy's logits through `Policy._logits`, then `log_softmax(logits / T)`:
the function the loss path (`agents.policy.model`) reads them through, which is why recomputed
log-probs equal the rollout's. It samples with the policy's live weights, so its rollout-engine
hooks (`sync_weights`, `close`) have nothing to do; `agents.learn.vllm_engine` is the other engine.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from agents.policy.chat_format import ChatFormat
from agents.policy.sharding import gathered

if TYPE_CHECKING:  # the policy's module imports this one to sample: a name for annotations only
    from agents.policy.model import Policy


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


@torch.no_grad()
def sample(
    policy: Policy,
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
    was_training = policy.model.training
    policy.model.eval()
    try:
        # FSDP2: gather once, not in each of a rank's own number of steps; the vocabulary
        # projection runs outside the forward module, so it needs the autocast too
        with gathered(policy.forward_module), policy.autocast():
            return _sample(policy, contexts, sampling, generator, limits, seeds)
    finally:
        policy.model.train(was_training)

def _sample(
    policy: Policy, contexts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator | None, limits: list[int], seeds: Sequence[int] | None
) -> list[Completion]:
    from transformers.cache_utils import DynamicCache  # seconds to import: only once a model samples

    n, dev = len(contexts), policy.device
    input_ids, attention = left_padded(contexts, int(policy.tokenizer.pad_token_id))
    input_ids, attention = input_ids.to(dev), attention.to(dev)
    position_ids = positions(attention)
    stop = torch.tensor(policy.chat.stop_ids, dtype=torch.long, device=dev)
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
    cache_kwarg = {_cache_argument(policy): cache}
    hidden = policy._backbone(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=True, **cache_kwarg)
    last = hidden.last_hidden_state[:, -1]
    next_pos = position_ids[:, -1] + 1
    for t in range(steps):
        logprobs = torch.log_softmax(scaled(policy._logits(last).float(), temperature), dim=-1)
        token = choose(logprobs, sampling, generator, uniforms[rows, t] if uniforms is not None else None)
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
        hidden = policy._backbone(input_ids=token[:, None], attention_mask=attention, position_ids=next_pos[:, None], use_cache=True, **cache_kwarg)
        last = hidden.last_hidden_state[:, -1]
        next_pos = next_pos + 1
    token_rows, lp_rows = tokens.tolist(), chosen_lp.tolist()
    return [Completion(token_rows[i][: lengths[i]], lp_rows[i][: lengths[i]], stopped[i]) for i in range(n)]

def _cache_argument(policy: Policy) -> str:
    """The decoder's name for the KV cache argument: `cache` from transformers 5.x (which
    deprecates `past_key_values`), `past_key_values` before."""
    parameters = inspect.signature(policy.base.get_decoder().forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"

def choose(logprobs: torch.Tensor, sampling: Sampling, generator: torch.Generator | None, uniform: torch.Tensor | None) -> torch.Tensor:
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


class HFEngine:
    """The policy as a rollout engine (`agents.learn.rollout.RolloutEngine`): it samples with its own
    live weights through `Policy.sample`, so its hooks have nothing to copy or free."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @property
    def chat(self) -> ChatFormat:
        return self.policy.chat

    def sample(
        self, contexts: Sequence[Sequence[int]], sampling: Sampling, generator: torch.Generator | None = None,
        max_new_tokens: Sequence[int] | None = None, seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        return self.policy.sample(contexts, sampling, generator, max_new_tokens=max_new_tokens, seeds=seeds)

    def sync_weights(self, policy: Policy) -> None:
        """The rollout-engine hook: the policy samples with its own live weights, so nothing to copy."""

    def close(self) -> None:
        """The rollout-engine hook: nothing to free (the trainer owns the model)."""


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


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`logits / temperature`, skipping the full-vocabulary pass when it is 1 (the result is the same)."""
    return logits if temperature == 1.0 else logits / temperature


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a padded batch (left or right): each row counts its own tokens from 0."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)
