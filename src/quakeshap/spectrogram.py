"""The study's RGB spectrograms (SPEC §2), vectorised over chunks of traces.

For each trace, each of the three channels (E, N, Z) gets
``scipy.signal.spectrogram(x[:n_samples], fs, nperseg=64, noverlap=51)`` with scipy's
defaults otherwise (Tukey 0.25 window, constant detrend, density scaling): 33 frequencies
(0-50 Hz) × 96 windows (centres 0.32-12.67 s) for the study's 1300 samples. Then
``log10(S + 1e-10)`` and ONE min-max normalisation over the three channels together, so
that the channels keep their relative levels. The study stored the result with
``matplotlib.pyplot.imsave`` as 8-bit PNG, i.e. ``floor(255 x)``; :func:`quantize` does the
same (``uint8``) or keeps ``x`` (``float32``).

All functions here are pure array functions; the ``spectrograms`` stage does the I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from quakeshap.config import SpectrogramConfig

log = logging.getLogger(__name__)


class SpectrogramError(ValueError):
    """Waveforms that cannot be turned into spectrograms (wrong shape, NaN, inf)."""


@dataclass(frozen=True)
class Spectrograms:
    """Normalised spectrogram images of a batch of traces.

    Attributes
    ----------
    images
        ``(n, 3, n_freq, n_time)`` float64 in [0, 1]; channel order E, N, Z; frequency
        index 0 = 0 Hz. All zeros where ``flat``.
    frequency_hz
        ``(n_freq,)`` bin frequencies, 0 to fs/2.
    time_s
        ``(n_time,)`` window centres in seconds from the start of the trace.
    flat
        ``(n,)`` bool: the log-spectrogram is constant over all three channels (e.g. a
        dead or constant trace) and cannot be min-max normalised.
    """

    images: np.ndarray
    frequency_hz: np.ndarray
    time_s: np.ndarray
    flat: np.ndarray


def compute_spectrograms(waveforms: np.ndarray, cfg: SpectrogramConfig) -> Spectrograms:
    """The study's normalised 3-channel spectrograms of a batch of traces.

    Parameters
    ----------
    waveforms
        ``(n, 3, n_total)`` with ``n_total >= cfg.n_samples``, in counts, sampled at
        ``cfg.sampling_rate_hz``; only the first ``cfg.n_samples`` samples are used.
    cfg
        ``sampling_rate_hz``, ``n_samples``, ``nperseg``, ``noverlap`` and ``log_floor``
        are read.

    Returns
    -------
    Spectrograms
        Images ``(n, 3, 33, 96)`` float64 in [0, 1] for the study's parameters.
    """
    waveforms = np.asarray(waveforms)
    if waveforms.ndim != 3 or waveforms.shape[1] != 3:
        raise SpectrogramError(f"waveforms must be (n, 3, samples), got shape {waveforms.shape}")
    if waveforms.shape[2] < cfg.n_samples:
        raise SpectrogramError(
            f"waveforms hold {waveforms.shape[2]} samples, fewer than spectrogram.n_samples = "
            f"{cfg.n_samples}"
        )
    window = np.asarray(waveforms[..., : cfg.n_samples], dtype=np.float64)
    if not np.isfinite(window).all():
        raise SpectrogramError("waveforms hold NaN or inf; reject such traces before this step")
    frequency_hz, time_s, power = signal.spectrogram(
        window, fs=cfg.sampling_rate_hz, nperseg=cfg.nperseg, noverlap=cfg.noverlap, axis=-1
    )
    # power: (n, 3, n_freq, n_time), identical to a per-trace, per-channel loop; the
    # steps below work in place on it (same values as log10(S + floor), then min-max)
    power += cfg.log_floor
    images = np.log10(power, out=power)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    span = images.max(axis=(1, 2, 3), keepdims=True) - low
    flat = span[:, 0, 0, 0] <= 0
    images -= low
    images /= np.where(flat[:, None, None, None], 1.0, span)
    images[flat] = 0.0
    return Spectrograms(images, frequency_hz, time_s, flat)


def spectrogram_axes(cfg: SpectrogramConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and window centres (s) of :func:`compute_spectrograms`' images."""
    frequency_hz, time_s, _ = signal.spectrogram(
        np.zeros(cfg.n_samples), fs=cfg.sampling_rate_hz, nperseg=cfg.nperseg, noverlap=cfg.noverlap
    )
    return frequency_hz, time_s


def quantize(images: np.ndarray, quantization: str) -> np.ndarray:
    """Images in [0, 1] as stored: ``uint8`` = ``floor(255 x)`` (what ``imsave`` wrote), or
    ``float32`` = ``x``. Same shape as ``images``."""
    if quantization == "uint8":
        scaled = np.clip(images * 255.0, 0.0, 255.0)
        return scaled.astype(np.uint8)  # truncation = floor for values >= 0, as imsave did
    if quantization == "float32":
        return images.astype(np.float32)
    raise SpectrogramError(
        f"spectrogram.quantization must be uint8 or float32, got {quantization!r}"
    )


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write one image as the study's RGBA PNG, without any metadata (stable bytes).

    Parameters
    ----------
    image
        ``(3, n_freq, n_time)`` uint8, or float in [0, 1] (stored as ``floor(255 x)``);
        row 0 (0 Hz) becomes the top row of the PNG, as in the study.
    path
        Target file; written as it is (the caller writes inside a temporary folder).
    """
    from matplotlib import image as mpimg  # imported on use: PNG export is optional

    mpimg.imsave(path, np.moveaxis(image, 0, -1), format="png", metadata={"Software": None})
