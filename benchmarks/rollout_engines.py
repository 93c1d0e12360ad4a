"""The two rollout engines side by side: the policy's own sampler (`hf`) against the colocated vLLM engine.

    python benchmarks/rollout_engines.py                                        # tiny model, CPU: hf only
    python benchmarks/rollout_engines.py --size qwen2-0.5b --device cuda --contexts 256
    python benchmarks/rollout_engines.py --size qwen2-7b --device cuda --contexts 256 --max-new-tokens 128

Models have a real architecture's shapes and random weights (no download: the tokenizer is the
embedded one built in code, so the vocabulary is small). Both engines sample one turn for the
same opening prompts (the users' first messages of the train split) with the same per-dialogue
seeds; each side is timed after a warm-up, best of `--repeats`. Printed: sampled tokens per
second of each engine and their ratio, the largest and mean gap between the engine's log-probs
and the policy's recomputation (the `logprob_mismatch` a training run would log), and the peak
GPU memory. Without vLLM or a GPU only the hf side runs, and the line says why.
"""

from __future__ import annotations

import argparse
import time

import torch

from agents.learn.tiny_model import TinyModelSpec, system_prompts, tiny_random_model, tokenizer_corpus, train_tokenizer
from agents.policy.hf_engine import Sampling
from agents.policy.model import Policy
from sage_gym.scenarios import load_split

SIZES = {  # Qwen2 shapes (hidden, layers, heads, kv heads, MLP)
    "tiny": TinyModelSpec(),
    "qwen2-0.5b": TinyModelSpec(hidden_size=896, layers=24, heads=14, kv_heads=2, intermediate_size=4864),
    "qwen2-1.5b": TinyModelSpec(hidden_size=1536, layers=28, heads=12, kv_heads=2, intermediate_size=8960),
    "qwen2-7b": TinyModelSpec(hidden_size=3584, layers=28, heads=28, kv_heads=4, intermediate_size=18944),
}


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: kernels, caches, CUDA graphs
    best, out = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, out


def logprob_gap(policy: Policy, contexts: list[list[int]], completions: list, temperature: float) -> tuple[float, float]:
    """(max, mean) |engine log-prob - the policy's recomputation| over all sampled tokens."""
    gaps = []
    with torch.no_grad():
        for context, done in zip(contexts, completions, strict=True):
            ids = torch.tensor([[*context, *done.token_ids]], device=policy.device)
            score = torch.zeros_like(ids)
            score[0, len(context) :] = 1
            lp = policy.token_logprobs(ids, torch.ones_like(ids), score, temperature).logprobs[0, len(context) :].cpu()
            gaps.append((lp - torch.tensor(done.logprobs)).abs())
    flat = torch.cat(gaps)
    return float(flat.max()), float(flat.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--contexts", type=int, default=32, help="dialogues sampled at once")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tokenizer = train_tokenizer(tokenizer_corpus([]), 1024)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    model = tiny_random_model(tokenizer, SIZES[args.size], seed=0).to(dtype)
    policy = Policy.from_model(model, tokenizer, system_prompt=system_prompts()["direct"], device=args.device)
    scenarios = list(load_split("train"))
    contexts = [policy.chat.prompt_ids(scenarios[i % len(scenarios)].first_message) for i in range(args.contexts)]
    sampling = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
    seeds = list(range(args.contexts))
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.size}: {params / 1e6:.0f}M parameters, {dtype}, {args.device}; {args.contexts} contexts, up to {args.max_new_tokens} new tokens")

    hf_seconds, hf_out = timed(lambda: policy.sample(contexts, sampling, seeds=seeds), args.repeats)
    hf_tokens = sum(len(c.token_ids) for c in hf_out)
    print(f"hf:   {hf_tokens} tokens in {hf_seconds:.2f} s = {hf_tokens / hf_seconds:,.0f} tokens/s")

    try:
        from agents.learn.vllm_engine import build_rollout_engine

        engine = build_rollout_engine("vllm", policy, gpu_memory_utilization=args.gpu_memory_utilization)
    except (ImportError, RuntimeError) as error:
        print(f"vllm: not measured ({error})")
        return
    try:
        vllm_seconds, vllm_out = timed(lambda: engine.sample(contexts, sampling, seeds=seeds), args.repeats)
        vllm_tokens = sum(len(c.token_ids) for c in vllm_out)
        worst, mean = logprob_gap(policy, contexts, vllm_out, sampling.logprob_temperature)
        print(f"vllm: {vllm_tokens} tokens in {vllm_seconds:.2f} s = {vllm_tokens / vllm_seconds:,.0f} tokens/s")
        print(f"vllm / hf tokens per second: {(vllm_tokens / vllm_seconds) / (hf_tokens / hf_seconds):.1f}x")
        print(f"|vllm log-prob - policy recomputation|: max {worst:.4f}, mean {mean:.5f}")
        if torch.cuda.is_available():
            print(f"peak GPU memory allocated by torch: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
