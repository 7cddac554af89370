"""SeisBench ``WaveformDataset`` folders: written from quakeshap's artefacts, read into the
record's layout (``docs/interop.md``).

A SeisBench data set (``docs/method.md`` §7) is a folder with a metadata table (one row per
trace, columns named ``CATEGORY_PARAMETER_UNIT``, a ``split`` column) and an HDF5 file whose
group ``data`` holds each trace under its ``trace_name`` and whose group ``data_format``
says how to read them (``sampling_rate``, ``component_order``, ``dimension_order``,
``measurement``, ``unit``). A large data set may be cut into chunks, ``metadata<chunk>.csv``
with ``waveforms<chunk>`` beside it (:func:`metadata_file`, :func:`waveforms_file`).

This module knows that format: the study's attribute columns and their SeisBench names
(:data:`RECORD_TO_SEISBENCH`), how times are written, :func:`write_dataset` (used by
:mod:`quakeshap.interop.seisbench` to export a run) and :func:`convert_to_record` (used by
the ``download`` stage under ``data.source: seisbench``), which turns any such data set into
the record's layout under ``data/raw`` through the writers of
:mod:`quakeshap.artifacts.raw`, the very files the demo generator writes.

The conversion's rules
----------------------
- Waveforms are loaded with SeisBench's own ``WaveformDataset`` (components reordered to
  E, N, Z; blocked traces, chunks and resampling as SeisBench does them).
- Every trace must be at 100 Hz, the study's rate: other rates refuse the data set, or with
  ``data.seisbench.resample`` are resampled by SeisBench's loader (zero-phase decimation for
  integer factors, Fourier resampling otherwise; arrival samples rescaled with them).
- Each trace is cut to the record's 25 s from 5 s before its P arrival (rounded to the
  nearest sample), so that P sits at sample 500 as in the record; a trace whose P is unknown
  or less than 5 s after its start is left out (logged with the count per reason). A trace
  shorter than 20 s after P is kept as long as it is; the ``spectrograms`` stage rejects it
  if it lacks the 8 s after P its image needs, with the reason in ``rejected.csv``.
- The class (file ``<STA>_pre`` or ``<STA>_post``) follows ``task.boundary_time``: an event
  earlier than it is ``pre``; where ``source_origin_time`` cannot be read, the trace start
  decides.
- The study's three travel-time columns come from the data set's own ``p_travel_sec``,
  ``s_travel_sec`` and ``p_s_diff_sec`` when it has them (a data set quakeshap exported),
  else from the arrival samples and the origin time.
- Missing required columns, duplicate trace names, unreadable files, unknown stations and
  wrong sampling rates stop the conversion with one line naming the file and the reason;
  the ``download`` stage writes into a temporary folder, so nothing is left half-written.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts import ArtifactError
from quakeshap.artifacts.raw import (
    ATTRIBUTE_COLUMNS,
    write_attributes,
    write_similar_traces,
    write_waveforms,
)
from quakeshap.config import SeisbenchConfig
from quakeshap.files import write_csv
from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    TRACE_SAMPLES,
    attributes_path,
    hdf5_path,
    parse_times,
    similar_traces_path,
)
from quakeshap.task import boundary_labels

log = logging.getLogger(__name__)

#: SeisBench's component order of every exported trace, and the order imported traces get
COMPONENT_ORDER = "".join(CHANNELS)
#: the HDF5 groups of a SeisBench waveform file
DATA_GROUP = "data"
FORMAT_GROUP = "data_format"
#: the HDF5 suffix, as the record's layout spells it (SeisBench uses the same)
HDF5_SUFFIX = hdf5_path("", "S", CLASS_NAMES[0]).suffix
#: relative tolerance on a sampling rate, SeisBench's own (``WaveformDataset._resample``)
RATE_TOLERANCE = 1e-4
#: one sample at 100 Hz, in nanoseconds (times shift by whole samples, exactly)
SAMPLE_NS = round(1e9 / SAMPLING_RATE_HZ)

#: the study's attribute column → its SeisBench name; the study's travel times have none
#: and keep their own names (``p_travel_sec``, ``s_travel_sec``, ``p_s_diff_sec``)
RECORD_TO_SEISBENCH: dict[str, str] = {
    "trace_name": "trace_name",
    "trace_start_time": "trace_start_time",
    "network_code": "station_network_code",
    "receiver_name": "station_code",
    "receiver_type": "station_channels",
    "receiver_elevation_m": "station_elevation_m",
    "receiver_latitude": "station_latitude_deg",
    "receiver_longitude": "station_longitude_deg",
    "source_id": "source_id",
    "source_depth_km": "source_depth_km",
    "source_latitude": "source_latitude_deg",
    "source_longitude": "source_longitude_deg",
    "source_magnitude": "source_magnitude",
    "source_origin_time": "source_origin_time",
}
#: the study's travel-time columns, kept under their own names
TRAVEL_TIME_COLUMNS: dict[str, str] = {
    "p_travel_sec": "p_travel_sec",
    "s_travel_sec": "s_travel_sec",
    "p_s_diff_sec": "p_s_diff_sec",
}
#: what a data set must have to become the record's layout
REQUIRED: tuple[str, ...] = (
    "trace_name",
    "trace_start_time",
    "trace_p_arrival_sample",
    "station_code",
    "source_id",
    "source_origin_time",
)
#: read as text, never as numbers (identifiers keep leading zeros, times their digits)
TEXT_DTYPES: dict[str, type] = {
    "trace_name": str,
    "trace_name_original": str,
    "trace_start_time": str,
    "trace_component_order": str,
    "station_code": str,
    "station_network_code": str,
    "station_channels": str,
    "source_id": str,
    "source_origin_time": str,
    "split": str,
    "label": str,
}


class SeisbenchError(ArtifactError):
    """A SeisBench data set cannot be read or converted; the message names the file."""


def metadata_file(chunk: str = "") -> str:
    """SeisBench's name of a data set's metadata table (chunk ``""``: not chunked)."""
    return f"metadata{chunk}.csv"


def waveforms_file(chunk: str = "") -> str:
    """SeisBench's name of a data set's waveform file (chunk ``""``: not chunked)."""
    return f"waveforms{chunk}{HDF5_SUFFIX}"


# --------------------------------------------------------------------------------------
# times
# --------------------------------------------------------------------------------------


def iso_utc(values: pd.Series) -> list[str | None]:
    """Times as SeisBench data sets write them: ``2016-10-31T00:15:23.830000Z`` (UTC)."""
    return [
        None if pd.isna(t) else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in parse_times(values)
    ]


def record_start_time(time: pd.Timestamp) -> str:
    """The record's ``trace_start_time`` text: ``2016-10-31 00:15:23.830000+00:00``."""
    return time.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


def record_origin_time(time: pd.Timestamp) -> str:
    """The record's ``source_origin_time`` text, ``2016-10-31 00:15:27.368``: milliseconds,
    or microseconds when the time has them."""
    text = time.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[:-3] if time.microsecond % 1000 == 0 else text


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def write_dataset(
    folder: Path,
    metadata: pd.DataFrame,
    traces: Iterable[np.ndarray],
    data_format: Mapping[str, Any],
) -> None:
    """One SeisBench data set (not chunked) in ``folder``, which must exist.

    Not atomic by itself: write into a temporary folder (:func:`quakeshap.files.atomic_dir`).
    The HDF5 file has no timestamps, so the same input gives the same bytes.

    Parameters
    ----------
    metadata
        One row per trace, ``trace_name`` first; written as it is.
    traces
        The arrays of the rows, in order, each stored under ``data/<trace_name>``.
    data_format
        The ``data_format`` group: strings, numbers or 1-D arrays.
    """
    names = metadata["trace_name"].astype(str).tolist()
    bad = [n for n in names if "/" in n or "$" in n or not n]
    if bad or len(set(names)) != len(names):
        raise SeisbenchError(f"{folder}: trace names must be unique, non-empty, without / or $")
    with h5py.File(
        folder / waveforms_file(), "w", libver=("earliest", "v110"), track_order=False
    ) as fh:
        group = fh.create_group(DATA_GROUP, track_order=False)
        for name, data in zip(names, traces, strict=True):
            group.create_dataset(name, data=data, track_times=False)
        fmt = fh.create_group(FORMAT_GROUP, track_order=False)
        for key, value in data_format.items():
            fmt.create_dataset(key, data=value, track_times=False)
    write_csv(folder / metadata_file(), metadata)


# --------------------------------------------------------------------------------------
# reading: any SeisBench data set → the record's layout
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_to_record` wrote: traces per station and class, and what it left
    out (reason → count)."""

    written: dict[tuple[str, str], int]
    left_out: dict[str, int]


def read_metadata(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """The data set's metadata tables, chunks in SeisBench's order, as written (identifiers
    and times as text), with ``trace_chunk``; and the chunks."""
    from seisbench.data import WaveformDataset

    if not folder.is_dir():
        raise SeisbenchError(f"{folder}: no such folder (parameter data.seisbench.path)")
    try:
        chunks = WaveformDataset.available_chunks(folder)
    except FileNotFoundError:
        raise SeisbenchError(
            f"{folder}: no SeisBench data set here ({metadata_file()} and "
            f"{waveforms_file()}, or chunks of them)"
        ) from None
    parts = []
    for chunk in chunks:
        path = folder / metadata_file(chunk)
        if not (folder / waveforms_file(chunk)).is_file():
            raise SeisbenchError(f"{folder / waveforms_file(chunk)}: missing (listed chunk)")
        try:
            table = pd.read_csv(path, dtype=TEXT_DTYPES)
        except FileNotFoundError:
            raise SeisbenchError(f"{path}: missing (listed chunk)") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise SeisbenchError(f"{path}: not a readable CSV table ({exc})") from None
        missing = [c for c in REQUIRED if c not in table.columns]
        if missing:
            raise SeisbenchError(
                f"{path}: missing column(s) {missing}; quakeshap needs {list(REQUIRED)} to "
                "place each trace in the record's layout"
            )
        parts.append(table.assign(trace_chunk=chunk))
    return pd.concat(parts, ignore_index=True), chunks


def open_dataset(folder: Path, resample: bool) -> Any:
    """SeisBench's ``WaveformDataset`` of ``folder``, components E, N, Z (a missing one is
    left out, not padded), resampled to 100 Hz on loading when ``resample``."""
    from seisbench.data import WaveformDataset

    try:
        return WaveformDataset(
            folder,
            component_order=COMPONENT_ORDER,
            dimension_order="NCW",
            missing_components="ignore",
            sampling_rate=SAMPLING_RATE_HZ if resample else None,
            resample_zerophase=True,
        )
    except (OSError, KeyError, ValueError) as exc:
        raise SeisbenchError(f"{folder}: not a readable SeisBench data set ({exc})") from None


def _files(folder: Path, chunks: list[str]) -> str:
    return ", ".join(str(folder / metadata_file(c)) for c in chunks)


def _check_rates(rates: np.ndarray, folder: Path, chunks: list[str], resample: bool) -> None:
    if np.isnan(rates).any():
        raise SeisbenchError(
            f"{_files(folder, chunks)}: {int(np.isnan(rates).sum())} trace(s) without a sampling "
            f"rate: neither a trace_sampling_rate_hz column nor data_format/sampling_rate in "
            f"{waveforms_file()}"
        )
    off = np.abs(rates / SAMPLING_RATE_HZ - 1) > RATE_TOLERANCE
    if off.any() and not resample:
        found = sorted({float(r) for r in rates[off]})
        raise SeisbenchError(
            f"{_files(folder, chunks)}: {int(off.sum())} trace(s) sampled at {found[:5]} Hz, not "
            f"the study's {SAMPLING_RATE_HZ:g} Hz; set data.seisbench.resample: true to "
            "resample them on loading, or resample the data set first"
        )


def _check_components(orders: pd.Series, folder: Path, chunks: list[str]) -> None:
    usable = orders.map(lambda o: set(CHANNELS) <= set(str(o)))
    if not usable.any():
        found = sorted(set(orders.astype(str)))
        raise SeisbenchError(
            f"{_files(folder, chunks)}: no trace has the components {COMPONENT_ORDER} "
            f"(trace_component_order {found[:5]}); rotate the data set to E, N, Z first"
        )
    if not usable.all():
        log.warning(
            "%d trace(s) lack one of %s; they are written with the components they have "
            "and the spectrograms stage will reject them",
            int((~usable).sum()),
            COMPONENT_ORDER,
        )


def _trace_names(meta: pd.DataFrame, path: str) -> pd.Series:
    """Names for the record: the original name of a trace SeisBench stored in a block,
    the trace name otherwise, or ``<STA>.<NET>.<source_id>_EV`` (the record's pattern)
    when a block name is all there is."""
    names = meta["trace_name"].astype(str)
    if "trace_name_original" in meta.columns:
        names = meta["trace_name_original"].fillna(names).astype(str)
    blocked = names.str.contains("$", regex=False)
    network = meta.get("station_network_code", pd.Series("", index=meta.index)).fillna("")
    built = meta["station_code"].astype(str) + "." + network.astype(str) + "."
    names = names.where(~blocked, built + meta["source_id"].astype(str) + "_EV")
    bad = names[names.str.contains("/", regex=False) | (names == "")]
    if len(bad):
        raise SeisbenchError(f"{path}: trace name(s) {list(bad[:3])} cannot name an HDF5 dataset")
    twice = names[names.duplicated(keep=False)]
    if len(twice):
        raise SeisbenchError(
            f"{path}: {twice.nunique()} trace name(s) used more than once, e.g. "
            f"{list(dict.fromkeys(twice))[:3]}; every trace needs its own name"
        )
    return names


def _column(meta: pd.DataFrame, name: str, default: object = np.nan) -> pd.Series:
    if name in meta.columns:
        return meta[name]
    return pd.Series(default, index=meta.index, dtype=object if isinstance(default, str) else None)


def _samples(n: np.ndarray | int) -> pd.TimedeltaIndex:
    """``n`` samples at 100 Hz as time spans, exactly (no float seconds in between)."""
    return pd.to_timedelta(np.asarray(n, dtype=np.int64).reshape(-1) * SAMPLE_NS, unit="ns")


def _attributes(
    meta: pd.DataFrame, names: pd.Series, start: pd.Series, origin: pd.Series
) -> pd.DataFrame:
    """The study's 17 attribute columns of the rows to write (``start``: the cut's start)."""
    p_time = start + _samples(np.full(len(start), P_ARRIVAL_SAMPLE))
    p_sample = meta["trace_p_arrival_sample"].to_numpy(dtype=np.float64)
    s_sample = pd.to_numeric(_column(meta, "trace_s_arrival_sample"), errors="coerce")
    s_p_s = (s_sample.to_numpy(dtype=np.float64) - p_sample) / SAMPLING_RATE_HZ
    p_travel = (p_time - origin).dt.total_seconds().to_numpy()
    derived = {"p_travel_sec": p_travel, "s_travel_sec": p_travel + s_p_s, "p_s_diff_sec": s_p_s}
    table = pd.DataFrame(index=meta.index)
    for column in ATTRIBUTE_COLUMNS:
        if column == "trace_name":
            table[column] = names
        elif column == "trace_start_time":
            table[column] = [record_start_time(t) for t in start]
        elif column == "source_origin_time":
            table[column] = [None if pd.isna(t) else record_origin_time(t) for t in origin]
        elif column in TRAVEL_TIME_COLUMNS:
            own = TRAVEL_TIME_COLUMNS[column]
            values = pd.to_numeric(_column(meta, own), errors="coerce").to_numpy(np.float64)
            table[column] = np.where(np.isnan(values), derived[column], values)
        else:
            text = column in ("network_code", "receiver_type")
            table[column] = _column(meta, RECORD_TO_SEISBENCH[column], "" if text else np.nan)
    return table


def convert_to_record(cfg: SeisbenchConfig, boundary: pd.Timestamp, root: Path) -> Conversion:
    """Write the data set at ``cfg.path`` in the record's layout under ``root``.

    Parameters
    ----------
    cfg
        ``data.seisbench``.
    boundary
        ``task.boundary_time`` (UTC): events earlier than it go to the ``pre`` files.
    root
        The raw folder being written (the ``download`` stage's temporary folder).

    Returns
    -------
    What was written and left out (the module docstring gives the rules).
    """
    assert cfg.path is not None, "data.seisbench.path is checked by the configuration"
    folder = Path(cfg.path)
    meta, chunks = read_metadata(folder)
    where = _files(folder, chunks)
    dataset = open_dataset(folder, cfg.resample)
    loaded = dataset.metadata
    if len(loaded) != len(meta):
        raise SeisbenchError(f"{where}: SeisBench reads {len(loaded)} rows, not {len(meta)}")
    rates = loaded["trace_sampling_rate_hz"].to_numpy(dtype=np.float64)
    _check_rates(rates, folder, chunks, cfg.resample)
    _check_components(loaded["trace_component_order"], folder, chunks)

    rows = np.arange(len(meta))
    if cfg.stations:
        present = sorted(set(meta["station_code"].astype(str)))
        unknown = [s for s in cfg.stations if s not in present]
        if unknown:
            raise SeisbenchError(
                f"{where}: no trace of station(s) {unknown} (parameter data.seisbench.stations); "
                f"the data set has {present[:20]}"
            )
        rows = rows[meta["station_code"].astype(str).isin(cfg.stations).to_numpy()]
    meta = meta.iloc[rows].copy()
    rates = rates[rows]
    scale = SAMPLING_RATE_HZ / rates if cfg.resample else np.ones(len(rows))
    # arrival samples at 100 Hz (SeisBench rescales them the same way when it resamples)
    for column in ("trace_p_arrival_sample", "trace_s_arrival_sample"):
        if column in meta.columns:
            meta[column] = pd.to_numeric(meta[column], errors="coerce") * scale

    names = _trace_names(meta, where)
    trace_start = parse_times(meta["trace_start_time"])
    origin = parse_times(meta["source_origin_time"])
    p = meta["trace_p_arrival_sample"].to_numpy(dtype=np.float64)
    cut = np.round(p) - P_ARRIVAL_SAMPLE
    reasons = pd.Series(None, index=meta.index, dtype=object)
    reasons[np.isnan(p)] = "no P arrival (trace_p_arrival_sample is empty)"
    reasons[reasons.isna() & ~np.isnan(p) & (cut < 0)] = "P arrival less than 5 s after the start"
    reasons[reasons.isna() & trace_start.isna().to_numpy()] = "unreadable trace_start_time"
    keep = reasons.isna().to_numpy()
    left_out = Counter(reasons[~keep])
    for reason, count in left_out.items():
        example = names[reasons == reason].iloc[0]
        log.warning("%s: left out %d trace(s), %s (e.g. %s)", where, count, reason, example)
    if not keep.any():
        raise SeisbenchError(
            f"{where}: no trace can be placed in the record's layout ({dict(left_out)})"
        )

    meta, names, origin, cut = meta[keep], names[keep], origin[keep], cut[keep].astype(np.int64)
    start = trace_start[keep] + _samples(cut)
    labels = boundary_labels(origin.fillna(start), boundary)  # the trace start if unknown
    attributes = _attributes(meta, names, start, origin)
    written: dict[tuple[str, str], int] = {}
    for station in sorted(set(meta["station_code"].astype(str))):
        at_station = meta["station_code"].astype(str).to_numpy() == station
        for label in CLASS_NAMES:
            mask = at_station & (labels == label)
            # meta's index: the rows of the data set, as SeisBench numbers them
            positions = meta.index[mask].tolist()
            write_waveforms(
                hdf5_path(root, station, label),
                names[mask].tolist(),
                _cut_traces(dataset, positions, cut[mask]),
            )
            write_attributes(attributes_path(root, station, label), attributes[mask])
            written[(station, label)] = int(mask.sum())
        write_similar_traces(
            similar_traces_path(root, station), _similar(meta[at_station], names[at_station])
        )
    return Conversion(written, dict(left_out))


def _cut_traces(dataset: Any, positions: list[int], cuts: np.ndarray) -> Iterator[np.ndarray]:
    """Each trace as SeisBench loads it (E, N, Z; 100 Hz), 25 s from its cut start."""
    for position, start in zip(positions, cuts, strict=True):
        try:
            wave = np.asarray(dataset.get_waveforms(idx=position), dtype=np.float64)
        except (KeyError, ValueError, OSError) as exc:
            row = dataset.metadata.iloc[position]
            path = dataset.path / waveforms_file(str(row["trace_chunk"]))
            raise SeisbenchError(
                f"{path}: trace {row['trace_name']!r} cannot be read ({exc})"
            ) from None
        yield wave[:, start : start + TRACE_SAMPLES]


def _similar(meta: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """The similar-traces table: quakeshap's ``associato`` (group + 1, 0 = none) when the
    data set has it (one quakeshap exported), else no groups."""
    if "associato" not in meta.columns:
        return pd.DataFrame({"trace_name": pd.Series([], dtype=object), "associato_ev": []})
    group = pd.to_numeric(meta["associato"], errors="coerce").fillna(0).astype(np.int64)
    grouped = (group > 0).to_numpy()
    return pd.DataFrame(
        {"trace_name": names[grouped].to_numpy(), "associato_ev": group[grouped].to_numpy() - 1}
    )
