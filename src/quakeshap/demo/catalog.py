"""The demo's event catalogue: times, magnitudes, locations, travel times, planted defects.

One trace per event, recorded at NRCA (IV, HH; 42.83355 N, 13.11427 E, 927 m). Everything
here is drawn from one generator seeded by ``[data.demo.seed, 0]``, in a fixed order (the
bytes of ``data/raw`` depend on it).

*Locations.* Epicentres lie 3–18 km from the station in a uniform random direction
(uniform per unit area), hypocentres 2–10 km below sea level, so hypocentral distances are
about 4–21 km. Both classes share this spatial distribution: location is no clue to the
label. ``n_colocated_groups`` groups of 2–4 pre and 2–4 post events share a hypocentre
(scatter 0.35 km): the similar-traces table lists them with ``associato_ev``.

*Magnitudes* follow a Gutenberg–Richter law truncated to ``[magnitude_min,
magnitude_max]`` with slope ``b_value``, reported to 0.1 like INGV's local magnitudes.

*Origin times* follow Omori's law (rate ∝ 1/(t + c), c = 1.5 days; 40 % of the events
spread uniformly instead, so that late weeks are not empty) after the Amatrice mainshock
(2016-08-24 01:36:32 UTC) for the pre class, up to 2016-10-26 14:49, with one background
event on 2016-08-20 as in the real record; and after the Norcia mainshock
(:data:`quakeshap.record.MAINSHOCK_ORIGIN_UTC`) for the post class, from 2016-10-31 to
2016-12-20. One event is placed in every ISO week of each period (33–43 pre, 44–51 post)
before the rest are drawn, so that no week is empty.

*Travel times.* Straight rays in a homogeneous half-space with ``vp_km_s`` and
``vs_km_s``: ``p_travel_sec = R / vp``, ``s_travel_sec = R / vs`` (R hypocentral, from the
source depth to the station elevation), rounded to one sample (0.01 s);
``p_s_diff_sec = s_travel_sec − p_travel_sec``. Each trace starts at origin +
``p_travel_sec`` − 5 s, rounded to 10 ms, so the P wave arrives at 5.0 s (sample 500) and
the S wave at 5 + ``p_s_diff_sec`` s.

*Per-trace latent parameters* of the synthesis (:mod:`quakeshap.demo.physics`) are drawn
here too: the stress drop (log-normal around ``stress_drop_mpa``), Q (``q_pre`` or
``q_post`` with a log-normal scatter ``q_log_std``: the label lives in Q) and the
background-noise level (3 dB louder by day, 07–19 local time, with a 3 dB scatter).

*Time-to-failure drift of Q* (``q_drift``, 0 = none, the default). With u in [0, 1] an
event's origin time's position within its side's span of origin times (pre: earliest to
latest pre origin; post likewise) and ū its side's mean, ::

    ln Q += q_drift · (ū − u)     pre:  Q falls as the Norcia mainshock approaches
    ln Q += q_drift · (u − ū)     post: Q recovers after it

so ln Q moves by ``q_drift`` across each side, linearly in time. It is centred on the
side's mean ū, not on the middle of the span: the events crowd after each mainshock
(Omori), so ū ≈ 0.4 and centring on 0.5 would shift each side's mean ln Q and shrink the
pre/post contrast; centred, ``q_pre`` and ``q_post`` remain each side's geometric-mean Q.
The drift draws no random number: every other column is the same for any ``q_drift``,
and ``q_drift = 0`` gives the default demo's bytes.

*Defects, as in the real record.* ``n_missing_channels`` pre traces hold only 2 or 1
channels; ``n_nan_traces`` traces have a 1 s gap of NaN; ``n_missing_in_hdf5`` traces are
listed in an attributes CSV but absent from the HDF5 file. None of them is in a co-located
group or is the only trace of its week. :func:`demo_defects` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from quakeshap import detmath
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.config import DemoConfig
from quakeshap.demo.physics import brune_corner_frequency_hz
from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    MAINSHOCK_ORIGIN_UTC,
    NRCA,
    P_ARRIVAL_S,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    iso_week,
)

PRE, POST = CLASS_NAMES

#: the station of the demo, as in the record
#: the demo's station: the study's
STATION = NRCA

#: the two mainshocks that start the two sequences (UTC)
AMATRICE_ORIGIN = np.datetime64("2016-08-24T01:36:32", "ms")
MAINSHOCK_ORIGIN = MAINSHOCK_ORIGIN_UTC.tz_convert(None).to_datetime64().astype("datetime64[ms]")
#: origin-time windows of the two classes, as in the real record
PRE_EARLY_DAY = np.datetime64("2016-08-20T00:00:00", "ms")
PRE_END = np.datetime64("2016-10-26T14:49:00", "ms")
POST_START = np.datetime64("2016-10-31T00:00:00", "ms")
POST_END = np.datetime64("2016-12-20T23:59:59", "ms")
DAY_MS = 86_400_000
MINUTE = np.timedelta64(60_000, "ms")
WEEK = np.timedelta64(7 * DAY_MS, "ms")

#: magnitudes are reported in steps of 0.1, like INGV's local magnitudes
MAGNITUDE_STEP = 0.1
EPICENTRAL_KM = (3.0, 18.0)
DEPTH_KM = (2.0, 10.0)
COLOCATED_SCATTER_KM = 0.35
KM_PER_DEGREE = 111.19
OMORI_C_DAYS = 1.5
#: share of events spread uniformly over each period (the rest decay as Omori's law)
BACKGROUND_FRACTION = 0.4
#: scatter of ln(stress drop)
STRESS_DROP_LOG_STD = 0.5
#: per-trace scatter of the background-noise level, and how much louder it is by day
NOISE_SCATTER_DB = 3.0
NOISE_DAY_DB = 3.0

#: the ``defect`` values of the catalogue ("" = none)
MISSING_CHANNELS = "missing_channels"
NAN_GAP = "nan"
MISSING_IN_HDF5 = "missing_in_hdf5"


class DemoError(ValueError):
    """The demo configuration cannot produce a valid data set."""


@dataclass(frozen=True)
class DemoDefects:
    """Trace names of the defects planted in the demo data set."""

    #: trace name -> number of channels kept (1 or 2)
    missing_channels: dict[str, int]
    #: traces with a gap of NaN
    nan_traces: tuple[str, ...]
    #: traces listed in an attributes CSV but absent from the HDF5 file
    missing_in_hdf5: tuple[str, ...]

    @property
    def all(self) -> frozenset[str]:
        return frozenset(self.missing_channels) | set(self.nan_traces) | set(self.missing_in_hdf5)


# --------------------------------------------------------------------------------------
# origin times
# --------------------------------------------------------------------------------------


class _Origins(NamedTuple):
    """The events in origin-time order, ``(n,)`` each."""

    time: np.ndarray  # datetime64[ms]
    label: np.ndarray  # object: pre / post
    week_anchor: np.ndarray  # bool: the event that keeps its ISO week populated
    early: np.ndarray  # bool: the background event before the Amatrice mainshock


def _omori_times(
    rng: np.random.Generator,
    n: int,
    origin: np.datetime64,
    start: np.datetime64,
    end: np.datetime64,
) -> np.ndarray:
    """``n`` times in [start, end]: a fraction ``BACKGROUND_FRACTION`` uniform, the rest
    with rate ∝ 1 / (t − origin + c) (Omori, p = 1)."""
    day_ms = float(DAY_MS)
    c = OMORI_C_DAYS
    t0 = max((start - origin).astype(np.float64) / day_ms, 0.0) + c
    t1 = (end - origin).astype(np.float64) / day_ms + c
    u = rng.random(n)
    omori = t0 * detmath.power(t1 / t0, u) - c
    uniform = t0 + (t1 - t0) * u - c
    t = np.where(rng.random(n) < BACKGROUND_FRACTION, uniform, omori)
    return origin + np.round(t * day_ms).astype("timedelta64[ms]")


def _week_times(rng: np.random.Generator, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """One uniform time in every ISO week that [start, end] touches (1 min from edges)."""
    first_monday = np.datetime64(
        (pd.Timestamp(start) - pd.Timedelta(days=pd.Timestamp(start).weekday())).normalize(),
        "ms",
    )
    times = []
    monday = first_monday
    while monday <= end:
        lo = max(monday, start) + MINUTE
        hi = min(monday + WEEK, end) - MINUTE
        span = (hi - lo).astype(np.int64)
        times.append(lo + np.timedelta64(int(rng.integers(0, span)), "ms"))
        monday = monday + WEEK
    return np.array(times, dtype="datetime64[ms]")


def _origin_times(rng: np.random.Generator, cfg: DemoConfig) -> _Origins:
    """Week anchors first (and the one early event), then Omori-distributed events."""
    pre_anchor = np.concatenate(
        [
            np.array([PRE_EARLY_DAY + np.timedelta64(int(rng.integers(0, DAY_MS - 60_000)), "ms")]),
            _week_times(rng, AMATRICE_ORIGIN + MINUTE, PRE_END),
        ]
    )
    post_anchor = _week_times(rng, POST_START, POST_END)
    n_pre_rest = cfg.n_pre - len(pre_anchor)
    n_post_rest = cfg.n_post - len(post_anchor)
    pre_times = np.concatenate(
        [pre_anchor, _omori_times(rng, n_pre_rest, AMATRICE_ORIGIN, AMATRICE_ORIGIN, PRE_END)]
    )
    post_times = np.concatenate(
        [post_anchor, _omori_times(rng, n_post_rest, MAINSHOCK_ORIGIN, POST_START, POST_END)]
    )
    time = np.concatenate([pre_times, post_times])
    label = np.array([PRE] * cfg.n_pre + [POST] * cfg.n_post, dtype=object)
    anchor = np.zeros(len(time), dtype=bool)
    anchor[: len(pre_anchor)] = True
    anchor[cfg.n_pre : cfg.n_pre + len(post_anchor)] = True
    early = np.zeros(len(time), dtype=bool)
    early[0] = True
    order = np.argsort(time, kind="stable")
    return _Origins(time[order], label[order], anchor[order], early[order])


# --------------------------------------------------------------------------------------
# sources and their locations
# --------------------------------------------------------------------------------------


@dataclass
class _Sources:
    """Per event, ``(n,)``; the location arrays are moved in place by the co-located groups."""

    source_id: np.ndarray
    magnitude: np.ndarray
    epicentral_km: np.ndarray
    azimuth_from_station_rad: np.ndarray
    depth_km: np.ndarray
    stress_drop_mpa: np.ndarray
    q: np.ndarray


def _gutenberg_richter(rng: np.random.Generator, n: int, cfg: DemoConfig) -> np.ndarray:
    """Truncated Gutenberg–Richter magnitudes in bins of 0.1 from min to max.

    Drawn continuously over [min − 0.05, max + 0.05) and rounded, so that every bin,
    the end bins included, holds its full share.
    """
    lo = cfg.magnitude_min - MAGNITUDE_STEP / 2.0
    span = cfg.magnitude_max - cfg.magnitude_min + MAGNITUDE_STEP
    u = rng.random(n)
    tail = 1.0 - float(detmath.exp10(-cfg.b_value * span))
    m = lo - detmath.log10(1.0 - u * tail) / cfg.b_value
    return np.clip(np.round(m, 1), cfg.magnitude_min, cfg.magnitude_max)


def _epicentres(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Epicentral distance (km) uniform per unit area, and station→epicentre azimuth (rad)."""
    lo, hi = EPICENTRAL_KM
    r = np.sqrt(rng.uniform(lo * lo, hi * hi, n))
    az = rng.uniform(0.0, 2.0 * np.pi, n)
    return r, az


def _ln_q_drift(origins: _Origins, q_drift: float) -> np.ndarray:
    """The time-to-failure drift of ln Q (module docstring), ``(n,)``.

    In IEEE-exact arithmetic only: integer milliseconds, the side's mean as an exact
    integer sum divided once.
    """
    drift = np.zeros(len(origins.time))
    for cls, sign in ((PRE, -1.0), (POST, 1.0)):
        side = origins.label == cls
        ms = origins.time[side].astype(np.int64)
        offset = ms - ms.min()
        span = int(offset.max())
        if span == 0:  # a side of one event (or one instant) has nothing to drift across
            continue
        mean = int(offset.sum()) / len(offset)
        drift[side] = sign * q_drift * ((offset - mean) / span)
    return drift


def _sources(rng: np.random.Generator, origins: _Origins, cfg: DemoConfig) -> _Sources:
    label = origins.label
    n = len(label)
    source_id = 100_000_000 + np.cumsum(rng.integers(7, 400, n))
    magnitude = _gutenberg_richter(rng, n, cfg)
    epicentral_km, azimuth = _epicentres(rng, n)
    depth_km = rng.uniform(*DEPTH_KM, n)
    stress_drop = cfg.stress_drop_mpa * detmath.exp(STRESS_DROP_LOG_STD * rng.standard_normal(n))
    ln_q_scatter = cfg.q_log_std * rng.standard_normal(n)
    if cfg.q_drift != 0.0:  # skipped at 0: the default demo's arithmetic, bit for bit
        ln_q_scatter = ln_q_scatter + _ln_q_drift(origins, cfg.q_drift)
    q = np.where(label == PRE, cfg.q_pre, cfg.q_post) * detmath.exp(ln_q_scatter)
    return _Sources(source_id, magnitude, epicentral_km, azimuth, depth_km, stress_drop, q)


def _colocated_groups(
    rng: np.random.Generator,
    cfg: DemoConfig,
    label: np.ndarray,
    free: np.ndarray,
    sources: _Sources,
) -> np.ndarray:
    """Group 2–4 pre and 2–4 post ``free`` events around a shared hypocentre, in place.

    Moves the members' locations in ``sources`` and marks them taken in ``free``; returns
    each event's group, ``(n,)`` int64 (−1 = none).
    """
    group = np.full(len(label), -1, dtype=np.int64)
    for g in range(cfg.n_colocated_groups):
        c_r, c_az = _epicentres(rng, 1)
        c_depth = rng.uniform(DEPTH_KM[0] + 1.0, DEPTH_KM[1] - 1.0)
        for cls in CLASS_NAMES:
            k = int(rng.integers(2, 5))
            candidates = np.flatnonzero(free & (label == cls))
            members = np.sort(rng.choice(candidates, size=k, replace=False))
            group[members] = g
            free[members] = False
            east = c_r[0] * detmath.sin(c_az[0]) + COLOCATED_SCATTER_KM * rng.standard_normal(k)
            north = c_r[0] * detmath.cos(c_az[0]) + COLOCATED_SCATTER_KM * rng.standard_normal(k)
            sources.epicentral_km[members] = detmath.hypot(east, north)
            sources.azimuth_from_station_rad[members] = detmath.arctan2(east, north) % (2.0 * np.pi)
            sources.depth_km[members] = np.clip(
                c_depth + COLOCATED_SCATTER_KM * rng.standard_normal(k), *DEPTH_KM
            )
    return group


# --------------------------------------------------------------------------------------
# rays, trace starts, noise levels
# --------------------------------------------------------------------------------------


class _Rays(NamedTuple):
    """Per event, ``(n,)``: epicentre coordinates, hypocentral distance, travel times."""

    latitude: np.ndarray
    longitude: np.ndarray
    hypocentral_km: np.ndarray
    p_travel_sec: np.ndarray
    s_travel_sec: np.ndarray
    p_s_diff_sec: np.ndarray
    incidence_rad: np.ndarray
    azimuth_rad: np.ndarray  # source → station


def _rays(sources: _Sources, cfg: DemoConfig) -> _Rays:
    """Straight rays from each hypocentre to the station (flat Earth)."""
    epi_km, az_from_station = sources.epicentral_km, sources.azimuth_from_station_rad
    lat = STATION.latitude + epi_km * detmath.cos(az_from_station) / KM_PER_DEGREE
    lon = STATION.longitude + epi_km * detmath.sin(az_from_station) / (
        KM_PER_DEGREE * float(detmath.cos(STATION.latitude * (np.pi / 180.0)))
    )
    vertical_km = sources.depth_km + STATION.elevation_m / 1000.0
    hypo_km = detmath.hypot(epi_km, vertical_km)
    p_travel = np.round(hypo_km / cfg.vp_km_s, 2)
    s_travel = np.round(hypo_km / cfg.vs_km_s, 2)
    p_s_diff = np.round(s_travel - p_travel, 2)
    # near-surface refraction bends the rays towards the vertical
    incidence = detmath.arcsin(0.45 * epi_km / hypo_km)
    azimuth = (az_from_station + np.pi) % (2.0 * np.pi)
    return _Rays(lat, lon, hypo_km, p_travel, s_travel, p_s_diff, incidence, azimuth)


def _trace_starts(origin: np.ndarray, p_travel_sec: np.ndarray) -> np.ndarray:
    """Trace start times: P at ``P_ARRIVAL_S``, rounded to the 10 ms sample grid."""
    start = (
        origin
        + np.round(p_travel_sec * 1000).astype("timedelta64[ms]")
        - np.timedelta64(int(P_ARRIVAL_S * 1000), "ms")
    )
    return (np.round(start.astype(np.int64) / 10.0).astype(np.int64) * 10).astype("datetime64[ms]")


def _noise_levels_db(rng: np.random.Generator, origin: np.ndarray, cfg: DemoConfig) -> np.ndarray:
    """Background-noise level of each trace, dB: louder by day (07–19 local, UTC+1)."""
    local_hour = (pd.DatetimeIndex(origin).hour.to_numpy() + 1) % 24
    return (
        cfg.noise_psd_db
        + NOISE_DAY_DB * ((local_hour >= 7) & (local_hour < 19))
        + NOISE_SCATTER_DB * rng.standard_normal(len(origin))
    )


def _format_start(t: np.datetime64) -> str:
    """``2016-10-31 00:15:23.830000+00:00`` (the record's ``trace_start_time``)."""
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


def _format_origin(t: np.datetime64) -> str:
    """``2016-10-31 00:15:27.368`` (the record's ``source_origin_time``)."""
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _attributes(
    origin: np.ndarray, start: np.ndarray, sources: _Sources, rays: _Rays
) -> dict[str, object]:
    """The study's attribute columns, in the record's formats and order."""
    values = {
        "trace_name": np.array(
            [STATION.trace_name(sid) for sid in sources.source_id], dtype=object
        ),
        "trace_start_time": [_format_start(t) for t in start],
        **STATION.receiver_columns(),
        "source_id": sources.source_id,
        "source_depth_km": np.round(sources.depth_km, 2),
        "source_latitude": np.round(rays.latitude, 4),
        "source_longitude": np.round(rays.longitude, 4),
        "source_magnitude": sources.magnitude,
        "source_origin_time": [_format_origin(t) for t in origin],
        "p_travel_sec": rays.p_travel_sec,
        "s_travel_sec": rays.s_travel_sec,
        "p_s_diff_sec": rays.p_s_diff_sec,
    }
    return {column: values[column] for column in ATTRIBUTE_COLUMNS}


# --------------------------------------------------------------------------------------
# the catalogue
# --------------------------------------------------------------------------------------


def demo_catalog(cfg: DemoConfig) -> pd.DataFrame:
    """The demo's event catalogue with every latent parameter of its waveforms.

    Cheap (no waveforms). One row per trace, sorted by origin time: the study's 17
    attribute columns (as written to the CSVs), then ``label`` (pre/post),
    ``associato_ev`` (co-located group, −1 = none), ``defect`` ("" or
    ``missing_channels`` / ``nan`` / ``missing_in_hdf5``), ``n_channels``, ``week`` (ISO
    week of the trace start) and the ground truth of the synthesis:
    ``epicentral_distance_km``, ``hypocentral_distance_km``, ``azimuth_rad`` (source →
    station), ``incidence_rad``, ``q``, ``stress_drop_mpa``, ``corner_frequency_hz`` (S),
    ``noise_psd_db``, ``s_arrival_sample``, ``week_anchor`` (the event that keeps its ISO
    week populated).
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    origins = _origin_times(rng, cfg)
    sources = _sources(rng, origins, cfg)
    free = ~origins.early
    group = _colocated_groups(rng, cfg, origins.label, free, sources)
    rays = _rays(sources, cfg)
    start = _trace_starts(origins.time, rays.p_travel_sec)
    fc = brune_corner_frequency_hz(sources.magnitude, sources.stress_drop_mpa, cfg.vs_km_s)
    noise_db = _noise_levels_db(rng, origins.time, cfg)
    frame = pd.DataFrame(
        {
            **_attributes(origins.time, start, sources, rays),
            "label": origins.label,
            "associato_ev": group,
            "defect": "",
            "n_channels": len(CHANNELS),
            "week": iso_week(pd.Series(start)),
            "epicentral_distance_km": sources.epicentral_km,
            "hypocentral_distance_km": rays.hypocentral_km,
            "azimuth_rad": rays.azimuth_rad,
            "incidence_rad": rays.incidence_rad,
            "q": sources.q,
            "stress_drop_mpa": sources.stress_drop_mpa,
            "corner_frequency_hz": fc,
            "noise_psd_db": noise_db,
            "s_arrival_sample": P_ARRIVAL_SAMPLE
            + np.round(rays.p_s_diff_sec * SAMPLING_RATE_HZ).astype(np.int64),
            "week_anchor": origins.week_anchor,
        }
    )
    _plant_defects(frame, cfg, rng, free & ~origins.week_anchor)
    return frame


# --------------------------------------------------------------------------------------
# defects
# --------------------------------------------------------------------------------------


def _plant_defects(
    frame: pd.DataFrame, cfg: DemoConfig, rng: np.random.Generator, free: np.ndarray
) -> None:
    """Mark the defective traces in ``frame`` (in place), never in a group or an anchor."""
    is_pre = (frame["label"] == PRE).to_numpy()
    plan = (
        [(MISSING_CHANNELS, True)] * cfg.n_missing_channels
        + [(NAN_GAP, i % 2 == 1) for i in range(cfg.n_nan_traces)]
        + [(MISSING_IN_HDF5, i % 2 == 0) for i in range(cfg.n_missing_in_hdf5)]
    )
    free = free.copy()
    n_missing = 0
    for kind, in_pre in plan:
        candidates = np.flatnonzero(free & (is_pre == in_pre))
        if len(candidates) == 0:
            raise DemoError(
                f"data.demo: too few {PRE if in_pre else POST} traces to plant the "
                "configured defects; raise data.demo.n_pre/n_post or lower the defect counts"
            )
        i = int(rng.choice(candidates))
        free[i] = False
        frame.loc[i, "defect"] = kind
        if kind == MISSING_CHANNELS:
            frame.loc[i, "n_channels"] = 2 - n_missing % 2
            n_missing += 1


def demo_defects(cfg: DemoConfig) -> DemoDefects:
    """The defective traces :func:`quakeshap.demo.write_demo_dataset` plants for ``cfg``."""
    catalog = demo_catalog(cfg)
    rows = catalog[catalog["defect"] == MISSING_CHANNELS]
    return DemoDefects(
        missing_channels=dict(zip(rows["trace_name"], rows["n_channels"].astype(int), strict=True)),
        nan_traces=tuple(catalog.loc[catalog["defect"] == NAN_GAP, "trace_name"]),
        missing_in_hdf5=tuple(catalog.loc[catalog["defect"] == MISSING_IN_HDF5, "trace_name"]),
    )
