"""What the network learns to tell apart: the class of every catalogue row (``task``).

The study's classes are the record's two files: foreshocks (``pre``) recorded before the
Norcia mainshock and aftershocks (``post``) after it (``docs/method.md`` §1). Here a
trace's class comes from its ``source_origin_time`` and ``task.boundary_time``: ``pre``
when the event is earlier than the boundary, ``post`` otherwise. With the default
boundary, the mainshock (:data:`quakeshap.record.MAINSHOCK_ORIGIN_UTC`), this is the
file's class for every trace of the record and of the demo; any other boundary is the
wrong-boundary control (Laurenti et al. 2024, ``docs/method.md`` §7).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from quakeshap.config import ConfigError, TaskConfig
from quakeshap.record import CLASS_NAMES, parse_times

PRE, POST = CLASS_NAMES

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
