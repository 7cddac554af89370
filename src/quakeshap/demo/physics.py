"""The demo's waveforms: source, path and site spectra, noise, envelopes, synthesis.

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
:func:`quakeshap.demo.discriminative_band_hz` gives the band where it is largest,
strongest over the S wave and its coda (T_S > T_P).

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

Every exponential, logarithm, power and trigonometric function here is
:mod:`quakeshap.detmath`'s, so that the waveforms' bits do not depend on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quakeshap import detmath
from quakeshap.config import DemoConfig
from quakeshap.record import CHANNELS, P_ARRIVAL_SAMPLE, SAMPLING_RATE_HZ, TRACE_SAMPLES

#: digitiser gain, counts per m/s
GAIN_COUNTS_PER_M_S = 6.0e8
DENSITY_KG_M3 = 2700.0
RADIATION = {"P": 0.52, "S": 0.63}
FREE_SURFACE = 2.0
FC_P_OVER_FC_S = 1.5
ANTI_ALIAS_HZ = 40.0
ANTI_ALIAS_STOP_DB = -120.0
#: secondary microseism peak above the high-frequency level, dB, at 0.2 Hz
MICROSEISM_DB = 12.0
#: the digitiser's own white noise, RMS counts (dominates above the anti-alias corner)
DIGITIZER_NOISE_COUNTS = 1.0
COMPONENT_LOG_STD = 0.2
SITE_JITTER_LOG_STD = 0.2
RISE_S = 0.03
CODA = {"P": (0.25, 1.5), "S": (0.30, 3.0)}  # relative amplitude, decay time (s)
PHASES = ("P", "S")

# --------------------------------------------------------------------------------------
# spectra
# --------------------------------------------------------------------------------------


def seismic_moment_nm(magnitude: np.ndarray) -> np.ndarray:
    """Seismic moment in N·m from moment magnitude (Hanks & Kanamori)."""
    return detmath.exp10(1.5 * np.asarray(magnitude, dtype=np.float64) + 9.1)


def brune_corner_frequency_hz(
    magnitude: np.ndarray, stress_drop_mpa: np.ndarray, vs_km_s: float
) -> np.ndarray:
    """Brune (1970) S-wave corner frequency, Hz: 0.4906 β (Δσ / M0)^(1/3), SI units."""
    m0 = seismic_moment_nm(magnitude)
    stress_pa = np.asarray(stress_drop_mpa, dtype=np.float64) * 1e6
    return 0.4906 * vs_km_s * 1000.0 * detmath.cbrt(stress_pa / m0)


def _frequencies(n_samples: int = TRACE_SAMPLES) -> np.ndarray:
    return np.fft.rfftfreq(n_samples, d=1.0 / SAMPLING_RATE_HZ)


def anti_alias_response(f: np.ndarray) -> np.ndarray:
    """Magnitude response of the digitiser's anti-alias FIR filter.

    Flat up to ``ANTI_ALIAS_HZ`` (0.4 × the sampling rate), then falling as a Gaussian in
    frequency to ``ANTI_ALIAS_STOP_DB`` at the Nyquist frequency.
    """
    f = np.asarray(f, dtype=np.float64)
    nyquist = SAMPLING_RATE_HZ / 2.0
    x = np.clip((f - ANTI_ALIAS_HZ) / (nyquist - ANTI_ALIAS_HZ), 0.0, None)
    return detmath.exp10(ANTI_ALIAS_STOP_DB / 20.0 * (x * x))


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
    velocity_cubed = velocity_m_s * velocity_m_s * velocity_m_s
    omega0 = (
        RADIATION[phase] * FREE_SURFACE * m0 / (4.0 * np.pi * DENSITY_KG_M3 * velocity_cubed * r_m)
    )
    source = 2.0 * np.pi * f * omega0 / (1.0 + np.square(f / fc))
    path = detmath.exp(-np.pi * f * np.asarray(travel_time_s)[:, None] / np.asarray(q)[:, None])
    site = detmath.exp(-np.pi * cfg.kappa_s * f)
    return source * path * site * anti_alias_response(f)


def noise_psd(f: np.ndarray, level_db: np.ndarray) -> np.ndarray:
    """One-sided power spectral density of background ground velocity, (m/s)²/Hz.

    Acceleration PSD ``level_db`` (dB re 1 (m/s²)²/Hz, per trace ``(n,)``) above 1 Hz,
    a secondary-microseism peak (``MICROSEISM_DB`` at 0.2 Hz), converted to velocity;
    the anti-alias filter applied. Returns ``(n, n_freq)``.
    """
    f = np.maximum(np.asarray(f, dtype=np.float64), 0.05)[None, :]
    db = np.asarray(level_db, dtype=np.float64)[:, None] + MICROSEISM_DB * detmath.exp(
        -0.5 * np.square(detmath.log10(f / 0.2) / 0.25)
    )
    return detmath.exp10(db / 10.0) / np.square(2.0 * np.pi * f) * np.square(anti_alias_response(f))


def digitizer_psd() -> float:
    """One-sided PSD of the digitiser's white noise expressed as ground velocity, (m/s)²/Hz."""
    rms_m_s = DIGITIZER_NOISE_COUNTS / GAIN_COUNTS_PER_M_S
    return rms_m_s * rms_m_s / (SAMPLING_RATE_HZ / 2.0)


def component_weights(phase: str, incidence_rad: np.ndarray, azimuth_rad: np.ndarray) -> np.ndarray:
    """RMS amplitude of a phase on E, N, Z, ``(m, 3)``, for rays of this incidence and
    azimuth (source → station). P moves along the ray; S splits evenly into SV (radial
    cos i, vertical sin i) and SH (transverse)."""
    si, ci = detmath.sin(incidence_rad), detmath.cos(incidence_rad)
    sa, ca = detmath.sin(azimuth_rad), detmath.cos(azimuth_rad)
    if phase == "P":
        return np.stack([si * np.abs(sa), si * np.abs(ca), ci], axis=-1)
    radial, transverse = ci / np.sqrt(2.0), 1.0 / np.sqrt(2.0)
    return np.stack(
        [
            detmath.hypot(radial * sa, transverse * ca),
            detmath.hypot(radial * ca, transverse * sa),
            si / np.sqrt(2.0),
        ],
        axis=-1,
    )


def _site_jitter(f: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Smooth random log-amplitude perturbations over log frequency, ``(m, n_freq)``:
    three cosines per trace, standard deviation ``SITE_JITTER_LOG_STD`` in ln units."""
    x = detmath.log(np.maximum(f, 0.5) / 0.5) / detmath.log(SAMPLING_RATE_HZ / 2.0 / 0.5)
    k = np.arange(1, 4)[None, :, None]
    arg = np.pi * k * x[None, None, :] + phase[:, :, None]
    return detmath.exp((amp[:, :, None] * detmath.cos(arg)).sum(axis=1))


# --------------------------------------------------------------------------------------
# waveforms
# --------------------------------------------------------------------------------------


def _envelopes(onset: np.ndarray, duration_s: np.ndarray, phase: str, n: int) -> np.ndarray:
    """Phase envelopes, ``(m, n)``: zero before ``onset`` (samples), then rise, direct
    wave decaying over ``duration_s`` and an exponential coda."""
    t = (np.arange(n)[None, :] - onset[:, None]) / SAMPLING_RATE_HZ
    after = np.maximum(t, 0.0)
    coda_amp, coda_s = CODA[phase]
    shape = (1.0 - detmath.exp(-after / RISE_S)) * (
        detmath.exp(-after / duration_s[:, None]) + coda_amp * detmath.exp(-after / coda_s)
    )
    return np.where(t >= 0.0, shape, 0.0)


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

    jitter_amp: np.ndarray  # (3,) one per cosine of the site jitter
    jitter_phase: np.ndarray  # (3,)
    component: np.ndarray  # (2, 3) log-normal factors, P and S on E, N, Z
    spectra: np.ndarray  # (3 sources: P, S, noise; 3 channels; n_freq) complex
    digitizer: np.ndarray  # (3, n) counts


def _draw(seed: int, source_id: int, n: int) -> _TraceDraws:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, source_id]))
    n_channels = len(CHANNELS)
    return _TraceDraws(
        jitter_amp=SITE_JITTER_LOG_STD / np.sqrt(1.5) * rng.standard_normal(3),
        jitter_phase=rng.uniform(0.0, 2.0 * np.pi, 3),
        component=detmath.exp(COMPONENT_LOG_STD * rng.standard_normal((len(PHASES), n_channels))),
        spectra=_white_spectrum(rng, (len(PHASES) + 1, n_channels), n),
        digitizer=DIGITIZER_NOISE_COUNTS * rng.standard_normal((n_channels, n)),
    )


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    return rows[name].to_numpy(dtype=np.float64)


def _ground_velocity(
    rows: pd.DataFrame, draws: list[_TraceDraws], cfg: DemoConfig, f: np.ndarray, n: int
) -> np.ndarray:
    """P, S and background noise of catalogue rows, ``(m, 3, n)`` in m/s."""
    dt = 1.0 / SAMPLING_RATE_HZ
    jitter = _site_jitter(
        f, np.stack([d.jitter_amp for d in draws]), np.stack([d.jitter_phase for d in draws])
    )
    spectra = np.stack([d.spectra for d in draws])  # (m, 3, 3, n_freq)
    component = np.stack([d.component for d in draws])  # (m, 2, 3)
    hypo = _column(rows, "hypocentral_distance_km")
    fc_s = _column(rows, "corner_frequency_hz")
    onsets = {
        "P": np.full(len(rows), P_ARRIVAL_SAMPLE),
        "S": rows["s_arrival_sample"].to_numpy(dtype=np.int64),
    }
    travel = {"P": "p_travel_sec", "S": "s_travel_sec"}
    velocity = np.zeros((len(rows), len(CHANNELS), n))
    for k, phase in enumerate(PHASES):
        amplitude = jitter * phase_spectrum(
            f,
            phase,
            _column(rows, "source_magnitude"),
            fc_s,
            hypo,
            _column(rows, travel[phase]),
            _column(rows, "q"),
            cfg,
        )
        fc = fc_s * (FC_P_OVER_FC_S if phase == "P" else 1.0)
        envelope = _envelopes(onsets[phase], 1.0 / fc + 0.05 * hypo, phase, n)
        # scale so that the windowed wavelet's Fourier amplitude spectrum is `amplitude`
        scale = 1.0 / (dt * np.sqrt(np.sum(np.square(envelope), axis=1)))
        weights = component_weights(
            phase, _column(rows, "incidence_rad"), _column(rows, "azimuth_rad")
        )
        weights = weights * component[:, k]
        coloured = np.fft.irfft(spectra[:, k] * amplitude[:, None, :], n=n, axis=-1)
        velocity += (scale[:, None] * weights)[:, :, None] * coloured * envelope[:, None, :]
    psd = noise_psd(f, _column(rows, "noise_psd_db"))
    noise = np.fft.irfft(
        spectra[:, len(PHASES)] * np.sqrt(psd * SAMPLING_RATE_HZ / 2.0)[:, None, :], n=n, axis=-1
    )
    return velocity + noise


def synthesize_waveforms(
    catalog: pd.DataFrame, cfg: DemoConfig, chunk_size: int = 64
) -> np.ndarray:
    """Three-component waveforms of catalogue rows, ``(n, 3, 2500)`` float64 in counts.

    ``catalog`` holds the columns of :func:`quakeshap.demo.demo_catalog` (change any of
    its physical columns to synthesise a variant of an event). Each trace is drawn from its
    own generator, seeded by ``cfg.seed`` and its ``source_id``: the same row gives the
    same waveform whatever else is synthesised with it. Defects are not applied here.
    """
    n = TRACE_SAMPLES
    f = _frequencies(n)
    out = np.empty((len(catalog), len(CHANNELS), n))
    for lo in range(0, len(catalog), chunk_size):
        rows = catalog.iloc[lo : lo + chunk_size]
        draws = [_draw(cfg.seed, int(sid), n) for sid in rows["source_id"]]
        velocity = _ground_velocity(rows, draws, cfg, f, n)
        digitizer = np.stack([d.digitizer for d in draws])
        out[lo : lo + len(rows)] = velocity * GAIN_COUNTS_PER_M_S + digitizer
    return out
