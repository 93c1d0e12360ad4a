"""Training runs fail loudly and never mix: a simulator that is down, dropped dialogues, run folders,
`--resume auto`, missing model paths, torchrun with FSDP2, and the exit codes of the commands."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agents.cli import UsageError, run_main
from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.learn.metrics import read_metrics
from agents.policy.loading import LoraSettings
from agents.policy.model import Policy
from agents.learn.tiny_model import system_prompts, tiny_random_model
from agents.learn.trainer import Trainer
from sage_gym.simulators import BuiltinSimulator, SimulatorError
from tests.tiny import SMALL, model_dir, one_thread, tokenizer  # noqa: F401  (fixtures)

DATA = Path(__file__).parent / "data"

SMALL_RUN = ["--template", "direct", "--group-size", "2", "--scenarios-per-step", "2", "--max-turns", "2", "--max-new-tokens", "6",
             "--no-progress", "--no-tensorboard", "--no-transcripts", "--device", "cpu", "--threads", "1"]  # fmt: skip


def tiny_policy(tokenizer, lora: bool = False) -> Policy:
    model = tiny_random_model(tokenizer, SMALL, seed=0)
    return Policy.from_model(model, tokenizer, system_prompt=system_prompts()["direct"], lora=LoraSettings(r=4) if lora else None)


def small_config(output_dir: str | Path | None, **overrides) -> TrainConfig:
    values = dict(
        model="in-memory", template="direct", steps=1, group_size=2, scenarios_per_step=2, max_turns=2, max_new_tokens=6,
        lr=1e-3, output_dir=None if output_dir is None else str(output_dir), save_every=0, progress=False, tensorboard=False, transcripts=False,
    )
    values.update(overrides)
    return TrainConfig.from_options(**values)


def train(tokenizer, cfg: TrainConfig) -> Trainer:
    trainer = Trainer(cfg, algorithm=GRPO, policy=tiny_policy(tokenizer))
    trainer.fit()
    trainer.close()
    return trainer


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the block ends: nothing listens there


def command(module: str, args: list[str], capsys) -> tuple[int, list[str]]:
    """Run `python -m <module> args` in this process as its `__main__` does; (exit status, stderr lines)."""
    import importlib

    main = importlib.import_module(module)
    entry = getattr(main, "cli", None) or main.main
    status = run_main(lambda: entry(args), f"python -m {module}")
    return status, capsys.readouterr().err.strip().splitlines()


# ----------------------------------------------------------------------------------------------
# 1. a simulator that is down stops the run; dropped dialogues warn


@pytest.mark.parametrize("module, where", [("agents.train_grpo", "step"), ("agents.train_ppo", "held-out")])
def test_an_unreachable_simulator_ends_the_run_in_one_line_with_status_1(model_dir, tmp_path, capsys, module, where) -> None:  # noqa: F811
    url = f"http://127.0.0.1:{closed_port()}/v1"
    eval_limit = "1" if where == "held-out" else "0"  # the held-out check before step 1, or step 1 itself
    status, err = command(module, ["--model", str(model_dir), *SMALL_RUN, "--steps", "1", "--simulator", "openai", "--simulator-base-url", url,
                                   "--simulator-model", "m", "--simulator-kwargs", '{"max_retries": 0}', "--eval-limit", eval_limit,
                                   "--output-dir", str(tmp_path / "run")], capsys)  # fmt: skip
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f"python -m {module}: error: ")
    assert ("held-out check at step 0" if where == "held-out" else "step 1: the simulator failed all 4 dialogues") in err[0]
    assert url.removesuffix("/v1") in err[0]  # names the simulator's failure
    assert not (tmp_path / "run" / "checkpoints").exists()  # no checkpoint of a run that learned nothing


class FlakySimulator(BuiltinSimulator):
    """The built-in user, but every other dialogue it opens fails at its first reaction."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    async def open(self, scenario, rng, rules):
        state = await super().open(scenario, rng, rules)
        self.opened += 1
        return replace(state, memory={**state.memory, "doomed": self.opened % 2 == 1})

    async def react(self, scenario, state, history, agent_reply):
        if state.memory.get("doomed"):
            raise SimulatorError("the simulator's endpoint answered 503")
        return await super().react(scenario, state, history, agent_reply)


@pytest.mark.parametrize("share, warnings", [(0.2, 3), (0.5, 0)])
def test_a_step_that_drops_more_than_its_share_of_dialogues_warns_every_time(tokenizer, tmp_path, capsys, share, warnings) -> None:  # noqa: F811
    trainer = Trainer(small_config(tmp_path / "run", steps=3, max_dropped_share=share), algorithm=GRPO, policy=tiny_policy(tokenizer))
    flaky = FlakySimulator()
    trainer.envs.simulator = flaky
    for env in trainer.envs.envs:
        env.simulator = flaky
    history = trainer.fit()
    trainer.close()
    assert [m["dropped_errors"] for m in history] == [2, 2, 2]  # half of each step's 4 dialogues
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING: ")]
    assert len(lines) == warnings
    if warnings:
        assert lines[0].startswith("WARNING: step 1 dropped 2 of 4 dialogues (50%) to simulator errors") and "503" in lines[0]


# ----------------------------------------------------------------------------------------------
# 2. runs never mix


def test_runs_without_an_output_dir_get_their_own_folders_and_latest_points_at_the_newest(tokenizer, tmp_path, monkeypatch) -> None:  # noqa: F811
    from agents.eval.agent_api import model_name_of, policy_folder

    monkeypatch.chdir(tmp_path)
    first = train(tokenizer, small_config(None)).output_dir
    second = train(tokenizer, small_config(None)).output_dir
    root = Path("runs/grpo")
    assert first != second and first.parent == second.parent == root
    assert {p.name for p in root.iterdir()} == {first.name, second.name, "latest"}
    assert (root / "latest").resolve() == second.resolve()
    with pytest.raises(UsageError, match="holds several runs"):  # --overwrite never wipes every run at once
        Trainer(small_config(root, overwrite=True), algorithm=GRPO, policy=tiny_policy(tokenizer))
    for run in (first, second):  # each its own metrics and checkpoint; nothing appended or pruned
        assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1]
        assert (run / "checkpoints" / "step-000001" / "trainer.pt").is_file()
        assert json.loads((run / "config.json").read_text())["run"]["output_dir"] == str(run)
    # what takes a run folder takes the parent too, and follows latest
    assert policy_folder(root) == second / "checkpoints" / "step-000001" / "policy"
    assert model_name_of("runs/grpo", policy_folder(root)) == f"grpo-{second.name}-step-000001"
    from agents.evaluate import cli

    for model in ("runs/grpo", str(first)):  # each evaluation of a model gets its own default folder
        assert cli(["--agent", "hf", "--model", model, "--limit", "1", "--max-turns", "1", "--max-new-tokens", "4", "--no-progress", "--no-plots", "--device", "cpu"]) == 0
    assert sorted(p.name for p in Path("evaluations").iterdir()) == sorted(f"grpo-{run.name}-step-000001-eval" for run in (first, second))
    resumed = train(tokenizer, small_config(None, steps=2, resume="auto"))  # more steps: allowed
    assert resumed.output_dir == second
    assert [r["step"] for r in read_metrics(second / "metrics.jsonl")] == [1, 2]
    assert [r["step"] for r in read_metrics(first / "metrics.jsonl")] == [1]


def test_a_latest_text_file_is_followed_where_links_cannot_be_made(tmp_path) -> None:
    from agents.policy.run_folder import follow_latest

    (tmp_path / "20250101-120000").mkdir()
    (tmp_path / "latest").write_text("20250101-120000\n")
    assert follow_latest(tmp_path) == tmp_path / "20250101-120000"
    assert follow_latest(tmp_path / "20250101-120000") == tmp_path / "20250101-120000"


def test_an_output_dir_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tokenizer, model_dir, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "run"
    train(tokenizer, small_config(out))
    before = (out / "metrics.jsonl").read_text()
    status, err = command("agents.train_grpo", ["--model", str(model_dir), *SMALL_RUN, "--steps", "1", "--output-dir", str(out)], capsys)
    assert status == 2 and len(err) == 1 and "already holds a run" in err[0] and "--resume auto" in err[0] and "--overwrite" in err[0]
    assert (out / "metrics.jsonl").read_text() == before and (out / "checkpoints" / "step-000001").is_dir()
    (out / "notes.txt").write_text("from the first run")
    train(tokenizer, small_config(out, overwrite=True, seed=1))  # cleared first: only the new run's records
    assert not (out / "notes.txt").exists()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1] and (out / "metrics.jsonl").read_text() != before
    with pytest.raises(UsageError, match="choose one"):
        Trainer(small_config(out, overwrite=True, resume="auto"), algorithm=GRPO, policy=tiny_policy(tokenizer))


def test_resume_auto_refuses_a_configuration_that_differs_from_the_runs(tokenizer, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "run"
    train(tokenizer, small_config(out, steps=1))
    with pytest.raises(UsageError, match=r"differs from the run's in lr \(0.001 in the run, 0.01 now\), max_turns") as refused:
        Trainer(small_config(out, steps=2, resume="auto", lr=1e-2, max_turns=3), algorithm=GRPO, policy=tiny_policy(tokenizer))
    assert "\n" not in str(refused.value)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1]



def test_resume_auto_reads_a_flat_config_json_of_a_run_from_before_the_groups(tokenizer, tmp_path) -> None:  # noqa: F811
    """tests/data/flat_config.json is what a run wrote before the options were grouped (the options of small_config)."""
    out = tmp_path / "run"
    train(tokenizer, small_config(out, steps=1))
    assert set(json.loads((out / "config.json").read_text())) == {"model", "env", "rollout", "objective", "optimizer", "run"}
    (out / "config.json").write_text((DATA / "flat_config.json").read_text())
    with pytest.raises(UsageError, match=r"differs from the run's in lr \(0.001 in the run, 0.01 now\)"):
        Trainer(small_config(out, steps=2, resume="auto", lr=1e-2), algorithm=GRPO, policy=tiny_policy(tokenizer))
    resumed = train(tokenizer, small_config(out, steps=2, resume="auto"))
    assert resumed.step == 2 and [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]

# ----------------------------------------------------------------------------------------------
# 3. a missing model path is one line, at once; hub ids still go to the hub


@pytest.fixture
def hub(monkeypatch):
    """The hub as a recorder that is unreachable: what was asked of it, and no network."""
    import transformers

    asked: list[str] = []

    def from_pretrained(name, *args, **kwargs):
        asked.append(str(name))
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    return asked


@pytest.mark.parametrize("module", ["agents.train_grpo", "agents.train_ppo", "agents.evaluate"])
def test_a_missing_model_path_is_one_line_and_never_a_hub_lookup(tmp_path, monkeypatch, capsys, hub, module) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/ folder here, as in a fresh clone
    extra = ["--agent", "hf", "--limit", "1", "--no-progress"] if module == "agents.evaluate" else [*SMALL_RUN, "--steps", "1"]
    for missing in ("runs/nonexistent", "./runs/nonexistent", str(tmp_path / "models" / "nonexistent")):
        status, err = command(module, [*extra, "--model", missing], capsys)
        assert status == 2 and len(err) == 1 and err[0].startswith(f"python -m {module}: error: no model at {missing}: "), err
    assert hub == [] and not Path("runs").exists()  # no hub call, and no run folder for a run that never started
    status, err = command(module, [*extra, "--model", "some-org/some-model"], capsys)
    assert hub[:1] == ["some-org/some-model"] and status == 1 and "couldn't connect" in err[-1]


# ----------------------------------------------------------------------------------------------
# 4. torchrun with FSDP2 and otherwise default options


@pytest.mark.slow
def test_fsdp2_with_default_options_runs_and_says_the_held_out_check_is_skipped(tmp_path) -> None:
    """The embedded model's default held-out check needs the whole model on one rank: skipped, in one line at start."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(Path(__file__).parent.parent)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    args = ["-m", "agents.train_grpo", "--parallel", "fsdp2", "--device", "cpu", "--steps", "1", "--no-progress"]
    result = subprocess.run([*launcher, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    notices = [line for line in result.stdout.splitlines() if line.startswith("held-out evaluation is skipped")]
    assert len(notices) == 1 and "--parallel fsdp2" in notices[0]
    run = Path(tmp_path / "runs" / "grpo" / "latest").resolve()
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1] and not (run / "held_out").exists()


def test_held_out_evaluation_asked_for_under_fsdp2_is_refused_in_one_line(tokenizer, tmp_path) -> None:  # noqa: F811
    from agents.learn.distributed import Distributed

    cfg = small_config(tmp_path / "run", parallel="fsdp2", eval_limit=4)
    with pytest.raises(UsageError, match="held-out evaluation needs the whole model on one rank"):
        Trainer(cfg, algorithm=GRPO, dist=Distributed(rank=0, world_size=2), policy=tiny_policy(tokenizer))
