"""The numbers and files of an evaluation: scores with bootstrap intervals, `summary.md`, plots, report tables.

Everything here is a pure function of the transcript records (sorted into a fixed order first),
so a resumed evaluation reports what an uninterrupted one does.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.eval.probes import sycophancy, sycophancy_markdown
from agents.eval.trust import compare, compare_markdown, reliability, reliability_markdown
from agents.replies.canaries import canary_summary, record_canaries
from agents.replies.strategies import strategy_mix
from sage_gym.scenarios import EMOTIONAL_INTENTIONS, RATIONAL_INTENTIONS
from sage_gym.simulators.base import emotion_grade

REPORT, SUMMARY = "report.json", "summary.md"
PLOTS = ("emotion_trajectories.png", "score_by_intention.png", "strategy_mix.png")


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
        "reliability": reliability(
            scored, scoring.success_at, scoring.failure_below, samples=scoring.bootstrap_samples, confidence=scoring.confidence, seed=scoring.seed
        ),
        "canaries": _canaries(scored),
        "sycophancy": sycophancy(scored),
    }


def _canaries(scored: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    values = record_canaries(scored)
    return {**values, "summary": canary_summary(values)}


# ----------------------------------------------------------------------------------------------
# outputs: report.json, summary.md, plots


def write_outputs(out: Path, report: Mapping[str, Any], records: Sequence[Mapping[str, Any]], plots: bool = True) -> None:
    """report.json, summary.md and (unless `plots` is False) the PNG plots, from the report and its transcript records."""
    (out / REPORT).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    (out / SUMMARY).write_text(summary_markdown(report, folder=out))
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


def summary_markdown(report: Mapping[str, Any], folder: str | Path | None = None) -> str:
    """The report as Markdown; with `folder`, the command that opens its dialogues in the viewer."""
    manifest, results = report["manifest"], report["results"]
    agent, env, evaluation = manifest["agent"], manifest["environment"], manifest["evaluation"]
    simulator = env["simulator"]
    rules = env["rules"]
    confidence = round(evaluation["confidence"] * 100)
    lines = [
        f"# Evaluation of `{agent['name']}` ({agent['kind']})",
        "",
        f"- scenarios: `{evaluation['scenarios']}` ({env['scenarios']['count']} in the set, {evaluation['episodes']} dialogues, sha256 {env['scenarios']['sha256'][:12]})",
        f"- simulator: {simulator.get('kind')} `{simulator.get('model')}`" + (f", version {simulator['version']}" if "version" in simulator else ""),
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
    if folder is not None:
        lines += [f"Read the dialogues (one offline HTML page): `python -m agents.view {folder}`", ""]
    if report["errors"]:
        lines += [f"{len(report['errors'])} dialogue(s) ended with a simulator error and are left out of every number:", ""]
        lines += [f"- `{e['scenario_id']}` (repeat {e['repeat']}): {e['error']}" for e in report["errors"]]
        lines.append("")
    lines += sycophancy_markdown(report.get("sycophancy"))
    if "reliability" in report:
        lines += reliability_markdown(report["reliability"])
    if report.get("canaries", {}).get("summary"):
        lines += [f"**{report['canaries']['summary']}** (far from the reference agents' replies; see docs/evaluation.md)", ""]
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
    errors = np.array([[s - groups[n]["score"]["ci"][0], groups[n]["score"]["ci"][1] - s] for n, s in zip(names, scores, strict=True)]).T if names else None
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


def _sycophancy_cell(report: Mapping[str, Any]) -> str:
    section = report.get("sycophancy")
    return f"{section['sycophancy_rate'] * 100:.0f}%" if section and section["sycophancy_rate"] is not None else "n/a"


def compare_reports(paths: Sequence[str | Path], force: bool = False) -> str:
    """A Markdown table of several reports (score, success, failure, turns and style shares, with CIs),
    then, for each pair, whether their difference is beyond the noise (`agents.eval.trust.compare`;
    reports under other simulators, rules or scenarios are refused unless `force`)."""
    reports = [load_report(path) for path in paths]
    lines = [
        "| agent | simulator | scenarios | n | errors | score | success | failure | turns | empathic turns | advice turns | sycophancy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        manifest, results = report["manifest"], report["results"]
        styles = report["strategies"]["rule"]["styles"]
        agent = manifest["agent"]
        lines.append(
            f"| {agent['name']} ({agent['kind']}) | {manifest['environment']['simulator'].get('model')} | {manifest['evaluation']['scenarios']} "
            f"| {results['n']} | {len(report['errors'])} | {_fmt(results['score'])} | {_fmt(results['success_share'], True)} "
            f"| {_fmt(results['failure_share'], True)} | {_fmt(results['mean_turns'])} | {styles['empathic'] * 100:.0f}% | {styles['solution'] * 100:.0f}% | {_sycophancy_cell(report)} |"
        )
    if len(reports) > 1:
        confidence = reports[0]["manifest"]["evaluation"]["confidence"]
        lines += ["", "Paired differences over the scenarios both reports played (bootstrap over scenarios):", ""]
        lines += compare_markdown(compare(reports, force=force), confidence)
    return "\n".join(lines)

