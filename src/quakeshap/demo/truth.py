"""The ground truth an explanation of a model trained on the demo should recover.

The label lives in Q only (:mod:`quakeshap.demo.physics`): pre and post versions of the
same event differ in log power by an amount that grows with frequency and travel time,
until the signal sinks into the noise. :func:`discriminative_band_hz` finds the band where
that difference is largest; the ``explainers`` stage (:mod:`quakeshap.explain.compare`)
scores every explainer against it, and ``tests/test_compare_explainers.py`` fixes what it
finds.
"""

from __future__ import annotations

import numpy as np

from quakeshap import detmath
from quakeshap.config import DemoConfig
from quakeshap.demo.catalog import DemoError, demo_catalog
from quakeshap.demo.physics import digitizer_psd, noise_psd, phase_spectrum
from quakeshap.record import SAMPLING_RATE_HZ

#: the study's spectrogram window (``spectrogram.nperseg``): 0–50 Hz in 33 steps at 100 Hz
SPECTROGRAM_WINDOW_SAMPLES = 64


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
    f = np.fft.rfftfreq(SPECTROGRAM_WINDOW_SAMPLES, d=1.0 / SAMPLING_RATE_HZ)
    hypo = catalog["hypocentral_distance_km"].to_numpy()
    duration = 1.0 / catalog["corner_frequency_hz"].to_numpy() + 0.05 * hypo
    noise = noise_psd(f, catalog["noise_psd_db"].to_numpy()) + digitizer_psd()
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
        power.append(detmath.log10(np.square(spectrum) / duration[:, None] + noise))
    diff = np.abs(power[0] - power[1]).mean(axis=0)
    if not diff.max() > 0:
        raise DemoError("data.demo.q_pre equals q_post: pre and post do not differ")
    inside = np.flatnonzero(diff >= fraction * diff.max())
    return float(f[inside[0]]), float(f[inside[-1]])
