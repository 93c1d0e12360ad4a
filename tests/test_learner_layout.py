"""The learner's layout, read from its source: the algorithms import neither their trainer nor each
other, hold no rank logic, and no loss part has an attribute set from outside its own class."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

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
        from agents.learn.grpo import GRPOTrainer
    with pytest.warns(DeprecationWarning, match="Trainer\\(cfg, algorithm=PPO\\)"):
        from agents.learn.ppo import PPOTrainer
    assert issubclass(GRPOTrainer, Trainer) and issubclass(PPOTrainer, Trainer)
    with pytest.warns(DeprecationWarning):
        from agents.learn.grpo import GRPOTrainer as again
    assert again is GRPOTrainer
    with warnings.catch_warnings(), pytest.raises(ImportError):
        warnings.simplefilter("error")
        from agents.learn.grpo import NoSuchTrainer  # noqa: F401
