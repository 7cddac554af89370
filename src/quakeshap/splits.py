"""Which traces train and which test, and which traces share a co-located group.

The train/test split (``split``: by trace as the study did, by event, or by time) is
assigned to every listed trace before any is rejected, as the study did
(``docs/method.md`` §2); the co-located groups (``associato``) come from the record's
similar-traces table. The matched-classes control (``split.match``) drops traces before
the split, so that both classes have the same joint histogram of magnitude and S-P time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from quakeshap.artifacts.raw import WaveformError
from quakeshap.config import SplitConfig
from quakeshap.record import CLASS_NAMES, parse_times, similar_traces_path
from quakeshap.unpickle import load_similar_traces

log = logging.getLogger(__name__)

#: the stream of ``split.seed`` the matched-classes control draws from
MATCH_STREAM = 1


def associato_ids(trace_names: pd.Series, similar: pd.DataFrame | None) -> np.ndarray:
    """Co-located group of each trace: ``associato_ev + 1`` if in ``similar``, else 0.

    Returns ``(n,)`` int64 aligned with ``trace_names``.
    """
    if similar is None or similar.empty:
        return np.zeros(len(trace_names), dtype=np.int64)
    lookup = pd.Series(similar["associato_ev"].to_numpy() + 1, index=similar["trace_name"])
    return trace_names.map(lookup).fillna(0).to_numpy(dtype=np.int64)


def reset_singleton_groups(ids: np.ndarray) -> np.ndarray:
    """Set to 0 every group id held by a single trace (``docs/method.md`` §2); 0 stays 0.

    ``(n,)`` int64 in and out.
    """
    ids = np.asarray(ids, dtype=np.int64)
    values, counts = np.unique(ids, return_counts=True)
    singles = values[(counts == 1) & (values != 0)]
    return np.where(np.isin(ids, singles), 0, ids)


def read_similar_traces(raw_root: str | Path, stations: Sequence[str]) -> pd.DataFrame | None:
    """The similar-traces tables of ``stations`` that exist, concatenated (None if none)."""
    tables = []
    for station in stations:
        path = similar_traces_path(raw_root, station)
        if path.exists():
            tables.append(load_similar_traces(path))
        else:
            log.warning("%s not found: no co-located groups for %s (associato = 0)", path, station)
    return pd.concat(tables, ignore_index=True) if tables else None


def assign_split(catalog: pd.DataFrame, cfg: SplitConfig) -> np.ndarray:
    """``"train"`` or ``"test"`` for every catalogue row, ``(n,)`` object array.

    ``by="trace"`` is the study's call, ``sklearn.model_selection.train_test_split(rows,
    test_size=test_fraction, random_state=seed)`` over all listed rows, pre then post. The
    study split before dropping its 4 malformed traces: 5830 rows give 1166 test and 4664
    train, and dropping the 4 leaves its published 4661/1165. So the split is assigned to
    every listed row here too, and rejected rows are dropped afterwards. That call's test
    rows are the first ``ceil(test_fraction * n)`` of
    ``numpy.random.RandomState(seed).permutation(n)``; they are drawn so here, without
    importing scikit-learn (over a second on a small machine), and a test checks them
    against scikit-learn's.

    ``by="event"`` keeps all traces of one ``source_id`` on the same side
    (``GroupShuffleSplit``; ``test_fraction`` is then a fraction of events).
    ``by="event_hash"`` also keeps each event on one side, but decides each event alone:
    it is a test event when the first 8 bytes of SHA-256 of ``"<seed>:<source_id>"``, read
    as a fraction of 2**64, fall below ``test_fraction`` (:func:`event_hash_test`). An
    event's side does not depend on which other traces are listed, so it is the same at
    every station and stays when a station is added (the many-station pipeline,
    ``docs/stations.md``); the test fraction is then met on average, not exactly.
    ``by="time"`` sends the last ``test_fraction`` of the rows by ``trace_start_time`` to
    the test split (unparsable times count as latest).
    """
    if cfg.by == "auto":
        raise ValueError("split.by auto: resolve it for the task first (SplitConfig.for_task)")
    n = len(catalog)
    split = np.full(n, "train", dtype=object)
    if n < 2:
        raise WaveformError(f"cannot split {n} trace(s) into train and test")
    if cfg.by == "trace":
        n_test = math.ceil(cfg.test_fraction * n)
        if n_test >= n:
            raise WaveformError(
                f"split.test_fraction = {cfg.test_fraction} leaves no training trace among {n}"
            )
        test = np.random.RandomState(cfg.seed).permutation(n)[:n_test]
    elif cfg.by == "event":
        from sklearn.model_selection import GroupShuffleSplit

        groups = catalog["source_id"].astype(str).to_numpy()
        if len(np.unique(groups)) < 2:
            raise WaveformError("split.by = event needs at least two distinct source_id values")
        splitter = GroupShuffleSplit(n_splits=1, test_size=cfg.test_fraction, random_state=cfg.seed)
        _, test = next(splitter.split(np.arange(n), groups=groups))
    elif cfg.by == "event_hash":
        test = np.flatnonzero(event_hash_test(catalog["source_id"], cfg.test_fraction, cfg.seed))
        if len(test) in (0, n):
            raise WaveformError(
                f"split.by = event_hash puts {'no' if len(test) == 0 else 'every'} event of "
                f"these {n} traces in the test split (test_fraction {cfg.test_fraction}); "
                "list more events or change split.seed"
            )
    else:  # time
        times = parse_times(catalog["trace_start_time"])
        order = np.argsort(times.to_numpy(dtype="datetime64[ns]"), kind="stable")
        n_test = math.ceil(cfg.test_fraction * n)
        test = order[n - n_test :]
    split[test] = "test"
    return split


def event_hash_test(source_ids: pd.Series, test_fraction: float, seed: int) -> np.ndarray:
    """``(n,)`` bool: the rows whose event is a test event under ``split.by: event_hash``.

    SHA-256 of ``"<seed>:<source_id>"``; its first 8 bytes (big-endian) over 2**64 is the
    event's uniform draw. Decided per event, so the same for every station and every set
    of listed traces.
    """
    ids = source_ids.astype(str)
    unique = ids.unique()
    draws = {
        sid: int.from_bytes(hashlib.sha256(f"{seed}:{sid}".encode()).digest()[:8], "big") / 2**64
        for sid in unique
    }
    return ids.map(draws).to_numpy(dtype=np.float64) < test_fraction


#: why a trace dropped by the matched-classes control is left out (``rejected.csv``)
UNMATCHED_REASON = (
    "unmatched: split.match = {match} keeps {kept} of the {n} '{label}' traces of its "
    "(magnitude, S-P) bin"
)


def match_bins(catalog: pd.DataFrame, widths: Sequence[float]) -> np.ndarray:
    """The (magnitude, S-P time) histogram bin of every row, ``(n, 2)`` int64.

    Bin ``k`` of width ``w`` holds the values ``k·w <= x < (k + 1)·w`` (up to 1e-9 of a
    bin, so that a magnitude of 0.6 in bins of 0.2 falls in bin 3, as it reads). Rows
    without a ``source_magnitude`` or a ``p_s_diff_sec`` get bin -2**62 (no bin).
    """
    values = catalog[["source_magnitude", "p_s_diff_sec"]].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bins = np.floor(values / np.asarray(widths, dtype=np.float64) + 1e-9)
    return np.where(np.isfinite(bins), bins, -(2**62)).astype(np.int64)


def match_classes(catalog: pd.DataFrame, cfg: SplitConfig, eligible: np.ndarray) -> dict[int, str]:
    """The rows the matched-classes control drops, with their reason.

    In every (magnitude, S-P) bin (:func:`match_bins`, widths ``split.match_bins``), the
    larger class is cut at random (seeded by ``split.seed``) to the size of the smaller
    one; rows that cannot be binned are dropped. Afterwards ``pre`` and ``post`` have the
    same joint histogram, so neither magnitude nor distance (S-P time) tells them apart.

    Parameters
    ----------
    catalog
        ``label``, ``source_magnitude`` and ``p_s_diff_sec`` of every row.
    cfg
        ``split``; with ``match = "none"`` nothing is dropped.
    eligible
        ``(n,)`` bool: the rows to match; the others (already rejected) are left alone.

    Returns
    -------
    ``{catalogue position: reason}`` of the dropped rows.
    """
    if cfg.match == "none":
        return {}
    eligible = np.asarray(eligible, dtype=bool)
    bins = match_bins(catalog, cfg.match_bins)
    binned = eligible & (bins != -(2**62)).all(axis=1)
    labels = catalog["label"].to_numpy()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, MATCH_STREAM]))
    dropped: dict[int, str] = {}
    cells, cell_of = np.unique(bins[binned], axis=0, return_inverse=True)
    rows = np.flatnonzero(binned)
    for cell in range(len(cells)):
        members = rows[cell_of.ravel() == cell]
        by_class = [members[labels[members] == name] for name in CLASS_NAMES]
        n_keep = min(len(part) for part in by_class)
        for name, part in zip(CLASS_NAMES, by_class, strict=True):
            chosen = rng.choice(part, size=n_keep, replace=False) if n_keep else part[:0]
            reason = UNMATCHED_REASON.format(match=cfg.match, kept=n_keep, n=len(part), label=name)
            dropped.update(dict.fromkeys(part[~np.isin(part, chosen)].tolist(), reason))
    for row in np.flatnonzero(eligible & ~binned):
        dropped[int(row)] = "unmatched: no source_magnitude or p_s_diff_sec to bin by"
    return dropped
