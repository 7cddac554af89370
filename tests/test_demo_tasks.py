"""The demo's ground truth for the time-to-failure and magnitude tasks.

- ``data.demo.q_drift``: ln Q drifts with origin time on each side of the mainshock
  (:mod:`quakeshap.demo.catalog`), and leaves the default demo byte for byte as it was.
- :func:`quakeshap.demo.magnitude_sensitivity`: where the normalised images change with
  the magnitude, checked against brute-force images of synthetic traces.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import signal
from scipy.stats import spearmanr

from quakeshap import demo
from quakeshap.artifacts import raw
from quakeshap.config import DemoConfig, SpectrogramConfig
from quakeshap.demo.catalog import STATION
from quakeshap.demo.physics import ANTI_ALIAS_HZ, brune_corner_frequency_hz
from quakeshap.record import CLASS_NAMES, attributes_path, hdf5_path, similar_traces_path
from quakeshap.spectrogram import compute_spectrograms

PRE, POST = CLASS_NAMES
#: the small demo of tests/test_demo.py
SMALL = DemoConfig(n_pre=40, n_post=30, n_colocated_groups=2)
DRIFT = 1.0
#: the default demo catalogue as it was before ``q_drift`` existed: the whole frame
#: (pandas' row hashes) and the bytes of its ``q`` column
DEFAULT_CATALOG_SHA256 = "15db368e3687f87b1569cc838071d9e07f8273a844d610a04432efdf6fa83d7e"
DEFAULT_Q_SHA256 = "41981c48490d72d8b463d66727f684fc2909bfa807a2ad96425a4d9a55224c8c"
SPECTROGRAM = SpectrogramConfig()


@pytest.fixture(scope="module")
def default_catalog() -> pd.DataFrame:
    return demo.demo_catalog(DemoConfig())


@pytest.fixture(scope="module")
def drifted_catalog() -> pd.DataFrame:
    return demo.demo_catalog(DemoConfig(q_drift=DRIFT))


def _origin_ms(catalog: pd.DataFrame) -> np.ndarray:
    return pd.to_datetime(catalog["source_origin_time"]).to_numpy().astype(np.int64)


def _variant(rows: pd.DataFrame, cfg: DemoConfig, magnitude: float) -> pd.DataFrame:
    """The same rays and noise at another magnitude (corner frequency recomputed)."""
    rows = rows.copy()
    rows["source_magnitude"] = magnitude
    rows["corner_frequency_hz"] = brune_corner_frequency_hz(
        rows["source_magnitude"], rows["stress_drop_mpa"], cfg.vs_km_s
    )
    return rows


# --------------------------------------------------------------------------------------
# q_drift: the time-to-failure signal
# --------------------------------------------------------------------------------------


def test_no_drift_leaves_the_default_catalogue_as_it_was(default_catalog: pd.DataFrame) -> None:
    frame = hashlib.sha256(pd.util.hash_pandas_object(default_catalog, index=True).values)
    assert frame.hexdigest() == DEFAULT_CATALOG_SHA256
    assert hashlib.sha256(default_catalog["q"].to_numpy().tobytes()).hexdigest() == (
        DEFAULT_Q_SHA256
    )
    pd.testing.assert_frame_equal(demo.demo_catalog(DemoConfig(q_drift=0.0)), default_catalog)


def test_drift_changes_q_only(default_catalog: pd.DataFrame, drifted_catalog: pd.DataFrame) -> None:
    """The drift draws no random number: every other column stays as it was."""
    pd.testing.assert_frame_equal(
        drifted_catalog.drop(columns="q"), default_catalog.drop(columns="q")
    )
    assert not np.allclose(drifted_catalog["q"], default_catalog["q"])


@pytest.mark.parametrize(("side", "sign"), [(PRE, -1.0), (POST, 1.0)])
def test_ln_q_drifts_linearly_across_each_side(
    default_catalog: pd.DataFrame, drifted_catalog: pd.DataFrame, side: str, sign: float
) -> None:
    """Q falls as the mainshock approaches (pre) and recovers after it (post)."""
    rows = (default_catalog["label"] == side).to_numpy()
    t = _origin_ms(default_catalog)[rows]
    ln_q = np.log(drifted_catalog["q"].to_numpy()[rows])
    assert sign * spearmanr(ln_q, t).statistic > 0.8
    # the drift itself: linear in origin time, q_drift across the side's span, mean zero
    drift = ln_q - np.log(default_catalog["q"].to_numpy()[rows])
    u = (t - t.min()) / (t.max() - t.min())
    np.testing.assert_allclose(drift, sign * DRIFT * (u - u.mean()), atol=1e-12)
    assert drift.max() - drift.min() == pytest.approx(DRIFT, abs=1e-9)
    # so each side's mean ln Q, and with it the pre/post contrast, is unchanged
    assert abs(drift.mean()) < 1e-9


def test_demo_with_drift_differs_in_its_waveforms_only(tmp_path: Path) -> None:
    plain, drifted = tmp_path / "plain", tmp_path / "drifted"
    demo.write_demo_dataset(SMALL, plain)
    demo.write_demo_dataset(dataclasses.replace(SMALL, q_drift=DRIFT), drifted)
    tables = [similar_traces_path(r, STATION.code) for r in (plain, drifted)]
    assert tables[0].read_bytes() == tables[1].read_bytes()
    for cls in CLASS_NAMES:
        csv = [attributes_path(r, STATION.code, cls) for r in (plain, drifted)]
        assert csv[0].read_bytes() == csv[1].read_bytes()
        with (
            raw.open_hdf5(hdf5_path(plain, STATION.code, cls)) as before,
            raw.open_hdf5(hdf5_path(drifted, STATION.code, cls)) as after,
        ):
            assert set(before) == set(after)
            for name in before:
                a, b = before[name][()], after[name][()]
                assert a.shape == b.shape
                assert np.isnan(a).any() or not np.array_equal(a, b)  # another Q


# --------------------------------------------------------------------------------------
# magnitude: where the normalised images change
# --------------------------------------------------------------------------------------


def test_expected_spectrogram_is_the_mean_of_synthetic_ones(
    default_catalog: pd.DataFrame,
) -> None:
    """64 draws of one event (other source ids, other random numbers) average to it."""
    event = default_catalog[default_catalog["defect"] == ""].iloc[[100]]
    for magnitude in (1.0, 3.0):
        rows = _variant(event.loc[event.index.repeat(64)], DemoConfig(), magnitude)
        rows["source_id"] = rows["source_id"].to_numpy() + np.arange(64)
        x = demo.synthesize_waveforms(rows, DemoConfig())[:, :, : SPECTROGRAM.n_samples]
        _, _, power = signal.spectrogram(
            x,
            SPECTROGRAM.sampling_rate_hz,
            nperseg=SPECTROGRAM.nperseg,
            noverlap=SPECTROGRAM.noverlap,
        )
        expected = demo.expected_spectrogram(rows.iloc[[0]], DemoConfig(), SPECTROGRAM)[0]
        error = np.abs(np.log10(power.mean(axis=0) / expected))
        assert np.median(error) < 0.12
        assert np.quantile(error, 0.95) < 0.3


def test_magnitude_band_lies_in_the_image() -> None:
    lo, hi = demo.magnitude_sensitive_band_hz(DemoConfig())
    assert 0.0 < lo <= hi < 50.0
    frequency_hz, sensitivity = demo.magnitude_sensitivity(DemoConfig())
    assert frequency_hz.shape == sensitivity.shape == (33,)
    assert (sensitivity > 0).all()
    # magnitude changes every row: the noise darkens as the event's peak rises
    assert sensitivity.min() > 0.3 * sensitivity.max()


def test_s_wave_bump_moves_up_with_the_stress_drop() -> None:
    """Over the S wave, the rows where the image changes most above 5 Hz are where the S
    wave of a growing event rises out of the noise. A higher stress drop raises the
    corner frequency (fc ∝ Δσ^(1/3)) and so the high-frequency S level of every
    magnitude: those rows move up. (Over the whole image the maximum stays at the lowest
    rows, where the noise stands highest above the image's floor.)"""
    magnitudes = np.arange(0.5, 3.51, 0.25)
    peaks = []
    for stress_drop_mpa in (0.3, 3.0, 30.0):
        cfg = DemoConfig(stress_drop_mpa=stress_drop_mpa)
        f, sensitivity = demo.magnitude_sensitivity(cfg, magnitudes=magnitudes, over="s_wave")
        # above the microseism rows, below the anti-alias corner (digitiser noise there)
        rows = (f >= 5.0) & (f < ANTI_ALIAS_HZ)
        peaks.append(f[rows][np.argmax(sensitivity[rows])])
    assert peaks[0] < peaks[1] < peaks[2]


def test_magnitude_sensitivity_follows_brute_force_images(
    default_catalog: pd.DataFrame,
) -> None:
    """Sixteen events of the demo at M 1.0 and M 3.0, same rays, same noise: the mean
    |image difference| per row has the analytic curve's shape and size."""
    cfg = DemoConfig()
    clean = default_catalog[default_catalog["defect"] == ""].reset_index(drop=True)
    rows = clean.iloc[np.linspace(0, len(clean) - 1, 16).round().astype(int)]
    images = {
        m: compute_spectrograms(
            demo.synthesize_waveforms(_variant(rows, cfg, m), cfg), SPECTROGRAM
        ).images
        for m in (1.0, 3.0)
    }
    brute = np.abs(images[3.0] - images[1.0]).mean(axis=(0, 1, 3)) / 2.0
    _, analytic = demo.magnitude_sensitivity(cfg, magnitudes=np.array([1.0, 3.0]))
    assert spearmanr(brute, analytic).statistic > 0.7  # 0.89 when written
    assert 0.67 < analytic.mean() / brute.mean() < 1.5  # 1.03 when written


def test_magnitude_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        demo.magnitude_sensitive_band_hz(DemoConfig(), threshold=0.0)
    with pytest.raises(ValueError, match="ascending"):
        demo.magnitude_sensitivity(DemoConfig(), magnitudes=np.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="over"):
        demo.magnitude_sensitivity(DemoConfig(), over="p_wave")  # type: ignore[arg-type]
