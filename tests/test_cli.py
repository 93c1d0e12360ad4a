"""The commands' edges: exit codes (2 usage, 1 failed work), one-line errors, and the small things a new user meets first."""

from __future__ import annotations

import json
import sys

import pytest

from agents.cli import MissingExtraError, UsageError, run_main


def fail_with(error: BaseException):
    def main() -> int:
        raise error

    return main


@pytest.mark.parametrize(
    "error, status",
    [
        (UsageError("--steps must be >= 1, got 0"), 2),
        (MissingExtraError("needs vLLM: pip install 'sage-gym[vllm]'"), 2),
        (FileNotFoundError("no model at runs/x"), 2),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"), 1),  # torch's OutOfMemoryError is a RuntimeError
        (ValueError("Expected all tensors to be on the same device"), 1),  # from inside a library: not the user's mistake
        (KeyError("logits"), 1),
    ],
)
def test_usage_errors_exit_2_and_failed_work_exits_1_in_one_line(capsys, monkeypatch, error, status) -> None:
    monkeypatch.delenv("SAGE_GYM_TRACEBACK", raising=False)
    assert run_main(fail_with(error), "prog") == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prog: error: ") and "Traceback" not in lines[0]


def test_the_traceback_is_kept_on_request(monkeypatch) -> None:
    monkeypatch.setenv("SAGE_GYM_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="out of memory"):
        run_main(fail_with(RuntimeError("out of memory")), "prog")


def test_an_unknown_scenario_id_in_the_demo_is_one_line(capsys) -> None:
    from agents.demo import main

    assert run_main(lambda: main(["--scenario-id", "eval-999"]), "python -m agents.demo") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("python -m agents.demo: error: no scenario 'eval-999' in eval")


def test_validate_takes_split_names_like_every_other_command(capsys) -> None:
    from sage_gym.scenarios.cli import main

    assert main(["validate", "eval", "--min-per-cell", "4"]) == 0
    out = capsys.readouterr().out
    assert "96 scenarios" in out and out.rstrip().endswith("OK")


def test_evaluate_without_matplotlib_says_so_up_front_and_writes_the_rest(tmp_path, monkeypatch, capsys) -> None:
    from agents.evaluate import cli

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on the core install: `import matplotlib` fails
    out = tmp_path / "eval"
    status = run_main(lambda: cli(["--agent", "empathic", "--limit", "1", "--max-turns", "2", "--no-progress", "--output", str(out)]), "python -m agents.evaluate")
    err = capsys.readouterr().err
    assert status == 0, err
    assert "no plots, matplotlib is not installed" in err and "sage-gym[train]" in err
    assert json.loads((out / "report.json").read_text())["results"]["n"] == 1 and not list(out.glob("*.png"))


def test_train_sb3_help_describes_every_option_with_its_default() -> None:
    from agents.train_sb3 import SB3Config, build_parser

    actions = {a.dest: a for a in build_parser()._actions if a.dest != "help"}
    assert set(actions) == set(SB3Config.__dataclass_fields__)
    text = build_parser().format_help()
    for name, action in actions.items():
        assert action.help and len(action.help) > len(name), name
    assert text.count("(default: ") >= len(actions) - 1  # --no-evaluate names its default its own way


def test_the_held_out_scores_on_the_learning_curve_are_points_not_a_trend(tmp_path, monkeypatch) -> None:
    from agents.learn import metrics

    rows = [{"step": 0, "eval/score": 6.9, "eval/train_score": 9.1}]
    rows += [{"step": s, "return": 0.1 * s, "emotion": 30 + s} for s in range(1, 6)]
    rows[-1].update({"eval/score": 8.4, "eval/train_score": 18.8})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    figures = []
    monkeypatch.setattr(metrics, "_save", lambda fig, title, png: figures.append(fig) or png)
    metrics.plot_learning_curve(path, tmp_path / "curve.png")
    lines = {line.get_label(): line for line in figures[0].axes[1].get_lines()}
    for label in ("held-out users (greedy)", "training users (greedy)"):
        assert list(lines[label].get_xdata()) == [0, 5] and lines[label].get_linestyle() == "None", label
    assert lines["training dialogues"].get_linestyle() == "-"
