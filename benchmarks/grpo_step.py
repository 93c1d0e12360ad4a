"""Overhead of one GRPO step against the bare model work it contains, side by side.

    python benchmarks/grpo_step.py                 # the embedded tiny model (built and cached on first use)
    python benchmarks/grpo_step.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --groups 8 --group-size 8

Two ratios, each "our code / the bare transformers work on the same tokens" (target: below 1.2):

| | ours | bare |
|---|---|---|
| rollout | `collect_rollouts`: B x G multi-turn dialogues through `SageVectorEnv` (sampling, chat-template deltas, env steps with the built-in simulator, bookkeeping) | `model.generate` on the very same contexts, turn by turn, forced to emit as many tokens as the rollout's longest completion of that turn |
| update | `GRPOTrainer.update`: micro-batches by token budget, chunked selective log-softmax, clipped loss, backward, clipping, AdamW | `model(input_ids, labels=...)` forward + backward on the same micro-batches (full-vocabulary logits and HF's loss) |

Each side is timed after a warm-up run; the best of `--repeats` is reported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPOTrainer
from agents.learn.policy import Policy
from agents.learn.batching import make_micro_batches


class RecordingPolicy(Policy):
    """Remembers each sampling call (contexts and completion lengths) so generate can replay it."""

    calls: list

    def sample(self, contexts, sampling, generator=None, max_new_tokens=None, seeds=None):  # type: ignore[override]
        out = super().sample(contexts, sampling, generator, max_new_tokens, seeds)
        self.calls.append(([list(c) for c in contexts], max(len(c.token_ids) for c in out)))
        return out


def bare_generate(policy: Policy, calls: list, temperature: float) -> float:
    model, pad = policy.base, policy.tokenizer.pad_token_id
    started = time.perf_counter()
    with torch.no_grad():
        for contexts, new_tokens in calls:
            width = max(len(c) for c in contexts)
            ids = torch.full((len(contexts), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, c in enumerate(contexts):
                ids[i, width - len(c) :] = torch.tensor(c)
                mask[i, width - len(c) :] = 1
            model.generate(
                input_ids=ids.to(policy.device), attention_mask=mask.to(policy.device), do_sample=True, temperature=temperature,
                top_p=1.0, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad,
            )
    return time.perf_counter() - started


def bare_forward_backward(policy: Policy, episodes: list, token_budget: int) -> float:
    model, pad = policy.base, policy.tokenizer.pad_token_id
    model.train()
    started = time.perf_counter()
    for micro in make_micro_batches(episodes, list(range(len(episodes))), token_budget, pad):
        micro = micro.to(policy.device)
        labels = micro.input_ids.masked_fill(micro.loss_mask == 0, -100)
        model(input_ids=micro.input_ids, attention_mask=micro.attention_mask, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model (default: the embedded tiny chat model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--groups", type=int, default=4, help="scenarios per step (B)")
    parser.add_argument("--group-size", type=int, default=8, help="G")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--template", default="think", choices=("think", "direct"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            model=args.model, device=args.device, scenarios_per_step=args.groups, group_size=args.group_size, max_turns=args.max_turns,
            max_new_tokens=args.max_new_tokens, template=args.template, output_dir=str(Path(tmp) / "run"), progress=False,
            tensorboard=False, transcripts=False, steps=args.repeats + 1,
        )
        from agents.learn.components import load_policy

        loaded = load_policy(cfg)
        policy = RecordingPolicy(model=loaded.model, tokenizer=loaded.tokenizer, chat=loaded.chat, device=loaded.device)
        policy.calls = []
        trainer = GRPOTrainer(cfg, policy=policy)

        rows = []
        for repeat in range(args.repeats + 1):  # the first round warms up
            policy.calls = []
            started = time.perf_counter()
            batch = trainer.rollout(step=repeat + 1)
            rollout_s = time.perf_counter() - started
            generate_s = bare_generate(policy, policy.calls, cfg.temperature)
            adv = trainer.compute_advantages(batch)
            adv.trainable[:] = True  # time the update on every dialogue, skipped groups or not
            started = time.perf_counter()
            trainer.update(batch, adv, step=repeat + 1)
            update_s = time.perf_counter() - started
            bare_s = bare_forward_backward(policy, batch.episodes, cfg.micro_batch_tokens)
            tokens = sum(len(e) for e in batch.episodes)
            if repeat:
                rows.append((rollout_s, generate_s, update_s, bare_s, batch.sampled_tokens, tokens))
        trainer.close()

    best = min(rows, key=lambda r: r[0] + r[2])
    rollout_s, generate_s, update_s, bare_s, sampled, tokens = best
    device = f"{policy.device}" + (f" ({torch.cuda.get_device_name(policy.device)})" if policy.device.type == "cuda" else f", {torch.get_num_threads()} threads")
    print(f"model {args.model or 'embedded tiny chat model'} on {device}; {args.groups} x {args.group_size} dialogues, "
          f"{args.max_turns} turns, {args.template} template")
    print(f"{'':10s} {'ours (s)':>10s} {'bare (s)':>10s} {'ratio':>7s}   tokens")
    print(f"{'rollout':10s} {rollout_s:10.3f} {generate_s:10.3f} {rollout_s / generate_s:7.2f}   {sampled} sampled ({sampled / rollout_s:.0f}/s)")
    print(f"{'update':10s} {update_s:10.3f} {bare_s:10.3f} {update_s / bare_s:7.2f}   {tokens} trained ({tokens / update_s:.0f}/s)")
    if policy.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(policy.device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
