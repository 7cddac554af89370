"""What the network learns: the class or the value of every catalogue row (``task``).

The study's classes are the record's two files: foreshocks (``pre``) recorded before the
Norcia mainshock and aftershocks (``post``) after it (``docs/method.md`` §1). Here a
trace's class comes from its ``source_origin_time`` and ``task.boundary_time``: ``pre``
when the event is earlier than the boundary, ``post`` otherwise. With the default
boundary, the mainshock (:data:`quakeshap.record.MAINSHOCK_ORIGIN_UTC`), this is the
file's class for every trace of the record and of the demo; any other boundary is the
wrong-boundary control (Laurenti et al. 2024, ``docs/method.md`` §7).

``task.kind`` chooses what is learnt (``docs/method.md`` §11):

``prepost`` (the study)
    the two classes above;
``ttf``
    time-to-failure classes (Laurenti et al. 2024): the traces of each side, sorted by
    origin time, cut into ``n_classes / 2`` chunks of (nearly) equal count, named
    ``pre_1`` (earliest) … ``pre_k`` (last before the mainshock), ``post_1`` (first after)
    … ``post_k``; with an odd count, the traces between ``ttf.extra_boundary_time`` and
    the boundary form the class ``between`` (Laurenti's ninth: after the Visso shocks).
    Events with the same origin time always share a chunk;
``magnitude``
    ``source_magnitude`` as a regression target; a trace without one is left out with
    its reason.

The ``label`` column of the spectrogram set stays the side (``pre``/``post``) for every
kind, since the controls and the split read it; the other kinds add a ``target`` column
(class name or magnitude) and record :func:`task_record` in ``axes.json``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quakeshap.config import ConfigError, TaskConfig
from quakeshap.record import CLASS_NAMES, parse_times

PRE, POST = CLASS_NAMES

#: the class of ``task.ttf``'s odd count between ``extra_boundary_time`` and the boundary
BETWEEN = "between"
#: fewest traces a time-to-failure class may hold (a larger ``n_classes`` is refused)
MIN_TRACES_PER_CLASS = 10
#: why a trace without a magnitude is left out under ``task.kind: magnitude``
NO_MAGNITUDE_REASON = "no magnitude: source_magnitude is {value!r}; task.kind magnitude needs it"

#: why a row whose event time cannot be read is left out (``reports/data/rejected.csv``)
BAD_ORIGIN_REASON = "bad source_origin_time: {value!r} is not a timestamp, its class is unknown"


def boundary_labels(origin_times: pd.Series, boundary: pd.Timestamp) -> np.ndarray:
    """``pre`` for events earlier than ``boundary``, ``post`` for the others.

    Parameters
    ----------
    origin_times
        ``(n,)`` UTC timestamps (:func:`quakeshap.record.parse_times`); NaT rows get ``None``.
    boundary
        A UTC timestamp.

    Returns
    -------
    ``(n,)`` object array of class names (``None`` where the time is NaT).
    """
    times = origin_times.to_numpy(dtype="datetime64[ns]")
    cut = np.datetime64(boundary.tz_convert("UTC").tz_localize(None), "ns")
    labels = np.where(times < cut, PRE, POST).astype(object)
    labels[np.isnat(times)] = None
    return labels


def assign_labels(catalog: pd.DataFrame, cfg: TaskConfig) -> tuple[np.ndarray, pd.Series]:
    """The class of every catalogue row, and the rows whose class cannot be known.

    Parameters
    ----------
    catalog
        From :func:`quakeshap.waveforms.read_catalog` (``source_origin_time``).
    cfg
        ``task``.

    Returns
    -------
    labels
        ``(n,)`` object array, ``pre``/``post``; rows with an unparsable
        ``source_origin_time`` keep the class of the file that lists them.
    reasons
        Why each row must be left out (``None`` = fine), index of ``catalog``: an
        unparsable ``source_origin_time``.

    Raises
    ------
    ConfigError
        When the boundary lies outside the catalogue's span of origin times, so that one
        class would be empty (checked here, before any waveform is read).
    """
    times = parse_times(catalog["source_origin_time"])
    labels = boundary_labels(times, cfg.boundary_utc)
    unknown = times.isna().to_numpy()
    labels[unknown] = catalog["label"].to_numpy()[unknown]
    reasons = pd.Series([None] * len(catalog), index=catalog.index, dtype=object)
    reasons[unknown] = [
        BAD_ORIGIN_REASON.format(value=v) for v in catalog.loc[unknown, "source_origin_time"]
    ]
    known = labels[~unknown]
    empty = [name for name in CLASS_NAMES if not np.any(known == name)]
    if empty:
        span = f"{times.min()} to {times.max()}" if (~unknown).any() else "none readable"
        raise ConfigError(
            f"parameter task.boundary_time: {cfg.boundary_time!r} lies outside the catalogue's "
            f"origin times ({span}), which leaves no '{empty[0]}' trace; choose a time inside"
        )
    return labels, reasons


# --------------------------------------------------------------------------------------
# the other kinds: time-to-failure classes and magnitude
# --------------------------------------------------------------------------------------


def class_names(cfg: TaskConfig) -> tuple[str, ...]:
    """Output names of the model, by index: the classes in time order, or ``magnitude``."""
    if cfg.kind == "prepost":
        return CLASS_NAMES
    if cfg.kind == "magnitude":
        return ("magnitude",)
    k = cfg.ttf.n_classes // 2
    middle = (BETWEEN,) if cfg.ttf.n_classes % 2 else ()
    return (
        *(f"{PRE}_{i}" for i in range(1, k + 1)),
        *middle,
        *(f"{POST}_{i}" for i in range(1, k + 1)),
    )


def task_record(cfg: TaskConfig) -> dict[str, object] | None:
    """What ``axes.json`` and the checkpoint record of the task; None for ``prepost`` (the
    study's files stay as they were)."""
    if cfg.kind == "prepost":
        return None
    return {"kind": cfg.kind, "classes": list(class_names(cfg))}


def _chunks(times: np.ndarray, k: int) -> np.ndarray:
    """Chunk 0..k-1 of each time: equal counts in time order, ties in one chunk."""
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    # the rank of a time = the position of its first occurrence: ties share it
    first = np.searchsorted(sorted_times, sorted_times, side="left")
    chunk = np.empty(len(times), dtype=np.int64)
    chunk[order] = first * k // max(len(times), 1)
    return chunk


def ttf_targets(
    origin_times: pd.Series, labels: np.ndarray, usable: np.ndarray, cfg: TaskConfig
) -> np.ndarray:
    """The time-to-failure class of every usable row (``None`` elsewhere).

    Parameters
    ----------
    origin_times
        ``(n,)`` UTC timestamps.
    labels
        ``(n,)`` sides, ``pre``/``post`` (:func:`assign_labels`).
    usable
        ``(n,)`` bool: rows not left out; only they are counted into chunks.
    cfg
        ``task`` with ``kind: ttf``.

    Raises
    ------
    ConfigError
        ``task.ttf.n_classes`` larger than the data allow (a class with fewer than
        :data:`MIN_TRACES_PER_CLASS` traces), or an extra boundary that leaves its class
        empty.
    """
    names = class_names(cfg)
    k = cfg.ttf.n_classes // 2
    times = origin_times.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out = np.full(len(labels), None, dtype=object)
    between = np.zeros(len(labels), dtype=bool)
    if cfg.ttf.extra_boundary_time is not None:
        extra = parse_times(pd.Series([cfg.ttf.extra_boundary_time])).iloc[0]
        cut = np.datetime64(extra.tz_convert("UTC").tz_localize(None), "ns").astype(np.int64)
        between = usable & (labels == PRE) & (times >= cut)
        out[between] = BETWEEN
    for side in CLASS_NAMES:
        rows = np.flatnonzero(usable & (labels == side) & ~between)
        chunk = _chunks(times[rows], k)
        out[rows] = [f"{side}_{c + 1}" for c in chunk]
    counts = pd.Series(out[usable]).value_counts().reindex(list(names), fill_value=0)
    small = counts[counts < MIN_TRACES_PER_CLASS]
    if len(small):
        name, n = small.index[0], int(small.iloc[0])
        if name == BETWEEN:
            raise ConfigError(
                f"parameter task.ttf.extra_boundary_time: {cfg.ttf.extra_boundary_time!r} leaves "
                f"{n} trace(s) in class '{BETWEEN}' (at least {MIN_TRACES_PER_CLASS} needed); "
                "choose an earlier time"
            )
        sides = [times[usable & (labels == s) & ~between] for s in CLASS_NAMES]
        fits = [j for j in range(1, k) if all(_smallest_chunk(t, j) >= MIN_TRACES_PER_CLASS
                                              for t in sides)]  # fmt: skip
        allowed = (
            f"these data allow at most {2 * max(fits) + cfg.ttf.n_classes % 2}"
            if fits
            else "these data allow none: use task.kind prepost"
        )
        raise ConfigError(
            f"parameter task.ttf.n_classes: {cfg.ttf.n_classes} classes leave '{name}' with {n} "
            f"trace(s) (at least {MIN_TRACES_PER_CLASS} needed); {allowed}"
        )
    return out


def _smallest_chunk(times: np.ndarray, k: int) -> int:
    """The fewest traces in one of ``k`` time chunks of ``times``."""
    return int(np.bincount(_chunks(times, k), minlength=k).min()) if len(times) else 0


def magnitude_targets(catalog: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """``source_magnitude`` as float, and why rows without one are left out."""
    values = pd.to_numeric(catalog["source_magnitude"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    reasons = pd.Series([None] * len(catalog), index=catalog.index, dtype=object)
    reasons[bad] = [
        NO_MAGNITUDE_REASON.format(value=v) for v in catalog.loc[bad, "source_magnitude"]
    ]
    return values, reasons
