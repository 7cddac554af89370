"""Typed YAML: a mapping read from YAML into a frozen dataclass, every key checked.

:func:`build` turns one section of a parameter file into its dataclass (recursively for
nested dataclasses) so that an unknown, missing or mistyped key fails with its dotted name
and, for a typo, the closest known key; :func:`check` is the one-line range check the
dataclasses run in ``__post_init__``. :func:`load_yaml` reads YAML 1.2 numbers as DVC
writes them. The parameter sections themselves live in :mod:`quakeshap.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter is unknown, missing, mistyped or out of range."""


def check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"parameter {key}: {message}")


def _type_ok(value: Any, tp: Any, strict: bool = False) -> tuple[bool, Any]:
    """Whether ``value`` fits annotation ``tp``; returns (ok, converted value).

    ``strict`` refuses the one lenient conversion (a number where text is expected), so that
    in a union such as ``str | int`` the number matches ``int`` first.
    """
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for strict_pass in (True, False):
            for arm in get_args(tp):
                ok, converted = _type_ok(value, arm, strict=strict_pass)
                if ok:
                    return True, converted
        return False, value
    if origin is Literal:
        return value in get_args(tp), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        (item_tp, _ellipsis) = get_args(tp)
        converted = []
        for item in value:
            ok, item = _type_ok(item, item_tp)
            if not ok:
                return False, value
            converted.append(item)
        return True, tuple(converted)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        # YAML reads an unquoted record id as an int: accept numbers where text is expected
        if not strict and isinstance(value, int | float) and not isinstance(value, bool):
            return True, str(value)
        return isinstance(value, str), value
    return isinstance(value, tp), value


def build(cls: type[T], mapping: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``mapping``, failing on unknown, missing or mistyped keys.

    Parameters
    ----------
    cls
        A frozen dataclass of this module.
    mapping
        The section of ``params.yaml``; every field must be present (the file is the
        single source of truth, defaults in code only document the demo values).
    where
        Dotted prefix for error messages, e.g. ``"train"``.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"parameter section {where or '<root>'}: expected a mapping, got {mapping!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        hints_txt = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hints_txt.append(
                f"{_join(where, key)}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        raise ConfigError(
            "unknown parameter(s): "
            + ", ".join(hints_txt)
            + f"; known keys in {where or 'root'}: "
            + ", ".join(fields)
        )
    missing = [name for name in fields if name not in mapping]
    if missing:
        raise ConfigError(
            "missing parameter(s): "
            + ", ".join(_join(where, m) for m in missing)
            + " (see params.yaml for the full set)"
        )
    kwargs: dict[str, Any] = {}
    for name in fields:
        tp = hints[name]
        value = mapping[name]
        key = _join(where, name)
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, key)
            continue
        ok, converted = _type_ok(value, tp)
        if not ok:
            raise ConfigError(f"parameter {key}: {value!r} is not a valid {_describe(tp)}")
        kwargs[name] = converted
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "choice among " + ", ".join(repr(a) for a in get_args(tp))
    text = re.sub(r"typing\.", "", str(tp))
    return getattr(tp, "__name__", text)


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats.

    PyYAML follows YAML 1.1, where ``1e-05`` (no dot) is a string; DVC writes ``-S`` values
    with ruamel (YAML 1.2), where it is a float. Reading both the same way keeps
    ``dvc exp run -S train.lr=1e-5`` working.
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file, with a clear error for a missing or malformed one."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def to_dict(params: Any) -> dict[str, Any]:
    """A dataclass back to plain YAML-able data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(params)
