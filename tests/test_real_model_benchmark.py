"""benchmarks/real_model.py at a tiny size on the embedded tiny chat model (offline, seconds).

The benchmark's figures are only worth reading if both sides do the same work: the same number
of sampled tokens, the same trained tokens, and a bare update that optimizes the same objective
as ours. These tests check that, not the timings.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "real_model.py"
TINY = ["--model", "tiny", "--batch", "4", "--group-size", "2", "--new-tokens", "6", "--repeats", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def real_model():
    spec = importlib.util.spec_from_file_location("real_model_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_sides_do_the_same_work_and_the_ratios_are_printed(real_model, capsys, tmp_path) -> None:
    result = real_model.main([*TINY, "--prompt-words", "30", "--json", str(tmp_path / "figures.json")])
    out = capsys.readouterr().out

    assert result["sampled_tokens"] == 4 * 6  # every row ran to the budget on both sides (checked inside too)
    assert len(result["prompt_tokens"]) == 4 and min(result["prompt_tokens"]) > 30  # 30-word user messages after the system prompt
    for part in ("sampler", "update"):
        assert len(result["seconds"][part]["ours"]) == len(result["seconds"][part]["bare"]) == 1  # the warm-up left out
        assert result["summary"][part]["ratio"] > 0
    assert "ratio (sampler, ours / bare generate):" in out and "ratio (update, ours / bare forward+backward+AdamW):" in out
    assert (tmp_path / "figures.json").is_file()


def test_the_bare_update_takes_the_same_step_as_ours_from_the_same_weights(real_model, tmp_path) -> None:
    args = argparse.Namespace(
        model="tiny", device="cpu", batch=4, group_size=2, new_tokens=6, lora_r=0, lr=1e-4, threads=1, seed=0
    )
    cfg = real_model.train_config(args, tmp_path / "run")
    policy = real_model.load_policy(cfg, log=lambda line: None)
    trainer = real_model.Trainer(cfg, algorithm=real_model.GRPO, policy=policy, log=lambda line: None)
    try:
        batch = trainer.rollout(step=1)
        advantages = trainer.compute_advantages(batch)
        advantages.trainable[:] = True
        advantages.advantages[:] = torch.tensor([1.0, -1.0, 0.5, -0.5])  # every dialogue pulls, whatever the rewards were
        start = {k: v.clone() for k, v in policy.model.state_dict().items()}

        trainer.update(batch, advantages, step=2)
        ours = {k: v - start[k] for k, v in policy.model.state_dict().items()}
        policy.model.load_state_dict(start)
        real_model.BareUpdate(policy, cfg)(batch.episodes, advantages.advantages, list(range(len(batch.episodes))))
        bare = {k: v - start[k] for k, v in policy.model.state_dict().items()}
    finally:
        trainer.close()

    ours_step, bare_step = torch.cat([d.flatten() for d in ours.values()]), torch.cat([d.flatten() for d in bare.values()])
    assert ours_step.norm() > 0
    assert torch.nn.functional.cosine_similarity(ours_step, bare_step, dim=0) > 0.99
    assert bare_step.norm() / ours_step.norm() == pytest.approx(1.0, rel=0.05)
