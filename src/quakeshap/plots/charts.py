"""Charts of the data set and of the model: histograms, event counts, the event map, SHAP
value ranges, the confusion matrix and the training curves.

Like :mod:`quakeshap.plots.maps`, each ``plot_*`` function draws on the ``Axes`` or
``Figure`` it is given and returns; it never saves or reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quakeshap import published
from quakeshap.artifacts.explainer_comparison import BAND, KEY_COLUMNS, TRUTH
from quakeshap.plots.inputs import class_name
from quakeshap.record import CLASS_NAMES, MAINSHOCK_ORIGIN_UTC

CLASS_COLORS: dict[str, str] = {"pre": "#1f6fb4", "post": "#d1492e"}
#: colour map of the ISO weeks on the event map
WEEK_CMAP = "viridis"


# --------------------------------------------------------------------------------------
# the data set
# --------------------------------------------------------------------------------------


def _class_hist(ax: Axes, metadata: pd.DataFrame, column: str, xlabel: str) -> None:
    values = metadata[column].to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    bins = np.linspace(finite.min(), finite.max(), 31) if finite.size else 10
    for name in CLASS_NAMES:
        part = metadata.loc[metadata["label"] == name, column].to_numpy(dtype=np.float64)
        ax.hist(
            part[np.isfinite(part)],
            bins=bins,
            histtype="step",
            lw=1.2,
            color=CLASS_COLORS[name],
            label=f"{name} ({len(part)})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("traces")


def plot_events_per_day(ax: Axes, metadata: pd.DataFrame) -> None:
    """Events per day (unique ``source_id``, by origin time) per class, mainshock marked."""
    origin = pd.to_datetime(metadata["source_origin_time"], utc=True, format="ISO8601")
    events = pd.DataFrame(
        {
            "day": origin.dt.floor("D").dt.tz_localize(None),
            "label": metadata["label"],
            "source_id": metadata["source_id"],
        }
    ).drop_duplicates("source_id")
    for name in CLASS_NAMES:
        counts = events.loc[events["label"] == name, "day"].value_counts().sort_index()
        ax.bar(
            counts.index.to_numpy(),
            counts.to_numpy(),
            width=1.0,
            color=CLASS_COLORS[name],
            label=name,
            align="edge",
        )
    ax.axvline(
        MAINSHOCK_ORIGIN_UTC.tz_localize(None).to_datetime64(),
        color="black",
        lw=1.0,
        ls="--",
        label="Mw 6.5 mainshock",
    )
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel("events per day")
    ax.legend(loc="upper right", frameon=False)


def plot_event_map(ax: Axes, metadata: pd.DataFrame) -> ScalarMappable:
    """Epicentres coloured by ISO week, with the station; plain lon/lat axes.

    Returns the week colour scale, for a colour bar.
    """
    events = metadata.drop_duplicates("source_id")
    weeks = events["week"].to_numpy(dtype=np.float64)
    norm = Normalize(np.nanmin(weeks), np.nanmax(weeks))
    cmap = matplotlib.colormaps[WEEK_CMAP]
    size = 2.0 + 3.0 * np.clip(events["source_magnitude"].to_numpy(dtype=np.float64), 0, None) ** 2
    ax.scatter(
        events["source_longitude"],
        events["source_latitude"],
        c=weeks,
        cmap=cmap,
        norm=norm,
        s=size,
        lw=0,
        alpha=0.8,
    )
    stations = metadata.drop_duplicates("receiver_name")
    for _, row in stations.iterrows():
        ax.plot(
            row["receiver_longitude"],
            row["receiver_latitude"],
            marker="^",
            ms=9,
            color="black",
            mec="white",
            ls="none",
        )
        ax.annotate(
            str(row["receiver_name"]),
            (row["receiver_longitude"], row["receiver_latitude"]),
            xytext=(5, 5),
            textcoords="offset points",
            fontweight="bold",
        )
    mid_lat = float(np.nanmean(events["source_latitude"]))
    # true distances, with the axes filling their panel (the limits widen, not the box)
    ax.set_aspect(1.0 / math.cos(math.radians(mid_lat)), adjustable="datalim")
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    return ScalarMappable(norm, cmap)


def plot_shap_distribution(ax: Axes, stats: pd.DataFrame) -> None:
    """Box plots of the per-trace SHAP minimum, maximum and mean, per predicted class.

    ``stats`` is :func:`quakeshap.plots.tables.shap_trace_stats`'s table.
    """
    ax.axhline(0.0, color="0.6", lw=0.8)
    if stats.empty:
        ax.text(0.5, 0.5, "no SHAP maps", ha="center", va="center", transform=ax.transAxes)
        return
    width = 0.35
    for j, name in enumerate(CLASS_NAMES):
        part = stats[stats["predicted"] == name]
        if part.empty:
            continue
        positions = np.arange(3) + (j - 0.5) * width
        boxes = ax.boxplot(
            [part[s].to_numpy() for s in ("min", "max", "mean")],
            positions=positions,
            widths=width * 0.9,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 2},
            medianprops={"color": "black"},
        )
        for patch in boxes["boxes"]:
            patch.set_facecolor(CLASS_COLORS[name])
            patch.set_alpha(0.6)
        ax.plot([], [], color=CLASS_COLORS[name], lw=6, alpha=0.6, label=f"{name} ({len(part)})")
    ax.set_xticks(np.arange(3), ["minimum", "maximum", "mean"])
    ax.set_ylabel("SHAP value per trace (logit)")
    ax.legend(loc="upper right", frameon=False)


def plot_dataset_overview(fig: Figure, metadata: pd.DataFrame, shap_stats: pd.DataFrame) -> None:
    """Travel times, events per day, epicentres by week, SHAP value ranges.

    Figure §6.1 of ``docs/method.md``.

    Parameters
    ----------
    fig
        An empty figure.
    metadata
        The spectrogram set's metadata (the accepted traces).
    shap_stats
        :func:`quakeshap.plots.tables.shap_trace_stats` of the explained traces.
    """
    grid = fig.add_gridspec(3, 3, width_ratios=[1.0, 1.0, 1.25])
    for k, (column, label) in enumerate(
        (
            ("p_travel_sec", "P travel time (s)"),
            ("s_travel_sec", "S travel time (s)"),
            ("p_s_diff_sec", "S − P time (s)"),
        )
    ):
        ax = fig.add_subplot(grid[0, k])
        _class_hist(ax, metadata, column, label)
        if k == 0:
            ax.legend(loc="upper right", frameon=False)
    plot_events_per_day(fig.add_subplot(grid[1, :2]), metadata)
    plot_shap_distribution(fig.add_subplot(grid[2, :2]), shap_stats)
    ax_map = fig.add_subplot(grid[1:, 2])
    weeks = plot_event_map(ax_map, metadata)
    fig.colorbar(weeks, ax=ax_map, label="ISO week", location="bottom", shrink=0.9)
    stations = ", ".join(metadata["receiver_name"].astype(str).unique())
    fig.suptitle(f"Data set: {len(metadata)} traces at {stations}")


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def plot_confusion_matrix(
    ax: Axes,
    labels: Sequence[Any],
    predicted: Sequence[Any],
    names: tuple[str, ...] = CLASS_NAMES,
) -> np.ndarray:
    """Counts and row percentages of (true label, predicted label).

    Figure §6.6 of ``docs/method.md``; ``names`` are the classes in order (the study's
    pre/post; N time-to-failure classes).

    Returns the ``(N, N)`` matrix drawn (rows = label, columns = prediction).
    """
    if names == CLASS_NAMES:
        truth = np.array([CLASS_NAMES.index(class_name(v)) for v in labels], dtype=np.int64)
        guess = np.array([CLASS_NAMES.index(class_name(v)) for v in predicted], dtype=np.int64)
    else:
        truth = np.array([names.index(str(v)) for v in labels], dtype=np.int64)
        guess = np.array([names.index(str(v)) for v in predicted], dtype=np.int64)
    n = len(names)
    matrix = np.bincount(truth * n + guess, minlength=n * n).reshape(n, n)
    rows = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(matrix / rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            share = matrix[i, j] / rows[i, 0]
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{100 * share:.1f}%",
                ha="center",
                va="center",
                color="white" if share > 0.5 else "black",
            )
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"test split: {matrix.sum()} traces, accuracy {accuracy:.4f}")
    return matrix


def plot_training_curves(
    axes: Sequence[Axes], history: pd.DataFrame, best_fold: int | None = None
) -> None:
    """Loss (train solid, validation dashed) and validation accuracy per fold and epoch.

    ``axes`` = (loss Axes, accuracy Axes); ``best_fold`` is drawn thicker when given.
    """
    ax_loss, ax_acc = axes
    cmap = matplotlib.colormaps["tab10"]
    score = "val_mae" if "val_mae" in history.columns else "val_accuracy"
    for k, (fold, part) in enumerate(history.sort_values(["fold", "epoch"]).groupby("fold")):
        color = cmap(k % 10)
        lw = 2.2 if best_fold is not None and int(fold) == int(best_fold) else 1.0
        tag = " (model)" if lw > 1 else ""
        ax_loss.plot(
            part["epoch"], part["train_loss"], color=color, lw=lw, label=f"fold {fold}{tag}"
        )
        ax_loss.plot(part["epoch"], part["val_loss"], color=color, lw=lw, ls="--")
        ax_acc.plot(part["epoch"], part[score], color=color, lw=lw, marker="o", ms=3)
    ax_loss.plot([], [], color="0.3", label="train")
    ax_loss.plot([], [], color="0.3", ls="--", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("Huber/MSE loss" if score == "val_mae" else "cross-entropy loss")
    ax_loss.legend(frameon=False, ncols=2)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation MAE" if score == "val_mae" else "validation accuracy")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# --------------------------------------------------------------------------------------
# the explainers compared
# --------------------------------------------------------------------------------------


def region_label(measure: str, region: str) -> str:
    """A region of the comparison table as an axis label: ``0_10hz`` → ``0–10 Hz``; the
    ground-truth band is marked ``(truth)``; a time window keeps its name."""
    if region.endswith("hz"):
        lo, hi = (float(v) for v in region.removesuffix("hz").split("_"))
        text = f"{lo:.3g}–{hi:.3g} Hz"
        return f"{text}\n(truth)" if measure == TRUTH else text
    return region


def plot_explainer_fractions(ax: Axes, table: pd.DataFrame, label: str) -> list[str]:
    """Class ``label``'s fraction of ``|SHAP|`` mass per configuration, in each 10 Hz band and,
    when the table has one, in the ground-truth band.

    ``table`` is :mod:`quakeshap.artifacts.explainer_comparison`'s. Bars: one colour per
    configuration, grouped by region; the black line over each group is what a uniform
    map would put there (the region's share of the image rows); a black diamond, what the
    study's released maps of the real record put there (:mod:`quakeshap.published`); the
    ground truth's group is shaded. Returns the regions drawn, in order.
    """
    mine = table[(table["class_name"] == label) & table["measure"].isin([BAND, TRUTH])]
    names = list(dict.fromkeys(table["configuration"]))
    regions = list(dict.fromkeys(zip(mine["measure"], mine["region"], strict=True)))
    if not regions:
        ax.text(0.5, 0.5, f"no {label} maps", ha="center", va="center", transform=ax.transAxes)
        return []
    cmap = matplotlib.colormaps["tab10"]
    width = 0.84 / len(names)
    keyed = mine.set_index(list(KEY_COLUMNS))
    x = np.arange(len(regions), dtype=np.float64)
    for k, name in enumerate(names):
        heights = [float(keyed["value"].get((name, label, m, r), np.nan)) for m, r in regions]
        offset = (k - (len(names) - 1) / 2) * width
        ax.bar(x + offset, heights, width * 0.92, color=cmap(k % 10), label=name)
    uniform = mine.drop_duplicates(["measure", "region"]).set_index(["measure", "region"])
    levels = [float(uniform.loc[key, "uniform"]) for key in regions]
    ax.hlines(levels, x - 0.46, x + 0.46, color="black", lw=1.6, label="uniform map")
    study = published.BAND_FRACTION.get(label, {})
    marks = [(i, study[r]) for i, (m, r) in enumerate(regions) if m == BAND and r in study]
    if marks:  # the study's released maps of the real record, partition + inpaint_telea
        xs, ys = zip(*marks, strict=True)
        ax.plot(xs, ys, "D", color="black", ms=6, label="the study (real record)", zorder=5)
    for i, (measure, _) in enumerate(regions):
        if measure == TRUTH:  # shaded: the band the generator put the difference in
            ax.axvspan(i - 0.5, i + 0.5, color="0.92", zorder=0, lw=0)
    ax.set_xticks(x, [region_label(m, r) for m, r in regions])
    ax.set_ylabel("fraction of |SHAP|")
    ax.set_title(f"{label}: mean over {int(mine['n_maps'].iloc[0])} trace(s) per explainer")
    return [r for _, r in regions]
