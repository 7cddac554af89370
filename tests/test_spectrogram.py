"""quakeshap.spectrogram against scipy.signal.spectrogram, trace by trace (docs/method.md §2)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from matplotlib import pyplot as plt
from PIL import Image
from scipy import signal

from quakeshap import spectrogram
from quakeshap.config import SpectrogramConfig
from quakeshap.spectrogram import (
    SpectrogramError,
    compute_spectrograms,
    quantize,
    save_png,
    spectrogram_axes,
    spectrogram_images,
)

CFG = SpectrogramConfig()


def reference_image(trace: np.ndarray) -> np.ndarray:
    """The study's recipe for one (3, T) trace, channel by channel: (3, 33, 96) float64."""
    levels = []
    for channel in trace:
        _, _, power = signal.spectrogram(channel[:1300], fs=100, nperseg=64, noverlap=51)
        levels.append(np.log10(power + 1e-10))
    stacked = np.stack(levels)
    return (stacked - stacked.min()) / (stacked.max() - stacked.min())


@pytest.fixture
def traces(rng: np.random.Generator) -> np.ndarray:
    """(7, 3, 2500) traces with different levels per channel and per trace."""
    data = rng.normal(size=(7, 3, 2500))
    data *= rng.uniform(0.1, 1000.0, size=(7, 3, 1))
    data[:, :, 500:800] += 50 * np.sin(2 * np.pi * 20 * np.arange(300) / 100)
    return data


def test_images_match_scipy_trace_by_trace(traces: np.ndarray) -> None:
    result = compute_spectrograms(traces, CFG)
    assert result.images.shape == (7, 3, 33, 96)
    assert result.images.dtype == np.float64
    for i, trace in enumerate(traces):
        np.testing.assert_array_equal(result.images[i], reference_image(trace))
    assert not result.flat.any()


def test_one_min_max_over_the_three_channels(traces: np.ndarray) -> None:
    traces = traces.copy()
    traces[:, 2] *= 1e-3  # a weak Z channel stays weaker than E and N after normalisation
    images = compute_spectrograms(traces, CFG).images
    assert np.allclose(images.min(axis=(1, 2, 3)), 0.0)
    assert np.allclose(images.max(axis=(1, 2, 3)), 1.0)
    assert (images[:, 2].max(axis=(1, 2)) < 1.0).all()


def test_axes_are_scipys() -> None:
    frequency_hz, time_s = spectrogram_axes(CFG)
    f_ref, t_ref, _ = signal.spectrogram(np.zeros(1300), fs=100, nperseg=64, noverlap=51)
    np.testing.assert_array_equal(frequency_hz, f_ref)
    np.testing.assert_array_equal(time_s, t_ref)
    assert len(frequency_hz) == 33 and frequency_hz[0] == 0 and frequency_hz[-1] == 50
    assert len(time_s) == 96
    assert time_s[0] == pytest.approx(0.32) and time_s[-1] == pytest.approx(12.67)


def test_axes_of_computed_images_match(traces: np.ndarray) -> None:
    result = compute_spectrograms(traces, CFG)
    frequency_hz, time_s = spectrogram_axes(CFG)
    np.testing.assert_array_equal(result.frequency_hz, frequency_hz)
    np.testing.assert_array_equal(result.time_s, time_s)


def test_float32_path_within_1e6_of_float64(traces: np.ndarray) -> None:
    stored = quantize(compute_spectrograms(traces, CFG).images, "float32")
    assert stored.dtype == np.float32
    for i, trace in enumerate(traces):
        np.testing.assert_allclose(stored[i], reference_image(trace), rtol=0, atol=1e-6)


def test_uint8_path_is_floor_255x_of_float64(traces: np.ndarray) -> None:
    stored = quantize(compute_spectrograms(traces, CFG).images, "uint8")
    assert stored.dtype == np.uint8
    for i, trace in enumerate(traces):
        scaled = reference_image(trace) * 255
        expected = np.floor(scaled)
        near_integer = np.abs(scaled - np.round(scaled)) < 1e-6
        decided = ~near_integer
        np.testing.assert_array_equal(stored[i][decided], expected[decided])
        # at a near-integer, either neighbour is an acceptable rounding of 255 x
        assert (np.abs(stored[i][near_integer] - scaled[near_integer]) < 1 + 1e-6).all()
        assert stored[i].max() == 255 and stored[i].min() == 0


def test_quantize_rejects_unknown_kind() -> None:
    with pytest.raises(SpectrogramError, match="quantization"):
        quantize(np.zeros((1, 3, 2, 2)), "uint16")


def test_chunked_equals_unchunked(traces: np.ndarray) -> None:
    whole = compute_spectrograms(traces, CFG).images
    parts = [compute_spectrograms(traces[i : i + 3], CFG).images for i in range(0, 7, 3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("quantization", ["uint8", "float32"])
def test_stored_images_are_the_quantised_float64_images(rng, quantization: str) -> None:
    # 19 traces: blocks of 8, 8 and 3; a constant trace inside the second block
    traces = rng.normal(size=(19, 3, 1400)) * rng.uniform(0.1, 1e4, size=(19, 3, 1))
    traces[9] = 3.0
    reference = compute_spectrograms(traces, CFG)
    dtype = np.dtype(quantization)
    stored, flat = spectrogram_images(traces, CFG, dtype)
    assert stored.dtype == dtype and stored.shape == (19, 3, 33, 96)
    np.testing.assert_array_equal(flat, reference.flat)
    assert flat.tolist() == [i == 9 for i in range(19)]
    np.testing.assert_array_equal(stored, quantize(reference.images, quantization))
    # into a slice of a larger array, as the stage does
    target = np.full((25, 3, 33, 96), 7, dtype=dtype)
    spectrogram_images(traces, CFG, out=target[3:22])
    np.testing.assert_array_equal(target[3:22], stored)
    assert (target[:3] == 7).all() and (target[22:] == 7).all()


@pytest.mark.parametrize(("nperseg", "noverlap", "fs"), [(63, 40, 100.0), (32, 0, 50.0)])
def test_other_settings_match_scipy(traces: np.ndarray, nperseg, noverlap, fs) -> None:
    cfg = dataclasses.replace(CFG, nperseg=nperseg, noverlap=noverlap, sampling_rate_hz=fs)
    images = compute_spectrograms(traces, cfg).images
    for i, trace in enumerate(traces):
        _, _, power = signal.spectrogram(
            trace[:, :1300], fs=fs, nperseg=nperseg, noverlap=noverlap, axis=-1
        )
        level = np.log10(power + 1e-10)
        expected = (level - level.min()) / (level.max() - level.min())
        np.testing.assert_array_equal(images[i], expected)


@pytest.mark.parametrize("block", [1, 3, 64])
def test_block_size_changes_nothing(traces: np.ndarray, monkeypatch, block: int) -> None:
    expected = compute_spectrograms(traces, CFG).images
    monkeypatch.setattr(spectrogram, "BLOCK_TRACES", block)
    np.testing.assert_array_equal(compute_spectrograms(traces, CFG).images, expected)


def test_other_input_dtypes_are_computed_in_float64(traces: np.ndarray) -> None:
    counts = np.round(traces).astype(np.int32)
    np.testing.assert_array_equal(
        compute_spectrograms(counts, CFG).images,
        compute_spectrograms(counts.astype(np.float64), CFG).images,
    )


def test_an_empty_batch() -> None:
    result = compute_spectrograms(np.empty((0, 3, 1300)), CFG)
    assert result.images.shape == (0, 3, 33, 96) and result.flat.shape == (0,)


def test_only_the_first_n_samples_are_used(traces: np.ndarray) -> None:
    changed = traces.copy()
    changed[:, :, 1300:] = 0.0
    np.testing.assert_array_equal(
        compute_spectrograms(changed, CFG).images, compute_spectrograms(traces, CFG).images
    )
    short = dataclasses.replace(CFG, n_samples=640)
    assert compute_spectrograms(traces, short).images.shape == (
        7,
        3,
        33,
        45,
    )  # (640 - 64) // 13 + 1 windows


def test_constant_trace_is_flagged_not_nan(traces: np.ndarray) -> None:
    traces = traces.copy()
    traces[3] = 7.0  # constant: the detrended power is 0 everywhere
    result = compute_spectrograms(traces, CFG)
    assert result.flat.tolist() == [False, False, False, True, False, False, False]
    assert np.isfinite(result.images).all()
    assert (result.images[3] == 0).all()
    np.testing.assert_array_equal(result.images[4], reference_image(traces[4]))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((4, 2, 2500), r"\(n, 3, samples\)"), ((4, 3, 1299), "fewer than spectrogram.n_samples")],
)
def test_bad_shapes_are_refused(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(SpectrogramError, match=message):
        compute_spectrograms(np.ones(shape), CFG)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_waveforms_are_refused(traces: np.ndarray, bad: float) -> None:
    traces = traces.copy()
    traces[2, 1, 100] = bad
    with pytest.raises(SpectrogramError, match="NaN or inf"):
        compute_spectrograms(traces, CFG)
    traces[2, 1, 100] = 0.0
    traces[2, 1, 2000] = bad  # beyond the first n_samples: not used, not refused
    assert np.isfinite(compute_spectrograms(traces, CFG).images).all()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGBA"
        return np.asarray(img)


def test_png_holds_what_the_studys_imsave_wrote(traces: np.ndarray, tmp_path) -> None:
    images = compute_spectrograms(traces[:2], CFG).images
    stored = quantize(images, "uint8")
    ours = tmp_path / "ours.png"
    save_png(stored[0], ours)
    study = io.BytesIO()
    plt.imsave(study, np.moveaxis(images[0], 0, -1), format="png")  # the study's call
    pixels = _decode(ours.read_bytes())
    np.testing.assert_array_equal(pixels, _decode(study.getvalue()))
    np.testing.assert_array_equal(pixels[..., :3], np.moveaxis(stored[0], 0, -1))
    assert (pixels[..., 3] == 255).all()
    # float images give the same file; bytes are stable and carry no metadata
    again = tmp_path / "again.png"
    save_png(images[0], again)
    assert again.read_bytes() == ours.read_bytes()
    assert b"Software" not in ours.read_bytes() and b"tIME" not in ours.read_bytes()
