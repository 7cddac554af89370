"""Facts about the study's record that every stage relies on, defined once.

The Zenodo record (``docs/method.md`` §1) fixes the shape of everything downstream: 25 s
three-component traces at 100 Hz with the P arrival at sample 500, channels in the order
E, N, Z, one HDF5 file and one attribute table per station and class, and two classes
split at the 2016-10-30 Norcia mainshock. The spectrogram images carry pixel values
``k / 255`` (the study's 8-bit PNG files), and the study's S-aligned mean maps cut an 8 s
window with S at 4 s (``docs/method.md`` §5). Modules import these names rather than
retyping the numbers, and the two rules that several modules apply (which maps enter a
class mean, and the uint8 ↔ [0, 1] scaling) are functions here, as is the rule that shares
an image's columns out among the windows before P, from P to S and after S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------

#: sampling rate of every trace in the record (HH channels)
SAMPLING_RATE_HZ = 100.0
#: samples per trace in the record: 25 s at 100 Hz
TRACE_SAMPLES = 2500
#: the P arrival sits at this sample of every trace ...
P_ARRIVAL_SAMPLE = 500
#: ... that is, 5 s after the trace start
P_ARRIVAL_S = P_ARRIVAL_SAMPLE / SAMPLING_RATE_HZ
#: component order of each trace's three rows, and of the RGB channels of an image
CHANNELS: tuple[str, str, str] = ("E", "N", "Z")

# --------------------------------------------------------------------------------------
# the station
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Station:
    """A recording station, as the record's attribute tables describe it."""

    network: str
    code: str
    #: the channel family (``HH``: high-gain broadband at 100 Hz)
    channel_family: str
    latitude: float
    longitude: float
    elevation_m: float

    def receiver_columns(self) -> dict[str, str | float]:
        """The attribute columns that describe the receiver, with this station's values."""
        return {
            "network_code": self.network,
            "receiver_name": self.code,
            "receiver_type": self.channel_family,
            "receiver_elevation_m": self.elevation_m,
            "receiver_latitude": self.latitude,
            "receiver_longitude": self.longitude,
        }

    def trace_name(self, source_id: object) -> str:
        """The record's trace name of this station's recording of event ``source_id``."""
        return f"{self.code}.{self.network}.{source_id}_EV"


#: the study's station (``docs/method.md`` §1)
NRCA = Station("IV", "NRCA", "HH", latitude=42.83355, longitude=13.11427, elevation_m=927.0)


# --------------------------------------------------------------------------------------
# the sequence and the two classes
# --------------------------------------------------------------------------------------

#: origin time of the Mw 6.5 Norcia mainshock: foreshocks (pre) before it, aftershocks after
MAINSHOCK_ORIGIN_UTC = pd.Timestamp("2016-10-30 06:40:17", tz="UTC")
#: class index 0 = pre (foreshock), 1 = post (aftershock); the positive class is ``post``
CLASS_NAMES: tuple[str, str] = ("pre", "post")


class UnknownClassError(ValueError):
    """A value names no class of :data:`CLASS_NAMES`."""


def class_index(value: Any) -> int:
    """A class given by name (``"post"``) or by index (``1``, ``"1"``) → its index."""
    if isinstance(value, str) and value in CLASS_NAMES:
        return CLASS_NAMES.index(value)
    try:
        index = int(value)
    except (TypeError, ValueError):
        index = -1
    if index not in range(len(CLASS_NAMES)):
        raise UnknownClassError(f"unknown class {value!r}; expected one of {list(CLASS_NAMES)}")
    return index


def class_name(value: Any) -> str:
    """A class given by name or by index → its name."""
    return CLASS_NAMES[class_index(value)]


def parse_times(values: pd.Series) -> pd.Series:
    """Timestamps such as ``2016-10-31 00:15:23.830000+00:00`` as UTC; NaT where unparsable."""
    return pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")


def iso_week(values: pd.Series) -> np.ndarray:
    """ISO week number of each timestamp, ``(n,)`` int64; -1 where the time is unparsable."""
    times = parse_times(values)
    weeks = times.dt.isocalendar().week
    return weeks.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)


# --------------------------------------------------------------------------------------
# the record's layout on disk
# --------------------------------------------------------------------------------------

#: folder of the per-station catalogues, relative to the extracted record
CATALOG_DIR = Path("dset", "data", "catalogs")
#: folder of the similar-traces tables, relative to the extracted record
SIMILAR_DIR = Path("dset")


def hdf5_path(raw_root: str | Path, station: str, label: str) -> Path:
    """``<raw>/dset/data/catalogs/<STA>/<STA>_<label>.hdf5``: one dataset per trace."""
    return Path(raw_root) / CATALOG_DIR / station / f"{station}_{label}.hdf5"


def attributes_path(raw_root: str | Path, station: str, label: str) -> Path:
    """``<raw>/dset/data/catalogs/<STA>/<STA>_<label>_attributes.csv``: one row per trace."""
    return Path(raw_root) / CATALOG_DIR / station / f"{station}_{label}_attributes.csv"


def similar_traces_path(raw_root: str | Path, station: str) -> Path:
    """``<raw>/dset/dataframe_<STA>_SelectedSimilarTraces.csv`` (a pandas pickle, despite
    its name)."""
    return Path(raw_root) / SIMILAR_DIR / f"dataframe_{station}_SelectedSimilarTraces.csv"


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------

#: the study's PNG files held 8-bit values: pixel ``k`` means ``k / 255``
PIXEL_LEVELS = 255


def to_unit(images: np.ndarray) -> np.ndarray:
    """Pixel values as the model sees them: float32 in [0, 1].

    ``uint8`` images hold ``k`` for ``k / 255``; float images are returned as float32.
    """
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(PIXEL_LEVELS)
    return images.astype(np.float32, copy=False)


def to_uint8(unit: np.ndarray) -> np.ndarray:
    """``floor(255 x)`` of values ``x`` in [0, 1] (clipped), as the study's ``imsave`` stored
    them: the cast truncates, which is the floor for values >= 0."""
    return np.clip(unit * float(PIXEL_LEVELS), 0.0, float(PIXEL_LEVELS)).astype(np.uint8)


# --------------------------------------------------------------------------------------
# the study's S-aligned window
# --------------------------------------------------------------------------------------

#: length of the S-aligned window ...
S_WINDOW_LENGTH_S = 8.0
#: ... and where S sits in it
S_WINDOW_BEFORE_S = 4.0
#: the study converted seconds to image columns as ``n_columns / 13 s`` (1300 samples at
#: 100 Hz), although the 96 windows' centres span 0.32–12.67 s; kept for its S-aligned maps
STUDY_IMAGE_DURATION_S = 13.0


def s_window_columns(
    n_columns: int,
    duration_s: float = STUDY_IMAGE_DURATION_S,
    length_s: float = S_WINDOW_LENGTH_S,
) -> tuple[float, int]:
    """Columns per second and window width of the study's S-aligned cut (96 → 59 columns)."""
    per_s = n_columns / duration_s
    return per_s, int(length_s * per_s)


# --------------------------------------------------------------------------------------
# the three time windows of a trace: before P, from P to S, after S
# --------------------------------------------------------------------------------------

#: the time windows of an image, in order: ``t < P``, ``P <= t < S``, ``t >= S``
TIME_WINDOWS: tuple[str, str, str] = ("before_p", "p_to_s", "after_s")


def time_window_masks(
    time_s: np.ndarray,
    s_times: np.ndarray | Sequence[float],
    p_times: np.ndarray | Sequence[float] | float = P_ARRIVAL_S,
) -> np.ndarray:
    """Which image columns lie in each of :data:`TIME_WINDOWS`, for every trace.

    A column belongs to a window by its time (the centre of its spectrogram window): the
    three half-open windows ``t < P``, ``P <= t < S`` and ``t >= S`` share out every column.

    Parameters
    ----------
    time_s
        ``(n_time,)`` column times, s from the trace start (the spectrogram set's axis).
    s_times
        ``(n,)`` S arrival of each trace, s from the trace start.
    p_times
        P arrival(s), s; default 5 s (:data:`P_ARRIVAL_S`) for every trace.

    Returns
    -------
    ``(n, 3, n_time)`` bool, windows in :data:`TIME_WINDOWS` order.
    """
    t = np.asarray(time_s, dtype=np.float64)[None, :]
    s = np.asarray(s_times, dtype=np.float64).reshape(-1, 1)
    p = np.broadcast_to(np.asarray(p_times, dtype=np.float64).reshape(-1, 1), s.shape)
    return np.stack([t < p, (t >= p) & (t < s), t >= s], axis=1)
