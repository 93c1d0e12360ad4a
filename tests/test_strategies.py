"""Strategy analysis: the rule-based tagger, the strategy mix, and the LLM judge over a loopback endpoint."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agents.replies.baselines import make_reference_agent
from agents.replies.strategies import (
    STRATEGIES,
    JudgeError,
    LLMStrategyJudge,
    parse_judge_output,
    strategy_mix,
    style_of,
    tag_reply,
)

# ----------------------------------------------------------------------------------------------
# a fake OpenAI-compatible chat endpoint on 127.0.0.1 (also used by tests/test_evaluate.py)


@contextlib.contextmanager
def fake_chat_endpoint(respond: Callable[[dict[str, Any]], str | int]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve `/v1/chat/completions` on a free loopback port; `respond(request)` gives the answer text,
    or an HTTP status code to fail with. Yields (base_url, the requests received, headers included)."""
    received: list[dict[str, Any]] = []

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        received.append({**body, "headers": dict(request.headers)})
        answer = respond(body)
        if isinstance(answer, int):
            return JSONResponse({"error": {"message": "fake failure", "type": "server_error"}}, status_code=answer)
        return JSONResponse(
            {
                "id": f"fake-{len(received)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake endpoint did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", received
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ----------------------------------------------------------------------------------------------
# the rule-based tagger

EXAMPLES = [
    ("It sounds like the move has left you completely drained.", "deep_empathy"),
    ("I can imagine how lonely those evenings must be.", "deep_empathy"),
    ("That must have been awful to hear from your own sister.", "deep_empathy"),
    ("Feeling angry about that makes complete sense.", "validation"),
    ("Anyone in your position would be furious.", "validation"),
    ("It's okay to feel torn about the job.", "validation"),
    ("It took real courage to speak up in that meeting.", "praise"),
    ("Not everyone would have kept the shop open that long.", "praise"),
    ("It's not your fault the landlord sold the building.", "reassurance"),
    ("You did nothing wrong by asking for the extension.", "reassurance"),
    ("I've been there myself, after my own divorce.", "self_disclosure"),
    ("Something similar happened to me at my first job.", "self_disclosure"),
    ("How have you been sleeping since then?", "questioning"),
    ("Looking back, what do you think the argument taught you?", "guided_reflection"),
    ("What would you do differently if it came up again?", "guided_reflection"),
    ("On one hand the rota was unfair; on the other hand, the manager had no staff.", "reframing"),
    ("Two things can be true: you were hurt, and it was messy for everyone.", "reframing"),
    ("Maybe they were scared of losing the contract too.", "perspective"),
    ("From her side, the email might have felt like an attack.", "perspective"),
    ("You could try writing down the three things you need from him.", "advice"),
    ("I'd suggest booking a meeting with HR this week.", "advice"),
    ("Everything happens for a reason, so stay positive.", "platitude"),
    ("Don't worry, it'll be fine.", "platitude"),
    ("Honestly, it's not a big deal. Just move on.", "dismissal"),
    ("You're overreacting, and it was partly your own fault.", "dismissal"),
]


@pytest.mark.parametrize(("reply", "strategy"), EXAMPLES)
def test_rule_tagger_finds_the_strategy(reply, strategy):
    assert strategy in tag_reply(reply)


def test_every_strategy_has_examples():
    assert {s for _, s in EXAMPLES} == set(STRATEGIES)


@pytest.mark.parametrize(
    ("reply", "absent"),
    [
        ("It's not your fault.", "dismissal"),  # reassurance must not read as blame
        ("You did nothing wrong.", "advice"),
        ("I hear you.", "questioning"),
        ("That sounds like a plan.", "deep_empathy"),
    ],
)
def test_rule_tagger_does_not_confuse_look_alikes(reply, absent):
    assert absent not in tag_reply(reply)


def test_thinking_is_never_tagged_and_an_empty_reply_has_no_strategy():
    assert tag_reply("<think>I could suggest they move on. What now?</think>Okay.") == ()
    assert tag_reply("") == ()


def test_tags_come_in_taxonomy_order_and_styles_group_them():
    tags = tag_reply("You could try talking to her. It sounds like you're exhausted. What happened?")
    assert tags == ("deep_empathy", "questioning", "advice")
    assert style_of(tags) == ("empathic", "exploring", "solution")


def test_reference_agents_show_their_styles():
    history = [{"role": "user", "content": "The landlord sold the building and my bakery has to close by March."}]
    empathic = [style_of(tag_reply(make_reference_agent("empathic", seed=s)(history))) for s in range(5)]
    solution = [style_of(tag_reply(make_reference_agent("solution", seed=s)(history))) for s in range(5)]
    dismissive = [style_of(tag_reply(make_reference_agent("dismissive", seed=s)(history))) for s in range(5)]
    assert all("empathic" in styles and "solution" not in styles for styles in empathic)
    assert all(styles == ("solution",) for styles in solution)
    assert all(styles == ("harmful",) for styles in dismissive)


def test_strategy_mix_counts_shares_of_turns():
    mix = strategy_mix([("deep_empathy", "questioning"), ("advice",), (), ("deep_empathy",)])
    assert mix["turns"] == 4
    assert mix["strategies"]["deep_empathy"] == 0.5
    assert mix["strategies"]["advice"] == 0.25
    assert mix["strategies"]["praise"] == 0.0
    assert mix["styles"] == {"empathic": 0.5, "exploring": 0.25, "rational": 0.0, "solution": 0.25, "harmful": 0.0}
    assert mix["untagged"] == 0.25
    assert strategy_mix([])["turns"] == 0


@given(st.lists(st.lists(st.sampled_from(STRATEGIES), max_size=4), max_size=20))
def test_strategy_shares_are_between_zero_and_one(turns):
    mix = strategy_mix(turns)
    assert all(0.0 <= share <= 1.0 for share in [*mix["strategies"].values(), *mix["styles"].values(), mix["untagged"]])


@given(st.text(max_size=300))
def test_tagger_never_fails_and_only_names_known_strategies(text):
    assert set(tag_reply(text)) <= set(STRATEGIES)


# ----------------------------------------------------------------------------------------------
# the LLM judge


def test_judge_output_is_parsed_leniently_but_checked():
    assert parse_judge_output('{"strategies": ["advice", "deep empathy"]}') == ("deep_empathy", "advice")
    assert parse_judge_output('<think>hmm</think>Sure: {"strategies": ["Validation", "made_up"]}') == ("validation",)
    assert parse_judge_output('{"strategies": []}') == ()
    for bad in ("no json here", '{"labels": ["advice"]}', '{"strategies": "advice"}', "{not json}"):
        with pytest.raises(ValueError):
            parse_judge_output(bad)


def test_llm_judge_tags_turns_through_an_openai_compatible_endpoint(monkeypatch):
    monkeypatch.setenv("SAGE_TEST_JUDGE_KEY", "sk-test-secret")

    def respond(request):
        reply = json.loads(request["messages"][0]["content"].split("The supporter's reply to it, as a JSON string:\n")[1].split("\n")[0])
        return json.dumps({"strategies": ["advice"] if "try" in reply else ["deep_empathy", "questioning"]})

    with fake_chat_endpoint(respond) as (base_url, requests):
        judge = LLMStrategyJudge(base_url, "judge-model", api_key_env="SAGE_TEST_JUDGE_KEY")
        tags = judge.tag_turns([("I lost my job.", "<think>private plan</think>You could try the job centre."), ("It hurts.", "That sounds painful. What happened?")])
    assert tags == [("advice",), ("deep_empathy", "questioning")]
    assert all("private plan" not in r["messages"][0]["content"] for r in requests)  # only the visible reply is judged
    assert requests[0]["headers"]["authorization"] == "Bearer sk-test-secret"
    assert requests[0]["temperature"] == 0.0
    manifest = json.dumps(judge.manifest())
    assert "judge-model" in manifest and base_url in manifest and "sk-test-secret" not in manifest


def test_llm_judge_failures_are_reported_per_turn_without_the_key(monkeypatch):
    monkeypatch.setenv("SAGE_TEST_JUDGE_KEY", "sk-test-secret")
    answers = iter(["not json", '{"strategies": ["praise"]}'])  # a bad answer is retried

    with fake_chat_endpoint(lambda request: next(answers)) as (base_url, _):
        judge = LLMStrategyJudge(base_url, "judge-model", api_key_env="SAGE_TEST_JUDGE_KEY", max_retries=1)
        assert judge.tag_turns([("I finished it.", "You handled that well.")]) == [("praise",)]
    with fake_chat_endpoint(lambda request: 500) as (base_url, requests):
        judge = LLMStrategyJudge(base_url, "judge-model", api_key_env="SAGE_TEST_JUDGE_KEY", max_retries=1)
        [result] = judge.tag_turns([("I finished it.", "You handled that well.")])
    assert isinstance(result, JudgeError)
    assert "judge-model" in str(result) and base_url in str(result) and "sk-test-secret" not in str(result)
    assert len(requests) == 2  # the first attempt and one retry
