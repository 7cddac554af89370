"""The gradient-boosting baseline of the magnitude task, on features of the waveform alone.

A user of the magnitude model has a trace and its P and S picks, nothing from the
catalogue: no distance, no travel time. The baseline therefore sees only what
:func:`waveform_features` computes from a trace and its picks (amplitudes, noise and
signal levels, band energies, spectral shape, the S−P time and a duration), fits a
scikit-learn ``GradientBoostingRegressor`` on them (:func:`fit_baseline`), and explains
itself with exact TreeSHAP (:func:`tree_shap`, :func:`importance`).
:func:`regression_metrics` scores any magnitude prediction, the CNN's as well.

Every feature is computed for all traces at once (no loop over traces) in float64, and a
trace's features depend on that trace only, so a data set may be processed chunk by chunk.
Logarithms take ``max(x, LOG_FLOOR)``: a silent trace or an empty window gives
``log10(LOG_FLOOR) = -12``, never ``-inf``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor

from quakeshap.record import CHANNELS

log = logging.getLogger(__name__)

#: floor of every quantity whose log10 is a feature (counts, counts², counts²·s)
LOG_FLOOR = 1e-12
#: length of the S window, from the S arrival, seconds
S_WINDOW_S = 2.0
#: frequency bands of the band energies, ``[low, high)`` Hz; the spectral shape features
#: use the span of all bands, 0.5-45 Hz (the microseism below, the anti-alias roll-off above)
FREQUENCY_BANDS_HZ: tuple[tuple[float, float], ...] = (
    (0.5, 1.0),
    (1.0, 2.0),
    (2.0, 4.0),
    (4.0, 8.0),
    (8.0, 16.0),
    (16.0, 32.0),
    (32.0, 45.0),
)
#: the spectral quantiles: the frequency below which this fraction of the energy lies
ENERGY_QUANTILES: tuple[float, float] = (0.5, 0.85)
#: length of the centred moving window that smooths the envelope, seconds
ENVELOPE_WINDOW_S = 1.0
#: the signal lasts while its smoothed envelope is above this multiple of the noise RMS
DURATION_NOISE_FACTOR = 2.0

_BAND_NAMES = tuple(
    f"log_energy_{lo:g}_{hi:g}hz".replace(".", "p") for lo, hi in FREQUENCY_BANDS_HZ
)
_QUANTILE_NAMES = tuple(f"freq_{round(100 * q)}_hz" for q in ENERGY_QUANTILES)

#: the columns of :func:`waveform_features`, in order; the baseline's inputs
FEATURE_NAMES: tuple[str, ...] = (
    *(f"log_peak_{channel}" for channel in CHANNELS),
    "log_peak_vector",
    "log_rms_noise",
    "log_rms_p",
    "log_rms_s",
    "log_snr_s",
    *_BAND_NAMES,
    "spectral_centroid_hz",
    *_QUANTILE_NAMES,
    "sp_time_s",
    "duration_s",
)

#: the baseline's fixed hyper-parameters; ``subsample=1.0`` keeps the fit deterministic
GBM_PARAMS = {"max_depth": 3, "learning_rate": 0.05, "subsample": 1.0, "loss": "squared_error"}
#: TreeSHAP values plus the expected value must give the model's prediction within this
ADDITIVITY_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------


def waveform_features(
    waveforms: np.ndarray,
    p_sample: np.ndarray,
    s_sample: np.ndarray,
    sampling_rate_hz: float,
) -> pd.DataFrame:
    """The baseline's features of each trace, from the trace and its P and S picks alone.

    Each trace is demeaned channel by channel first. *Vector* means the three-component
    magnitude ``sqrt(E² + N² + Z²)`` sample by sample. Windows are clipped to the trace; an
    empty window has RMS 0.

    ========================== ==============================================================
    ``log_peak_E``, ``_N``,    log10 of the peak absolute amplitude from P to the trace end,
    ``_Z``, ``_vector``        per channel and of the vector, log10 counts
    ``log_rms_noise``          log10 RMS of the vector before P, log10 counts
    ``log_rms_p``              ... from P to S, log10 counts
    ``log_rms_s``              ... from S to S + :data:`S_WINDOW_S`, log10 counts
    ``log_snr_s``              ``log_rms_s - log_rms_noise``
    ``log_energy_<lo>_<hi>hz`` log10 energy in ``[lo, hi)`` Hz of the Hann-tapered window
                               from P to the trace end, summed over channels, log10
                               counts²·s (``0p5`` is 0.5)
    ``spectral_centroid_hz``   energy-weighted mean frequency in 0.5-45 Hz, Hz
    ``freq_50_hz``, ``_85_hz`` lowest frequency below which (inclusive) 50 % / 85 % of the
                               0.5-45 Hz energy lies, Hz; these and the centroid are 0 for
                               a trace with no energy in 0.5-45 Hz
    ``sp_time_s``              ``(s_sample - p_sample) / sampling_rate_hz``, seconds
    ``duration_s``             seconds from P to the end of the last sample whose smoothed
                               envelope (vector RMS over a centred :data:`ENVELOPE_WINDOW_S`
                               window) exceeds :data:`DURATION_NOISE_FACTOR` × the noise
                               RMS; 0 if none does
    ========================== ==============================================================

    Scaling a trace by ``a`` adds ``log10 a`` to the log peaks and RMS, ``2 log10 a`` to
    the log energies and leaves the other features unchanged.

    Parameters
    ----------
    waveforms
        ``(n, 3, n_samples)`` float, counts, channels E, N, Z, as recorded (not demeaned).
    p_sample, s_sample
        ``(n,)`` int, sample of the P and S arrival in each trace; ``0 <= p < n_samples``,
        ``s >= p``; S may lie at or beyond the trace end.
    sampling_rate_hz
        Samples per second of every trace.

    Returns
    -------
    pd.DataFrame
        One row per trace, columns :data:`FEATURE_NAMES`, float64.
    """
    waveforms, p, s = _check_traces(waveforms, p_sample, s_sample)
    n_samples = waveforms.shape[-1]
    traces = waveforms - waveforms.mean(axis=-1, keepdims=True)
    vector_sq = (traces**2).sum(axis=1)
    time = np.arange(n_samples)
    s_end = s + round(S_WINDOW_S * sampling_rate_hz)

    after_p = _window_mask(time, p, np.full_like(p, n_samples))
    peaks = np.abs(traces * after_p[:, None, :]).max(axis=-1)
    peak_vector = np.sqrt((vector_sq * after_p).max(axis=-1))
    noise_ms = _mean_square(vector_sq, _window_mask(time, np.zeros_like(p), p))
    p_ms = _mean_square(vector_sq, _window_mask(time, p, s))
    s_ms = _mean_square(vector_sq, _window_mask(time, s, s_end))
    log_rms = [_log10(np.sqrt(ms)) for ms in (noise_ms, p_ms, s_ms)]

    frequencies, power = _tapered_power(traces, p, sampling_rate_hz)
    columns = [
        *_log10(peaks).T,
        _log10(peak_vector),
        *log_rms,
        log_rms[2] - log_rms[0],
        *_band_log_energies(frequencies, power),
        *_spectral_shape(frequencies, power),
        (s - p) / sampling_rate_hz,
        _duration_s(vector_sq, p, noise_ms, sampling_rate_hz),
    ]
    return pd.DataFrame(
        {
            name: np.asarray(column, dtype=np.float64)
            for name, column in zip(FEATURE_NAMES, columns, strict=True)
        }
    )


def _check_traces(
    waveforms: np.ndarray, p_sample: np.ndarray, s_sample: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs of :func:`waveform_features` as float64 / int64 arrays, or a ValueError."""
    waveforms = np.asarray(waveforms, dtype=np.float64)
    if waveforms.ndim != 3 or waveforms.shape[1] != len(CHANNELS):
        raise ValueError(
            f"waveforms must be (n, 3, n_samples), channels E, N, Z; got {waveforms.shape}"
        )
    n, _, n_samples = waveforms.shape
    p = np.asarray(p_sample)
    s = np.asarray(s_sample)
    for name, picks in (("p_sample", p), ("s_sample", s)):
        if picks.shape != (n,) or not np.issubdtype(picks.dtype, np.integer):
            raise ValueError(f"{name} must be ({n},) integers; got {picks.shape} {picks.dtype}")
    if not np.isfinite(waveforms).all():
        bad = np.flatnonzero(~np.isfinite(waveforms).all(axis=(1, 2)))
        raise ValueError(f"{bad.size} trace(s) hold NaN or inf, e.g. rows {bad[:5].tolist()}")
    if ((p < 0) | (p >= n_samples)).any():
        raise ValueError(f"p_sample must lie in [0, {n_samples}); got {p.min()}..{p.max()}")
    if (s < p).any():
        raise ValueError(f"s_sample must not precede p_sample ({int((s < p).sum())} rows)")
    return waveforms, p.astype(np.int64), s.astype(np.int64)


def _log10(x: np.ndarray) -> np.ndarray:
    """``log10(max(x, LOG_FLOOR))``: finite for zero."""
    return np.log10(np.maximum(x, LOG_FLOOR))


def _window_mask(time: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``(n, n_samples)`` bool, True in each trace's ``[start, stop)`` (may be empty)."""
    return (time >= start[:, None]) & (time < stop[:, None])


def _mean_square(vector_sq: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``vector_sq`` over each trace's masked samples, ``(n,)``; 0 if none."""
    count = mask.sum(axis=-1)
    return (vector_sq * mask).sum(axis=-1) / np.maximum(count, 1)


def _tapered_power(
    traces: np.ndarray, p: np.ndarray, sampling_rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Energy spectral density of the window from P to the end, summed over channels.

    The window gets a Hann taper over its own length and zeros elsewhere, so one FFT length
    (the trace's) serves every trace. Returns the ``(n_freq,)`` frequencies, Hz, and the
    ``(n, n_freq)`` one-sided energy per frequency bin, counts²·s, so that summing it over
    the bins (DC and Nyquist aside) gives the tapered window's ``∫ x² dt`` (Parseval).
    """
    n_samples = traces.shape[-1]
    offset = np.arange(n_samples) - p[:, None]
    length = n_samples - p
    phase = 2.0 * np.pi * offset / np.maximum(length - 1, 1)[:, None]
    taper = np.where(offset >= 0, 0.5 - 0.5 * np.cos(phase), 0.0)
    spectrum = np.fft.rfft(traces * taper[:, None, :], axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
    frequencies = np.fft.rfftfreq(n_samples, d=1.0 / sampling_rate_hz)
    return frequencies, power * (2.0 / (n_samples * sampling_rate_hz))


def _band_log_energies(frequencies: np.ndarray, power: np.ndarray) -> list[np.ndarray]:
    """log10 energy in each band of :data:`FREQUENCY_BANDS_HZ`, each ``(n,)``."""
    return [
        _log10(power[:, (frequencies >= lo) & (frequencies < hi)].sum(axis=-1))
        for lo, hi in FREQUENCY_BANDS_HZ
    ]


def _spectral_shape(frequencies: np.ndarray, power: np.ndarray) -> list[np.ndarray]:
    """Centroid and :data:`ENERGY_QUANTILES` frequencies in the bands' span, Hz, ``(n,)``
    each; 0 where the span holds no energy."""
    in_span = (frequencies >= FREQUENCY_BANDS_HZ[0][0]) & (frequencies < FREQUENCY_BANDS_HZ[-1][1])
    freqs = frequencies[in_span]
    power = power[:, in_span]
    total = power.sum(axis=-1)
    has_energy = total > 0
    centroid = (power * freqs).sum(axis=-1) / np.where(has_energy, total, 1.0)
    cumulative = np.cumsum(power, axis=-1)
    quantiles = [
        freqs[np.argmax(cumulative >= q * total[:, None], axis=-1)] for q in ENERGY_QUANTILES
    ]
    return [np.where(has_energy, value, 0.0) for value in (centroid, *quantiles)]


def _duration_s(
    vector_sq: np.ndarray, p: np.ndarray, noise_ms: np.ndarray, sampling_rate_hz: float
) -> np.ndarray:
    """Seconds from P until the smoothed envelope stays at or below the noise threshold.

    The envelope is the vector RMS over a centred window of :data:`ENVELOPE_WINDOW_S`
    (shortened at the trace ends). Returns ``(n,)`` float64, at most the time from P to
    the trace end.
    """
    n_samples = vector_sq.shape[-1]
    half = round(ENVELOPE_WINDOW_S * sampling_rate_hz) // 2
    time = np.arange(n_samples)
    lo = np.clip(time - half, 0, n_samples)
    hi = np.clip(time + half + 1, 0, n_samples)
    running = np.concatenate([np.zeros((len(p), 1)), np.cumsum(vector_sq, axis=-1)], axis=-1)
    envelope_ms = (running[:, hi] - running[:, lo]) / (hi - lo)
    threshold_ms = DURATION_NOISE_FACTOR**2 * noise_ms
    above = (envelope_ms > threshold_ms[:, None]) & (time >= p[:, None])
    last = n_samples - 1 - np.argmax(above[:, ::-1], axis=-1)
    return np.where(above.any(axis=-1), (last + 1 - p) / sampling_rate_hz, 0.0)


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def check_features(features: pd.DataFrame) -> np.ndarray:
    """The feature table as the model's ``(n, n_features)`` float64 input.

    Raises a ValueError that names the missing and unexpected columns unless the columns
    are exactly :data:`FEATURE_NAMES`, in order.
    """
    columns = list(features.columns)
    if columns != list(FEATURE_NAMES):
        missing = [name for name in FEATURE_NAMES if name not in columns]
        extra = [name for name in columns if name not in FEATURE_NAMES]
        raise ValueError(
            f"feature columns must be FEATURE_NAMES in order; missing {missing}, "
            f"unexpected {extra}" + ("" if missing or extra else ", order differs")
        )
    return features.to_numpy(dtype=np.float64)


def fit_baseline(
    features: pd.DataFrame, magnitude: np.ndarray, n_trees: int, seed: int
) -> GradientBoostingRegressor:
    """Fit the gradient-boosting baseline: features → magnitude.

    Parameters
    ----------
    features
        ``(n, n_features)`` from :func:`waveform_features`, columns :data:`FEATURE_NAMES`.
    magnitude
        ``(n,)`` catalogue magnitude of each trace's event.
    n_trees
        Boosting stages (``task.magnitude.baseline_trees``).
    seed
        ``random_state`` of the regressor (``task.magnitude.baseline_seed``); with
        :data:`GBM_PARAMS` the same inputs and seed give the same model.

    Raises
    ------
    ValueError
        If a column or the magnitude holds NaN or inf (named, with the count), or the
        lengths differ.
    """
    x = check_features(features)
    y = np.asarray(magnitude, dtype=np.float64)
    if y.shape != (len(x),):
        raise ValueError(f"magnitude must be ({len(x)},), one per feature row; got {y.shape}")
    bad = {
        name: int(count)
        for name, count in zip(FEATURE_NAMES, (~np.isfinite(x)).sum(axis=0), strict=True)
        if count
    }
    if not np.isfinite(y).all():
        bad["magnitude"] = int((~np.isfinite(y)).sum())
    if bad:
        listed = ", ".join(f"{name}: {count}" for name, count in bad.items())
        raise ValueError(f"NaN or inf values (column: count) in {listed}")
    model = GradientBoostingRegressor(n_estimators=n_trees, random_state=seed, **GBM_PARAMS)
    return model.fit(x, y)


def predict(model: GradientBoostingRegressor, features: pd.DataFrame) -> np.ndarray:
    """The model's magnitude for each feature row, ``(n,)`` float64."""
    return model.predict(check_features(features)).astype(np.float64)


def tree_shap(model: GradientBoostingRegressor, features: pd.DataFrame) -> np.ndarray:
    """Exact TreeSHAP values of the model's prediction, ``(n, n_features)``, magnitude units.

    Each row plus the explainer's expected value (the model's mean output over its training
    data) is that row's prediction; this is checked to within
    :data:`ADDITIVITY_TOLERANCE` and a RuntimeError raised otherwise.
    """
    import shap  # heavy; only this function needs it

    x = check_features(features)
    explainer = shap.TreeExplainer(model)
    values = np.asarray(explainer.shap_values(x), dtype=np.float64)
    expected = float(np.ravel(explainer.expected_value)[0])
    error = np.abs(values.sum(axis=1) + expected - model.predict(x))
    if error.size and error.max() > ADDITIVITY_TOLERANCE:
        raise RuntimeError(
            f"TreeSHAP values do not add up to the prediction: max error {error.max():.3g} "
            f"> {ADDITIVITY_TOLERANCE:g}"
        )
    return values


def importance(shap_values: np.ndarray, feature_names: Sequence[str] = FEATURE_NAMES) -> pd.Series:
    """Mean absolute SHAP value of each feature, largest first (ties keep column order).

    ``shap_values`` is ``(n, n_features)`` with columns ``feature_names``.
    """
    values = np.asarray(shap_values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(feature_names):
        raise ValueError(f"shap_values must be (n, {len(feature_names)}); got {values.shape}")
    mean_abs = pd.Series(
        np.abs(values).mean(axis=0), index=list(feature_names), name="mean_abs_shap"
    )
    return mean_abs.sort_values(ascending=False, kind="stable")


# --------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    """Scores of any magnitude prediction (the baseline's, the CNN's).

    Returns ``mae``, ``rmse``, ``r2`` (``1 - SS_res / SS_tot``; scikit-learn's convention
    where ``y_true`` is constant: 1 for a perfect prediction, else 0) and ``residual_std``
    (standard deviation of ``y_pred - y_true``, ddof 1), in magnitude units (r2 has none)
    as Python floats rounded to 6 decimals, and ``n`` (int).

    Raises a ValueError unless both are ``(n,)`` finite with ``n >= 2``.
    """
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.ndim != 1 or pred.shape != true.shape or len(true) < 2:
        raise ValueError(f"need two (n,) arrays with n >= 2; got {true.shape} and {pred.shape}")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("y_true and y_pred must be finite")
    residual = pred - true
    ss_res = float((residual**2).sum())
    ss_tot = float(((true - true.mean()) ** 2).sum())
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:
        r2 = 1.0 if ss_res == 0 else 0.0
    scores = {
        "mae": np.abs(residual).mean(),
        "rmse": np.sqrt((residual**2).mean()),
        "r2": r2,
        "residual_std": residual.std(ddof=1),
    }
    return {**{name: round(float(value), 6) for name, value in scores.items()}, "n": len(true)}
