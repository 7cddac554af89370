"""The demo generator: the record's layout and formats, determinism, physics, defects."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakeshap import demo
from quakeshap.artifacts import raw
from quakeshap.config import ConfigError, DemoConfig
from quakeshap.demo.catalog import (
    AMATRICE_ORIGIN,
    DEPTH_KM,
    KM_PER_DEGREE,
    POST_END,
    POST_START,
    PRE_EARLY_DAY,
    PRE_END,
    STATION,
)
from quakeshap.demo.physics import brune_corner_frequency_hz, phase_spectrum
from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    MAINSHOCK_ORIGIN_UTC,
    P_ARRIVAL_S,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    TRACE_SAMPLES,
    attributes_path,
    hdf5_path,
    iso_week,
    similar_traces_path,
)
from quakeshap.unpickle import load_similar_traces

SMALL = DemoConfig(n_pre=40, n_post=30, n_colocated_groups=2)
PRE, POST = CLASS_NAMES
TRACE_NAME = re.compile(rf"^{STATION.code}\.{STATION.network}\.\d{{9}}_EV$")
START_FORMAT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$")
ORIGIN_FORMAT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")
#: the attribute columns the record holds as text (names, codes, types, times); every other
#: one is a finite number
TEXT_ATTRIBUTES = tuple(
    c for c in raw.ATTRIBUTE_COLUMNS if c.endswith(("_name", "_code", "_type", "_time"))
)
#: 8 s from the P arrival: P, S and the start of the coda
SIGNAL = slice(P_ARRIVAL_SAMPLE, P_ARRIVAL_SAMPLE + 800)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    demo.write_demo_dataset(SMALL, root)
    return root


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return demo.demo_catalog(SMALL)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _traces(root: Path, cls: str) -> dict[str, np.ndarray]:
    with raw.open_hdf5(hdf5_path(root, STATION.code, cls)) as fh:
        return {name: fh[name][()] for name in fh}


def _attributes(root: Path, cls: str) -> pd.DataFrame:
    return raw.read_attributes(attributes_path(root, STATION.code, cls))


def _event(catalog: pd.DataFrame, **changes: float) -> pd.DataFrame:
    """One clean catalogue row with physical columns changed (derived ones kept coherent)."""
    row = catalog[(catalog["defect"] == "") & (catalog["label"] == PRE)].iloc[[0]].copy()
    for key, value in changes.items():
        row[key] = value
    row["corner_frequency_hz"] = brune_corner_frequency_hz(
        row["source_magnitude"], row["stress_drop_mpa"], SMALL.vs_km_s
    )
    return row.reset_index(drop=True)


def _band_energy(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    f = np.fft.rfftfreq(x.shape[-1], d=1.0 / SAMPLING_RATE_HZ)
    return float(spectrum[..., (f >= lo_hz) & (f < hi_hz)].sum())


# --------------------------------------------------------------------------------------
# layout and formats
# --------------------------------------------------------------------------------------


def test_layout_is_the_records(written: Path) -> None:
    expected = {similar_traces_path(written, STATION.code)}
    for cls in CLASS_NAMES:
        expected |= {
            hdf5_path(written, STATION.code, cls),
            attributes_path(written, STATION.code, cls),
        }
    assert {p for p in written.rglob("*") if p.is_file()} == expected
    assert raw.list_stations(written) == [STATION.code]


@pytest.mark.parametrize("cls", CLASS_NAMES)
def test_hdf5_holds_one_root_dataset_per_trace(written: Path, cls: str) -> None:
    defects = demo.demo_defects(SMALL)
    traces = _traces(written, cls)
    listed = _attributes(written, cls)["trace_name"]
    assert set(traces) == set(listed) - set(defects.missing_in_hdf5)
    for name, data in traces.items():
        assert TRACE_NAME.match(name)
        assert data.dtype == np.float64
        channels = defects.missing_channels.get(name, len(CHANNELS))
        assert data.shape == (channels, TRACE_SAMPLES)
        assert np.isnan(data).any() == (name in defects.nan_traces)


@pytest.mark.parametrize("cls", CLASS_NAMES)
def test_attribute_csv_columns_and_formats(written: Path, cls: str) -> None:
    csv = pd.read_csv(attributes_path(written, STATION.code, cls), dtype=str)
    assert tuple(csv.columns) == raw.ATTRIBUTE_COLUMNS
    assert csv["trace_start_time"].str.match(START_FORMAT).all()
    assert csv["source_origin_time"].str.match(ORIGIN_FORMAT).all()
    assert (csv["trace_name"] == csv["source_id"].map(STATION.trace_name)).all()
    assert set(csv["network_code"]) == {STATION.network}
    assert set(csv["receiver_name"]) == {STATION.code}
    assert set(csv["receiver_type"]) == {STATION.channel_family}
    numbers = csv.drop(columns=list(TEXT_ATTRIBUTES)).astype(float)
    assert np.isfinite(numbers.to_numpy()).all()
    assert (numbers["receiver_latitude"] == STATION.latitude).all()
    assert (numbers["receiver_elevation_m"] == STATION.elevation_m).all()


def test_trace_names_are_unique_across_files(written: Path) -> None:
    names = pd.concat([_attributes(written, cls)["trace_name"] for cls in CLASS_NAMES])
    assert names.is_unique
    assert len(names) == SMALL.n_pre + SMALL.n_post


def test_similar_traces_pickle_lists_colocated_pre_post_groups(
    written: Path, catalog: pd.DataFrame
) -> None:
    path = similar_traces_path(written, STATION.code)
    pickled = pd.read_pickle(path)  # the record's format: a plain pandas pickle
    assert tuple(pickled.columns) == raw.SIMILAR_COLUMNS
    assert pickled["trace_name"].dtype == object
    assert pickled["associato_ev"].dtype == np.int64
    similar = load_similar_traces(path)  # and the restricted loader reads it
    pd.testing.assert_frame_equal(similar, pickled, check_dtype=False)
    assert set(similar["associato_ev"]) == set(range(SMALL.n_colocated_groups))
    rows = catalog.set_index("trace_name").loc[similar["trace_name"]]
    rows["group"] = similar["associato_ev"].to_numpy()
    km_per_degree_east = KM_PER_DEGREE * np.cos(np.deg2rad(STATION.latitude))
    for _, members in rows.groupby("group"):
        assert set(members["label"]) == set(CLASS_NAMES)
        assert (members["defect"] == "").all()
        lat_km = (members["source_latitude"] - members["source_latitude"].mean()) * KM_PER_DEGREE
        lon_km = (
            members["source_longitude"] - members["source_longitude"].mean()
        ) * km_per_degree_east
        depth = members["source_depth_km"] - members["source_depth_km"].mean()
        assert float(np.sqrt(lat_km**2 + lon_km**2 + depth**2).median()) < 1.0


# --------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(written: Path, tmp_path: Path) -> None:
    demo.write_demo_dataset(SMALL, tmp_path)
    assert _digests(tmp_path) == _digests(written)


def test_another_seed_gives_other_data(written: Path, tmp_path: Path) -> None:
    demo.write_demo_dataset(dataclasses.replace(SMALL, seed=SMALL.seed + 1), tmp_path)
    mine, theirs = _digests(tmp_path), _digests(written)
    assert mine.keys() == theirs.keys()
    assert all(mine[k] != theirs[k] for k in mine)


def test_a_trace_does_not_depend_on_its_batch(catalog: pd.DataFrame) -> None:
    clean = catalog[catalog["defect"] == ""].reset_index(drop=True)
    together = demo.synthesize_waveforms(clean.iloc[:5], SMALL, chunk_size=2)
    alone = demo.synthesize_waveforms(clean.iloc[[3]], SMALL)
    np.testing.assert_array_equal(together[3], alone[0])


# --------------------------------------------------------------------------------------
# catalogue: times, weeks, magnitudes, travel times
# --------------------------------------------------------------------------------------


def test_origin_times_respect_the_record_windows(catalog: pd.DataFrame) -> None:
    origin = pd.to_datetime(catalog["source_origin_time"])
    pre, post = origin[catalog["label"] == PRE], origin[catalog["label"] == POST]
    assert pre.max() <= pd.Timestamp(PRE_END)
    assert (pre < pd.Timestamp(AMATRICE_ORIGIN)).sum() == 1
    assert pre.min().date() == pd.Timestamp(PRE_EARLY_DAY).date()
    assert post.min() >= pd.Timestamp(POST_START)
    assert post.max() <= pd.Timestamp(POST_END)
    mainshock = MAINSHOCK_ORIGIN_UTC.tz_convert(None)
    assert pre.max() < mainshock < post.min()
    # nothing in the gap around the mainshock; sorted by time
    assert origin.is_monotonic_increasing


def test_every_iso_week_is_populated(catalog: pd.DataFrame) -> None:
    weeks = iso_week(catalog["trace_start_time"])
    assert set(weeks[catalog["label"] == PRE]) == set(range(33, 44))
    assert set(weeks[catalog["label"] == POST]) == set(range(44, 52))
    assert (weeks == catalog["week"].to_numpy()).all()
    # losing every defective trace leaves every week populated
    clean = catalog[catalog["defect"] == ""]
    assert set(clean["week"]) == set(range(33, 52))


def test_events_decay_after_each_mainshock() -> None:
    catalog = demo.demo_catalog(DemoConfig())
    counts = catalog.groupby(["label", "week"]).size()
    assert counts[PRE][34] > 3 * counts[PRE][42]
    assert counts[POST][44] > 3 * counts[POST][50]


def test_magnitudes_follow_gutenberg_richter() -> None:
    cfg = DemoConfig()
    m = demo.demo_catalog(cfg)["source_magnitude"].to_numpy()
    assert m.min() >= cfg.magnitude_min and m.max() <= cfg.magnitude_max
    np.testing.assert_array_equal(m, np.round(m, 1))
    # b-value by Aki's maximum likelihood (binned: Utsu's correction) within 15 %
    b = np.log10(np.e) / (m.mean() - (cfg.magnitude_min - 0.05))
    assert abs(b - cfg.b_value) < 0.15 * cfg.b_value


def test_travel_times_follow_the_hypocentral_distance(catalog: pd.DataFrame) -> None:
    hypo = catalog["hypocentral_distance_km"]
    np.testing.assert_allclose(catalog["p_travel_sec"], hypo / SMALL.vp_km_s, atol=0.006)
    np.testing.assert_allclose(catalog["s_travel_sec"], hypo / SMALL.vs_km_s, atol=0.006)
    np.testing.assert_allclose(
        catalog["p_s_diff_sec"], catalog["s_travel_sec"] - catalog["p_travel_sec"], atol=1e-9
    )
    assert catalog["source_depth_km"].between(*DEPTH_KM).all()
    assert catalog["p_s_diff_sec"].between(0.5, 2.8).all()
    # hypocentral distance from the written coordinates (flat Earth, 4-decimal rounding)
    north = (catalog["source_latitude"] - STATION.latitude) * KM_PER_DEGREE
    east = (
        (catalog["source_longitude"] - STATION.longitude)
        * KM_PER_DEGREE
        * np.cos(np.deg2rad(STATION.latitude))
    )
    vertical = catalog["source_depth_km"] + STATION.elevation_m / 1000.0
    np.testing.assert_allclose(np.sqrt(north**2 + east**2 + vertical**2), hypo, atol=0.03)


def test_trace_starts_five_seconds_before_p(catalog: pd.DataFrame) -> None:
    start = pd.to_datetime(catalog["trace_start_time"]).dt.tz_localize(None)
    origin = pd.to_datetime(catalog["source_origin_time"])
    p_in_trace = (origin - start).dt.total_seconds() + catalog["p_travel_sec"]
    np.testing.assert_allclose(p_in_trace, P_ARRIVAL_S, atol=0.0051)
    assert (start.dt.microsecond % 10_000 == 0).all()  # on the 100 Hz sample grid


def test_classes_differ_only_in_q() -> None:
    catalog = demo.demo_catalog(DemoConfig())
    pre, post = catalog[catalog["label"] == PRE], catalog[catalog["label"] == POST]
    ratio = post["q"].median() / pre["q"].median()
    assert 0.4 < ratio < 0.6  # q_post / q_pre = 0.5
    for column in ("hypocentral_distance_km", "p_s_diff_sec", "source_magnitude"):
        assert abs(pre[column].median() - post[column].median()) < 0.15 * pre[column].median()


# --------------------------------------------------------------------------------------
# physics of the waveforms
# --------------------------------------------------------------------------------------


def test_p_onset_at_the_p_arrival_sample(catalog: pd.DataFrame) -> None:
    (trace,) = demo.synthesize_waveforms(_event(catalog, source_magnitude=3.0), SMALL)
    p = P_ARRIVAL_SAMPLE
    before = np.mean(trace[:, p - 100 : p - 5] ** 2)
    after = np.mean(trace[:, p : p + 100] ** 2)
    assert after > 1e3 * before
    assert np.mean(trace[:, p : p + 5] ** 2) > 10 * before  # the jump starts at P


def test_s_arrival_at_p_plus_p_s_time(catalog: pd.DataFrame) -> None:
    event = _event(catalog, source_magnitude=3.0)
    (trace,) = demo.synthesize_waveforms(event, SMALL)
    s = int(event.at[0, "s_arrival_sample"])
    assert s == P_ARRIVAL_SAMPLE + round(SAMPLING_RATE_HZ * event.at[0, "p_s_diff_sec"])
    horizontal = trace[:2]
    before = np.mean(horizontal[:, s - 40 : s - 5] ** 2)
    after = np.mean(horizontal[:, s : s + 40] ** 2)
    assert after > 5 * before
    # S is stronger on the horizontals (E, N) than on the vertical (Z), P the other way round
    assert np.mean(trace[:2, s : s + 100] ** 2) > 2 * np.mean(trace[2, s : s + 100] ** 2)
    p_to_s = slice(P_ARRIVAL_SAMPLE, s - 5)
    assert np.mean(trace[2, p_to_s] ** 2) > np.mean(trace[:2, p_to_s] ** 2)


def test_post_loses_more_high_frequency_than_pre(catalog: pd.DataFrame) -> None:
    """The same event with q_pre and with q_post: post has less energy at high frequency."""
    pre = _event(catalog, source_magnitude=2.5, q=SMALL.q_pre)
    post = _event(catalog, source_magnitude=2.5, q=SMALL.q_post)
    (x_pre,), (x_post,) = (
        demo.synthesize_waveforms(pre, SMALL),
        demo.synthesize_waveforms(post, SMALL),
    )
    for lo, hi in ((20.0, 40.0), (10.0, 20.0)):
        assert _band_energy(x_post[:, SIGNAL], lo, hi) < 0.6 * _band_energy(
            x_pre[:, SIGNAL], lo, hi
        )
    # at low frequency, attenuation hardly matters
    ratio_low = _band_energy(x_post[:, SIGNAL], 1.0, 3.0) / _band_energy(x_pre[:, SIGNAL], 1.0, 3.0)
    assert ratio_low > 0.7


def test_post_has_less_high_frequency_energy_on_average() -> None:
    cfg = DemoConfig(n_pre=60, n_post=60, n_colocated_groups=2)
    catalog = demo.demo_catalog(cfg)
    catalog = catalog[(catalog["defect"] == "") & (catalog["source_magnitude"] >= 1.2)]
    x = demo.synthesize_waveforms(catalog, cfg)[:, :, SIGNAL]
    ratio = np.array([_band_energy(t, 20, 40) / _band_energy(t, 2, 10) for t in x])
    is_pre = (catalog["label"] == PRE).to_numpy()
    assert np.median(np.log(ratio[is_pre])) > np.median(np.log(ratio[~is_pre])) + 0.5


def test_corner_frequency_decreases_with_magnitude() -> None:
    magnitude = np.arange(0.5, 3.6, 0.5)
    fc = brune_corner_frequency_hz(magnitude, 3.0, 3.4)
    assert np.all(np.diff(fc) < 0)
    # ω² model: a unit of magnitude lowers fc by 10^(1.5/3)
    np.testing.assert_allclose(fc[:-2] / fc[2:], 10**0.5)
    assert 2 < fc[-1] < 10 and 50 < fc[0] < 200  # Hz, for M 3.5 and M 0.5
    # and the displacement spectrum falls off above it: velocity peaks near fc
    f = np.linspace(0.1, 50, 500)
    big = np.array([3.5])
    spectrum = phase_spectrum(
        f,
        "S",
        big,
        brune_corner_frequency_hz(big, 3.0, 3.4),
        np.array([10.0]),
        np.array([0.0]),
        np.array([1e9]),
        dataclasses.replace(SMALL, kappa_s=0.0),
    )[0]
    peak = f[np.argmax(spectrum)]
    fc_big = float(brune_corner_frequency_hz(big, 3.0, 3.4)[0])
    assert 0.7 * fc_big < peak < 1.3 * fc_big


def test_amplitude_decreases_with_distance(catalog: pd.DataFrame) -> None:
    near = _event(catalog, source_magnitude=2.5, hypocentral_distance_km=5.0)
    far = _event(catalog, source_magnitude=2.5, hypocentral_distance_km=20.0)
    # keep the arrival samples: only the amplitude term is under test here
    (x_near,), (x_far,) = (
        demo.synthesize_waveforms(near, SMALL),
        demo.synthesize_waveforms(far, SMALL),
    )
    assert np.abs(x_near[:, SIGNAL]).max() > 3 * np.abs(x_far[:, SIGNAL]).max()


def test_background_noise_before_p(catalog: pd.DataFrame) -> None:
    (trace,) = demo.synthesize_waveforms(_event(catalog), SMALL)
    noise = trace[:, : P_ARRIVAL_SAMPLE - 10]
    assert np.all(noise.std(axis=1) > 0)
    assert np.isfinite(trace).all()


def test_discriminative_band_is_a_narrow_high_frequency_band() -> None:
    lo, hi = demo.discriminative_band_hz(DemoConfig())
    assert 5.0 < lo < hi < 50.0
    assert hi - lo < 35.0
    # more contrast between the classes does not move the band to low frequencies
    lo2, _ = demo.discriminative_band_hz(dataclasses.replace(DemoConfig(), q_post=100.0))
    assert lo2 > 5.0


def test_discriminative_band_needs_a_q_contrast() -> None:
    with pytest.raises(demo.DemoError, match="q_pre"):
        demo.discriminative_band_hz(dataclasses.replace(SMALL, q_post=SMALL.q_pre))


# --------------------------------------------------------------------------------------
# defects and configuration
# --------------------------------------------------------------------------------------


def test_defects_are_planted_as_configured(written: Path) -> None:
    defects = demo.demo_defects(SMALL)
    assert len(defects.missing_channels) == SMALL.n_missing_channels
    assert sorted(defects.missing_channels.values()) == [1, 2, 2]
    assert len(defects.nan_traces) == SMALL.n_nan_traces
    assert len(defects.missing_in_hdf5) == SMALL.n_missing_in_hdf5
    assert len(defects.all) == 5  # all distinct
    listed = {name for cls in CLASS_NAMES for name in _attributes(written, cls)["trace_name"]}
    stored = {name for cls in CLASS_NAMES for name in _traces(written, cls)}
    assert listed - stored == set(defects.missing_in_hdf5)
    assert defects.all <= listed


def test_no_defects_when_none_configured(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, n_missing_channels=0, n_nan_traces=0, n_missing_in_hdf5=0)
    defects = demo.demo_defects(cfg)
    assert not defects.all
    demo.write_demo_dataset(cfg, tmp_path)
    for cls in CLASS_NAMES:
        traces = _traces(tmp_path, cls)
        assert len(traces) == len(_attributes(tmp_path, cls))
        assert all(
            t.shape == (len(CHANNELS), TRACE_SAMPLES) and np.isfinite(t).all()
            for t in traces.values()
        )


def test_too_small_a_demo_fails_with_the_parameter_name() -> None:
    with pytest.raises(ConfigError, match=r"data\.demo\.n_post"):
        DemoConfig(n_pre=100, n_post=10)
    with pytest.raises(ConfigError, match=r"data\.demo\.vs_km_s"):
        DemoConfig(vp_km_s=3.0, vs_km_s=3.4)
