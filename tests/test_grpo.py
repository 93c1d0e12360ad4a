"""The GRPO trainer end to end: config/CLI, schedule, KL against an identical reference, resume, learning."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agents import train_grpo
from agents.learn.config import TrainConfig, build_parser, load_config_file, make_config, parse_config
from agents.learn.grpo import GRPO
from agents.learn.trainer import Trainer
from agents.learn.optim import lr_factor
from agents.learn.seeds import derive_seed
from agents.learn.metrics import MetricSums, read_metrics
from agents.policy.loading import LoraSettings
from agents.policy.model import Policy
from agents.learn.tiny_model import system_prompts, tiny_random_model
from tests.tiny import SMALL, model_dir, one_thread, tokenizer  # noqa: F401  (fixtures)


def tiny_policy(tokenizer, template: str = "direct", lora: bool = False, seed: int = 0) -> Policy:
    model = tiny_random_model(tokenizer, SMALL, seed=seed)
    return Policy.from_model(model, tokenizer, system_prompt=system_prompts()[template], lora=LoraSettings(r=4) if lora else None)


def small_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(
        model="in-memory", template="direct", steps=3, group_size=2, scenarios_per_step=2, max_turns=2, max_new_tokens=8,
        lr=1e-3, output_dir=str(tmp_path / "run"), save_every=0, progress=False, tensorboard=False, transcripts=False,
    )
    values.update(overrides)
    return TrainConfig.from_options(**values)


def params(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}


# ----------------------------------------------------------------------------------------------
# configuration and small helpers


def test_every_option_is_on_the_command_line_with_help() -> None:
    text = build_parser().format_help()
    for name in TrainConfig().options():
        assert "--" + name.replace("_", "-") in text, name


def test_precedence_defaults_then_file_then_cli(tmp_path) -> None:
    (tmp_path / "run.yaml").write_text("rollout: {group-size: 4}\noptimizer:\n  lr: 0.01\nmodel: {lora: true}\n")
    cfg = parse_config(["--config", str(tmp_path / "run.yaml"), "--lr", "0.02", "--no-lora"])
    assert (cfg.rollout.group_size, cfg.optimizer.lr, cfg.model.lora, cfg.run.steps) == (4, 0.02, False, TrainConfig().run.steps)
    (tmp_path / "run.toml").write_text('[objective]\nbeta = 0.1\n[model]\ntemplate = "direct"\n')
    (tmp_path / "run.json").write_text(json.dumps({"env": {"max_turns": 8}}))
    assert load_config_file(tmp_path / "run.toml") == {"beta": 0.1, "template": "direct"}
    assert parse_config(["--config", str(tmp_path / "run.json")]).env.max_turns == 8


def test_config_values_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        make_config(TrainConfig, {"learning_rate": 1.0})
    with pytest.raises(ValueError, match="group_size must be int"):
        make_config(TrainConfig, {"group_size": "8"})
    with pytest.raises(ValueError, match="one of"):
        make_config(TrainConfig, {"loss_agg": "sum"})
    assert make_config(TrainConfig, {"lr": 1}).optimizer.lr == 1.0
    with pytest.raises(SystemExit):
        parse_config(["--template", "shout"])


def test_training_can_pick_the_calibrated_built_in_user() -> None:
    """`--simulator builtin-v1` trains against the calibrated user: no endpoint arguments reach it."""
    from agents.learn.components import make_envs

    cfg = parse_config(["--simulator", "builtin-v1", "--scenario-limit", "2"])
    envs = make_envs(cfg, 2, None)
    try:
        assert [env.simulator.version for env in envs.envs] == [1, 1]
    finally:
        envs.close()


def test_learning_rate_schedule() -> None:
    assert [lr_factor(u, 2, 10, "constant", 0.1) for u in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert lr_factor(2, 2, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 2, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(6, 2, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(6, 2, 10, "linear", 0.0) == pytest.approx(0.5)


def test_metric_sums_reduce_like_a_global_batch() -> None:
    rank0, rank1 = MetricSums(), MetricSums()
    rank0.add("return", 1.0, 2)  # two dialogues on rank 0 whose returns sum to 1
    rank1.add("return", 2.0, 1)  # one dialogue on rank 1
    other = [rank1.sums["return"], rank1.counts["return"]]
    reduced = rank0.reduce(lambda flat: [x + y for x, y in zip(flat, other)])
    assert reduced.means()["return"] == pytest.approx(3.0 / 3)
    assert rank0.reduce(None) is rank0
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)


def test_a_loss_split_over_ranks_is_counted_once_per_optimizer_step() -> None:
    """Each rank adds its share of every mini-batch loss and counts each optimizer step: the mean is per step."""
    ranks = [MetricSums(), MetricSums()]
    for shares in ([0.25, 0.5], [0.75, 1.5]):  # two optimizer steps: losses 1.0 and 2.0, split over two ranks
        for metrics, share in zip(ranks, shares, strict=True):
            metrics.add("pg_loss", share, 0.0)
            metrics.count_once("pg_loss")
    other = [ranks[1].sums["pg_loss"], ranks[1].counts["pg_loss"]]
    reduced = ranks[0].reduce(lambda flat: [x + y for x, y in zip(flat, other, strict=True)], ranks=2)
    assert reduced.counts["pg_loss"] == 2.0 and reduced.means()["pg_loss"] == pytest.approx(1.5)
    assert ranks[0].reduce(None).means()["pg_loss"] == pytest.approx((0.25 + 0.75) / 2)  # one process: its own steps


# ----------------------------------------------------------------------------------------------
# the trainer


def test_few_steps_end_to_end(tokenizer, tmp_path) -> None:
    cfg = small_config(tmp_path, steps=3, save_every=2, tensorboard=True, transcripts=True, epochs=2, minibatches=2, loss_agg="seq-mean-token-mean")
    trainer = Trainer(cfg, algorithm=GRPO, policy=tiny_policy(tokenizer))
    before = params(trainer.policy)
    history = trainer.fit()
    trainer.close()
    assert len(history) == 3
    required = {"return", "emotion", "success_rate", "failure_rate", "clip_fraction", "entropy", "grad_norm", "rollout_tokens_per_s",
                "rollout_seconds", "update_seconds", "dropped_errors", "skipped_groups", "lr"}
    assert required <= set(history[0])
    assert all(math.isfinite(m["return"]) for m in history)
    out = tmp_path / "run"
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert any((out / "tensorboard").iterdir())
    assert sum(1 for _ in (out / "transcripts.jsonl").open()) == 3 * 4
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000003"
    assert (out / "checkpoints" / "step-000002" / "trainer.pt").is_file()
    # some update moved the weights (skipped groups aside, 3 steps x 4 updates)
    after = params(trainer.policy)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    # the first update of a step starts on-policy: recomputed log-probs equal the rollout's
    assert all(m.get("logprob_mismatch", 0.0) < 1e-5 for m in history)
    assert any("logprob_mismatch" in m for m in history)


@pytest.mark.parametrize("lora", [False, True])
def test_kl_is_zero_against_an_identical_reference(tokenizer, tmp_path, lora: bool) -> None:
    cfg = small_config(tmp_path, steps=1, beta=0.5, kl_estimator="k3", lr=1e-3, epochs=1, minibatches=1)
    trainer = Trainer(cfg, algorithm=GRPO, policy=tiny_policy(tokenizer, lora=lora))
    assert trainer.algorithm.reference == "adapters" if lora else isinstance(trainer.algorithm.reference, Policy)
    metrics = trainer.train_step()
    trainer.close()
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-7)  # the first update: policy == reference


def test_no_reference_is_loaded_when_beta_is_zero(tokenizer, tmp_path) -> None:
    trainer = Trainer(small_config(tmp_path, beta=0.0), algorithm=GRPO, policy=tiny_policy(tokenizer))
    assert trainer.algorithm.reference is None
    trainer.close()


def test_kl_grows_once_the_policy_moves(tokenizer, tmp_path) -> None:
    cfg = small_config(tmp_path, steps=3, beta=0.1, lr=5e-3, minibatches=2)
    trainer = Trainer(cfg, algorithm=GRPO, policy=tiny_policy(tokenizer))
    history = trainer.fit()
    trainer.close()
    # a step whose groups all lack spread has no update and logs no KL: look at the steps that had one
    kls = [h["kl"] for h in history if "kl" in h]
    assert kls and max(kls) > 0


@pytest.mark.parametrize("lora", [False, True])
def test_resume_continues_exactly(tokenizer, tmp_path, lora: bool) -> None:
    """N steps straight equal K steps, a restart with --resume, and N - K more (same parameters)."""
    straight_cfg = small_config(tmp_path / "a", steps=3, lr_schedule="cosine", warmup_steps=1)
    straight = Trainer(straight_cfg, algorithm=GRPO, policy=tiny_policy(tokenizer, lora=lora))
    straight_history = straight.fit()
    straight.close()

    split_cfg = small_config(tmp_path / "b", steps=3, lr_schedule="cosine", warmup_steps=1)
    first = Trainer(split_cfg, algorithm=GRPO, policy=tiny_policy(tokenizer, lora=lora))
    first.fit(until=1)
    first.close()
    resumed_cfg = small_config(tmp_path / "b", steps=3, lr_schedule="cosine", warmup_steps=1, resume="auto")
    # a full fine-tune starts from another init (the checkpoint must win); LoRA saves only the
    # adapter, so its base model is loaded again as the run's --model would be
    resumed = Trainer(resumed_cfg, algorithm=GRPO, policy=tiny_policy(tokenizer, lora=lora, seed=0 if lora else 123))
    assert resumed.step == 1
    resumed_history = resumed.fit()
    resumed.close()

    a, b = params(straight.policy), params(resumed.policy)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [m["return"] for m in straight_history[1:]] == [m["return"] for m in resumed_history]
    assert straight.algorithm.policy_step.optimized.scheduler.get_last_lr() == resumed.algorithm.policy_step.optimized.scheduler.get_last_lr()
    assert [r["step"] for r in read_metrics(tmp_path / "b" / "run" / "metrics.jsonl")] == [1, 2, 3]


def test_trainer_rejects_bad_settings(tokenizer, tmp_path) -> None:
    with pytest.raises(ValueError, match="group_size"):
        Trainer(small_config(tmp_path, group_size=1), algorithm=GRPO, policy=tiny_policy(tokenizer))


# ----------------------------------------------------------------------------------------------
# learning (slow)


@pytest.mark.slow
def test_the_main_job_beats_the_untrained_model_on_unseen_users_beyond_the_noise(tmp_path, monkeypatch, capsys) -> None:
    """The README's main command (embedded tiny model built in a private cache, built-in simulator,
    every default) ends above its untrained self on the 96 unseen users, paired, beyond the noise."""
    monkeypatch.setenv("SAGE_GYM_CACHE", str(tmp_path / "cache"))
    assert train_grpo.main(["--output-dir", str(tmp_path / "run"), "--no-progress", "--no-tensorboard"]) == 0
    final = json.loads((tmp_path / "run" / "held_out.json").read_text())["final"]
    assert final["eval/dialogues"] == 96 and final["eval/gain_low"] > 0, final
    assert "(better beyond the noise)" in capsys.readouterr().out


@pytest.mark.parametrize("mixed", [True, False], ids=["float32-master", "bfloat16-weights"])
def test_small_bfloat16_updates_survive_only_with_float32_master_weights(model_dir, tmp_path, mixed: bool) -> None:  # noqa: F811
    """At lr 1e-6 an AdamW step moves a weight by ~1e-6: below bfloat16's resolution for all but tiny weights."""
    cfg = small_config(
        tmp_path, model=str(model_dir), dtype="bfloat16", device="cpu", mixed_precision=mixed, lr=1e-6, warmup_steps=0,
        steps=1, group_size=4, minibatches=1, scenarios_per_step=4,  # enough groups that one has rewards to tell apart
    )
    trainer = Trainer(cfg, algorithm=GRPO)
    params = trainer.policy.trainable_parameters()
    assert {p.dtype for p in params} == ({torch.float32} if mixed else {torch.bfloat16})
    assert trainer.policy.autocast_dtype == (torch.bfloat16 if mixed else None)
    before = [p.detach().clone() for p in params]
    metrics = trainer.train_step()
    trainer.close()
    assert metrics["skipped_groups"] < metrics["groups"]  # an update happened
    changed = sum(int((b != p.detach()).sum()) for b, p in zip(before, params)) / sum(p.numel() for p in params)
    if mixed:
        assert changed > 0.5
    else:
        assert changed < 0.1
    assert metrics["logprob_mismatch"] < 0.1  # sampling and the loss both compute in bfloat16
