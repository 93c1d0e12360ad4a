"""`python -m agents.evaluate`: the SAGE benchmark for any agent, reproducibly, into one folder.

    python -m agents.evaluate --agent empathic                       # a reference agent on the eval split
    python -m agents.evaluate --agent hf --model runs/grpo/final     # a local model, checkpoint or LoRA adapter
    python -m agents.evaluate --agent openai --base-url http://localhost:8000/v1 --model my-chat-model
    python -m agents.evaluate --agent sb3 --model runs/sb3/model.zip
    python -m agents.evaluate --compare evaluations/*/report.json    # a table of several reports

Every scenario of the split (default `eval`) is played with SAGE's evaluation settings (initial
emotion 40, 10 agent turns, the simulator's change clipped to [-10, 10]; all overridable)
through `SageVectorEnv`, many dialogues at once. Each dialogue's seed is derived from the
evaluation seed and the scenario id, so a dialogue does not depend on which others ran beside it.

| output | what it holds |
|---|---|
| `report.json` | the manifest (agent, simulator model and sampling, rules, prompt and scenario-set hashes, seeds, package version) and the results |
| `transcripts.jsonl` | one finished dialogue per line, every agent turn tagged with its strategies |
| `summary.md` | the results as Markdown tables |
| `emotion_trajectories.png`, `score_by_intention.png`, `strategy_mix.png` | plots |
| `manifest.json` | the manifest, written first: a rerun into the same folder resumes only if it matches |

Results: the **score** (mean final emotion), the **success share** (final emotion at 100), the
**failure share** (final emotion below 10), the mean number of agent turns, all with seeded
percentile-bootstrap confidence intervals, overall, per hidden intention, per intention group and
per character type; the outcome and grade counts; the mean emotion by turn; and the mix of
response strategies (`agents.strategies`). A dialogue whose simulator failed for good (outcome
`error`) is listed under `errors` and left out of every number, never scored as zero.

Interrupted evaluations resume: dialogues already in `transcripts.jsonl` are skipped, and the
report is computed from the transcripts alone (in a fixed order), so a resumed evaluation gives
the same `report.json` as an uninterrupted one, apart from its `run` section (times, counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from agents.agent_api import AGENT_KINDS, EvalAgent, make_agent
from agents.strategies import LLMStrategyJudge, strategy_mix, tag_reply
from sage_gym.env import package_version
from sage_gym.scenarios import EMOTIONAL_INTENTIONS, RATIONAL_INTENTIONS, ScenarioSet, resolve_scenarios
from sage_gym.simulators import Simulator
from sage_gym.simulators.base import emotion_grade
from sage_gym.transcripts import append_jsonl, read_jsonl
from sage_gym.vector import SageVectorEnv, unbatch_infos

REPORT, TRANSCRIPTS, MANIFEST, SUMMARY = "report.json", "transcripts.jsonl", "manifest.json", "summary.md"
PLOTS = ("emotion_trajectories.png", "score_by_intention.png", "strategy_mix.png")


# ----------------------------------------------------------------------------------------------
# settings and the episode plan


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation plays. The defaults are SAGE's evaluation settings on the eval split."""

    scenarios: str = "eval"  # a split name or a JSONL path
    simulator: str | Simulator = "builtin"  # a name ("builtin", "openai") or a Simulator instance
    simulator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    initial_emotion: int = 40
    max_turns: int = 10
    change_clip: tuple[int, int] = (-10, 10)
    episodes_per_scenario: int = 1
    limit: int | None = None  # only the first `limit` scenarios of the set
    seed: int = 0
    num_envs: int = 16  # dialogues in flight at once (does not change a reference agent's results)
    bootstrap_samples: int = 2000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.episodes_per_scenario < 1:
            raise ValueError(f"episodes_per_scenario must be at least 1, got {self.episodes_per_scenario}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be a positive number of scenarios, got {self.limit}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        if self.bootstrap_samples < 1 or not 0 < self.confidence < 1:
            raise ValueError(f"need bootstrap_samples >= 1 and 0 < confidence < 1, got {self.bootstrap_samples} and {self.confidence}")

    def env_kwargs(self) -> dict[str, Any]:
        return {"initial_emotion": self.initial_emotion, "max_turns": self.max_turns, "change_clip": tuple(self.change_clip)}


@dataclass(frozen=True)
class Episode:
    scenario_id: str
    repeat: int
    seed: int

    @property
    def key(self) -> str:
        return episode_key(self.scenario_id, self.repeat)


def episode_key(scenario_id: str, repeat: int) -> str:
    return f"{scenario_id}#{repeat}"


def episode_seed(seed: int, scenario_id: str, repeat: int) -> int:
    """A dialogue's seed: a stable hash (CRC32) of the evaluation seed, the scenario id and the repeat."""
    return zlib.crc32(f"{seed}/{scenario_id}/{repeat}".encode())


def plan_episodes(scenarios: ScenarioSet, settings: EvalSettings) -> list[Episode]:
    chosen = list(scenarios)[: settings.limit]
    return [Episode(s.id, r, episode_seed(settings.seed, s.id, r)) for s in chosen for r in range(settings.episodes_per_scenario)]


# ----------------------------------------------------------------------------------------------
# scoring (a pure function of the transcripts)


@dataclass(frozen=True)
class Scoring:
    success_at: int = 100
    failure_below: int = 10
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Scoring:
        rules, evaluation = manifest["environment"]["rules"], manifest["evaluation"]
        return cls(rules["success_at"], rules["failure_below"], evaluation["bootstrap_samples"], evaluation["confidence"], evaluation["seed"])


def bootstrap_ci(values: Sequence[float], scoring: Scoring, name: str) -> list[float] | None:
    """Percentile-bootstrap confidence interval of the mean, from a generator seeded by (seed, name)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    rng = np.random.default_rng([scoring.seed, zlib.crc32(name.encode())])
    means = []
    for start in range(0, scoring.bootstrap_samples, 256):  # chunks keep the index matrix small
        rows = min(256, scoring.bootstrap_samples - start)
        means.append(values[rng.integers(0, values.size, size=(rows, values.size))].mean(axis=1))
    alpha = (1 - scoring.confidence) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return [_round(low), _round(high)]


def _round(x: float) -> float:
    return round(float(x), 4)


def metrics(records: Sequence[Mapping[str, Any]], scoring: Scoring, name: str) -> dict[str, Any]:
    """Score, success share, failure share and mean turns of scored dialogues, each with its CI."""
    finals = np.array([r["final_emotion"] for r in records], dtype=np.float64)
    columns = {
        "score": finals,
        "success_share": (finals >= scoring.success_at).astype(np.float64),
        "failure_share": (finals < scoring.failure_below).astype(np.float64),
        "mean_turns": np.array([len(r["turns"]) for r in records], dtype=np.float64),
    }
    result: dict[str, Any] = {"n": len(records)}
    for key, values in columns.items():
        result[key] = {"mean": _round(values.mean()) if values.size else None, "ci": bootstrap_ci(values, scoring, f"{name}/{key}")}
    return result


def trajectory(record: Mapping[str, Any], length: int) -> list[int]:
    """Emotion before each agent turn and after the last, held at the final value once the dialogue ended."""
    values = [record["initial_emotion"]] + [t["emotion"] for t in record["turns"]]
    return values + [values[-1]] * (length - len(values))


def _sorted(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # a fixed order, whatever order the dialogues finished in: bootstrap draws depend on it
    return sorted(records, key=lambda r: (r["scenario_id"], r["repeat"]))


def _intention_group(intention: str) -> str:
    return "rational" if intention in RATIONAL_INTENTIONS else "emotional" if intention in EMOTIONAL_INTENTIONS else "custom"


def score_records(records: Iterable[Mapping[str, Any]], scoring: Scoring = Scoring()) -> dict[str, Any]:
    """Every number of the report from transcript records (errors listed, never scored)."""
    records = _sorted(records)
    scored = [r for r in records if r["outcome"] != "error"]
    errors = [r for r in records if r["outcome"] == "error"]

    def grouped(key: Callable[[Mapping[str, Any]], str], prefix: str) -> dict[str, Any]:
        names = sorted({key(r) for r in scored})
        return {name: metrics([r for r in scored if key(r) == name], scoring, f"{prefix}/{name}") for name in names}

    length = 1 + max((len(r["turns"]) for r in scored), default=0)
    paths = np.array([trajectory(r, length) for r in scored], dtype=np.float64).reshape(len(scored), length)
    rule_tags = [t["strategies"] for r in scored for t in r["turns"]]
    judged = [t["judge_strategies"] for r in scored for t in r["turns"] if t.get("judge_strategies") is not None]
    judge_errors = sum(1 for r in scored for t in r["turns"] if t.get("judge_error"))
    intentions = sorted({r["hidden_intention"] for r in scored})
    return {
        "results": metrics(scored, scoring, "all"),
        "by_intention": grouped(lambda r: r["hidden_intention"], "intention"),
        "by_intention_group": grouped(lambda r: _intention_group(r["hidden_intention"]), "group"),
        "by_character": grouped(lambda r: r["character_type"], "character"),
        "outcomes": dict(sorted(Counter(r["outcome"] for r in records).items())),
        "grades": {g: sum(1 for r in scored if emotion_grade(r["final_emotion"]) == g) for g in "SABCF"},
        "mean_emotion_by_turn": [_round(v) for v in paths.mean(axis=0)] if scored else [],
        "strategies": {
            "rule": strategy_mix(rule_tags),
            "rule_by_intention": {
                name: strategy_mix([t["strategies"] for r in scored if r["hidden_intention"] == name for t in r["turns"]]) for name in intentions
            },
            "judge": {**strategy_mix(judged), "errors": judge_errors} if judged or judge_errors else None,
        },
        "errors": [{"scenario_id": r["scenario_id"], "repeat": r["repeat"], "error": r.get("error")} for r in errors],
    }


# ----------------------------------------------------------------------------------------------
# running the dialogues


def run_dialogues(
    agent: EvalAgent,
    venv: SageVectorEnv,
    episodes: Sequence[Episode],
    finished: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Play `episodes` through `venv` (autoreset disabled), refilling each slot as its dialogue ends.

    `finished` receives the transcript records of the dialogues that ended at each step.
    """
    n = venv.num_envs
    queue = deque(episodes)
    slots: list[Episode | None] = [None] * n
    infos: list[dict[str, Any]] = [{} for _ in range(n)]

    def start(free: list[int]) -> None:
        starting = {i: queue.popleft() for i in free[: len(queue)]}
        if not starting:
            return
        options: dict[str, Any] = {"scenario_ids": [starting[i].scenario_id if i in starting else None for i in range(n)]}
        if len(starting) < n:
            options["reset_mask"] = np.array([i in starting for i in range(n)])
        _, batch = venv.reset(seed=[starting[i].seed if i in starting else None for i in range(n)], options=options)
        fresh = unbatch_infos(batch, n)
        for i, episode in starting.items():
            slots[i], infos[i] = episode, fresh[i]
            agent.begin(i, episode.seed)

    start(list(range(n)))
    while any(slot is not None for slot in slots):
        active = [i for i in range(n) if slots[i] is not None]
        replies = agent.act(active, [infos[i] for i in active])
        actions: list[str | None] = [None] * n
        for i, reply in zip(active, replies):
            actions[i] = reply
        _, _, terminated, truncated, batch = venv.step(actions)
        step_infos = unbatch_infos(batch, n)
        done = []
        for i in active:
            infos[i] = step_infos[i]
            if terminated[i] or truncated[i]:
                episode = slots[i]
                assert episode is not None
                record = venv.envs[i].episode_record()
                record.update(repeat=episode.repeat, error=step_infos[i].get("error"))
                done.append(record)
                slots[i] = None
        if done:
            finished(done)
        start([i for i in range(n) if slots[i] is None])


def tag_records(records: list[dict[str, Any]], judge: LLMStrategyJudge | None) -> None:
    """Add each agent turn's strategies (rule-based, and the judge's when there is one) to the records."""
    pairs, where = [], []
    for record in records:
        before = record["first_message"]
        for turn in record["turns"]:
            turn["strategies"] = list(tag_reply(turn["agent_reply"]))
            pairs.append((before, turn["agent_reply"]))
            where.append(turn)
            before = turn["user_reply"]
    if judge is None or not pairs:
        return
    for turn, tags in zip(where, judge.tag_turns(pairs)):
        if isinstance(tags, Exception):
            turn["judge_strategies"], turn["judge_error"] = None, str(tags)
        else:
            turn["judge_strategies"] = list(tags)


# ----------------------------------------------------------------------------------------------
# the evaluation


def build_manifest(
    agent: EvalAgent, env_manifest: Mapping[str, Any], settings: EvalSettings, episodes: Sequence[Episode], judge: LLMStrategyJudge | None
) -> dict[str, Any]:
    """Everything that determines the results (JSON-normalised, so it compares equal after a reload)."""
    # not recorded: simulator_kwargs may hold secrets (the simulator's own manifest records its
    # settings), and num_envs changes how long an evaluation takes, not its dialogues
    evaluation = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in ("simulator_kwargs", "num_envs")}
    if not isinstance(settings.simulator, str):
        evaluation["simulator"] = settings.simulator.kind
    evaluation["episodes"] = len(episodes)
    evaluation["episodes_sha256"] = _sha256(json.dumps([[e.scenario_id, e.repeat, e.seed] for e in episodes]))
    evaluation["episode_seed"] = "crc32(f'{seed}/{scenario_id}/{repeat}')"
    manifest = {
        "package": {"name": "sage-gym", "version": package_version()},
        "agent": agent.manifest(),
        "environment": dict(env_manifest),
        "evaluation": evaluation,
        "strategy_tagger": {"rule": {"module": "agents.strategies", "sha256": _file_sha256(Path(__file__).with_name("strategies.py"))}},
        "strategy_judge": judge.manifest() if judge is not None else None,
    }
    return json.loads(json.dumps(manifest, default=str))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open_folder(out: Path, manifest: Mapping[str, Any], overwrite: bool) -> None:
    """Start a fresh folder, or check that the one there holds this same evaluation (to resume it)."""
    if overwrite:
        for name in (REPORT, TRANSCRIPTS, MANIFEST, SUMMARY, *PLOTS):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    stored_path = out / MANIFEST
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text())
        if stored != manifest:
            changed = sorted(_differences(stored, manifest))
            raise ValueError(
                f"{out} holds an evaluation with other settings ({', '.join(changed[:6])} differ), so it cannot be resumed; "
                "choose another --output or pass --overwrite"
            )
    elif (out / TRANSCRIPTS).exists():
        raise ValueError(f"{out} has {TRANSCRIPTS} but no {MANIFEST}: it was not written by this evaluator; choose another --output or pass --overwrite")
    else:
        stored_path.write_text(json.dumps(manifest, indent=1) + "\n")


def _differences(a: Any, b: Any, path: str = "") -> Iterable[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif a != b:
        yield path or "(root)"


def evaluate(
    agent: EvalAgent,
    output_dir: str | Path,
    settings: EvalSettings = EvalSettings(),
    *,
    judge: LLMStrategyJudge | None = None,
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run (or resume) an evaluation into `output_dir`; returns the report (also written there)."""
    from tqdm.auto import tqdm

    started = time.time()
    out = Path(output_dir)
    scenarios = resolve_scenarios(settings.scenarios)
    episodes = plan_episodes(scenarios, settings)
    transcripts = out / TRANSCRIPTS

    done = {episode_key(r["scenario_id"], r["repeat"]) for r in _read_records(transcripts)} if not overwrite else set()
    pending = [e for e in episodes if e.key not in done]
    venv = SageVectorEnv(
        max(1, min(settings.num_envs, len(pending))),
        scenarios,
        settings.simulator,
        dict(settings.simulator_kwargs),
        autoreset_mode="disabled",
        **settings.env_kwargs(),
    )
    try:
        manifest = build_manifest(agent, venv.envs[0].manifest(), settings, episodes, judge)
        _open_folder(out, manifest, overwrite)
        resumed_from = len(episodes) - len(pending)
        bar = tqdm(total=len(episodes), initial=resumed_from, desc=f"evaluating {agent.name}", unit="dialogue", disable=not progress)

        def finished(records: list[dict[str, Any]]) -> None:
            tag_records(records, judge)
            for record in records:
                append_jsonl(transcripts, record)
            bar.update(len(records))

        try:
            if pending:
                run_dialogues(agent, venv, pending, finished)
        finally:
            bar.close()
    finally:
        venv.close()

    planned = {e.key for e in episodes}
    records = [r for r in _read_records(transcripts) if episode_key(r["scenario_id"], r["repeat"]) in planned]
    report = {"manifest": manifest, **score_records(records, Scoring.from_manifest(manifest))}
    report["run"] = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.time() - started, 2),
        "resumed_from": resumed_from,
        "dialogues_this_run": len(pending),
        "num_envs": venv.num_envs,
        "python": platform.python_version(),
    }
    write_outputs(out, report, records, plots=plots)
    return report


def _read_records(transcripts: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(transcripts)) if transcripts.exists() else []


# ----------------------------------------------------------------------------------------------
# outputs: report.json, summary.md, plots


def write_outputs(out: Path, report: Mapping[str, Any], records: Sequence[Mapping[str, Any]], plots: bool = True) -> None:
    """report.json, summary.md and (unless `plots` is False) the PNG plots, from the report and its transcript records."""
    (out / REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    (out / SUMMARY).write_text(summary_markdown(report))
    if plots:
        write_plots(out, report, records)


def _fmt(stat: Mapping[str, Any] | None, percent: bool = False, digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    scale, unit = (100, "%") if percent else (1, "")
    text = f"{stat['mean'] * scale:.{digits}f}{unit}"
    if stat.get("ci"):
        low, high = stat["ci"]
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def _metrics_table(title: str, groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [f"| {title} | n | score | success | failure | turns |", "|---|---|---|---|---|---|"]
    for name, m in groups.items():
        lines.append(
            f"| {name} | {m['n']} | {_fmt(m['score'])} | {_fmt(m['success_share'], True)} | {_fmt(m['failure_share'], True)} | {_fmt(m['mean_turns'])} |"
        )
    return lines


def _mix_table(mix: Mapping[str, Any]) -> list[str]:
    lines = ["| strategy | share of turns |", "|---|---|"]
    lines += [f"| {name} | {share * 100:.1f}% |" for name, share in mix["strategies"].items()]
    lines += ["", "| style | share of turns |", "|---|---|"]
    lines += [f"| {name} | {share * 100:.1f}% |" for name, share in mix["styles"].items()]
    return lines


def summary_markdown(report: Mapping[str, Any]) -> str:
    manifest, results = report["manifest"], report["results"]
    agent, env, evaluation = manifest["agent"], manifest["environment"], manifest["evaluation"]
    simulator = env["simulator"]
    rules = env["rules"]
    confidence = round(evaluation["confidence"] * 100)
    lines = [
        f"# Evaluation of `{agent['name']}` ({agent['kind']})",
        "",
        f"- scenarios: `{evaluation['scenarios']}` ({env['scenarios']['count']} in the set, {evaluation['episodes']} dialogues, sha256 {env['scenarios']['sha256'][:12]})",
        f"- simulator: {simulator.get('kind')} `{simulator.get('model')}`",
        f"- rules: initial emotion {rules['initial_emotion']}, {rules['max_turns']} agent turns, change clipped to {rules['change_clip']}",
        f"- seed {evaluation['seed']}; {confidence}% bootstrap intervals from {evaluation['bootstrap_samples']} resamples",
        f"- sage-gym {manifest['package']['version']}; prompts sha256 {env['prompts_sha256'][:12]}",
        "",
        "## Results",
        "",
        *_metrics_table("dialogues", {"all": results}),
        "",
        f"Outcomes: {', '.join(f'{k} {v}' for k, v in report['outcomes'].items()) or 'none'}. "
        f"Grades: {', '.join(f'{k} {v}' for k, v in report['grades'].items())}.",
        "",
    ]
    if report["errors"]:
        lines += [f"{len(report['errors'])} dialogue(s) ended with a simulator error and are left out of every number:", ""]
        lines += [f"- `{e['scenario_id']}` (repeat {e['repeat']}): {e['error']}" for e in report["errors"]]
        lines.append("")
    lines += ["## By hidden intention", "", *_metrics_table("intention", report["by_intention"]), ""]
    lines += ["## By intention group", "", *_metrics_table("group", report["by_intention_group"]), ""]
    lines += ["## By character type", "", *_metrics_table("character", report["by_character"]), ""]
    lines += ["## Strategy mix (rule-based tagger)", "", *_mix_table(report["strategies"]["rule"]), ""]
    by_intention = report["strategies"]["rule_by_intention"]
    if by_intention:
        styles = list(report["strategies"]["rule"]["styles"])
        lines += ["Styles by hidden intention (share of turns):", "", f"| intention | {' | '.join(styles)} |", "|---" * (len(styles) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{mix['styles'][s] * 100:.0f}%" for s in styles) + " |" for name, mix in by_intention.items()]
        lines.append("")
    judge = report["strategies"]["judge"]
    if judge:
        lines += [f"## Strategy mix (LLM judge `{manifest['strategy_judge']['model']}`, {judge['errors']} failed turns)", "", *_mix_table(judge), ""]
    lines += ["## Plots", "", *(f"![{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def write_plots(out: Path, report: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = report["manifest"]["environment"]["rules"]
    scored = [r for r in _sorted(records) if r["outcome"] != "error"]
    mean = report["mean_emotion_by_turn"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for record in scored:
        path = trajectory(record, len(mean))
        ax.plot(range(len(path)), path, color="tab:blue", alpha=max(0.03, min(0.4, 8 / max(1, len(scored)))), linewidth=0.8)
    ax.plot(range(len(mean)), mean, color="black", linewidth=2.5, label="mean (final value held after a dialogue ends)")
    ax.axhline(rules["success_at"], color="tab:green", linestyle="--", linewidth=1, label="success")
    ax.axhline(rules["failure_below"], color="tab:red", linestyle="--", linewidth=1, label="failure")
    ax.set(xlabel="agent turn", ylabel="emotion", ylim=(-2, 102), title=f"Emotion trajectories: {report['manifest']['agent']['name']}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=110)
    plt.close(fig)

    groups = report["by_intention"]
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(4, len(groups)) + 1))
    names = list(groups)
    scores = [groups[n]["score"]["mean"] for n in names]
    errors = np.array([[s - groups[n]["score"]["ci"][0], groups[n]["score"]["ci"][1] - s] for n, s in zip(names, scores)]).T if names else None
    ax.barh(names, scores, xerr=errors, color="tab:blue", capsize=3)
    overall = report["results"]["score"]["mean"]
    if overall is not None:
        ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.1f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set(xlabel="score (mean final emotion)", xlim=(0, 100), title="Score per hidden intention")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / PLOTS[1], dpi=110)
    plt.close(fig)

    mixes = {"rule-based": report["strategies"]["rule"]}
    if report["strategies"]["judge"]:
        mixes["LLM judge"] = report["strategies"]["judge"]
    strategies = list(mixes["rule-based"]["strategies"])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(strategies) + 1))
    height = 0.8 / len(mixes)
    for k, (label, mix) in enumerate(mixes.items()):
        positions = np.arange(len(strategies)) + k * height
        ax.barh(positions, [mix["strategies"][s] * 100 for s in strategies], height=height, label=label)
    ax.set_yticks(np.arange(len(strategies)) + height * (len(mixes) - 1) / 2, strategies)
    ax.set(xlabel="share of agent turns (%)", xlim=(0, 100), title="Strategy mix")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# comparing reports


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / REPORT
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation report at {path}")
    return json.loads(path.read_text())


def compare_reports(paths: Sequence[str | Path]) -> str:
    """A Markdown table of several reports: score, success, failure, turns and style shares, with CIs."""
    lines = [
        "| agent | simulator | scenarios | n | errors | score | success | failure | turns | empathic turns | advice turns |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        report = load_report(path)
        manifest, results = report["manifest"], report["results"]
        styles = report["strategies"]["rule"]["styles"]
        agent = manifest["agent"]
        lines.append(
            f"| {agent['name']} ({agent['kind']}) | {manifest['environment']['simulator'].get('model')} | {manifest['evaluation']['scenarios']} "
            f"| {results['n']} | {len(report['errors'])} | {_fmt(results['score'])} | {_fmt(results['success_share'], True)} "
            f"| {_fmt(results['failure_share'], True)} | {_fmt(results['mean_turns'])} | {styles['empathic'] * 100:.0f}% | {styles['solution'] * 100:.0f}% |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agents.evaluate",
        description="Evaluate an agent on a scenario split with SAGE's settings (or compare reports with --compare).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--compare", nargs="+", metavar="REPORT", help="print a table of these reports (report.json files or their folders) and exit")
    parser.add_argument("--agent", choices=AGENT_KINDS, help="the agent to evaluate")
    parser.add_argument("--output", help="output folder (default: evaluations/<agent>-<scenarios>)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming what is in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    group = parser.add_argument_group("what to play")
    group.add_argument("--scenarios", "--split", dest="scenarios", default="eval", help="a split (train, eval) or a scenario JSONL file")
    group.add_argument("--limit", type=int, help="only the first N scenarios")
    group.add_argument("--episodes-per-scenario", type=int, default=1)
    group.add_argument("--initial-emotion", type=int, default=40)
    group.add_argument("--max-turns", type=int, default=10)
    group.add_argument("--change-clip", type=int, nargs=2, default=[-10, 10], metavar=("LOW", "HIGH"))
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--num-envs", type=int, default=16, help="dialogues in flight at once")
    group.add_argument("--bootstrap-samples", type=int, default=2000)
    group.add_argument("--confidence", type=float, default=0.95)

    group = parser.add_argument_group("simulator")
    group.add_argument("--simulator", default="builtin", choices=("builtin", "openai"))
    group.add_argument("--simulator-kwargs", type=json.loads, default={}, help='JSON keyword arguments of the simulator, e.g. \'{"base_url": "...", "model": "..."}\'')

    group = parser.add_argument_group("agent options (hf, openai, sb3)")
    group.add_argument("--model", help="hf: model folder, hub id, checkpoint or LoRA adapter folder; openai: model name; sb3: saved model .zip")
    group.add_argument("--base-model", help="hf: base model of a LoRA adapter (default: the one named in adapter_config.json)")
    group.add_argument("--template", choices=("think", "direct", "none"), help="agent system prompt (hf default: the checkpoint's, else think; openai default: direct)")
    group.add_argument("--max-reply-words", type=int, help="ask for replies under this many words")
    group.add_argument("--temperature", type=float, help="hf default 0 (greedy, reproducible); openai default 0.7")
    group.add_argument("--top-p", type=float)
    group.add_argument("--max-new-tokens", type=int, help="tokens per reply (hf default 256, openai default 512)")
    group.add_argument("--device", default="auto")
    group.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    group.add_argument("--chat-template", help="hf: a Jinja chat template file, or 'chatml', for a tokenizer without one")
    group.add_argument("--base-url", help="openai: the endpoint, e.g. http://localhost:8000/v1")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai/judge: environment variable holding the API key")
    group.add_argument("--stochastic", action="store_true", help="sb3: sample actions instead of taking the most likely one")

    group = parser.add_argument_group("LLM strategy judge (optional)")
    group.add_argument("--judge-base-url", help="tag strategies with an LLM judge at this OpenAI-compatible endpoint too")
    group.add_argument("--judge-model")
    return parser


def given(**options: Any) -> dict[str, Any]:
    """The options set on the command line; the others are left to the agent's own defaults."""
    return {key: value for key, value in options.items() if value is not None}


def agent_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `make_agent` for the chosen kind, from the command line."""
    if args.agent in ("hf", "openai", "sb3") and not args.model:
        raise SystemExit(f"--agent {args.agent} needs --model")
    if args.agent == "hf":
        return given(
            model=args.model, base_model=args.base_model, template=args.template, max_reply_words=args.max_reply_words,
            temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, device=args.device,
            dtype=args.dtype, chat_template=args.chat_template, seed=args.seed,
        )
    if args.agent == "openai":
        if not args.base_url:
            raise SystemExit("--agent openai needs --base-url")
        return given(
            base_url=args.base_url, model=args.model, template=args.template, max_reply_words=args.max_reply_words,
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_new_tokens, api_key_env=args.api_key_env,
        )
    if args.agent == "sb3":
        return {"model": args.model, "deterministic": not args.stochastic}
    return {}


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = build_parser().parse_args(argv)
    if args.compare:
        print(compare_reports(args.compare))
        return None
    if not args.agent:
        raise SystemExit("choose an agent with --agent (or compare reports with --compare)")
    settings = EvalSettings(
        scenarios=args.scenarios, simulator=args.simulator, simulator_kwargs=args.simulator_kwargs,
        initial_emotion=args.initial_emotion, max_turns=args.max_turns, change_clip=tuple(args.change_clip),
        episodes_per_scenario=args.episodes_per_scenario, limit=args.limit, seed=args.seed, num_envs=args.num_envs,
        bootstrap_samples=args.bootstrap_samples, confidence=args.confidence,
    )
    judge = None
    if args.judge_base_url or args.judge_model:
        if not (args.judge_base_url and args.judge_model):
            raise SystemExit("the LLM judge needs both --judge-base-url and --judge-model")
        judge = LLMStrategyJudge(args.judge_base_url, args.judge_model, api_key_env=args.api_key_env)
    agent = make_agent(args.agent, **agent_options(args))
    output = args.output or str(Path("evaluations") / f"{_slug(agent.name)}-{_slug(Path(args.scenarios).stem)}")
    report = evaluate(agent, output, settings, judge=judge, overwrite=args.overwrite, progress=not args.no_progress, plots=not args.no_plots)
    print(summary_markdown(report).split("## By hidden intention")[0].rstrip())
    print(f"\nwrote {output}/{REPORT}, {TRANSCRIPTS}, {SUMMARY} and plots")
    return report


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "agent"


if __name__ == "__main__":
    main()
