"""SAGE's recorded dialogues: the result files, and the compact copy that ships in the package.

SAGE (Tencent/digitalhuman, `SAGE/dataset/`) published, per simulator backbone ("judge"), one
`<model>_result.jsonl` per frontier model: 100 whole Chinese dialogues, each a record with `id`,
`player`, `scene`, `character`, `topic`, `task`, `history` and `emo_point` (the final emotion: the
SAGE score of the dialogue). `history` alternates `user` and `assistant` messages; every user
message carries `emotion-point` (the user's emotion after the reply before it) and, after the
first, the LLM user's `thinking` and `planning` (its reasoning, including whether its hidden goal
was met). These are not profiles: the first user message is `history[0]`, there is no `first_talk`.

`load_results(folder)` reads such a folder; `load_vendored()` reads the copy in `data/`, made by
`pack` (`python -m sage_gym.calibrate pack DIR OUT`). The copy keeps every message's text and
emotion, the profiles, and per user message three labels derived from its `thinking` and
`planning`: `goal` (was the hidden goal met: met / partly / not / "" unknown), `attitude`
(the attitude the user chose for its answer) and `note` (the start of the goal statement).

The DeepSeek-V3 judge's dialogues are the fitting data; the GPT-4o judge's are held out, and
both functions return them only when asked for by name (`judge="gpt-4o"`).
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sage_gym.scenarios import Scenario, ScenarioError, from_sage, iter_jsonl

# Short judge names and SAGE's folder names. The first is the fitting judge, the second held out.
FITTING_JUDGE = "deepseek-v3"
HELD_OUT_JUDGE = "gpt-4o"
JUDGE_FOLDERS = {FITTING_JUDGE: "deepseek-v3-2024-1227_based_simulator", HELD_OUT_JUDGE: "gpt-4o-2024-0806_based_simulator"}
FOLDER_SUFFIX = "_based_simulator"
RESULT_SUFFIX = "_result.jsonl"
SOURCE = "github.com/Tencent/digitalhuman, folder SAGE/dataset/, commit 6dcfa78 (MIT license, data/LICENSE.txt)"

DATA_DIR = Path(__file__).resolve().parent / "data"
PROFILES_FILE = "profiles.jsonl.xz"
NOTE_CHARS = 120  # characters of the goal statement kept per user message in the vendored copy (most are shorter)
GOALS = ("met", "partly", "not", "")

Message = Mapping[str, str]


class SageDataError(ValueError):
    """A SAGE result folder or file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Turn:
    """One assistant reply that the recorded user answered, in its recorded context."""

    index: int  # 1 for the dialogue's first reply
    history: tuple[Message, ...]  # the visible dialogue before the reply ({"role", "content"} only)
    reply: str
    emotion_before: int  # the user's recorded emotion when the reply came
    emotion_after: int  # ... and after it
    change: int  # emotion_after - emotion_before
    user_message: str  # the user's answer to the reply
    thinking: str  # the LLM user's reasoning (in the vendored copy: the start of its goal statement)
    goal: str  # was the user's hidden goal met by the reply: "met", "partly", "not" or "" (unknown)
    attitude: str  # the attitude the user chose for its answer: "positive", "negative", "neutral" or ""


@dataclass(frozen=True)
class Dialogue:
    judge: str  # "deepseek-v3", "gpt-4o", or the folder's name for other judges
    model: str  # the model that wrote the assistant replies
    profile_id: str
    scenario: Scenario
    score: int  # SAGE's score of the dialogue: the final emotion (`emo_point`)
    messages: tuple[Message, ...]  # the whole visible dialogue
    turns: tuple[Turn, ...]  # the replies followed by a recorded reaction (a last unanswered reply is not one)


# ----------------------------------------------------------------------------------------------
# labels from the LLM user's reasoning


def goal_label(text: str) -> str:
    """Whether the user's statement says its hidden goal was met: "met", "partly", "not" or ""."""
    text = text.split("]", 1)[-1].strip()[:60]  # DeepSeek's answers start with the question's tail, "...是否达到]"
    if "部分" in text[:12]:
        return "partly"
    if re.match(r"(否|没有|未|不)", text) or re.search(r"(没有|未|不|偏离)(完全)?(贴合|达到|满足|符合|回应)", text):
        return "not"
    if re.match(r"(是|达到|贴合|符合|满足)", text) or re.search(r"(贴合|达到|满足|符合)", text):
        return "met"
    return ""


_ATTITUDES = {"正面": "positive", "积极": "positive", "负面": "negative", "消极": "negative", "中性": "neutral", "中立": "neutral", "无偏向": "neutral"}


def attitude_label(thinking: str) -> str:
    """The attitude the user's reasoning chose for its answer ("回复态度偏向..."), or ""."""
    at = thinking.find("态度偏向")
    window = thinking[at : at + 80] if at >= 0 else thinking.split("\n", 1)[0]
    found = re.search("|".join(_ATTITUDES), window)
    return _ATTITUDES[found.group(0)] if found else ""


def _goal_statement(message: Mapping[str, Any]) -> str:
    planning = message.get("planning")
    if isinstance(planning, Mapping) and isinstance(planning.get("TargetCompletion"), str):
        return planning["TargetCompletion"]
    return ""


# ----------------------------------------------------------------------------------------------
# one record -> Dialogue


def _profile_scenario(profile: Mapping[str, Any], first_message: str, where: str) -> Scenario:
    """The Scenario of a SAGE profile, through the project's SAGE import (`from_sage`)."""
    scenario = from_sage(
        {"id": profile["id"], "player": profile["player"], "scene": profile["scene"], "main_cha": profile["character"], "task": profile["task"], "first_talk": first_message},
        where,
    )
    extras = dict(scenario.extras)
    if profile.get("topic"):
        extras["topic"] = str(profile["topic"])
    return dataclasses.replace(scenario, language="zh", extras=extras)


def _dialogue(record: Mapping[str, Any], profile: Mapping[str, Any], judge: str, model: str, where: str, scenarios: dict) -> Dialogue:
    history = record.get("history")
    if not isinstance(history, list) or not history:
        raise SageDataError(f"{where}: field 'history': expected a non-empty list of messages")
    messages: list[dict[str, str]] = []
    emotions: list[int | None] = []
    for i, message in enumerate(history):
        role = "user" if i % 2 == 0 else "assistant"
        if not isinstance(message, Mapping) or message.get("role") != role or not isinstance(message.get("content"), str):
            raise SageDataError(f"{where}: history[{i}]: expected a {role} message with text content (roles alternate, the user first)")
        emotion = message.get("emotion-point")
        if role == "user" and (isinstance(emotion, bool) or not isinstance(emotion, int)):
            raise SageDataError(f"{where}: history[{i}]: field 'emotion-point': expected an integer, got {emotion!r}")
        messages.append({"role": role, "content": message["content"]})
        emotions.append(emotion if role == "user" else None)

    key = (profile["id"], json.dumps(profile, sort_keys=True, ensure_ascii=False), messages[0]["content"])
    if key not in scenarios:
        scenarios[key] = _profile_scenario(profile, messages[0]["content"], where)
    turns: list[Turn] = []
    for i in range(1, len(history) - 1, 2):  # an assistant reply and the user's answer after it
        answer = history[i + 1]
        thinking = str(answer.get("thinking", answer.get("note", "")))
        goal = answer["goal"] if "goal" in answer else goal_label(_goal_statement(answer) or thinking)
        attitude = answer["attitude"] if "attitude" in answer else attitude_label(thinking)
        before, after = emotions[i - 1], emotions[i + 1]
        assert before is not None and after is not None  # user messages: their emotion was checked above
        turns.append(
            Turn(
                index=len(turns) + 1,
                history=tuple(messages[:i]),
                reply=messages[i]["content"],
                emotion_before=before,
                emotion_after=after,
                change=after - before,
                user_message=messages[i + 1]["content"],
                thinking=thinking,
                goal=goal,
                attitude=attitude,
            )
        )
    score = record.get("emo_point")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise SageDataError(f"{where}: field 'emo_point': expected a number, got {score!r}")
    return Dialogue(judge, model, str(profile["id"]), scenarios[key], int(score), tuple(messages), tuple(turns))


def _profile(record: Mapping[str, Any], where: str) -> dict[str, str]:
    profile = {}
    for key in ("id", "player", "scene", "character", "task", "topic"):
        value = record.get(key, "" if key == "topic" else None)
        if not isinstance(value, str) or (key != "topic" and not value.strip()):
            raise SageDataError(f"{where}: field '{key}': expected a non-empty string, got {value!r}")
        profile[key] = value
    return profile


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        for lineno, record in iter_jsonl(path):
            if not isinstance(record, Mapping):
                raise SageDataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield f"{path}:{lineno}", record
    except ScenarioError as err:
        raise SageDataError(str(err)) from None


# ----------------------------------------------------------------------------------------------
# SAGE's folders


def judge_name(folder: str | Path) -> str:
    """The short judge name of a `<judge>_based_simulator` folder ("deepseek-v3", "gpt-4o", else the folder's stem)."""
    name = Path(folder).name
    for short, full in JUDGE_FOLDERS.items():
        if name == full:
            return short
    return name.removesuffix(FOLDER_SUFFIX)


def judge_folder(root: str | Path, judge: str | None = None) -> Path:
    """The folder of one judge's result files under `root`.

    `root` is a judge's folder (holding `*_result.jsonl`) or SAGE's dataset folder (holding
    `<judge>_based_simulator/` folders). Without `judge` the fitting judge is read; the held-out
    judge only when `judge` names it, from either kind of folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise SageDataError(f"{root}: no such folder")
    if any(root.glob(f"*{RESULT_SUFFIX}")):
        found = judge_name(root)
        if judge is None and found == HELD_OUT_JUDGE:
            raise SageDataError(f"{root}: these are the held-out judge's dialogues; pass judge={HELD_OUT_JUDGE!r} to read them")
        if judge is not None and found != judge and root.name.endswith(FOLDER_SUFFIX):
            raise SageDataError(f"{root}: this folder holds the {found!r} judge's dialogues, not {judge!r}")
        return root
    judge = judge or FITTING_JUDGE
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob(f"*{RESULT_SUFFIX}")))
    for folder in folders:
        if judge_name(folder) == judge:
            return folder
    available = ", ".join(judge_name(f) for f in folders) or "none"
    raise SageDataError(f"{root}: no result files of judge {judge!r} (judges found: {available}; a folder of *{RESULT_SUFFIX} files works too)")


def load_results(root: str | Path, judge: str | None = None) -> list[Dialogue]:
    """Every dialogue of one judge in a folder in SAGE's format, ordered by model file then line."""
    folder = judge_folder(root, judge)
    name = judge_name(folder)
    dialogues: list[Dialogue] = []
    scenarios: dict = {}
    for path in sorted(folder.glob(f"*{RESULT_SUFFIX}")):
        model = path.name.removesuffix(RESULT_SUFFIX)
        for where, record in _records(path):
            dialogues.append(_dialogue(record, _profile(record, where), name, model, where, scenarios))
    return dialogues


# ----------------------------------------------------------------------------------------------
# the vendored copy


def vendored_path(judge: str) -> Path:
    return DATA_DIR / f"{judge}.jsonl.xz"


def vendored_judges() -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".jsonl.xz") for p in DATA_DIR.glob("*.jsonl.xz") if p.name != PROFILES_FILE))


def load_vendored(*, judge: str = FITTING_JUDGE) -> list[Dialogue]:
    """The dialogues of one judge from the copy that ships in the package.

    The default is the fitting judge (DeepSeek-V3); the held-out judge's dialogues come only
    with `judge="gpt-4o"` spelled out.
    """
    if not isinstance(judge, str) or judge not in vendored_judges():
        raise SageDataError(f"no vendored dialogues of judge {judge!r}; the package has {', '.join(vendored_judges())}")
    profiles = {p["id"]: p for p in _read_xz_jsonl(DATA_DIR / PROFILES_FILE)}
    scenarios: dict = {}
    dialogues = []
    for lineno, record in enumerate(_read_xz_jsonl(vendored_path(judge)), start=1):
        where = f"{vendored_path(judge).name}:{lineno}"
        dialogues.append(_dialogue(record, profiles[record["id"]], judge, record["model"], where, scenarios))
    return dialogues


def _read_xz_jsonl(path: Path) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write_xz_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> int:
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    data = lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(data)
    return len(data)


def _compact_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """SAGE's history with each user message's reasoning replaced by its three labels."""
    compact = []
    for i, message in enumerate(history):
        entry: dict[str, Any] = {"role": message["role"], "content": message["content"]}
        if message["role"] == "user":
            entry["emotion-point"] = message["emotion-point"]
            if i > 0:
                thinking = str(message.get("thinking", ""))
                statement = _goal_statement(message)
                entry["goal"] = goal_label(statement or thinking)
                entry["attitude"] = attitude_label(thinking)
                entry["note"] = (statement or thinking).split("]", 1)[-1].strip()[:NOTE_CHARS]
        compact.append(entry)
    return compact


def pack(root: str | Path, out: str | Path, judges: Sequence[str] | None = None) -> dict[str, int]:
    """Write the compact copy of SAGE's dataset folder `root` into the folder `out`.

    One `<judge>.jsonl.xz` per judge (dialogues, ordered by profile then model) and one
    `profiles.jsonl.xz` (each profile once; the judges must agree on it). Returns the size in
    bytes of each file written.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise SageDataError(f"{root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob(f"*{RESULT_SUFFIX}")))
    if judges is not None:
        folders = [judge_folder(root, j) for j in judges]
    if not folders:
        raise SageDataError(f"{root}: no <judge>{FOLDER_SUFFIX} folders with *{RESULT_SUFFIX} files")
    out.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, dict[str, str]] = {}
    sizes = {}
    for folder in folders:
        judge = judge_name(folder)
        records = []
        for path in sorted(folder.glob(f"*{RESULT_SUFFIX}")):
            model = path.name.removesuffix(RESULT_SUFFIX)
            for where, record in _records(path):
                profile = _profile(record, where)
                if profiles.setdefault(profile["id"], profile) != profile:
                    raise SageDataError(f"{where}: profile {profile['id']!r} differs from the same id's profile in an earlier file")
                _dialogue(record, profile, judge, model, where, {})  # validate before keeping
                records.append({"id": profile["id"], "model": model, "emo_point": record["emo_point"], "history": _compact_history(record["history"])})
        records.sort(key=lambda r: (r["id"], r["model"]))  # a profile's dialogues side by side compress better
        sizes[f"{judge}.jsonl.xz"] = _write_xz_jsonl(out / f"{judge}.jsonl.xz", records)
    sizes[PROFILES_FILE] = _write_xz_jsonl(out / PROFILES_FILE, [profiles[k] for k in sorted(profiles)])
    return sizes
