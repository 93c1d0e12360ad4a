"""The embedded default policy: a tiny chat model built in code, offline, in about a minute on 2 CPU cores.

`python -m agents.train_grpo` with no arguments needs a model that downloads nothing, trains on a
laptop CPU in minutes, and already writes fluent, on-topic replies so that RL has something to
shift. This module builds one, deterministically, and caches it:

1. **Dialogues.** The reference "random" strategy agent of `agents.replies.baselines` talks with the
   built-in simulator over the shipped training scenarios. Each turn it picks one or two
   strategies at random (reflect, validate, question, praise, advice, motives, ...) and fills
   their templates with the user's own words. In the think-then-say format the reply is preceded
   by a short thought naming the plan (`<think>They mention the rota. I will validate them.</think>`).
2. **Tokenizer.** A byte-level BPE (the `tokenizers` library) trained on those dialogues, the
   personas and the agent system prompts, wrapped as a `PreTrainedTokenizerFast` with a ChatML
   chat template (`<|im_start|>role ... <|im_end|>`).
3. **Model.** A small Qwen2-architecture causal LM (2 layers, width 128, about 0.9M parameters,
   half of them the tied embedding).
4. **Warm start.** A short supervised run on the dialogues, loss only on the agent's tokens
   (the same mask the RL loss uses), through the same `Policy.token_logprobs` path.

The result mixes strategies roughly uniformly, and the built-in simulator rewards some mixes far
more than others (reflecting and validating a venting user, say, against advice or platitudes),
so GRPO can raise the return quickly. The cache key hashes the build settings, the training
scenarios, the prompts, the reference agents and `BUILD_VERSION`: any change rebuilds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy.chat_format import ChatFormat
from agents.policy.loading import cache_root
from agents.policy.model import Policy
from agents.replies import baselines
from sage_gym import SageDialogueEnv
from sage_gym.prompts import default_prompts
from sage_gym.scenarios import ScenarioSet, load_split, resolve_scenarios

BUILD_VERSION = 1  # bump when the build itself changes (the cache key also hashes spec, scenarios, prompts, baselines)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")
# the random agent's pool (no dismissive lines: a reference agent would not say them)
STRATEGY_POOL = tuple(s for s in baselines.STRATEGIES if s != "dismiss")
# ChatML, except that a system message is reduced to a mode tag: a model this small cannot follow a
# 200-word instruction, and reading one every turn would triple the cost of every step on CPU.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "<|im_start|>system\n{{ 'think' if '<think>' in message['content'] else 'direct' }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# what the agent "thinks" before a strategy, in the think-then-say format
INTENTS = {
    "reflect": "reflect their feelings back",
    "validate": "validate how they feel",
    "question": "ask an open question",
    "praise": "praise what they did",
    "advice": "offer a concrete step",
    "motives": "explain why the others acted that way",
    "dialectic": "weigh both sides",
    "reflection": "guide them to reflect",
    "no_blame": "tell them it is not their fault",
    "platitude": "cheer them up",
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that determines the built model (part of the cache key)."""

    seed: int = 0
    dialogues: int = 240
    max_turns: int = 3
    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    sft_steps: int = 200
    sft_batch: int = 16
    sft_lr: float = 6e-3
    split: str = "train"
    scenario_limit: int = 16  # the warm start's users: the first N scenarios of the split (the default run trains on all of them)


# ----------------------------------------------------------------------------------------------
# 1. reference dialogues


def limited_scenarios(split: str, limit: int | None) -> Any:
    """The first `limit` scenarios of a split or file (all when `limit` is None), as a ScenarioSet."""
    scenarios = resolve_scenarios(split)
    if limit is None or limit >= len(scenarios):
        return scenarios
    return ScenarioSet(list(scenarios)[:limit], name=f"{scenarios.name}[:{limit}]")


def reference_dialogues(spec: TinyModelSpec) -> list[dict[str, Any]]:
    """Dialogues of the random strategy agent with the built-in simulator.

    Each is {"messages": [{"role", "content"}], "template": "think" | "direct"}; an assistant
    message's content is exactly what the policy should write (with its thought in "think").
    """
    env = SageDialogueEnv(scenarios=limited_scenarios(spec.split, spec.scenario_limit), max_turns=spec.max_turns)
    rng = np.random.default_rng(spec.seed)
    dialogues = []
    for episode in range(spec.dialogues):
        template = "think" if episode % 2 == 0 else "direct"
        _, info = env.reset(seed=int(rng.integers(2**31 - 1)))
        messages = [{"role": "user", "content": info["history"][0]["content"]}]
        done = False
        while not done:
            history = info["history"]
            turn = baselines.turn_index(history)
            k = 1 + int(rng.integers(2))
            plan = [STRATEGY_POOL[i] for i in rng.choice(len(STRATEGY_POOL), size=k, replace=False)]
            # topics come from the user's opening message: a fixed place in the context, so even a
            # model this small learns to pick up the user's own words (which the simulator checks)
            opening = history[:1]
            reply = " ".join(baselines.render_strategy(s, opening, rng, turn) for s in plan)
            if template == "think":
                topic = baselines.topic_words(opening, limit=1)[0]
                plan_text = " and ".join(INTENTS[s] for s in plan)
                text = f"<think>They mention the {topic}. I will {plan_text}.</think>\n{reply}"
            else:
                text = reply
            _, _, terminated, truncated, info = env.step(text)
            messages.append({"role": "assistant", "content": text})
            if not (terminated or truncated):
                messages.append({"role": "user", "content": info["history"][-1]["content"]})
            done = terminated or truncated
        dialogues.append({"messages": messages, "template": template})
    return dialogues


# ----------------------------------------------------------------------------------------------
# 2. tokenizer


def system_prompts() -> dict[str, str]:
    return {name: default_prompts().agent_system_prompt(name) for name in ("think", "direct")}


def tokenizer_corpus(dialogues: list[dict[str, Any]], split: str = "train") -> list[str]:
    """Texts the BPE is trained on: dialogues, scenario texts, system prompts, the reference templates."""
    texts = [m["content"] for d in dialogues for m in d["messages"]]
    for scenario in load_split(split):
        texts.append(json.dumps(scenario.to_dict(), ensure_ascii=False))
    texts += list(system_prompts().values())
    texts += [t for options in baselines.TEMPLATES.values() for t in options]
    texts += list(INTENTS.values())
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE with ChatML special tokens and a chat template, as a PreTrainedTokenizerFast."""
    # transformers takes seconds to import: only when the model is built (once, then cached)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"]
    )
    fast.add_tokens(list(THINK_TOKENS))  # whole tokens, but not special: decoding keeps them visible to split_think
    fast.chat_template = TINY_CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


# ----------------------------------------------------------------------------------------------
# 3. model


def tiny_config(vocab_size: int, spec: TinyModelSpec, pad_token_id: int, eos_token_id: int) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
    )


def tiny_random_model(tokenizer: Any, spec: TinyModelSpec | None = None, seed: int = 0) -> Any:
    """A randomly initialised tiny Qwen2 causal LM for `tokenizer` (tests use it directly)."""
    from transformers import Qwen2ForCausalLM

    spec = spec or TinyModelSpec()
    torch.manual_seed(seed)
    config = tiny_config(len(tokenizer), spec, tokenizer.pad_token_id, tokenizer.eos_token_id)
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config).float()


def dialogue_tokens(chat: ChatFormat, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(token ids, loss mask) of a dialogue grown exactly as a rollout grows it: mask 1 on the agent's tokens."""
    ids = chat.prompt_ids(messages[0]["content"])
    mask = [0] * len(ids)
    for message in messages[1:]:
        piece = chat.reply_ids(message["content"]) if message["role"] == "assistant" else chat.user_turn_ids(message["content"])
        ids += piece
        mask += [1 if message["role"] == "assistant" else 0] * len(piece)
    return ids, mask


# ----------------------------------------------------------------------------------------------
# 4. supervised warm start


def warm_start(model: Any, tokenizer: Any, dialogues: list[dict[str, Any]], spec: TinyModelSpec, log: Any = None) -> list[float]:
    """Supervised training on the reference dialogues (agent tokens only). Returns the loss curve."""
    prompts = system_prompts()
    formats = {name: ChatFormat(tokenizer, prompt) for name, prompt in prompts.items()}
    sequences = [dialogue_tokens(formats[d["template"]], d["messages"]) for d in dialogues]
    policy = Policy(model=model, tokenizer=tokenizer, chat=formats["direct"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.sft_lr, weight_decay=0.0, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 10) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * s / spec.sft_steps)))
    )
    rng = np.random.default_rng(spec.seed + 1)
    losses = []
    model.train()
    for step in range(spec.sft_steps):
        batch = [sequences[i] for i in rng.choice(len(sequences), size=spec.sft_batch, replace=False)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        mask = torch.zeros_like(input_ids)
        for row, (ids, m) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            mask[row, : len(ids)] = torch.tensor(m)
        out = policy.token_logprobs(input_ids, attention, mask, temperature=1.0)
        loss = -(out.logprobs * mask).sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log is not None and (step % 25 == 0 or step == spec.sft_steps - 1):
            log(f"warm start step {step + 1}/{spec.sft_steps}: loss {loss.item():.3f}")
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------------
# build and cache


def _source_fingerprint(spec: TinyModelSpec) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(spec), sort_keys=True).encode())
    digest.update(f"v{BUILD_VERSION}".encode())
    digest.update(load_split(spec.split).sha256.encode())
    digest.update(default_prompts().sha256().encode())
    digest.update(Path(baselines.__file__).read_bytes())
    return digest.hexdigest()[:16]


def default_model_dir(spec: TinyModelSpec | None = None) -> Path:
    spec = spec or TinyModelSpec()
    return cache_root() / "models" / f"tiny-chat-{_source_fingerprint(spec)}"


def build_tiny_model(output_dir: str | Path | None = None, spec: TinyModelSpec | None = None, log: Any = print) -> Path:
    """Build (or find in the cache) the default tiny chat model; returns its folder."""
    spec = spec or TinyModelSpec()
    target = Path(output_dir) if output_dir is not None else default_model_dir(spec)
    if (target / "config.json").is_file():
        return target
    started = time.time()
    log(f"building the default tiny chat model in {target} (once; about a minute)")
    torch.manual_seed(spec.seed)
    dialogues = reference_dialogues(spec)
    tokenizer = train_tokenizer(tokenizer_corpus(dialogues, spec.split), spec.vocab_size)
    model = tiny_random_model(tokenizer, spec, seed=spec.seed)
    losses = warm_start(model, tokenizer, dialogues, spec, log=log)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    meta = {"spec": asdict(spec), "build_seconds": round(time.time() - started, 1), "final_sft_loss": losses[-1], "dialogues": len(dialogues)}
    (tmp / "sage_tiny_model.json").write_text(json.dumps(meta, indent=1))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: use theirs
        if not (target / "config.json").is_file():
            raise
    log(f"built the tiny chat model in {time.time() - started:.0f} s (final warm-start loss {losses[-1]:.3f})")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the default tiny chat model (cached) and print its folder.")
    parser.add_argument("--output", default=None, help="folder to write (default: the cache)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for a model this small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(build_tiny_model(args.output))


if __name__ == "__main__":
    main()
