"""`python -m agents.train_grpo`: multi-turn GRPO on SageDialogue.

With no arguments it trains the embedded tiny chat model (built offline on first use and cached)
against the deterministic built-in simulator, on CPU, in a few minutes, and writes to runs/grpo/:

| file | content |
|---|---|
| `metrics.jsonl` | one line per step: return, emotion, success/failure rates, KL, clip fraction, entropy, grad norm, tokens/s, rollout vs update time, dropped errors, skipped groups |
| `tensorboard/` | the same scalars for TensorBoard |
| `transcripts.jsonl` | every dialogue, with its sampling and simulator settings (the env's transcript) |
| `checkpoints/step-N/` | model or LoRA adapter, optimizer, scheduler, RNG states and step; `--resume auto` continues exactly |
| `learning_curve.png` | mean episode return per step |
| `config.json` | the resolved configuration |

Examples:

    python -m agents.train_grpo                                   # embedded defaults
    python -m agents.train_grpo --steps 200 --group-size 8 --scenarios-per-step 8
    python -m agents.train_grpo --model Qwen/Qwen2.5-0.5B-Instruct --lora --lr 1e-5 \\
        --simulator openai --simulator-base-url http://localhost:8000/v1 --simulator-model Qwen2.5-72B-Instruct
    python -m agents.train_grpo --config my_run.yaml --resume auto
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agents.config import TrainConfig, parse_config
from agents.grpo import GRPOTrainer


def main(argv: list[str] | None = None) -> int:
    cfg: TrainConfig = parse_config(argv, TrainConfig, prog="python -m agents.train_grpo", description=__doc__)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one to watch
    output = Path(cfg.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    trainer = GRPOTrainer(cfg)
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    if history:
        first, last = history[: max(1, len(history) // 5)], history[-max(1, len(history) // 5) :]
        mean = lambda rows: sum(r["return"] for r in rows) / len(rows)  # noqa: E731
        print(f"mean episode return: first {len(first)} steps {mean(first):+.3f}, last {len(last)} steps {mean(last):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
