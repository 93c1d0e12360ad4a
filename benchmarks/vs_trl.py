"""Our GRPO step against TRL's `GRPOTrainer` on the same work, side by side in one run.

    pip install -e ".[bench]"                       # TRL: a benchmark extra, never a runtime dependency
    python benchmarks/vs_trl.py                     # the embedded tiny chat model, 1 CPU thread
    python benchmarks/vs_trl.py --size qwen2-0.5b-2l --steps 6
    python benchmarks/vs_trl.py --size qwen2-0.5b --device cuda --steps 10 --threads 0
    python benchmarks/vs_trl.py --size smollm2-135m --prompts 1 --max-new-tokens 32 --steps 3 --repeats 2   # a real chat model

The same model (same weights, loaded from the same folder), the same opening prompts (system
prompt + the users' first messages of the training scenarios, through the same chat template),
the same group size, token budget, learning rate, temperature and clipping, beta 0 (no reference
model) and one optimizer step per generation batch on each side. Every completion is forced to
the full token budget on both sides (TRL: `min_new_tokens`; ours: no stop token), so both sample
and train exactly `prompts x group size x max new tokens` completion tokens per step.

What is left different is each library's own: ours plays one turn of `SageDialogue` with the
built-in simulator (its time is in `env`), TRL scores completions with a cheap reward function.

Each side runs `--steps` steps per repeat; sides alternate (TRL, ours, TRL, ours, ...) so that a
busy machine slows both alike. The first step of every run is a warm-up and is left out; a
repeat's figure is the median of its steps, and the printed figure the median over repeats.
Printed per side: seconds per step, and its split into generation (the sampler: `generate` for
TRL, `Policy.sample` for ours) and the rest of the rollout (rewards, env) and the update (log-probs,
loss, backward, optimizer); then ours / TRL.

Shapes (`--size`; random weights, no download, the embedded tokenizer's ids on both sides):
`tiny` is the embedded chat model (built and cached on first use); `qwen2-0.5b-2l` is Qwen2-0.5B's
width and 151,936-token vocabulary with 2 layers, where the work per token is dominated by the
vocabulary as it is on real models; `qwen2-0.5b` and `qwen2-1.5b` are the whole models (GPU).
A named offline model (`smollm2-135m`: SmolLM2-135M-Instruct, its weights and its own tokenizer
and chat template; see agents/policy/models.py) is the real pretrained model, converted once from
its package's GGUF file and loaded on both sides from the same cached folder.
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
from pathlib import Path

import torch

from agents.learn.components import load_policy, system_prompt
from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.learn.tiny_model import TinyModelSpec, build_tiny_model, limited_scenarios
from agents.learn.trainer import Trainer

QWEN2_VOCAB = 151_936
SIZES = {  # Qwen2 shapes: the tied 151,936-token vocabulary of the real models
    "qwen2-0.5b-2l": TinyModelSpec(vocab_size=QWEN2_VOCAB, hidden_size=896, layers=2, heads=14, kv_heads=2, intermediate_size=4864),
    "qwen2-0.5b": TinyModelSpec(vocab_size=QWEN2_VOCAB, hidden_size=896, layers=24, heads=14, kv_heads=2, intermediate_size=4864),
    "qwen2-1.5b": TinyModelSpec(vocab_size=QWEN2_VOCAB, hidden_size=1536, layers=28, heads=12, kv_heads=2, intermediate_size=8960),
}


def model_folder(size: str, workdir: Path) -> Path:
    """A folder holding the model and its tokenizer: a named model's converted weights, or the embedded
    tokenizer with the tiny model's weights or random weights of `size`."""
    from agents.policy.models import MODELS

    if size in MODELS:
        from agents.policy.loading import convert_gguf

        return convert_gguf(MODELS[size].locate())  # converted once, then read from the cache
    tiny = build_tiny_model(log=lambda line: print(line, file=sys.stderr))
    if size == "tiny":
        return tiny
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    spec = SIZES[size]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    config = Qwen2Config(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        max_position_embeddings=4096, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).float()
    folder = workdir / size
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def opening_prompts(template: str, limit: int) -> list[list[dict[str, str]]]:
    """System prompt + first user message of the first `limit` training scenarios: what our rollout opens with."""
    return [
        [{"role": "system", "content": system_prompt(template)}, {"role": "user", "content": s.first_message}]
        for s in limited_scenarios("train", limit)
    ]


def check_same_prompt_ids(folder: Path, args: argparse.Namespace) -> None:
    """TRL renders each prompt with the chat template and tokenizes it; ours grows it from token pieces: same ids."""
    from transformers import AutoTokenizer

    from agents.policy.chat_format import ChatFormat

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    chat = ChatFormat(tokenizer, system_prompt(args.template))
    for messages in opening_prompts(args.template, args.scenarios):
        theirs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        if list(theirs) != chat.prompt_ids(messages[1]["content"]):
            raise SystemExit(f"TRL and ours tokenize the prompt {messages[1]['content'][:40]!r} differently: not the same work")


class Timer:
    """Accumulates the seconds spent in wrapped methods of an object, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, obj: object, method: str, name: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(obj, method, timed)

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


def run_trl(folder: Path, args: argparse.Namespace, workdir: Path) -> list[dict[str, float]]:
    """`args.steps` steps of TRL's GRPOTrainer; per step: step, generate, rollout and update seconds."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer as TRLGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    prompts = opening_prompts(args.template, args.scenarios)
    dataset = Dataset.from_dict({"prompt": prompts})
    batch = args.prompts * args.group_size

    def reward(completions, **kwargs):  # cheap and text-dependent, so that advantages are not all zero
        return [float(len(set(c[0]["content"].split()))) for c in completions]

    config = GRPOConfig(
        output_dir=str(workdir / "trl"), use_cpu=args.device == "cpu", seed=args.seed, max_steps=args.steps,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=args.group_size,
        max_completion_length=args.max_new_tokens, generation_kwargs={"min_new_tokens": args.max_new_tokens},
        temperature=1.0, top_p=1.0, top_k=0, learning_rate=args.lr, beta=0.0, epsilon=0.2, epsilon_high=0.28,
        max_grad_norm=1.0, warmup_steps=0, lr_scheduler_type="constant", weight_decay=0.0,
        mask_truncated_completions=False, logging_steps=10**6, report_to="none", save_strategy="no", disable_tqdm=True,
        bf16=args.device != "cpu", dataloader_num_workers=0,
    )
    timer, steps = Timer(), []

    class StepClock(TrainerCallback):
        last = None

        def on_step_begin(self, *a, **k):
            self.last = self.last or time.perf_counter()

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            if args.threads and torch.get_num_threads() != args.threads:
                raise SystemExit(f"TRL runs on {torch.get_num_threads()} threads, not {args.threads}: not the same machine share")
            split = timer.take()
            steps.append({"step": now - self.last, "generate": split.get("generate", 0.0), "rollout": split.get("rollout", 0.0)})
            steps[-1]["update"] = steps[-1]["step"] - steps[-1]["rollout"]
            self.last = now

    trainer = TRLGRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[StepClock()])
    timer.wrap(trainer, "_generate_single_turn", "generate")
    timer.wrap(trainer, "_generate_and_score_completions", "rollout")
    trainer.train()
    return steps


def run_ours(folder: Path | None, args: argparse.Namespace, workdir: Path) -> list[dict[str, float]]:
    """`args.steps` steps of our GRPO trainer (one turn of SageDialogue each); per step as for TRL."""
    cfg = TrainConfig.from_options(
        model=str(folder) if folder is not None else None, device=args.device, scenarios_per_step=args.prompts, group_size=args.group_size,
        max_turns=1, max_new_tokens=args.max_new_tokens, template=args.template, scenario_limit=args.scenarios, lr=args.lr,
        beta=0.0, clip_low=0.2, clip_high=0.28, max_grad_norm=1.0, warmup_steps=0, minibatches=1, epochs=1, seed=args.seed,
        steps=args.steps, output_dir=str(workdir / "ours"), progress=False, tensorboard=False, transcripts=False, save_every=0,
        threads=args.threads or None,
    )
    policy = load_policy(cfg, log=lambda line: None)
    policy.chat.stop_ids = ()  # every completion runs to the budget, as TRL's min_new_tokens makes it
    trainer = Trainer(cfg, algorithm=GRPO, policy=policy, log=lambda line: None)
    steps = []
    try:
        for _ in range(args.steps):
            started = time.perf_counter()
            metrics = trainer.train_step()
            steps.append({
                "step": time.perf_counter() - started, "generate": metrics["generate_seconds"], "rollout": metrics["rollout_seconds"],
                "update": metrics["update_seconds"], "sampled": metrics["sampled_tokens"],
                "skipped_groups": metrics["skipped_groups"], "groups": metrics["groups"],
            })
    finally:
        trainer.close()
    expected = args.prompts * args.group_size * args.max_new_tokens
    if any(s["sampled"] != expected for s in steps):
        raise SystemExit(f"ours sampled {[s['sampled'] for s in steps]} tokens per step, expected {expected}: not the same work as TRL")
    return steps


def median_split(runs: list[list[dict[str, float]]]) -> dict[str, float]:
    """Median over repeats of each repeat's median over its steps (the first step of a run is warm-up)."""
    keys = ("step", "generate", "rollout", "update")
    return {k: statistics.median(statistics.median(s[k] for s in run[1:]) for run in runs) for k in keys}


def main() -> None:
    from agents.policy.models import MODELS  # the named offline models, also taken as sizes

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", *SIZES, *MODELS], default="tiny", help="a shape of random weights, or a named offline model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=4, help="prompts (scenarios) per step")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20, help="steps per run (the first is warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--scenarios", type=int, default=16, help="the prompts cycle over the first N training scenarios")
    parser.add_argument("--template", default="direct", choices=("think", "direct"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import trl
    except ImportError:
        raise SystemExit('TRL is not installed: pip install -e ".[bench]" (trl==1.16.0)') from None

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        folder = model_folder(args.size, workdir)
        check_same_prompt_ids(folder, args)
        runs: dict[str, list] = {"trl": [], "ours": []}
        for repeat in range(args.repeats):
            for side in ("trl", "ours"):
                started = time.perf_counter()
                steps = run_trl(folder, args, workdir / f"{side}{repeat}") if side == "trl" else run_ours(folder, args, workdir / f"{side}{repeat}")
                runs[side].append(steps)
                print(f"repeat {repeat + 1}/{args.repeats} {side:4s}: {time.perf_counter() - started:6.1f} s, "
                      f"median step {statistics.median(s['step'] for s in steps[1:]):.3f} s", file=sys.stderr, flush=True)

    trl_s, ours_s = median_split(runs["trl"]), median_split(runs["ours"])
    threads = f"{torch.get_num_threads()} CPU thread(s)" if args.device == "cpu" else args.device
    tokens = args.prompts * args.group_size * args.max_new_tokens
    print(f"{args.size} on {threads}: {args.prompts} prompts x {args.group_size} completions x {args.max_new_tokens} tokens "
          f"({tokens} sampled per step), {args.steps} steps x {args.repeats} repeats, medians; trl {trl.__version__}")
    print(f"{'':10s} {'TRL s':>8s} {'ours s':>8s} {'ours/TRL':>9s}")
    for key, label in (("step", "step"), ("generate", "generation"), ("update", "update")):
        print(f"{label:10s} {trl_s[key]:8.3f} {ours_s[key]:8.3f} {ours_s[key] / trl_s[key]:9.2f}")
    print(f"{'per token':10s} {1e3 * trl_s['step'] / tokens:7.2f}ms {1e3 * ours_s['step'] / tokens:7.2f}ms")
    per_repeat = [statistics.median(s["step"] for s in o[1:]) / statistics.median(s["step"] for s in t[1:]) for t, o in zip(runs["trl"], runs["ours"], strict=True)]
    print(f"ratio per repeat (ours / TRL, the run just before): {', '.join(f'{r:.2f}' for r in per_repeat)}")
    print(f"ratio (whole step, ours / TRL): {ours_s['step'] / trl_s['step']:.2f}")
    timed_steps = [s for run in runs["ours"] for s in run[1:]]
    skipped, groups = sum(s["skipped_groups"] for s in timed_steps), sum(s["groups"] for s in timed_steps)
    if skipped:  # ours leaves out groups whose completions all scored alike; TRL trains them at zero advantage
        print(f"ours skipped {skipped:.0f} of {groups:.0f} groups in the timed steps (no reward spread), which TRL trains at zero advantage")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "trl": trl_s, "ours": ours_s, "ratio": ours_s["step"] / trl_s["step"], "per_repeat": per_repeat, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
