"""The ``explain`` stage's metrics (``reports/metrics/explain.json``) from its maps.

:func:`summarize` reduces the maps to where their ``|SHAP|`` mass lies, per class, and to the
additivity check; :func:`image_timing` reads the image timing those measures need from the
spectrogram set's axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quakeshap.artifacts.shap_set import class_mean_mask
from quakeshap.config import ShapConfig
from quakeshap.explain.explainers import parse_masker
from quakeshap.explain.maps import (
    BANDS_HZ,
    WINDOWS,
    ShapMaps,
    band_fractions,
    band_share,
    n_s_windows_clipped,
    window_fractions,
)
from quakeshap.record import CLASS_NAMES, P_ARRIVAL_S, STUDY_IMAGE_DURATION_S


def _band_key(lo: float, hi: float) -> str:
    return f"{lo:g}_{hi:g}hz"


def image_timing(axes: dict[str, Any]) -> tuple[float, float]:
    """``(duration_s, p_arrival_s)`` of the images from ``axes.json``.

    The duration is the waveform window the spectrogram covers (``n_samples`` /
    ``sampling_rate_hz``: 13 s in the study), the base of the study's seconds → columns
    conversion; both fall back to the study's values when ``axes.json`` lacks them.
    """
    duration = STUDY_IMAGE_DURATION_S
    if "n_samples" in axes and "sampling_rate_hz" in axes:
        duration = float(axes["n_samples"]) / float(axes["sampling_rate_hz"])
    return duration, float(axes.get("p_arrival_s", P_ARRIVAL_S))


def summarize(
    shap_maps: ShapMaps,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    cfg: ShapConfig,
    duration_s: float = STUDY_IMAGE_DURATION_S,
    p_arrival_s: float = P_ARRIVAL_S,
) -> dict[str, Any]:
    """The stage's metrics (``reports/metrics/explain.json``), deterministic: no timings.

    ``band_fraction`` and ``window_fraction`` are means over the ``class``-group maps of a
    class of each map's fraction of ``|SHAP|`` mass (every trace weighs the same);
    ``band_share`` is each band's share of the image rows, what a uniform map would give.
    """
    values, index = shap_maps.values, shap_maps.index
    s_times = p_arrival_s + index["p_s_diff_sec"].to_numpy(dtype=np.float64)
    bands = band_fractions(values, frequency_hz)
    windows = window_fractions(values, time_s, s_times, p_arrival_s)
    partition = cfg.explainer == "partition"
    metrics: dict[str, Any] = {
        "explainer": cfg.explainer,
        "masker": str(parse_masker(cfg.masker)) if partition else None,
        "max_evals": cfg.max_evals if partition else None,
        "n_traces": int(index["trace_name"].nunique()),
        "n_maps": len(index),
        "n_s_window_clipped": n_s_windows_clipped(s_times, values.shape[2], duration_s),
        "additivity_error_max": float(index["additivity_error"].max()),
        "additivity_error_mean": float(index["additivity_error"].mean()),
        "band_share": {
            _band_key(lo, hi): float(s)
            for (lo, hi), s in zip(BANDS_HZ, band_share(frequency_hz), strict=True)
        },
        "band_fraction": {},
        "window_fraction": {},
        "n_class_maps": {},
    }
    for c, name in enumerate(CLASS_NAMES):
        mask = class_mean_mask(index, c)
        metrics["n_class_maps"][name] = int(mask.sum())
        if mask.any():
            b = bands[mask].mean(axis=0)
            w = windows[mask].mean(axis=0)
        else:
            b = np.full(len(BANDS_HZ), np.nan)
            w = np.full(len(WINDOWS), np.nan)
        metrics["band_fraction"][name] = {
            _band_key(lo, hi): float(v) for (lo, hi), v in zip(BANDS_HZ, b, strict=True)
        }
        metrics["window_fraction"][name] = {k: float(v) for k, v in zip(WINDOWS, w, strict=True)}
    return metrics
