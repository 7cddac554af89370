"""New waveforms → the study's windows: what :mod:`quakeshap.predict` applies a model to.

The study's window (``docs/method.md`` §1, §2): 25 s at 100 Hz from 5 s before the P
arrival, components E, N, Z in that order, P at sample 500 (rounded to the nearest sample
here). Two sources:

- any file ObsPy reads (miniSEED, SAC, ...) with a pick table (CSV: ``network``,
  ``station``, ``p_arrival_time``; optional ``location``, ``channel``, ``s_arrival_time``,
  ``trace_name``): :func:`read_picks`, :func:`read_streams`, :func:`windows_from_picks`;
- a SeisBench data set, P from ``trace_p_arrival_sample``: :func:`windows_from_seisbench`.

Each pick becomes a :class:`Window`: its ``(3, n)`` samples, or the reason it has none (no
waveform, a missing component, a gap or non-finite samples, a window that starts before or
runs off the record, a sampling rate other than 100 Hz unless ``resample``). An input that
cannot be used at all (an unreadable file, a pick table without a required column) is a
:class:`WindowError` naming the file.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quakeshap.interop.seisbench_dataset import metadata_file, open_dataset
from quakeshap.record import (
    CHANNELS,
    P_ARRIVAL_S,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    TRACE_SAMPLES,
    parse_times,
)

#: relative tolerance on a sampling rate
RATE_TOLERANCE = 1e-4
#: the columns a pick table must have
PICK_REQUIRED = ("network", "station", "p_arrival_time")


class WindowError(ValueError):
    """An input cannot be used at all: a waveform file, the pick table, a data set."""


@dataclass
class Window:
    """One trace to predict: where it comes from, and its window or why there is none."""

    trace_name: str
    #: network, station, location, channel, p_arrival_time, source (file or data set)
    info: dict[str, Any]
    #: ``(3, n)`` float64 counts, E, N, Z at 100 Hz, P at sample 500; None with ``error``
    waveform: np.ndarray | None = None
    error: str | None = None
    #: S arrival in seconds from the window's start, when known (figures only)
    s_arrival_s: float = float("nan")
    #: the model's outputs for it (filled by :func:`quakeshap.predict.predict`)
    outputs: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# windows from files and picks
# --------------------------------------------------------------------------------------


def read_picks(path: Path) -> pd.DataFrame:
    """The pick table: required and optional columns (module docstring), P times parsed
    (``p_time``, UTC), one ``trace_name`` per row."""
    try:
        picks = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise WindowError(f"{path}: no such pick table") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise WindowError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in PICK_REQUIRED if c not in picks.columns]
    if missing:
        raise WindowError(
            f"{path}: missing column(s) {missing}; a pick table needs {list(PICK_REQUIRED)} "
            "(and may have location, channel, s_arrival_time, trace_name)"
        )
    if picks.empty:
        raise WindowError(f"{path}: lists no pick")
    for column in ("location", "channel", "s_arrival_time", "trace_name"):
        if column not in picks.columns:
            picks[column] = ""
    picks["p_time"] = parse_times(picks["p_arrival_time"].replace("", None))
    bad = np.flatnonzero(picks["p_time"].isna().to_numpy())
    if len(bad):
        line = int(bad[0]) + 2
        raise WindowError(
            f"{path}: line {line}: p_arrival_time {picks['p_arrival_time'].iloc[bad[0]]!r} is "
            "not an ISO 8601 time"
        )
    picks["s_time"] = parse_times(picks["s_arrival_time"].replace("", None))
    default = [
        f"{r.network}.{r.station}.{r.location}_{r.p_time.strftime('%Y%m%dT%H%M%S.%f')[:-4]}"
        for r in picks.itertuples()
    ]
    picks["trace_name"] = picks["trace_name"].where(picks["trace_name"] != "", default)
    twice = picks["trace_name"][picks["trace_name"].duplicated()]
    if len(twice):
        raise WindowError(f"{path}: trace name(s) {list(twice[:3])} used twice")
    return picks


def read_streams(patterns: Sequence[str]) -> tuple[Any, list[str]]:
    """Every trace of the files the patterns name (files or globs), as one ObsPy stream."""
    import obspy

    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise WindowError(f"{pattern}: no file matches")
        files += [f for f in matched if f not in files]
    stream = obspy.Stream()
    for name in files:
        try:
            stream += obspy.read(name)
        except FileNotFoundError:
            raise WindowError(f"{name}: no such waveform file") from None
        except Exception as exc:  # ObsPy raises many types for files it cannot read
            raise WindowError(f"{name}: not a waveform file ObsPy reads ({exc})") from None
    return stream, files


def _off_rate(rate: float) -> bool:
    return not abs(rate / SAMPLING_RATE_HZ - 1) <= RATE_TOLERANCE


def _family(stream: Any, pick: Any) -> tuple[dict[str, Any] | None, str, str | None]:
    """The pick's three components (merged), its channel family, or why they are not there."""
    mine = stream.select(network=pick.network, station=pick.station, location=pick.location)
    if pick.channel:
        mine = mine.select(channel=f"{pick.channel}?")
    families = sorted({tr.stats.channel[:-1] for tr in mine})
    where = f"{pick.network}.{pick.station}.{pick.location}"
    if not families:
        return None, "", f"no waveform of {where} in the files given"
    if len(families) > 1:
        return None, "", f"several channel families {families}: add a channel column"
    family = families[0]
    have = sorted({tr.stats.channel[-1] for tr in mine})
    lacking = [c for c in CHANNELS if c not in have]
    if lacking:
        hint = " (rotate 1/2 to E/N first)" if {"1", "2"} & set(have) else ""
        return None, family, f"missing component(s) {lacking} of {where} (has {have}){hint}"
    components = {}
    for c in CHANNELS:
        part = mine.select(channel=f"{family}{c}").copy()
        try:
            part.merge(method=0, fill_value=None)
        except Exception as exc:  # ObsPy refuses to merge e.g. differing sampling rates
            return None, family, f"component {c} cannot be merged ({exc})"
        if len(part) != 1:
            return None, family, f"component {c}: {len(part)} traces that cannot be merged"
        components[c] = part[0]
    return components, family, None


def cut_stream_window(
    components: dict[str, Any], p_time: pd.Timestamp, n_samples: int, resample: bool
) -> tuple[np.ndarray | None, str | None]:
    """The study's window of three ObsPy traces: ``(3, <= 2500)`` float64 from P − 5 s, or
    the reason there is none (module docstring)."""
    from obspy import UTCDateTime

    start = UTCDateTime(p_time.to_pydatetime()) - P_ARRIVAL_S
    rows = []
    for c in CHANNELS:
        trace = components[c]
        rate = float(trace.stats.sampling_rate)
        if _off_rate(rate):
            if not resample:
                return None, f"sampling rate {rate:g} Hz, not 100 Hz (--resample resamples it)"
            if np.ma.is_masked(trace.data):
                return None, f"component {c} has gaps and cannot be resampled"
            trace = trace.copy()
            trace.data = trace.data.astype(np.float64)
            trace.resample(SAMPLING_RATE_HZ)
        first = round((start - trace.stats.starttime) * SAMPLING_RATE_HZ)
        if first < 0:
            return None, (
                f"the window starts before the record: P - 5 s = {start} but component {c} "
                f"starts at {trace.stats.starttime}"
            )
        if first + n_samples > trace.stats.npts:
            end = start + n_samples / SAMPLING_RATE_HZ
            return None, (
                f"the window runs off the record: it needs data to {end} but component {c} "
                f"ends at {trace.stats.endtime}"
            )
        part = trace.data[first : first + TRACE_SAMPLES]
        if np.ma.is_masked(part):
            return None, f"component {c} has a gap in the window"
        rows.append(np.asarray(part, dtype=np.float64))
    wave = np.stack([r[: min(len(r) for r in rows)] for r in rows])
    if not np.isfinite(wave).all():
        return None, "non-finite samples in the window"
    return wave, None


def windows_from_picks(
    stream: Any, picks: pd.DataFrame, n_samples: int, resample: bool, source: str
) -> list[Window]:
    """One :class:`Window` per pick."""
    windows = []
    for pick in picks.itertuples():
        components, family, error = _family(stream, pick)
        info = {
            "network": pick.network,
            "station": pick.station,
            "location": pick.location,
            "channel": family,
            "p_arrival_time": pick.p_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "source": source,
        }
        window = Window(pick.trace_name, info, error=error)
        if components is not None:
            window.waveform, window.error = cut_stream_window(
                components, pick.p_time, n_samples, resample
            )
        if not pd.isna(pick.s_time):
            window.s_arrival_s = (pick.s_time - pick.p_time).total_seconds() + P_ARRIVAL_S
        windows.append(window)
    return windows


# --------------------------------------------------------------------------------------
# windows from a SeisBench data set
# --------------------------------------------------------------------------------------


def windows_from_seisbench(folder: Path, n_samples: int, resample: bool) -> list[Window]:
    """One :class:`Window` per row of a SeisBench data set (P from
    ``trace_p_arrival_sample``), loaded with SeisBench's ``WaveformDataset``."""
    if not folder.is_dir():
        raise WindowError(f"{folder}: no such SeisBench data set folder")
    dataset = open_dataset(folder, resample)
    meta = dataset.metadata
    if dataset.data_format.get("dimension_order", "CW") != "CW":
        raise WindowError(
            f"{folder}: holds {dataset.data_format['dimension_order']} arrays, not waveforms (CW)"
        )
    if "trace_p_arrival_sample" not in meta.columns:
        raise WindowError(f"{folder / metadata_file()}: missing column trace_p_arrival_sample")
    names = meta["trace_name"].astype(str)
    if "trace_name_original" in meta.columns:
        names = meta["trace_name_original"].fillna(names).astype(str)
    starts = parse_times(meta.get("trace_start_time", pd.Series(None, index=meta.index)))
    windows = []
    for i, row in enumerate(meta.itertuples(index=False)):
        rate = float(row.trace_sampling_rate_hz)
        p = float(row.trace_p_arrival_sample)
        s = float(getattr(row, "trace_s_arrival_sample", np.nan))
        scale = SAMPLING_RATE_HZ / rate if resample else 1.0
        info = {
            "network": getattr(row, "station_network_code", ""),
            "station": getattr(row, "station_code", ""),
            "location": getattr(row, "station_location_code", ""),
            "channel": getattr(row, "station_channels", ""),
            "p_arrival_time": None,
            "source": str(folder),
        }
        window = Window(names.iloc[i], info)
        windows.append(window)
        if np.isnan(rate) or (_off_rate(rate) and not resample):
            window.error = f"sampling rate {rate:g} Hz, not 100 Hz (--resample resamples it)"
            continue
        if np.isnan(p):
            window.error = "no P arrival (trace_p_arrival_sample is empty)"
            continue
        if not pd.isna(starts.iloc[i]):
            p_time = starts.iloc[i] + pd.to_timedelta(round(p / rate * 1e9), unit="ns")
            info["p_arrival_time"] = p_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        first = round(p * scale) - P_ARRIVAL_SAMPLE
        wave = np.asarray(dataset.get_waveforms(idx=i), dtype=np.float64)
        if wave.shape[0] != len(CHANNELS):
            order = str(row.trace_component_order)
            window.error = f"missing component(s) {[c for c in CHANNELS if c not in order]}"
        elif first < 0:
            window.error = "the window starts before the record: P is less than 5 s in"
        elif first + n_samples > wave.shape[1]:
            window.error = (
                f"the window runs off the record: it needs {n_samples} samples from P - 5 s, "
                f"the trace has {wave.shape[1] - first}"
            )
        elif not np.isfinite(wave[:, first : first + TRACE_SAMPLES]).all():
            window.error = "non-finite samples in the window"
        else:
            window.waveform = wave[:, first : first + TRACE_SAMPLES]
            window.s_arrival_s = (s * scale - first) / SAMPLING_RATE_HZ
    return windows
