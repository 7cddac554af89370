"""quakeshap.magnitude_baseline: waveform features, the boosted trees, TreeSHAP, the scores.

The waveforms are hand-made: silence with a burst of known amplitude, a pure 10 Hz tone,
Gaussian noise with a decaying wave train; the model is fitted on a feature table whose
target is a known function of one column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quakeshap.magnitude_baseline import (
    FEATURE_NAMES,
    LOG_FLOOR,
    fit_baseline,
    importance,
    predict,
    regression_metrics,
    tree_shap,
    waveform_features,
)
from quakeshap.record import SAMPLING_RATE_HZ, TRACE_SAMPLES

FS = SAMPLING_RATE_HZ
TIME_S = np.arange(TRACE_SAMPLES) / FS
SPECTRAL_SHAPE = ["spectral_centroid_hz", "freq_50_hz", "freq_85_hz"]


def earthquake_like(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` traces: offset noise, then a decaying 3-15 Hz wave train from P at 5 s.

    Returns ``(n, 3, TRACE_SAMPLES)`` counts and the P and S samples.
    """
    p = np.full(n, 500)
    s = p + rng.integers(100, 600, size=n)
    waveforms = 40.0 + rng.normal(0.0, 2.0, size=(n, 3, TRACE_SAMPLES))
    since_p = np.clip(TIME_S - 5.0, 0.0, None)
    for i in range(n):
        frequency = rng.uniform(3.0, 15.0)
        wave = 300.0 * np.exp(-since_p / 2.0) * np.sin(2 * np.pi * frequency * since_p)
        waveforms[i] += wave * (TIME_S >= 5.0) * rng.uniform(0.5, 1.5, size=(3, 1))
    return waveforms, p, s


def features_of(waveforms: np.ndarray, p: int = 500, s: int = 900) -> pd.DataFrame:
    n = len(waveforms)
    return waveform_features(waveforms, np.full(n, p), np.full(n, s), FS)


# ---------------------------------------------------------------- features


def test_columns_are_the_feature_names_in_float64(rng: np.random.Generator) -> None:
    waveforms, p, s = earthquake_like(rng, 3)
    features = waveform_features(waveforms, p, s, FS)
    assert list(features.columns) == list(FEATURE_NAMES)
    assert 20 <= len(FEATURE_NAMES) <= 30
    assert (features.dtypes == np.float64).all()
    assert len(features) == 3
    assert np.isfinite(features.to_numpy()).all()


def test_burst_of_known_amplitude_gives_its_log_peak_exactly() -> None:
    # +A, -A keeps the mean at 0, so demeaning leaves the burst exactly as it is
    amplitude = 1000.0
    waveforms = np.zeros((1, 3, TRACE_SAMPLES))
    waveforms[0, 0, 700:702] = [amplitude, -amplitude]
    row = features_of(waveforms).iloc[0]
    assert row["log_peak_E"] == np.log10(amplitude) == 3.0
    assert row["log_peak_vector"] == 3.0
    assert row["log_peak_N"] == row["log_peak_Z"] == np.log10(LOG_FLOOR)
    assert row["log_rms_noise"] == np.log10(LOG_FLOOR)
    # P window 500-900 holds 2 samples of amplitude A: RMS = A sqrt(2 / 400)
    assert row["log_rms_p"] == pytest.approx(np.log10(amplitude * np.sqrt(2 / 400)), abs=1e-12)


def test_offset_does_not_change_the_features(rng: np.random.Generator) -> None:
    waveforms, p, s = earthquake_like(rng, 2)
    shifted = waveforms + np.array([1e4, -3e3, 7.0])[None, :, None]
    np.testing.assert_allclose(
        waveform_features(shifted, p, s, FS), waveform_features(waveforms, p, s, FS), atol=1e-8
    )


def test_doubling_adds_log2_to_amplitudes_and_keeps_the_shape(rng: np.random.Generator) -> None:
    waveforms, p, s = earthquake_like(rng, 4)
    once = waveform_features(waveforms, p, s, FS)
    twice = waveform_features(2.0 * waveforms, p, s, FS)
    change = twice - once
    for name in FEATURE_NAMES:
        if name.startswith(("log_peak", "log_rms")):
            expected = np.log10(2.0)
        elif name.startswith("log_energy"):
            expected = 2 * np.log10(2.0)  # energy goes with amplitude squared
        else:
            expected = 0.0
        np.testing.assert_allclose(change[name], expected, atol=1e-12, err_msg=name)


def test_ten_hz_tone_lands_in_the_8_16_hz_band() -> None:
    tone = np.sin(2 * np.pi * 10.0 * TIME_S)
    waveforms = np.stack([tone, 0.5 * tone, 0.25 * tone])[None]
    row = features_of(waveforms).iloc[0]
    energies = {name: 10 ** row[name] for name in FEATURE_NAMES if name.startswith("log_energy")}
    assert energies["log_energy_8_16hz"] > 0.999 * sum(energies.values())
    assert row["spectral_centroid_hz"] == pytest.approx(10.0, abs=0.05)
    assert row["freq_50_hz"] == pytest.approx(10.0, abs=0.05)
    assert 10.0 <= row["freq_85_hz"] <= 10.1
    # Parseval: the Hann-tapered 20 s window of a tone of amplitude a holds a² · 20 s · 3/16
    expected = (1 + 0.25 + 0.0625) * 20.0 * 3 / 16
    assert 10 ** row["log_energy_8_16hz"] == pytest.approx(expected, rel=1e-3)


def test_sp_time_is_the_pick_difference_in_seconds(rng: np.random.Generator) -> None:
    waveforms, p, s = earthquake_like(rng, 5)
    features = waveform_features(waveforms, p, s, FS)
    np.testing.assert_array_equal(features["sp_time_s"], (s - p) / FS)


@pytest.mark.parametrize("s", [TRACE_SAMPLES - 50, TRACE_SAMPLES, TRACE_SAMPLES + 300])
def test_s_at_or_beyond_the_trace_end_is_clipped(rng: np.random.Generator, s: int) -> None:
    waveforms, p, _ = earthquake_like(rng, 2)
    features = waveform_features(waveforms, p, np.full(2, s), FS)
    assert np.isfinite(features.to_numpy()).all()
    np.testing.assert_array_equal(features["sp_time_s"], (s - 500) / FS)
    if s >= TRACE_SAMPLES:
        assert (features["log_rms_s"] == np.log10(LOG_FLOOR)).all()


def test_silent_trace_gives_finite_floor_values() -> None:
    row = features_of(np.zeros((1, 3, TRACE_SAMPLES))).iloc[0]
    assert np.isfinite(row.to_numpy()).all()
    assert row["log_peak_vector"] == row["log_energy_4_8hz"] == np.log10(LOG_FLOOR)
    assert (row[SPECTRAL_SHAPE] == 0.0).all()
    assert row["duration_s"] == 0.0


def test_duration_ends_when_the_envelope_sinks_to_twice_the_noise(
    rng: np.random.Generator,
) -> None:
    # unit noise on 3 channels (vector RMS sqrt 3), a 10 Hz wave train of amplitude 50 on E
    # from P (5 s) to 8 s: the 1 s smoothing carries it about half a window past its end
    waveforms = rng.normal(0.0, 1.0, size=(1, 3, TRACE_SAMPLES))
    train = (TIME_S >= 5.0) & (TIME_S < 8.0)
    waveforms[0, 0] += 50.0 * np.sin(2 * np.pi * 10.0 * TIME_S) * train
    duration = features_of(waveforms).iloc[0]["duration_s"]
    assert 3.0 < duration < 3.6


def test_duration_is_clipped_to_the_trace_end(rng: np.random.Generator) -> None:
    waveforms = rng.normal(0.0, 1.0, size=(1, 3, TRACE_SAMPLES))
    waveforms[0, 2] += 100.0 * np.sin(2 * np.pi * 5.0 * TIME_S) * (TIME_S >= 5.0)
    assert features_of(waveforms).iloc[0]["duration_s"] == (TRACE_SAMPLES - 500) / FS


def test_each_trace_s_features_depend_on_that_trace_only(rng: np.random.Generator) -> None:
    waveforms, p, s = earthquake_like(rng, 6)
    together = waveform_features(waveforms, p, s, FS)
    alone = pd.concat(
        [waveform_features(waveforms[i : i + 1], p[i : i + 1], s[i : i + 1], FS) for i in range(6)],
        ignore_index=True,
    )
    np.testing.assert_allclose(alone, together, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "p", "s", "message"),
    [
        ((2, 2, 100), [0, 0], [1, 1], "channels E, N, Z"),
        ((2, 3, 100), [0], [1], "p_sample must be"),
        ((2, 3, 100), [10, 100], [20, 120], r"p_sample must lie in \[0, 100\)"),
        ((2, 3, 100), [10, 20], [20, 10], "must not precede"),
    ],
)
def test_bad_traces_or_picks_are_refused(shape, p, s, message) -> None:
    with pytest.raises(ValueError, match=message):
        waveform_features(np.zeros(shape), np.array(p), np.array(s), FS)


def test_nan_in_a_trace_is_refused() -> None:
    waveforms = np.zeros((3, 3, 200))
    waveforms[1, 2, 50] = np.nan
    with pytest.raises(ValueError, match=r"1 trace\(s\) hold NaN or inf, e.g. rows \[1\]"):
        waveform_features(waveforms, np.full(3, 10), np.full(3, 20), FS)


# ---------------------------------------------------------------- the model


def known_target(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Random features; the magnitude is a smooth function of ``log_peak_vector`` alone."""
    features = pd.DataFrame(rng.normal(size=(n, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    features["log_peak_vector"] = rng.uniform(0.0, 4.0, size=n)
    x = features["log_peak_vector"].to_numpy()
    return features, 0.5 + 0.9 * x + 0.1 * x**2


def test_baseline_learns_the_known_function_and_shap_ranks_its_feature_first(
    rng: np.random.Generator,
) -> None:
    train, y_train = known_target(rng, 300)
    test, y_test = known_target(rng, 200)
    model = fit_baseline(train, y_train, n_trees=150, seed=0)
    pred = predict(model, test)
    assert pred.shape == (200,) and pred.dtype == np.float64
    rmse = regression_metrics(y_test, pred)["rmse"]
    mean_rmse = regression_metrics(y_test, np.full(200, y_train.mean()))["rmse"]
    assert rmse < 0.1 * mean_rmse

    values = tree_shap(model, test)
    assert values.shape == (200, len(FEATURE_NAMES))
    # additivity without the expected value: row differences of SHAP = prediction differences
    np.testing.assert_allclose(values.sum(axis=1) - values[0].sum(), pred - pred[0], atol=1e-9)
    ranking = importance(values)
    assert ranking.index[0] == "log_peak_vector"
    assert ranking.is_monotonic_decreasing
    assert ranking.iloc[0] > 10 * ranking.iloc[1]


def test_fitting_twice_gives_identical_predictions(rng: np.random.Generator) -> None:
    features, y = known_target(rng, 150)
    first = predict(fit_baseline(features, y, n_trees=40, seed=3), features)
    second = predict(fit_baseline(features, y, n_trees=40, seed=3), features)
    np.testing.assert_array_equal(first, second)


def test_nan_in_features_or_target_is_refused_by_name(rng: np.random.Generator) -> None:
    features, y = known_target(rng, 20)
    features.loc[[2, 5], "log_rms_p"] = [np.nan, np.inf]
    with pytest.raises(ValueError, match="log_rms_p: 2"):
        fit_baseline(features, y, n_trees=5, seed=0)
    features, y = known_target(rng, 20)
    y[7] = np.nan
    with pytest.raises(ValueError, match="magnitude: 1"):
        fit_baseline(features, y, n_trees=5, seed=0)


def test_wrong_columns_are_named(rng: np.random.Generator) -> None:
    features, y = known_target(rng, 30)
    model = fit_baseline(features, y, n_trees=5, seed=0)
    with pytest.raises(ValueError, match=r"missing \['sp_time_s'\], unexpected \['distance'\]"):
        predict(model, features.rename(columns={"sp_time_s": "distance"}))
    with pytest.raises(ValueError, match="order differs"):
        predict(model, features[list(reversed(FEATURE_NAMES))])


def test_importance_is_mean_absolute_shap_sorted() -> None:
    values = np.zeros((2, len(FEATURE_NAMES)))
    values[:, 3] = [1.0, -3.0]
    values[:, 0] = [0.5, 0.5]
    ranking = importance(values)
    assert ranking.index[:2].tolist() == [FEATURE_NAMES[3], FEATURE_NAMES[0]]
    assert ranking.iloc[:2].tolist() == [2.0, 0.5]
    # ties keep the column order
    assert ranking.index[2:].tolist() == [n for n in FEATURE_NAMES if n not in ranking.index[:2]]


# ---------------------------------------------------------------- scores


def test_regression_metrics_on_a_hand_computed_example() -> None:
    # true 1, 2, 3; predicted 1.5, 2, 2 → residuals (pred - true) 0.5, 0, -1
    #   mae  = (0.5 + 0 + 1) / 3                   = 0.5
    #   rmse = sqrt((0.25 + 0 + 1) / 3) = sqrt(5/12) = 0.645497
    #   r2   = 1 - 1.25 / 2 (SS_tot about mean 2)  = 0.375
    #   residual mean -1/6; squared deviations 4/9, 1/36, 25/36 sum to 7/6;
    #   residual_std = sqrt((7/6) / 2) = sqrt(7/12) = 0.763763
    scores = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0]))
    assert scores == {"mae": 0.5, "rmse": 0.645497, "r2": 0.375, "residual_std": 0.763763, "n": 3}
    assert all(type(v) is float for k, v in scores.items() if k != "n")
    assert type(scores["n"]) is int


def test_regression_metrics_of_a_constant_truth_and_bad_input() -> None:
    assert regression_metrics(np.ones(3), np.ones(3))["r2"] == 1.0
    assert regression_metrics(np.ones(3), np.array([1.0, 2.0, 1.0]))["r2"] == 0.0
    with pytest.raises(ValueError, match="n >= 2"):
        regression_metrics(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="finite"):
        regression_metrics(np.array([1.0, np.nan]), np.ones(2))
