"""`python -m agents.train_ppo`: multi-turn, token-level PPO with a critic on SageDialogue.

Every option of `python -m agents.train_grpo` works the same here, plus the critic's and GAE's
(--critic head|separate, --critic-model, --critic-lr, --critic-warmup-steps, --critic-backbone-grad,
--vf-coef, --value-clip, --gamma, --lam, --whiten-advantages, --ent-coef). With no arguments it
trains the embedded tiny chat model (built offline on first use and cached) against the
deterministic built-in simulator, on CPU, in a few minutes, and writes to a new folder
runs/ppo/<YYYYmmdd-HHMMSS>/ (runs/ppo/latest points at the newest run):

| file | content |
|---|---|
| `metrics.jsonl` | one line per step: GRPO's metrics (return, emotion, success/failure rates, KL, clip fraction, entropy, grad norm, tokens/s, timings, reply quality, strategies by intention, canaries, held-out eval/score and eval/gap) plus value loss, explained variance, value clip fraction, critic lr and grad norm, mean value and return-to-go |
| `tensorboard/` | the same scalars for TensorBoard |
| `transcripts.jsonl` | every dialogue, with its step, group, sampling and simulator settings |
| `held_out/step-N/`, `held_out.json` | the held-out evaluations (greedy, SAGE settings), as in train_grpo |
| `checkpoints/step-N/` | policy (or LoRA adapter), critic, both optimizers and schedules, RNG states and step; `--resume auto` continues exactly |
| `learning_curve.png` | mean episode return and final emotion per step, with the held-out scores |
| `critic_curve.png` | value loss and explained variance per step |
| `config.json` | the resolved configuration (secrets redacted) |

Examples:

    python -m agents.train_ppo                                    # embedded defaults
    python -m agents.train_ppo --reward-mode final --gamma 1 --lam 1    # RLVER's reward, Monte Carlo advantages
    python -m agents.train_ppo --model Qwen/Qwen2.5-1.5B-Instruct --lora --lr 1e-5 \\
        --critic separate --critic-model Qwen/Qwen2.5-0.5B-Instruct --critic-lr 1e-5 --critic-warmup-steps 5 \\
        --simulator openai --simulator-base-url http://localhost:8000/v1 --simulator-model Qwen2.5-72B-Instruct
    python -m agents.train_ppo --config my_run.yaml --resume auto
    torchrun --nproc-per-node 4 -m agents.train_ppo --parallel ddp ...      # see docs/scaling.md
"""

from __future__ import annotations

import sys

from agents.cli import run_main
from agents.eval.live_policy import paired_gain, play_policy
from agents.learn.config import parse_config
from agents.learn.launch import first_and_last, launch, mean_of
from agents.learn.ppo import PPO, PPOConfig


def main(argv: list[str] | None = None) -> int:
    cfg: PPOConfig = parse_config(argv, PPOConfig, prog="python -m agents.train_ppo", description=__doc__)
    history, dist = launch(cfg, PPO, prog="python -m agents.train_ppo", play_held_out=play_policy, compare_held_out=paired_gain)  # the evaluator plays and judges the held-out check
    if history and dist.is_main:
        first, last = first_and_last(history)
        print(
            f"mean episode return: first {len(first)} steps {mean_of(first, 'return'):+.3f}, last {len(last)} steps {mean_of(last, 'return'):+.3f}; "
            f"explained variance of the critic in the last steps: {mean_of(last, 'explained_variance'):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m agents.train_ppo"))
