"""A tiny raw data set in the Zenodo layout, built in code for the waveform/spectrogram tests.

Smaller and more controllable than :mod:`quakeshap.demo`: a few traces per class, each a
noise record with a decaying P and S wavelet, every defect opt-in. Written through the raw
layout's owner (:mod:`quakeshap.artifacts.raw`); :func:`write_hdf5` writes what the owner's
writer cannot: traces stored in other dtypes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts import raw
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.record import (
    NRCA,
    P_ARRIVAL_S,
    SAMPLING_RATE_HZ,
    TRACE_SAMPLES,
    attributes_path,
    hdf5_path,
    similar_traces_path,
)


@dataclass
class RawSet:
    """What :func:`write_raw` wrote: the attribute tables and waveforms per class."""

    root: Path
    station: str
    attributes: dict[str, pd.DataFrame]
    waveforms: dict[str, dict[str, np.ndarray]]
    similar: pd.DataFrame


def synthetic_waveform(rng: np.random.Generator, p_s_diff_sec: float) -> np.ndarray:
    """``(3, 2500)`` float64: noise plus P at 5 s and S at 5 + ``p_s_diff_sec``."""
    t = np.arange(TRACE_SAMPLES) / SAMPLING_RATE_HZ
    noise = rng.normal(0.0, 1.0, (3, TRACE_SAMPLES))
    trace = noise.copy()
    for onset, amp, freq in ((P_ARRIVAL_S, 20.0, 18.0), (P_ARRIVAL_S + p_s_diff_sec, 60.0, 9.0)):
        after = t >= onset
        wavelet = amp * np.exp(-(t - onset) / 1.5) * np.sin(2 * np.pi * freq * (t - onset))
        trace[:, after] += wavelet[after] * rng.uniform(0.5, 1.5, (3, 1))
    return trace


def attribute_table(
    rng: np.random.Generator, station: str, label: str, n: int, first_id: int
) -> pd.DataFrame:
    """``n`` rows of the study's 17 columns with plausible values."""
    if label == "pre":
        start = pd.Timestamp("2016-08-24 03:00:00", tz="UTC")
        span_days = 60
    else:
        start = pd.Timestamp("2016-10-31 01:00:00", tz="UTC")
        span_days = 50
    offsets = np.sort(rng.uniform(0, span_days * 86400, n))
    starts = [start + pd.Timedelta(seconds=float(s)) for s in np.round(offsets, 2)]
    p_travel = np.round(rng.uniform(1.5, 3.5, n), 2)
    p_s = np.round(p_travel * 0.75, 2)
    origins = [s + pd.Timedelta(seconds=5.0 - p) for s, p in zip(starts, p_travel, strict=True)]
    ids = np.arange(first_id, first_id + n)
    receiver = dataclasses.replace(NRCA, code=station)
    return pd.DataFrame(
        {
            "trace_name": [receiver.trace_name(i) for i in ids],
            "trace_start_time": [s.strftime("%Y-%m-%d %H:%M:%S.%f+00:00") for s in starts],
            **receiver.receiver_columns(),
            "source_id": ids,
            "source_depth_km": np.round(rng.uniform(2, 10, n), 2),
            "source_latitude": np.round(rng.uniform(42.7, 42.95, n), 4),
            "source_longitude": np.round(rng.uniform(13.0, 13.3, n), 4),
            "source_magnitude": np.round(rng.uniform(0.6, 3.3, n), 1),
            "source_origin_time": [o.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for o in origins],
            "p_travel_sec": p_travel,
            "s_travel_sec": np.round(p_travel + p_s, 2),
            "p_s_diff_sec": p_s,
        },
        columns=list(ATTRIBUTE_COLUMNS),
    )


def write_raw(
    root: Path,
    rng: np.random.Generator,
    n_pre: int = 6,
    n_post: int = 4,
    station: str = "NRCA",
    groups: dict[str, int] | None = None,
) -> RawSet:
    """Write ``root/dset/...`` for one station; every trace is valid.

    ``groups`` maps trace names to ``associato_ev`` for the similar-traces pickle; by
    default the first two pre and the first post trace form group 0.
    """
    first_id = {"NRCA": 100000000}.get(station, 200000000)
    attributes, waves = {}, {}
    for label, n, offset in (("pre", n_pre, 0), ("post", n_post, 500_000)):
        table = attribute_table(rng, station, label, n, first_id + offset)
        raw.write_attributes(attributes_path(root, station, label), table)
        waves[label] = {
            name: synthetic_waveform(rng, ps)
            for name, ps in zip(table["trace_name"], table["p_s_diff_sec"], strict=True)
        }
        raw.write_waveforms(
            hdf5_path(root, station, label), list(waves[label]), list(waves[label].values())
        )
        attributes[label] = table
    if groups is None:
        names = [*attributes["pre"]["trace_name"][:2], attributes["post"]["trace_name"].iloc[0]]
        groups = dict.fromkeys(names, 0)
    similar = pd.DataFrame(
        dict(zip(raw.SIMILAR_COLUMNS, (list(groups), list(groups.values())), strict=True))
    )
    raw.write_similar_traces(similar_traces_path(root, station), similar)
    return RawSet(root, station, attributes, waves, similar)


def write_hdf5(path: Path, traces: dict[str, np.ndarray]) -> None:
    """One root dataset per trace, like the record's files, each in its own dtype and shape
    (the owner's writer stores float64 only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        for name, data in traces.items():
            fh.create_dataset(name, data=data)
