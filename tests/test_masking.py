"""Filling hidden image parts as shap's Image masker does (shap.masker, spectrogram.window_fill)."""

from __future__ import annotations

import numpy as np
import pytest

from quakeshap.config import ConfigError
from quakeshap.masking import fill_masked, fill_outside_columns, parse_masker
from quakeshap.record import PIXEL_LEVELS

SPECS = ["inpaint_telea", "inpaint_ns", "blur(3,3)", "blur(8,2)", 0.0, 127.5, 255.0]


@pytest.mark.parametrize("spec", ["inpaint", "blur(5)", "blur(0,5)", "-1", "256", "nan", ""])
def test_a_bad_specification_names_its_parameter(spec):
    with pytest.raises(ConfigError, match=r"^parameter spectrogram\.window_fill: "):
        parse_masker(spec, "spectrogram.window_fill")


@pytest.fixture
def image(rng) -> np.ndarray:
    return rng.integers(0, PIXEL_LEVELS + 1, (33, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("spec", SPECS)
def test_fill_is_what_shaps_image_masker_gives(image, spec, rng):
    import shap

    keep = np.ones((33, 96), dtype=bool)
    keep[:, :36] = False  # a time window hidden, as the ablations hide one
    keep[rng.random((33, 96)) < 0.1] = False  # and scattered pixels
    masker = shap.maskers.Image(spec, image.shape)
    feature_mask = np.repeat(keep[:, :, None], 3, axis=2).ravel()
    (expected,) = masker(feature_mask, image.copy())
    np.testing.assert_array_equal(fill_masked(image, keep, spec), expected[0])


@pytest.mark.parametrize("spec", ["inpaint_telea", 7.9])
def test_a_fully_hidden_image_is_filled_as_shap_fills_it(image, spec):
    import shap

    keep = np.zeros((33, 96), dtype=bool)
    hidden = np.zeros(image.size, dtype=bool)
    (expected,) = shap.maskers.Image(spec, image.shape)(hidden, image)
    np.testing.assert_array_equal(fill_masked(image, keep, spec), expected[0])


def test_outside_columns_are_filled_and_the_window_kept_by_hand():
    """A 2-image set of 2 × 6 pixels: image 0 keeps columns 1-2, image 1 keeps all."""
    images = np.arange(2 * 3 * 2 * 6, dtype=np.uint8).reshape(2, 3, 2, 6) + 10
    keep = np.array([[False, True, True, False, False, False], [True] * 6])
    out = fill_outside_columns(images, keep, 3.0)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out[0][:, :, [1, 2]], images[0][:, :, [1, 2]])
    assert (out[0][:, :, [0, 3, 4, 5]] == 3).all()
    np.testing.assert_array_equal(out[1], images[1])
    np.testing.assert_array_equal(images[0, 0, 0], [10, 11, 12, 13, 14, 15])  # not in place


def test_float_images_are_filled_on_their_8_bit_values(rng):
    images = rng.random((1, 3, 33, 96)).astype(np.float32)
    keep = np.zeros((1, 96), dtype=bool)
    keep[0, 40:50] = True
    out = fill_outside_columns(images, keep, "inpaint_telea")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0][:, :, 40:50], images[0][:, :, 40:50])
    filled = out[0][:, :, ~keep[0]] * PIXEL_LEVELS
    np.testing.assert_allclose(filled, np.round(filled), atol=1e-4)  # k / 255
    assert not np.array_equal(out[0][:, :, :40], images[0][:, :, :40])


def test_window_and_image_must_agree():
    with pytest.raises(ValueError, match="does not match"):
        fill_outside_columns(np.zeros((2, 3, 4, 5), np.uint8), np.ones((2, 4), bool), 0.0)
