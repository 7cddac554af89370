"""A synthetic NRCA data set in the layout of Zenodo record 15683047.

:func:`write_demo_dataset` writes, deterministically from ``data.demo.seed``, exactly the
files the real record unpacks to (SPEC §1)::

    root/dset/data/catalogs/NRCA/NRCA_pre.hdf5             one (3, 2500) float64 per trace
    root/dset/data/catalogs/NRCA/NRCA_post.hdf5
    root/dset/data/catalogs/NRCA/NRCA_pre_attributes.csv   the study's 17 columns
    root/dset/data/catalogs/NRCA/NRCA_post_attributes.csv
    root/dset/dataframe_NRCA_SelectedSimilarTraces.csv     a pandas pickle (sic)

so that every later stage runs on it unchanged. The same seed gives byte-identical files.

Physics (the ground truth an explanation of the demo model should recover)
---------------------------------------------------------------------------
*Catalogue.* One trace per event, recorded at NRCA (IV, HH; 42.83355 N, 13.11427 E,
927 m). Epicentres lie 3–18 km from the station in a uniform random direction (uniform
per unit area), hypocentres 2–10 km below sea level, so hypocentral distances are about
4–21 km. Both classes share this spatial distribution: location is no clue to the label.
Magnitudes follow a Gutenberg–Richter law truncated to ``[magnitude_min, magnitude_max]``
with slope ``b_value``, reported to 0.1 like INGV's local magnitudes.
Origin times follow Omori's law (rate ∝ 1/(t + c), c = 1.5 days; 40 % of the events
spread uniformly instead, so that late weeks are not empty) after the Amatrice mainshock
(2016-08-24 01:36:32 UTC) for the pre class, up to 2016-10-26 14:49, with one background
event on 2016-08-20 as in the real record; and after the Norcia mainshock (2016-10-30
06:40:17 UTC) for the post class, from 2016-10-31 to 2016-12-20. One event is placed in
every ISO week of each period (33–43 pre, 44–51 post) before the rest are drawn, so that
no week is empty. ``n_colocated_groups`` groups of 2–4 pre and 2–4 post events share a
hypocentre (scatter 0.35 km): the similar-traces table lists them with ``associato_ev``.

*Travel times.* Straight rays in a homogeneous half-space with ``vp_km_s`` and
``vs_km_s``: ``p_travel_sec = R / vp``, ``s_travel_sec = R / vs`` (R hypocentral, from the
source depth to the station elevation), rounded to one sample (0.01 s);
``p_s_diff_sec = s_travel_sec − p_travel_sec``. Each trace starts at origin +
``p_travel_sec`` − 5 s, rounded to 10 ms, so the P wave arrives at 5.0 s (sample 500) and
the S wave at 5 + ``p_s_diff_sec`` s.

*Source and path (stochastic method, Boore 2003).* The Fourier amplitude spectrum of
ground velocity for phase X (P or S) with velocity v_X and travel time T_X is::

    A_X(f) = 2πf · C_X M0 / (4π ρ v_X³ R) · 1 / (1 + (f / fc_X)²)   Brune ω² source
             · exp(−π f T_X / Q)                                   anelastic path
             · exp(−π κ f)                                         site (kappa)
             · exp(s(f))                                           site/path jitter
             · H_aa(f)                                             digitiser anti-alias

with M0 = 10^(1.5 M + 9.1) N·m, ρ = 2700 kg/m³, C_X the average radiation coefficient
(0.52 P, 0.63 S) times the free-surface factor 2, and the Brune corner frequency
fc_S = 0.4906 β (Δσ / M0)^(1/3) (β in m/s, Δσ in Pa; fc_P = 1.5 fc_S), so the corner
frequency falls with magnitude. The stress drop Δσ scatters log-normally around
``stress_drop_mpa``. The 1/(ρ v³) term makes S about five times stronger than P.

**The label lives in Q.** Q is ``q_pre`` before the mainshock and ``q_post`` after it
(lower: the fractured crust attenuates high frequencies more, as Laurenti et al. report
for the real sequence), with a per-trace log-normal scatter ``q_log_std`` (so the
classes overlap). Nothing else differs systematically between the classes. The difference
in log power between a pre and a post version of the same event grows linearly with
frequency (∝ f T (1/q_post − 1/q_pre)) until the signal sinks into the noise:
:func:`discriminative_band_hz` gives the band where it is largest, strongest over the S
wave and its coda (T_S > T_P).

*Synthesis.* For each phase and component, Gaussian white noise is coloured with A_X(f)
(random phase) and multiplied by an envelope: a 30 ms rise at the onset, a direct-wave
decay over the source-plus-path duration 1/fc + 0.05 R[km] s, and an exponential coda
(P: 25 % for 1.5 s; S: 30 % for 3 s); the amplitude is scaled so that the windowed
wavelet's Fourier spectrum equals A_X. P is projected along the ray (mostly vertical:
near-surface refraction gives an incidence of sin i = 0.45 r / R), S splits evenly into SV
and SH (mostly horizontal), each component with a log-normal 20 % radiation/site
scatter. Background noise is stationary Gaussian noise with an acceleration power
spectral density of ``noise_psd_db`` dB re 1 (m/s²)²/Hz above 1 Hz (a town site) plus a
secondary microseism peak (+12 dB at 0.2 Hz), 3 dB louder by day (07–19 local time),
with a per-trace scatter of 3 dB: small or distant events sit close to the noise. The
digitiser's anti-alias filter (flat to 40 Hz, −120 dB at 50 Hz) acts on signal and
ground noise alike; its own white noise (1 count RMS) is all that is left above about
44 Hz. Ground velocity is written in counts (gain 6.0e8 counts per m/s, typical of a
broadband HH channel).

With the defaults, pre and post differ most between about 17 and 42 Hz, over the S wave
and its coda; below about 8 Hz they hardly differ at all.

Defects (as in the real record)
-------------------------------
``n_missing_channels`` pre traces hold only 2 or 1 channels (shape ``(2, 2500)`` or
``(1, 2500)``); ``n_nan_traces`` traces have a 1 s gap of NaN; ``n_missing_in_hdf5``
traces are listed in an attributes CSV but absent from the HDF5 file. None of them is in
a co-located group or is the only trace of its week. :func:`demo_defects` names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.config import DemoConfig
from quakeshap.files import atomic_path, write_csv

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# constants of the real record and of the physical model
# --------------------------------------------------------------------------------------

STATION = "NRCA"
NETWORK = "IV"
CHANNEL_FAMILY = "HH"
CHANNELS: tuple[str, str, str] = ("E", "N", "Z")
STATION_LATITUDE = 42.83355
STATION_LONGITUDE = 13.11427
STATION_ELEVATION_M = 927.0

SAMPLING_RATE_HZ = 100.0
N_SAMPLES = 2500
#: the P wave arrives 5.0 s into every trace
P_ARRIVAL_S = 5.0
P_ARRIVAL_SAMPLE = 500

#: the two mainshocks that start the two sequences (UTC)
AMATRICE_ORIGIN = np.datetime64("2016-08-24T01:36:32", "ms")
MAINSHOCK_ORIGIN = np.datetime64("2016-10-30T06:40:17", "ms")
#: origin-time windows of the two classes, as in the real record
PRE_EARLY_DAY = np.datetime64("2016-08-20T00:00:00", "ms")
PRE_END = np.datetime64("2016-10-26T14:49:00", "ms")
POST_START = np.datetime64("2016-10-31T00:00:00", "ms")
POST_END = np.datetime64("2016-12-20T23:59:59", "ms")

#: magnitudes are reported in steps of 0.1, like INGV's local magnitudes
MAGNITUDE_STEP = 0.1
EPICENTRAL_KM = (3.0, 18.0)
DEPTH_KM = (2.0, 10.0)
COLOCATED_SCATTER_KM = 0.35
KM_PER_DEGREE = 111.19

#: digitiser gain, counts per m/s
GAIN_COUNTS_PER_M_S = 6.0e8
DENSITY_KG_M3 = 2700.0
RADIATION = {"P": 0.52, "S": 0.63}
FREE_SURFACE = 2.0
FC_P_OVER_FC_S = 1.5
STRESS_DROP_LOG_STD = 0.5
OMORI_C_DAYS = 1.5
#: share of events spread uniformly over each period (the rest decay as Omori's law)
BACKGROUND_FRACTION = 0.4
ANTI_ALIAS_HZ = 40.0
ANTI_ALIAS_STOP_DB = -120.0
NOISE_SCATTER_DB = 3.0
NOISE_DAY_DB = 3.0
#: secondary microseism peak above the high-frequency level, dB, at 0.2 Hz
MICROSEISM_DB = 12.0
#: the digitiser's own white noise, RMS counts (dominates above the anti-alias corner)
DIGITIZER_NOISE_COUNTS = 1.0
COMPONENT_LOG_STD = 0.2
SITE_JITTER_LOG_STD = 0.2
RISE_S = 0.03
CODA = {"P": (0.25, 1.5), "S": (0.30, 3.0)}  # relative amplitude, decay time (s)


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


def raw_paths(root: str | Path, station: str = STATION) -> dict[str, Path]:
    """The files of the record's layout under ``root`` (``data/raw``)."""
    root = Path(root)
    catalogs = root / "dset" / "data" / "catalogs" / station
    return {
        "pre_hdf5": catalogs / f"{station}_pre.hdf5",
        "post_hdf5": catalogs / f"{station}_post.hdf5",
        "pre_csv": catalogs / f"{station}_pre_attributes.csv",
        "post_csv": catalogs / f"{station}_post_attributes.csv",
        "similar": root / "dset" / f"dataframe_{station}_SelectedSimilarTraces.csv",
    }


# --------------------------------------------------------------------------------------
# catalogue
# --------------------------------------------------------------------------------------


def _iso_week(times: np.ndarray) -> np.ndarray:
    return pd.DatetimeIndex(times).isocalendar().week.to_numpy(dtype=np.int64)


def _omori_times(
    rng: np.random.Generator,
    n: int,
    origin: np.datetime64,
    start: np.datetime64,
    end: np.datetime64,
) -> np.ndarray:
    """``n`` times in [start, end]: a fraction ``BACKGROUND_FRACTION`` uniform, the rest
    with rate ∝ 1 / (t − origin + c) (Omori, p = 1)."""
    day_ms = 86_400_000.0
    c = OMORI_C_DAYS
    t0 = max((start - origin).astype(np.float64) / day_ms, 0.0) + c
    t1 = (end - origin).astype(np.float64) / day_ms + c
    u = rng.random(n)
    omori = t0 * (t1 / t0) ** u - c
    uniform = t0 + (t1 - t0) * u - c
    t = np.where(rng.random(n) < BACKGROUND_FRACTION, uniform, omori)
    return origin + np.round(t * day_ms).astype("timedelta64[ms]")


def _week_times(rng: np.random.Generator, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """One uniform time in every ISO week that [start, end] touches (1 min from edges)."""
    minute = np.timedelta64(60_000, "ms")
    first_monday = np.datetime64(
        (pd.Timestamp(start) - pd.Timedelta(days=pd.Timestamp(start).weekday())).normalize(),
        "ms",
    )
    times = []
    monday = first_monday
    while monday <= end:
        lo = max(monday, start) + minute
        hi = min(monday + np.timedelta64(7 * 86_400_000, "ms"), end) - minute
        span = (hi - lo).astype(np.int64)
        times.append(lo + np.timedelta64(int(rng.integers(0, span)), "ms"))
        monday = monday + np.timedelta64(7 * 86_400_000, "ms")
    return np.array(times, dtype="datetime64[ms]")


def _gutenberg_richter(rng: np.random.Generator, n: int, cfg: DemoConfig) -> np.ndarray:
    """Truncated Gutenberg–Richter magnitudes in bins of 0.1 from min to max.

    Drawn continuously over [min − 0.05, max + 0.05) and rounded, so that every bin,
    the end bins included, holds its full share.
    """
    lo = cfg.magnitude_min - MAGNITUDE_STEP / 2.0
    span = cfg.magnitude_max - cfg.magnitude_min + MAGNITUDE_STEP
    u = rng.random(n)
    m = lo - np.log10(1.0 - u * (1.0 - 10.0 ** (-cfg.b_value * span))) / cfg.b_value
    return np.clip(np.round(m, 1), cfg.magnitude_min, cfg.magnitude_max)


def _epicentres(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Epicentral distance (km) uniform per unit area, and station→epicentre azimuth (rad)."""
    lo, hi = EPICENTRAL_KM
    r = np.sqrt(rng.uniform(lo**2, hi**2, n))
    az = rng.uniform(0.0, 2.0 * np.pi, n)
    return r, az


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

    # -- origin times: week anchors first, then Omori-distributed events ----------------
    pre_anchor = np.concatenate(
        [
            np.array([PRE_EARLY_DAY + np.timedelta64(int(rng.integers(0, 86_340_000)), "ms")]),
            _week_times(rng, AMATRICE_ORIGIN + np.timedelta64(60_000, "ms"), PRE_END),
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
    origin = np.concatenate([pre_times, post_times])
    label = np.array(["pre"] * cfg.n_pre + ["post"] * cfg.n_post, dtype=object)
    anchor = np.zeros(len(origin), dtype=bool)
    anchor[: len(pre_anchor)] = True
    anchor[cfg.n_pre : cfg.n_pre + len(post_anchor)] = True
    early = np.zeros(len(origin), dtype=bool)
    early[0] = True

    order = np.argsort(origin, kind="stable")
    origin, label, anchor, early = origin[order], label[order], anchor[order], early[order]
    n = len(origin)

    # -- sources ----------------------------------------------------------------------
    source_id = 100_000_000 + np.cumsum(rng.integers(7, 400, n))
    magnitude = _gutenberg_richter(rng, n, cfg)
    epi_km, az_from_station = _epicentres(rng, n)
    depth_km = rng.uniform(*DEPTH_KM, n)
    stress_drop = cfg.stress_drop_mpa * np.exp(STRESS_DROP_LOG_STD * rng.standard_normal(n))
    q = np.where(label == "pre", cfg.q_pre, cfg.q_post) * np.exp(
        cfg.q_log_std * rng.standard_normal(n)
    )

    # -- co-located groups: 2–4 pre and 2–4 post events sharing a hypocentre -------------
    group = np.full(n, -1, dtype=np.int64)
    free = ~early
    for g in range(cfg.n_colocated_groups):
        c_r, c_az = _epicentres(rng, 1)
        c_depth = rng.uniform(DEPTH_KM[0] + 1.0, DEPTH_KM[1] - 1.0)
        for cls in ("pre", "post"):
            k = int(rng.integers(2, 5))
            candidates = np.flatnonzero(free & (label == cls))
            members = np.sort(rng.choice(candidates, size=k, replace=False))
            group[members] = g
            free[members] = False
            east = c_r[0] * np.sin(c_az[0]) + COLOCATED_SCATTER_KM * rng.standard_normal(k)
            north = c_r[0] * np.cos(c_az[0]) + COLOCATED_SCATTER_KM * rng.standard_normal(k)
            epi_km[members] = np.hypot(east, north)
            az_from_station[members] = np.arctan2(east, north) % (2.0 * np.pi)
            depth_km[members] = np.clip(
                c_depth + COLOCATED_SCATTER_KM * rng.standard_normal(k), *DEPTH_KM
            )

    # -- geometry and travel times --------------------------------------------------------
    lat = STATION_LATITUDE + epi_km * np.cos(az_from_station) / KM_PER_DEGREE
    lon = STATION_LONGITUDE + epi_km * np.sin(az_from_station) / (
        KM_PER_DEGREE * np.cos(np.deg2rad(STATION_LATITUDE))
    )
    vertical_km = depth_km + STATION_ELEVATION_M / 1000.0
    hypo_km = np.hypot(epi_km, vertical_km)
    p_travel = np.round(hypo_km / cfg.vp_km_s, 2)
    s_travel = np.round(hypo_km / cfg.vs_km_s, 2)
    p_s_diff = np.round(s_travel - p_travel, 2)
    incidence = np.arcsin(0.45 * epi_km / hypo_km)
    azimuth = (az_from_station + np.pi) % (2.0 * np.pi)  # source → station

    start = (
        origin
        + np.round(p_travel * 1000).astype("timedelta64[ms]")
        - np.timedelta64(int(P_ARRIVAL_S * 1000), "ms")
    )
    start = (np.round(start.astype(np.int64) / 10.0).astype(np.int64) * 10).astype("datetime64[ms]")
    fc = brune_corner_frequency_hz(magnitude, stress_drop, cfg.vs_km_s)
    local_hour = (pd.DatetimeIndex(origin).hour.to_numpy() + 1) % 24
    noise_db = (
        cfg.noise_psd_db
        + NOISE_DAY_DB * ((local_hour >= 7) & (local_hour < 19))
        + NOISE_SCATTER_DB * rng.standard_normal(n)
    )

    names = np.array([f"{STATION}.{NETWORK}.{sid}_EV" for sid in source_id], dtype=object)
    frame = pd.DataFrame(
        {
            "trace_name": names,
            "trace_start_time": [_format_start(t) for t in start],
            "network_code": NETWORK,
            "receiver_name": STATION,
            "receiver_type": CHANNEL_FAMILY,
            "receiver_elevation_m": STATION_ELEVATION_M,
            "receiver_latitude": STATION_LATITUDE,
            "receiver_longitude": STATION_LONGITUDE,
            "source_id": source_id,
            "source_depth_km": np.round(depth_km, 2),
            "source_latitude": np.round(lat, 4),
            "source_longitude": np.round(lon, 4),
            "source_magnitude": magnitude,
            "source_origin_time": [_format_origin(t) for t in origin],
            "p_travel_sec": p_travel,
            "s_travel_sec": s_travel,
            "p_s_diff_sec": p_s_diff,
            "label": label,
            "associato_ev": group,
            "defect": "",
            "n_channels": 3,
            "week": _iso_week(start),
            "epicentral_distance_km": epi_km,
            "hypocentral_distance_km": hypo_km,
            "azimuth_rad": azimuth,
            "incidence_rad": incidence,
            "q": q,
            "stress_drop_mpa": stress_drop,
            "corner_frequency_hz": fc,
            "noise_psd_db": noise_db,
            "s_arrival_sample": P_ARRIVAL_SAMPLE
            + np.round(p_s_diff * SAMPLING_RATE_HZ).astype(np.int64),
            "week_anchor": anchor,
        }
    )
    _plant_defects(frame, cfg, rng, free & ~anchor)
    return frame


def _plant_defects(
    frame: pd.DataFrame, cfg: DemoConfig, rng: np.random.Generator, free: np.ndarray
) -> None:
    """Mark the defective traces in ``frame`` (in place), never in a group or an anchor."""
    is_pre = (frame["label"] == "pre").to_numpy()
    plan = (
        [("missing_channels", True)] * cfg.n_missing_channels
        + [("nan", i % 2 == 1) for i in range(cfg.n_nan_traces)]
        + [("missing_in_hdf5", i % 2 == 0) for i in range(cfg.n_missing_in_hdf5)]
    )
    free = free.copy()
    n_missing = 0
    for kind, in_pre in plan:
        candidates = np.flatnonzero(free & (is_pre == in_pre))
        if len(candidates) == 0:
            raise DemoError(
                f"data.demo: too few {'pre' if in_pre else 'post'} traces to plant the "
                "configured defects; raise data.demo.n_pre/n_post or lower the defect counts"
            )
        i = int(rng.choice(candidates))
        free[i] = False
        frame.loc[i, "defect"] = kind
        if kind == "missing_channels":
            frame.loc[i, "n_channels"] = 2 - n_missing % 2
            n_missing += 1


def demo_defects(cfg: DemoConfig) -> DemoDefects:
    """The defective traces :func:`write_demo_dataset` plants for ``cfg``."""
    catalog = demo_catalog(cfg)
    rows = catalog[catalog["defect"] == "missing_channels"]
    return DemoDefects(
        missing_channels=dict(zip(rows["trace_name"], rows["n_channels"].astype(int), strict=True)),
        nan_traces=tuple(catalog.loc[catalog["defect"] == "nan", "trace_name"]),
        missing_in_hdf5=tuple(catalog.loc[catalog["defect"] == "missing_in_hdf5", "trace_name"]),
    )


def _format_start(t: np.datetime64) -> str:
    """``2016-10-31 00:15:23.830000+00:00`` (the record's ``trace_start_time``)."""
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


def _format_origin(t: np.datetime64) -> str:
    """``2016-10-31 00:15:27.368`` (the record's ``source_origin_time``)."""
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --------------------------------------------------------------------------------------
# spectra and waveforms
# --------------------------------------------------------------------------------------


def seismic_moment_nm(magnitude: np.ndarray) -> np.ndarray:
    """Seismic moment in N·m from moment magnitude (Hanks & Kanamori)."""
    return 10.0 ** (1.5 * np.asarray(magnitude, dtype=np.float64) + 9.1)


def brune_corner_frequency_hz(
    magnitude: np.ndarray, stress_drop_mpa: np.ndarray, vs_km_s: float
) -> np.ndarray:
    """Brune (1970) S-wave corner frequency, Hz: 0.4906 β (Δσ / M0)^(1/3), SI units."""
    m0 = seismic_moment_nm(magnitude)
    stress_pa = np.asarray(stress_drop_mpa, dtype=np.float64) * 1e6
    return 0.4906 * vs_km_s * 1000.0 * (stress_pa / m0) ** (1.0 / 3.0)


def _frequencies(n_samples: int = N_SAMPLES) -> np.ndarray:
    return np.fft.rfftfreq(n_samples, d=1.0 / SAMPLING_RATE_HZ)


def anti_alias_response(f: np.ndarray) -> np.ndarray:
    """Magnitude response of the digitiser's anti-alias FIR filter.

    Flat up to ``ANTI_ALIAS_HZ`` (0.4 × the sampling rate), then falling as a Gaussian in
    frequency to ``ANTI_ALIAS_STOP_DB`` at the Nyquist frequency.
    """
    f = np.asarray(f, dtype=np.float64)
    nyquist = SAMPLING_RATE_HZ / 2.0
    x = np.clip((f - ANTI_ALIAS_HZ) / (nyquist - ANTI_ALIAS_HZ), 0.0, None)
    return 10.0 ** (ANTI_ALIAS_STOP_DB / 20.0 * x**2)


def phase_spectrum(
    f: np.ndarray,
    phase: str,
    magnitude: np.ndarray,
    corner_frequency_hz: np.ndarray,
    hypocentral_distance_km: np.ndarray,
    travel_time_s: np.ndarray,
    q: np.ndarray,
    cfg: DemoConfig,
) -> np.ndarray:
    """Fourier amplitude spectrum of ground velocity of one phase, in m (= m/s · s).

    Parameters
    ----------
    f
        Frequencies in Hz, ``(n_freq,)``.
    phase
        ``"P"`` or ``"S"``.
    magnitude, corner_frequency_hz, hypocentral_distance_km, travel_time_s, q
        Per trace, ``(n,)``; ``corner_frequency_hz`` is the S corner.

    Returns
    -------
    ``(n, n_freq)`` float64; without the per-trace site jitter.
    """
    f = np.asarray(f, dtype=np.float64)[None, :]
    velocity_m_s = (cfg.vp_km_s if phase == "P" else cfg.vs_km_s) * 1000.0
    fc = np.asarray(corner_frequency_hz)[:, None] * (FC_P_OVER_FC_S if phase == "P" else 1.0)
    m0 = seismic_moment_nm(magnitude)[:, None]
    r_m = np.asarray(hypocentral_distance_km)[:, None] * 1000.0
    omega0 = (
        RADIATION[phase] * FREE_SURFACE * m0 / (4.0 * np.pi * DENSITY_KG_M3 * velocity_m_s**3 * r_m)
    )
    source = 2.0 * np.pi * f * omega0 / (1.0 + (f / fc) ** 2)
    path = np.exp(-np.pi * f * np.asarray(travel_time_s)[:, None] / np.asarray(q)[:, None])
    site = np.exp(-np.pi * cfg.kappa_s * f)
    return source * path * site * anti_alias_response(f)


def noise_psd(f: np.ndarray, level_db: np.ndarray) -> np.ndarray:
    """One-sided power spectral density of background ground velocity, (m/s)²/Hz.

    Acceleration PSD ``level_db`` (dB re 1 (m/s²)²/Hz, per trace ``(n,)``) above 1 Hz,
    a secondary-microseism peak (``MICROSEISM_DB`` at 0.2 Hz), converted to velocity;
    the anti-alias filter applied. Returns ``(n, n_freq)``.
    """
    f = np.maximum(np.asarray(f, dtype=np.float64), 0.05)[None, :]
    db = np.asarray(level_db, dtype=np.float64)[:, None] + MICROSEISM_DB * np.exp(
        -0.5 * (np.log10(f / 0.2) / 0.25) ** 2
    )
    return 10.0 ** (db / 10.0) / (2.0 * np.pi * f) ** 2 * anti_alias_response(f) ** 2


def _digitizer_psd() -> float:
    """One-sided PSD of the digitiser's white noise expressed as ground velocity, (m/s)²/Hz."""
    return (DIGITIZER_NOISE_COUNTS / GAIN_COUNTS_PER_M_S) ** 2 / (SAMPLING_RATE_HZ / 2.0)


def _envelopes(onset: np.ndarray, duration_s: np.ndarray, phase: str, n: int) -> np.ndarray:
    """Phase envelopes, ``(m, n)``: zero before ``onset`` (samples), then rise, direct
    wave decaying over ``duration_s`` and an exponential coda."""
    t = (np.arange(n)[None, :] - onset[:, None]) / SAMPLING_RATE_HZ
    after = np.maximum(t, 0.0)
    coda_amp, coda_s = CODA[phase]
    shape = (1.0 - np.exp(-after / RISE_S)) * (
        np.exp(-after / duration_s[:, None]) + coda_amp * np.exp(-after / coda_s)
    )
    return np.where(t >= 0.0, shape, 0.0)


def component_weights(phase: str, incidence_rad: np.ndarray, azimuth_rad: np.ndarray) -> np.ndarray:
    """RMS amplitude of a phase on E, N, Z, ``(m, 3)``, for rays of this incidence and
    azimuth (source → station). P moves along the ray; S splits evenly into SV (radial
    cos i, vertical sin i) and SH (transverse)."""
    si, ci = np.sin(incidence_rad), np.cos(incidence_rad)
    sa, ca = np.sin(azimuth_rad), np.cos(azimuth_rad)
    if phase == "P":
        return np.stack([si * np.abs(sa), si * np.abs(ca), ci], axis=-1)
    radial, transverse = ci / np.sqrt(2.0), 1.0 / np.sqrt(2.0)
    return np.stack(
        [
            np.hypot(radial * sa, transverse * ca),
            np.hypot(radial * ca, transverse * sa),
            si / np.sqrt(2.0),
        ],
        axis=-1,
    )


def _white_spectrum(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    """``rfft`` of unit-variance Gaussian white noise of length ``n`` (even), drawn directly."""
    parts = rng.standard_normal((*shape, n // 2 + 1, 2))
    spectrum = np.sqrt(n / 2.0) * (parts[..., 0] + 1j * parts[..., 1])
    spectrum[..., 0] = np.sqrt(n) * parts[..., 0, 0]
    spectrum[..., -1] = np.sqrt(n) * parts[..., -1, 0]
    return spectrum


@dataclass(frozen=True)
class _TraceDraws:
    """Every random number one trace's synthesis needs, from its own generator."""

    jitter_amp: np.ndarray  # (3,)
    jitter_phase: np.ndarray  # (3,)
    component: np.ndarray  # (2, 3) log-normal factors, P and S
    spectra: np.ndarray  # (3 sources: P, S, noise; 3 channels; n_freq) complex
    digitizer: np.ndarray  # (3, n) counts


def _draw(seed: int, source_id: int, n: int) -> _TraceDraws:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, source_id]))
    return _TraceDraws(
        jitter_amp=SITE_JITTER_LOG_STD / np.sqrt(1.5) * rng.standard_normal(3),
        jitter_phase=rng.uniform(0.0, 2.0 * np.pi, 3),
        component=np.exp(COMPONENT_LOG_STD * rng.standard_normal((2, 3))),
        spectra=_white_spectrum(rng, (3, 3), n),
        digitizer=DIGITIZER_NOISE_COUNTS * rng.standard_normal((3, n)),
    )


def _site_jitter(f: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Smooth random log-amplitude perturbations over log frequency, ``(m, n_freq)``:
    three cosines per trace, standard deviation ``SITE_JITTER_LOG_STD`` in ln units."""
    x = np.log(np.maximum(f, 0.5) / 0.5) / np.log(SAMPLING_RATE_HZ / 2.0 / 0.5)
    k = np.arange(1, 4)[None, :, None]
    arg = np.pi * k * x[None, None, :] + phase[:, :, None]
    return np.exp((amp[:, :, None] * np.cos(arg)).sum(axis=1))


def synthesize_waveforms(
    catalog: pd.DataFrame, cfg: DemoConfig, chunk_size: int = 64
) -> np.ndarray:
    """Three-component waveforms of catalogue rows, ``(n, 3, 2500)`` float64 in counts.

    ``catalog`` holds the columns of :func:`demo_catalog` (change any of its physical
    columns to synthesise a variant of an event). Each trace is drawn from its own
    generator, seeded by ``cfg.seed`` and its ``source_id``: the same row gives the same
    waveform whatever else is synthesised with it. Defects are not applied here.
    """
    n = N_SAMPLES
    dt = 1.0 / SAMPLING_RATE_HZ
    f = _frequencies(n)
    out = np.empty((len(catalog), 3, n))
    for lo in range(0, len(catalog), chunk_size):
        rows = catalog.iloc[lo : lo + chunk_size]
        draws = [_draw(cfg.seed, int(sid), n) for sid in rows["source_id"]]
        jitter = _site_jitter(
            f, np.stack([d.jitter_amp for d in draws]), np.stack([d.jitter_phase for d in draws])
        )
        spectra = np.stack([d.spectra for d in draws])  # (m, 3, 3, n_freq)
        component = np.stack([d.component for d in draws])  # (m, 2, 3)
        hypo = rows["hypocentral_distance_km"].to_numpy(dtype=np.float64)
        fc_s = rows["corner_frequency_hz"].to_numpy(dtype=np.float64)
        incidence = rows["incidence_rad"].to_numpy(dtype=np.float64)
        azimuth = rows["azimuth_rad"].to_numpy(dtype=np.float64)
        onsets = {
            "P": np.full(len(rows), P_ARRIVAL_SAMPLE),
            "S": rows["s_arrival_sample"].to_numpy(dtype=np.int64),
        }
        travel = {"P": rows["p_travel_sec"], "S": rows["s_travel_sec"]}
        signal = np.zeros((len(rows), 3, n))
        for k, phase in enumerate(("P", "S")):
            amplitude = jitter * phase_spectrum(
                f,
                phase,
                rows["source_magnitude"].to_numpy(dtype=np.float64),
                fc_s,
                hypo,
                travel[phase].to_numpy(dtype=np.float64),
                rows["q"].to_numpy(dtype=np.float64),
                cfg,
            )
            fc = fc_s * (FC_P_OVER_FC_S if phase == "P" else 1.0)
            envelope = _envelopes(onsets[phase], 1.0 / fc + 0.05 * hypo, phase, n)
            # scale so that the windowed wavelet's Fourier amplitude spectrum is `amplitude`
            scale = 1.0 / (dt * np.sqrt(np.sum(envelope**2, axis=1)))
            weights = component_weights(phase, incidence, azimuth) * component[:, k]
            coloured = np.fft.irfft(spectra[:, k] * amplitude[:, None, :], n=n, axis=-1)
            signal += (scale[:, None] * weights)[:, :, None] * coloured * envelope[:, None, :]
        psd = noise_psd(f, rows["noise_psd_db"].to_numpy(dtype=np.float64))
        noise = np.fft.irfft(
            spectra[:, 2] * np.sqrt(psd * SAMPLING_RATE_HZ / 2.0)[:, None, :], n=n, axis=-1
        )
        digitizer = np.stack([d.digitizer for d in draws])
        out[lo : lo + len(rows)] = (signal + noise) * GAIN_COUNTS_PER_M_S + digitizer
    return out


# --------------------------------------------------------------------------------------
# ground truth for explanations
# --------------------------------------------------------------------------------------


def discriminative_band_hz(cfg: DemoConfig, fraction: float = 0.5) -> tuple[float, float]:
    """Frequency band (Hz) in which pre and post spectrograms differ most.

    For every event of the demo catalogue, the expected power over the S wave (signal
    spectrum spread over its duration, plus the background noise) is computed twice, with
    ``q_pre`` and with ``q_post``; the mean absolute difference of log10 power is a
    function of frequency, zero at 0 Hz (no attenuation) and again at high frequency
    (both drown in noise). The band is where it exceeds ``fraction`` of its maximum, on
    the spectrogram's frequency grid (0–50 Hz in 33 steps). A correct explanation of a
    model trained on the demo should put most of its mass inside it.
    """
    catalog = demo_catalog(cfg)
    f = np.fft.rfftfreq(64, d=1.0 / SAMPLING_RATE_HZ)
    hypo = catalog["hypocentral_distance_km"].to_numpy()
    duration = 1.0 / catalog["corner_frequency_hz"].to_numpy() + 0.05 * hypo
    noise = noise_psd(f, catalog["noise_psd_db"].to_numpy()) + _digitizer_psd()
    power = []
    for q in (cfg.q_pre, cfg.q_post):
        spectrum = phase_spectrum(
            f,
            "S",
            catalog["source_magnitude"].to_numpy(),
            catalog["corner_frequency_hz"].to_numpy(),
            hypo,
            catalog["s_travel_sec"].to_numpy(),
            np.full(len(catalog), q),
            cfg,
        )
        power.append(np.log10(spectrum**2 / duration[:, None] + noise))
    diff = np.abs(power[0] - power[1]).mean(axis=0)
    if not diff.max() > 0:
        raise DemoError("data.demo.q_pre equals q_post: pre and post do not differ")
    inside = np.flatnonzero(diff >= fraction * diff.max())
    return float(f[inside[0]]), float(f[inside[-1]])


# --------------------------------------------------------------------------------------
# writing the record's layout
# --------------------------------------------------------------------------------------


def _write_hdf5(path: Path, names: list[str], waveforms: list[np.ndarray]) -> None:
    """One root dataset per trace, written without timestamps (byte-reproducible)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as fh:
            for name, data in zip(names, waveforms, strict=True):
                fh.create_dataset(name, data=data, dtype="<f8", track_times=False)


def write_demo_dataset(cfg: DemoConfig, root: str | Path) -> None:
    """Write the demo data set under ``root`` (``data/raw``) in the record's layout.

    Parameters
    ----------
    cfg
        ``data.demo`` of ``params.yaml``.
    root
        Target folder; the files of :func:`raw_paths` are (over)written atomically, one
        by one. The same ``cfg`` gives byte-identical files.
    """
    paths = raw_paths(root)
    catalog = demo_catalog(cfg)
    log.info("demo: synthesising %d traces (seed %d)", len(catalog), cfg.seed)
    waveforms = synthesize_waveforms(catalog, cfg)
    for i, row in catalog.iterrows():
        if row["defect"] == "nan":
            gap = slice(1000, 1000 + int(SAMPLING_RATE_HZ))
            waveforms[i, :, gap] = np.nan
    for cls in ("pre", "post"):
        rows = catalog.index[catalog["label"] == cls]
        names, data = [], []
        for i in rows:
            if catalog.at[i, "defect"] == "missing_in_hdf5":
                continue
            names.append(catalog.at[i, "trace_name"])
            data.append(waveforms[i, : catalog.at[i, "n_channels"]])
        _write_hdf5(paths[f"{cls}_hdf5"], names, data)
        attributes = catalog.loc[rows, list(ATTRIBUTE_COLUMNS)].reset_index(drop=True)
        write_csv(paths[f"{cls}_csv"], attributes)
    grouped = catalog[catalog["associato_ev"] >= 0]
    similar = pd.DataFrame(
        {
            "trace_name": grouped["trace_name"].astype(object).to_numpy(),
            "associato_ev": grouped["associato_ev"].to_numpy(dtype=np.int64),
        }
    )
    similar["trace_name"] = similar["trace_name"].astype(object)
    # plain object labels too: with pyarrow installed, pandas 3 would pickle the column labels
    # as an ArrowStringArray, which neither the study's pandas nor our restricted loader reads
    similar.columns = pd.Index(list(similar.columns), dtype=object)
    with atomic_path(paths["similar"]) as tmp:
        similar.to_pickle(tmp, compression=None, protocol=4)
    log.info("demo: wrote %s", ", ".join(str(p) for p in paths.values()))
