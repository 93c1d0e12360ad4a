"""The learner's layout, read from its source: the algorithms import neither their trainer nor each
other, hold no rank logic, and no loss part has an attribute set from outside its own class."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tests.tiny import SMALL, tokenizer  # noqa: F401  (fixture)

LEARN = Path(__file__).resolve().parents[1] / "agents" / "learn"
ALGORITHMS = ("grpo.py", "ppo.py")
RANK_ATTRIBUTES = {"rank", "local_rank", "world_size", "is_main", "is_distributed", "once", "loss_scale"}


def tree(name: str) -> ast.Module:
    return ast.parse((LEARN / name).read_text())


def imported_modules(module: ast.Module) -> set[str]:
    """Every module an import statement names, at any level, except in a module `__getattr__` (a deprecated alias)."""
    names: set[str] = set()
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.module:
                names.add(inner.module)
            elif isinstance(inner, ast.Import):
                names.update(alias.name for alias in inner.names)
    return names


@pytest.mark.parametrize("name", ALGORITHMS)
def test_an_algorithm_imports_neither_the_trainer_nor_the_other_algorithm(name: str) -> None:
    forbidden = {"agents.learn.trainer", *(f"agents.learn.{other.removesuffix('.py')}" for other in ALGORITHMS)}
    assert imported_modules(tree(name)) & forbidden == set()


@pytest.mark.parametrize("name", [*ALGORITHMS, "update.py"])
def test_the_update_and_the_algorithms_hold_no_rank_logic(name: str) -> None:
    read = {node.attr for node in ast.walk(tree(name)) if isinstance(node, ast.Attribute)}
    assert read & RANK_ATTRIBUTES == set()


def part_attributes() -> set[str]:
    """The attributes the loss parts (classes with a `loss` and a `finish`) set on themselves."""
    names: set[str] = set()
    for file in LEARN.glob("*.py"):
        for cls in ast.walk(ast.parse(file.read_text())):
            if isinstance(cls, ast.ClassDef) and {"loss", "finish"} <= {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}:
                for node in ast.walk(cls):
                    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) and node.value.id == "self":
                        names.add(node.attr)
    return names


def test_no_attribute_of_a_loss_part_is_set_from_outside() -> None:
    attributes = part_attributes()
    assert {"optimized", "module"} <= attributes  # the parts were found
    outside = []
    for file in LEARN.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                on_other = isinstance(target, ast.Attribute) and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                if on_other and target.attr in attributes:
                    outside.append(f"{file.name}:{target.lineno} {ast.unparse(target)}")
    assert outside == []


def test_the_old_trainer_classes_still_import_with_a_warning() -> None:
    from agents.learn.trainer import Trainer

    with pytest.warns(DeprecationWarning, match="Trainer\\(cfg, algorithm=GRPO\\)"):
        from agents.learn.trainer import GRPOTrainer
    with pytest.warns(DeprecationWarning, match="Trainer\\(cfg, algorithm=PPO\\)"):
        from agents.learn.trainer import PPOTrainer
    assert issubclass(GRPOTrainer, Trainer) and issubclass(PPOTrainer, Trainer)
    with pytest.warns(DeprecationWarning):
        from agents.learn.trainer import GRPOTrainer as again
    assert again is GRPOTrainer
    with warnings.catch_warnings(), pytest.raises(ImportError):
        warnings.simplefilter("error")
        from agents.learn.trainer import NoSuchTrainer  # noqa: F401


# ----------------------------------------------------------------------------------------------
# the policy, and the packages below the learner and the evaluator

AGENTS = LEARN.parent
POLICY_PLACEMENT = {"device", "autocast_dtype", "forward_module", "train_module", "_train_module"}


def test_no_attribute_of_a_policy_is_set_from_outside() -> None:
    """Where a policy computes, in which dtype and through which module is fixed when it is built."""
    outside = []
    for file in AGENTS.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                on_other = isinstance(target, ast.Attribute) and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                if on_other and target.attr in POLICY_PLACEMENT:
                    outside.append(f"{file.relative_to(AGENTS)}:{target.lineno} {ast.unparse(target)}")
    assert outside == []


def test_a_policy_is_wrapped_for_training_once(tokenizer) -> None:  # noqa: F811
    from agents.learn.tiny_model import system_prompts, tiny_random_model
    from agents.policy.model import Policy

    policy = Policy.from_model(tiny_random_model(tokenizer, SMALL), tokenizer, system_prompt=system_prompts()["direct"], autocast_dtype=torch.bfloat16)
    assert policy.device == torch.device("cpu") and policy.autocast_dtype == torch.bfloat16
    assert policy.train_module is policy.forward_module
    wrapper = torch.nn.Sequential(policy.forward_module)
    policy.distribute(lambda module: wrapper)
    assert policy.train_module is wrapper and policy.forward_module is not wrapper
    with pytest.raises(RuntimeError, match="wrapped for training already"):
        policy.distribute(lambda module: module)
    with pytest.raises(AttributeError):
        policy.train_module = policy.forward_module  # type: ignore[misc]


def project_imports(package: str) -> set[tuple[str, str]]:
    """(file, module) for every `agents.*` module a file of `agents/<package>` imports, at any level."""
    found = set()
    for file in (AGENTS / package).rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found.update((file.name, name) for name in names if name.startswith("agents."))
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("learn", ("agents.eval",)),
    ("eval", ("agents.learn",)),
    ("policy", ("agents.learn", "agents.eval", "agents.replies")),
    ("replies", ("agents.learn", "agents.eval", "agents.policy")),
])  # fmt: skip
def test_the_learner_and_the_evaluator_are_siblings_over_what_they_share(package: str, forbidden: tuple[str, ...]) -> None:
    """What pyproject's import-linter contracts say (lint-imports in CI), read here from the source."""
    assert sorted((file, name) for file, name in project_imports(package) if name.startswith(forbidden)) == []


@pytest.mark.parametrize(("old", "new", "name"), [
    ("agents.learn.policy", "agents.policy.model", "Policy"),
    ("agents.learn.policy", "agents.policy.hf_engine", "Sampling"),
    ("agents.learn.policy", "agents.policy.chat_format", "ChatFormat"),
    ("agents.learn.policy", "agents.policy.loading", "load_pretrained"),
    ("agents.learn.models", "agents.policy.models", "named_model"),
    ("agents.learn.model_path", "agents.policy.model_path", "check_model_path"),
    ("agents.learn.run_folder", "agents.policy.run_folder", "follow_latest"),
    ("agents.learn.held_out", "agents.learn.held_out_users", "HeldOutSettings"),
    ("agents.eval.baselines", "agents.replies.baselines", "make_reference_agent"),
    ("agents.eval.baselines_zh", "agents.replies.baselines_zh", "is_chinese"),
    ("agents.eval.canaries", "agents.replies.canaries", "reply_canaries"),
    ("agents.eval.strategies", "agents.replies.strategies", "tag_reply"),
    ("agents.eval.strategies_zh", "agents.replies.strategies_zh", "RULES_ZH"),
    ("agents.eval.endpoint", "agents.replies.endpoint", "AgentError"),
    ("agents.eval.held_out", "agents.eval.held_out_simulators", "parse_simulator_spec"),
])  # fmt: skip
def test_a_moved_module_still_imports_from_its_old_path_with_a_warning(old: str, new: str, name: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import from"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
