"""Scenario sets, files and splits: `ScenarioSet`, reading and writing JSONL files, and the
splits that ship with the package (`load_split`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from sage_gym.resources import data_path
from sage_gym.scenarios.records import SPLITS, Scenario, ScenarioError
from sage_gym.scenarios.sage_format import from_sage


class ScenarioSet(Sequence):  # of Scenario; unparameterised, since `in` also takes an id
    """An ordered collection of scenarios with unique ids, deterministic sampling and a content hash."""

    def __init__(self, scenarios: Iterable[Scenario], name: str = "") -> None:
        self.name = name
        self._items = tuple(scenarios)
        self._by_id: dict[str, Scenario] = {}
        for s in self._items:
            if s.id in self._by_id:
                raise ScenarioError(f"{name or 'scenario set'}: duplicate scenario id {s.id!r}")
            self._by_id[s.id] = s
        if not self._items:
            raise ScenarioError(f"{name or 'scenario set'}: no scenarios")

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._items)

    @overload
    def __getitem__(self, index: int) -> Scenario: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Scenario, ...]: ...
    def __getitem__(self, index: int | slice) -> Scenario | tuple[Scenario, ...]:
        return self._items[index]

    def __contains__(self, item: object) -> bool:  # a Scenario or its id
        return (item.id if isinstance(item, Scenario) else item) in self._by_id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self._items)

    def get(self, scenario_id: str) -> Scenario:
        if not isinstance(scenario_id, str):
            raise TypeError(f"a scenario id is a str, got {type(scenario_id).__name__} {scenario_id!r}")
        try:
            return self._by_id[scenario_id]
        except KeyError:
            close = [i for i in self._by_id if scenario_id.lower() in i.lower()][:5]
            hint = f"; similar ids: {', '.join(close)}" if close else ""
            raise KeyError(f"unknown scenario id {scenario_id!r} in {self.name or 'scenario set'} ({len(self)} scenarios){hint}") from None

    def sample(self, rng: np.random.Generator | None = None, seed: int | None = None) -> Scenario:
        """One scenario drawn uniformly; the same seed (or generator state) gives the same one."""
        rng = rng if rng is not None else np.random.default_rng(seed)
        return self._items[int(rng.integers(len(self._items)))]

    def filter(self, **conditions: Any) -> ScenarioSet:
        """Scenarios whose attributes equal the given values, e.g. `filter(hidden_intention="venting")`."""
        kept = [s for s in self._items if all(getattr(s, k) == v for k, v in conditions.items())]
        return ScenarioSet(kept, name=f"{self.name}[{conditions}]")

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of every scenario, in order: identifies the set in manifests."""
        digest = hashlib.sha256()
        for s in self._items:
            digest.update(json.dumps(s.to_dict(), sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"ScenarioSet({self.name!r}, {len(self)} scenarios)"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; bad UTF-8, bad JSON or absurd nesting name the file and line."""
    path = Path(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ScenarioError(f"{path}:{lineno}: not UTF-8 text: {err.reason} at byte {err.start} of the line") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ScenarioError(f"{path}:{lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
            except RecursionError:
                raise ScenarioError(f"{path}:{lineno}: invalid JSON: nested too deeply") from None
            yield lineno, value


def load_scenarios(path: str | Path) -> ScenarioSet:
    """Load and validate a JSONL file of scenarios (our format or SAGE's, detected per line)."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: scenario file not found")
    scenarios = []
    for lineno, record in iter_jsonl(path):
        where = f"{path}:{lineno}"
        try:
            if isinstance(record, Mapping) and "player" in record and "scene" in record:
                scenarios.append(from_sage(record, where))
            else:
                scenarios.append(Scenario.from_dict(record, where))
        except RecursionError:  # JSON nested within the parser's limit, but too deep to copy or hash
            raise ScenarioError(f"{where}: the record is nested too deeply") from None
        except ScenarioError as err:
            if str(err).startswith(where):
                raise
            raise ScenarioError(f"{where}: {err}") from None
    return ScenarioSet(scenarios, name=str(path))


def load_split(split: str) -> ScenarioSet:
    """A shipped split: `train`, `eval` (English), `train-zh`, `eval-zh` (Chinese) or `probes` (both)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or a path to a JSONL file")
    return load_scenarios(data_path("personas", f"{split.replace('-', '_')}.jsonl"))


def resolve_scenarios(source: str | Path | ScenarioSet | Iterable[Scenario]) -> ScenarioSet:
    """A split name, a JSONL path, a ScenarioSet or an iterable of Scenarios, as a ScenarioSet."""
    if isinstance(source, ScenarioSet):
        return source
    if isinstance(source, (str, Path)):
        if str(source) in SPLITS:
            return load_split(str(source))
        if not Path(source).exists() and Path(source).suffix == "":
            raise ScenarioError(f"unknown split {str(source)!r}; expected one of {SPLITS} or a path to a JSONL file")
        return load_scenarios(source)
    return ScenarioSet(source)


def write_scenarios(scenarios: Iterable[Scenario], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for s in scenarios:
            handle.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
