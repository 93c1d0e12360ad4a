"""How much to trust a report: its noise floor over trials, and whether two reports really differ.

`reliability(records, scoring)` is the report's `reliability` section, from the transcripts:

| key | what it is |
|---|---|
| `trials` | trials per scenario (`--trials K`; each with its own simulator and agent seeds) |
| `score` | mean final emotion with an interval from a two-level bootstrap (scenarios, then trials) |
| `per_scenario_spread` | the spread of one scenario's trials (standard deviation, range): the noise of a single dialogue |
| `pass_hat_k` | per k = 1..K, the share of scenarios where k trials all reach success (`success`) and all stay at or above failure (`no_failure`) |
| `per_scenario` | each scenario's final emotions by trial: what `--compare` pairs on |

`compare(reports)` pairs reports on the scenarios they share: for each pair, the score difference,
its paired-bootstrap interval, and whether it is beyond the noise. Reports whose simulator, rules
or scenario set differ are refused (`ManifestMismatch`) unless `force=True`: a difference between
them would measure the simulator as much as the agent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from agents.eval.stats import hierarchical_bootstrap, paired_bootstrap, pass_hat_k, per_scenario_spread

# simulator settings that change a dialogue's draw, not the simulator: two reports that differ only
# in these compare like two runs of one benchmark
_DRAW_SETTINGS = ("seed", "timeout", "max_retries", "base_url", "openai_sdk")


class ManifestMismatch(ValueError):
    """Two reports were made under different simulators, rules or scenario sets."""


def per_scenario(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Each scenario's final emotions, in trial order (dialogues that errored left out)."""
    finals: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        if r["outcome"] != "error":
            finals[r["scenario_id"]].append((r["repeat"], float(r["final_emotion"])))
    return {sid: [value for _, value in sorted(trials)] for sid, trials in sorted(finals.items())}


def reliability(records: Sequence[Mapping[str, Any]], success_at: int, failure_below: int, *, samples: int, confidence: float, seed: int) -> dict[str, Any]:
    values = per_scenario(records)
    trials = max((len(v) for v in values.values()), default=0)
    success = {sid: [v >= success_at for v in finals] for sid, finals in values.items()}
    no_failure = {sid: [v >= failure_below for v in finals] for sid, finals in values.items()}
    return {
        "trials": trials,
        "scenarios": len(values),
        "score": hierarchical_bootstrap(values, samples=samples, confidence=confidence, seed=seed, name="reliability/score"),
        "per_scenario_spread": per_scenario_spread(values),
        "pass_hat_k": {str(k): {"success": pass_hat_k(success, k), "no_failure": pass_hat_k(no_failure, k)} for k in range(1, trials + 1)},
        "per_scenario": values,
    }


def reliability_markdown(section: Mapping[str, Any]) -> list[str]:
    score, spread, k = section["score"], section["per_scenario_spread"], str(section["trials"])
    if score["mean"] is None:
        return []
    lines = [
        "## How much to trust this score",
        "",
        f"- {section['trials']} trial(s) on each of {section['scenarios']} scenarios; score {score['mean']:.1f} "
        f"[{score['ci'][0]:.1f}, {score['ci'][1]:.1f}] (bootstrap over scenarios, then trials)",
    ]
    if spread["mean_sd"] is not None:
        lines.append(
            f"- one scenario's trials differ by {spread['mean_sd']:.1f} points (standard deviation; mean over scenarios, largest {spread['max_sd']:.1f}), "
            f"range {spread['mean_range']:.1f} on average, {spread['max_range']:.1f} at most"
        )
    at_k = section["pass_hat_k"][k]
    lines.append(
        f"- pass^{k}: {at_k['success'] * 100:.1f}% of scenarios reach success in all {k} trials; "
        f"{at_k['no_failure'] * 100:.1f}% stay at or above failure in all {k}"
    )
    return lines + [""]


# ----------------------------------------------------------------------------------------------
# comparing reports


def comparable(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What must match for two reports to be compared: simulator (less its draw settings), rules, scenarios, prompts."""
    env = manifest["environment"]
    simulator = {k: v for k, v in env["simulator"].items() if k not in _DRAW_SETTINGS}
    return {
        "simulator": simulator,
        "rules": env["rules"],
        "scenarios": env["scenarios"]["sha256"],
        "prompts": env["prompts_sha256"],
        "limit": manifest["evaluation"].get("limit"),
    }


def _label(report: Mapping[str, Any], index: int) -> str:
    agent = report["manifest"]["agent"]
    return f"{index + 1}:{agent['name']}"


def compare(reports: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[dict[str, Any]]:
    """Every pair's score difference over shared scenarios, its paired-bootstrap interval and verdict."""
    if len(reports) > 1 and not force:
        first = comparable(reports[0]["manifest"])
        for i, report in enumerate(reports[1:], start=1):
            other = comparable(report["manifest"])
            differing = [key for key in first if first[key] != other[key]]
            if differing:
                raise ManifestMismatch(
                    f"reports 1 and {i + 1} differ in {', '.join(differing)}, so their scores are not comparable; "
                    "pass --force to compare them anyway"
                )
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(reports), 2):
        va, vb = a.get("reliability", {}).get("per_scenario"), b.get("reliability", {}).get("per_scenario")
        if va is None or vb is None:
            raise ValueError(f"report {i + 1 if va is None else j + 1} has no per-scenario results (made before trials were recorded); rerun it")
        evaluation = a["manifest"]["evaluation"]
        result = paired_bootstrap(
            va, vb, samples=evaluation["bootstrap_samples"], confidence=evaluation["confidence"], seed=evaluation["seed"], name=f"compare/{i}/{j}"
        )
        pairs.append({"a": _label(a, i), "b": _label(b, j), **result})
    return pairs


def compare_markdown(pairs: Sequence[Mapping[str, Any]], confidence: float) -> list[str]:
    lines = [f"| pair | scenarios | difference (a - b) | {round(confidence * 100)}% interval | verdict |", "|---|---|---|---|---|"]
    for p in pairs:
        verdict = ("a better" if p["difference"] > 0 else "b better") if p["beyond_noise"] else "tie (within the noise)"
        lines.append(f"| {p['a']} vs {p['b']} | {p['scenarios']} | {p['difference']:+.1f} | [{p['ci'][0]:+.1f}, {p['ci'][1]:+.1f}] | {verdict} |")
    return lines
