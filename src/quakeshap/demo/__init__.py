"""A synthetic NRCA data set in the layout of Zenodo record 15683047.

:func:`write_demo_dataset` writes, deterministically from ``data.demo.seed``, exactly the
files the real record unpacks to (``docs/method.md`` §1; the paths of
:mod:`quakeshap.record`, the formats of :mod:`quakeshap.artifacts.raw`), so that every
later stage runs on it unchanged. ``docs/demo-data.md`` describes the data set; the
modules hold its physics in full, with every formula:

- :mod:`quakeshap.demo.catalog`: the events (origin times, magnitudes, locations,
  co-located groups, travel times) and the defects planted as in the real record;
- :mod:`quakeshap.demo.physics`: source, path and site spectra, noise, envelopes and the
  synthesis of three-component waveforms;
- :mod:`quakeshap.demo.truth`: the band where pre and post differ, the ground truth for
  the explanations;
- :mod:`quakeshap.demo.writer`: the record's files;
- here, :func:`magnitude_sensitive_band_hz`: where the images change most with the
  magnitude, the ground truth for explanations of the magnitude regression.

The same seed gives byte-identical files on any machine: every exponential, logarithm,
power and trigonometric function of the generator is :mod:`quakeshap.detmath`'s
(IEEE-exact arithmetic only), never NumPy's or ``libm``'s, whose last bit depends on the
CPU (AVX-512 or not, FMA or not); ``tests/test_determinism.py`` checks it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from quakeshap import detmath
from quakeshap.config import DemoConfig, SpectrogramConfig
from quakeshap.demo.catalog import (
    MAGNITUDE_STEP,
    DemoDefects,
    DemoError,
    demo_catalog,
    demo_defects,
)
from quakeshap.demo.physics import (
    brune_corner_frequency_hz,
    expected_spectrogram,
    synthesize_waveforms,
)
from quakeshap.demo.truth import discriminative_band_hz
from quakeshap.demo.writer import write_demo_dataset
from quakeshap.record import CLASS_NAMES, SAMPLING_RATE_HZ

__all__ = [
    "DemoDefects",
    "DemoError",
    "demo_catalog",
    "demo_defects",
    "discriminative_band_hz",
    "expected_spectrogram",
    "magnitude_sensitive_band_hz",
    "magnitude_sensitivity",
    "synthesize_waveforms",
    "write_demo_dataset",
]


#: ``magnitude_sensitivity(over="s_wave")``: the windows centred this long after the S
#: arrival (the direct S wave, 1/fc + 0.05 R = 0.5-1.3 s on the demo, and its early coda)
S_WAVE_WINDOW_S = 2.0


def _image_floor(power: np.ndarray, nperseg: int) -> np.ndarray:
    """The median minimum of log10 spectrograms whose means are ``power``
    ``(m, 3, n_freq, n_time)``, ``(m,)``.

    An image's minimum is a random dip of its 0 Hz bin (after the constant detrend) or its
    Nyquist bin (even ``nperseg``), where the periodogram is χ² with one degree of freedom:
    a pixel of mean μ falls below x with probability ≈ √(2x / (π μ)), so the minimum of
    them all is below x with probability ≈ 1 − exp(−√(2x/π) Σ μ^(−1/2)), whose median is
    x = (π/2) (ln 2 / Σ μ^(−1/2))². It lies about 5 decades below those bins' mean; the
    bins the event fills (its leakage) take part less, so it rises with the magnitude.
    The other bins (χ² with two degrees of freedom) dip far less deep.
    """
    rows = [0, -1] if nperseg % 2 == 0 else [0]
    dips = power[:, :, rows, :].reshape(len(power), -1)
    total = np.sum(1.0 / np.sqrt(dips), axis=1)
    return detmath.log10((np.pi / 2.0) * np.square(float(detmath.log(2.0)) / total))


def _typical_event(catalog: pd.DataFrame) -> pd.DataFrame:
    """The event at the catalogue's median hypocentral distance (one row: its ray, travel
    times and S arrival), with the median noise level and stress drop."""
    distance = catalog["hypocentral_distance_km"]
    row = catalog.iloc[[int(np.argmin(np.abs(distance - distance.median()).to_numpy()))]]
    row = row.reset_index(drop=True)
    for column in ("noise_psd_db", "stress_drop_mpa"):
        row[column] = float(catalog[column].median())
    return row


def magnitude_sensitivity(
    cfg: DemoConfig,
    spectrogram: SpectrogramConfig | None = None,
    magnitudes: np.ndarray | None = None,
    over: Literal["image", "s_wave"] = "image",
) -> tuple[np.ndarray, np.ndarray]:
    """How much each frequency row of the normalised images changes with the magnitude.

    Each image is min-max normalised on its own (:mod:`quakeshap.spectrogram`), so the
    absolute amplitude is gone. What magnitude leaves in the image is the contrast of the
    event against the fixed background and digitiser noise (every noise pixel darkens as
    the event's peak raises the image's maximum: the largest effect, in every row, most
    where the ground noise stands highest above the image's floor, at low frequency) and
    the spectral shape of the S wave (the Brune corner frequency falls with magnitude, and
    the band where the S wave rises above the noise widens: a bump that moves up with the
    stress drop; ``over="s_wave"`` shows it best).

    For a typical event of the demo (the ray at the median hypocentral distance, the
    median noise level and stress drop) the expected log10 spectrogram
    (:func:`quakeshap.demo.expected_spectrogram`: P, S, noise, leakage through the window)
    is normalised like an image: by its maximum and by the median of a real image's
    minimum, a random dip far below any mean (:func:`_image_floor`). A row's sensitivity
    is the mean over channels and windows of |Δ image / Δ magnitude| between consecutive
    ``magnitudes``, averaged over them and over the median Q of the pre and of the post
    side.

    Approximations: the log of the mean power stands for the mean of the log (a constant
    0.25 apart in most rows); the image's maximum is the mean's, not that of noisy pixels
    (about 0.5 higher). Against brute-force images of synthetic traces
    (``tests/test_demo_tasks.py``) the level is right within 20 % and, between M 1 and
    M 3, the shape over frequency too (Spearman 0.9); averaged over the whole range the
    curve is so flat (its minimum is 0.5–0.7 of its maximum, in both) that the order of
    its rows is not reliable beyond "highest at the lowest rows".

    Parameters
    ----------
    spectrogram
        The study's spectrogram (``sampling_rate_hz``, ``n_samples``, ``nperseg``,
        ``noverlap``); None = its defaults.
    magnitudes
        Ascending, ``(k,)`` with k >= 2; None = the demo's range in steps of 0.1
        (uniformly weighted, not as Gutenberg–Richter).
    over
        ``image``: every window (what the network sees); ``s_wave``: the windows centred
        from the S arrival to ``S_WAVE_WINDOW_S`` after it.

    Returns
    -------
    frequency_hz
        ``(n_freq,)`` the image rows' frequencies (0-50 Hz in 33 rows for the study).
    sensitivity
        ``(n_freq,)`` float64, image units (0-1) per magnitude unit.
    """
    spectrogram = SpectrogramConfig() if spectrogram is None else spectrogram
    if magnitudes is None:
        steps = round((cfg.magnitude_max - cfg.magnitude_min) / MAGNITUDE_STEP)
        magnitudes = cfg.magnitude_min + MAGNITUDE_STEP * np.arange(steps + 1)
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    if magnitudes.ndim != 1 or len(magnitudes) < 2 or not (np.diff(magnitudes) > 0).all():
        raise ValueError("magnitudes must be at least two ascending values")
    if over not in ("image", "s_wave"):
        raise ValueError(f"over must be 'image' or 's_wave', got {over!r}")
    catalog = demo_catalog(cfg)
    event = _typical_event(catalog)
    rows = event.loc[np.zeros(len(magnitudes), dtype=np.int64)].reset_index(drop=True)
    rows["source_magnitude"] = magnitudes
    rows["corner_frequency_hz"] = brune_corner_frequency_hz(
        magnitudes, rows["stress_drop_mpa"].to_numpy(), cfg.vs_km_s
    )
    curves = []
    for side in CLASS_NAMES:
        rows["q"] = float(catalog.loc[catalog["label"] == side, "q"].median())
        power = expected_spectrogram(rows, cfg, spectrogram)
        level = detmath.log10(power)
        top = level.max(axis=(1, 2, 3))
        floor = _image_floor(power, spectrogram.nperseg)
        image = (level - floor[:, None, None, None]) / (top - floor)[:, None, None, None]
        if over == "s_wave":
            step = spectrogram.nperseg - spectrogram.noverlap
            centre = (step * np.arange(level.shape[-1]) + spectrogram.nperseg / 2.0) / (
                spectrogram.sampling_rate_hz
            )
            s_arrival = int(event.at[0, "s_arrival_sample"]) / SAMPLING_RATE_HZ
            image = image[..., (centre >= s_arrival) & (centre <= s_arrival + S_WAVE_WINDOW_S)]
        change = np.abs(np.diff(image, axis=0)).mean(axis=(1, 3)) / np.diff(magnitudes)[:, None]
        curves.append(change.mean(axis=0))
    frequency_hz = np.fft.rfftfreq(spectrogram.nperseg, d=1.0 / spectrogram.sampling_rate_hz)
    return frequency_hz, np.mean(curves, axis=0)


def magnitude_sensitive_band_hz(
    cfg: DemoConfig,
    spectrogram: SpectrogramConfig | None = None,
    threshold: float = 0.8,
    over: Literal["image", "s_wave"] = "image",
) -> tuple[float, float]:
    """Frequency band (Hz) of the images that changes most with the magnitude.

    The contiguous run of rows around the maximum of :func:`magnitude_sensitivity` (over
    the whole image or the S wave, the demo's range of magnitudes) where it is at least
    ``threshold`` times that maximum, as (lowest, highest) row frequency. The curve is
    broad (every row changes, its minimum is about half its maximum): the band names where
    an explanation of a magnitude regression on the demo should weigh most, not the only
    rows it may use.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    frequency_hz, sensitivity = magnitude_sensitivity(cfg, spectrogram, over=over)
    inside = sensitivity >= threshold * sensitivity.max()
    lo = hi = int(np.argmax(sensitivity))
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(inside) - 1 and inside[hi + 1]:
        hi += 1
    return float(frequency_hz[lo]), float(frequency_hz[hi])
