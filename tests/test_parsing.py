"""The lenient parser of simulator answers: the shapes LLMs really write, and nothing but ParseError on junk."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_gym.simulators.base import SimulatorError
from sage_gym.simulators.parsing import (
    EmotionUpdate,
    ParseError,
    UserReply,
    parse_change,
    parse_emotion_update,
    parse_leaves,
    parse_single_call,
    parse_user_reply,
)
from sage_gym.simulators.prompting import render_emotion_answer, render_reply_answer

CLIP = (-10, 10)


def test_parse_error_is_a_simulator_error():
    assert issubclass(ParseError, SimulatorError)


@pytest.mark.parametrize(
    "text, change",
    [
        ('{"meaning": "m", "goal": "met", "thoughts": "t", "feeling": "f", "change": 5}', 5),
        ('```json\n{"change": -5, "thoughts": "t"}\n```', -5),
        ('Sure, here is my judgement:\n{"CHANGE": "+10", "Thoughts": "t"}\nHope that helps.', 10),
        ("Meaning: m\nGoal: met\nThoughts: t\nFeeling: f\nChange: +5", 5),
        ("Change: +5 points", 5),
        ("change: -5", -5),
        ("CHANGE:-10", -10),
        ("Change：+5", 5),  # full-width colon
        ("Change：＋５", 5),  # full-width sign and digit
        ("Change: −5", -5),  # unicode minus sign
        ("**Change:** +5", 5),
        ("- **Change**: -5", -5),
        ("### Change: 0", 0),
        ("Change: no change", 0),
        ("Change: it goes down by 5", -5),
        ("Emotion change: +5", 5),
        ('{"emotion_change": 5}', 5),
        ("<think>The change should be -10.</think>\nChange: +5", 5),
        ('{"change": 4.6}', 5),
        ("Change: +25", 10),  # clipped to the range
        ("Change: -40", -10),
    ],
)
def test_lenient_emotion_update(text, change):
    assert parse_emotion_update(text, CLIP).change == change


def test_fields_are_kept_and_multi_line_values_joined():
    text = "Meaning: They listen.\nGoal: partly, they came close\nThoughts: Okay.\nMaybe they get it.\nFeeling: calmer\nChange: +5"
    update = parse_emotion_update(text, CLIP)
    assert update == EmotionUpdate(change=5, thoughts="Okay.\nMaybe they get it.", meaning="They listen.", goal="partly, they came close", feeling="calmer")


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"reply": "Fine.", "leaves": false}', UserReply("Fine.", False)),
        ('{"Reply": "Bye then.", "leaves": "yes"}', UserReply("Bye then.", True)),
        ("Leaves: no\nReply: I guess. My boss never called back.", UserReply("I guess. My boss never called back.", False)),
        ('Leaves: Yes.\nReply: "I\'m done here."', UserReply("I'm done here.", True)),
        ("Reply: Okay...\nthat's a lot.", UserReply("Okay...\nthat's a lot.", False)),
        ("Message: hi", UserReply("hi", False)),
        ("**Reply:** Sure.\n**Leaves:** no", UserReply("Sure.", False)),
    ],
)
def test_lenient_user_reply(text, expected):
    assert parse_user_reply(text) == expected


def test_single_call_needs_both_halves():
    update, reply = parse_single_call('{"change": -5, "thoughts": "hm", "reply": "Right.", "leaves": false}', CLIP)
    assert (update.change, reply.reply) == (-5, "Right.")
    with pytest.raises(ParseError, match="reply"):
        parse_single_call('{"change": -5}', CLIP)
    with pytest.raises(ParseError, match="change"):
        parse_single_call("Reply: hi", CLIP)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "I'm sorry, I can't continue this role-play.",
        '{"change": "a lot"}',
        '{"change": true}',
        '{"change": null}',
        '{"change": [5]}',
        '{"change": NaN}',
        '{"change": Infinity}',
        "Change: some",
        '{"meaning": "truncated',
        "<think>Change: +5</think>",
        "[" * 5000 + "]" * 5000,
        "{" * 5000,
    ],
)
def test_unreadable_emotion_updates_raise_parse_error(text):
    with pytest.raises(ParseError):
        parse_emotion_update(text, CLIP)


@pytest.mark.parametrize("text", ["", '{"reply": ""}', '{"reply": 5}', "Reply:", 'Reply: ""', '{"reply": "hi", "leaves": "perhaps"}', "Leaves: no"])
def test_unreadable_replies_raise_parse_error(text):
    with pytest.raises(ParseError):
        parse_user_reply(text)


def test_leaves_and_change_values():
    assert parse_leaves(None) is False and parse_leaves(1) is True and parse_leaves("TRUE") is True and parse_leaves("no.") is False
    with pytest.raises(ParseError):
        parse_leaves(2)
    assert parse_change(7, (-5, 5)) == 5 and parse_change("-3", (-5, 5)) == -3
    with pytest.raises(ParseError):
        parse_change(False, CLIP)


def test_answers_rendered_by_the_server_read_back():
    update = EmotionUpdate(change=-5, thoughts="Now it's my fault? That stings.", meaning="They are blaming me.", goal="not met", feeling="let down")
    reply = UserReply("So it's my fault now. Eleven years.", leaves=False)
    for mode in ("json_schema", "json_object", "tagged"):
        assert parse_emotion_update(render_emotion_answer(update, mode), CLIP) == update
        assert parse_user_reply(render_reply_answer(reply, mode)) == reply


# ----------------------------------------------------------------------------------------------
# properties

_clips = st.tuples(st.integers(-20, 0), st.integers(1, 20))


@settings(max_examples=300)
@given(st.text(max_size=400), _clips)
def test_arbitrary_text_raises_only_parse_error(text, clip):
    for parse in (lambda t: parse_emotion_update(t, clip), parse_user_reply, lambda t: parse_single_call(t, clip)):
        try:
            result = parse(text)
        except ParseError:
            continue
        updates = [r for r in (result if isinstance(result, tuple) else (result,)) if isinstance(r, EmotionUpdate)]
        assert all(clip[0] <= u.change <= clip[1] for u in updates)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(["change", "Change", "CHANGE", "thoughts", "reply", "Reply", "leaves", "meaning", "goal", "feeling", "other"])


@given(st.dictionaries(_keys, _json_values, max_size=6), st.text(max_size=30), st.text(max_size=30), _clips)
def test_json_like_answers_raise_only_parse_error(fields, before, after, clip):
    text = before + json.dumps(fields) + after
    for parse in (lambda t: parse_emotion_update(t, clip), parse_user_reply, lambda t: parse_single_call(t, clip)):
        try:
            parse(text)
        except ParseError:
            pass


_labels = st.sampled_from(["Change", "change", "**Change**", "- Change", "Thoughts", "Reply", "Leaves", "Meaning", "Goal"])
_separators = st.sampled_from([":", "：", ": ", " : ", ":**"])


@given(st.lists(st.tuples(_labels, _separators, st.text(max_size=20)), max_size=6), _clips)
def test_tagged_like_answers_raise_only_parse_error(lines, clip):
    text = "\n".join(f"{label}{sep}{value}" for label, sep, value in lines)
    for parse in (lambda t: parse_emotion_update(t, clip), parse_user_reply, lambda t: parse_single_call(t, clip)):
        try:
            parse(text)
        except ParseError:
            pass


@given(st.integers(-1000, 1000), st.sampled_from(["{:+d}", "{:d}", "{:+d} points", "Change: {:+d}", " {:d} "]), _clips)
def test_any_written_integer_is_read_and_clipped(value, pattern, clip):
    text = "Change: " + pattern.format(value)
    assert parse_emotion_update(text, clip).change == min(clip[1], max(clip[0], value))


_plain_text = st.text(alphabet=st.characters(blacklist_characters="\"'“”‘’「」*"), min_size=1, max_size=200)


@given(_plain_text.filter(lambda t: t.strip()), st.booleans())
def test_any_reply_text_survives_json(reply, leaves):
    parsed = parse_user_reply(json.dumps({"reply": reply, "leaves": leaves}))
    assert parsed == UserReply(reply.strip(), leaves)
