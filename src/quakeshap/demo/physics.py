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

*Expected spectrogram* (ground truth, not data). :func:`expected_spectrogram` gives the
mean of the study's spectrogram of a trace over the synthesis' random draws, exactly for
this model of modulated Gaussian noise (the window's leakage and the detrend included);
:func:`quakeshap.demo.magnitude_sensitivity` builds on it.

Every exponential, logarithm, power and trigonometric function here is
:mod:`quakeshap.detmath`'s, so that the waveforms' bits do not depend on the CPU.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quakeshap import detmath
from quakeshap.config import DemoConfig, SpectrogramConfig
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


def _phase(
    rows: pd.DataFrame, phase: str, cfg: DemoConfig, f: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One phase of catalogue rows: its amplitude spectrum :func:`phase_spectrum` at ``f``
    ``(m, n_freq)``, its envelope over ``n`` samples ``(m, n)`` and its RMS amplitude on E,
    N, Z ``(m, 3)`` (without the random site jitter and component scatter)."""
    hypo = _column(rows, "hypocentral_distance_km")
    fc_s = _column(rows, "corner_frequency_hz")
    if phase == "P":
        onset, travel = np.full(len(rows), P_ARRIVAL_SAMPLE), "p_travel_sec"
    else:
        onset, travel = rows["s_arrival_sample"].to_numpy(dtype=np.int64), "s_travel_sec"
    spectrum = phase_spectrum(
        f,
        phase,
        _column(rows, "source_magnitude"),
        fc_s,
        hypo,
        _column(rows, travel),
        _column(rows, "q"),
        cfg,
    )
    fc = fc_s * (FC_P_OVER_FC_S if phase == "P" else 1.0)
    envelope = _envelopes(onset, 1.0 / fc + 0.05 * hypo, phase, n)
    weights = component_weights(phase, _column(rows, "incidence_rad"), _column(rows, "azimuth_rad"))
    return spectrum, envelope, weights


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
    velocity = np.zeros((len(rows), len(CHANNELS), n))
    for k, phase in enumerate(PHASES):
        spectrum, envelope, weights = _phase(rows, phase, cfg, f, n)
        amplitude = jitter * spectrum
        # scale so that the windowed wavelet's Fourier amplitude spectrum is `amplitude`
        scale = 1.0 / (dt * np.sqrt(np.sum(np.square(envelope), axis=1)))
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


# --------------------------------------------------------------------------------------
# the expected spectrogram (ground truth, not data)
# --------------------------------------------------------------------------------------

#: zero padding of the spectrogram window in :func:`expected_spectrogram`: its frequency
#: grid has ``LEAKAGE_OVERSAMPLING * nperseg`` points (fs / 512 = 0.2 Hz for the study)
LEAKAGE_OVERSAMPLING = 8


def _spectrogram_window(spectrogram: SpectrogramConfig) -> np.ndarray:
    """``scipy.signal.spectrogram``'s default window (what the study used), ``(nperseg,)``."""
    from scipy import signal  # on use: only the ground truth needs it

    default = inspect.signature(signal.spectrogram).parameters["window"].default
    return signal.get_window(default, spectrogram.nperseg)


class _Periodogram:
    """How the bins of ``scipy.signal.spectrogram`` see a modulated stationary process.

    After the constant detrend, bin k of a segment x is Σ h_k x with the taper
    h_k = w e^(−2πikn/N) − μ_k, μ_k = mean_n(w e^(−2πikn/N)) (N = nperseg, w the window).
    For x = a · c, a a known modulation (an envelope) and c stationary with two-sided power
    spectrum P₂, the mean periodogram is exactly ∫ P₂(ν) |Σ h_k a e^(−2πiνn/fs)|² dν, and
    Σ h_k a e^(−2πiνn/fs) = FFT(w a)(ν + k fs/N) − μ_k FFT(a)(ν): two FFTs per segment.
    """

    def __init__(self, spectrogram: SpectrogramConfig) -> None:
        self.window = _spectrogram_window(spectrogram)
        nperseg, fs = spectrogram.nperseg, spectrogram.sampling_rate_hz
        n_freq = nperseg // 2 + 1
        self.n_fft = LEAKAGE_OVERSAMPLING * nperseg
        #: the two-sided frequency grid, as |ν| (Hz), and its step
        self.abs_frequency_hz = np.abs(np.fft.fftfreq(self.n_fft, d=1.0 / fs))
        self.step_hz = fs / self.n_fft
        angle = (2.0 * np.pi / nperseg) * np.outer(np.arange(n_freq), np.arange(nperseg))
        self.mean_taper = (self.window * (detmath.cos(angle) - 1j * detmath.sin(angle))).mean(1)
        self.shifted = (
            np.arange(self.n_fft)[None, :] + LEAKAGE_OVERSAMPLING * np.arange(n_freq)[:, None]
        ) % self.n_fft
        # scipy's density scaling, one-sided: doubled but at 0 Hz and (even nperseg) Nyquist
        self.scale = np.full(n_freq, 1.0 / (fs * np.sum(self.window * self.window)))
        self.scale[1 : n_freq - 1 if nperseg % 2 == 0 else n_freq] *= 2.0

    def mean(self, modulation: np.ndarray, two_sided_psd: np.ndarray) -> np.ndarray:
        """Mean periodogram densities ``(n_seg, n_freq)`` of segments whose modulation is
        ``(n_seg, nperseg)``, of a process of two-sided PSD ``(n_fft,)`` on the grid."""
        windowed = np.fft.fft(modulation * self.window, self.n_fft, axis=-1)
        plain = np.fft.fft(modulation, self.n_fft, axis=-1)
        response = windowed[:, self.shifted] - self.mean_taper[None, :, None] * plain[:, None, :]
        power = np.square(response.real) + np.square(response.imag)
        return (power @ two_sided_psd) * (self.step_hz * self.scale)


def expected_spectrogram(
    catalog: pd.DataFrame, cfg: DemoConfig, spectrogram: SpectrogramConfig
) -> np.ndarray:
    """Mean spectrogram of catalogue rows' traces, before the log and the normalisation.

    What ``scipy.signal.spectrogram`` (the study's settings in ``spectrogram``) gives on
    average over the random draws of :func:`synthesize_waveforms`, without the site jitter
    and the component scatter (factors of mean about 1). Exact otherwise, to the
    discretisation of the frequency integral: the P and S waves are stationary coloured
    noise of two-sided spectrum |A_X(f)|² / fs (:func:`phase_spectrum`) times their
    envelope, with their component weights; the background and digitiser noise is
    stationary; each window sees them through its spectral response after the constant
    detrend (:class:`_Periodogram`). So the 0 Hz bin is nearly empty, and the sharp onsets
    and strong low-frequency S waves of large events leak into the high-frequency bins, as
    in the images.

    Parameters
    ----------
    catalog
        Rows with the columns of :func:`quakeshap.demo.demo_catalog`.
    spectrogram
        ``sampling_rate_hz``, ``n_samples``, ``nperseg`` and ``noverlap`` are read.

    Returns
    -------
    ``(n, 3, n_freq, n_time)`` float64 in counts²/Hz (E, N, Z; 33 × 96 for the study's
    settings), on the frequencies and window centres of the study's spectrogram.
    """
    periodogram = _Periodogram(spectrogram)
    nperseg, step = spectrogram.nperseg, spectrogram.nperseg - spectrogram.noverlap
    fs = spectrogram.sampling_rate_hz
    nu = periodogram.abs_frequency_hz
    ground = noise_psd(nu, _column(catalog, "noise_psd_db")) + digitizer_psd()
    flat = np.ones((1, nperseg))
    noise = np.stack([periodogram.mean(flat, psd / 2.0)[0] for psd in ground])
    n_time = len(range(0, spectrogram.n_samples - nperseg + 1, step))
    power = np.repeat(noise[:, None, :, None], len(CHANNELS), axis=1).repeat(n_time, axis=3)
    for phase in PHASES:
        spectrum, envelope, weights = _phase(catalog, phase, cfg, nu, TRACE_SAMPLES)
        # the synthesis' scale: the windowed wavelet's Fourier spectrum is the phase's
        modulation = envelope * (fs / np.sqrt(np.sum(np.square(envelope), axis=1)))[:, None]
        for i in range(len(catalog)):
            segments = np.lib.stride_tricks.sliding_window_view(
                modulation[i, : spectrogram.n_samples], nperseg
            )[::step]
            live = segments.any(axis=1)
            seen = np.zeros((n_time, len(periodogram.scale)))
            seen[live] = periodogram.mean(segments[live], np.square(spectrum[i]) / fs)
            power[i] += np.square(weights[i])[:, None, None] * seen.T[None, :, :]
    return power * (GAIN_COUNTS_PER_M_S * GAIN_COUNTS_PER_M_S)
