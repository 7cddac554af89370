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
from quakeshap.explain.explainers import MASKER_EXPLAINERS, cascade_max_evals, parse_masker
from quakeshap.explain.maps import (
    BANDS_HZ,
    WINDOWS,
    ShapMaps,
    band_fractions,
    band_key,
    band_share,
    n_s_windows_clipped,
    window_fractions,
)
from quakeshap.published import TIME_WINDOWS_S
from quakeshap.record import P_ARRIVAL_S, STUDY_IMAGE_DURATION_S


def _band_key(lo: float, hi: float) -> str:
    return band_key(lo, hi)


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


def fixed_window_fractions(maps: np.ndarray, time_s: np.ndarray) -> np.ndarray:
    """Fraction of each map's ``|SHAP|`` mass in the fixed windows of
    :data:`quakeshap.published.TIME_WINDOWS_S` (the ones the study's released maps are
    summarised in): ``(n, n_freq, n_time, 3)`` → ``(n, 3)``, rows summing to 1.
    """
    (_, _, p_s), (_, _, s_s) = TIME_WINDOWS_S[0], TIME_WINDOWS_S[1]
    return window_fractions(maps, time_s, np.full(len(maps), s_s), p_s)


def mean_map_peak(
    maps: np.ndarray, frequency_hz: np.ndarray, time_s: np.ndarray
) -> tuple[float, float]:
    """Frequency (Hz) and time (s) of the largest pixel of the mean ``|SHAP|`` map, summed
    over E, N, Z: ``maps`` ``(n, n_freq, n_time, 3)`` of one class."""
    mean = np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=3).mean(axis=0)
    f, t = np.unravel_index(int(np.argmax(mean)), mean.shape)
    return float(frequency_hz[f]), float(time_s[t])


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
    fixed = fixed_window_fractions(values, time_s)
    partition = cfg.explainer == "partition"
    metrics: dict[str, Any] = {
        "explainer": cfg.explainer,
        "masker": str(parse_masker(cfg.masker)) if cfg.explainer in MASKER_EXPLAINERS else None,
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
        "time_fraction": {},
        "mean_map_peak": {},
        "n_class_maps": {},
    }
    for c, name in enumerate(shap_maps.groups):
        mask = class_mean_mask(index, c, shap_maps.groups)
        metrics["n_class_maps"][name] = int(mask.sum())
        if mask.any():
            b = bands[mask].mean(axis=0)
            w = windows[mask].mean(axis=0)
            t = fixed[mask].mean(axis=0)
            peak = mean_map_peak(values[mask], frequency_hz, time_s)
        else:
            b = np.full(len(BANDS_HZ), np.nan)
            w = np.full(len(WINDOWS), np.nan)
            t = np.full(len(TIME_WINDOWS_S), np.nan)
            peak = (float("nan"), float("nan"))
        metrics["band_fraction"][name] = {
            _band_key(lo, hi): float(v) for (lo, hi), v in zip(BANDS_HZ, b, strict=True)
        }
        metrics["window_fraction"][name] = {k: float(v) for k, v in zip(WINDOWS, w, strict=True)}
        metrics["time_fraction"][name] = {
            key: float(v) for (key, _, _), v in zip(TIME_WINDOWS_S, t, strict=True)
        }
        metrics["mean_map_peak"][name] = {"frequency_hz": peak[0], "time_s": peak[1]}
    if shap_maps.faithfulness is not None:
        metrics["faithfulness"] = faithfulness_metrics(shap_maps, cfg)
    return metrics


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values; NaN (null in the JSON file) when there is none."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def faithfulness_metrics(shap_maps: ShapMaps, cfg: ShapConfig) -> dict[str, Any]:
    """``explain.json``'s ``faithfulness`` (``docs/method.md`` §10), from the maps' numbers.

    Each number is a mean per class, over the maps that enter the class's mean map
    (:func:`class_mean_mask`, as for ``band_fraction``), and over every map (``all``).
    ``deletion_gap`` and ``insertion_gap`` are positive when the map's order beats random
    orders. ``randomisation.spearman.<group>.<layer>`` is the mean Spearman correlation of
    the cascaded maps with the maps of the model randomised from its output layer down to
    ``<layer>`` included; ``fill`` names the masker that filled the removed cells.
    """
    faith, index = shap_maps.faithfulness, shap_maps.index
    if faith is None:
        raise ValueError("these maps carry no faithfulness numbers")
    fc = cfg.faithfulness
    groups = {
        name: class_mean_mask(index, c, shap_maps.groups) for c, name in enumerate(shap_maps.groups)
    }
    groups["all"] = np.ones(len(index), dtype=bool)
    per_map = {
        "deletion_auc": faith.deletion_auc,
        "insertion_auc": faith.insertion_auc,
        "random_deletion_auc": faith.random_deletion_auc,
        "random_insertion_auc": faith.random_insertion_auc,
        "deletion_gap": faith.deletion_gap,
        "insertion_gap": faith.insertion_gap,
    }
    cascaded = {g: mask & faith.randomised for g, mask in groups.items()}
    randomisation: dict[str, Any] = {
        "max_evals": cascade_max_evals(cfg) if cfg.explainer == "partition" else None,
        "n_maps": {g: int(mask.sum()) for g, mask in cascaded.items()},
    }
    if faith.layers:
        randomisation["spearman"] = {
            g: {layer: _mean(faith.spearman[mask, j]) for j, layer in enumerate(faith.layers)}
            for g, mask in cascaded.items()
        }
    return {
        "fill": str(parse_masker(cfg.masker)),
        "n_cells": int(shap_maps.values.shape[1] * shap_maps.values.shape[2]),
        "n_steps": fc.n_steps,
        "random_orders": fc.random_orders,
        "rank_by": fc.rank_by,
        "n_maps": {g: int(mask.sum()) for g, mask in groups.items()},
        **{key: {g: _mean(v[mask]) for g, mask in groups.items()} for key, v in per_map.items()},
        "randomisation": randomisation,
    }
