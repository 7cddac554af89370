"""The report's figures (``docs/method.md`` §6): each drawn from :class:`PlotInputs`, with
its stable file name and a one-line caption saying what to look for.

:func:`iter_figures` yields them one at a time in the report's order, so that the caller
saves and drops each; one function per figure draws it. The ``plots`` stage saves them
with :func:`quakeshap.files.save_figure` (PNG without timestamps) inside
``matplotlib.rc_context(style(cfg))``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from quakeshap.artifacts import shap_set
from quakeshap.config import ConfigError, PlotsConfig
from quakeshap.plots.charts import (
    plot_confusion_matrix,
    plot_dataset_overview,
    plot_explainer_fractions,
    plot_training_curves,
)
from quakeshap.plots.inputs import PlotInputError, PlotInputs, class_name
from quakeshap.plots.maps import (
    plot_explained_trace,
    plot_mean_shap,
    plot_trace,
    plot_weekly_shap,
)
from quakeshap.plots.tables import aligned_arrivals, shap_trace_stats
from quakeshap.record import CLASS_NAMES


@dataclass(frozen=True)
class FigureSpec:
    """One drawn figure: its file name in the figures folder and its caption."""

    filename: str
    title: str
    caption: str
    figure: Figure


def style(cfg: PlotsConfig) -> dict[str, Any]:
    """matplotlib rc settings of ``cfg``: use as ``with matplotlib.rc_context(style(cfg))``."""
    return {
        "font.size": cfg.font_size,
        "axes.titlesize": cfg.font_size,
        "figure.titlesize": cfg.font_size * 1.1,
        "legend.fontsize": cfg.font_size * 0.85,
        "figure.dpi": cfg.dpi,
        "savefig.dpi": cfg.dpi,
        "image.interpolation": "nearest",
    }


def resolve_cmap(name: str) -> Colormap:
    """The colour map ``plots.cmap``; an unknown name is a :class:`ConfigError`."""
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ConfigError(
            f"parameter plots.cmap: unknown matplotlib colour map {name!r}; use a diverging "
            "one such as coolwarm, RdBu_r, seismic or bwr"
        ) from None


def figure_filename(prefix: str, trace_name: str) -> str:
    """A stable, file-system-safe PNG name for a per-trace figure."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9._-]', '_', trace_name)}.png"


def explained_title(trace_name: str, prediction: Mapping[str, Any], groups: Sequence[str]) -> str:
    """Title of a per-trace explanation: groups, label, prediction, logits, probability
    (for a magnitude model: catalogue and predicted magnitude)."""
    if "residual" in prediction:
        magnitude = float(prediction["magnitude"])
        return (
            f"{trace_name} [{', '.join(groups)}]: catalogue M {magnitude:.2f}, "
            f"predicted {float(prediction['predicted']):.2f} "
            f"(residual {float(prediction['residual']):+.2f})"
        )
    logits = {k.removeprefix("logit_"): float(v) for k, v in prediction.items()
              if str(k).startswith("logit_")}  # fmt: skip
    if set(logits) == {"pre", "post"}:
        label, predicted = class_name(prediction["label"]), class_name(prediction["predicted"])
    else:
        label, predicted = str(prediction["label"]), str(prediction["predicted"])
    verdict = "correct" if label == predicted else "MISCLASSIFIED"
    shown = ", ".join(f"{name} {value:.3f}" for name, value in logits.items())
    return (
        f"{trace_name} [{', '.join(groups)}]: label {label}, predicted {predicted} ({verdict})\n"
        f"logits {shown}; softmax p({predicted}) = {float(prediction['probability']):.4f}"
    )


def iter_figures(
    inputs: PlotInputs, cfg: PlotsConfig, sampling_rate_hz: float, window_s: float | None = None
) -> Iterator[FigureSpec]:
    """Draw every figure of the report, one at a time (the caller saves and drops each).

    Parameters
    ----------
    inputs
        :func:`~quakeshap.plots.inputs.load_inputs`.
    cfg
        ``plots`` parameters: figure size (``width_in`` × ``height_in`` for one row of
        panels, taller for multi-row figures), dpi and colour map.
    sampling_rate_hz
        Of the raw waveforms (``spectrogram.sampling_rate_hz``).
    window_s
        Seconds of each trace the spectrogram uses (``n_samples / sampling_rate_hz``).
    """
    if inputs.spectrograms.task_kind != "prepost":  # time-to-failure classes, magnitude
        from quakeshap.plots.task_figures import iter_task_figures

        yield from iter_task_figures(inputs, cfg, sampling_rate_hz, window_s)
        return
    cmap = resolve_cmap(cfg.cmap)
    yield dataset_overview_figure(inputs, cfg)
    yield example_trace_figure(inputs, cfg, sampling_rate_hz, window_s)
    for aligned_to in ("P", "S"):
        yield mean_shap_figure(inputs, cfg, cmap, aligned_to)
    yield weekly_shap_figure(inputs, cfg, cmap)
    yield explainer_comparison_figure(inputs, cfg)
    for name in inputs.explained_traces:
        yield explained_trace_figure(inputs, cfg, cmap, name, sampling_rate_hz)
    yield confusion_matrix_figure(inputs, cfg)
    yield training_curves_figure(inputs, cfg)


def _figure(cfg: PlotsConfig, height_scale: float = 1.0) -> Figure:
    return Figure(
        figsize=(cfg.width_in, cfg.height_in * height_scale), dpi=cfg.dpi, layout="constrained"
    )


def _row_of(inputs: PlotInputs, trace_name: str) -> int:
    """Index of ``trace_name`` in the spectrogram set."""
    names = inputs.spectrograms.metadata["trace_name"]
    return {name: i for i, name in enumerate(names)}[trace_name]


def dataset_overview_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """Travel times, events per day, epicentres and SHAP value ranges (``docs/method.md`` §6.1)."""
    shaps = inputs.shap
    fig = _figure(cfg, 1.6)
    plot_dataset_overview(
        fig, inputs.spectrograms.metadata, shap_trace_stats(shaps.values, shaps.index)
    )
    return FigureSpec(
        "dataset_overview.png",
        "Data set overview",
        "Pre and post should overlap in travel times (same source region), show a gap in events "
        "around the mainshock, and the SHAP value ranges should sit on both sides of zero.",
        fig,
    )


def example_trace_figure(
    inputs: PlotInputs, cfg: PlotsConfig, sampling_rate_hz: float, window_s: float | None
) -> FigureSpec:
    """The example trace's waveforms and spectrograms (``docs/method.md`` §6.2)."""
    spectra, name = inputs.spectrograms, inputs.example_trace
    index = _row_of(inputs, name)
    row = spectra.metadata.iloc[index]
    fig = _figure(cfg, 1.2)
    plot_trace(
        fig,
        inputs.waveforms[name],
        spectra.as_float(index),
        spectra.frequency_hz,
        spectra.time_s,
        sampling_rate_hz,
        float(row["trace_p_arrival_s"]),
        float(row["trace_s_arrival_s"]),
        window_s,
        title=f"{name}: {row['label']}, M {float(row['source_magnitude']):.1f}, "
        f"S − P {float(row['p_s_diff_sec']):.2f} s",
    )
    return FigureSpec(
        figure_filename("trace", name),
        f"Example trace {name}",
        "The P (solid) and S (dashed) onsets on all three components and the energy they bring "
        "into the spectrogram; only the unshaded first seconds feed the model.",
        fig,
    )


def mean_shap_figure(
    inputs: PlotInputs, cfg: PlotsConfig, cmap: Colormap, aligned_to: Literal["P", "S"]
) -> FigureSpec:
    """The per-class mean SHAP maps aligned on P or on S (``docs/method.md`` §6.3)."""
    spectra, shaps = inputs.spectrograms, inputs.shap
    maps = shaps.mean_p_aligned if aligned_to == "P" else shaps.mean_s_aligned
    fig = _figure(cfg, 0.75)
    axes = fig.subplots(1, 2, sharey=True)
    mappable = plot_mean_shap(
        axes,
        maps,
        aligned_to,
        aligned_arrivals(shaps.index, aligned_to),
        spectra.frequency_hz,
        spectra.time_s,
        cmap,
    )
    fig.colorbar(mappable, ax=axes, label="mean SHAP (logit), RGB mean", shrink=0.9)
    other = "S" if aligned_to == "P" else "P"
    return FigureSpec(
        f"shap_mean_{aligned_to.lower()}_aligned.png",
        f"Mean SHAP per class, aligned on {aligned_to}",
        f"Where each class draws its evidence relative to {aligned_to} (vertical line); the "
        f"curve is the {other}-arrival histogram. Red supports the class, blue opposes it.",
        fig,
    )


def weekly_shap_figure(inputs: PlotInputs, cfg: PlotsConfig, cmap: Colormap) -> FigureSpec:
    """The mean SHAP map of each ISO week (``docs/method.md`` §6.4)."""
    spectra, shaps = inputs.spectrograms, inputs.shap
    weekly = shaps.weekly
    week_classes = (
        shaps.index.drop_duplicates("week").set_index("week")["label"].map(class_name).to_dict()
    )
    fig = _figure(cfg, max(1.0, 0.45 * math.ceil(len(weekly) / 6)))
    plot_weekly_shap(
        fig,
        shaps.weekly_mean,
        weekly["week"].tolist(),
        weekly["n_maps"].tolist(),
        spectra.frequency_hz,
        spectra.time_s,
        cmap,
        week_classes,
    )
    return FigureSpec(
        "shap_weekly.png",
        "Mean SHAP per ISO week",
        "Whether the attribution pattern drifts with time within each sequence or flips only at "
        "the mainshock (weeks 43/44).",
        fig,
    )


def explainer_comparison_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """Every explainer on the same traces: the ``|SHAP|`` mass per band, per class, against
    a uniform map and, on demo data, the generator's band (``docs/method.md`` §9)."""
    fig = _figure(cfg, 1.1)
    for ax, name in zip(fig.subplots(len(CLASS_NAMES), 1, sharey=True), CLASS_NAMES, strict=True):
        plot_explainer_fractions(ax, inputs.explainer_comparison, name)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=4, frameon=False)
    truth = inputs.explainers_metrics.get("truth_band_hz")
    verdict = (
        "On demo data the last group is the band where the generator makes pre and post "
        "differ: a faithful explainer puts well above the line there."
        if truth
        else "Real data have no ground truth: read the spread between explainers."
    )
    return FigureSpec(
        "explainer_comparison.png",
        "Every explainer on the same traces",
        "Fraction of |SHAP| mass each explainer puts in each frequency band, on the most "
        f"confidently correct test traces; black lines: a uniform map; black diamonds: "
        f"the study's released maps of the real record (partition + inpaint_telea). {verdict}",
        fig,
    )


def explained_trace_figure(
    inputs: PlotInputs, cfg: PlotsConfig, cmap: Colormap, name: str, sampling_rate_hz: float
) -> FigureSpec:
    """One selected trace: waveforms, spectrogram and the SHAP map of each class
    (``docs/method.md`` §6.5)."""
    spectra, shaps = inputs.spectrograms, inputs.shap
    mine = shaps.index["trace_name"] == name
    outputs = list(spectra.class_names)
    maps = {
        outputs.index(str(c)): shaps.values[i]
        for i, c in zip(np.flatnonzero(mine), shaps.index.loc[mine, "class_name"], strict=True)
    }
    if not maps:
        raise PlotInputError(
            f"{shap_set.PATH} has no map for selected trace {name!r}; re-run `dvc repro explain`"
        )
    prediction = inputs.predictions.set_index("trace_name").loc[name]
    groups = inputs.selection.groupby("trace_name")["group"].apply(list)[name]
    index = _row_of(inputs, name)
    row = spectra.metadata.iloc[index]
    fig = _figure(cfg, 1.0)
    plot_explained_trace(
        fig,
        inputs.waveforms[name],
        spectra.as_float(index),
        maps,
        spectra.frequency_hz,
        spectra.time_s,
        sampling_rate_hz,
        float(row["trace_p_arrival_s"]),
        float(row["trace_s_arrival_s"]),
        cmap,
        explained_title(name, prediction, groups),
        spectra.class_names,
    )
    return FigureSpec(
        figure_filename("explained", name),
        f"Explanation of {name}",
        "Which time–frequency cells pushed the logit of each class up (red) or down (blue); "
        "for a misclassified trace, look for evidence that contradicts its label.",
        fig,
    )


def confusion_matrix_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """The test split's confusion matrix (``docs/method.md`` §6.6)."""
    side = min(cfg.width_in, cfg.height_in) * 0.8
    fig = Figure(figsize=(side, side), dpi=cfg.dpi, layout="constrained")
    ax = fig.add_subplot()
    plot_confusion_matrix(ax, inputs.predictions["label"], inputs.predictions["predicted"])
    return FigureSpec(
        "confusion_matrix.png",
        "Confusion matrix (test split)",
        "Off-diagonal cells are the misclassified traces explained above; the split is "
        "unbalanced, so read the row percentages.",
        fig,
    )


def training_curves_figure(inputs: PlotInputs, cfg: PlotsConfig) -> FigureSpec:
    """Loss and validation accuracy per fold and epoch; the model's fold drawn thicker."""
    fig = _figure(cfg, 0.7)
    # the fold kept as the model (the train metrics name it chosen_fold; best_fold too)
    best = inputs.train_metrics.get("chosen_fold", inputs.train_metrics.get("best_fold"))
    plot_training_curves(
        fig.subplots(1, 2), inputs.history, best if isinstance(best, int) else None
    )
    return FigureSpec(
        "training_curves.png",
        "Cross-validation training curves",
        "Validation loss should fall with training loss; a widening gap means over-fitting, "
        "and early stopping keeps each fold's best epoch.",
        fig,
    )
