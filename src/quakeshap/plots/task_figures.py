"""The report's figures for the tasks beyond the study's pre/post (``docs/method.md`` §11).

Time-to-failure classes get the study's figures over N classes: the mean SHAP map of each
class (aligned on P and on S), the N×N confusion matrix, the explained traces and the
training curves. A magnitude model gets predicted against catalogue magnitude, the
residuals against magnitude and S−P time, the mean SHAP map of each magnitude bin, the
mean maps of the smallest and the largest events side by side with their difference, and
the gradient-boosting baseline's TreeSHAP feature importance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
from matplotlib.colors import Colormap

from quakeshap.config import PlotsConfig
from quakeshap.plots.charts import plot_confusion_matrix
from quakeshap.plots.figures import (
    FigureSpec,
    _figure,
    example_trace_figure,
    explained_trace_figure,
    resolve_cmap,
    training_curves_figure,
)
from quakeshap.plots.inputs import PlotInputs
from quakeshap.plots.maps import cell_extent, plot_mean_shap, plot_shap_map, symmetric_limit
from quakeshap.plots.tables import aligned_arrivals


def iter_task_figures(
    inputs: PlotInputs, cfg: PlotsConfig, sampling_rate_hz: float, window_s: float | None
) -> Iterator[FigureSpec]:
    """Every figure of a time-to-failure or magnitude run, one at a time."""
    cmap = resolve_cmap(cfg.cmap)
    regression = inputs.spectrograms.is_regression
    yield example_trace_figure(inputs, cfg, sampling_rate_hz, window_s)
    for aligned_to in ("P", "S"):
        yield group_mean_figure(inputs, cfg, cmap, aligned_to)
    if regression:
        yield magnitude_fit_figure(inputs, cfg)
        yield small_large_figure(inputs, cfg, cmap)
        yield baseline_importance_figure(inputs, cfg)
    else:
        yield multiclass_confusion_figure(inputs, cfg)
    for name in inputs.explained_traces:
        yield explained_trace_figure(inputs, cfg, cmap, name, sampling_rate_hz)
    yield training_curves_figure(inputs, cfg)


def group_mean_figure(
    inputs: PlotInputs, cfg: PlotsConfig, cmap: Colormap, aligned_to: Literal["P", "S"]
) -> FigureSpec:
    """The mean SHAP map of each class or magnitude bin, on one colour scale."""
    spectra, shaps = inputs.spectrograms, inputs.shap
    maps = shaps.mean_p_aligned if aligned_to == "P" else shaps.mean_s_aligned
    groups = shaps.groups
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    fig = _figure(cfg, 0.6 * nrows + 0.2)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    mappable = plot_mean_shap(
        axes[: len(groups)],
        np.nan_to_num(maps),
        aligned_to,
        aligned_arrivals(shaps.index, aligned_to, groups),
        spectra.frequency_hz,
        spectra.time_s,
        cmap,
        groups,
    )
    fig.colorbar(mappable, ax=list(axes[: len(groups)]), label="mean SHAP, RGB mean", shrink=0.9)
    what = "magnitude bin" if spectra.is_regression else "class"
    return FigureSpec(
        f"shap_mean_{aligned_to.lower()}_aligned.png",
        f"Mean SHAP per {what}, aligned on {aligned_to}",
        f"Where the model draws its evidence for each {what} relative to {aligned_to}; "
        "a panel left blank had no well-predicted trace explained.",
        fig,
    )


def multiclass_confusion_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """The N×N confusion matrix of the time-to-failure classes, with the chance level."""
    names = inputs.spectrograms.class_names
    side = min(cfg.width_in, cfg.height_in) * (0.8 + 0.08 * len(names))
    fig = _figure(cfg)
    fig.set_size_inches(side, side)
    ax = fig.add_subplot()
    plot_confusion_matrix(ax, inputs.predictions["label"], inputs.predictions["predicted"], names)
    scores = inputs.evaluate_metrics
    return FigureSpec(
        "confusion_matrix.png",
        "Confusion matrix of the time-to-failure classes (test split)",
        f"Balanced accuracy {scores.get('balanced_accuracy', float('nan')):.3f} against a "
        f"chance level of {scores.get('chance_balanced', float('nan')):.3f}; errors between "
        "neighbouring classes are what a gradual change would give.",
        fig,
    )


def magnitude_fit_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """Predicted against catalogue magnitude; residuals against magnitude and S−P time."""
    table = inputs.predictions
    scores = inputs.evaluate_metrics
    fig = _figure(cfg, 0.7)
    ax_fit, ax_mag, ax_sp = fig.subplots(1, 3)
    m, p = table["magnitude"].to_numpy(float), table["predicted"].to_numpy(float)
    r = table["residual"].to_numpy(float)
    lo, hi = float(min(m.min(), p.min())) - 0.1, float(max(m.max(), p.max())) + 0.1
    ax_fit.scatter(m, p, s=8, alpha=0.6)
    ax_fit.plot([lo, hi], [lo, hi], color="black", lw=1)
    ax_fit.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="catalogue magnitude",
               ylabel="predicted magnitude")  # fmt: skip
    ax_fit.set_title(f"MAE {scores['mae']:.3f}, R² {scores['r2']:.3f}")
    sp = table["sp_time_s"].to_numpy(float)
    for ax, x, label in ((ax_mag, m, "catalogue magnitude"), (ax_sp, sp, "S − P time (s)")):
        ax.scatter(x, r, s=8, alpha=0.6)
        ax.axhline(0.0, color="black", lw=1)
        ax.set(xlabel=label, ylabel="residual (predicted − catalogue)")
    baselines = scores.get("baselines", {})
    mean_mae = baselines.get("train_mean", {}).get("mae", float("nan"))
    gbm_mae = baselines.get("gradient_boosting", {}).get("mae", float("nan"))
    return FigureSpec(
        "magnitude_fit.png",
        "Magnitude: predicted against catalogue, residuals",
        f"Test split. Baselines on the same traces: the train set's mean, MAE {mean_mae:.3f}; "
        f"gradient boosting on waveform features, MAE {gbm_mae:.3f}. A slope below the "
        "diagonal is the usual regression to the mean; a trend in S − P points at distance.",
        fig,
    )


def small_large_figure(inputs: PlotInputs, cfg: PlotsConfig, cmap: Colormap) -> FigureSpec:
    """The mean SHAP maps of the smallest and the largest magnitude bin with maps, and
    their difference."""
    spectra, shaps = inputs.spectrograms, inputs.shap
    display = shaps.mean_p_aligned.mean(axis=-1)
    present = [k for k in range(len(shaps.groups)) if np.isfinite(display[k]).all()]
    fig = _figure(cfg, 0.7)
    axes = fig.subplots(1, 3, sharey=True)
    extent = cell_extent(spectra.time_s, spectra.frequency_hz)
    if len(present) >= 2:
        small, large = present[0], present[-1]
        panels = [
            (display[small], f"smallest: {shaps.groups[small]}"),
            (display[large], f"largest: {shaps.groups[large]}"),
            (display[large] - display[small], "largest − smallest"),
        ]
        vmax = symmetric_limit(*(p for p, _ in panels))
        for ax, (values, title) in zip(axes, panels, strict=True):
            plot_shap_map(ax, values, extent, vmax, cmap)
            ax.set_title(title)
            ax.set_xlabel("time (s)")
        caption = "Where the evidence for a larger magnitude sits, against the smallest events."
    else:
        for ax in axes:
            ax.set_axis_off()
        axes[1].text(0.5, 0.5, "fewer than two magnitude bins with maps", ha="center")
        caption = "Not enough well-predicted traces were explained to compare bins."
    axes[0].set_ylabel("frequency (Hz)")
    return FigureSpec("shap_small_large.png", "Mean SHAP: small against large events",
                      caption, fig)  # fmt: skip


def baseline_importance_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """The gradient-boosting baseline's mean |TreeSHAP| per waveform feature (top ten)."""
    importance = inputs.evaluate_metrics.get("baselines", {}).get(
        "gradient_boosting_importance", {}
    )
    fig = _figure(cfg, 0.7)
    ax = fig.add_subplot()
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set_xlabel("mean |TreeSHAP| (magnitude units)")
    return FigureSpec(
        "baseline_importance.png",
        "Gradient-boosting baseline: which waveform features carry the magnitude",
        "Features computed from the trace alone (no catalogue column); the CNN sees "
        "spectrograms normalised per image, so absolute amplitude is not available to it.",
        fig,
    )
