"""The SAGE benchmark for any agent, reproducibly, into one folder (the command line: `python -m agents.evaluate`).

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
response strategies (`agents.replies.strategies`). A dialogue whose simulator failed for good (outcome
`error`) is listed under `errors` and left out of every number, never scored as zero.

How far to trust the numbers: `--trials K` plays every scenario K times (the trial is the
`repeat` index, part of each dialogue's key and seed) and the report's `reliability` section
gives the two-level interval, per-scenario spread and pass^k (`agents.eval.trust`); `canaries`
(`agents.replies.canaries`) and, on probe scenarios, `sycophancy` (`agents.eval.probes`) flag what
the score alone does not show; `run.simulator` counts this run's simulator calls and tokens.

Interrupted evaluations resume: dialogues already in `transcripts.jsonl` are skipped, and the
report is computed from the transcripts alone (in a fixed order), so a resumed evaluation gives
the same `report.json` as an uninterrupted one, apart from its `run` section (times, counts).
A line torn by a killed run is cut off (its dialogue is played again). Dialogues that ended in
`error` are played again too (`retry_errors=False`, `--no-retry-errors`, keeps them): the new
record replaces the old one, so `transcripts.jsonl` holds each dialogue once. Every record,
manifest and report goes through `sage_gym.redaction.redact` before it is written, so a key
given in the simulator's or the agent's settings never reaches the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from agents.eval.agent_api import EvalAgent
from agents.eval.probes import SycophancyJudge, probe_of, tag_probe_records
from agents.eval.report import PLOTS, REPORT, SUMMARY, Scoring, score_records, write_outputs
from agents.replies.strategies import LLMStrategyJudge, tag_reply
from sage_gym.env import package_version
from sage_gym.redaction import redact
from sage_gym.scenarios import ScenarioSet, resolve_scenarios
from sage_gym.simulators import Simulator
from sage_gym.simulators.ledger import LedgerMiss, cost
from sage_gym.transcripts import append_jsonl, encode_record, read_jsonl, repair_jsonl
from sage_gym.vector import SageVectorEnv, unbatch_infos

TRANSCRIPTS, MANIFEST = "transcripts.jsonl", "manifest.json"


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
        for i, reply in zip(active, replies, strict=True):
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
    for turn, tags in zip(where, judge.tag_turns(pairs), strict=True):
        if isinstance(tags, Exception):
            turn["judge_strategies"], turn["judge_error"] = None, str(tags)
        else:
            turn["judge_strategies"] = list(tags)


# ----------------------------------------------------------------------------------------------
# the evaluation


def build_manifest(
    agent: EvalAgent,
    env_manifest: Mapping[str, Any],
    settings: EvalSettings,
    episodes: Sequence[Episode],
    judge: LLMStrategyJudge | None,
    sycophancy_judge: SycophancyJudge | None = None,
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
        "strategy_tagger": {"rule": {"module": "agents.replies.strategies", "sha256": _file_sha256(Path(__file__).with_name("strategies.py"))}},
        "strategy_judge": judge.manifest() if judge is not None else None,
        "sycophancy_judge": sycophancy_judge.manifest() if sycophancy_judge is not None else None,
    }
    return json.loads(json.dumps(redact(manifest), default=str))


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
    sycophancy_judge: SycophancyJudge | None = None,
    overwrite: bool = False,
    retry_errors: bool = True,
    progress: bool = True,
    plots: bool = True,
    price_per_1k: float | tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an evaluation into `output_dir`; returns the report (also written there).

    `sycophancy_judge` also judges the agent turns of probe scenarios (`agents.eval.probes`); the
    rule-based detector checks them always. `price_per_1k` (dollars per 1000 simulator tokens, one
    price or (prompt, completion)) adds the cost of this run's simulator calls to `run.simulator`.
    `retry_errors` plays the dialogues that ended in `error` in an earlier run again.
    """
    started = time.time()
    out = Path(output_dir)
    scenarios = resolve_scenarios(settings.scenarios)
    episodes = plan_episodes(scenarios, settings)
    transcripts = out / TRANSCRIPTS
    languages = {s.id: s.language for s in scenarios}
    probes = {s.id: probe for s in scenarios if (probe := probe_of(s)) is not None}

    pending, retried = pending_episodes(transcripts, episodes, overwrite, retry_errors)
    venv = _vector_env(settings, scenarios, len(pending))
    try:
        manifest = build_manifest(agent, venv.envs[0].manifest(), settings, episodes, judge, sycophancy_judge)
        _open_folder(out, manifest, overwrite)
        with _progress_bar(agent.name, len(episodes), len(episodes) - len(pending), progress) as bar:
            finished = record_writer(transcripts, languages, probes, judge, sycophancy_judge, bar.update)
            if pending:
                run_dialogues(agent, venv, pending, finished)
        usage = simulator_usage(venv.simulator, price_per_1k)
    finally:
        venv.close()

    run = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.time() - started, 2),
        "resumed_from": len(episodes) - len(pending),
        "dialogues_this_run": len(pending),
        "errors_retried": retried,
        "num_envs": venv.num_envs,
        "python": platform.python_version(),
        "simulator": usage,
    }
    return write_report(out, episodes, manifest, run, plots)


def _vector_env(settings: EvalSettings, scenarios: ScenarioSet, pending: int) -> SageVectorEnv:
    """The environments that play the dialogues: as many as `settings.num_envs`, no more than are pending."""
    return SageVectorEnv(
        max(1, min(settings.num_envs, pending)),
        scenarios,
        settings.simulator,
        dict(settings.simulator_kwargs),
        autoreset_mode="disabled",
        **settings.env_kwargs(),
    )


def _progress_bar(agent_name: str, total: int, done: int, show: bool) -> Any:
    """A bar counting finished dialogues, starting at those an earlier run finished; it closes when
    its `with` block ends, however it ends."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"evaluating {agent_name}", unit="dialogue", disable=not show)


def pending_episodes(transcripts: Path, episodes: list[Episode], overwrite: bool, retry_errors: bool) -> tuple[list[Episode], int]:
    """(the episodes still to play, how many of them are earlier errors played again)."""
    if not overwrite:
        repair_jsonl(transcripts)  # a line torn by a killed run: its dialogue is simply played again
    stored = latest_records(transcripts) if not overwrite else {}
    done = {key for key, r in stored.items() if not (retry_errors and r["outcome"] == "error")}
    pending = [e for e in episodes if e.key not in done]
    return pending, sum(1 for e in pending if e.key in stored)


def record_writer(
    transcripts: Path, languages: Mapping[str, str], probes: Mapping[str, Any], judge: LLMStrategyJudge | None,
    sycophancy_judge: SycophancyJudge | None, advance: Callable[[int], Any],
) -> Callable[[list[dict[str, Any]]], None]:
    """What `run_dialogues` hands finished records to: tagged, redacted and appended to the transcripts."""

    def finished(records: list[dict[str, Any]]) -> None:
        for record in records:
            # a replay that misses is a setup that does not match the recording, not a failed
            # dialogue: stop before writing it, so a rerun in another ledger mode plays it
            if str(record.get("error") or "").startswith(f"{LedgerMiss.__name__}: "):
                raise LedgerMiss(record["error"].split(": ", 1)[1])
            record["language"] = languages[record["scenario_id"]]
        tag_records(records, judge)
        tag_probe_records(records, probes, sycophancy_judge)
        for record in records:
            append_jsonl(transcripts, redact(record))
        advance(len(records))

    return finished


def write_report(out: Path, episodes: list[Episode], manifest: dict[str, Any], run: dict[str, Any], plots: bool) -> dict[str, Any]:
    """The report of the planned episodes' latest records, written with its summary and plots."""
    transcripts = out / TRANSCRIPTS
    compact_jsonl(transcripts)  # the retried dialogues' old error records go (also those a killed run left)
    planned = {e.key for e in episodes}
    records = [r for key, r in latest_records(transcripts).items() if key in planned]
    report = {"manifest": manifest, **score_records(records, Scoring.from_manifest(manifest)), "run": run}
    report = redact(report)
    write_outputs(out, report, records, plots=plots)
    return report


def simulator_usage(simulator: Any, price_per_1k: float | tuple[float, float] | None = None) -> dict[str, Any] | None:
    """This run's simulator calls, retries and failures, token counts and ledger traffic where the
    simulator keeps them, and their cost at `price_per_1k`; None for a simulator that calls nothing."""
    stats = simulator.stats.as_dict() if hasattr(simulator, "stats") else None
    if stats is None:
        return None
    usage = {k: stats[k] for k in ("calls", "retries", "failures", "fallbacks", "prompt_tokens", "completion_tokens") if k in stats}
    ledger = getattr(simulator, "ledger", None)
    if ledger is not None:
        usage["ledger"] = {**ledger.manifest(), **ledger.stats.as_dict()}
        # the tokens paid for are those of requests actually sent, not those replayed
        usage.setdefault("prompt_tokens", ledger.stats.prompt_tokens)
        usage.setdefault("completion_tokens", ledger.stats.completion_tokens)
        paid = (ledger.stats.sent_prompt_tokens, ledger.stats.sent_completion_tokens)
    else:
        paid = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    if price_per_1k is not None:
        usage["price_per_1k"] = price_per_1k
        # unknown rather than a made-up zero when the simulator does not count tokens
        usage["cost"] = None if None in paid else cost(paid[0], paid[1], price_per_1k)
    return usage


def latest_records(transcripts: Path) -> dict[str, dict[str, Any]]:
    """Each dialogue's latest record, by key (a retried dialogue's record replaces its earlier one)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(transcripts) if transcripts.exists() else ():
        key = episode_key(record["scenario_id"], record["repeat"])
        latest.pop(key, None)  # so the file order follows the latest records
        latest[key] = record
    return latest


def compact_jsonl(transcripts: Path) -> None:
    """Rewrite `transcripts` with each dialogue's latest record only, if any was replaced; atomic (a new file renamed over the old)."""
    if not transcripts.exists():
        return
    records = latest_records(transcripts)
    if len(records) == sum(1 for _ in read_jsonl(transcripts)):
        return
    partial = transcripts.with_name(transcripts.name + ".partial")
    with partial.open("wb") as handle:
        handle.writelines(encode_record(r) for r in records.values())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, transcripts)
