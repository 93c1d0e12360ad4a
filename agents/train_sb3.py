"""`python -m agents.train_sb3`: train a stable-baselines3 PPO strategy agent on the built-in simulator.

    python -m agents.train_sb3                        # a few minutes on 2 CPU cores, then evaluates
    python -m agents.evaluate --agent sb3 --model runs/sb3/model.zip

The agent (`agents.eval.sb3_agent`) sees hashed text features, the emotion bucket and the turn, and
picks one of a fixed set of response plans rendered from templates. PPO learns it through the SB3
adapter of the vectorized environment (`sage_gym.sb3.make_sb3_vec_env`): each step's simulator
calls for all dialogues run concurrently. Training uses SAGE's evaluation rules (initial emotion
40, 10 turns, change clipped to [-10, 10]) on the `train` split with the per-turn `delta` reward
and a discount below 1, so each reply is credited with the change it caused.

Afterwards the model is evaluated with `agents.eval.evaluate` on the `eval` split next to the
reference `random` strategy agent, and the comparison is printed.

| output | what it is |
|---|---|
| `model.zip` | the SB3 model (`PPO.load`) |
| `sb3_agent.json` | the settings the agent needs at evaluation time (max turns), and the training run's settings |
| `eval-sb3/`, `eval-random/` | the two evaluation folders (`report.json`, `summary.md`, plots, transcripts) |
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from agents.cli import run_main
from agents.eval.agent_api import ReferenceAgent
from agents.eval.evaluate import EvalSettings, evaluate
from agents.eval.report import compare_reports
from agents.eval.sb3_agent import PLANS, SB3StrategyAgent, numeric_dialogue
from agents.options import add_options, option
from sage_gym.sb3 import make_sb3_vec_env


@dataclass(frozen=True)
class SB3Config:
    """The run's settings; each is a command-line option (`num_envs` is `--num-envs`) with its help."""

    output: str = option("runs/sb3", "folder for model.zip, sb3_agent.json and the two evaluations")
    scenarios: str = option("train", "training scenarios: a split (train, eval, train-zh, eval-zh) or a JSONL file")
    timesteps: int = option(60_000, "agent replies to train on, over all dialogues")
    num_envs: int = option(16, "dialogues played at once")
    max_turns: int = option(10, "agent replies per dialogue")
    initial_emotion: int = option(40, "the simulated user's starting emotion")
    seed: int = option(0, "seed of the dialogues, the network and the evaluations")
    # PPO
    n_steps: int = option(64, "PPO: transitions per dialogue slot between updates")  # per env: 16 x 64 = 1024 transitions per update
    batch_size: int = option(256, "PPO: transitions per mini-batch")
    n_epochs: int = option(6, "PPO: passes over each rollout")
    learning_rate: float = option(1e-3, "PPO: Adam learning rate")
    gamma: float = option(0.9, "PPO: discount (a dialogue is a few turns: credit a reply with the next few changes)")
    gae_lambda: float = option(0.9, "PPO: GAE lambda")
    ent_coef: float = option(0.01, "PPO: entropy bonus coefficient")
    net_arch: tuple[int, ...] = option((64, 64), "hidden layer sizes of the policy and value networks", type=int, nargs="+")
    # evaluation afterwards
    eval_scenarios: str = option("eval", "scenarios of the evaluation after training (split or JSONL file)")
    evaluate: bool = option(
        True, "do not evaluate the trained agent and the random-strategy agent after training (evaluate: %(default)s)",
        flags=("--no-evaluate",), action="store_false",
    )  # fmt: skip


def train(config: SB3Config, log: Any = print) -> Path:
    """Train PPO, save `model.zip` and `sb3_agent.json` into `config.output`; returns the model path."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # a small MLP: more threads only add overhead (and contend on a busy machine)
    venv = make_sb3_vec_env(
        config.num_envs,
        numeric_dialogue(config.max_turns),
        scenarios=config.scenarios,
        max_turns=config.max_turns,
        initial_emotion=config.initial_emotion,
        reward_mode="delta",
    )
    venv.seed(config.seed)
    model = PPO(
        "MlpPolicy",
        VecMonitor(venv),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        policy_kwargs={"net_arch": list(config.net_arch)},
        seed=config.seed,
        device="cpu",
        verbose=0,
    )
    started = time.time()
    log(f"training PPO for {config.timesteps} steps on {config.num_envs} dialogues at once ({len(PLANS)} response plans)")
    model.learn(total_timesteps=config.timesteps, callback=ProgressLog(log))
    seconds = time.time() - started
    path = out / "model.zip"
    model.save(str(path))
    meta = {"algorithm": "PPO", "max_turns": config.max_turns, "config": asdict(config), "train_seconds": round(seconds, 1)}
    (out / "sb3_agent.json").write_text(json.dumps(meta, indent=1) + "\n")
    venv.close()
    log(f"trained in {seconds:.0f} s; saved {path}")
    return path


class ProgressLog(BaseCallback):
    """Logs the mean final emotion of the most recent training dialogues after each rollout."""

    def __init__(self, log: Any, window: int = 200) -> None:
        super().__init__()
        self.log = log
        self.finals: deque[int] = deque(maxlen=window)

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done and info.get("outcome") not in (None, "error"):  # a failed dialogue is no result
                self.finals.append(info["emotion"])
        return True

    def _on_rollout_end(self) -> None:
        if self.finals:
            mean = sum(self.finals) / len(self.finals)
            self.log(f"  step {self.num_timesteps:>7d}: mean final emotion of the last {len(self.finals)} training dialogues {mean:5.1f}")


def evaluate_against_random(model_path: Path, config: SB3Config, log: Any = print) -> str:
    """Evaluate the trained agent and the reference random-strategy agent on `eval_scenarios`; the comparison table."""
    settings = EvalSettings(scenarios=config.eval_scenarios, max_turns=config.max_turns, initial_emotion=config.initial_emotion, seed=config.seed)
    out = model_path.parent
    evaluate(SB3StrategyAgent(str(model_path)), out / "eval-sb3", settings, overwrite=True)
    evaluate(ReferenceAgent("random"), out / "eval-random", settings, overwrite=True)
    table = compare_reports([out / "eval-sb3", out / "eval-random"])
    log(table)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agents.train_sb3",
        description="Train a stable-baselines3 PPO strategy agent on the built-in simulator, then evaluate it against the random-strategy agent.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_options(parser, SB3Config)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = vars(build_parser().parse_args(argv))
    args["net_arch"] = tuple(args["net_arch"])
    config = SB3Config(**args)
    path = train(config)
    if config.evaluate:
        evaluate_against_random(path, config)
    return path


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m agents.train_sb3"))
