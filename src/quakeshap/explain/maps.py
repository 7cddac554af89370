"""Aggregates of SHAP maps: pure functions over ``(n, 33, 96, 3)`` arrays and their index.

:func:`align_on_s` cuts the study's S-aligned window, :func:`class_means` and
:func:`weekly_means` average maps, :func:`band_fractions` and :func:`window_fractions`
measure where the ``|SHAP|`` mass lies, and :func:`aggregate` assembles the content of
``data/shap/`` (``docs/method.md`` §5). Nothing here reads or writes a file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quakeshap.artifacts.selection import WEEK_GROUP
from quakeshap.artifacts.shap_set import (
    REGRESSION_OUTPUT,
    WEEKLY_COLUMNS,
    ShapSet,
    class_mean_mask,
    explained_names,
    in_group,
)
from quakeshap.explain.faithfulness import Faithfulness
from quakeshap.record import (
    CLASS_NAMES,
    P_ARRIVAL_S,
    S_WINDOW_BEFORE_S,
    STUDY_IMAGE_DURATION_S,
    TIME_WINDOWS,
    s_window_columns,
    time_window_masks,
)

log = logging.getLogger(__name__)

#: frequency bands (Hz) of the band metrics; the last band includes its upper edge
BANDS_HZ: tuple[tuple[float, float], ...] = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50))
#: the parts of a trace :func:`window_fractions` splits the mass into
WINDOWS = TIME_WINDOWS


def band_key(lo: float, hi: float) -> str:
    """A frequency band's name in metrics and tables: ``(0, 10)`` → ``"0_10hz"``."""
    return f"{lo:g}_{hi:g}hz"


@dataclass(frozen=True)
class ShapMaps:
    """All maps of a run and their index (the ``values`` and ``index`` of ``data/shap/``)."""

    values: np.ndarray  # (n_maps, 33, 96, 3) float32, logits
    index: pd.DataFrame  # shap_set.INDEX_COLUMNS, row i describes values[i]
    seconds: float  # wall time of the explanation (not written to cached outputs)
    #: the maps' faithfulness numbers (row i: map i), None when not computed
    faithfulness: Faithfulness | None = None
    #: the groups of the mean maps (the classes; a regression's magnitude bins)
    groups: tuple[str, ...] = CLASS_NAMES
    #: traces whose maps were read back from ``shap.resume_dir``, not computed in ``seconds``
    n_resumed: int = 0


def align_on_s(
    maps: np.ndarray,
    p_s_diff_sec: np.ndarray | Sequence[float],
    p_arrival_s: float = P_ARRIVAL_S,
    duration_s: float = STUDY_IMAGE_DURATION_S,
) -> np.ndarray:
    """Cut each map to the study's 8 s window with S at 4 s (``docs/method.md`` §5).

    Column ``j`` of the result is column ``start + j`` of the map, with
    ``start = int((S − 4 s) · n / duration_s)``, ``S = p_arrival_s + p_s_diff_sec`` and the
    width ``int(8 s · n / duration_s)`` (59 of 96 columns, as the study computed them).
    Where a window runs past either edge of the image (S later than ~9.7 s or earlier than
    4 s, which the real data never reach), the missing columns are NaN rather than shifted,
    so a column always means the same time relative to S; averages use ``nanmean``.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    p_s_diff_sec
        ``(n,)`` S − P times in s.

    Returns
    -------
    ``(n, n_freq, width, 3)`` float32.
    """
    maps = np.asarray(maps)
    p_s = np.asarray(p_s_diff_sec, dtype=np.float64).reshape(-1)
    if len(p_s) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(p_s)} P–S times")
    n_time = maps.shape[2]
    per_s, width = s_window_columns(n_time, duration_s)
    out = np.full((maps.shape[0], maps.shape[1], width, *maps.shape[3:]), np.nan, np.float32)
    for i, diff in enumerate(p_s):
        if not np.isfinite(diff):
            continue
        start = math.floor((p_arrival_s + diff - S_WINDOW_BEFORE_S) * per_s)
        lo, hi = max(start, 0), min(start + width, n_time)
        if hi > lo:
            out[i, :, lo - start : hi - start] = maps[i, :, lo:hi]
    return out


def n_s_windows_clipped(
    s_times: np.ndarray, n_time: int, duration_s: float = STUDY_IMAGE_DURATION_S
) -> int:
    """How many of the S-aligned windows of :func:`align_on_s` run past an image edge.

    ``s_times`` is ``(n,)``: the S arrival of each map's trace, s from the trace start.
    """
    per_s, width = s_window_columns(n_time, duration_s)
    start = np.floor((s_times - S_WINDOW_BEFORE_S) * per_s)
    return int(((start < 0) | (start + width > n_time)).sum())


def _band_masks(axis: np.ndarray, edges: Sequence[tuple[float, float]]) -> np.ndarray:
    """``(n_bands, len(axis))`` booleans: ``lo <= v < hi``, the last band closed at ``hi``."""
    masks = []
    for k, (lo, hi) in enumerate(edges):
        upper = axis <= hi if k == len(edges) - 1 else axis < hi
        masks.append((axis >= lo) & upper)
    return np.asarray(masks)


def band_fractions(
    maps: np.ndarray,
    frequency_hz: np.ndarray,
    bands: Sequence[tuple[float, float]] = BANDS_HZ,
) -> np.ndarray:
    """Fraction of each map's ``|SHAP|`` mass in each frequency band.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    frequency_hz
        ``(n_freq,)`` row frequencies.
    bands
        ``(lo, hi)`` in Hz; a row belongs to a band when ``lo <= f < hi`` (the last band
        also takes ``f == hi``, so 0–50 Hz covers every row).

    Returns
    -------
    ``(n, n_bands)``; rows sum to 1 when the bands cover every frequency (NaN for an
    all-zero map).
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=(2, 3))  # (n, n_freq)
    masks = _band_masks(np.asarray(frequency_hz, dtype=np.float64), bands)
    per_band = mass @ masks.T.astype(np.float64)
    total = mass.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_band / total


def band_share(
    frequency_hz: np.ndarray, bands: Sequence[tuple[float, float]] = BANDS_HZ
) -> np.ndarray:
    """Each band's share of the image rows: the fraction a uniform map would give."""
    masks = _band_masks(np.asarray(frequency_hz, dtype=np.float64), bands)
    return masks.sum(axis=1) / len(frequency_hz)


def window_fractions(
    maps: np.ndarray,
    time_s: np.ndarray,
    s_times: np.ndarray | Sequence[float],
    p_times: np.ndarray | Sequence[float] | float = P_ARRIVAL_S,
) -> np.ndarray:
    """Fraction of each map's ``|SHAP|`` mass before P, between P and S, and after S.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    time_s
        ``(n_time,)`` column times (window centres, s from the trace start).
    s_times
        ``(n,)`` S arrival of each trace, s from the trace start.
    p_times
        P arrival(s), s; default 5 s for every trace.

    Returns
    -------
    ``(n, 3)``: ``t < P``, ``P <= t < S``, ``t >= S`` (:data:`WINDOWS`); rows sum to 1.
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=(1, 3))  # (n, n_time)
    masks = time_window_masks(time_s, s_times, p_times)  # (n, 3, n_time)
    parts = np.stack([(mass * masks[:, w]).sum(axis=1) for w in range(len(WINDOWS))], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return parts / parts.sum(axis=1, keepdims=True)


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        yield


def class_means(
    maps: np.ndarray, index: pd.DataFrame, groups: tuple[str, ...] = CLASS_NAMES
) -> np.ndarray:
    """Per-class mean of the maps :func:`~quakeshap.artifacts.shap_set.class_mean_mask` admits.

    ``maps`` may be the full maps or their S-aligned cuts; NaN columns (S windows past the
    image) are ignored. A class without maps gets an all-NaN mean.

    Returns
    -------
    ``(len(groups), *maps.shape[1:])`` float32.
    """
    out = np.full((len(groups), *maps.shape[1:]), np.nan, dtype=np.float32)
    for c in range(len(groups)):
        chosen = maps[class_mean_mask(index, c, groups)]
        if len(chosen):
            with np.errstate(invalid="ignore"), _quiet_nanmean():
                out[c] = np.nanmean(chosen.astype(np.float64), axis=0)
        else:
            log.warning(
                "no correctly classified %s trace explained: its mean map is NaN", groups[c]
            )
    return out


def weekly_means(maps: np.ndarray, index: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Mean map per ISO week over the ``week`` group, each trace's predicted-class map.

    Returns
    -------
    ``(n_weeks, *maps.shape[1:])`` float32 and a table of
    :data:`~quakeshap.artifacts.shap_set.WEEKLY_COLUMNS` (``week, n_maps``, weeks ascending).
    """
    explained = explained_names(index)
    chosen = in_group(index, WEEK_GROUP) & (
        (explained == index["predicted"].astype(str).to_numpy()) | (explained == REGRESSION_OUTPUT)
    )
    weeks = np.sort(index.loc[chosen, "week"].unique())
    means = np.zeros((len(weeks), *maps.shape[1:]), dtype=np.float32)
    counts = []
    for k, week in enumerate(weeks):
        rows = chosen & (index["week"].to_numpy() == week)
        means[k] = maps[rows].astype(np.float64).mean(axis=0)
        counts.append(int(rows.sum()))
    table = pd.DataFrame(dict(zip(WEEKLY_COLUMNS, (weeks.astype(int), counts), strict=True)))
    return means, table


def aggregate(
    shap_maps: ShapMaps,
    duration_s: float = STUDY_IMAGE_DURATION_S,
    p_arrival_s: float = P_ARRIVAL_S,
) -> ShapSet:
    """The maps with their per-class means aligned on P and on S, and their weekly means
    (``docs/method.md`` §5): the content of ``data/shap/``."""
    values, index = shap_maps.values, shap_maps.index
    p_s = index["p_s_diff_sec"].to_numpy(dtype=np.float64)
    aligned = align_on_s(values, p_s, p_arrival_s, duration_s)
    weekly_mean, weekly = weekly_means(values, index)
    return ShapSet(
        values=values,
        index=index,
        mean_p_aligned=class_means(values, index, shap_maps.groups),
        mean_s_aligned=class_means(aligned, index, shap_maps.groups),
        weekly_mean=weekly_mean,
        weekly=weekly,
        groups=shap_maps.groups,
    )
