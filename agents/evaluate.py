"""`python -m agents.evaluate`: the SAGE benchmark for any agent, reproducibly, into one folder.

    python -m agents.evaluate --agent empathic                       # a reference agent on the eval split
    python -m agents.evaluate --agent hf --model runs/grpo           # a training run (its latest checkpoint), a checkpoint, a model or LoRA adapter folder
    python -m agents.evaluate --agent openai --base-url http://localhost:8000/v1 --model my-chat-model
    python -m agents.evaluate --agent sb3 --model runs/sb3/model.zip
    python -m agents.evaluate --agent empathic --trials 3            # each scenario 3 times: the noise floor and pass^k
    python -m agents.evaluate --agent empathic --agent solution --simulator builtin --simulator 'openai:base_url=...,model=...'
                                                                     # several agents under several simulators: gaps, Kendall's tau
    python -m agents.evaluate --compare evaluations/*/report.json    # a table of several reports, and which differences are beyond the noise

What is played and what comes out: `agents.eval.evaluate`; the scores and files: `agents.eval.report`.
Exit status: 0; 1 when dialogues ended in an error (a simulator that was down: the same command
again plays them again) or a failure stopped the run; 2 for a usage mistake (one line on stderr
either way; agents/cli.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.cli import UsageError, run_main
from agents.eval.agent_api import AGENT_KINDS, make_agent
from agents.eval.evaluate import TRANSCRIPTS, EvalSettings, evaluate
from agents.eval.held_out_simulators import (
    HELD_OUT_JSON,
    HELD_OUT_MD,
    evaluate_across,
    held_out_markdown,
    load_simulator_specs,
    parse_simulator_spec,
)
from agents.eval.probes import SycophancyJudge
from agents.eval.report import REPORT, SUMMARY, compare_reports, summary_markdown
from agents.options import add_options, option
from agents.policy.models import model_table
from agents.replies.strategies import LLMStrategyJudge
from sage_gym.simulators.ledger import MODES as LEDGER_MODES

PROG = "python -m agents.evaluate"


# ----------------------------------------------------------------------------------------------
# command line


@dataclass(frozen=True)
class CommandOptions:
    """What to do, and where the results go."""

    compare: list[str] | None = option(
        None, "print a table of these reports (report.json files or their folders), and for each pair whether the difference is beyond the noise, and exit",
        nargs="+", metavar="REPORT",
    )  # fmt: skip
    force: bool = option(False, "--compare reports made under other simulators, rules or scenarios", action="store_true")
    agent: list[str] | None = option(
        None, "the agent to evaluate; repeat it (with --simulator repeated or not) to rank several agents under each simulator",
        action="append", choices=AGENT_KINDS,
    )  # fmt: skip
    output: str | None = option(None, "output folder (default: evaluations/<agent>-<scenarios>)")
    overwrite: bool = option(False, "start afresh instead of resuming what is in --output", action="store_true")
    retry_errors: bool = option(True, "when resuming, play again the dialogues that ended in an error (a simulator that was down)")
    no_progress: bool = option(False, "no progress bar", action="store_true")
    no_plots: bool = option(False, "skip the PNG plots", action="store_true")


@dataclass(frozen=True)
class PlayOptions:
    """what to play"""

    scenarios: str = option("eval", "a split (train, eval, probes) or a scenario JSONL file", flags=("--scenarios", "--split"))
    limit: int | None = option(None, "only the first N scenarios")
    episodes_per_scenario: int = option(
        1, "play each scenario K times, each with its own simulator and agent seeds; the report gives the noise floor and pass^k",
        flags=("--trials", "--episodes-per-scenario"), metavar="K",
    )  # fmt: skip
    initial_emotion: int = option(40, None)
    max_turns: int = option(10, None)
    change_clip: list[int] = option([-10, 10], None, type=int, nargs=2, metavar=("LOW", "HIGH"))
    seed: int = option(0, None)
    num_envs: int = option(16, "dialogues in flight at once")
    bootstrap_samples: int = option(2000, None)
    confidence: float = option(0.95, None)


@dataclass(frozen=True)
class SimulatorOptions:
    """simulator"""

    simulator: list[str] | None = option(
        None, "builtin (default), openai (with --simulator-kwargs), openai:KEY=VALUE,... or openai:{JSON}, optionally LABEL=SPEC; "
        "repeat it to evaluate under several simulators and report the gaps to the first",
        action="append", metavar="SPEC",
    )  # fmt: skip
    simulator_kwargs: dict[str, Any] = option({}, 'JSON keyword arguments of the simulator, e.g. \'{"base_url": "...", "model": "..."}\'', type=json.loads)
    price_per_1k: list[float] | None = option(
        None, "dollars per 1000 simulator tokens (one price, or prompt and completion prices): the report's run.simulator gets the cost",
        type=float, nargs="+", metavar="USD",
    )  # fmt: skip
    ledger: str | None = option(
        None, "keep every LLM simulator request and answer in this SQLite file, to replay them (sage_gym.simulators.ledger)", metavar="PATH"
    )
    ledger_mode: str | None = option(
        None, "record-and-replay (default): answer recorded requests from the file and record new ones; replay: the file only "
        "(a new request is an error); record: send everything again; off",
        choices=LEDGER_MODES,
    )  # fmt: skip
    simulators: str | None = option(None, "a JSON list of simulator specs (strings or {label, kind, kwargs}), instead of --simulator", metavar="FILE")


@dataclass(frozen=True)
class AgentOptions:
    """agent options (hf, openai, sb3)"""

    model: str | None = option(None, "hf: model folder, hub id, checkpoint, LoRA adapter folder, or a named offline model ('list' prints them); openai: model name; sb3: saved model .zip")
    base_model: str | None = option(None, "hf: base model of a LoRA adapter (default: the one named in adapter_config.json)")
    template: str | None = option(None, "agent system prompt (hf default: the checkpoint's, else think; openai default: direct)", choices=("think", "direct", "none"))
    max_reply_words: int | None = option(None, "ask for replies under this many words")
    temperature: float | None = option(None, "hf default 0 (greedy, reproducible); openai default 0.7")
    top_p: float | None = option(None, None)
    max_new_tokens: int | None = option(None, "tokens per reply (hf default 256, openai default 512)")
    device: str = option("auto", None)
    dtype: str = option("auto", None, choices=("auto", "float32", "bfloat16", "float16"))
    chat_template: str | None = option(None, "hf: a Jinja chat template file, or 'chatml', for a tokenizer without one")
    base_url: str | None = option(None, "openai: the endpoint, e.g. http://localhost:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", "openai/judge: environment variable holding the API key")
    stochastic: bool = option(False, "sb3: sample actions instead of taking the most likely one", action="store_true")


@dataclass(frozen=True)
class JudgeOptions:
    """LLM judge (optional)"""

    judge_base_url: str | None = option(None, "tag strategies, and judge probe replies for sycophancy, with an LLM at this OpenAI-compatible endpoint too")
    judge_model: str | None = option(None, None)


def build_parser() -> argparse.ArgumentParser:
    """The options of each dataclass above, the first ungrouped and the others under their docstrings as headings."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate an agent on a scenario split with SAGE's settings (or compare reports with --compare).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_options(parser, CommandOptions)
    for options in (PlayOptions, SimulatorOptions, AgentOptions, JudgeOptions):
        add_options(parser.add_argument_group(options.__doc__), options)
    return parser


def given(**options: Any) -> dict[str, Any]:
    """The options set on the command line; the others are left to the agent's own defaults."""
    return {key: value for key, value in options.items() if value is not None}


def agent_options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The keyword arguments of `make_agent` for `kind`, from the command line."""
    if kind in ("hf", "openai", "sb3") and not args.model:
        raise UsageError(f"--agent {kind} needs --model")
    if kind == "hf":
        return given(
            model=args.model, base_model=args.base_model, template=args.template, max_reply_words=args.max_reply_words,
            temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, device=args.device,
            dtype=args.dtype, chat_template=args.chat_template, seed=args.seed,
        )
    if kind == "openai":
        if not args.base_url:
            raise UsageError("--agent openai needs --base-url")
        return given(
            base_url=args.base_url, model=args.model, template=args.template, max_reply_words=args.max_reply_words,
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_new_tokens, api_key_env=args.api_key_env,
        )
    if kind == "sb3":
        return {"model": args.model, "deterministic": not args.stochastic}
    return {}


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    args = build_parser().parse_args(argv)
    if args.compare:
        print(compare_reports(args.compare, force=args.force))
        return None
    if args.model == "list":
        print(model_table())
        return None
    if not args.agent:
        raise UsageError("choose an agent with --agent (or compare reports with --compare)")
    if args.simulators and args.simulator:
        raise UsageError("give simulators with --simulator or with --simulators FILE, not both")
    specs = load_simulator_specs(args.simulators) if args.simulators else [parse_simulator_spec(s, args.simulator_kwargs) for s in args.simulator or ["builtin"]]
    if args.ledger_mode and not args.ledger:
        raise UsageError("--ledger-mode needs --ledger PATH")
    if args.ledger:
        if any(spec.kind != "openai" for spec in specs):
            raise UsageError("--ledger records LLM simulator calls, and the built-in simulators make none; use it with --simulator openai:...")
        ledger = {"ledger": args.ledger, "ledger_mode": args.ledger_mode or "record-and-replay"}
        specs = [replace(spec, kwargs={**spec.kwargs, **ledger}) for spec in specs]
    settings = EvalSettings(
        scenarios=args.scenarios, simulator=specs[0].kind, simulator_kwargs=dict(specs[0].kwargs),
        initial_emotion=args.initial_emotion, max_turns=args.max_turns, change_clip=tuple(args.change_clip),
        episodes_per_scenario=args.episodes_per_scenario, limit=args.limit, seed=args.seed, num_envs=args.num_envs,
        bootstrap_samples=args.bootstrap_samples, confidence=args.confidence,
    )
    judge = sycophancy_judge = None
    if args.judge_base_url or args.judge_model:
        if not (args.judge_base_url and args.judge_model):
            raise UsageError("the LLM judge needs both --judge-base-url and --judge-model")
        judge = LLMStrategyJudge(args.judge_base_url, args.judge_model, api_key_env=args.api_key_env)
        sycophancy_judge = SycophancyJudge(args.judge_base_url, args.judge_model, api_key_env=args.api_key_env)
    agents = [make_agent(kind, **agent_options(args, kind)) for kind in dict.fromkeys(args.agent)]
    price = None
    if args.price_per_1k:
        if len(args.price_per_1k) > 2:
            raise UsageError("--price-per-1k takes one price, or a prompt and a completion price")
        price = args.price_per_1k[0] if len(args.price_per_1k) == 1 else tuple(args.price_per_1k)
    options = dict(
        judge=judge, sycophancy_judge=sycophancy_judge, overwrite=args.overwrite, retry_errors=args.retry_errors, progress=not args.no_progress,
        plots=not args.no_plots and plots_available(), price_per_1k=price,
    )
    if len(agents) > 1 or len(specs) > 1:
        output = args.output or str(Path("evaluations") / f"held-out-{_slug(Path(args.scenarios).stem)}")
        summary = evaluate_across(agents, specs, output, settings, **options)
        print(held_out_markdown(summary))
        print(f"wrote {output}/{HELD_OUT_JSON}, {HELD_OUT_MD} and one evaluation folder per agent and simulator")
        return summary
    agent = agents[0]
    output = args.output or str(Path("evaluations") / f"{_slug(agent.name)}-{_slug(Path(args.scenarios).stem)}")
    report = evaluate(agent, output, settings, **options)
    print(summary_markdown(report, folder=output).split("## By hidden intention")[0].rstrip())
    print(f"\nwrote {output}/{REPORT}, {TRANSCRIPTS}, {SUMMARY} and plots")
    return report


def plots_available() -> bool:
    """Whether matplotlib can draw the plots; if not, say so before any dialogue is played (the core install has no matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"{PROG}: note: no plots, matplotlib is not installed (pip install 'sage-gym[train]' adds it; --no-plots hides this note)", file=sys.stderr)
        return False
    return True


def errors_left(result: Mapping[str, Any] | None) -> int:
    """The dialogues that still ended in `error` in what `main` returned (a report or a held-out summary)."""
    if result is None:
        return 0
    if "agents" in result and "simulators" in result:
        return sum(row.get("errors", 0) for rows in result["agents"].values() for row in rows.values())
    return len(result.get("errors", []))


def cli(argv: Sequence[str] | None = None) -> int:
    """`main`, with exit status 1 when dialogues ended in errors (they are retried by running the same command again)."""
    left = errors_left(main(argv))
    if left:
        print(f"{PROG}: {left} dialogue(s) ended in an error and are left out of the scores; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "agent"


if __name__ == "__main__":
    sys.exit(run_main(cli, PROG))
