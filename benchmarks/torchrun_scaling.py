"""One process against N torchrun ranks on the same global batch, side by side.

    python benchmarks/torchrun_scaling.py                                  # CPU: 2 gloo ranks, tiny model
    python benchmarks/torchrun_scaling.py --ranks 8 --device cuda --size qwen2-0.5b --scenarios 16

Each run is `python -m agents.train_grpo` on a model with random weights saved to a temporary
folder (real shapes with `--size`, no download), the built-in simulator and the same options;
only the launcher differs: one process, then `torchrun --nproc-per-node N` with `--parallel ddp`
and with `--parallel fsdp2`. Printed per run: the mean seconds of a step (rollout and update,
from `metrics.jsonl`, the first step left out as warm-up), the speed-up over one process (ideal:
N, when N devices are free) and whether the runs trained on the same dialogues (the same mean
return at every step: they should, up to floating-point noise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agents.learn.tiny_model import tiny_random_model, tokenizer_corpus, train_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from rollout_engines import SIZES  # noqa: E402  (the same model shapes)


def train(launcher: list[str], args: list[str], output: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([*launcher, "-m", "agents.train_grpo", *args, "--output-dir", str(output)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} failed:\n{result.stderr[-4000:]}")
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--scenarios", type=int, default=4, help="scenarios per step (a multiple of --ranks)")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        tokenizer = train_tokenizer(tokenizer_corpus([]), 1024)
        model = tiny_random_model(tokenizer, SIZES[args.size], seed=0)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(folder, safe_serialization=True)
        del model
        tokenizer.save_pretrained(folder)
        options = [
            "--model", str(folder), "--device", args.device, "--steps", str(args.steps), "--scenarios-per-step", str(args.scenarios),
            "--group-size", str(args.group_size), "--max-turns", str(args.max_turns), "--max-new-tokens", str(args.max_new_tokens),
            "--no-progress", "--no-tensorboard", "--no-transcripts", "--save-every", "0",
        ]  # fmt: skip
        if args.device == "cpu":
            options += ["--threads", "1"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}"]
        runs = {
            "1 process": train([sys.executable], options, Path(tmp) / "one"),
            f"{args.ranks} ranks, ddp": train(torchrun, [*options, "--parallel", "ddp"], Path(tmp) / "ddp"),
            f"{args.ranks} ranks, fsdp2": train(torchrun, [*options, "--parallel", "fsdp2"], Path(tmp) / "fsdp2"),
        }
    print(f"{args.size} ({params / 1e6:.1f}M parameters, random weights), {args.device}, {args.scenarios} x {args.group_size} dialogues a step, {args.steps} steps")
    base = mean(runs["1 process"][1:], "step_seconds")
    returns = [r["return"] for r in runs["1 process"]]
    print(f"{'run':<18} {'step s':>8} {'rollout s':>10} {'update s':>9} {'speed-up':>9}  same dialogues")
    for name, rows in runs.items():
        timed = rows[1:]
        same = all(abs(a - b) < 1e-6 for a, b in zip(returns, [r["return"] for r in rows], strict=True))
        print(
            f"{name:<18} {mean(timed, 'step_seconds'):>8.2f} {mean(timed, 'rollout_seconds'):>10.2f} {mean(timed, 'update_seconds'):>9.2f} "
            f"{base / mean(timed, 'step_seconds'):>8.2f}x  {'yes' if same else 'no'}"
        )


if __name__ == "__main__":
    main()
