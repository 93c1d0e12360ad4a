"""What the viewer page shows, as plain JSON-able data built from run and evaluation folders.

A folder is either a training run (`metrics.jsonl`, `config.json`, `transcripts.jsonl`) or an
evaluation (`manifest.json`, `report.json`, `transcripts.jsonl`). A parent of training runs works
too: its `latest` entry (a symlink or a text file naming the run folder) is followed, or else its
newest run folder is taken.

The page data keeps each transcript record whole (so an export gives back what the JSONL held)
except for its `manifest`, which repeats in every record and is stored once in `manifests`. Beside
each record goes a `row`: the few fields the list filters and sorts on, computed here so that the
page and the tests agree on them. Scenario cards are joined from the scenario source the manifest
names (a shipped split or a JSONL file), once per scenario.

Two vocabularies describe a reply, and the page says which is which:

- the simulator's analysis (`turn["analysis"]["strategies"]`, `["flags"]`): what the simulated
  user saw; the built-in user's flags are listed in docs/builtin_simulator.md. An LLM simulator
  may add fields or flags: they are kept as they are.
- the evaluator's tagger (`turn["strategies"]`, `agents.replies.strategies.tag_reply`): evaluation
  records carry it; for training records the viewer tags the visible reply with the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.eval.stats import hierarchical_bootstrap
from agents.policy.run_folder import options_by_name
from agents.replies.strategies import tag_reply
from sage_gym.redaction import redact
from sage_gym.transcripts import read_jsonl

TRANSCRIPTS = "transcripts.jsonl"
LATEST = "latest"
# the built-in user's coherence flags that make a reply "salad" (sage_gym.simulators.coherence.SALAD_FLAGS)
SALAD_FLAGS = frozenset({"spliced", "repetitive", "truncated"})
SALAD = "salad"
# training metrics shown at a glance and drawn as the learning curve
CURVE_KEYS = ("return", "emotion", "success_rate", "failure_rate", "salad_rate", "repetition_rate", "eval/score", "eval/train_score")
ANALYSIS_VOCABULARY = "the simulator's analysis"
TAGGER_VOCABULARY = "the evaluator's tagger (agents.replies.strategies)"


class ViewerError(ValueError):
    """A folder the viewer cannot show; the message names the folder and what is missing."""


@dataclass
class Folder:
    """One training run or evaluation, read from disk."""

    path: Path
    kind: str  # "training" or "evaluation"
    records: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)  # config.json (training) or manifest.json (evaluation)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, one row per step (training)
    report: dict[str, Any] = field(default_factory=dict)  # report.json (evaluation)
    note: str = ""  # how the folder was found (a followed `latest`)


# ---------------------------------------------------------------------------------------------- folders


def resolve_folder(path: str | Path) -> tuple[Path, str]:
    """The folder holding transcripts.jsonl for `path`, and how it was found ("" when given directly)."""
    path = Path(path)
    if path.is_file() and path.name == TRANSCRIPTS:
        return path.parent, ""
    if not path.is_dir():
        raise ViewerError(f"{path}: no such folder")
    if (path / TRANSCRIPTS).is_file():
        return path, ""
    latest = path / LATEST
    if latest.is_symlink() or latest.is_dir():
        target = latest.resolve()
        if (target / TRANSCRIPTS).is_file():
            return target, f"{latest} -> {target.name}"
        raise ViewerError(f"{latest} points to {target}, which has no {TRANSCRIPTS}")
    if latest.is_file():  # a text file naming the run folder (where symlinks are not allowed)
        name = latest.read_text(encoding="utf-8").strip()
        target = (path / name).resolve() if name else path
        if name and (target / TRANSCRIPTS).is_file():
            return target, f"{latest} names {name}"
        raise ViewerError(f"{latest} names {name!r}, which has no {TRANSCRIPTS}")
    runs = sorted(child for child in path.iterdir() if child.is_dir() and (child / TRANSCRIPTS).is_file())
    if runs:
        return runs[-1], f"newest of {len(runs)} run folders in {path}"
    raise ViewerError(f"{path}: no {TRANSCRIPTS} here, no '{LATEST}' entry and no run folder with one (is it a training run or an evaluation folder?)")


def load_folder(path: str | Path) -> Folder:
    """Read a training run or evaluation folder (torn JSONL lines are skipped with a warning)."""
    folder, note = resolve_folder(path)
    records = list(read_jsonl(folder / TRANSCRIPTS))
    if (folder / "metrics.jsonl").is_file() or (folder / "config.json").is_file():
        metrics_by_step: dict[int, dict[str, Any]] = {}
        if (folder / "metrics.jsonl").is_file():
            for row in read_jsonl(folder / "metrics.jsonl"):
                if isinstance(row.get("step"), int):
                    metrics_by_step[row["step"]] = row  # the last line written for a step wins (a resumed step)
        config = options_by_name(_read_json(folder / "config.json"))  # grouped, or flat in runs from before the groups
        return Folder(folder, "training", records, config=config, metrics=[metrics_by_step[s] for s in sorted(metrics_by_step)], note=note)
    return Folder(folder, "evaluation", records, config=_read_json(folder / "manifest.json"), report=_read_json(folder / "report.json"), note=note)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ViewerError(f"{path}: not JSON ({err})") from None
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------- rows


def dialogue_row(record: Mapping[str, Any], tags: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """The fields the list filters and sorts on, from one transcript record (`tags`: its turns' tagger strategies, if known)."""
    turns = [t for t in record.get("turns") or () if isinstance(t, Mapping)]
    tags = tagger_strategies(turns) if tags is None else tags
    initial = record.get("initial_emotion")
    final = record.get("final_emotion")
    flags: set[str] = set()
    analysis_strategies: set[str] = set()
    for turn in turns:
        analysis = turn.get("analysis") if isinstance(turn.get("analysis"), Mapping) else {}
        flags.update(str(f) for f in analysis.get("flags") or ())
        analysis_strategies.update(str(s) for s in analysis.get("strategies") or ())
    if flags & SALAD_FLAGS:
        flags.add(SALAD)
    change = final - initial if isinstance(final, (int, float)) and isinstance(initial, (int, float)) else None
    return {
        "scenario": record.get("scenario_id"),
        "intention": record.get("hidden_intention"),
        "character": record.get("character_type"),
        "outcome": record.get("outcome"),
        "step": record.get("step"),
        "group": record.get("group"),
        "seed": record.get("seed"),
        "repeat": record.get("repeat"),
        "initial": initial,
        "final": final,
        "change": change,
        "turns": len(turns),
        "flags": sorted(flags),
        "analysis_strategies": sorted(analysis_strategies),
        "tagger_strategies": sorted({str(s) for turn_tags in tags for s in turn_tags}),
    }


def tagger_strategies(turns: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The evaluator's tagger strategies of each turn: the record's own, or the tagger run on the visible reply."""
    out = []
    for turn in turns:
        if isinstance(turn.get("strategies"), list):
            out.append([str(s) for s in turn["strategies"]])
        else:
            out.append(list(tag_reply(str(turn.get("agent_reply") or ""))))
    return out


def search_text(record: Mapping[str, Any]) -> str:
    """What the free-text filter searches: every message, thought and think part, lowercased."""
    parts = [str(record.get("first_message") or ""), str(record.get("scenario_id") or "")]
    for turn in record.get("turns") or ():
        if isinstance(turn, Mapping):
            # agent_text is the whole reply, <think> part included; agent_reply the visible part
            parts += [str(turn.get("agent_text") or turn.get("agent_reply") or ""), *(str(turn.get(k) or "") for k in ("user_reply", "thoughts"))]
    return "\n".join(parts).lower()


def filter_rows(rows: Iterable[Mapping[str, Any]], **wanted: Any) -> list[Mapping[str, Any]]:
    """The rows the page's filters keep: the same rules as the page's JavaScript, for checking it.

    Equality filters: intention, character, outcome, step, source. `flag` and `strategy` are kept
    when the row's `flags` (or either strategy list) contains them; `text` is a substring of the
    row's `text` (lowercased).
    """
    kept = []
    for row in rows:
        if any(key in wanted and wanted[key] is not None and row.get(key) != wanted[key] for key in ("intention", "character", "outcome", "step", "source")):
            continue
        if wanted.get("flag") and wanted["flag"] not in row["flags"]:
            continue
        if wanted.get("strategy") and wanted["strategy"] not in row["analysis_strategies"] + row["tagger_strategies"]:
            continue
        if wanted.get("text") and wanted["text"].lower() not in row.get("text", ""):
            continue
        kept.append(row)
    return kept


# ---------------------------------------------------------------------------------------------- scenarios


def scenario_source(folder: Folder) -> dict[str, Any] | None:
    """The scenario source the folder's records name: {"name", "count", "sha256"} from the manifest, or None."""
    for record in folder.records[:1]:
        manifest = record.get("manifest") if isinstance(record.get("manifest"), Mapping) else {}
        scenarios = manifest.get("scenarios") or (manifest.get("environment") or {}).get("scenarios")
        if isinstance(scenarios, Mapping) and scenarios.get("name"):
            return dict(scenarios)
    name = folder.config.get("scenarios") or (folder.config.get("evaluation") or {}).get("scenarios")
    return {"name": name} if isinstance(name, str) else None


def join_scenarios(source: Mapping[str, Any] | None, wanted: Iterable[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """The scenario cards of the `wanted` ids from `source`, and a note saying where they came from or why not."""
    from sage_gym.resources import data_path
    from sage_gym.scenarios import SPLITS, ScenarioError, ScenarioSet, load_scenarios, load_split

    missing_note = "only the fields each record carries (scenario id, hidden intention, character type, first message) are shown"
    if not source or not source.get("name"):
        return {}, f"the records name no scenario source: {missing_note}"
    name = str(source["name"])
    sliced = re.fullmatch(r"(.*)\[:(\d+)\]", name)  # the first N of a set (the default run's `train[:16]`)
    limit = int(sliced.group(2)) if sliced else None
    name = sliced.group(1) if sliced else name
    candidates: list[Any] = []
    if name in SPLITS:
        candidates.append(lambda: load_split(name))
    candidates.append(lambda: load_scenarios(name))
    stem = Path(name).name.removesuffix(".jsonl")
    if stem.replace("_", "-") in SPLITS:  # a shipped split's file, written from another checkout or install
        candidates.append(lambda: load_scenarios(data_path("personas", f"{stem}.jsonl")))
    scenarios = None
    for load in candidates:
        try:
            scenarios = load()
            break
        except (ScenarioError, OSError, ValueError):
            continue
    if scenarios is None:
        return {}, f"scenario source {source['name']!r} not found: {missing_note}"
    if limit is not None:
        scenarios = ScenarioSet(list(scenarios)[:limit], name=f"{scenarios.name}[:{limit}]")
    cards = {s.id: s.to_dict() for s in scenarios if s.id in set(wanted)}
    note = f"scenario cards from {scenarios.name}"
    expected = source.get("sha256")
    if expected and scenarios.sha256 != expected:
        note += f" (WARNING: its sha256 {scenarios.sha256[:12]} differs from the run's {str(expected)[:12]}: the file changed since the run, cards may not match)"
    lost = sorted(set(wanted) - set(cards))
    if lost:
        note += f"; {len(lost)} scenario id(s) not in it ({', '.join(lost[:5])}): for those {missing_note}"
    return cards, note


# ---------------------------------------------------------------------------------------------- at a glance


def training_glance(folder: Folder) -> dict[str, Any]:
    """Settings, the first and last steps' scores with intervals, outcome shares, canaries and the curve."""
    config = redact(folder.config)
    steps = sorted({r["step"] for r in folder.records if isinstance(r.get("step"), int)})
    if "model" in config and not config["model"]:
        config["model"] = "the embedded tiny chat model (default)"
    glance: dict[str, Any] = {
        "settings": {k: config.get(k) for k in ("model", "simulator", "simulator_model", "scenarios", "steps", "group_size", "scenarios_per_step", "max_turns", "reward_mode", "template", "lora", "seed") if k in config},
        "windows": [],
        "curve": [{k: row.get(k) for k in ("step", *CURVE_KEYS) if row.get(k) is not None} for row in folder.metrics],
        "canaries": {},
    }
    if steps:
        for label, step in (("first step", steps[0]), ("last step", steps[-1])):
            glance["windows"].append({"label": f"{label} ({step})", **outcome_summary([r for r in folder.records if r.get("step") == step])})
    trained = [row for row in folder.metrics if any(k.startswith("canary/") for k in row)]  # step 0 holds only the held-out check
    if trained:
        first, last = trained[0], trained[-1]
        glance["canaries"] = {k: [first.get(k), last.get(k)] for k in sorted(set(first) | set(last)) if k.startswith("canary/")}
    return glance


def evaluation_glance(folder: Folder) -> dict[str, Any]:
    """The report's score, shares and intervals, the agent and simulator, canaries and reliability."""
    report = redact(folder.report)
    manifest = redact(folder.config or report.get("manifest") or {})
    environment = manifest.get("environment") or {}
    results = report.get("results") or {}
    return {
        "settings": {
            "agent": manifest.get("agent"),
            "simulator": environment.get("simulator"),
            "scenarios": (manifest.get("evaluation") or {}).get("scenarios"),
            "rules": environment.get("rules"),
        },
        # the report's own score and interval where there is a report (the same numbers as summary.md)
        "windows": [{"label": "all dialogues", **outcome_summary(folder.records), **({"score": results["score"]} if results.get("score") else {})}],
        "canaries": {k: v for k, v in (report.get("canaries") or {}).items() if not isinstance(v, (dict, list))},
        "reliability": (report.get("reliability") or {}).get("score"),
        "curve": [],
    }


def outcome_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean final emotion with a 95% bootstrap interval (scenarios, then their dialogues) and outcome shares."""
    scored = [r for r in records if isinstance(r.get("final_emotion"), (int, float)) and r.get("outcome") != "error"]
    by_scenario: dict[str, list[float]] = {}
    for r in scored:
        by_scenario.setdefault(str(r.get("scenario_id")), []).append(float(r["final_emotion"]))
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[str(r.get("outcome"))] = outcomes.get(str(r.get("outcome")), 0) + 1
    return {
        "n": len(records),
        "score": hierarchical_bootstrap(by_scenario, samples=1000) if by_scenario else {"mean": None, "ci": None},
        "shares": {k: round(v / len(records), 4) for k, v in sorted(outcomes.items())} if records else {},
    }


# ---------------------------------------------------------------------------------------------- the page


def page_data(folders: Sequence[Folder]) -> dict[str, Any]:
    """Everything the page shows, for one or more folders (two give the side-by-side comparison)."""
    manifests: list[Any] = []
    manifest_index: dict[str, int] = {}
    sources, dialogues, scenarios = [], [], {}
    for number, folder in enumerate(folders):
        wanted = {str(r.get("scenario_id")) for r in folder.records}
        cards, note = join_scenarios(scenario_source(folder), wanted)
        for scenario_id, card in cards.items():
            scenarios.setdefault(scenario_id, card)
        glance = training_glance(folder) if folder.kind == "training" else evaluation_glance(folder)
        sources.append({"label": _label(folder, folders), "kind": folder.kind, "folder": str(folder.path), "found": folder.note, "scenario_note": note, "glance": glance})
        for index, record in enumerate(folder.records):
            body = {k: v for k, v in record.items() if k != "manifest"}
            manifest = None
            if "manifest" in record:
                key = json.dumps(record["manifest"], sort_keys=True, default=str)
                if key not in manifest_index:
                    manifest_index[key] = len(manifests)
                    manifests.append(redact(record["manifest"]))
                manifest = manifest_index[key]
            turns = [t for t in record.get("turns") or () if isinstance(t, Mapping)]
            tags = tagger_strategies(turns)
            row = dialogue_row(record, tags)
            # the tagger's strategies per turn go in only where the record does not carry them itself;
            # the body is stored as written (manifests, the only place settings and secrets live, are redacted)
            stored_tags = None if all(isinstance(t.get("strategies"), list) for t in turns) else tags
            dialogues.append({"id": f"{number}.{index}", "source": number, "manifest": manifest, "record": body, "row": row, "tags": stored_tags})
    return {
        "format": 1,
        "vocabulary": {"analysis": ANALYSIS_VOCABULARY, "tagger": TAGGER_VOCABULARY},
        "sources": sources,
        "manifests": manifests,
        "scenarios": scenarios,
        "dialogues": dialogues,
    }


def _label(folder: Folder, folders: Sequence[Folder]) -> str:
    """A short name for the folder: its own name, with its parent's when two folders share a name."""
    names = [f.path.name for f in folders]
    if names.count(folder.path.name) > 1:
        return f"{folder.path.parent.name}/{folder.path.name}"
    return folder.path.name
