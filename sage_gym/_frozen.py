"""A read-only, picklable dict for the free-form fields of immutable records."""

from __future__ import annotations

from typing import Any, NoReturn


class FrozenDict(dict[Any, Any]):
    """A dict that refuses mutation (records stay immutable) and still pickles and copies."""

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        import copy

        return FrozenDict(copy.deepcopy(dict(self), memo))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: str(kv[0]))))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def freeze(mapping: Any) -> FrozenDict:
    return mapping if isinstance(mapping, FrozenDict) else FrozenDict(mapping or {})
