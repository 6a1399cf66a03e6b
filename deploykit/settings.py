"""The one settings loader: a table of plain data (TOML, flags, keyword arguments) into a frozen
dataclass, with unknown keys and wrong types refused by name.

Every settings dataclass in deploykit (the build's, each target's, latency, optimize, fit, report
thresholds) is filled through `from_table`, so a typo or `parity_samples = "many"` fails the same
way everywhere: exit 2 naming `where.key`, before any work starts. Types come from the dataclass's
annotations; lists may be given as comma-separated strings. No TensorFlow here.
"""
from __future__ import annotations

import collections.abc
import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeVar

from deploykit.errors import BadInputError

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as plain data; a missing or malformed file is exit 2 naming it."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: config file not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{p}: not valid TOML ({exc})") from None


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def known_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def check_keys(table: Mapping[str, Any], known, where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        label = f"unknown [{where}] setting(s)" if where else "unknown setting(s)"
        raise BadInputError(f"{label} {', '.join(unknown)} (known: {', '.join(known)})")


def from_table(cls: type[T], table: Mapping[str, Any] | T | None, where: str, **fixed: Any) -> T:
    """`cls(**table)` after checking every key and value; `None` values mean "not given".

    Nested dataclass fields take a table of their own (checked under `where.field`); `fixed` are
    values already built by the caller (passed through unchecked)."""
    if table is None:
        return cls(**fixed)
    if isinstance(table, cls):
        return table
    if not isinstance(table, Mapping):
        raise BadInputError(f"{where}: expected a table of settings, got {_show(table)}")
    check_keys(table, known_keys(cls), where)
    hints = _hints(cls)
    values = {}
    for key, value in table.items():
        if value is None or key in fixed:
            continue
        values[key] = coerce(hints[key], value, f"{where}.{key}" if where else key)
    return cls(**values, **fixed)


_TABLES = (dict, Mapping, collections.abc.Mapping, collections.abc.MutableMapping)


def coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` checked (and normalized: lists to tuples, ints to floats) against a type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(option, value, where)
            except BadInputError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else BadInputError(
            f"{where}: expected {' or '.join(_name(o) for o in options)}, got {_show(value)}")
    if is_dataclass(hint):
        return from_table(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise BadInputError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInputError(f"{where}: expected a whole number, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInputError(f"{where}: expected a number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise BadInputError(f"{where}: expected a string, got {_show(value)}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(value, (list, tuple)):
            raise BadInputError(f"{where}: expected a list, got {_show(value)}")
        item = args[0] if args else Any
        return tuple(coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    # `typing.Mapping[K, V]` reports `collections.abc.Mapping` as its origin, not `typing.Mapping`
    if origin in _TABLES or hint in _TABLES:
        if not isinstance(value, Mapping):
            raise BadInputError(f"{where}: expected a table, got {_show(value)}")
        val_hint = args[1] if len(args) == 2 else Any
        return {str(k): coerce(val_hint, v, f"{where}.{k}") for k, v in value.items()}
    return value


def _name(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if typing.get_origin(hint) is tuple:
        return "a list"
    return "a table"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
