"""The run around an algorithm: set-up, resume, the step loop, metrics, checkpoints.

`Trainer.fit()` trains `cfg.run.steps` steps. Each step is

    batch = rollout(step)                              agents/learn/rollout.py
    advantages = algorithm.advantages(batch)           GRPO: agents/learn/grpo.py, PPO: agents/learn/ppo.py
    metrics = algorithm.update(batch, advantages, step)    both through agents/learn/update.py
    engine.sync_weights(policy)                        the next rollout samples from the new weights

and the trainer adds the rollout's metrics (returns, emotions, and what the replies look like:
agents/learn/reply_metrics.py), writes the step's transcripts, reduces the metrics over ranks and
writes them. Before the first step, every `--eval-every` steps and after the last, it evaluates the
policy on held-out users (agents/learn/held_out_users.py) with the `play_held_out` it is given (the
training commands give `agents.eval.live_policy.play_policy`: the learner does not import the evaluator). What the
trainer owns is the same for every algorithm: the policy (loaded, resumed, wrapped for torchrun),
the rollout engine, the envs, the metrics writer and the checkpoints. What an `Algorithm` owns is
its own: GRPO its KL reference and the policy's optimizer, PPO those and a critic. The algorithm
is an argument (`Trainer(cfg, algorithm=GRPO)`), and it knows nothing of ranks: the trainer's
set-up wraps the policy for torchrun, and the algorithm's own models go through the same
wrappers (`Run.trained`, `Run.frozen`).

Set-up runs in an order that matters for resuming exactly: models copied from the *initial*
policy first (the KL reference, a separate critic), then the checkpoint's weights, then the
torchrun wrappers, then the optimizers and their checkpoint state.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from agents.cli import UsageError
from agents.learn.checkpoint import find_checkpoint, load_trainer_state, save_checkpoint
from agents.learn.components import check_model_paths, load_policy, make_envs, simulator_kwargs
from agents.learn.config import TrainConfig
from agents.learn.distributed import Distributed, full_model_state, is_sharded, rank_device
from agents.learn.grpo import GRPO
from agents.learn.held_out_users import CompareReports, HeldOutSettings, PlayPolicy, evaluate_policy, held_out_line
from agents.learn.metrics import MetricSums, MetricsWriter, plot_learning_curve, read_metrics
from agents.learn.ppo import PPO
from agents.learn.reply_metrics import add_reply_metrics, strategy_table
from agents.learn.rollout import RolloutBatch, SimulatorFailed, collect_rollouts, one_line
from agents.learn.seeds import Stream, stream_seed
from agents.learn.transcripts import drop_after, write_transcripts
from agents.learn.update import Run
from agents.learn.vllm_engine import build_rollout_engine
from agents.policy.hf_engine import Sampling
from agents.policy.loading import resolve_dtype
from agents.policy.model import Policy
from agents.policy.run_folder import CONFIG, check_same_config, clear_folder, default_root, new_run_folder, planned_folder


class Algorithm(Protocol):
    """A learning algorithm on a `Run` (`agents.learn.grpo.GRPO`, `agents.learn.ppo.PPO`): built with
    `(run, checkpoint state or None)` before the policy's checkpoint weights are loaded, then
    `prepare`d once the policy is wrapped."""

    name: str
    min_group_size: int

    @staticmethod
    def check(cfg: TrainConfig) -> None: ...

    def __init__(self, run: Run, state: dict[str, Any] | None) -> None: ...

    def prepare(self, state: dict[str, Any] | None) -> None: ...

    def advantages(self, batch: RolloutBatch) -> Any: ...

    def update(self, batch: RolloutBatch, advantages: Any, step: int) -> MetricSums: ...

    def state(self) -> dict[str, Any]: ...

    def plots(self, output_dir: Path) -> list[Path]: ...


SUMMED = ("dropped_errors", "overlong", "skipped_groups", "groups", "sampled_tokens", "update_tokens")  # totals, not means


class Trainer:
    """Owns a run: `fit()` trains `cfg.run.steps` steps of `algorithm` (resuming if asked), logging and saving.

    `Trainer(cfg, algorithm=GRPO)` or `Trainer(cfg, algorithm=PPO)`; `dist` is this process's place in
    a torchrun job (default: a single process), `policy` a policy to train as it is (default: the one
    `cfg` names, loaded here), `play_held_out` what plays the held-out check (none: no check),
    `compare_held_out` what pairs a check with the untrained policy's (none: no `eval/gain`).
    """

    def __init__(
        self, cfg: TrainConfig, algorithm: type[Algorithm], dist: Distributed | None = None, policy: Policy | None = None,
        log: Callable[[str], None] = print, play_held_out: PlayPolicy | None = None, compare_held_out: CompareReports | None = None,
    ) -> None:
        self.cfg, self.algorithm_cls, self.play_held_out, self.compare_held_out = cfg, algorithm, play_held_out, compare_held_out
        self.dist = dist or Distributed()
        self.log = log if self.dist.is_main else (lambda message: None)
        self._check_config(policy_to_load=policy is None)
        # refused in one line before anything is loaded: a folder that holds another run, a resume with other options
        planned = planned_folder(cfg.run.output_dir, self.algorithm_cls.name, cfg.run.resume, cfg.run.overwrite)
        if cfg.run.resume == "auto" and planned is not None:
            check_same_config(planned, cfg.redacted_dict())
        self.dist.gather(None)  # every rank has looked at the folder before rank 0 writes to it
        threads = cfg.resolved_threads()
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(cfg.run.seed)
        np.random.seed(cfg.run.seed % 2**32)
        self.policy, device, compute_dtype = self._load_policy(policy)
        self.output_dir = self._open_folder(planned)  # only once the model loaded: a failed start leaves no empty run behind
        self.cfg = cfg = cfg.replace(output_dir=str(self.output_dir))
        self.step = 0
        state, path = None, None
        if cfg.run.resume:
            path = find_checkpoint(self.output_dir, cfg.run.resume)
            state = load_trainer_state(path)
            self.step = int(state["step"])
        run = Run(cfg, self.dist, self.policy, device, compute_dtype, Sampling(cfg.resolved_temperature(), cfg.rollout.top_p, cfg.rollout.max_new_tokens), self.output_dir, self.log)
        self.run = run
        self.algorithm = algorithm(run, state)  # copies of the initial policy come first
        if path is not None:
            self.policy.load_weights(path / "policy")
        if self.dist.is_distributed:
            self.policy.distribute(run.trained)
        self.algorithm.prepare(state)  # its own models wrapped like the policy (`Run.trained`, `Run.frozen`), then its optimizers
        if path is not None:
            self.log(f"resumed from {path} at step {self.step}")
        self.engine = build_rollout_engine(
            cfg.rollout.rollout_engine, self.policy, gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization, seed=cfg.run.seed, work_dir=self.output_dir / "vllm"
        )
        self.groups_per_rank = cfg.rollout.scenarios_per_step // self.dist.world_size
        self.transcripts: Path | None = None  # written by the trainer, not the envs: records carry their step and group
        if cfg.run.transcripts:
            self.transcripts = self.output_dir / ("transcripts.jsonl" if self.dist.is_main else f"transcripts-rank{self.dist.rank}.jsonl")
        self.envs = make_envs(cfg, self.groups_per_rank * cfg.rollout.group_size, None)
        self.scenario_ids = list(self.envs.scenarios.ids)
        self.languages = {s.id: s.language for s in self.envs.scenarios}
        self.intentions = {s.id: s.hidden_intention for s in self.envs.scenarios}
        if cfg.run.resume:
            self._drop_interrupted_records()
        self.writer = MetricsWriter(self.output_dir, tensorboard=cfg.run.tensorboard, purge_step=self.step + 1 if cfg.run.resume else None) if self.dist.is_main else None
        self.held_out = self._held_out_settings()
        self.canary_line: str | None = None  # this step's canary summary (None: every canary within its band)
        self._flagged: frozenset[str] = frozenset()  # the canaries flagged when the summary was last printed
        self._bar: Any = None

    def _held_out_settings(self) -> HeldOutSettings | None:
        """What the held-out check plays (None: no check)."""
        cfg, limit = self.cfg, self.eval_limit
        if limit <= 0:
            return None
        return HeldOutSettings(
            scenarios=cfg.run.eval_scenarios, limit=limit, train_scenarios=cfg.env.scenarios, train_limit=min(limit, len(self.scenario_ids)),
            max_new_tokens=cfg.rollout.max_new_tokens, simulator=cfg.env.simulator, simulator_kwargs=simulator_kwargs(cfg), seed=cfg.run.seed,
        )

    def _open_folder(self, planned: Path | None) -> Path:
        """The run's folder, made ready by rank 0 (a new one, or `planned` cleared on --overwrite); every rank gets its name."""
        folder = planned
        if self.dist.is_main:
            if planned is None:
                folder = new_run_folder(default_root(self.algorithm_cls.name))
            else:
                if self.cfg.run.overwrite:
                    clear_folder(planned)
                planned.mkdir(parents=True, exist_ok=True)
            assert folder is not None
            (folder / CONFIG).write_text(json.dumps(self.cfg.replace(output_dir=str(folder)).redacted_dict(), indent=1))
        return Path(self.dist.gather(str(folder) if folder is not None else None)[0])  # a collective: the others wait for rank 0

    def _drop_interrupted_records(self) -> None:
        """Records of steps after the checkpoint come from the interrupted run, which will play those steps again."""
        files = [self.transcripts] + ([self.output_dir / "metrics.jsonl"] if self.dist.is_main else [])
        for path in files:
            if path is not None and (dropped := drop_after(path, self.step)):
                self.log(f"dropped {dropped} record(s) of steps after {self.step} from {path.name} (written after the checkpoint)")

    def _check_config(self, policy_to_load: bool = True) -> None:
        cfg = self.cfg
        self.algorithm_cls.check(cfg)
        if policy_to_load:
            check_model_paths(cfg)
        least = self.algorithm_cls.min_group_size
        if cfg.rollout.group_size < least:
            raise UsageError(f"group_size must be at least {least} (a group is its own baseline), got {cfg.rollout.group_size}")
        if cfg.rollout.scenarios_per_step < 1 or cfg.rollout.scenarios_per_step % self.dist.world_size:
            raise UsageError(f"scenarios_per_step ({cfg.rollout.scenarios_per_step}) must be a positive multiple of the number of ranks ({self.dist.world_size})")
        options = cfg.options()
        for name in ("steps", "epochs", "minibatches", "micro_batch_tokens", "max_turns", "max_new_tokens"):
            if options[name] < 1:
                raise UsageError(f"{name} must be >= 1, got {options[name]}")
        if cfg.rollout.rollout_engine == "vllm" and self.dist.is_distributed and cfg.model.parallel == "fsdp2":
            raise UsageError("--rollout-engine vllm needs whole weights on every rank to sync: use --parallel ddp with it")
        if cfg.run.eval_every < 0 or cfg.resolved_eval_limit() < 0:
            raise UsageError(f"eval_every and eval_limit must be >= 0, got {cfg.run.eval_every} and {cfg.run.eval_limit}")
        if not 0 <= cfg.env.max_dropped_share < 1:
            raise UsageError(f"max_dropped_share must be in [0, 1), got {cfg.env.max_dropped_share}")
        self.eval_limit = cfg.resolved_eval_limit()
        if self.eval_limit and self.dist.is_distributed and cfg.model.parallel == "fsdp2":
            # the held-out evaluation samples on the main rank alone, which a sharded model cannot do
            if cfg.run.eval_limit is not None or cfg.run.eval_every:
                raise UsageError("held-out evaluation needs the whole model on one rank: use --parallel ddp, or --eval-limit 0 and evaluate checkpoints with python -m agents.evaluate")
            self.log(
                "held-out evaluation is skipped: under --parallel fsdp2 no rank holds the whole model to play it; "
                "evaluate the checkpoints with python -m agents.evaluate --agent hf, or train with --parallel ddp"
            )
            self.eval_limit = 0
        if self.eval_limit and self.play_held_out is None:
            if cfg.run.eval_limit is not None or cfg.run.eval_every:
                raise UsageError("held-out evaluation needs something to play it: pass play_held_out (agents.eval.live_policy.play_policy), or eval_limit=0")
            self.eval_limit = 0  # the default check of the embedded model is the training commands'; a trainer built without one skips it

    def _load_policy(self, policy: Policy | None) -> tuple[Policy, torch.device, torch.dtype]:
        """(the policy, this rank's device, the compute dtype); a given policy is used as it is."""
        cfg = self.cfg
        if policy is not None:
            return policy, policy.device, policy.autocast_dtype or policy.dtype
        device = rank_device(cfg.model.device, self.dist)
        compute_dtype = resolve_dtype(cfg.model.dtype, device)
        mixed = cfg.model.mixed_precision and not cfg.model.lora and compute_dtype != torch.float32
        weights = torch.float32 if mixed else compute_dtype
        # FSDP2 loads to host memory and shards from there, so no GPU ever holds the whole model
        sharded = self.dist.is_distributed and cfg.model.parallel == "fsdp2"
        policy = load_policy(
            cfg, log=self.log, device=str(device), dtype=str(weights).removeprefix("torch."), autocast_dtype=compute_dtype if mixed else None,
            weights_device="cpu" if sharded else None,
        )
        return policy, device, compute_dtype

    # -------------------------------------------------------------------- one step

    def scenario_plan(self, step: int) -> tuple[list[str], int]:
        """(this rank's scenario ids, index of its first group). All ranks draw the same global plan."""
        rng = np.random.default_rng(stream_seed(self.cfg.run.seed, step, Stream.SCENARIOS))
        count = self.cfg.rollout.scenarios_per_step
        picks = rng.choice(len(self.scenario_ids), size=count, replace=count > len(self.scenario_ids))
        first = self.dist.rank * self.groups_per_rank
        return [self.scenario_ids[i] for i in picks[first : first + self.groups_per_rank]], first

    def rollout(self, step: int) -> RolloutBatch:
        ids, first_group = self.scenario_plan(step)
        # sub-env i is reset with seed + i and dialogue d samples from its own stream: offsetting
        # both by the global index makes every dialogue independent of the number of ranks
        env_seed = stream_seed(self.cfg.run.seed, step, Stream.ENV_RESET) + first_group * self.cfg.rollout.group_size
        return collect_rollouts(
            self.policy, self.envs, self.run.sampling, group_size=self.cfg.rollout.group_size, seed=env_seed, scenario_ids=ids,
            sample_seed=stream_seed(self.cfg.run.seed, step, Stream.SAMPLING), max_seq_len=self.cfg.rollout.max_seq_len, overlong=self.cfg.rollout.overlong,
            group_offset=first_group, engine=self.engine, records=self.transcripts is not None,
        )

    def _check_dropped(self, step: int, batch: RolloutBatch) -> None:
        """Stop when the simulator failed every dialogue of the step (nothing to learn from, and it
        would not say so otherwise); warn, every step it happens, when it failed more than
        `--max-dropped-share` of them. Counts are over all ranks, so every rank decides alike."""
        dropped, dialogues = self.dist.sum([float(batch.dropped_errors), float(batch.dialogues)])
        first = one_line(batch.errors[0]) if batch.errors else "(on another rank)"
        if dialogues and dropped >= dialogues:
            raise SimulatorFailed(f"step {step}: the simulator failed all {int(dialogues)} dialogues, so there is nothing to learn from; the first error: {first}")
        if dropped > self.cfg.env.max_dropped_share * dialogues:
            self._warn(
                f"step {step} dropped {int(dropped)} of {int(dialogues)} dialogues ({dropped / dialogues:.0%}) to simulator errors, "
                f"more than --max-dropped-share {self.cfg.env.max_dropped_share:.0%}; it learns from the rest. The first error: {first}"
            )

    def compute_advantages(self, batch: RolloutBatch) -> Any:
        return self.algorithm.advantages(batch)

    def update(self, batch: RolloutBatch, advantages: Any, step: int) -> MetricSums:
        return self.algorithm.update(batch, advantages, step)

    def train_step(self) -> dict[str, float]:
        """One rollout and one update; returns the step's metrics (reduced across ranks)."""
        step = self.step + 1
        torch.manual_seed(stream_seed(self.cfg.run.seed, step, Stream.TORCH, self.dist.rank))  # dropout etc.: resumable
        started = time.perf_counter()
        batch = self.rollout(step)
        rollout_seconds = time.perf_counter() - started
        self._check_dropped(step, batch)
        if self.transcripts is not None:
            write_transcripts(self.transcripts, step, batch.records, rank=self.dist.rank if self.dist.is_distributed else None)
        advantages = self.compute_advantages(batch)
        started_update = time.perf_counter()
        sums = self.update(batch, advantages, step)
        self.engine.sync_weights(self.policy)  # the next rollout samples from the updated weights
        update_seconds = time.perf_counter() - started_update

        add_rollout_metrics(sums, batch)
        self.canary_line = add_reply_metrics(sums, batch.episodes, self.languages, self.intentions)
        sums.add("rollout_seconds", rollout_seconds, 1.0)
        sums.add("update_seconds", update_seconds, 1.0)
        reduced = self.dist.reduce_metrics(sums)
        metrics = reduced.means()
        for total in SUMMED:
            metrics[total] = reduced.sums.get(total, 0.0)
        metrics["rollout_tokens_per_s"] = metrics["sampled_tokens"] / max(metrics["rollout_seconds"], 1e-9)
        metrics["update_tokens_per_s"] = metrics["update_tokens"] / max(metrics["update_seconds"], 1e-9)
        metrics["step_seconds"] = rollout_seconds + update_seconds
        self.step = step
        return metrics

    # -------------------------------------------------------------------- the run

    def fit(self, until: int | None = None) -> list[dict[str, float]]:
        """Train to step `until` (default `cfg.run.steps`), then checkpoint and (at the end) plot the curves."""
        cfg = self.cfg
        last = min(until or cfg.run.steps, cfg.run.steps)
        history = []
        bar = None
        if cfg.run.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.run.steps, initial=self.step, desc=self.algorithm.name, unit="step", dynamic_ncols=True)
        self._bar = bar
        try:
            if self.step == 0 and self.step < last and self.held_out is not None and self.writer is not None:
                self.writer.write(0, self.evaluate_held_out())  # the untrained policy: the baseline of every later evaluation
            while self.step < last:
                metrics = self.train_step()
                history.append(metrics)
                self._report_canaries()
                if self._evaluates_after(self.step):
                    metrics.update(self.evaluate_held_out())
                if self.writer is not None:
                    self.writer.write(self.step, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ret=f"{metrics['return']:+.3f}", emo=f"{metrics['emotion']:.0f}", kl=f"{metrics.get('kl', 0):.3f}")
                if cfg.run.save_every and self.step % cfg.run.save_every == 0 and self.step < last:
                    self.save()
            if history:
                self.save()
        finally:
            if bar is not None:
                bar.close()
            self._bar = None
        metrics_path = self.output_dir / "metrics.jsonl"
        if self.step >= cfg.run.steps and self.dist.is_main and metrics_path.is_file():
            png = plot_learning_curve(metrics_path, self.output_dir / "learning_curve.png", title=f"{self.algorithm.name.upper()} on SageDialogue")
            self.log(f"learning curve: {png}")
            for png in self.algorithm.plots(self.output_dir):
                self.log(f"{png.stem.replace('_', ' ')}: {png}")
            if history:
                rows = read_metrics(metrics_path)
                self.log(self.closing_summary(rows))
                self._write_held_out_summary(rows)
        return history

    # -------------------------------------------------------------------- what was learned

    def _evaluates_after(self, step: int) -> bool:
        if self.held_out is None or not self.dist.is_main:
            return False
        return step == self.cfg.run.steps or (self.cfg.run.eval_every > 0 and step % self.cfg.run.eval_every == 0)

    def evaluate_held_out(self) -> dict[str, float]:
        """The policy as it is now on held-out and training users (greedy, SAGE settings): the `eval/*` metrics."""
        assert self.held_out is not None
        started = time.perf_counter()
        assert self.play_held_out is not None  # no held-out settings without it (`_check_config`)
        values = evaluate_policy(self.policy, self.held_out, self.step, self.output_dir, self.play_held_out, self.compare_held_out)
        values["eval/seconds"] = time.perf_counter() - started
        self._say(
            f"step {self.step} held-out check: unseen users {values['eval/score']:.1f}, training users {values['eval/train_score']:.1f}, "
            f"gap {values['eval/gap']:+.1f} ({values['eval/seconds']:.0f} s)"
        )
        return values

    def _report_canaries(self) -> None:
        """Print the canary summary when a canary moves far from the reference agents' values (not
        again while the same ones stay out; a canary that comes back and leaves again is news)."""
        line = self.canary_line
        flagged = frozenset(part.split(" ")[0] for part in line.removeprefix("canaries: ").split("; ")) if line else frozenset()
        if flagged - self._flagged:
            self._say(f"step {self.step} {line}")
        self._flagged = flagged

    def _warn(self, message: str) -> None:
        """A warning on stderr (above the progress bar), on the main rank."""
        if not self.dist.is_main:
            return
        if self._bar is not None:
            self._bar.write(f"WARNING: {message}", file=sys.stderr)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    def _say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)  # above the progress bar, not through it
        else:
            self.log(message)

    def closing_summary(self, rows: list[dict[str, Any]]) -> str:
        """What the run learned: the strategy mix by hidden intention, reply quality, and the held-out check (first vs last steps)."""
        trained = [r for r in rows if r.get("return") is not None]
        window = min(10, max(1, len(trained) // 2))
        first, last = trained[:window], trained[-window:]

        def mean(part: list[dict[str, Any]], key: str) -> float:
            values = [r[key] for r in part if r.get(key) is not None]
            return sum(values) / len(values) if values else float("nan")

        lines = [
            f"what the policy learned (first {len(first)} -> last {len(last)} steps): return {mean(first, 'return'):+.3f} -> {mean(last, 'return'):+.3f}, "
            f"final emotion {mean(first, 'emotion'):.1f} -> {mean(last, 'emotion'):.1f}, replies with a repeated 4-gram "
            f"{mean(first, 'repetition_rate'):.1%} -> {mean(last, 'repetition_rate'):.1%}, salad {mean(first, 'salad_rate'):.1%} -> {mean(last, 'salad_rate'):.1%}",
            "share of replies using each strategy, by the user's hidden intention (first -> last steps):",
            strategy_table(first, last),
        ]
        evaluated = [r for r in rows if r.get("eval/score") is not None]
        if self.held_out is not None and evaluated:
            before = evaluated[0] if evaluated[0]["step"] == 0 else None
            lines.append(held_out_line(before, evaluated[-1], self.held_out))
        if self.cfg.run.transcripts:
            lines.append(f"read the dialogues (one offline HTML page): python -m agents.view {self.output_dir}")
        return "\n".join(lines)

    def _write_held_out_summary(self, rows: list[dict[str, Any]]) -> None:
        """held_out.json: the held-out settings, the untrained policy's scores and the final ones."""
        evaluated = [{k: v for k, v in r.items() if k == "step" or k.startswith("eval/")} for r in rows if r.get("eval/score") is not None]
        if self.held_out is None or not evaluated:
            return
        settings = {k: v for k, v in vars(self.held_out).items() if k != "simulator_kwargs"}  # kwargs may hold secrets
        untrained = evaluated[0] if evaluated[0]["step"] == 0 else None
        summary = {"settings": settings, "untrained": untrained, "final": evaluated[-1], "all": evaluated}
        (self.output_dir / "held_out.json").write_text(json.dumps(summary, indent=1) + "\n")

    def save(self) -> Path | None:
        """Every rank calls this (gathering sharded state is collective); rank 0 writes."""
        module = self.policy.forward_module
        weights = _strip_prefix(full_model_state(module), "model.") if is_sharded(module) else None
        state = self.algorithm.state()
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.output_dir, self.step, self.policy, state, self.cfg.redacted_dict(), keep=self.cfg.run.keep_checkpoints, weights=weights)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.engine.close()
        self.envs.close()


def add_rollout_metrics(sums: MetricSums, batch: RolloutBatch) -> None:
    """What every algorithm logs about its dialogues (sums and counts, so ranks add up)."""
    episodes = batch.episodes
    sums.add("return", sum(e.episode_return for e in episodes), len(episodes))
    sums.add("emotion", sum(e.final_emotion for e in episodes if e.final_emotion == e.final_emotion), len(episodes))
    for name in ("success", "failure", "left", "truncated"):
        sums.add(f"{name}_rate", sum(e.outcome == name for e in episodes), len(episodes))
    sums.add("turns", sum(e.turns for e in episodes), len(episodes))
    sums.add("episode_tokens", sum(len(e) for e in episodes), len(episodes))
    sums.add("policy_tokens", sum(e.num_policy_tokens for e in episodes), len(episodes))
    sums.add("dropped_errors", batch.dropped_errors, 0.0)
    sums.add("overlong", batch.overlong, 0.0)
    sums.add("sampled_tokens", batch.sampled_tokens, 0.0)
    sums.add("generate_seconds", batch.generate_seconds, 1.0)
    sums.add("env_seconds", batch.env_seconds, 1.0)


# the classes this module's Trainer replaced, kept importable from here (with a warning) for old scripts
_DEPRECATED = {"GRPOTrainer": GRPO, "PPOTrainer": PPO}


def __getattr__(name: str) -> Any:
    """`GRPOTrainer` / `PPOTrainer`, deprecated: `Trainer(cfg, algorithm=GRPO)` / `Trainer(cfg, algorithm=PPO)`."""
    if name not in _DEPRECATED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    algorithm = _DEPRECATED[name]
    warnings.warn(f"{name} is deprecated: use agents.learn.trainer.Trainer(cfg, algorithm={algorithm.__name__})", DeprecationWarning, stacklevel=2)
    return deprecated_trainer(algorithm)


@functools.cache  # one class per algorithm, as before
def deprecated_trainer(algorithm: type[Algorithm]) -> type[Trainer]:
    """The class `GRPOTrainer` / `PPOTrainer` once were: a `Trainer` of `algorithm` (they warn when imported)."""

    class BoundTrainer(Trainer):
        def __init__(self, cfg: TrainConfig, dist: Distributed | None = None, policy: Policy | None = None, log: Callable[[str], None] = print) -> None:
            super().__init__(cfg, algorithm, dist=dist, policy=policy, log=log)

    BoundTrainer.__name__ = BoundTrainer.__qualname__ = f"{algorithm.name.upper()}Trainer"
    return BoundTrainer


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The HF model's own keys from those of the module that holds it as `model`."""
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
