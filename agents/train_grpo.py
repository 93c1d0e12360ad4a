"""`python -m agents.train_grpo`: multi-turn GRPO on SageDialogue.

With no arguments it trains the embedded tiny chat model (built offline on first use and cached)
against the deterministic built-in simulator, on CPU, in a few minutes, and writes to a new folder runs/grpo/<YYYYmmdd-HHMMSS>/ (runs/grpo/latest points at
the newest run; an --output-dir that holds a run already is refused unless --resume auto or
--overwrite):

| file | content |
|---|---|
| `metrics.jsonl` | one line per step: return, emotion, success/failure rates, KL, clip fraction, entropy, grad norm, tokens/s, rollout vs update time, dropped errors, skipped groups; what the replies look like (salad_rate, repetition_rate, strategy/<intention>/<strategy>, canary/*); on evaluated steps eval/score, eval/train_score, eval/gap (step 0: the untrained policy) |
| `tensorboard/` | the same scalars for TensorBoard |
| `transcripts.jsonl` | every dialogue, with its step, group, sampling and simulator settings; a resume never writes one twice |
| `checkpoints/step-N/` | model or LoRA adapter, optimizer, scheduler, RNG states and step; `--resume auto` continues exactly |
| `held_out/step-N/`, `held_out.json` | the held-out evaluations (greedy, SAGE settings): before the first step, every --eval-every steps, after the last |
| `learning_curve.png` | mean episode return and final emotion per step, with the held-out scores |
| `config.json` | the resolved configuration (secrets redacted) |

At the end it prints what the policy learned: return, emotion, repetition and salad rates of the
first and last steps, the share of each strategy by the user's hidden intention, and the held-out
score of the trained policy next to the untrained one's, with their paired difference on the
unseen users and whether it is beyond the noise (docs/training.md).

Examples:

    python -m agents.train_grpo                                   # embedded defaults
    python -m agents.train_grpo --steps 200 --group-size 8 --scenarios-per-step 8
    python -m agents.train_grpo --model Qwen/Qwen2.5-0.5B-Instruct --lora --lr 1e-5 \\
        --simulator openai --simulator-base-url http://localhost:8000/v1 --simulator-model Qwen2.5-72B-Instruct
    python -m agents.train_grpo --resume auto --steps 100                  # continue the newest run to step 100
    python -m agents.train_grpo --config my_run.yaml --output-dir runs/my-run --resume auto
    torchrun --nproc-per-node 8 -m agents.train_grpo --model Qwen/Qwen2.5-7B-Instruct --parallel fsdp2 ...
"""

from __future__ import annotations

import sys

from agents.cli import run_main
from agents.eval.live_policy import paired_gain, play_policy
from agents.learn.config import TrainConfig, parse_config
from agents.learn.grpo import GRPO
from agents.learn.launch import first_and_last, launch, mean_of


def main(argv: list[str] | None = None) -> int:
    cfg: TrainConfig = parse_config(argv, TrainConfig, prog="python -m agents.train_grpo", description=__doc__)
    history, dist = launch(cfg, GRPO, prog="python -m agents.train_grpo", play_held_out=play_policy, compare_held_out=paired_gain)  # the evaluator plays and judges the held-out check
    if history and dist.is_main:
        first, last = first_and_last(history)
        print(f"mean episode return: first {len(first)} steps {mean_of(first, 'return'):+.3f}, last {len(last)} steps {mean_of(last, 'return'):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m agents.train_grpo"))
