"""Canaries: pure functions of a list of replies, flagged against the reference agents' bands."""

from agents.replies.canaries import (
    canary_flags,
    canary_summary,
    detected_language,
    distinct_n,
    flat_canaries,
    has_repeated_ngram,
    opens_with_praise,
    record_canaries,
    reply_canaries,
    tokens,
)
from agents.replies.strategies import tag_reply

VARIED = [
    "It sounds like the move has left you exhausted. What has been the hardest part?",
    "Feeling let down by your sister after the wedding makes complete sense.",
    "How have you been holding up since the meeting with your manager?",
    "So the rent keeps coming back, and you're carrying a lot of it on your own.",
]


def test_numbers_by_hand():
    replies = ["You're so brave. Tell me more.", "I hear you I hear you I hear you", "我很理解你的感受。", "ok"]
    values = reply_canaries(replies, strategies=[tag_reply(r) for r in replies], language="en")
    assert values["replies"] == 4
    assert values["length"]["max"] == 9  # the Chinese line: nine characters, nine words
    assert values["length"]["mean"] == (6 + 8 + 9 + 1) / 4
    assert values["repeated_ngram_rate"] == 0.25  # only "I hear you I hear you ..." loops a 4-gram
    assert values["praise_opening_rate"] == 0.25
    assert values["language_mismatch_rate"] == 0.25  # the Chinese line in an English dialogue
    assert set(values["strategy_mix"]) >= {"empathic", "harmful", "untagged"}
    assert reply_canaries(replies, language=["en", "en", "zh", "en"])["language_mismatch_rate"] == 0.0


def test_helpers():
    assert tokens("<think>hidden</think>Hello 你好") == ["hello", "你", "好"]
    assert has_repeated_ngram("a b c d a b c d") and not has_repeated_ngram("a b c d e f g h")
    assert opens_with_praise("What a great question! Let's see.") and not opens_with_praise("Let's see. You're so brave.")
    assert detected_language("今天很难过") == "zh" and detected_language("a sad day") == "en" and detected_language("...") is None
    assert distinct_n([["a", "b"], ["a", "b"]], 1) == 0.5
    # per block of replies, so a bigger evaluation of the same agent does not look more formulaic
    assert distinct_n([["a", "b"], ["c", "d"]] * 100, 1, window=2) == 1.0


def test_flags_move_only_far_from_reference():
    healthy = reply_canaries(VARIED * 10, strategies=[tag_reply(r) for r in VARIED * 10])
    assert canary_flags(healthy) == [] and canary_summary(healthy) is None
    salad = ["You're so brave! You're so brave! You're so brave!"] * 40
    values = reply_canaries(salad, strategies=[tag_reply(r) for r in salad])
    summary = canary_summary(values)
    assert summary.startswith("canaries: ")
    for name in ("repeated_ngram_rate", "praise_opening_rate", "distinct_1", "distinct_2"):
        assert name in summary
    assert canary_summary(reply_canaries([])) is None


def test_flat_and_records():
    records = [{"scenario_id": "s", "language": "zh", "turns": [{"agent_reply": "Hello there", "strategies": []}]}]
    values = record_canaries(records)
    assert values["language_mismatch_rate"] == 1.0 and values["strategy_mix"]["untagged"] == 1.0
    flat = flat_canaries(values)
    assert flat["canary/length_mean"] == 2.0 and flat["canary/style_untagged"] == 1.0
    assert all(isinstance(v, float) for v in flat.values())


def test_every_report_carries_the_canaries(tmp_path):
    from agents.eval.agent_api import ReferenceAgent
    from agents.eval.evaluate import EvalSettings, evaluate

    settings = EvalSettings(limit=4, max_turns=3)
    stuffer = evaluate(ReferenceAgent("keyword_stuffer"), tmp_path / "k", settings, progress=False, plots=False)["canaries"]
    empathic = evaluate(ReferenceAgent("empathic"), tmp_path / "e", settings, progress=False, plots=False)["canaries"]
    assert stuffer["replies"] == 12 and "praise_opening_rate" in stuffer["summary"]
    assert empathic["summary"] is None and empathic["language_mismatch_rate"] == 0.0
    assert stuffer["summary"] in (tmp_path / "k" / "summary.md").read_text()
