"""Overhead of one GRPO step against the bare model work it contains, side by side.

    python benchmarks/grpo_step.py                 # the embedded tiny model (built and cached on first use)
    python benchmarks/grpo_step.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --groups 8 --group-size 8

Three ratios, each "our code / the bare transformers work on the same tokens" (target: 1.1 at most):

| | ours | bare |
|---|---|---|
| sampler | `Policy.sample`, the time `collect_rollouts` spends in it | `model.generate` on the very same contexts, turn by turn, with as many new tokens |
| rollout | `collect_rollouts`: B x G multi-turn dialogues through `SageVectorEnv` (sampling, chat-template deltas, env steps with the built-in simulator, bookkeeping) | the same `model.generate` calls |
| update | `Trainer.update` (GRPO): micro-batches by token budget, chunked selective log-softmax, clipped loss, backward, clipping, AdamW | `model(input_ids, labels=...)` forward + backward on the same micro-batches (full-vocabulary logits and HF's loss) |

Both sides produce the same tokens: our sampler is run without a stop token, so that every
turn runs to `--max-new-tokens` as `generate` with `min_new_tokens` does (a real run stops rows
early, which would flatter us). Next to each time: the peak memory of that phase (RSS of the
process sampled every 10 ms on CPU; `torch.cuda.max_memory_allocated` on a GPU).
Each side is timed after a warm-up run; the best of `--repeats` is reported.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil
import torch

from agents.learn.batching import make_micro_batches
from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.learn.trainer import Trainer
from agents.policy.hf_engine import left_padded
from agents.policy.model import Policy


class RecordingPolicy(Policy):
    """Remembers each sampling call (contexts and completion lengths) so generate can replay it."""

    calls: list

    def sample(self, contexts, sampling, generator=None, max_new_tokens=None, seeds=None):  # type: ignore[override]
        out = super().sample(contexts, sampling, generator, max_new_tokens, seeds)
        self.calls.append(([list(c) for c in contexts], max(len(c.token_ids) for c in out)))
        return out


class PeakMemory:
    """Peak memory while the block runs: bytes allocated by torch on a GPU, the process's RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        process = psutil.Process()
        while True:
            self.peak = max(self.peak, process.memory_info().rss)
            if self._stop.wait(0.01):
                return

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss)


def bare_generate(policy: Policy, calls: list, temperature: float) -> float:
    model, pad = policy.base, policy.tokenizer.pad_token_id
    model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for contexts, new_tokens in calls:
            ids, mask = left_padded(contexts, pad)
            model.generate(
                input_ids=ids.to(policy.device), attention_mask=mask.to(policy.device), do_sample=True, temperature=temperature,
                top_p=1.0, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad,
            )
    synchronize(policy.device)
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
    synchronize(policy.device)
    return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        cfg = TrainConfig.from_options(
            model=args.model, device=args.device, scenarios_per_step=args.groups, group_size=args.group_size, max_turns=args.max_turns,
            max_new_tokens=args.max_new_tokens, template=args.template, output_dir=str(Path(tmp) / "run"), progress=False,
            tensorboard=False, transcripts=False, steps=args.repeats + 1,
        )
        from agents.learn.components import load_policy

        loaded = load_policy(cfg)
        policy = RecordingPolicy(model=loaded.model, tokenizer=loaded.tokenizer, chat=loaded.chat, device=loaded.device)
        policy.chat.stop_ids = ()  # every turn runs to the token budget, as generate's min_new_tokens makes it
        policy.calls = []
        trainer = Trainer(cfg, algorithm=GRPO, policy=policy)

        rows = []
        for repeat in range(args.repeats + 1):  # the first round warms up
            policy.calls = []
            with PeakMemory(policy.device) as rollout_mem:
                started = time.perf_counter()
                batch = trainer.rollout(step=repeat + 1)
                synchronize(policy.device)
                rollout_s = time.perf_counter() - started
            with PeakMemory(policy.device) as generate_mem:
                generate_s = bare_generate(policy, policy.calls, cfg.rollout.temperature)
            adv = trainer.compute_advantages(batch)
            adv.trainable[:] = True  # time the update on every dialogue, skipped groups or not
            with PeakMemory(policy.device) as update_mem:
                started = time.perf_counter()
                trainer.update(batch, adv, step=repeat + 1)
                synchronize(policy.device)
                update_s = time.perf_counter() - started
            with PeakMemory(policy.device) as bare_mem:
                bare_s = bare_forward_backward(policy, batch.episodes, cfg.optimizer.micro_batch_tokens)
            tokens = sum(len(e) for e in batch.episodes)
            bare_sampled = sum(len(contexts) * new for contexts, new in policy.calls)
            if bare_sampled != batch.sampled_tokens:
                raise SystemExit(f"the sides sampled different numbers of tokens: ours {batch.sampled_tokens}, bare {bare_sampled}")
            if repeat:
                rows.append({
                    "rollout": rollout_s, "sampler": batch.generate_seconds, "generate": generate_s, "update": update_s, "bare": bare_s,
                    "sampled": batch.sampled_tokens, "tokens": tokens, "rollout_mem": rollout_mem.peak, "generate_mem": generate_mem.peak,
                    "update_mem": update_mem.peak, "bare_mem": bare_mem.peak,
                })
        trainer.close()

    best = min(rows, key=lambda r: r["rollout"] + r["update"])
    sampled, tokens = best["sampled"], best["tokens"]
    device = f"{policy.device}" + (f" ({torch.cuda.get_device_name(policy.device)})" if policy.device.type == "cuda" else f", {torch.get_num_threads()} threads")
    memory = "peak GPU memory allocated" if policy.device.type == "cuda" else "peak RSS"
    gib = 2**30
    print(f"model {args.model or 'embedded tiny chat model'} on {device}; {args.groups} x {args.group_size} dialogues, "
          f"{args.max_turns} turns, {args.template} template, every turn {args.max_new_tokens} tokens on both sides")
    print(f"{'':10s} {'ours (s)':>10s} {'bare (s)':>10s} {'ratio':>7s}   {memory + ' ours / bare (GiB)':>34s}   tokens")
    print(f"{'sampler':10s} {best['sampler']:10.3f} {best['generate']:10.3f} {best['sampler'] / best['generate']:7.2f}   {'':>34s}   "
          f"{sampled} sampled ({sampled / best['sampler']:.0f}/s)")
    print(f"{'rollout':10s} {best['rollout']:10.3f} {best['generate']:10.3f} {best['rollout'] / best['generate']:7.2f}   "
          f"{best['rollout_mem'] / gib:16.2f} / {best['generate_mem'] / gib:<15.2f}   {sampled} sampled ({sampled / best['rollout']:.0f}/s)")
    print(f"{'update':10s} {best['update']:10.3f} {best['bare']:10.3f} {best['update'] / best['bare']:7.2f}   "
          f"{best['update_mem'] / gib:16.2f} / {best['bare_mem'] / gib:<15.2f}   {tokens} trained ({tokens / best['update']:.0f}/s)")

if __name__ == "__main__":
    main()
