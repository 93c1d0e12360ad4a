"""torchrun on CPU: two gloo ranks reproduce the single-process update on the same global batch.

Each test launches real `torchrun` jobs of `python -m agents.train_grpo` / `train_ppo` (two
processes talking over loopback) on a tiny model saved to disk, and compares what they wrote
with a single-process run of the same configuration: the metrics of the step and the weights
after it. The runs differ only in how the batch is split over ranks, so everything must agree
to floating-point noise (padding and summation order differ).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agents.learn.checkpoint import find_checkpoint
from agents.learn.distributed import Distributed, init_distributed
from tests.tiny import model_dir, one_thread, tokenizer  # noqa: F401  (fixtures)



LR = 1e-2
# Adam divides each gradient by its own magnitude, so on weights with a near-zero gradient (rare
# tokens' embeddings) summation-order noise can move the step by a fraction of the learning rate;
# the gradients themselves are compared through grad_norm and the losses at 1e-4
WEIGHT_ATOL = LR / 50


def common(steps: int = 1) -> list[str]:
    """Options of every run: steps of 4 scenarios x 2 dialogues, two mini-batches (every rank has part of
    each), one dialogue per micro-batch (so ranks hold different numbers and run dummy passes)."""
    return [
    "--steps", str(steps), "--group-size", "2", "--scenarios-per-step", "4", "--max-turns", "2", "--max-new-tokens", "8",
    "--minibatches", "2", "--micro-batch-tokens", "1", "--lr", str(LR), "--device", "cpu", "--dtype", "float32", "--threads", "1",
    "--no-progress", "--no-tensorboard", "--no-transcripts", "--save-every", "0", "--seed", "3",
    ]  # fmt: skip


def run(module: str, args: list[str], ranks: int, cwd: Path) -> None:
    """One training command, as one process or as a torchrun job of `ranks` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(Path(__file__).parent.parent)}
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    result = subprocess.run([*launcher, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{module} with {ranks} rank(s) failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def metrics(output: Path) -> dict[str, float]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def weights(output: Path, name: str = "policy") -> dict[str, torch.Tensor]:
    folder = find_checkpoint(output, "auto") / name
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


def assert_same_run(single: Path, multi: Path, keys: tuple[str, ...], initial: dict[str, torch.Tensor]) -> None:
    a, b = metrics(single), metrics(multi)
    for key in ("return", "emotion", "policy_tokens", "groups", "skipped_groups"):
        assert a[key] == pytest.approx(b[key], rel=0, abs=1e-9), key  # the same dialogues, sampled alike
    for key in keys:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    wa, wb = weights(single), weights(multi)
    assert wa.keys() == wb.keys() and wa
    moved = 0
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=WEIGHT_ATOL, msg=lambda m: f"{name}: {m}")
        moved += int(name in initial and not torch.equal(wa[name], initial[name]))
    if not initial:  # LoRA: the adapters' B matrices start at zero
        moved = sum(int(bool(wa[name].any())) for name in wa if "lora_B" in name)
    assert moved > 0, "the update changed no weight: the comparison proves nothing"


@pytest.mark.parametrize("parallel, extra", [("ddp", ["--lora", "--lora-r", "4"]), ("fsdp2", [])], ids=["ddp-lora", "fsdp2-full"])
def test_two_gloo_ranks_make_the_single_process_grpo_update(model_dir: Path, tmp_path: Path, parallel: str, extra: list[str]) -> None:
    args = [*common(), "--model", str(model_dir), "--beta", "0.05", *extra]
    run("agents.train_grpo", [*args, "--output-dir", str(tmp_path / "one")], 1, tmp_path)
    run("agents.train_grpo", [*args, "--output-dir", str(tmp_path / "two"), "--parallel", parallel], 2, tmp_path)
    initial = {} if extra else load_file(str(model_dir / "model.safetensors"))  # LoRA adapters start at B = 0
    assert_same_run(tmp_path / "one", tmp_path / "two", ("pg_loss", "kl", "grad_norm", "clip_fraction", "entropy"), initial)
    assert not (tmp_path / "two" / "transcripts-rank1.jsonl").exists()  # --no-transcripts on every rank


@pytest.mark.parametrize("parallel, critic", [("fsdp2", "separate"), ("ddp", "head")])
def test_two_gloo_ranks_make_the_single_process_ppo_update(model_dir: Path, tmp_path: Path, parallel: str, critic: str) -> None:
    args = [*common(), "--model", str(model_dir), "--critic", critic, "--critic-lr", "1e-3"]
    run("agents.train_ppo", [*args, "--output-dir", str(tmp_path / "one")], 1, tmp_path)
    run("agents.train_ppo", [*args, "--output-dir", str(tmp_path / "two"), "--parallel", parallel], 2, tmp_path)
    initial = load_file(str(model_dir / "model.safetensors"))
    assert_same_run(tmp_path / "one", tmp_path / "two", ("pg_loss", "value_loss", "explained_variance", "grad_norm", "critic_grad_norm"), initial)
    ca = torch.load(find_checkpoint(tmp_path / "one", "auto") / "trainer.pt", weights_only=False)["critic"]
    cb = torch.load(find_checkpoint(tmp_path / "two", "auto") / "trainer.pt", weights_only=False)["critic"]
    assert ca["weights"].keys() == cb["weights"].keys()
    for name, value in ca["weights"].items():
        torch.testing.assert_close(cb["weights"][name], value, rtol=0, atol=WEIGHT_ATOL)


def test_a_checkpoint_of_two_sharded_ranks_resumes_on_one_process(model_dir: Path, tmp_path: Path) -> None:
    """Whole weights and name-keyed optimizer state: FSDP2 on 2 ranks, then 1 process, equals 1 process throughout."""
    args = [*common(steps=2), "--model", str(model_dir)]
    run("agents.train_grpo", [*args, "--output-dir", str(tmp_path / "straight")], 1, tmp_path)
    run("agents.train_grpo", [*args, "--output-dir", str(tmp_path / "mixed"), "--parallel", "fsdp2", "--steps", "1"], 2, tmp_path)
    run("agents.train_grpo", [*args, "--output-dir", str(tmp_path / "mixed"), "--resume", "auto"], 1, tmp_path)
    straight = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    mixed = [json.loads(line) for line in (tmp_path / "mixed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in mixed] == [1, 2]
    assert [m["return"] for m in mixed] == pytest.approx([m["return"] for m in straight], abs=1e-9)
    wa, wb = weights(tmp_path / "straight"), weights(tmp_path / "mixed")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=WEIGHT_ATOL)


def test_a_single_process_needs_no_process_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = init_distributed("cpu")
    assert dist == Distributed() and not dist.is_distributed
    assert dist.sum([1.0, 2.0]) == [1.0, 2.0] and dist.gather("x") == ["x"]


def test_two_sharded_ranks_train_float32_master_weights_in_bfloat16(model_dir: Path, tmp_path: Path) -> None:
    """FSDP2's mixed precision: float32 shards (what the checkpoint holds), bfloat16 compute, float32 reduction."""
    args = [*common(), "--model", str(model_dir), "--dtype", "bfloat16", "--parallel", "fsdp2", "--output-dir", str(tmp_path / "two")]
    run("agents.train_grpo", args, 2, tmp_path)
    saved, initial = weights(tmp_path / "two"), load_file(str(model_dir / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.float32}
    assert any(not torch.equal(saved[name], initial[name]) for name in saved)
    assert metrics(tmp_path / "two")["logprob_mismatch"] < 0.1  # rollout and loss both in bfloat16
