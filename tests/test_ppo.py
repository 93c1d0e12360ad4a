"""PPO with a critic: value loss, the critic's gradients, config/CLI, end-to-end runs, warm-up, exact resume, learning."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agents.learn.config import build_parser, make_config, parse_config
from agents.learn.critic import HeadCritic, SeparateCritic, build_critic, capture_hidden
from agents.learn.metrics import read_metrics
from agents.learn.losses import Totals, entropy_bonus, value_loss
from agents.policy.loading import LoraSettings
from agents.policy.model import Policy
from agents.learn.advantages import explained_variance
from agents.learn.ppo import PPO, PPOConfig
from agents.learn.trainer import Trainer
from agents.learn.tiny_model import system_prompts, tiny_random_model
from tests.tiny import SMALL, model_dir, one_thread, tokenizer  # noqa: F401  (fixtures)


def tiny_policy(tokenizer, lora: bool = False, seed: int = 0) -> Policy:
    model = tiny_random_model(tokenizer, SMALL, seed=seed)
    return Policy.from_model(model, tokenizer, system_prompt=system_prompts()["direct"], lora=LoraSettings(r=4) if lora else None)


def small_config(tmp_path, **overrides) -> PPOConfig:
    values = dict(
        model="in-memory", template="direct", steps=3, group_size=2, scenarios_per_step=2, max_turns=2, max_new_tokens=8,
        lr=1e-3, critic_lr=1e-2, output_dir=str(tmp_path / "run"), save_every=0, progress=False, tensorboard=False, transcripts=False,
    )
    values.update(overrides)
    return PPOConfig.from_options(**values)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.state_dict().items()}


def a_batch(policy: Policy) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(5, len(policy.tokenizer), (2, 12))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0
    mask = torch.zeros(2, 12)
    mask[:, 4:8] = 1
    return ids, attention, mask


# ----------------------------------------------------------------------------------------------
# losses and metrics by hand


def test_value_loss_by_hand() -> None:
    values = torch.tensor([[0.5, 1.0, -0.2, 9.0]])
    old = torch.tensor([[0.0, 0.9, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 0.0, 0.3, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    totals = Totals(tokens=3, sequences=1)
    plain = value_loss(values, old, returns, mask, totals, clip=0.0)
    assert float(plain.loss) == pytest.approx(0.5 * (0.25 + 1.0 + 0.25) / 3)
    clipped = value_loss(values, old, returns, mask, totals, clip=0.2)
    # token 0: V moved 0.5 from V_old 0 -> clipped to 0.2, error (0.2-1)^2 = 0.64 > 0.25: the clipped one counts
    # token 1: moved 0.1 (inside the clip): 1.0;  token 2: clipped to -0.2 (same), 0.25
    assert float(clipped.loss) == pytest.approx(0.5 * (0.64 + 1.0 + 0.25) / 3)
    assert float(clipped.clip_fraction_sum) == 1.0
    assert float(clipped.error_sum) == pytest.approx(1.5)


def test_entropy_bonus_and_explained_variance_by_hand() -> None:
    entropy = torch.tensor([[1.0, 3.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(entropy_bonus(entropy, mask, Totals(tokens=2, sequences=1))) == pytest.approx(2.0)
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ones = torch.ones(4)
    assert explained_variance(returns, returns, ones) == pytest.approx(1.0)
    assert explained_variance(returns, torch.full((4,), 2.5), ones) == pytest.approx(0.0)
    # errors -1, 1, -1, 1 have variance 1 against Var(R) = 1.25
    assert explained_variance(returns, returns + torch.tensor([1.0, -1.0, 1.0, -1.0]), ones) == pytest.approx(1 - 1 / 1.25)


# ----------------------------------------------------------------------------------------------
# the critic


def test_value_of_token_t_reads_only_tokens_before_it(tokenizer) -> None:
    policy = tiny_policy(tokenizer)
    critic = build_critic("head", policy)
    ids, attention, _ = a_batch(policy)
    assert torch.count_nonzero(critic.values(ids, attention)) == 0  # a new head says 0 everywhere
    with torch.no_grad():
        critic.head.proj.weight.normal_()
    values = critic.values(ids, attention)
    assert values.shape == ids.shape and values.dtype == torch.float32
    assert torch.count_nonzero(values[:, 0]) == 0
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % len(tokenizer)
    other = critic.values(changed, attention)
    torch.testing.assert_close(other[:, :7], values[:, :7])  # V at t <= 6 is the state before token 6 is chosen
    assert not torch.allclose(other[0, 7:], values[0, 7:])


def test_head_reuses_the_hidden_states_of_the_policy_forward(tokenizer) -> None:
    policy = tiny_policy(tokenizer)
    critic = build_critic("head", policy)
    with torch.no_grad():
        critic.head.proj.weight.normal_()
    ids, attention, mask = a_batch(policy)
    with capture_hidden(policy) as captured:
        policy.token_logprobs(ids, attention, mask, 1.0)
    assert len(captured) == 1
    torch.testing.assert_close(critic.values(ids, attention, hidden=captured[0]), critic.values(ids, attention))


def _backward_value_loss(critic, policy) -> None:
    with torch.no_grad():  # a head that has learned something (at initialisation it is 0 and passes no gradient back)
        critic.head.proj.weight.normal_()
    ids, attention, mask = a_batch(policy)
    values = critic.values(ids, attention)
    value_loss(values, values.detach(), torch.ones_like(values), mask, Totals(tokens=float(mask.sum()), sequences=2.0)).loss.backward()


def test_detached_value_head_trains_only_itself(tokenizer) -> None:
    policy = tiny_policy(tokenizer)
    critic = build_critic("head", policy)
    assert isinstance(critic, HeadCritic) and set(critic.state_dict()) == {"head.proj.weight", "head.proj.bias"}
    _backward_value_loss(critic, policy)
    assert all(p.grad is None for p in policy.model.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.trainable_parameters())


def test_value_gradient_does_not_reach_frozen_lora_base_weights(tokenizer) -> None:
    policy = tiny_policy(tokenizer, lora=True)
    critic = build_critic("head", policy, backbone_grad=True)
    _backward_value_loss(critic, policy)
    frozen = [(n, p) for n, p in policy.model.named_parameters() if not p.requires_grad]
    adapters = [(n, p) for n, p in policy.model.named_parameters() if p.requires_grad]
    assert frozen and adapters
    assert all(p.grad is None for _, p in frozen)
    # the adapters the value loss can reach (the last layer's lora_B of each projection, at least) got gradients
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in adapters if "lora_B" in n)
    assert critic.head.proj.weight.grad is not None


def test_separate_critic_is_a_copy_that_leaves_the_policy_alone(tokenizer) -> None:
    policy = tiny_policy(tokenizer, lora=True)
    critic = build_critic("separate", policy)
    assert isinstance(critic, SeparateCritic)
    assert not any("lora" in name for name in critic.state_dict())  # adapters merged away, lm head dropped
    base = policy.base.get_decoder().state_dict()
    copied = critic.backbone.state_dict()
    # at initialisation LoRA's B is 0, so the merged copy equals the base weights
    torch.testing.assert_close(copied["layers.0.mlp.down_proj.weight"], base["layers.0.mlp.down_proj.base_layer.weight"])
    _backward_value_loss(critic, policy)
    assert all(p.grad is None for p in policy.model.parameters())
    assert all(p.grad is not None for p in critic.trainable_parameters())


def test_critic_options_are_checked(tokenizer) -> None:
    policy = tiny_policy(tokenizer)
    with pytest.raises(ValueError, match="critic must be one of"):
        build_critic("twin", policy)
    with pytest.raises(ValueError, match="--critic separate"):
        build_critic("head", policy, model="some/model")
    with pytest.raises(ValueError, match="--critic head"):
        build_critic("separate", policy, backbone_grad=True)


# ----------------------------------------------------------------------------------------------
# configuration


def test_every_ppo_option_is_on_the_command_line() -> None:
    text = build_parser(PPOConfig).format_help()
    for name in PPOConfig().options():
        assert "--" + name.replace("_", "-") in text, name
    cfg = parse_config(["--critic", "separate", "--gamma", "0.99", "--lam", "1", "--no-whiten-advantages", "--critic-lr", "2e-5"], PPOConfig)
    assert (cfg.model.critic, cfg.objective.gamma, cfg.objective.lam, cfg.objective.whiten_advantages, cfg.optimizer.critic_lr) == ("separate", 0.99, 1.0, False, 2e-5)
    from agents.policy.run_folder import default_root

    assert PPOConfig().run.output_dir is None and default_root(PPO.name).as_posix() == "runs/ppo"  # runs/ppo/<time> by default
    assert PPOConfig().resolved_critic_lr() == 3e-3 and PPOConfig.from_options(model="m", critic="separate").resolved_critic_lr() == 1e-5
    with pytest.raises(ValueError, match="one of"):
        make_config(PPOConfig, {"critic": "twin"})


def test_trainer_rejects_bad_settings(tokenizer, tmp_path) -> None:
    for bad, match in (({"gamma": 1.5}, "gamma"), ({"critic_warmup_steps": 3}, "critic_warmup_steps"), ({"value_clip": -1.0}, "value_clip")):
        with pytest.raises(ValueError, match=match):
            Trainer(small_config(tmp_path, **bad), algorithm=PPO, policy=tiny_policy(tokenizer))


# ----------------------------------------------------------------------------------------------
# the trainer


@pytest.mark.parametrize("critic", ["separate", "head"])
def test_few_steps_end_to_end(tokenizer, tmp_path, critic: str) -> None:
    cfg = small_config(tmp_path, steps=2, epochs=2, minibatches=2, beta=0.1, ent_coef=0.01, tensorboard=True, transcripts=True, save_every=1, critic=critic)
    trainer = Trainer(cfg, algorithm=PPO, policy=tiny_policy(tokenizer))
    before_policy, before_critic = state(trainer.policy.model), state(trainer.algorithm.critic)
    history = trainer.fit()
    trainer.close()
    required = {"return", "emotion", "pg_loss", "kl", "entropy", "clip_fraction", "value_loss", "explained_variance", "value_clip_fraction",
                "critic_lr", "critic_grad_norm", "grad_norm", "value_mean", "return_to_go", "logprob_mismatch"}
    assert required <= set(history[0])
    assert all(math.isfinite(m["return"]) and math.isfinite(m["value_loss"]) for m in history)
    out = tmp_path / "run"
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert (out / "learning_curve.png").stat().st_size > 1000 and (out / "critic_curve.png").stat().st_size > 1000
    saved = torch.load(out / "checkpoints" / "step-000002" / "trainer.pt", weights_only=False)
    assert set(saved["critic"]) == {"kind", "weights", "optimizer", "scheduler"}
    after_policy, after_critic = state(trainer.policy.model), state(trainer.algorithm.critic)
    assert any(not torch.equal(before_policy[n], after_policy[n]) for n in before_policy)
    assert all(not torch.equal(before_critic[n], after_critic[n]) for n in before_critic)


def test_critic_warmup_leaves_the_policy_untouched(tokenizer, tmp_path) -> None:
    trainer = Trainer(small_config(tmp_path, steps=2, critic_warmup_steps=1, minibatches=2, critic="head"), algorithm=PPO, policy=tiny_policy(tokenizer))
    before_policy, before_critic = state(trainer.policy.model), state(trainer.algorithm.critic)
    metrics = trainer.train_step()
    assert metrics["critic_warmup"] == 1.0 and "pg_loss" not in metrics
    after = state(trainer.policy.model)
    assert all(torch.equal(before_policy[n], after[n]) for n in before_policy)
    assert any(not torch.equal(before_critic[n], v) for n, v in state(trainer.algorithm.critic).items())
    metrics = trainer.train_step()  # step 2: the policy learns
    trainer.close()
    assert metrics["critic_warmup"] == 0.0 and "pg_loss" in metrics
    assert any(not torch.equal(before_policy[n], v) for n, v in state(trainer.policy.model).items())


@pytest.mark.parametrize("critic, lora", [("head", False), ("separate", True)])
def test_resume_continues_exactly(tokenizer, tmp_path, critic: str, lora: bool) -> None:
    """N steps straight equal K steps, a restart with --resume, and N - K more: policy, critic and their optimizers."""
    options = dict(steps=3, lr_schedule="cosine", warmup_steps=1, critic=critic, minibatches=2, critic_warmup_steps=1)
    straight = Trainer(small_config(tmp_path / "a", **options), algorithm=PPO, policy=tiny_policy(tokenizer, lora=lora))
    straight_history = straight.fit()
    straight.close()

    first = Trainer(small_config(tmp_path / "b", **options), algorithm=PPO, policy=tiny_policy(tokenizer, lora=lora))
    first.fit(until=1)
    first.close()
    other = tiny_policy(tokenizer, lora=lora)  # the same base model, but other trainable weights: the checkpoint must win
    with torch.no_grad():
        for p in other.trainable_parameters():
            p.add_(torch.randn_like(p))
    resumed = Trainer(small_config(tmp_path / "b", resume="auto", **options), algorithm=PPO, policy=other)
    assert resumed.step == 1
    resumed_history = resumed.fit()
    resumed.close()

    for a, b in ((straight.policy.model, resumed.policy.model), (straight.algorithm.critic, resumed.algorithm.critic)):
        sa, sb = state(a), state(b)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    critic_a, critic_b = straight.algorithm.value_step.optimized, resumed.algorithm.value_step.optimized
    opt_a, opt_b = critic_a.optimizer.state_dict()["state"], critic_b.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)
    assert critic_a.scheduler.get_last_lr() == critic_b.scheduler.get_last_lr()
    assert [m["return"] for m in straight_history[1:]] == [m["return"] for m in resumed_history]
    assert [m["value_loss"] for m in straight_history[1:]] == [m["value_loss"] for m in resumed_history]


def test_resume_refuses_another_critic_kind(tokenizer, tmp_path) -> None:
    first = Trainer(small_config(tmp_path, steps=2, critic="head"), algorithm=PPO, policy=tiny_policy(tokenizer))
    first.fit(until=1)
    first.close()
    with pytest.raises(ValueError, match=r"differs from the run's in critic \('head' in the run, 'separate' now\)"):
        Trainer(small_config(tmp_path, steps=2, critic="separate", resume="auto"), algorithm=PPO, policy=tiny_policy(tokenizer))
    checkpoint = str(tmp_path / "run" / "checkpoints" / "step-000001")  # a named checkpoint: its own state says which critic
    with pytest.raises(ValueError, match="critic is 'head'"):
        Trainer(small_config(tmp_path, steps=2, critic="separate", resume=checkpoint), algorithm=PPO, policy=tiny_policy(tokenizer))


def test_command_line_run(tokenizer, tmp_path, capsys) -> None:
    from agents.train_ppo import main

    model_dir = tmp_path / "model"
    tiny_random_model(tokenizer, SMALL).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    args = ["--model", str(model_dir), "--template", "direct", "--steps", "2", "--group-size", "1", "--scenarios-per-step", "2",
            "--max-turns", "2", "--max-new-tokens", "6", "--output-dir", str(out), "--no-progress", "--no-tensorboard",
            "--critic", "separate", "--gamma", "0.99", "--lam", "0.9", "--critic-lr", "1e-3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mean episode return" in printed
    assert f"run folder: {out}" in printed and f"python -m agents.train_ppo --output-dir {out} --resume auto" in printed
    config = json.loads((out / "config.json").read_text())
    assert (config["model"]["critic"], config["objective"]["gamma"], config["objective"]["lam"]) == ("separate", 0.99, 0.9)
    records = read_metrics(out / "metrics.jsonl")
    assert len(records) == 2
    # before the first update of a step the recomputed log-probs equal the rollout's (token in, token out)
    assert all(r["logprob_mismatch"] < 1e-4 for r in records)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"


# ----------------------------------------------------------------------------------------------
# learning (slow)


@pytest.mark.slow
def test_ppo_raises_the_return_of_the_embedded_model(tmp_path) -> None:
    """The default run (embedded tiny model, built-in simulator, separate critic) improves the mean episode return."""
    cfg = PPOConfig.from_options(output_dir=str(tmp_path / "run"), progress=False, tensorboard=False, transcripts=False, save_every=0)
    trainer = Trainer(cfg, algorithm=PPO)
    history = trainer.fit()
    trainer.close()
    window = max(3, len(history) // 5)
    first = sum(m["return"] for m in history[:window]) / window
    last = sum(m["return"] for m in history[-window:]) / window
    assert last > first + 0.05, (first, last)
    # the critic predicts the returns-to-go better than a constant by the end
    assert sum(m["explained_variance"] for m in history[-window:]) / window > 0.0


def test_mixed_precision_trains_a_float32_separate_critic_in_bfloat16(model_dir, tmp_path) -> None:  # noqa: F811
    """The separate critic copies the policy's float32 master weights and computes under the policy's autocast."""
    cfg = small_config(tmp_path, model=str(model_dir), dtype="bfloat16", device="cpu", steps=1, critic="separate", lr=1e-3)
    trainer = Trainer(cfg, algorithm=PPO)
    assert trainer.policy.autocast_dtype == torch.bfloat16
    assert {p.dtype for p in trainer.algorithm.critic.backbone.parameters()} == {torch.float32}
    before = state(trainer.algorithm.critic)
    metrics = trainer.train_step()
    trainer.close()
    assert math.isfinite(metrics["value_loss"]) and metrics["logprob_mismatch"] < 0.1
    assert any(not torch.equal(before[n], v) for n, v in state(trainer.algorithm.critic).items())
