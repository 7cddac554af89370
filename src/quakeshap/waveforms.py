"""Read and validate the raw layout: attribute tables, HDF5 waveforms, similar-traces table.

The Zenodo record (and the demo data, written in the same layout) holds, per station::

    data/raw/dset/data/catalogs/<STA>/<STA>_pre.hdf5            one root dataset per trace,
    data/raw/dset/data/catalogs/<STA>/<STA>_post.hdf5           (3, 2500) float, E, N, Z
    data/raw/dset/data/catalogs/<STA>/<STA>_pre_attributes.csv  the study's 17 columns
    data/raw/dset/data/catalogs/<STA>/<STA>_post_attributes.csv
    data/raw/dset/dataframe_<STA>_SelectedSimilarTraces.csv     a pandas *pickle*

This module turns that into a *catalogue*: one row per trace listed in an attribute table
(pre rows first, then post, each in file order, station after station), with the columns
the later stages need (``label``, ``week``, ``split``, ``associato``, ...). Traces whose
waveform cannot be used are not errors but *rejections* with a reason; structural problems
(a missing or unreadable file, a missing column, duplicate names, an unknown station) are
:class:`WaveformError`\\ s that say what to do.

The similar-traces table is a pickle downloaded from the internet. It is read by
:func:`load_similar_traces` with an unpickler that can build nothing but the few pandas and
numpy objects a DataFrame of numbers and strings is made of, so a crafted file cannot run
code.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import math
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from quakeshap.config import PreprocessConfig, SplitConfig
from quakeshap.dataset import ATTRIBUTE_COLUMNS, CLASS_NAMES

log = logging.getLogger(__name__)

#: folder of the per-station catalogues, relative to the raw root (``data/raw``)
CATALOG_DIR = Path("dset", "data", "catalogs")
#: where the record puts its similar-traces tables, relative to the raw root
SIMILAR_DIR = Path("dset")
#: channel order of every HDF5 dataset (R, G, B of the images)
CHANNELS: tuple[str, str, str] = ("E", "N", "Z")
#: the record cuts every trace so that the P arrival sits at 5.0 s from its start
P_ARRIVAL_S = 5.0
#: HDF5 metadata cache per open file while reading waveforms
METADATA_CACHE_BYTES = 1 << 20


class WaveformError(ValueError):
    """The raw data cannot be used as they are (missing file, bad table, unknown station)."""


class TooManyRejectedError(WaveformError):
    """More traces were rejected than ``spectrogram.max_rejected_fraction`` allows."""


# --------------------------------------------------------------------------------------
# file layout
# --------------------------------------------------------------------------------------


def hdf5_path(raw_root: str | Path, station: str, label: str) -> Path:
    """``<raw_root>/dset/data/catalogs/<STA>/<STA>_<label>.hdf5``."""
    return Path(raw_root) / CATALOG_DIR / station / f"{station}_{label}.hdf5"


def attributes_path(raw_root: str | Path, station: str, label: str) -> Path:
    """``<raw_root>/dset/data/catalogs/<STA>/<STA>_<label>_attributes.csv``."""
    return Path(raw_root) / CATALOG_DIR / station / f"{station}_{label}_attributes.csv"


def similar_traces_path(raw_root: str | Path, station: str) -> Path:
    """``<raw_root>/dset/dataframe_<STA>_SelectedSimilarTraces.csv`` (a pickle, not a CSV)."""
    return Path(raw_root) / SIMILAR_DIR / f"dataframe_{station}_SelectedSimilarTraces.csv"


def list_stations(raw_root: str | Path) -> list[str]:
    """Stations present under ``<raw_root>/dset/data/catalogs/``, sorted."""
    folder = Path(raw_root) / CATALOG_DIR
    if not folder.is_dir():
        raise WaveformError(
            f"{folder} does not exist: the raw data are missing or not in the Zenodo layout; "
            "run `dvc repro download` first"
        )
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def check_stations(raw_root: str | Path, stations: Sequence[str]) -> None:
    """Fail with the list of stations present when one of ``stations`` is not there."""
    present = list_stations(raw_root)
    unknown = [s for s in stations if s not in present]
    if unknown:
        raise WaveformError(
            f"unknown station(s) {unknown} in parameter spectrogram.stations: "
            f"{Path(raw_root) / CATALOG_DIR} holds {present or 'no station folder'}"
        )


# --------------------------------------------------------------------------------------
# attribute tables
# --------------------------------------------------------------------------------------


def read_attributes(path: str | Path) -> pd.DataFrame:
    """Read one ``<STA>_<label>_attributes.csv`` and check it has the study's columns.

    Returns the 17 attribute columns in the study's order (other columns are ignored),
    ``trace_name`` and ``source_id`` as text, the rest as pandas infers them; times stay
    text exactly as written.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"trace_name": str, "source_id": str})
    except FileNotFoundError:
        raise WaveformError(
            f"{path}: attribute table missing; run `dvc repro download` "
            "(or check parameter spectrogram.stations)"
        ) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise WaveformError(
            f"{path}: not a readable CSV attribute table ({exc}); "
            "the file is damaged: delete data/raw and run `dvc repro download` again"
        ) from None
    missing = [c for c in ATTRIBUTE_COLUMNS if c not in table.columns]
    if missing:
        raise WaveformError(
            f"{path}: missing column(s) {missing}; an attribute table needs the study's "
            f"17 columns {list(ATTRIBUTE_COLUMNS)}"
        )
    extra = [c for c in table.columns if c not in ATTRIBUTE_COLUMNS]
    if extra:
        log.info("%s: ignoring column(s) %s", path, extra)
    table = table.loc[:, list(ATTRIBUTE_COLUMNS)]
    if table.empty:
        raise WaveformError(f"{path}: lists no trace; a data set needs traces of both classes")
    unnamed = np.flatnonzero(table["trace_name"].isna().to_numpy())
    if len(unnamed):
        raise WaveformError(
            f"{path}: empty trace_name on line(s) {[int(i) + 2 for i in unnamed[:5]]}"
        )
    non_numeric = (
        table["p_s_diff_sec"].notna() & pd.to_numeric(table["p_s_diff_sec"], errors="coerce").isna()
    )
    if non_numeric.any():
        first = table.loc[non_numeric, "trace_name"].iloc[0]
        raise WaveformError(
            f"{path}: column p_s_diff_sec is not numeric (e.g. trace {first}: "
            f"{table.loc[non_numeric, 'p_s_diff_sec'].iloc[0]!r})"
        )
    table["p_s_diff_sec"] = pd.to_numeric(table["p_s_diff_sec"])
    return table


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


def parse_times(values: pd.Series) -> pd.Series:
    """Timestamps such as ``2016-10-31 00:15:23.830000+00:00`` as UTC; NaT where unparsable."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


def iso_week(values: pd.Series) -> np.ndarray:
    """ISO week number of each timestamp, ``(n,)`` int64; -1 where the time is unparsable."""
    times = parse_times(values)
    weeks = times.dt.isocalendar().week
    return weeks.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)


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
    """The open HDF5 files of a raw layout, read trace by trace into chunks.

    A context manager: every file is opened (and checked) on entry, closed on exit.
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
        self._paths = {name: Path(raw_root) / name for name in dict.fromkeys(files)}
        self._stack = contextlib.ExitStack()
        self._handles: dict[str, h5py.File] = {}

    def __enter__(self) -> WaveformReader:
        with self._stack as stack:
            for name, path in self._paths.items():
                self._handles[name] = stack.enter_context(_open_hdf5(path))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handles.clear()
        self._stack.close()

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
                continue
            array, reason = self.read_trace(file, name, n_samples)
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
        handle = self._handles[file]
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


@contextlib.contextmanager
def _open_hdf5(path: Path) -> Iterator[h5py.File]:
    if not path.is_file():
        raise WaveformError(
            f"{path}: HDF5 waveform file missing; run `dvc repro download` "
            "(or check parameter spectrogram.stations)"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WaveformError(
            f"{path}: not a readable HDF5 file ({exc}); the file is damaged: "
            "delete data/raw and run `dvc repro download` again"
        ) from None
    with handle:
        # every trace's object header passes through HDF5's metadata cache once and is not
        # needed again; the default cache holds ~20 MB of them after a few thousand traces
        cache = handle.id.get_mdc_config()
        cache.set_initial_size = True
        cache.initial_size = cache.min_size = cache.max_size = METADATA_CACHE_BYTES
        handle.id.set_mdc_config(cache)
        yield handle


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

#: columns of ``reports/data/rejected.csv``
REJECTED_COLUMNS: tuple[str, str, str] = ("trace_name", "file", "reason")


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
    """``metadata.csv`` (format: :mod:`quakeshap.dataset`) for the catalogue rows kept.

    The study's 17 attributes as read, then ``label``, ``split``, ``filename`` (the
    study's PNG name, ``<trace_name>.png``), ``associato`` (singleton groups among the
    kept traces reset to 0), ``week``, and SeisBench-style ``station_code``,
    ``trace_p_arrival_sample``, ``trace_s_arrival_sample``, ``trace_p_arrival_s`` (5.0)
    and ``trace_s_arrival_s`` (5.0 + ``p_s_diff_sec``). Index 0..n-1.
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


# --------------------------------------------------------------------------------------
# co-located groups (the similar-traces pickle)
# --------------------------------------------------------------------------------------

#: The globals a pickled DataFrame of plain values refers to (pandas 3, numpy 2, any
#: protocol): containers, numbers, text, times, categories, nullable numbers. Each is a
#: data constructor; none can reach the file system, a shell or ``eval``.
_PICKLE_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [
        ("pandas", "DataFrame"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas", "StringDtype"),
        ("pandas.arrays", "StringArray"),
        ("pandas.arrays", "DatetimeArray"),
        ("pandas.arrays", "TimedeltaArray"),
        ("pandas", "DatetimeTZDtype"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
        ("pandas", "Categorical"),
        ("pandas", "CategoricalDtype"),
        ("pandas.arrays", "IntegerArray"),
        ("pandas.arrays", "FloatingArray"),
        ("pandas.arrays", "BooleanArray"),
        ("pandas", "Int64Dtype"),
        ("pandas", "Int32Dtype"),
        ("pandas", "Float64Dtype"),
        ("pandas", "BooleanDtype"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("builtins", "slice"),
        ("_codecs", "encode"),
    ]
)

#: where pandas 1-2 and numpy 1 kept the same objects (older pickles name these)
_PICKLE_RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.frame", "DataFrame"): ("pandas", "DataFrame"),
    ("pandas.core.indexes.base", "Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas", "Index"),
    ("pandas.core.indexes.range", "RangeIndex"): ("pandas", "RangeIndex"),
    ("pandas.core.arrays.string_", "StringDtype"): ("pandas", "StringDtype"),
    ("pandas.core.arrays.string_", "StringArray"): ("pandas.arrays", "StringArray"),
    ("pandas.core.arrays.datetimes", "DatetimeArray"): ("pandas.arrays", "DatetimeArray"),
    ("pandas.core.arrays.timedeltas", "TimedeltaArray"): ("pandas.arrays", "TimedeltaArray"),
    ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"): ("pandas", "DatetimeTZDtype"),
    ("pandas.core.arrays.categorical", "Categorical"): ("pandas", "Categorical"),
    ("pandas.core.dtypes.dtypes", "CategoricalDtype"): ("pandas", "CategoricalDtype"),
    ("pandas.core.arrays.integer", "IntegerArray"): ("pandas.arrays", "IntegerArray"),
    ("pandas.core.arrays.integer", "Int64Dtype"): ("pandas", "Int64Dtype"),
    ("pandas.core.arrays.integer", "Int32Dtype"): ("pandas", "Int32Dtype"),
    ("pandas.core.arrays.floating", "FloatingArray"): ("pandas.arrays", "FloatingArray"),
    ("pandas.core.arrays.floating", "Float64Dtype"): ("pandas", "Float64Dtype"),
    ("pandas.core.arrays.boolean", "BooleanArray"): ("pandas.arrays", "BooleanArray"),
    ("pandas.core.arrays.boolean", "BooleanDtype"): ("pandas", "BooleanDtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("__builtin__", "slice"): ("builtins", "slice"),
}


class _Refused(pickle.UnpicklingError):
    """The pickle asks for an object outside :data:`_PICKLE_ALLOWED`."""


class _DataFrameUnpickler(pickle.Unpickler):
    """An unpickler that can only build a pandas DataFrame of plain values."""

    def find_class(self, module: str, name: str) -> Any:
        target = _PICKLE_RENAMED.get((module, name), (module, name))
        if target not in _PICKLE_ALLOWED:
            raise _Refused(f"refusing to load {module}.{name}: not part of a DataFrame of values")
        return getattr(importlib.import_module(target[0]), target[1])


def load_similar_traces(path: str | Path) -> pd.DataFrame:
    """Read the record's similar-traces table (a pandas pickle) without running its code.

    Returns
    -------
    pandas.DataFrame
        Columns ``trace_name`` (text) and ``associato_ev`` (int64), one row per trace.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WaveformError(f"{path}: cannot read the similar-traces table ({exc})") from None
    try:
        table = _DataFrameUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise WaveformError(
            f"{path}: refused to load the similar-traces pickle ({exc}); the file is not the "
            "record's table: delete data/raw and run `dvc repro download` again"
        ) from None
    except Exception as exc:  # any other failure means a damaged or foreign file
        raise WaveformError(
            f"{path}: not a readable pandas pickle ({type(exc).__name__}: {exc}); "
            "delete data/raw and run `dvc repro download` again"
        ) from None
    if not isinstance(table, pd.DataFrame):
        raise WaveformError(f"{path}: holds a {type(table).__name__}, expected a DataFrame")
    if "trace_name" not in table.columns and table.index.name == "trace_name":
        table = table.reset_index()
    missing = [c for c in ("trace_name", "associato_ev") if c not in table.columns]
    if missing:
        raise WaveformError(
            f"{path}: similar-traces table lacks column(s) {missing} (has {list(table.columns)})"
        )
    table = table.loc[:, ["trace_name", "associato_ev"]].copy()
    ids = pd.to_numeric(table["associato_ev"], errors="coerce")
    bad = ids.isna() | (ids != np.round(ids)) | (ids < 0)
    if bad.any():
        raise WaveformError(
            f"{path}: associato_ev must be non-negative integers, e.g. "
            f"{table.loc[bad, 'associato_ev'].iloc[0]!r} for {table.loc[bad, 'trace_name'].iloc[0]}"
        )
    table["trace_name"] = table["trace_name"].astype(str)
    table["associato_ev"] = ids.astype(np.int64)
    table = table.drop_duplicates()
    conflicting = table["trace_name"].duplicated(keep=False)
    if conflicting.any():
        raise WaveformError(
            f"{path}: trace(s) assigned to two groups, e.g. "
            f"{list(dict.fromkeys(table.loc[conflicting, 'trace_name']))[:5]}"
        )
    return table.reset_index(drop=True)


def associato_ids(trace_names: pd.Series, similar: pd.DataFrame | None) -> np.ndarray:
    """Co-located group of each trace: ``associato_ev + 1`` if in ``similar``, else 0.

    Returns ``(n,)`` int64 aligned with ``trace_names``.
    """
    if similar is None or similar.empty:
        return np.zeros(len(trace_names), dtype=np.int64)
    lookup = pd.Series(similar["associato_ev"].to_numpy() + 1, index=similar["trace_name"])
    return trace_names.map(lookup).fillna(0).to_numpy(dtype=np.int64)


def reset_singleton_groups(ids: np.ndarray) -> np.ndarray:
    """Set to 0 every group id held by a single trace (SPEC §2); 0 stays 0. ``(n,)`` int64."""
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


# --------------------------------------------------------------------------------------
# train/test split
# --------------------------------------------------------------------------------------


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
    ``by="time"`` sends the last ``test_fraction`` of the rows by ``trace_start_time`` to
    the test split (unparsable times count as latest).
    """
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
    else:  # time
        times = parse_times(catalog["trace_start_time"])
        order = np.argsort(times.to_numpy(dtype="datetime64[ns]"), kind="stable")
        n_test = math.ceil(cfg.test_fraction * n)
        test = order[n - n_test :]
    split[test] = "test"
    return split
