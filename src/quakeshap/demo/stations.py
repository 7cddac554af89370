"""The demo's stations: the same events recorded at several stations around Norcia.

The study used one station, NRCA; its sibling study trained on nine (FDMO, MC2, MMO1, NRCA,
T1212, T1213, T1214, T1216, T1244; ``docs/stations.md``). ``data.demo.stations`` names the
stations the demo writes, each in its own folder of the record's layout. NRCA alone (the
default) gives the demo's bytes as before.

*Geometry.* NRCA sits at its real coordinates (:data:`quakeshap.record.NRCA`). The other
eight are **synthetic**: their codes are those of the sibling study, but they are placed
here plausibly around Norcia (2–25 km from NRCA, at elevations of 400–1300 m), not at
their real sites; :data:`DEMO_STATIONS` marks them.

*What changes from station to station* (:func:`station_catalog`): the epicentral and
hypocentral distances, the azimuth and incidence, hence the P and S travel times, the
trace start and the S arrival (straight rays in the same half-space as NRCA's,
:mod:`quakeshap.demo.catalog`); the site attenuation κ (``kappa_s`` of the station, in
place of ``data.demo.kappa_s``); the background-noise level (the station's offset, its
own day/night cycle and scatter, drawn from a stream of its own); and every random draw of
the waveforms (a seed of the station's own). *What stays:* the events (origin times,
magnitudes, hypocentres, stress drops), each event's Q (the pre/post contrast is a
property of the crust the rays cross, the same for every station) and the co-located
groups. The defects of the real record are planted at NRCA only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from quakeshap import detmath
from quakeshap.config import DemoConfig
from quakeshap.demo.catalog import (
    KM_PER_DEGREE,
    NOISE_DAY_DB,
    NOISE_SCATTER_DB,
    STATION,
    demo_catalog,
)
from quakeshap.record import (
    CHANNELS,
    NRCA,
    P_ARRIVAL_S,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    Station,
    iso_week,
)


@dataclass(frozen=True)
class DemoStation:
    """A station of the demo: where it is, its site attenuation and noise level."""

    station: Station
    #: site attenuation exp(-π κ f) of this station, s
    kappa_s: float
    #: background noise relative to ``data.demo.noise_psd_db``, dB
    noise_offset_db: float
    #: True when the coordinates are made up (only NRCA's are the real ones)
    synthetic: bool = True


def _synthetic(network: str, code: str, lat: float, lon: float, elevation_m: float) -> Station:
    return Station(network, code, "HH", latitude=lat, longitude=lon, elevation_m=elevation_m)


#: the sibling study's nine stations, by code; all but NRCA placed synthetically
DEMO_STATIONS: dict[str, DemoStation] = {
    "NRCA": DemoStation(NRCA, kappa_s=0.02, noise_offset_db=0.0, synthetic=False),
    "FDMO": DemoStation(_synthetic("IV", "FDMO", 43.0365, 13.0873, 550.0), 0.030, 2.0),
    "MC2": DemoStation(_synthetic("IV", "MC2", 42.9110, 13.1880, 1180.0), 0.018, -3.0),
    "MMO1": DemoStation(_synthetic("IV", "MMO1", 42.8990, 13.3270, 960.0), 0.026, 1.0),
    "T1212": DemoStation(_synthetic("3A", "T1212", 42.7590, 13.0390, 720.0), 0.035, 5.0),
    "T1213": DemoStation(_synthetic("3A", "T1213", 42.7930, 13.0960, 610.0), 0.032, 6.0),
    "T1214": DemoStation(_synthetic("3A", "T1214", 42.8550, 13.0610, 830.0), 0.024, 4.0),
    "T1216": DemoStation(_synthetic("3A", "T1216", 42.8120, 13.1960, 1300.0), 0.028, 3.0),
    "T1244": DemoStation(_synthetic("3A", "T1244", 42.7160, 13.1240, 900.0), 0.022, 2.5),
}


def _station_number(code: str) -> int:
    """A stable 32-bit number of a station code: its random streams' key."""
    return int.from_bytes(hashlib.sha256(code.encode()).digest()[:4], "little")


def station_seed(cfg: DemoConfig, code: str) -> int:
    """The seed of a station's waveform draws (``data.demo.seed`` itself for NRCA)."""
    if code == STATION.code:
        return cfg.seed
    state = np.random.SeedSequence([cfg.seed, _station_number(code)]).generate_state(1)
    return int(state[0])


def station_config(cfg: DemoConfig, code: str) -> DemoConfig:
    """``data.demo`` as a station's synthesis sees it: its κ and its seed."""
    if code == STATION.code:
        return cfg
    return replace(cfg, kappa_s=DEMO_STATIONS[code].kappa_s, seed=station_seed(cfg, code))


def _offset_km(station: Station) -> tuple[float, float]:
    """(east, north) of ``station`` from NRCA, km (flat Earth, as the catalogue's rays)."""
    cos_lat = float(detmath.cos(STATION.latitude * (np.pi / 180.0)))
    east = (station.longitude - STATION.longitude) * KM_PER_DEGREE * cos_lat
    north = (station.latitude - STATION.latitude) * KM_PER_DEGREE
    return east, north


def station_catalog(cfg: DemoConfig, code: str, nrca: pd.DataFrame | None = None) -> pd.DataFrame:
    """The demo catalogue (:func:`quakeshap.demo.demo_catalog`) as recorded at ``code``.

    ``nrca``: the NRCA catalogue of ``cfg``, when already computed. For NRCA it is
    returned unchanged; for another station the station-dependent columns are recomputed
    (module docstring) and the defects removed.
    """
    if code not in DEMO_STATIONS:
        raise ValueError(f"unknown demo station {code!r}; known: {sorted(DEMO_STATIONS)}")
    nrca = demo_catalog(cfg) if nrca is None else nrca
    if code == STATION.code:
        return nrca
    site = DEMO_STATIONS[code]
    station = site.station
    out = nrca.copy()
    # the epicentre from NRCA (azimuth_rad is source → NRCA), then from this station
    from_nrca = (nrca["azimuth_rad"].to_numpy() - np.pi) % (2.0 * np.pi)
    epi_nrca = nrca["epicentral_distance_km"].to_numpy()
    dx, dy = _offset_km(station)
    east = epi_nrca * detmath.sin(from_nrca) - dx
    north = epi_nrca * detmath.cos(from_nrca) - dy
    epi_km = detmath.hypot(east, north)
    depth_km = nrca["source_depth_km"].to_numpy(dtype=np.float64)
    hypo_km = detmath.hypot(epi_km, depth_km + station.elevation_m / 1000.0)
    p_travel = np.round(hypo_km / cfg.vp_km_s, 2)
    s_travel = np.round(hypo_km / cfg.vs_km_s, 2)
    p_s_diff = np.round(s_travel - p_travel, 2)
    origin = pd.to_datetime(nrca["source_origin_time"]).to_numpy().astype("datetime64[ms]")
    start = (
        origin
        + np.round(p_travel * 1000).astype("timedelta64[ms]")
        - np.timedelta64(int(P_ARRIVAL_S * 1000), "ms")
    )
    start = (np.round(start.astype(np.int64) / 10.0).astype(np.int64) * 10).astype("datetime64[ms]")
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, _station_number(code)]))
    local_hour = (pd.DatetimeIndex(origin).hour.to_numpy() + 1) % 24
    noise_db = (
        cfg.noise_psd_db
        + site.noise_offset_db
        + NOISE_DAY_DB * ((local_hour >= 7) & (local_hour < 19))
        + NOISE_SCATTER_DB * rng.standard_normal(len(out))
    )
    out["trace_name"] = [station.trace_name(sid) for sid in nrca["source_id"]]
    out["trace_start_time"] = [
        pd.Timestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00" for t in start
    ]
    for column, value in station.receiver_columns().items():
        out[column] = value
    out["p_travel_sec"] = p_travel
    out["s_travel_sec"] = s_travel
    out["p_s_diff_sec"] = p_s_diff
    out["defect"] = ""
    out["n_channels"] = len(CHANNELS)
    out["week"] = iso_week(pd.Series(start))
    out["epicentral_distance_km"] = epi_km
    out["hypocentral_distance_km"] = hypo_km
    out["azimuth_rad"] = (detmath.arctan2(east, north) + np.pi) % (2.0 * np.pi)
    out["incidence_rad"] = detmath.arcsin(0.45 * epi_km / hypo_km)
    out["noise_psd_db"] = noise_db
    out["s_arrival_sample"] = P_ARRIVAL_SAMPLE + np.round(p_s_diff * SAMPLING_RATE_HZ).astype(
        np.int64
    )
    return out
