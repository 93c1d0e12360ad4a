"""The LLM simulator's messages: built from the templates in prompts/, and read back by the local server.

A user turn is two chat calls, both after the same system prompt (`simulator_system.j2`: the
profile, the hidden intention, the rules of the emotion score):

| call            | messages                                                                 | answer                          |
|-----------------|--------------------------------------------------------------------------|---------------------------------|
| emotion update  | system, user(`emotion_update.j2`)                                        | meaning, goal, thoughts, feeling, change |
| reply           | system, user(`emotion_update.j2`), assistant(that answer), user(`user_reply.j2`) | reply, leaves             |
| single call     | system, user(`single_call.j2`)                                           | all seven fields                |

The reply call continues the emotion-update exchange, so the model writes its message with its
own judgement in view, and a server can check the two calls against each other.

Every value that comes from a scenario or the dialogue is rendered as one line of JSON on the
line after a fixed label (JSON escapes newlines, so no text can break out of its line or pose as
a label). That is what lets `read_request` (used by `sage_gym.servers.simulator_server`) recover the
scenario, the rules, the emotion, the history and the agent's reply from the prompts, and say
exactly what does not match when they were not made by these templates.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sage_gym.prompts import PromptLibrary
from sage_gym.scenarios import Scenario, ScenarioError
from sage_gym.simulators.base import Message, Rules
from sage_gym.simulators.parsing import EmotionUpdate, ParseError, UserReply, parse_emotion_update

# How the answer is requested. json_schema and json_object ask the server for JSON (the
# template asks for a JSON object too); tagged asks for `Label: value` lines in the prompt only.
RESPONSE_MODES = ("json_schema", "json_object", "tagged")

CHARACTER_DESCRIPTIONS = {
    "negative": "you expect the worst, are quick to find fault and hard to win over, and a bad reply stings you more than a good one helps",
    "passive": "you say little unless asked, open up slowly to gentle questions, and tire of long replies",
    "avoidant": "you keep people at a distance, dislike being pushed or questioned hard, and back off from intense feeling-talk until you trust someone",
}
# The language a profile is written in (`Scenario.language`), named for the prompts; the simulator
# answers in it. A code not listed is named by its code.
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}
BUCKET_DESCRIPTIONS = {
    "high": "you feel understood and are warming to the conversation",
    "medium": "you are unsure whether this conversation is helping",
    "low": "you feel misunderstood, hurt or fed up",
}

EMOTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "meaning": {"type": "string"},
        "goal": {"type": "string"},
        "thoughts": {"type": "string"},
        "feeling": {"type": "string"},
        "change": {"type": "integer"},
    },
    "required": ["meaning", "goal", "thoughts", "feeling", "change"],
    "additionalProperties": False,
}
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"reply": {"type": "string"}, "leaves": {"type": "boolean"}},
    "required": ["reply", "leaves"],
    "additionalProperties": False,
}
SINGLE_CALL_SCHEMA = {
    "type": "object",
    "properties": {**EMOTION_SCHEMA["properties"], **REPLY_SCHEMA["properties"]},
    "required": EMOTION_SCHEMA["required"] + REPLY_SCHEMA["required"],
    "additionalProperties": False,
}
def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


_TEXT, _TEXTS = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
SCENARIO_SCHEMA = _object(
    {
        "id": _TEXT,
        "persona": _object(
            {"name": _TEXT, "age": {"type": "integer"}, "sex": _TEXT, "occupation": _TEXT, "hobbies": _TEXTS, "habits": _TEXTS,
             "speaking_style": _TEXT, "speaker": {"type": "string", "enum": ["active", "passive"]}}
        ),
        "background": _object(
            {"story": _TEXT, "conflict": _TEXT, "tried": _TEXT, "talk_high": _TEXT, "talk_medium": _TEXT, "talk_low": _TEXT,
             "lifts": _TEXT, "sinks": _TEXT, "details": _TEXTS}
        ),
        "character_type": _TEXT,
        "character_traits": _TEXTS,
        "hidden_intention": _TEXT,
        "first_message": _TEXT,
        "domain": _TEXT,
        "language": _TEXT,
    }
)

SCHEMAS = {"emotion_update": EMOTION_SCHEMA, "user_reply": REPLY_SCHEMA, "single_call": SINGLE_CALL_SCHEMA, "scenario": SCENARIO_SCHEMA}

# Fixed lines of the templates (kept in step with prompts/*.j2; tests render and read them back).
HEADINGS = {
    "emotion_update": "## Step 1 of 2: how the agent's newest reply makes you feel",
    "user_reply": "## Step 2 of 2: your next message to the agent",
    "single_call": "## Your turn: how the agent's newest reply makes you feel, and your next message",
}
PROFILE_LABEL = "Your profile, as JSON (it is data about the person you play; follow it, never quote it):"
EMOTION_LABEL = "Your current emotion (0 to 100):"
HISTORY_LABEL = 'The conversation so far, as a JSON list (role "user" is you, role "assistant" is the agent):'
AGENT_REPLY_LABEL = "The agent's newest reply, as a JSON string:"
ENDING_LINES = {
    "success": "You feel fully understood and helped: thank the agent warmly in your own words and say goodbye.",
    "failure": "You have had enough: say, in your own words and in character, that this is not helping and that you are leaving.",
}
JSON_ANSWER_PREFIX = "Answer with a single JSON object"
_INITIAL_LINE = re.compile(r"- Your emotion is a score from 0 .*\. It starts at (\d+)\.")
_THRESHOLDS_LINE = re.compile(r"- If it reaches (\d+), .*; if it falls below (\d+), .*")
_CLIP = re.compile(r"a signed integer between (-?\d+) and (-?\d+)")
_BUCKET_LINE = re.compile(r"Your emotion is now (\w+): .*")


def template_format(mode: str) -> str:
    """The templates' `output_format` for a response mode: "json" or "tagged"."""
    if mode not in RESPONSE_MODES:
        raise ValueError(f"unknown response mode {mode!r}; expected one of {RESPONSE_MODES}")
    return "tagged" if mode == "tagged" else "json"


def response_format(mode: str, name: str) -> dict[str, Any] | None:
    """The request's `response_format` for a mode and an answer kind ("emotion_update", ...)."""
    schema = SCHEMAS[name]
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if mode == "json_object":  # llama.cpp's server and others take the schema here
        return {"type": "json_object", "schema": schema}
    return None


def plain_history(history: Sequence[Message]) -> list[dict[str, str]]:
    """The visible history as plain {role, content} dicts (what the prompts show)."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in history]


# ----------------------------------------------------------------------------------------------
# building the messages


def system_message(prompts: PromptLibrary, scenario: Scenario, rules: Rules) -> dict[str, str]:
    # the same for every call of a dialogue, and the costliest part of a request to build: remembered
    # (unless the scenario cannot be a cache key: lists in its extras make it unhashable)
    render = _remembered_system_content if hashable(scenario) else _system_content
    return {"role": "system", "content": render(prompts, scenario, rules)}


def hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _system_content(prompts: PromptLibrary, scenario: Scenario, rules: Rules) -> str:
    return prompts.render(
        "simulator_system.j2",
        profile=scenario.to_dict(),
        intention=scenario.intention_text,
        character_type=scenario.character_type,
        character_description=CHARACTER_DESCRIPTIONS.get(scenario.character_type, scenario.character_type),
        traits=list(scenario.character_traits),
        rules=rules,
        language=scenario.language,
        language_name=language_name(scenario.language),
    )


_remembered_system_content = functools.lru_cache(maxsize=4096)(_system_content)


def language_name(code: str) -> str:
    """How the prompts name a profile's language: "Chinese (简体中文)" for "zh", the code itself if unknown."""
    return LANGUAGE_NAMES.get(code, code)


def emotion_update_messages(
    prompts: PromptLibrary, scenario: Scenario, rules: Rules, emotion: int, history: Sequence[Message], agent_reply: str, mode: str
) -> list[dict[str, str]]:
    return [system_message(prompts, scenario, rules), _emotion_update_prompt(prompts, rules, emotion, history, agent_reply, mode)]


def user_reply_messages(
    prompts: PromptLibrary,
    scenario: Scenario,
    rules: Rules,
    emotion: int,
    history: Sequence[Message],
    agent_reply: str,
    update: EmotionUpdate,
    bucket: str,
    ending: str,
    mode: str,
) -> list[dict[str, str]]:
    """The reply call: the emotion-update exchange, then the reply prompt. `ending` is "success", "failure" or ""."""
    if ending not in ("success", "failure", ""):
        raise ValueError(f"ending must be 'success', 'failure' or '', got {ending!r}")
    content = prompts.render(
        "user_reply.j2",
        history=plain_history(history),
        agent_reply=agent_reply,
        bucket=bucket,
        bucket_description=BUCKET_DESCRIPTIONS[bucket],
        thoughts=update.thoughts,
        ending=ending,
        output_format=template_format(mode),
        language_name=language_name(scenario.language),
    )
    return emotion_update_messages(prompts, scenario, rules, emotion, history, agent_reply, mode) + [
        {"role": "assistant", "content": render_emotion_answer(update, mode)},
        {"role": "user", "content": content},
    ]


def single_call_messages(
    prompts: PromptLibrary, scenario: Scenario, rules: Rules, emotion: int, history: Sequence[Message], agent_reply: str, mode: str
) -> list[dict[str, str]]:
    content = prompts.render(
        "single_call.j2",
        emotion=emotion,
        history=plain_history(history),
        agent_reply=agent_reply,
        rules=rules,
        output_format=template_format(mode),
        language_name=language_name(scenario.language),
    )
    return [system_message(prompts, scenario, rules), {"role": "user", "content": content}]


def _emotion_update_prompt(
    prompts: PromptLibrary, rules: Rules, emotion: int, history: Sequence[Message], agent_reply: str, mode: str
) -> dict[str, str]:
    turns = tuple((str(m["role"]), str(m["content"])) for m in history)
    return {"role": "user", "content": _emotion_update_content(prompts, rules, emotion, turns, agent_reply, mode)}


@functools.lru_cache(maxsize=2048)
def _emotion_update_content(prompts: PromptLibrary, rules: Rules, emotion: int, turns: tuple[tuple[str, str], ...], agent_reply: str, mode: str) -> str:
    # remembered: the reply call of the same turn sends this prompt again
    history = [{"role": role, "content": content} for role, content in turns]
    return prompts.render("emotion_update.j2", emotion=emotion, history=history, agent_reply=agent_reply, rules=rules, output_format=template_format(mode))


# ----------------------------------------------------------------------------------------------
# answers in each format (the server writes them; the reply call replays the emotion answer)


def render_emotion_answer(update: EmotionUpdate, mode: str) -> str:
    fields = {"meaning": update.meaning, "goal": update.goal, "thoughts": update.thoughts, "feeling": update.feeling, "change": update.change}
    return render_answer(fields, mode)


def render_reply_answer(reply: UserReply, mode: str) -> str:
    return render_answer({"leaves": reply.leaves, "reply": reply.reply}, mode)


def render_answer(fields: Mapping[str, Any], mode: str) -> str:
    """An answer as one JSON object or as `Label: value` lines (in the order given)."""
    if template_format(mode) == "json":
        return json.dumps(dict(fields), ensure_ascii=False)
    lines = []
    for name, value in fields.items():
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif name == "change":
            text = f"{value:+d}"
        else:
            text = " ".join(str(value).split("\n"))
        lines.append(f"{name.capitalize()}: {text}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# reading the prompts back (the local server answers as the built-in simulator from these)


class PromptMismatch(ValueError):
    """The messages were not made by these templates, or their parts contradict each other."""


@dataclass(frozen=True)
class TurnRequest:
    """What a chat request built by this module asks about.

    `kind` is "emotion_update", "user_reply" or "single_call". `update` (the replayed emotion
    answer), `bucket` and `ending` are set for "user_reply" only; `ending` is the one the
    client decided ("success", "failure" or "").
    """

    kind: str
    scenario: Scenario
    rules: Rules
    emotion: int
    history: list[dict[str, str]]
    agent_reply: str
    output_format: str  # "json" or "tagged", as the last prompt asks
    update: EmotionUpdate | None = None
    bucket: str = ""
    ending: str = ""


def read_request(messages: Any) -> TurnRequest:
    """Recover a turn request from chat messages; PromptMismatch names what does not fit."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, Mapping) for m in messages):
        raise PromptMismatch("messages must be a non-empty list of {role, content} objects")
    contents = [m.get("content") for m in messages]
    if not all(isinstance(c, str) for c in contents):
        raise PromptMismatch("every message needs a text 'content' (content parts are not supported)")
    roles = [m.get("role") for m in messages]
    if roles[0] != "system":
        raise PromptMismatch(f"the first message must be the simulator's system prompt, got role {roles[0]!r}")
    scenario, initial, success_at, failure_below = _read_system(contents[0])
    last = _lines(contents[-1])
    kind = next((k for k, heading in HEADINGS.items() if last and last[0] == heading), None)
    if roles[-1] != "user" or kind is None:
        raise PromptMismatch(f"the last message must be a user prompt starting with one of {sorted(HEADINGS.values())}")

    if kind == "user_reply":
        if len(messages) != 4 or roles[1:3] != ["user", "assistant"]:
            raise PromptMismatch("a reply request must be: system, the emotion-update prompt, its answer, the reply prompt")
        turn_lines = _lines(contents[1])
        if not turn_lines or turn_lines[0] != HEADINGS["emotion_update"]:
            raise PromptMismatch("the second message of a reply request must be the emotion-update prompt")
    elif len(messages) != 2:
        raise PromptMismatch(f"a {kind} request must be: system, then the {kind} prompt ({len(messages)} messages given)")
    else:
        turn_lines = last

    emotion = _json_after(turn_lines, EMOTION_LABEL, int, "the emotion")
    history = _json_after(turn_lines, HISTORY_LABEL, list, "the history")
    agent_reply = _json_after(turn_lines, AGENT_REPLY_LABEL, str, "the agent's reply")
    clip = next((m.groups() for m in map(_CLIP.search, turn_lines) if m), None)
    if clip is None:
        raise PromptMismatch("no change range ('a signed integer between A and B') in the prompt")
    try:
        rules = Rules(initial_emotion=initial, change_clip=(int(clip[0]), int(clip[1])), success_at=success_at, failure_below=failure_below)
    except ValueError as err:
        raise PromptMismatch(f"the prompts state inconsistent rules: {err}") from None
    if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) for m in history):
        raise PromptMismatch("the history must be a list of {role: user|assistant, content: str} objects")
    output_format = "json" if any(line.startswith(JSON_ANSWER_PREFIX) for line in last) else "tagged"
    request = TurnRequest(kind, scenario, rules, emotion, history, agent_reply, output_format)
    if kind != "user_reply":
        return request
    return _read_reply_prompt(request, last, contents[2])


def _read_reply_prompt(request: TurnRequest, lines: list[str], answer: str) -> TurnRequest:
    if _json_after(lines, HISTORY_LABEL, list, "the history") != request.history:
        raise PromptMismatch("the reply prompt's history differs from the emotion-update prompt's")
    if _json_after(lines, AGENT_REPLY_LABEL, str, "the agent's reply") != request.agent_reply:
        raise PromptMismatch("the reply prompt's agent reply differs from the emotion-update prompt's")
    bucket = next((m.group(1) for m in map(_BUCKET_LINE.fullmatch, lines) if m), None)
    if bucket not in BUCKET_DESCRIPTIONS:
        raise PromptMismatch(f"no emotion bucket line ('Your emotion is now high|medium|low: ...') in the reply prompt, got {bucket!r}")
    endings = [name for name, line in ENDING_LINES.items() if line in lines]
    if len(endings) > 1:
        raise PromptMismatch(f"the reply prompt gives more than one ending: {endings}")
    try:
        update = parse_emotion_update(answer, request.rules.change_clip)
    except ParseError as err:
        raise PromptMismatch(f"the replayed emotion answer cannot be read: {err}") from None
    return TurnRequest(
        request.kind, request.scenario, request.rules, request.emotion, request.history, request.agent_reply,
        request.output_format, update=update, bucket=bucket, ending=endings[0] if endings else "",
    )


@functools.lru_cache(maxsize=1024)
def _read_system(content: str) -> tuple[Scenario, int, int, int]:
    # remembered: every call of a dialogue sends the same system prompt (a PromptMismatch is not cached)
    lines = _lines(content)
    profile = _json_after(lines, PROFILE_LABEL, dict, "the profile", fence=True)
    try:
        scenario = Scenario.from_dict(profile, where="system prompt profile")
    except ScenarioError as err:
        raise PromptMismatch(str(err)) from None
    initial = next((int(m.group(1)) for m in map(_INITIAL_LINE.fullmatch, lines) if m), None)
    thresholds = next((m.groups() for m in map(_THRESHOLDS_LINE.fullmatch, lines) if m), None)
    if initial is None or thresholds is None:
        raise PromptMismatch("the system prompt does not state the starting emotion and the thresholds")
    return scenario, initial, int(thresholds[0]), int(thresholds[1])


def _lines(content: str) -> list[str]:
    # split on "\n" only: str.splitlines would also split inside JSON strings at U+2028 and friends
    return [line.rstrip("\r") for line in content.split("\n")]


def _json_after(lines: list[str], label: str, kind: type, what: str, fence: bool = False) -> Any:
    """The JSON value on the line after `label` (after a ```json fence line if `fence`)."""
    try:
        index = lines.index(label) + 1
    except ValueError:
        raise PromptMismatch(f"{what}: label line {label!r} not found") from None
    if fence and index < len(lines) and lines[index].startswith("```"):
        index += 1
    if index >= len(lines):
        raise PromptMismatch(f"{what}: nothing after the label line {label!r}")
    try:
        value = json.loads(lines[index])
    except (ValueError, RecursionError):
        raise PromptMismatch(f"{what}: the line after {label!r} is not valid JSON") from None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PromptMismatch(f"{what}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value
