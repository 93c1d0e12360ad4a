"""The noise floor of the reference agents: how much a score moves between trials and seeds.

Each reference agent is evaluated with `--trials K` at two evaluation seeds; the table gives the
score with its two-level interval (scenarios, then trials), the per-scenario spread, pass^1 and
pass^K, and the difference between the two seeds with its paired interval. Evaluations already in
the output folder are resumed (instant when complete).

    python benchmarks/noise_floor.py --trials 3                                    # built-in simulator
    python -m sage_gym.servers.simulator_server --port 8011 &                             # the local server ...
    python benchmarks/noise_floor.py --trials 3 --simulator 'openai:base_url=http://127.0.0.1:8011/v1,model=sage-local'
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

from agents.eval.report import load_report
from agents.eval.stats import paired_bootstrap
from agents.evaluate import main as evaluate_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["empathic", "solution", "dismissive", "random"])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 1])
    parser.add_argument("--scenarios", default="eval")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--simulator", default="builtin")
    parser.add_argument("--output", default="evaluations/noise-floor")
    args = parser.parse_args()

    label = "builtin" if args.simulator == "builtin" else "server"
    rows = []
    for agent in args.agents:
        reports, seconds = [], []
        for seed in args.seeds:
            out = Path(args.output) / f"{label}-{agent}-{seed}"
            started = time.perf_counter()
            argv = ["--agent", agent, "--trials", str(args.trials), "--seed", str(seed), "--scenarios", args.scenarios,
                    "--simulator", args.simulator, "--output", str(out), "--no-progress", "--no-plots"]
            if args.limit:
                argv += ["--limit", str(args.limit)]
            with contextlib.redirect_stdout(io.StringIO()):  # only the table is printed
                evaluate_main(argv)
            seconds.append(time.perf_counter() - started)
            reports.append(load_report(out))
        first, second = reports
        rel, k = first["reliability"], str(args.trials)
        score, spread = rel["score"], rel["per_scenario_spread"]
        seeds = paired_bootstrap(first["reliability"]["per_scenario"], second["reliability"]["per_scenario"], name=f"seeds/{agent}")
        rows.append(
            f"| {agent} | {score['mean']:.1f} [{score['ci'][0]:.1f}, {score['ci'][1]:.1f}] "
            f"| {first['results']['score']['ci'][1] - first['results']['score']['ci'][0]:.1f} | {score['ci'][1] - score['ci'][0]:.1f} "
            f"| {spread['mean_sd']:.1f} / {spread['max_range']:.0f} "
            f"| {rel['pass_hat_k']['1']['success'] * 100:.0f}% / {rel['pass_hat_k'][k]['success'] * 100:.0f}% "
            f"| {rel['pass_hat_k'][k]['no_failure'] * 100:.0f}% "
            f"| {second['reliability']['score']['mean']:.1f} | {seeds['difference']:+.1f} [{seeds['ci'][0]:+.1f}, {seeds['ci'][1]:+.1f}] "
            f"| {seconds[0]:.0f} s |"
        )
    print(f"simulator {args.simulator}; {args.scenarios} split{f' (first {args.limit})' if args.limit else ''}; {args.trials} trials; seeds {args.seeds}")
    print()
    print(f"| agent | score, seed {args.seeds[0]} [two-level 95% interval] | width of the per-dialogue interval | width of the two-level interval "
          f"| per-scenario sd / largest range | pass^1 / pass^{k} success | pass^{k} no failure | score, seed {args.seeds[1]} | seed difference [paired 95% interval] | time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
