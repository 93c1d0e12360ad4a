"""The evaluator: scores from known transcripts, the manifest, resuming, outputs, the agent adapters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.cli import UsageError
from agents.eval.agent_api import AgentError, HFAgent, OpenAIChatAgent, ReferenceAgent, make_agent, policy_folder
from agents.eval.evaluate import EvalSettings, episode_seed, evaluate
from agents.eval.report import PLOTS, Scoring, compare_reports, score_records
from agents.evaluate import main
from sage_gym.scenarios import write_scenarios
from sage_gym.simulators import BuiltinSimulator, SimulatorError
from tests.conftest import make_scenario
from tests.test_strategies import fake_chat_endpoint

FAST = dict(progress=False, plots=False)


def record(sid, intention, character, finals, outcome, repeat=0, initial=40):
    """A transcript record as the evaluator writes it, with the emotion after each agent turn."""
    turns = [{"emotion": e, "agent_reply": "x", "user_reply": "y", "strategies": []} for e in finals]
    return {
        "scenario_id": sid, "repeat": repeat, "hidden_intention": intention, "character_type": character,
        "initial_emotion": initial, "final_emotion": finals[-1] if finals else initial, "outcome": outcome, "turns": turns,
    }


KNOWN = [
    record("a", "venting", "negative", [50, 60, 80, 100], "success"),
    record("b", "venting", "passive", [30, 20, 5], "failure"),
    record("c", "concrete_advice", "negative", [45, 50, 55, 60, 60, 60, 60, 60, 60, 60], "truncated"),
    record("d", "concrete_advice", "avoidant", [45], "error"),  # a failed simulator: reported, never scored
]


def test_scores_from_known_transcripts_equal_hand_computed_values():
    report = score_records(KNOWN)
    results = report["results"]
    assert results["n"] == 3
    assert results["score"]["mean"] == pytest.approx((100 + 5 + 60) / 3, abs=1e-4)
    assert results["success_share"]["mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert results["failure_share"]["mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert results["mean_turns"]["mean"] == pytest.approx((4 + 3 + 10) / 3, abs=1e-4)
    assert report["by_intention"]["venting"]["score"]["mean"] == 52.5
    assert report["by_intention"]["concrete_advice"]["n"] == 1 and report["by_intention"]["concrete_advice"]["score"]["mean"] == 60
    assert report["by_intention_group"]["emotional"]["n"] == 2 and report["by_intention_group"]["rational"]["n"] == 1
    assert report["by_character"]["negative"]["score"]["mean"] == 80 and report["by_character"]["passive"]["failure_share"]["mean"] == 1
    assert "avoidant" not in report["by_character"]
    assert report["outcomes"] == {"error": 1, "failure": 1, "success": 1, "truncated": 1}
    assert report["grades"] == {"S": 1, "A": 0, "B": 1, "C": 0, "F": 1}
    assert report["errors"] == [{"scenario_id": "d", "repeat": 0, "error": None}]
    # the mean emotion by turn holds each dialogue at its final value once it ended
    by_turn = report["mean_emotion_by_turn"]
    assert len(by_turn) == 11 and by_turn[0] == 40
    assert by_turn[1] == pytest.approx((50 + 30 + 45) / 3, abs=1e-4)
    assert by_turn[4] == pytest.approx((100 + 5 + 60) / 3, abs=1e-4)
    assert by_turn[-1] == pytest.approx(results["score"]["mean"])


def test_thresholds_come_from_the_rules():
    report = score_records(KNOWN, Scoring(success_at=80, failure_below=25))
    assert report["results"]["success_share"]["mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["results"]["failure_share"]["mean"] == pytest.approx(1 / 3, abs=1e-4)
    report = score_records(KNOWN, Scoring(success_at=60, failure_below=4))
    assert report["results"]["success_share"]["mean"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["results"]["failure_share"]["mean"] == 0


def test_bootstrap_intervals_are_seeded_and_independent_of_record_order():
    records = [record(f"s{i}", "venting", "negative", [int(v)], "truncated") for i, v in enumerate(np.random.default_rng(0).integers(0, 101, 40))]
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    a, b = score_records(records), score_records(shuffled)
    assert a == b
    low, high = a["results"]["score"]["ci"]
    assert low < a["results"]["score"]["mean"] < high
    other = score_records(records, Scoring(seed=7))["results"]["score"]["ci"]
    assert other != [low, high]
    narrow = score_records(records, Scoring(confidence=0.5))["results"]["score"]["ci"]
    assert low < narrow[0] < narrow[1] < high


@given(st.lists(st.integers(0, 100), min_size=1, max_size=30))
def test_scores_are_means_and_intervals_stay_within_the_data(finals):
    records = [record(f"s{i}", "deep_empathy", "avoidant", [f], "truncated") for i, f in enumerate(finals)]
    results = score_records(records, Scoring(bootstrap_samples=200))["results"]
    assert results["score"]["mean"] == pytest.approx(np.mean(finals), abs=1e-4)
    assert results["success_share"]["mean"] == pytest.approx(np.mean([f == 100 for f in finals]), abs=1e-4)
    assert results["failure_share"]["mean"] == pytest.approx(np.mean([f < 10 for f in finals]), abs=1e-4)
    low, high = results["score"]["ci"]
    assert min(finals) - 1e-6 <= low <= results["score"]["mean"] + 1e-4 and results["score"]["mean"] - 1e-4 <= high <= max(finals) + 1e-6


def test_episode_seeds_depend_on_seed_scenario_and_repeat_only():
    assert episode_seed(0, "a", 0) == episode_seed(0, "a", 0)
    assert len({episode_seed(0, "a", 0), episode_seed(1, "a", 0), episode_seed(0, "b", 0), episode_seed(0, "a", 1)}) == 4


# ----------------------------------------------------------------------------------------------
# running evaluations


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    from sage_gym.scenarios import CHARACTER_TYPES, HIDDEN_INTENTIONS

    path = tmp_path_factory.mktemp("scenarios") / "small.jsonl"
    write_scenarios([make_scenario(f"t-{i}-{c}", intention=i, character=c) for i in HIDDEN_INTENTIONS for c in CHARACTER_TYPES], path)
    return path


def test_sage_settings_are_the_defaults():
    settings = EvalSettings()
    assert (settings.scenarios, settings.initial_emotion, settings.max_turns, settings.change_clip) == ("eval", 40, 10, (-10, 10))
    from agents.evaluate import build_parser

    args = build_parser().parse_args(["--agent", "empathic"])
    assert (args.scenarios, args.initial_emotion, args.max_turns, args.change_clip) == ("eval", 40, 10, [-10, 10])


def test_evaluation_writes_every_output_with_a_complete_manifest(tmp_path, scenario_file):
    settings = EvalSettings(scenarios=str(scenario_file), limit=6, max_turns=4, num_envs=4, seed=3)
    report = evaluate(ReferenceAgent("empathic"), tmp_path, settings, progress=False)

    for name in ("report.json", "transcripts.jsonl", "summary.md", "manifest.json", *PLOTS):
        assert (tmp_path / name).is_file(), name
    for name in PLOTS:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "report.json").read_text()) == report
    lines = (tmp_path / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == 6 and report["results"]["n"] == 6
    first = json.loads(lines[0])
    assert first["turns"] and all(isinstance(t["strategies"], list) for t in first["turns"])
    assert first["seed"] == episode_seed(3, first["scenario_id"], 0)

    manifest = report["manifest"]
    assert manifest["agent"]["kind"] == "reference" and manifest["agent"]["name"] == "empathic" and manifest["agent"]["source_sha256"]
    env = manifest["environment"]
    assert env["simulator"]["kind"] == "builtin" and env["simulator"]["model"] and "noise_std" in env["simulator"]
    assert env["rules"] == {"initial_emotion": 40, "change_clip": [-10, 10], "success_at": 100, "failure_below": 10, "max_turns": 4}
    assert len(env["prompts_sha256"]) == 64 and len(env["scenarios"]["sha256"]) == 64 and env["scenarios"]["count"] == 24
    evaluation = manifest["evaluation"]
    assert evaluation["seed"] == 3 and evaluation["episodes"] == 6 and evaluation["limit"] == 6 and len(evaluation["episodes_sha256"]) == 64
    assert evaluation["bootstrap_samples"] == 2000 and evaluation["confidence"] == 0.95
    assert manifest["package"]["version"] and manifest["strategy_tagger"]["rule"]["sha256"] and manifest["strategy_judge"] is None
    assert report["strategies"]["rule"]["turns"] == sum(len(json.loads(line)["turns"]) for line in lines)
    assert report["strategies"]["rule"]["styles"]["empathic"] > 0.9  # the empathic agent's mix shows it
    summary = (tmp_path / "summary.md").read_text()
    assert "empathic" in summary and f"{report['results']['score']['mean']:.1f}" in summary
    assert f"version {env['simulator']['version']}" in summary  # which built-in user judged (v0 or v1)


class Interrupting:
    """Wraps an agent and raises KeyboardInterrupt at its n-th reply batch (a user pressing Ctrl-C)."""

    def __init__(self, agent, after: int) -> None:
        self.agent, self.after, self.calls = agent, after, 0
        self.name = agent.name

    def begin(self, slot, seed):
        self.agent.begin(slot, seed)

    def act(self, slots, infos):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.agent.act(slots, infos)

    def manifest(self):
        return self.agent.manifest()


@pytest.mark.parametrize("agent_name", ["random", "empathic"])
def test_an_interrupted_evaluation_resumes_to_the_same_report(tmp_path, scenario_file, agent_name):
    settings = EvalSettings(scenarios=str(scenario_file), limit=12, max_turns=4, num_envs=4)
    whole = evaluate(ReferenceAgent(agent_name), tmp_path / "whole", settings, **FAST)

    with pytest.raises(KeyboardInterrupt):
        evaluate(Interrupting(ReferenceAgent(agent_name), after=7), tmp_path / "resumed", settings, **FAST)
    written = (tmp_path / "resumed" / "transcripts.jsonl").read_text().splitlines()
    assert 0 < len(written) < 12  # stopped part-way, with finished dialogues saved
    # resumed with a different batch width: the dialogues must not depend on their neighbours
    resumed = evaluate(ReferenceAgent(agent_name), tmp_path / "resumed", EvalSettings(**{**settings.__dict__, "num_envs": 3}), **FAST)

    assert resumed["run"]["resumed_from"] == len(written)
    assert {k: v for k, v in resumed.items() if k != "run"} == {k: v for k, v in whole.items() if k != "run"}
    keys = [(r["scenario_id"], r["repeat"]) for r in map(json.loads, (tmp_path / "resumed" / "transcripts.jsonl").read_text().splitlines())]
    assert len(keys) == len(set(keys)) == 12
    again = evaluate(ReferenceAgent(agent_name), tmp_path / "resumed", settings, **FAST)  # nothing left to do
    assert again["run"]["dialogues_this_run"] == 0 and again["results"] == whole["results"]


def test_a_folder_with_other_settings_is_not_resumed(tmp_path, scenario_file):
    settings = EvalSettings(scenarios=str(scenario_file), limit=2, max_turns=2)
    evaluate(ReferenceAgent("empathic"), tmp_path, settings, **FAST)
    with pytest.raises(ValueError, match="evaluation.max_turns"):
        evaluate(ReferenceAgent("empathic"), tmp_path, EvalSettings(scenarios=str(scenario_file), limit=2, max_turns=3), **FAST)
    with pytest.raises(ValueError, match="agent.name"):
        evaluate(ReferenceAgent("solution"), tmp_path, settings, **FAST)
    fresh = evaluate(ReferenceAgent("solution"), tmp_path, settings, overwrite=True, **FAST)
    assert fresh["manifest"]["agent"]["name"] == "solution" and fresh["results"]["n"] == 2


def test_failed_dialogues_are_reported_and_excluded_never_scored_zero(tmp_path, scenario_file):
    class FailsOnPraise(BuiltinSimulator):
        async def react(self, scenario, state, history, agent_reply):
            if scenario.hidden_intention == "specific_praise" and state.turn >= 1:
                raise SimulatorError("endpoint unreachable (test)")
            return await super().react(scenario, state, history, agent_reply)

    settings = EvalSettings(scenarios=str(scenario_file), max_turns=3, num_envs=5)
    report = evaluate(ReferenceAgent("empathic"), tmp_path / "failing", settings, **FAST)
    clean = evaluate(ReferenceAgent("empathic"), tmp_path / "clean", settings, **FAST)
    failing = evaluate(ReferenceAgent("empathic"), tmp_path / "failing2", EvalSettings(**{**settings.__dict__, "simulator": FailsOnPraise()}), **FAST)

    assert report["results"] == clean["results"]
    assert failing["results"]["n"] == 21 and len(failing["errors"]) == 3 and failing["outcomes"]["error"] == 3
    assert all("endpoint unreachable" in e["error"] for e in failing["errors"])
    assert "specific_praise" not in failing["by_intention"]
    # the scored dialogues are exactly the clean run's other 21
    kept = [json.loads(line) for line in (tmp_path / "clean" / "transcripts.jsonl").read_text().splitlines()]
    expected = np.mean([r["final_emotion"] for r in kept if r["hidden_intention"] != "specific_praise"])
    assert failing["results"]["score"]["mean"] == pytest.approx(expected, abs=1e-4)


def test_reference_agents_order_as_expected_on_the_eval_split(tmp_path):
    scores = {}
    for name in ("empathic", "solution", "dismissive"):
        scores[name] = evaluate(ReferenceAgent(name), tmp_path / name, EvalSettings(), **FAST)["results"]["score"]["mean"]
    assert scores["empathic"] > scores["solution"] > scores["dismissive"], scores


def test_compare_prints_a_table_of_reports(tmp_path, scenario_file, capsys):
    settings = EvalSettings(scenarios=str(scenario_file), limit=4, max_turns=3)
    a = evaluate(ReferenceAgent("empathic"), tmp_path / "a", settings, **FAST)
    b = evaluate(ReferenceAgent("dismissive"), tmp_path / "b", settings, **FAST)
    main(["--compare", str(tmp_path / "a" / "report.json"), str(tmp_path / "b")])
    table = capsys.readouterr().out
    assert table == compare_reports([tmp_path / "a", tmp_path / "b"]) + "\n"
    rows = table.split("\n\n")[0].splitlines()  # the table, then the paired differences (tests/test_trust.py)
    assert len(rows) == 4 and "empathic" in rows[2] and "dismissive" in rows[3]
    assert f"{a['results']['score']['mean']:.1f}" in rows[2] and f"{b['results']['score']['mean']:.1f}" in rows[3]
    with pytest.raises(FileNotFoundError, match="no evaluation report"):
        compare_reports([tmp_path / "missing"])


def test_command_line_runs_a_reference_agent(tmp_path, scenario_file, capsys):
    out = tmp_path / "cli"
    report = main(["--agent", "solution", "--scenarios", str(scenario_file), "--limit", "3", "--max-turns", "2", "--initial-emotion", "30",
                   "--output", str(out), "--no-progress", "--no-plots", "--seed", "5"])
    assert report["results"]["n"] == 3 and report["manifest"]["environment"]["rules"]["initial_emotion"] == 30
    assert report["manifest"]["evaluation"]["seed"] == 5
    assert "Results" in capsys.readouterr().out
    with pytest.raises(UsageError, match="needs --model"):
        main(["--agent", "hf"])  # a usage error: exit status 2
    with pytest.raises(ValueError, match="unknown agent kind"):
        make_agent("nobody")


# ----------------------------------------------------------------------------------------------
# the agent adapters: an OpenAI-compatible endpoint, a local Hugging Face model


def test_openai_compatible_endpoint_as_the_agent(tmp_path, scenario_file, monkeypatch):
    monkeypatch.setenv("SAGE_TEST_AGENT_KEY", "sk-agent-secret")

    def respond(request):
        last = request["messages"][-1]["content"]
        return f"<think>They said {len(last)} characters.</think>That sounds really hard. What has been the hardest part of the bakery for you?"

    with fake_chat_endpoint(respond) as (base_url, requests):
        agent = OpenAIChatAgent(base_url, "agent-model", api_key_env="SAGE_TEST_AGENT_KEY", temperature=0.3, max_tokens=99)
        report = evaluate(agent, tmp_path, EvalSettings(scenarios=str(scenario_file), limit=3, max_turns=2), **FAST)

    assert report["results"]["n"] == 3 and len(requests) == 6
    first = requests[0]
    assert first["model"] == "agent-model" and first["temperature"] == 0.3 and first["max_tokens"] == 99
    assert len({r["seed"] for r in requests}) == 6  # each dialogue and turn its own sampling seed
    assert first["messages"][0]["role"] == "system" and first["messages"][1]["role"] == "user"
    assert first["headers"]["authorization"] == "Bearer sk-agent-secret"
    second_turn = [r for r in requests if len(r["messages"]) == 4]
    assert second_turn and all("<think>" not in m["content"] for r in second_turn for m in r["messages"])  # only visible replies go back
    transcript = [json.loads(line) for line in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    assert all(t["agent_reply"].startswith("That sounds really hard") and t["thinking"] for r in transcript for t in r["turns"])
    manifest = report["manifest"]["agent"]
    assert (manifest["kind"], manifest["model"], manifest["base_url"], manifest["temperature"], manifest["template"]) == ("openai", "agent-model", base_url, 0.3, "direct")
    for name in ("report.json", "transcripts.jsonl", "manifest.json"):
        assert "sk-agent-secret" not in (tmp_path / name).read_text()


def test_the_llm_judge_tags_every_turn_of_an_evaluation(tmp_path, scenario_file):
    answers = iter(['{"strategies": ["deep_empathy", "questioning"]}'] * 5 + ["unusable"] * 100)

    with fake_chat_endpoint(lambda request: next(answers)) as (base_url, requests):
        from agents.replies.strategies import LLMStrategyJudge

        judge = LLMStrategyJudge(base_url, "judge-model", max_retries=0)
        report = evaluate(ReferenceAgent("empathic"), tmp_path, EvalSettings(scenarios=str(scenario_file), limit=3, max_turns=3), judge=judge, **FAST)

    turns = [t for line in (tmp_path / "transcripts.jsonl").read_text().splitlines() for t in json.loads(line)["turns"]]
    assert len(requests) == len(turns) == 9
    judged = [t for t in turns if t["judge_strategies"] is not None]
    assert len(judged) == 5 and all(t["judge_strategies"] == ["deep_empathy", "questioning"] for t in judged)
    assert all("judge-model" in t["judge_error"] for t in turns if t["judge_strategies"] is None)
    mix = report["strategies"]["judge"]
    assert mix["turns"] == 5 and mix["errors"] == 4 and mix["strategies"]["deep_empathy"] == 1.0
    assert report["manifest"]["strategy_judge"]["model"] == "judge-model"
    assert "LLM judge `judge-model`" in (tmp_path / "summary.md").read_text()


def test_a_failing_agent_endpoint_stops_the_evaluation_loudly(tmp_path, scenario_file, monkeypatch):
    monkeypatch.setenv("SAGE_TEST_AGENT_KEY", "sk-agent-secret")
    with fake_chat_endpoint(lambda request: 503) as (base_url, _):
        agent = OpenAIChatAgent(base_url, "agent-model", api_key_env="SAGE_TEST_AGENT_KEY", max_retries=1)
        with pytest.raises(AgentError, match="agent-model") as caught:
            evaluate(agent, tmp_path, EvalSettings(scenarios=str(scenario_file), limit=2, max_turns=2), **FAST)
    assert base_url in str(caught.value) and "sk-agent-secret" not in str(caught.value)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2 chat model with a byte-level BPE tokenizer, built in code (no downloads)."""
    from agents.replies.baselines import TEMPLATES
    from agents.learn.tiny_model import TinyModelSpec, train_tokenizer, tiny_random_model

    texts = [t for options in TEMPLATES.values() for t in options] + [make_scenario().first_message, make_scenario().background.story]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    model = tiny_random_model(tokenizer, TinyModelSpec(hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64))
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_local_hugging_face_model_as_the_agent(tmp_path, scenario_file, tiny_model_dir):
    settings = EvalSettings(scenarios=str(scenario_file), limit=3, max_turns=2, num_envs=2)
    agent = make_agent("hf", model=str(tiny_model_dir), template="direct", max_new_tokens=12, device="cpu")
    report = evaluate(agent, tmp_path / "a", settings, **FAST)
    assert report["results"]["n"] == 3
    manifest = report["manifest"]["agent"]
    assert manifest["kind"] == "hf" and manifest["model"] == str(tiny_model_dir) and manifest["adapter"] is None
    assert manifest["temperature"] == 0.0 and manifest["max_new_tokens"] == 12 and len(manifest["weights_sha256"]) == 64
    # greedy decoding: the same model gives the same dialogues, whatever the batch width
    evaluate(HFAgent(str(tiny_model_dir), template="direct", max_new_tokens=12, device="cpu"), tmp_path / "b", EvalSettings(**{**settings.__dict__, "num_envs": 1}), **FAST)
    replies = lambda folder: sorted((r["scenario_id"], [t["agent_reply"] for t in r["turns"]]) for r in map(json.loads, (folder / "transcripts.jsonl").read_text().splitlines()))  # noqa: E731
    assert replies(tmp_path / "a") == replies(tmp_path / "b")


def test_sampled_hf_agent_plays_each_dialogue_alike_whatever_the_batch(tmp_path, scenario_file, tiny_model_dir):
    """Each dialogue samples from its own stream (agent seed, episode seed, turn): a rerun, or a
    resume with other batch partners, replays it exactly."""
    settings = EvalSettings(scenarios=str(scenario_file), limit=3, max_turns=2, num_envs=3)
    options = dict(model=str(tiny_model_dir), template="direct", max_new_tokens=12, temperature=1.0, device="cpu")
    evaluate(make_agent("hf", **options), tmp_path / "a", settings, **FAST)
    evaluate(make_agent("hf", **options), tmp_path / "b", EvalSettings(**{**settings.__dict__, "num_envs": 1}), **FAST)
    evaluate(make_agent("hf", **options, seed=1), tmp_path / "c", settings, **FAST)
    replies = lambda folder: sorted((r["scenario_id"], [t["agent_reply"] for t in r["turns"]]) for r in map(json.loads, (folder / "transcripts.jsonl").read_text().splitlines()))  # noqa: E731
    assert replies(tmp_path / "a") == replies(tmp_path / "b")
    assert replies(tmp_path / "a") != replies(tmp_path / "c")


def test_lora_adapter_as_the_agent(tmp_path, scenario_file, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter_dir)
    (adapter_dir / "sage_policy.json").write_text(json.dumps({"lora": True, "system_prompt": "Be kind."}))

    agent = HFAgent(str(adapter_dir), max_new_tokens=8, device="cpu")
    assert agent.template == "checkpoint" and agent.system_prompt == "Be kind."  # the prompt the checkpoint was trained with
    report = evaluate(agent, tmp_path / "eval", EvalSettings(scenarios=str(scenario_file), limit=2, max_turns=2), **FAST)
    manifest = report["manifest"]["agent"]
    assert manifest["adapter"] == str(adapter_dir) and manifest["model"] == str(tiny_model_dir) and report["results"]["n"] == 2


def test_checkpoint_and_training_run_folders_lead_to_their_policy(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step-000004"
    (step / "policy").mkdir(parents=True)
    (step / "policy" / "sage_policy.json").write_text("{}")
    (step / "trainer.pt").write_bytes(b"")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-000004\n")
    assert policy_folder(step) == step / "policy"
    assert policy_folder(tmp_path / "run") == step / "policy"  # the latest checkpoint of a run
    assert policy_folder(tmp_path / "model") == tmp_path / "model"
