"""One or more agents under several simulators in one command: each score, the gaps, the rank agreement.

A policy trained against one simulator learns that simulator's tastes as well as the task, so its
score under that same simulator overstates it. Evaluating under a simulator it never saw (another
model, another prompt family, the built-in rules) shows how much of the score carries over.

    python -m agents.evaluate --agent hf --model runs/grpo --simulator builtin \\
        --simulator 'openai:base_url=http://localhost:8000/v1,model=qwen2.5-7b-instruct'
    python -m agents.evaluate --agent empathic --agent solution --agent random --simulators sims.json

A simulator is given as a spec: `builtin`, `openai` (with `--simulator-kwargs`), `openai:KEY=VALUE,...`
or `openai:{JSON}`, optionally named with `LABEL=` in front (`gpt=openai:model=gpt-4o-mini`); a
`--simulators` file holds a JSON list of such strings or of `{"label", "kind", "kwargs"}` objects.

Each (agent, simulator) pair is an ordinary evaluation in `<output>/<agent>/<simulator label>/`
(resumable like any other). `held_out.json` and `held_out.md` then give, per agent, the score under
each simulator, the gap to the first simulator (the reference: the one trained on) with a paired
bootstrap over the scenarios (is the gap beyond the noise?), and, with several agents, Kendall's
tau between each pair of simulators' rankings of the agents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from agents.eval.agent_api import EvalAgent
from agents.eval.evaluate import EvalSettings, evaluate
from agents.eval.stats import kendall_tau, paired_bootstrap
from sage_gym.simulators import SIMULATOR_NAMES

SIMULATOR_KINDS = SIMULATOR_NAMES  # "builtin", "builtin-v1" (the calibrated user), "openai"
HELD_OUT_JSON, HELD_OUT_MD = "held_out.json", "held_out.md"


@dataclass(frozen=True)
class SimulatorSpec:
    label: str
    kind: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_simulator_spec(text: str, default_kwargs: Mapping[str, Any] | None = None) -> SimulatorSpec:
    """`[LABEL=]KIND[:KEY=VALUE,...|:{JSON}]` as a spec; `default_kwargs` apply where the spec gives none."""
    label = None
    match = re.match(r"^([A-Za-z0-9_.-]+)=(?=(builtin|openai)\b)", text)
    if match:
        label, text = match.group(1), text[match.end() :]
    kind, _, rest = text.partition(":")
    if kind not in SIMULATOR_KINDS:
        raise ValueError(f"unknown simulator {kind!r} in {text!r}; expected one of {SIMULATOR_KINDS}, e.g. 'openai:base_url=...,model=...'")
    if rest.strip().startswith("{"):
        kwargs = json.loads(rest)
    elif rest:
        kwargs = {}
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"simulator option {item!r} in {text!r} is not KEY=VALUE")
            kwargs[key.strip()] = _value(value.strip())
    else:
        kwargs = dict(default_kwargs or {})
    if kind != "openai" and kwargs:
        raise ValueError(f"the {kind} simulator takes no options, got {sorted(kwargs)}")
    return SimulatorSpec(label or _default_label(kind, kwargs), kind, kwargs)


def _default_label(kind: str, kwargs: Mapping[str, Any]) -> str:
    model = kwargs.get("model")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}-{model}") if model else kind


def load_simulator_specs(path: str | Path) -> list[SimulatorSpec]:
    """The specs in a JSON file: a list of spec strings or of {"label", "kind", "kwargs"} objects."""
    items = json.loads(Path(path).read_text())
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a non-empty JSON list of simulators")
    specs = []
    for item in items:
        if isinstance(item, str):
            specs.append(parse_simulator_spec(item))
        else:
            spec = parse_simulator_spec(item["kind"] if not item.get("kwargs") else f"{item['kind']}:{json.dumps(item['kwargs'])}")
            specs.append(replace(spec, label=item.get("label", spec.label)))
    return specs


def unique_labels(specs: Sequence[SimulatorSpec]) -> list[SimulatorSpec]:
    """The specs, with `-2`, `-3`, ... added to repeated labels."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        seen[spec.label] = seen.get(spec.label, 0) + 1
        out.append(spec if seen[spec.label] == 1 else replace(spec, label=f"{spec.label}-{seen[spec.label]}"))
    return out


def evaluate_across(
    agents: Sequence[EvalAgent], specs: Sequence[SimulatorSpec], output: str | Path, settings: EvalSettings = EvalSettings(), **evaluate_options: Any
) -> dict[str, Any]:
    """Evaluate every agent under every simulator; returns (and writes) the held-out summary."""
    if not agents or not specs:
        raise ValueError("need at least one agent and one simulator")
    names = [agent.name for agent in agents]
    if len(set(names)) != len(names):
        raise ValueError(f"agents need distinct names to be told apart, got {names}")
    specs = unique_labels(specs)
    out = Path(output)
    reports: dict[str, dict[str, dict[str, Any]]] = {}
    for agent in agents:
        for spec in specs:
            run_settings = replace(settings, simulator=spec.kind, simulator_kwargs=dict(spec.kwargs))
            reports.setdefault(agent.name, {})[spec.label] = evaluate(agent, out / agent.name / spec.label, run_settings, **evaluate_options)
    summary = held_out_summary(reports, [s.label for s in specs])
    out.mkdir(parents=True, exist_ok=True)
    (out / HELD_OUT_JSON).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (out / HELD_OUT_MD).write_text(held_out_markdown(summary))
    return summary


def held_out_summary(reports: Mapping[str, Mapping[str, Mapping[str, Any]]], labels: Sequence[str]) -> dict[str, Any]:
    """Scores per agent and simulator, gaps to the first simulator, Kendall's tau between simulators."""
    reference = labels[0]
    agents: dict[str, Any] = {}
    for name, by_simulator in reports.items():
        rows = {}
        for label in labels:
            report = by_simulator[label]
            evaluation = report["manifest"]["evaluation"]
            row = {
                "simulator": report["manifest"]["environment"]["simulator"].get("model"),
                "score": report["results"]["score"],
                "sycophancy_rate": (report.get("sycophancy") or {}).get("sycophancy_rate"),
                "errors": len(report.get("errors") or []),
            }
            if label != reference and not _scored_under_both(report, by_simulator[reference]):
                row["gap"] = None  # every dialogue under one of them ended in an error: nothing to pair
            elif label != reference:
                row["gap"] = paired_bootstrap(
                    report["reliability"]["per_scenario"], by_simulator[reference]["reliability"]["per_scenario"],
                    samples=evaluation["bootstrap_samples"], confidence=evaluation["confidence"], seed=evaluation["seed"],
                    name=f"gap/{name}/{label}",
                )
            rows[label] = row
        agents[name] = rows
    names = list(agents)
    tau = {}
    if len(names) >= 2:
        for a, b in combinations(labels, 2):
            x, y = ([agents[n][label]["score"]["mean"] for n in names] for label in (a, b))
            tau[f"{a} vs {b}"] = None if None in x or None in y else kendall_tau(x, y)
    return {"reference_simulator": reference, "simulators": list(labels), "agents": agents, "kendall_tau": tau}


def _scored_under_both(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    scored = [{k for k, v in r["reliability"]["per_scenario"].items() if len(v)} for r in (a, b)]
    return bool(scored[0] & scored[1])


def held_out_markdown(summary: Mapping[str, Any]) -> str:
    labels, reference = summary["simulators"], summary["reference_simulator"]
    lines = [
        "# Scores under several simulators",
        "",
        f"Gap: score under a simulator minus the score under `{reference}` (the reference), over the same scenarios, "
        "with a paired bootstrap interval.",
        "",
        "| agent | " + " | ".join(labels) + " | " + " | ".join(f"gap {label}" for label in labels[1:]) + " |",
        "|---" * (1 + 2 * len(labels) - 1) + "|",
    ]
    for name, rows in summary["agents"].items():
        cells = []
        for label in labels:
            score = rows[label]["score"]
            cells.append(f"{score['mean']:.1f} [{score['ci'][0]:.1f}, {score['ci'][1]:.1f}]" if score["mean"] is not None else "n/a")
        for label in labels[1:]:
            gap = rows[label]["gap"]
            if gap is None:
                cells.append("n/a")
                continue
            mark = "" if gap["beyond_noise"] else " (within the noise)"
            cells.append(f"{gap['difference']:+.1f} [{gap['ci'][0]:+.1f}, {gap['ci'][1]:+.1f}]{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary["kendall_tau"]:
        lines += ["", "Rank agreement of the agents between simulators (Kendall's tau-b; 1 = same order, -1 = reversed):", ""]
        lines += [f"- {pair}: {'n/a' if tau is None else f'{tau:+.2f}'}" for pair, tau in summary["kendall_tau"].items()]
    return "\n".join(lines) + "\n"
