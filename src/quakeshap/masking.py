"""How hidden parts of an image are filled: shap's ``Image`` masker, without shap.

SHAP's partition explainer (``docs/method.md`` §5) hides parts of an image and fills them
with ``shap.maskers.Image(spec, shape)``: OpenCV inpainting (Telea or Navier–Stokes), an
OpenCV box blur, or a constant, on the 8-bit ``(H, W, 3)`` image. The time-window ablations
(``spectrogram.window``) hide the columns outside one window of every spectrogram and fill
them the same way, so that an ablated image looks to the network like an image SHAP has
masked. :func:`parse_masker` reads such a specification (``shap.masker``,
``spectrogram.window_fill``); :func:`fill_masked` repeats what shap 0.51's
``shap/maskers/_image.py`` does with it, operation for operation (``tests/test_masking.py``
compares the two), and :func:`fill_outside_columns` applies it to stored spectrograms.
"""

from __future__ import annotations

import math
import re

import numpy as np

from quakeshap.config import ConfigError
from quakeshap.record import PIXEL_LEVELS, to_uint8, to_unit

_BLUR = re.compile(r"^blur\(\s*(\d+)\s*,\s*(\d+)\s*\)$")

#: inpainting radius of shap's Image masker, in pixels
INPAINT_RADIUS = 3


def parse_masker(spec: str | float, key: str = "shap.masker") -> str | float:
    """Validate a masker specification and return what ``shap.maskers.Image`` takes.

    Parameters
    ----------
    spec
        ``"inpaint_telea"`` (the study), ``"inpaint_ns"``, ``"blur(kx,ky)"`` (OpenCV box
        blur with a kernel of ``kx × ky`` pixels, both > 0) or a number: masked features
        are set to that constant, in the masker's 0..255 units (the images are 8-bit there,
        so the constant is truncated to an integer).
    key
        The parameter that holds ``spec``, named in the error message.

    Returns
    -------
    The canonical masker string (``"blur(5,5)"``), or the constant as a float.

    Raises
    ------
    ConfigError
        ``"parameter <key>: ..."`` for anything else.
    """
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        value = float(spec)
    else:
        text = str(spec).strip()
        if text in ("inpaint_telea", "inpaint_ns"):
            return text
        match = _BLUR.match(text)
        if match:
            kx, ky = int(match.group(1)), int(match.group(2))
            if kx < 1 or ky < 1:
                raise ConfigError(f"parameter {key}: blur kernel {text!r} must be >= 1")
            return f"blur({kx},{ky})"
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(
                f"parameter {key}: {spec!r} is not a masker; use inpaint_telea, "
                f"inpaint_ns, blur(k,k) with integer k, or a number in 0..{PIXEL_LEVELS}"
            ) from None
    if not (math.isfinite(value) and 0 <= value <= PIXEL_LEVELS):
        raise ConfigError(
            f"parameter {key}: constant {value!r} is outside the masker's 0..{PIXEL_LEVELS} range"
        )
    return value


def fill_masked(image: np.ndarray, keep: np.ndarray, spec: str | float) -> np.ndarray:
    """Fill the hidden pixels of one 8-bit image as ``shap.maskers.Image(spec)`` does.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8, the masker's layout.
    keep
        ``(H, W)`` bool: True where the pixel is kept (all three channels), False where it
        is hidden and filled.
    spec
        A value returned by :func:`parse_masker`.

    Returns
    -------
    ``(H, W, 3)`` uint8; kept pixels are unchanged. As in shap: a blur fills a hidden pixel
    with the blurred image's value there; inpainting a fully hidden image gives every pixel
    the image's mean per channel; a constant is truncated to an integer.
    """
    import cv2  # imported on use: only the window ablations and SHAP need OpenCV

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    keep = np.asarray(keep, dtype=bool)
    hidden = ~keep
    out = image.copy()
    if isinstance(spec, float):
        out[hidden] = spec  # uint8 assignment truncates, as shap's does
    elif spec.startswith("blur("):
        kx, ky = (int(k) for k in spec[len("blur(") : -1].split(","))
        out[hidden] = cv2.blur(image, (kx, ky))[hidden]
    elif spec in ("inpaint_telea", "inpaint_ns"):
        if hidden.all():
            out[:] = out.mean((0, 1))
        else:
            flag = cv2.INPAINT_TELEA if spec == "inpaint_telea" else cv2.INPAINT_NS
            out = cv2.inpaint(image, hidden.astype(np.uint8), INPAINT_RADIUS, flags=flag)
    else:
        raise ValueError(f"unknown masker {spec!r}; parse it with parse_masker first")
    return out


def fill_outside_columns(images: np.ndarray, keep: np.ndarray, spec: str | float) -> np.ndarray:
    """Hide every column of each image where ``keep`` is False and fill it (:func:`fill_masked`).

    Parameters
    ----------
    images
        ``(n, 3, n_freq, n_time)`` stored spectrograms: uint8 (``floor(255 x)``, filled as
        they are) or float in [0, 1] (filled on ``floor(255 x)``; the filled pixels become
        ``k / 255``, the kept ones keep their values).
    keep
        ``(n, n_time)`` bool: the columns to keep of each image.
    spec
        A value returned by :func:`parse_masker`.

    Returns
    -------
    A new array of the shape and dtype of ``images``; an image whose columns are all kept
    is copied unchanged.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (images.shape[0], images.shape[3]):
        raise ValueError(f"keep {keep.shape} does not match images {images.shape} (n, n_time)")
    out = images.copy()
    for i in np.flatnonzero(~keep.all(axis=1)):
        hwc = np.moveaxis(images[i], 0, -1)
        as_u8 = hwc if hwc.dtype == np.uint8 else to_uint8(hwc)
        columns = np.broadcast_to(keep[i][None, :], as_u8.shape[:2])
        filled = fill_masked(np.ascontiguousarray(as_u8), columns, spec)
        if images.dtype == np.uint8:
            out[i] = np.moveaxis(filled, -1, 0)
        else:
            out[i][:, :, ~keep[i]] = np.moveaxis(to_unit(filled), -1, 0)[:, :, ~keep[i]]
    return out
