"""The catalogue as the ``spectrograms`` stage uses it: classes, controls, split, groups.

:func:`prepare_catalog` takes the rows listed in the record (:func:`quakeshap.waveforms.
read_catalog`) through every step that needs no waveform, each one a parameter, and fails
on a parameter that leaves nothing to work with before a single waveform is read:

1. **Classes** (``task``, :mod:`quakeshap.task`): ``pre``/``post`` from each event's origin
   time and ``task.boundary_time``; a boundary outside the catalogue's span fails. Under
   ``task.kind: magnitude`` a row without a magnitude is left out; under ``ttf`` the rows
   kept after step 3 get their time-to-failure class (column ``target``).
2. **Rejections from the attributes** (:func:`quakeshap.waveforms.row_rejections`, and an
   unreadable origin time).
3. **Matched classes** (``split.match``, :func:`quakeshap.splits.match_classes`): among the
   rows not rejected, traces are dropped until both classes have the same joint histogram
   of magnitude and S-P time.
4. **Split** (``split``, :func:`quakeshap.splits.assign_split`) over every listed row the
   matching kept, before the waveforms are read and some rejected, as in the study
   (``docs/method.md`` §2); **co-located groups** from the similar-traces table.
5. **Time window** (``spectrogram.window``): the image columns kept of each row. A row
   whose window holds no column is left out with its reason; a window that holds no
   column of any row fails.

Rows left out by a control (steps 3 and 5) are listed in ``reports/data/rejected.csv``
with their reason like the data's defects, but they do not count towards
``spectrogram.max_rejected_fraction``, which is about the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quakeshap import waveforms as wf
from quakeshap.config import ConfigError, Params
from quakeshap.masking import parse_masker
from quakeshap.record import (
    CLASS_NAMES,
    P_ARRIVAL_S,
    TIME_WINDOWS,
    parse_times,
    time_window_masks,
)
from quakeshap.splits import assign_split, associato_ids, match_classes, read_similar_traces
from quakeshap.task import assign_labels, magnitude_targets, ttf_targets

log = logging.getLogger(__name__)

#: why a row whose time window holds no image column is left out (``rejected.csv``)
EMPTY_WINDOW_REASON = (
    "empty time window: spectrogram.window = {window} keeps no column of this trace "
    "(S at {s:.2f} s; columns at {first:.2f}-{last:.2f} s)"
)


@dataclass(frozen=True)
class PreparedCatalog:
    """The catalogue ready for the waveforms.

    Attributes
    ----------
    catalog
        Every listed row, with ``label``, ``split`` and ``associato``.
    skip
        Why each row is left out before its waveform is read (``None`` = read it); index
        of ``catalog``.
    controls
        Catalogue positions left out by a control (matching, an empty time window): not
        defects of the data.
    keep_columns
        ``(n, n_time)`` bool: the image columns kept of each row; None = every column
        (``spectrogram.window = all``).
    window_fill
        ``spectrogram.window_fill``, parsed (:func:`quakeshap.masking.parse_masker`).
    """

    catalog: pd.DataFrame
    skip: pd.Series
    controls: frozenset[int]
    keep_columns: np.ndarray | None
    window_fill: str | float


def prepare_catalog(params: Params, raw: str | Path, time_s: np.ndarray) -> PreparedCatalog:
    """Steps 1 to 5 of the module docstring for the raw data set in ``raw``.

    Parameters
    ----------
    params
        ``task``, ``spectrogram`` and ``split`` are read.
    raw
        The raw data set (:mod:`quakeshap.artifacts.raw`).
    time_s
        ``(n_time,)`` the spectrogram set's column times, s from the trace start.

    Raises
    ------
    ConfigError
        A parameter that leaves nothing to work with (one-line message naming it).
    """
    cfg = params.spectrogram
    window_fill = parse_masker(cfg.window_fill, "spectrogram.window_fill")
    catalog = wf.read_catalog(raw, cfg.stations)
    labels, unknown_class = assign_labels(catalog, params.task)
    catalog["label"] = labels
    skip = wf.row_rejections(catalog)
    skip = skip.where(skip.notna(), unknown_class)
    if params.task.kind == "magnitude":
        magnitude, no_magnitude = magnitude_targets(catalog)
        skip = skip.where(skip.notna(), no_magnitude)
    controls = match_classes(catalog, params.split, skip.isna().to_numpy())
    if controls and len(controls) == int(skip.isna().sum()):
        raise ConfigError(
            f"parameter split.match: no (magnitude, S-P) bin of widths "
            f"{list(params.split.match_bins)} holds traces of both classes; widen split.match_bins"
        )
    if controls:
        _log_matching(catalog, controls)
    kept = np.ones(len(catalog), dtype=bool)
    kept[list(controls)] = False
    if params.task.kind == "ttf":
        times = parse_times(catalog["source_origin_time"])
        catalog["target"] = ttf_targets(times, labels, kept & skip.isna().to_numpy(), params.task)
    elif params.task.kind == "magnitude":
        catalog["target"] = magnitude
    split = np.full(len(catalog), "train", dtype=object)  # dropped rows: never read
    split[kept] = assign_split(
        catalog.loc[kept].reset_index(drop=True), params.split.for_task(params.task.kind)
    )
    catalog["split"] = split
    catalog["associato"] = associato_ids(
        catalog["trace_name"], read_similar_traces(raw, cfg.stations)
    )
    keep_columns = None
    if cfg.window != "all":
        keep_columns = window_columns(catalog, cfg.window, time_s)
        controls.update(_empty_windows(catalog, cfg.window, keep_columns, time_s, skip))
    for row, reason in controls.items():
        skip.iloc[row] = reason
    return PreparedCatalog(catalog, skip, frozenset(controls), keep_columns, window_fill)


def window_columns(catalog: pd.DataFrame, window: str, time_s: np.ndarray) -> np.ndarray:
    """The image columns of ``window`` (:data:`~quakeshap.record.TIME_WINDOWS`) of each row.

    P at :data:`~quakeshap.record.P_ARRIVAL_S`, S at P + ``p_s_diff_sec``; a column belongs
    to the window its time falls in (:func:`quakeshap.record.time_window_masks`).

    Returns
    -------
    ``(n, n_time)`` bool.
    """
    s_times = P_ARRIVAL_S + catalog["p_s_diff_sec"].to_numpy(dtype=np.float64)
    return time_window_masks(time_s, s_times)[:, TIME_WINDOWS.index(window)]


def _empty_windows(
    catalog: pd.DataFrame,
    window: str,
    keep_columns: np.ndarray,
    time_s: np.ndarray,
    skip: pd.Series,
) -> dict[int, str]:
    """Rows not yet left out whose window holds no column; fails when that is every row."""
    candidates = skip.isna().to_numpy()
    empty = candidates & ~keep_columns.any(axis=1)
    s_times = P_ARRIVAL_S + catalog["p_s_diff_sec"].to_numpy(dtype=np.float64)
    first, last = float(time_s[0]), float(time_s[-1])
    if candidates.any() and empty[candidates].all():
        s_range = f"{np.nanmin(s_times[candidates]):.2f}-{np.nanmax(s_times[candidates]):.2f} s"
        raise ConfigError(
            f"parameter spectrogram.window: {window} keeps no image column of any trace (P at "
            f"{P_ARRIVAL_S} s, S at {s_range}, columns at {first:.2f}-{last:.2f} s)"
        )
    if empty.any():
        log.warning(
            "spectrogram.window = %s keeps no column of %d trace(s): left out", window, empty.sum()
        )
    return {
        int(row): EMPTY_WINDOW_REASON.format(window=window, s=s_times[row], first=first, last=last)
        for row in np.flatnonzero(empty)
    }


def _log_matching(catalog: pd.DataFrame, dropped: dict[int, str]) -> None:
    kept = np.ones(len(catalog), dtype=bool)
    kept[list(dropped)] = False
    counts = catalog.loc[kept, "label"].value_counts()
    log.info(
        "split.match: %d of %d listed traces kept (%s), %d dropped",
        kept.sum(),
        len(catalog),
        ", ".join(f"{counts.get(name, 0)} {name}" for name in CLASS_NAMES),
        len(dropped),
    )
