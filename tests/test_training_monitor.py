"""What a training run tells about itself: reply-quality and strategy metrics, canaries, held-out
evaluation and its gap, transcripts tagged with their step and never duplicated by a resume, and
no secret in anything a run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import UsageError
from agents.eval.live_policy import paired_gain, play_policy
from agents.eval.trust import compare
from agents.learn.config import TrainConfig
from agents.learn.grpo import GRPO
from agents.learn.held_out_users import HeldOutSettings, held_out_line
from agents.learn.metrics import MetricSums, read_metrics
from agents.learn.reply_metrics import add_reply_metrics, strategy_table
from agents.learn.rollout import Episode
from agents.learn.tiny_model import system_prompts, tiny_random_model
from agents.learn.trainer import Trainer
from agents.learn.transcripts import drop_after
from agents.policy.model import Policy
from tests.tiny import SMALL, model_dir, one_thread, tokenizer  # noqa: F401  (fixtures)


def tiny_policy(tokenizer) -> Policy:
    return Policy.from_model(tiny_random_model(tokenizer, SMALL, seed=0), tokenizer, system_prompt=system_prompts()["direct"])


def small_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(
        model="in-memory", template="direct", steps=2, group_size=2, scenarios_per_step=2, max_turns=2, max_new_tokens=6,
        lr=1e-3, output_dir=str(tmp_path / "run"), save_every=0, progress=False, tensorboard=False, transcripts=True,
    )
    values.update(overrides)
    return TrainConfig.from_options(**values)


def train(cfg: TrainConfig, tokenizer, until: int | None = None, compare_held_out=None) -> Trainer:
    trainer = Trainer(
        cfg, algorithm=GRPO, policy=tiny_policy(tokenizer), log=lambda message: None, play_held_out=play_policy, compare_held_out=compare_held_out
    )
    try:
        trainer.fit(until)
    finally:
        trainer.close()
    return trainer


def episode(scenario_id: str, replies: list[str]) -> Episode:
    e = Episode.opening([1], group=0, dialogue=0, scenario_id=scenario_id)
    e.replies = replies
    return e


# ----------------------------------------------------------------------------------------------
# the reply metrics on known replies


def test_reply_metrics_count_salad_repetition_and_strategies_by_intention() -> None:
    whole = "It sounds like you feel let down. What has been the hardest part?"
    looped = "The bus was late and the bus was late and the bus was late."
    spliced = "Not everyone would have stuck with it like you did with it like you did with the speech. Maybe imagine how it landed on your reaction is"
    sums = MetricSums()
    line = add_reply_metrics(sums, [episode("a", [whole, looped]), episode("b", [spliced, whole])], {"a": "en", "b": "en"}, {"a": "venting", "b": "specific_praise"})
    means = sums.means()
    assert means["repetition_rate"] == pytest.approx(2 / 4)  # the looped and the spliced reply
    assert means["salad_rate"] == pytest.approx(2 / 4)  # the same two, never the whole replies
    assert means["strategy/venting/deep_empathy"] == pytest.approx(1 / 2)
    assert means["strategy/venting/questioning"] == pytest.approx(1 / 2)
    assert means["strategy/venting/untagged"] == pytest.approx(1 / 2)
    assert means["strategy/specific_praise/praise"] == pytest.approx(1 / 2)
    assert means["canary/repeated_ngram_rate"] == pytest.approx(0.5)
    assert {"canary/length_mean", "canary/distinct_2", "canary/style_empathic"} <= set(means)
    assert line is not None and "repeated_ngram_rate" in line  # far above the reference agents' band
    table = strategy_table([means], [means])
    assert "venting" in table and "deep_empathy 0.50->0.50" in table


def test_drop_after_keeps_earlier_steps_byte_for_byte_and_cuts_a_torn_tail(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"step": s, "i": i, "text": "é"}, ensure_ascii=False) + "\n" for s in (1, 2, 3) for i in range(2)]
    path.write_text("".join(lines) + '{"step": 3, "i": 9, "te', encoding="utf-8")
    assert drop_after(path, 2) == 2 + 0  # two whole records of step 3 (the torn tail is repaired away first)
    assert path.read_text(encoding="utf-8") == "".join(lines[:4])
    assert drop_after(path, 2) == 0 and drop_after(tmp_path / "missing.jsonl", 0) == 0


# ----------------------------------------------------------------------------------------------
# a run's metrics, held-out evaluation and transcripts


def test_every_step_logs_reply_quality_strategies_canaries_and_held_out_scores(tokenizer, tmp_path) -> None:
    cfg = small_config(tmp_path, steps=3, eval_every=2, eval_limit=1, max_turns=1, tensorboard=True)
    trainer = train(cfg, tokenizer)
    out = Path(cfg.run.output_dir)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    untrained, *steps = rows
    assert set(untrained) >= {"eval/score", "eval/train_score", "eval/gap"} and "return" not in untrained
    for row in steps:
        assert 0.0 <= row["salad_rate"] <= 1.0 and 0.0 <= row["repetition_rate"] <= 1.0
        assert any(k.startswith("strategy/") and k.endswith("/untagged") for k in row)
        assert {"canary/length_mean", "canary/repeated_ngram_rate", "canary/distinct_2"} <= set(row)
    assert [r["step"] for r in rows if "eval/score" in r] == [0, 2, 3]  # before training, every 2 steps, after the last
    for row in (untrained, rows[2], rows[3]):
        assert row["eval/gap"] == pytest.approx(row["eval/train_score"] - row["eval/score"])
        assert 0.0 <= row["eval/score"] <= 100.0 and row["eval/dialogues"] == 1
    # each evaluation is an ordinary report: one held-out user and one training user, SAGE's 10 turns
    report = json.loads((out / "held_out" / "step-3" / "eval" / "report.json").read_text())
    assert report["results"]["n"] == 1 and report["manifest"]["evaluation"]["scenarios"] == "eval"
    assert report["manifest"]["evaluation"]["max_turns"] == 10
    assert report["results"]["score"]["mean"] == pytest.approx(rows[-1]["eval/score"])
    summary = trainer.closing_summary(rows)
    assert "held-out check" in summary and "unseen users" in summary and "share of replies using each strategy" in summary
    assert json.loads((out / "held_out.json").read_text())["final"]["step"] == 3
    assert (out / "learning_curve.png").stat().st_size > 0
    tags = {path.name for path in (out / "tensorboard").iterdir()}
    assert tags  # the event file holds the same scalars (names checked through metrics.jsonl)


def test_every_later_check_is_paired_with_the_untrained_policys_as_evaluate_compare_pairs_them(tokenizer, tmp_path) -> None:
    cfg = small_config(tmp_path, steps=2, eval_every=1, eval_limit=3, max_turns=1, lr=3e-2)
    trainer = train(cfg, tokenizer, compare_held_out=paired_gain)
    out = Path(cfg.run.output_dir)
    rows = read_metrics(out / "metrics.jsonl")
    assert "eval/gain" not in rows[0]  # the untrained policy is what the others are paired with
    untrained = json.loads((out / "held_out" / "step-0" / "eval" / "report.json").read_text())
    for row in rows[1:]:
        report = json.loads((out / "held_out" / f"step-{row['step']}" / "eval" / "report.json").read_text())
        (expected,) = compare([report, untrained])  # what `evaluate --compare` says of the two folders
        assert row["eval/gain"] == pytest.approx(expected["difference"])
        assert (row["eval/gain_low"], row["eval/gain_high"]) == pytest.approx(tuple(expected["ci"]))
        assert row["eval/gain"] == pytest.approx(row["eval/score"] - rows[0]["eval/score"], abs=1e-3)  # every user played by both
    assert json.loads((out / "held_out.json").read_text())["final"]["eval/gain"] == pytest.approx(rows[-1]["eval/gain"])
    assert "trained - untrained on the unseen users, paired by user" in trainer.closing_summary(rows)


def test_the_closing_summary_says_whether_the_paired_gain_is_beyond_the_noise() -> None:
    settings = HeldOutSettings(scenarios="eval", limit=96, train_scenarios="train", train_limit=96, max_new_tokens=8)
    before = {"eval/score": 5.0, "eval/train_score": 6.0, "eval/gap": 1.0}
    after = {"eval/score": 6.5, "eval/train_score": 8.0, "eval/gap": 1.5}
    beyond = held_out_line(before, {**after, "eval/gain": 1.5, "eval/gain_low": 0.7, "eval/gain_high": 2.3}, settings)
    assert beyond.endswith("paired by user: +1.5 [+0.7, +2.3] (better beyond the noise)")
    worse = held_out_line(before, {**after, "eval/gain": -1.5, "eval/gain_low": -2.3, "eval/gain_high": -0.7}, settings)
    assert worse.endswith("(worse beyond the noise)")
    tie = held_out_line(before, {**after, "eval/gain": 0.4, "eval/gain_low": -0.3, "eval/gain_high": 1.1}, settings)
    assert tie.endswith("(a tie: within the noise)")
    assert "paired" not in held_out_line(before, after, settings)  # no untrained report to pair with


def test_a_trainer_given_nothing_to_play_the_held_out_check_refuses_one_asked_for(tokenizer, tmp_path) -> None:
    """The learner does not import the evaluator: the held-out check is played by what the trainer is given."""
    with pytest.raises(UsageError, match="held-out evaluation needs something to play it"):
        Trainer(small_config(tmp_path, eval_limit=1), algorithm=GRPO, policy=tiny_policy(tokenizer), log=lambda message: None)


def test_no_held_out_evaluation_unless_asked_for_a_named_model(tokenizer, tmp_path) -> None:
    cfg = small_config(tmp_path, steps=1)
    assert cfg.resolved_eval_limit() == 0 and TrainConfig().resolved_eval_limit() == 96  # the embedded model: the whole eval split
    assert TrainConfig.from_options(model="m", eval_every=5).resolved_eval_limit() == 16
    train(cfg, tokenizer)
    assert [r["step"] for r in read_metrics(Path(cfg.run.output_dir) / "metrics.jsonl")] == [1]
    assert not (Path(cfg.run.output_dir) / "held_out").exists()


def test_transcripts_carry_step_and_group_and_a_resume_does_not_duplicate_them(tokenizer, tmp_path, monkeypatch) -> None:
    straight = small_config(tmp_path / "a", steps=3)
    train(straight, tokenizer)
    expected = [json.loads(line) for line in (Path(straight.run.output_dir) / "transcripts.jsonl").open()]
    assert [(r["step"], r["group"], r["dialogue"]) for r in expected] == [(s, d // 2, d) for s in (1, 2, 3) for d in range(4)]

    # the interrupted run: checkpoint at step 1, then step 2's transcripts are written and the
    # process dies (kill -9) before step 2's checkpoint
    cfg = small_config(tmp_path / "b", steps=3, save_every=1)
    interrupted = Trainer(cfg, algorithm=GRPO, policy=tiny_policy(tokenizer), log=lambda message: None)
    interrupted.fit(until=1)

    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(interrupted, "update", die)  # step 2: rollout and transcripts written, then death
    with pytest.raises(Killed):
        interrupted.fit()
    transcripts = Path(cfg.run.output_dir) / "transcripts.jsonl"
    assert sum(1 for _ in transcripts.open()) == 8  # step 1's four and the dead step 2's four
    with transcripts.open("a") as handle:
        handle.write('{"step": 2, "scenario_id": "torn')  # and a line torn by the kill
    monkeypatch.undo()

    messages: list[str] = []
    resumed = Trainer(small_config(tmp_path / "b", steps=3, save_every=1, resume="auto"), algorithm=GRPO, policy=tiny_policy(tokenizer), log=messages.append)
    try:
        resumed.fit()
    finally:
        resumed.close()
    got = [json.loads(line) for line in transcripts.open()]
    assert [(r["step"], r["dialogue"]) for r in got] == [(r["step"], r["dialogue"]) for r in expected]  # 12 records, none twice
    assert [[t["agent_reply"] for t in r["turns"]] for r in got] == [[t["agent_reply"] for t in r["turns"]] for r in expected]
    assert any("dropped 4 record(s) of steps after 1 from transcripts.jsonl" in m for m in messages)
    assert [r["step"] for r in read_metrics(Path(cfg.run.output_dir) / "metrics.jsonl")] == [1, 2, 3]


# ----------------------------------------------------------------------------------------------
# secrets


def test_no_planted_key_in_any_file_a_run_writes_or_prints(model_dir, tmp_path, capsys) -> None:  # noqa: F811
    """`python -m agents.train_grpo` against an OpenAI-compatible simulator (the local test server)
    with an API key and an auth header in --simulator-kwargs: neither appears in any file the run
    writes (config files, checkpoints, metrics, TensorBoard events, transcripts, held-out reports)
    nor in anything it prints."""
    from agents.train_grpo import main
    from sage_gym.servers.simulator_server import run_server_in_thread

    key, token = "sk-planted-0123456789abcdef", "planted-bearer-token-42"
    out = tmp_path / "run"
    with run_server_in_thread() as url:
        kwargs = {"api_key": key, "headers": {"Authorization": f"Bearer {token}"}, "timeout": 10}
        assert main([
            "--model", str(model_dir), "--device", "cpu", "--template", "direct", "--steps", "1", "--group-size", "2",
            "--scenarios-per-step", "1", "--max-turns", "1", "--max-new-tokens", "4", "--save-every", "1", "--no-progress",
            "--simulator", "openai", "--simulator-model", "rule-based", "--simulator-base-url", url,
            "--simulator-kwargs", json.dumps(kwargs), "--eval-limit", "1", "--output-dir", str(out),
        ]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.json", "metrics.jsonl", "transcripts.jsonl", "report.json", "trainer.pt"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in files)
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and token.encode() not in data, path
    printed = capsys.readouterr()
    assert "held-out check" in printed.out
    assert key not in printed.out + printed.err and token not in printed.out + printed.err
    for config in (out / "config.json", next(out.glob("checkpoints/step-*/config.json"))):
        saved = json.loads(config.read_text())
        assert json.loads(saved["env"]["simulator_kwargs"]) == {"api_key": "<redacted>", "headers": {"Authorization": "<redacted>"}, "timeout": 10}
