"""Named parameter profiles run as DVC experiments.

``params.yaml`` is the demo configuration. A *profile* (``profiles/study.yaml``) holds a
complete alternative set of values for exactly the same keys. Rather than copying it over
``params.yaml``, ``make study`` runs it as a named experiment::

    dvc exp run -n study -S 'data.source=zenodo' -S 'train.n_folds=7' ...

so that it shows up in ``dvc exp show`` next to the demo. This module computes those
``-S`` arguments: one per leaf key whose value differs from ``params.yaml``.

DVC hands ``-S`` values to Hydra's override parser (``dvc.utils.hydra.apply_overrides``),
not to a YAML parser, so values are written in Hydra's override grammar: ``null``,
``true``/``false``, integers, floats with a ``.`` or an exponent, quoted strings (quoted
always, so that ``"15683047"`` stays a string) and ``[a,b]`` lists.

A *patch* (``profiles/controls/<name>.yaml``, the study's controls) holds only the keys it
changes. Patches apply on top of a complete configuration: ``params.yaml`` (the demo) or a
profile (the study), so one control file serves both (:func:`compose`); every key of a
patch must exist in ``params.yaml``.

Command line::

    python -m quakeshap.profiles [PROFILE] [--patch PATCH ...] [--base params.yaml]

prints the arguments shell-quoted on one line, ready for ``eval``; e.g.
``python -m quakeshap.profiles profiles/study.yaml --patch profiles/controls/matched.yaml``
for the matched-classes control of the study.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from quakeshap.config import ConfigError, load_yaml, parse_params


class ProfileError(ValueError):
    """A profile does not match ``params.yaml`` or holds a value ``-S`` cannot express."""


def _leaves(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"section.key": value}``; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_leaves(value, dotted))
        else:
            out[dotted] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same YAML type (``10`` and ``10.0`` differ: the type is written)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def encode_value(value: Any, key: str = "") -> str:
    """One YAML value in Hydra's override grammar, as DVC's ``-S`` parser reads it.

    Parameters
    ----------
    value
        ``None``, a bool, int, float, str or a list of those.
    key
        Dotted parameter name, for error messages only.

    Raises
    ------
    ProfileError
        For a type or a string that ``-S`` cannot carry unchanged.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)  # shortest round-tripping form: 0.001, 1e-10, 42.0
        return text
    if isinstance(value, str):
        if "${" in value or value.endswith("\\"):
            raise ProfileError(
                f"profile value {key}={value!r}: '${{' and a trailing backslash cannot be "
                "passed through `dvc exp run -S`; edit params.yaml instead"
            )
        if '"' not in value:
            return f'"{value}"'
        if "'" not in value:
            return f"'{value}'"
        raise ProfileError(
            f"profile value {key}={value!r} holds both quote characters, which "
            "`dvc exp run -S` cannot carry; edit params.yaml instead"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_value(item, key) for item in value) + "]"
    raise ProfileError(
        f"profile value {key}={value!r}: a {type(value).__name__} cannot be passed with -S"
    )


def profile_overrides(profile: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """The ``key=value`` overrides that turn ``base`` (params.yaml) into ``profile``.

    Parameters
    ----------
    profile, base
        Parsed YAML mappings of a profile and of ``params.yaml``. Both must hold exactly the
        same keys (a profile is a complete configuration, not a patch).

    Returns
    -------
    list of str
        ``"section.key=value"`` in ``params.yaml``'s key order, only for values that
        differ, each value encoded with :func:`encode_value`. Pass each one as ``-S``.

    Raises
    ------
    ProfileError
        When the key sets differ (the message names every extra and missing key).
    """
    want = _leaves(profile)
    have = _leaves(base)
    extra = [k for k in want if k not in have]
    missing = [k for k in have if k not in want]
    if extra or missing:
        parts = []
        if extra:
            parts.append("not in params.yaml: " + ", ".join(extra))
        if missing:
            parts.append("missing from the profile: " + ", ".join(missing))
        raise ProfileError(
            "the profile and params.yaml must hold the same keys; " + "; ".join(parts)
        )
    return [
        f"{key}={encode_value(want[key], key)}" for key in have if not _same(want[key], have[key])
    ]


def apply_patch(
    config: Mapping[str, Any], patch: Mapping[str, Any], where: str = ""
) -> dict[str, Any]:
    """``config`` with the values of ``patch`` put in; neither argument is changed.

    Parameters
    ----------
    config
        A complete configuration (``params.yaml`` or a profile), parsed.
    patch
        Some of its keys, nested the same way (a control's file); may be empty.
    where
        Dotted prefix for error messages.

    Raises
    ------
    ProfileError
        For a key of the patch that ``config`` lacks, or a value where ``config`` has a
        section (or the reverse).
    """
    out = copy.deepcopy(dict(config))
    for key, value in patch.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in out:
            close = ", ".join(str(k) for k in out)
            raise ProfileError(f"{dotted} is not in params.yaml (keys here: {close})")
        if isinstance(out[key], Mapping) != isinstance(value, Mapping):
            what = "a section" if isinstance(out[key], Mapping) else "a value"
            raise ProfileError(f"{dotted} is {what} in params.yaml; the patch differs")
        out[key] = apply_patch(out[key], value, dotted) if isinstance(value, Mapping) else value
    return out


def compose(
    base: Mapping[str, Any],
    profile: Mapping[str, Any] | None = None,
    patches: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The configuration ``profile`` (default ``base``) with ``patches`` applied in order.

    ``profile`` must hold exactly ``base``'s keys (:func:`profile_overrides` says which
    differ); pass the result to :func:`profile_overrides` with ``base`` for the ``-S``
    arguments.
    """
    if profile is not None:
        profile_overrides(profile, base)  # the same keys, or a ProfileError naming them
    config = dict(base if profile is None else profile)
    for patch in patches:
        config = apply_patch(config, patch)
    return config


def dvc_set_args(overrides: Sequence[str]) -> list[str]:
    """``["-S", override, ...]``: the arguments of ``dvc exp run`` for ``overrides``."""
    args: list[str] = []
    for override in overrides:
        args += ["-S", override]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quakeshap.profiles",
        description="Print the `dvc exp run -S` arguments that apply a parameter profile.",
    )
    parser.add_argument(
        "profile", nargs="?", help="profile YAML, e.g. profiles/study.yaml (default: the base)"
    )
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        help="partial profile applied on top, e.g. profiles/controls/matched.yaml (repeatable)",
    )
    parser.add_argument("--base", default="params.yaml", help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    files = [f for f in (args.profile, *args.patch) if f is not None]
    where = " + ".join(files) or args.base
    try:
        base = load_yaml(args.base)
        profile = None if args.profile is None else load_yaml(args.profile)
        config = compose(base, profile, [load_yaml(patch) for patch in args.patch])
        try:
            parse_params(config)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        overrides = profile_overrides(config, base)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ProfileError as exc:
        print(f"error: {where}: {exc}", file=sys.stderr)
        return 1
    print(shlex.join(dvc_set_args(overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
