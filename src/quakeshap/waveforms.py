"""The record's waveforms as the ``spectrograms`` stage reads them: the catalogue, the
traces chunk by chunk, the rejections and the metadata of the traces kept.

The raw layout (:mod:`quakeshap.artifacts.raw`) holds, per station, two HDF5 files of
traces and two attribute tables. This module turns them into a *catalogue*: one row per
trace listed in an attribute table (pre rows first, then post, each in file order,
station after station), with the columns the later stages need (``label``, ``week``, ...).
Traces whose waveform cannot be used are not errors but *rejections* with a reason;
structural problems (a missing or unreadable file, a missing column, duplicate names, an
unknown station) are :class:`~quakeshap.artifacts.raw.WaveformError`\\ s that say what
to do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts.metrics import REJECTED_COLUMNS
from quakeshap.artifacts.raw import (
    ATTRIBUTE_COLUMNS,
    WaveformError,
    check_stations,
    open_hdf5,
    read_attributes,
)
from quakeshap.config import PreprocessConfig
from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    P_ARRIVAL_S,
    attributes_path,
    hdf5_path,
    iso_week,
    parse_times,
)
from quakeshap.splits import reset_singleton_groups

log = logging.getLogger(__name__)


class TooManyRejectedError(WaveformError):
    """More traces were rejected than ``spectrogram.max_rejected_fraction`` allows."""


def read_catalog(raw_root: str | Path, stations: Sequence[str]) -> pd.DataFrame:
    """All traces listed for ``stations``: pre rows, then post, in file order, per station.

    Returns the 17 attribute columns plus ``label`` (``pre``/``post``), ``station_code``,
    ``hdf5_file`` (path of the trace's HDF5 file relative to ``raw_root``) and ``week`` (ISO
    week of ``trace_start_time``; -1 where the time cannot be parsed, such rows are rejected
    by :func:`row_rejections`). The index is 0..n-1.
    """
    raw_root = Path(raw_root)
    check_stations(raw_root, stations)
    parts = []
    for station in stations:
        for label in CLASS_NAMES:
            table = read_attributes(attributes_path(raw_root, station, label))
            table["label"] = label
            table["station_code"] = station
            table["hdf5_file"] = (
                hdf5_path(raw_root, station, label).relative_to(raw_root).as_posix()
            )
            parts.append(table)
    catalog = pd.concat(parts, ignore_index=True)
    duplicated = catalog["trace_name"].duplicated(keep=False)
    if duplicated.any():
        dups = catalog.loc[duplicated]
        names = list(dict.fromkeys(dups["trace_name"]))
        files = sorted(
            {
                str(attributes_path(raw_root, station, label))
                for station, label in zip(dups["station_code"], dups["label"], strict=True)
            }
        )
        raise WaveformError(
            f"{len(names)} duplicate trace name(s) in {files}, e.g. {names[:5]}: every trace must "
            "be listed once; remove the repeated rows or re-download the record"
        )
    catalog["week"] = iso_week(catalog["trace_start_time"])
    return catalog


def row_rejections(catalog: pd.DataFrame) -> pd.Series:
    """Reason to reject each catalogue row from its attributes alone; ``None`` = fine.

    A trace needs a parseable ``trace_start_time`` (its week) and a ``p_s_diff_sec`` (its S
    arrival, used by the S-aligned SHAP maps).
    """
    reasons = pd.Series([None] * len(catalog), index=catalog.index, dtype=object)
    bad_time = parse_times(catalog["trace_start_time"]).isna()
    reasons[bad_time] = [
        f"bad trace_start_time: {v!r} is not a timestamp"
        for v in catalog.loc[bad_time, "trace_start_time"]
    ]
    no_ps = catalog["p_s_diff_sec"].isna() & reasons.isna()
    reasons[no_ps] = "missing p_s_diff_sec: the S arrival is unknown"
    return reasons


# --------------------------------------------------------------------------------------
# waveforms
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveformChunk:
    """Waveforms of consecutive catalogue rows, as read from the HDF5 files.

    Attributes
    ----------
    rows
        Catalogue positions of the usable traces, ``(k,)`` int64, ascending.
    data
        Their first ``n_samples`` samples, ``(k, 3, n_samples)`` float64, channels E, N, Z.
    rejected
        ``{catalogue position: reason}`` for the rows of the chunk that cannot be used.
    """

    rows: np.ndarray
    data: np.ndarray
    rejected: dict[int, str]


def trace_problem(shape: tuple[int, ...], n_samples: int) -> str | None:
    """Why a dataset of this shape cannot be used (``None`` if it can)."""
    if len(shape) != 2:
        return f"bad shape: {shape}, expected (3 channels E, N, Z, samples)"
    if shape[0] < len(CHANNELS):
        return f"fewer than 3 channels: shape {shape}"
    if shape[0] > len(CHANNELS):
        return f"more than 3 channels: shape {shape}, expected E, N, Z"
    if shape[1] < n_samples:
        return f"too few samples: {shape[1]} < {n_samples} (spectrogram.n_samples)"
    return None


def iter_waveforms(
    catalog: pd.DataFrame,
    raw_root: str | Path,
    n_samples: int,
    chunk_size: int,
    skip: pd.Series | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[WaveformChunk]:
    """Read the catalogue's waveforms ``chunk_size`` rows at a time, validating each trace.

    Memory is bounded by the chunk, not the data set. A trace is rejected (not read into
    the chunk) when it is absent from its HDF5 file, is not a (3, >= ``n_samples``) array,
    holds NaN or inf anywhere, or cannot be read. Each usable trace is passed whole through
    ``transform`` (e.g. :func:`preprocess_waveforms`), then cut to its first ``n_samples``
    samples, so the result does not depend on the chunk size.

    Parameters
    ----------
    catalog
        From :func:`read_catalog`.
    raw_root
        The folder ``hdf5_file`` is relative to.
    n_samples
        Samples each trace needs at least.
    chunk_size
        Catalogue rows per chunk.
    skip
        Rows already rejected (a reason, or ``None``): not read, reported with that reason.
    transform
        Applied to each whole ``(3, n_total)`` float64 trace before the cut; None = none.
    """
    names = catalog["trace_name"].to_numpy()
    files = catalog["hdf5_file"].to_numpy()
    reasons = None if skip is None else skip.to_numpy()
    with WaveformReader(raw_root, files) as reader:
        for start in range(0, len(catalog), chunk_size):
            stop = min(start + chunk_size, len(catalog))
            yield reader.read_chunk(
                start,
                names[start:stop],
                files[start:stop],
                n_samples,
                None if reasons is None else reasons[start:stop],
                transform,
            )


class WaveformReader:
    """The HDF5 files of a raw layout, read trace by trace into chunks.

    A context manager: every file is opened and checked on entry, then each is opened for
    reading when its first row is read and closed as soon as its last row has been (every
    row of ``files`` counts once), so that one file at a time holds the memory HDF5 keeps
    per open file while reading it (about 15 MB for a file of 5,000 traces, not returned
    while the file is open): peak memory does not grow with the number of stations.
    Datasets are read with h5py's low-level API, converted to float64 by HDF5 (exact for
    the record's float and integer types): h5py's high-level objects cost several times
    more per dataset than the read itself. Anything unusual (absent, a group, a type HDF5
    cannot convert) goes through the high-level path, which names the problem. Chunks may
    be read from several threads at once (h5py serialises the HDF5 calls).

    Parameters
    ----------
    raw_root
        The folder the ``files`` are relative to.
    files
        HDF5 files (relative paths, repeats allowed) the chunks will read from.
    """

    def __init__(self, raw_root: str | Path, files: Iterable[str]) -> None:
        files = list(files)
        self._paths = {name: Path(raw_root) / name for name in dict.fromkeys(files)}
        self._rows_left = Counter(files)
        self._handles: dict[str, contextlib.ExitStack] = {}
        self._files: dict[str, h5py.File] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> WaveformReader:
        for path in self._paths.values():  # every file there and readable, before any work
            with open_hdf5(path):
                pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            for name in list(self._handles):
                self._close(name)

    def _file(self, name: str) -> h5py.File:
        with self._lock:
            if name not in self._files:
                stack = contextlib.ExitStack()
                self._files[name] = stack.enter_context(open_hdf5(self._paths[name]))
                self._handles[name] = stack
            return self._files[name]

    def _close(self, name: str) -> None:
        self._files.pop(name, None)
        stack = self._handles.pop(name, None)
        if stack is not None:
            stack.close()

    def _done(self, name: str) -> None:
        """One row of ``name`` read (or rejected): the file closes after its last row."""
        with self._lock:
            self._rows_left[name] -= 1
            if self._rows_left[name] <= 0:
                self._close(name)

    def read_chunk(
        self,
        start: int,
        names: Sequence[str],
        files: Sequence[str],
        n_samples: int,
        skip: Sequence[str | None] | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        out: np.ndarray | None = None,
    ) -> WaveformChunk:
        """Catalogue rows ``start, start + 1, ...`` (one per name) as a :class:`WaveformChunk`.

        ``names[i]`` is read from ``files[i]``; ``skip[i]``, when not None, rejects row
        ``start + i`` with that reason unread. ``transform`` as in :func:`iter_waveforms`.
        ``out``: a ``(>= len(names), 3, n_samples)`` float64 array to hold the chunk's
        ``data`` (reused from chunk to chunk by a caller that is done with the previous
        one); None = a new array.
        """
        shape = (len(names), len(CHANNELS), n_samples)
        if out is None:
            data = np.empty(shape, dtype=np.float64)
        elif out.dtype != np.float64 or out.shape[0] < shape[0] or out.shape[1:] != shape[1:]:
            raise ValueError(f"out {out.shape} {out.dtype} cannot hold a chunk of {shape}")
        else:
            data = out
        rows: list[int] = []
        rejected: dict[int, str] = {}
        for i, (name, file) in enumerate(zip(names, files, strict=True)):
            if skip is not None and skip[i] is not None:
                rejected[start + i] = skip[i]
                self._done(file)
                continue
            try:
                array, reason = self.read_trace(file, name, n_samples)
            finally:
                self._done(file)
            if reason is not None:
                rejected[start + i] = reason
                continue
            if transform is not None:
                array = transform(array)
            data[len(rows)] = array[:, :n_samples]
            rows.append(start + i)
        return WaveformChunk(np.asarray(rows, dtype=np.int64), data[: len(rows)], rejected)

    def read_trace(self, file: str, name: str, n_samples: int) -> tuple[np.ndarray, str | None]:
        """One dataset as ``(3, n_total)`` float64, or the reason it cannot be used."""
        handle = self._file(file)
        try:
            dataset = h5py.h5d.open(handle.id, name.encode())
        except (KeyError, ValueError, OSError):  # absent or not a dataset: say which
            return _read_trace(handle, name, n_samples)
        shape = dataset.shape
        problem = trace_problem(shape, n_samples)
        if problem is not None:
            return np.empty((0, 0)), problem
        buffer = np.empty(shape, dtype=np.float64)
        try:
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, buffer, h5py.h5t.NATIVE_DOUBLE)
        except (OSError, ValueError, TypeError):  # a type HDF5 cannot convert: say why
            return _read_trace(handle, name, n_samples)
        return buffer, _non_finite(buffer)


def _read_trace(handle: h5py.File, name: str, n_samples: int) -> tuple[np.ndarray, str | None]:
    """One root dataset as (3, T) float64, or the reason it cannot be used (h5py high level)."""
    empty = np.empty((0, 0))
    node = handle.get(name)
    if node is None:
        file_name = Path(handle.filename).name
        return empty, f"absent from HDF5: listed in the attribute table but not in {file_name}"
    if not isinstance(node, h5py.Dataset):
        file_name = Path(handle.filename).name
        return empty, f"not a dataset: {name} in {file_name} is an HDF5 group"
    problem = trace_problem(node.shape, n_samples)
    if problem is not None:
        return empty, problem
    try:
        array = np.asarray(node[()], dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        return empty, f"unreadable: {exc}"
    return array, _non_finite(array)


def _non_finite(array: np.ndarray) -> str | None:
    """The rejection reason of a trace holding NaN or inf; None if every sample is finite."""
    finite = np.isfinite(array)
    if finite.all():
        return None
    nan = int(np.isnan(array).sum())
    inf = int((~finite).sum()) - nan
    return f"non-finite samples: {nan} NaN, {inf} inf"


# --------------------------------------------------------------------------------------
# rejections and the metadata of the traces kept
# --------------------------------------------------------------------------------------


def rejection_table(catalog: pd.DataFrame, rejected: dict[int, str]) -> pd.DataFrame:
    """``rejected.csv``: one row per rejected catalogue position, in catalogue order.

    ``file`` is the trace's HDF5 file relative to the raw root; ``reason`` reads
    ``"<kind>: <detail>"``, e.g. ``"fewer than 3 channels: shape (2, 2500)"``.
    """
    positions = sorted(rejected)
    return pd.DataFrame(
        {
            "trace_name": catalog["trace_name"].to_numpy()[positions],
            "file": catalog["hdf5_file"].to_numpy()[positions],
            "reason": [rejected[p] for p in positions],
        },
        columns=list(REJECTED_COLUMNS),
    )


def rejection_kinds(rejections: pd.DataFrame) -> Counter[str]:
    """How many rejections of each kind (the reason up to its first colon)."""
    return Counter(reason.split(":")[0] for reason in rejections["reason"])


def check_rejections(
    rejections: pd.DataFrame, n_listed: int, max_fraction: float, raw_root: str | Path
) -> None:
    """Fail when every trace, or more than ``max_fraction`` of them, was rejected."""
    fraction = len(rejections) / n_listed
    if len(rejections) < n_listed and fraction <= max_fraction:
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in rejection_kinds(rejections).most_common())
    examples = ", ".join(f"{r.trace_name} ({r.reason})" for r in rejections.head(3).itertuples())
    raise TooManyRejectedError(
        f"{len(rejections)} of {n_listed} traces under {raw_root} rejected ({fraction:.1%}, "
        f"spectrogram.max_rejected_fraction = {max_fraction:.1%}): {kinds}; e.g. {examples}. "
        "Fix or re-download the raw data, or raise the limit"
    )


def metadata_table(rows: pd.DataFrame, sampling_rate_hz: float) -> pd.DataFrame:
    """The spectrogram set's metadata (:mod:`quakeshap.artifacts.spectrograms`) for the
    catalogue rows kept.

    The study's 17 attributes as read, then ``label``, ``split``, ``filename`` (the
    study's PNG name, ``<trace_name>.png``), ``associato`` (singleton groups among the
    kept traces reset to 0), ``week``, and SeisBench-style ``station_code``,
    ``trace_p_arrival_sample``, ``trace_s_arrival_sample``, ``trace_p_arrival_s`` (5.0)
    and ``trace_s_arrival_s`` (5.0 + ``p_s_diff_sec``); then ``target`` when the rows have
    one (``task.kind`` ttf or magnitude, :mod:`quakeshap.task`). Index 0..n-1.
    """
    s_arrival_s = P_ARRIVAL_S + rows["p_s_diff_sec"].to_numpy(dtype=np.float64)
    # no .copy(): with pandas' copy-on-write the new columns never reach ``rows``, and the
    # attribute columns are not duplicated in memory (a large catalogue's main cost)
    table = rows.loc[:, list(ATTRIBUTE_COLUMNS)]
    table["label"] = rows["label"]
    table["split"] = rows["split"]
    table["filename"] = rows["trace_name"] + ".png"
    table["associato"] = reset_singleton_groups(rows["associato"].to_numpy())
    table["week"] = rows["week"]
    table["station_code"] = rows["station_code"]
    table["trace_p_arrival_sample"] = round(P_ARRIVAL_S * sampling_rate_hz)
    table["trace_s_arrival_sample"] = np.round(s_arrival_s * sampling_rate_hz).astype(np.int64)
    table["trace_p_arrival_s"] = P_ARRIVAL_S
    table["trace_s_arrival_s"] = s_arrival_s
    if "target" in rows.columns:  # task.kind ttf or magnitude: the class or the value
        table["target"] = rows["target"]
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------
# optional preprocessing (ObsPy)
# --------------------------------------------------------------------------------------


def preprocess_waveforms(
    waveforms: np.ndarray, sampling_rate_hz: float, cfg: PreprocessConfig
) -> np.ndarray:
    """Apply the optional ObsPy preprocessing to every channel of every trace.

    In order: remove the mean, remove a linear trend, Hann taper of ``taper_fraction`` at
    each end, Butterworth high-, low- or band-pass (``filter_corners``, ``zerophase``),
    each step only if enabled. The stage runs it on whole traces (25 s in the record)
    before keeping the first ``n_samples``, as seismologists filter before windowing.

    Parameters
    ----------
    waveforms
        ``(..., n_samples)``, e.g. ``(3, n_samples)`` or ``(n, 3, n_samples)``, in counts.
    sampling_rate_hz
        Sampling rate of the traces.
    cfg
        Which steps to run; with all of them off the input is returned as it is (the same
        object, bit for bit).

    Returns
    -------
    numpy.ndarray
        Same shape, float64.
    """
    if not cfg.active:
        return waveforms
    from obspy import Trace  # imported on use: ObsPy is slow to import

    out = np.empty(waveforms.shape, dtype=np.float64)
    for index in np.ndindex(*waveforms.shape[:-1]):
        trace = Trace(
            data=np.array(waveforms[index], dtype=np.float64),
            header={"sampling_rate": sampling_rate_hz},
        )
        if cfg.demean:
            trace.detrend("demean")
        if cfg.detrend:
            trace.detrend("linear")
        if cfg.taper_fraction > 0:
            trace.taper(max_percentage=cfg.taper_fraction, type="hann")
        options = {"corners": cfg.filter_corners, "zerophase": cfg.zerophase}
        if cfg.highpass_hz is not None and cfg.lowpass_hz is not None:
            trace.filter("bandpass", freqmin=cfg.highpass_hz, freqmax=cfg.lowpass_hz, **options)
        elif cfg.highpass_hz is not None:
            trace.filter("highpass", freq=cfg.highpass_hz, **options)
        elif cfg.lowpass_hz is not None:
            trace.filter("lowpass", freq=cfg.lowpass_hz, **options)
        out[index] = trace.data
    return out
