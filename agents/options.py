"""Dataclass fields as command-line options: one definition gives the option, its type and its help.

`option(default, help, ...)` declares a field with its `--help` text; `add_options(parser, cls)`
adds one option per field of the dataclass `cls` (`group_size` is `--group-size`, its `dest` the
field's name). The field's type annotation gives the option's type; a bool is `--x/--no-x`. Any
other keyword of `option` is passed to `argparse.add_argument` as it is (`choices`, `action`,
`nargs`, `metavar`, `type`), and `flags` names the option strings when they are not the field's
name (an alias such as `--split` for `--scenarios`). The training, evaluation and SB3 commands
are all built this way, so an option, its type and its help are written once.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any

ARGPARSE_ONLY = ("flags",)  # metadata that is not passed to add_argument as it is


def option(default: Any, help: str | None, **kwargs: Any) -> Any:
    """A dataclass field with its command-line help (and any `add_argument` keyword, see the module docstring).
    A list default is copied for every instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


def base_type(annotation: Any) -> tuple[Any, bool]:
    """(the scalar type, whether None is allowed) of a field annotation like `int | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def field_default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_cls: type, *, layered: bool = False) -> None:
    """One option per field of `config_cls`.

    `layered=False`: the option's default is the field's (a plain command line). `layered=True`:
    no default is set (`argparse.SUPPRESS`), so that what was given can be laid over a config
    file's values; the help then ends with the field's default, and the metavar names the type.
    """
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        kind, _ = base_type(hints[f.name])
        extra = {k: v for k, v in f.metadata.items() if k not in ("help", *ARGPARSE_ONLY)}
        flags = f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)
        default = field_default(f)
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help")}
        if layered:
            kwargs.update(default=argparse.SUPPRESS, help=f"{kwargs['help'] or ''} (default: {default})")
        else:
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
        if kind is bool and "action" not in extra:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if layered:
            kwargs.update(type=kind, metavar=kind.__name__.upper())
        elif kind in (int, float) and not {"type", "action"} & extra.keys():
            kwargs["type"] = kind
        parser.add_argument(*flags, **kwargs, **extra)
