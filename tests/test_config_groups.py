"""The options in groups: the same command lines as before, grouped and flat config files, the saved config."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

from agents import evaluate, train_sb3
from agents.learn.config import GROUPS, TrainConfig, build_parser, load_config_file, make_config, parse_config
from agents.learn.ppo import PPOConfig

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "cli_options.json").read_text())  # every option of the four commands before the groups


def described(parser: argparse.ArgumentParser, with_groups: bool) -> list[dict]:
    """Each option as tests/data/cli_options.json records it (its flags, dest, help, choices, default, nargs, metavar, action, type)."""
    group_of = {id(a): g.title for g in parser._action_groups for a in g._group_actions}
    rows = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        default = "==SUPPRESS==" if a.default is argparse.SUPPRESS else a.default
        row = {
            "flags": list(a.option_strings), "dest": a.dest, "help": a.help, "choices": list(a.choices) if a.choices else None,
            "default": default if isinstance(default, (str, int, float, bool, type(None), list)) else repr(default),
            "nargs": a.nargs, "metavar": list(a.metavar) if isinstance(a.metavar, tuple) else a.metavar,
            "action": type(a).__name__, "group": group_of.get(id(a)), "type": getattr(a.type, "__name__", None),
        }  # fmt: skip
        if row["type"] == "str":
            row["type"] = None  # argparse keeps the string either way
        if not with_groups:
            del row["group"]
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    ("command", "parser", "with_groups"),
    [
        ("train_grpo", lambda: build_parser(TrainConfig, prog="python -m agents.train_grpo"), False),  # now under group headings
        ("train_ppo", lambda: build_parser(PPOConfig, prog="python -m agents.train_ppo"), False),
        ("evaluate", evaluate.build_parser, True),
        ("train_sb3", train_sb3.build_parser, True),
    ],
)
def test_every_command_line_offers_the_options_it_offered_before_the_groups(command, parser, with_groups) -> None:
    recorded = [{**row, "type": None if row["type"] == "str" else row["type"]} for row in RECORDED[command]]
    if not with_groups:
        recorded = [{k: v for k, v in row.items() if k != "group"} for row in recorded]
    now = described(parser(), with_groups)
    key = lambda row: row["flags"]  # noqa: E731
    assert sorted(now, key=key) == sorted(recorded, key=key)


def test_the_training_help_lists_the_options_under_their_groups() -> None:
    text = build_parser(PPOConfig).format_help()
    for group in GROUPS:
        assert f"{group} options:" in text
    assert text.index("optimizer options:") < text.index("\n  --critic-lr") < text.index("run options:")


GROUPED = {"model": {"lora": True, "critic": "head"}, "rollout": {"group-size": 6}, "optimizer": {"lr": 0.01}, "run": {"steps": 7}}
FLAT = {"lora": True, "critic": "head", "group-size": 6, "lr": 0.01, "steps": 7}


def write(path: Path, values: dict) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(values))
    elif path.suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(values))
    else:
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
        for group, options in ((k, v) for k, v in values.items() if isinstance(v, dict)):
            lines += [f"[{group}]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_a_grouped_config_file_loads_without_a_warning_and_a_flat_one_with_one_naming_the_file(tmp_path, suffix) -> None:
    grouped = write(tmp_path / f"grouped{suffix}", GROUPED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = parse_config(["--config", str(grouped), "--group-size", "3"], PPOConfig)
    assert (cfg.model.lora, cfg.model.critic, cfg.rollout.group_size, cfg.optimizer.lr, cfg.run.steps) == (True, "head", 3, 0.01, 7)
    flat = write(tmp_path / f"flat{suffix}", FLAT)
    with pytest.warns(DeprecationWarning) as caught:
        old = parse_config(["--config", str(flat), "--group-size", "3"], PPOConfig)
    assert [str(flat) in str(w.message) for w in caught] == [True]
    assert old == cfg


def test_a_config_file_whose_model_is_a_name_is_flat_and_one_whose_model_is_a_mapping_is_grouped(tmp_path) -> None:
    (tmp_path / "flat.yaml").write_text("model: some/model\n")
    with pytest.warns(DeprecationWarning):
        assert load_config_file(tmp_path / "flat.yaml") == {"model": "some/model"}
    (tmp_path / "grouped.yaml").write_text("model:\n  model: some/model\n  lora-r: 8\n")
    assert load_config_file(tmp_path / "grouped.yaml") == {"model": "some/model", "lora_r": 8}


def test_options_are_checked_whatever_their_group() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        make_config(TrainConfig, {"optimizer": {"critic_lr": 1.0}})  # a PPO option
    with pytest.raises(ValueError, match="steps must be int"):
        make_config(PPOConfig, {"run": {"steps": 1.5}})
    assert TrainConfig.from_options(steps=3).run.steps == 3 and PPOConfig().run.steps == 40 and TrainConfig().run.steps == 50


def test_the_saved_configuration_is_grouped_and_reads_back_as_the_same_config() -> None:
    cfg = PPOConfig.from_options(lr=1e-5, critic="head", simulator_kwargs='{"api_key": "sk-secret"}')
    saved = json.loads(json.dumps(cfg.redacted_dict()))
    assert list(saved) == list(GROUPS) and saved["optimizer"]["lr"] == 1e-5
    assert json.loads(saved["env"]["simulator_kwargs"]) == {"api_key": "<redacted>"}
    assert make_config(PPOConfig, {**saved, "env": {**saved["env"], "simulator_kwargs": cfg.env.simulator_kwargs}}) == cfg
    assert cfg.replace(lr=2e-5, steps=5) == PPOConfig.from_options(lr=2e-5, critic="head", steps=5, simulator_kwargs=cfg.env.simulator_kwargs)
