"""The study's figures (``docs/method.md`` §6), drawn from the pipeline's outputs.

Two layers:

* **Drawing functions** (``plot_*``) take a matplotlib ``Axes`` (or a ``Figure`` for the
  multi-panel ones) and arrays or tables, draw, and return. They never save, never read
  files and never touch pyplot's global state, so a figure can be tested or re-used in a
  notebook as it is.
* **Inputs and assembly**: :func:`load_inputs` reads everything the ``plots`` stage needs
  (through each artefact's owner in :mod:`quakeshap.artifacts`) and checks it;
  :func:`iter_figures` yields every figure of the report, with its stable file name and a
  one-line caption. The stage saves them with
  :func:`quakeshap.files.save_figure` (PNG without timestamps) inside
  ``matplotlib.rc_context(style(cfg))``.

SHAP maps are ``(freq=33, time=96, channel=3)`` (RGB = E, N, Z) in logit units. For
display they are averaged over the three channels and drawn with a diverging colour map on
one symmetric scale per figure, with opacity proportional to ``|SHAP|`` so that what the
model ignores fades out.

Time axes: P-aligned maps use the spectrogram's own window centres (``axes.json``,
0.32–12.67 s from the trace start, P at 5 s). S-aligned maps are the study's 8 s windows
with S at 4 s (``docs/method.md`` §5); they are drawn on that window's axis, 0–8 s, which is how the
study mapped columns to seconds (96 columns over 13 s).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quakeshap import record
from quakeshap.artifacts import (
    ArtifactError,
    metrics,
    predictions,
    raw,
    selection,
    shap_set,
)
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.selection import EXAMPLE_GROUP, MISCLASSIFIED_GROUP
from quakeshap.artifacts.shap_set import class_mean_mask
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import ConfigError, PlotsConfig
from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    MAINSHOCK_ORIGIN_UTC,
    P_ARRIVAL_S,
    S_WINDOW_BEFORE_S,
    S_WINDOW_LENGTH_S,
)

log = logging.getLogger(__name__)

CLASS_COLORS: dict[str, str] = {"pre": "#1f6fb4", "post": "#d1492e"}
#: the single-channel spectrogram colour map (the diverging ``plots.cmap`` is for SHAP)
SPECTROGRAM_CMAP = "magma"
WEEK_CMAP = "viridis"

#: selection groups that get a per-trace explanation figure, in drawing order
EXPLAINED_GROUPS = (MISCLASSIFIED_GROUP, EXAMPLE_GROUP)


class PlotInputError(ValueError):
    """An input of the ``plots`` stage is missing, malformed or inconsistent."""


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputPaths:
    """Where the ``plots`` stage reads: each artefact's owner's path (relative to the repo)."""

    raw: Path = raw.PATH
    spectrograms: Path = spectrogram_set.PATH
    selection: Path = selection.PATH
    shap: Path = shap_set.PATH
    history: Path = metrics.HISTORY_PATH
    rejected: Path = metrics.REJECTED_PATH
    predictions: Path = predictions.PATH
    train_metrics: Path = metrics.PATHS["train"]
    evaluate_metrics: Path = metrics.PATHS["evaluate"]
    explain_metrics: Path = metrics.PATHS["explain"]

    def under(self, root: str | Path) -> InputPaths:
        """The same layout below another folder (a temporary clone, a test's tmp_path)."""
        root = Path(root)
        return InputPaths(**{f.name: root / getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class PlotInputs:
    """Everything the figures and the report are drawn from."""

    spectrograms: SpectrogramSet
    shap: shap_set.ShapSet
    selection: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    rejected: pd.DataFrame
    train_metrics: dict[str, Any]
    evaluate_metrics: dict[str, Any]
    explain_metrics: dict[str, Any]
    #: trace drawn in the single-trace figure
    example_trace: str
    #: traces with a per-trace explanation figure (misclassified, then examples)
    explained_traces: tuple[str, ...]
    #: raw waveforms ``(3, n_samples)`` of the example and explained traces, by name
    waveforms: dict[str, np.ndarray] = field(default_factory=dict)


def class_name(value: Any) -> str:
    """A class given as its name (``"post"``) or its index (``1``), as its name."""
    try:
        return record.class_name(value)
    except record.UnknownClassError as exc:
        raise PlotInputError(str(exc)) from None


def traces_to_draw(
    selection: pd.DataFrame, known: Sequence[str], example_trace: str | None
) -> tuple[str, tuple[str, ...]]:
    """The single-trace figure's trace and the traces with an explanation figure.

    ``example_trace`` None = the first ``example`` row of the selection (else its first
    row). Explained traces are the ``misclassified`` then the ``example`` rows, each once.
    """
    known_set = set(known)
    explained: list[str] = []
    for group in EXPLAINED_GROUPS:
        for name in selection.loc[selection["group"] == group, "trace_name"]:
            if name not in explained:
                explained.append(name)
    if example_trace is None:
        examples = selection.loc[selection["group"] == EXAMPLE_GROUP, "trace_name"]
        candidates = examples if len(examples) else selection["trace_name"]
        if not len(candidates):
            raise PlotInputError("data/selection.csv is empty: nothing to draw")
        example_trace = str(candidates.iloc[0])
    elif example_trace not in known_set:
        raise PlotInputError(
            f"parameter plots.example_trace: {example_trace!r} is not in the spectrogram set; "
            "give a trace_name of data/spectrograms/metadata.csv or null"
        )
    missing = [n for n in [example_trace, *explained] if n not in known_set]
    if missing:
        raise PlotInputError(
            f"selected trace(s) {missing[:5]} are not in the spectrogram set: "
            "data/selection.csv is from another run; re-run `dvc repro select`"
        )
    return example_trace, tuple(explained)


def load_inputs(paths: InputPaths, example_trace: str | None = None) -> PlotInputs:
    """Read and cross-check everything the ``plots`` stage draws from."""
    try:
        return _load_inputs(paths, example_trace)
    except ArtifactError as exc:
        raise PlotInputError(str(exc)) from exc


def _load_inputs(paths: InputPaths, example_trace: str | None) -> PlotInputs:
    spectra = spectrogram_set.load(paths.spectrograms, mmap=True)
    shaps = shap_set.load(paths.shap, spectra.image_shape[1:])
    known = spectra.metadata["trace_name"]
    unknown = sorted(set(shaps.index["trace_name"]) - set(known))
    if unknown:
        raise PlotInputError(
            f"{paths.shap}/{shap_set.INDEX_FILE} names trace(s) not in the spectrogram set, "
            f"e.g. {unknown[:5]}; re-run `dvc repro explain`"
        )
    chosen = selection.load(paths.selection)
    example, explained = traces_to_draw(chosen, known.tolist(), example_trace)
    scored = predictions.load(paths.predictions)
    missing = sorted(set(explained) - set(scored["trace_name"]))
    if missing:
        raise PlotInputError(
            f"{paths.predictions} has no prediction for explained trace(s) {missing[:5]}; "
            "re-run `dvc repro evaluate`"
        )
    log.info(
        "%d traces, %d SHAP maps; example trace %s; %d trace(s) explained one by one",
        len(spectra),
        len(shaps.index),
        example,
        len(explained),
    )
    return PlotInputs(
        spectrograms=spectra,
        shap=shaps,
        selection=chosen,
        predictions=scored,
        history=metrics.load_history(paths.history),
        rejected=metrics.load_rejected(paths.rejected),
        train_metrics=metrics.load(paths.train_metrics, "train"),
        evaluate_metrics=metrics.load(paths.evaluate_metrics, "evaluate"),
        explain_metrics=metrics.load(paths.explain_metrics, "explain"),
        example_trace=example,
        explained_traces=explained,
        waveforms=raw.read_traces(paths.raw, spectra.metadata, [example, *explained]),
    )


# --------------------------------------------------------------------------------------
# small pure helpers
# --------------------------------------------------------------------------------------


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


def cell_extent(time_s: np.ndarray, frequency_hz: np.ndarray) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) of a grid given by its cell centres."""

    def edges(centres: np.ndarray) -> tuple[float, float]:
        step = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
        return float(centres[0]) - step / 2, float(centres[-1]) + step / 2

    return (*edges(np.asarray(time_s)), *edges(np.asarray(frequency_hz)))


def symmetric_limit(*arrays: np.ndarray) -> float:
    """The largest ``|value|`` over all arrays (NaN ignored): one symmetric colour scale.

    Returns 1.0 when every value is zero or missing, so that a norm is always valid.
    """
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    vmax = max((float(f.max()) for f in finite if f.size), default=0.0)
    return vmax if vmax > 0 else 1.0


def shap_rgba(values: np.ndarray, vmax: float, cmap: Colormap) -> np.ndarray:
    """Colour ``values`` ``(h, w)`` on ``[-vmax, vmax]``, opacity ``|value| / vmax``.

    Returns ``(h, w, 4)`` float RGBA; NaN is fully transparent.
    """
    rgba = cmap(Normalize(-vmax, vmax, clip=True)(np.nan_to_num(values)))
    alpha = np.clip(np.abs(values) / vmax, 0.0, 1.0)
    rgba[..., 3] = np.where(np.isfinite(values), alpha, 0.0)
    return rgba


def shap_trace_stats(values: np.ndarray, index: pd.DataFrame) -> pd.DataFrame:
    """Minimum, maximum and mean SHAP value of each trace's map for its predicted class.

    Parameters
    ----------
    values
        ``(n_maps, 33, 96, 3)`` SHAP maps (logits).
    index
        ``data/shap/index.csv``: row i describes map i.

    Returns
    -------
    One row per trace: ``trace_name``, ``predicted`` (class name), ``min``, ``max``, ``mean``.
    """
    predicted = index["predicted"].map(class_name)
    mine = (index["class_name"].map(class_name) == predicted).to_numpy()
    maps = values[mine].reshape(int(mine.sum()), -1)
    return pd.DataFrame(
        {
            "trace_name": index.loc[mine, "trace_name"].to_numpy(),
            "predicted": predicted[mine].to_numpy(),
            "min": maps.min(axis=1) if len(maps) else [],
            "max": maps.max(axis=1) if len(maps) else [],
            "mean": maps.mean(axis=1) if len(maps) else [],
        }
    )


def class_mean_members(index: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``index`` that make up the per-class mean maps
    (:func:`~quakeshap.artifacts.shap_set.class_mean_mask`)."""
    return index[class_mean_mask(index)]


def aligned_arrivals(index: pd.DataFrame, aligned_to: Literal["P", "S"]) -> list[np.ndarray]:
    """Per class, the arrival of the *other* phase on the aligned map's time axis (s).

    P-aligned maps: the S arrivals, ``5 + p_s_diff_sec``; S-aligned maps: the P arrivals,
    ``4 - p_s_diff_sec``, for the traces averaged into each class mean.
    """
    members = class_mean_members(index)
    labels = members["label"].map(class_name)
    out = []
    for name in CLASS_NAMES:
        ps = members.loc[labels == name, "p_s_diff_sec"].to_numpy(dtype=np.float64)
        out.append(P_ARRIVAL_S + ps if aligned_to == "P" else S_WINDOW_BEFORE_S - ps)
    return out


# --------------------------------------------------------------------------------------
# drawing: building blocks
# --------------------------------------------------------------------------------------


def _mark_phases(ax: Axes, p_s: float | None, s_s: float | None, labels: bool = False) -> None:
    for t, name, style_ in ((p_s, "P", "-"), (s_s, "S", "--")):
        if t is not None and np.isfinite(t):
            ax.axvline(t, color="black", lw=0.9, ls=style_, label=name if labels else None)


def plot_waveforms(
    axes: Axes | Sequence[Axes],
    waveform: np.ndarray,
    sampling_rate_hz: float,
    p_arrival_s: float | None = None,
    s_arrival_s: float | None = None,
    window_s: float | None = None,
) -> None:
    """Draw a three-component trace with its P and S arrivals.

    Parameters
    ----------
    axes
        Three Axes (one component each, in counts) or one Axes (the components stacked,
        each scaled by the trace's largest amplitude).
    waveform
        ``(3, n_samples)``, E, N, Z.
    sampling_rate_hz
        Samples per second; time runs from the trace start.
    p_arrival_s, s_arrival_s
        Phase arrivals in seconds from the trace start; None = not drawn.
    window_s
        Length of the part the spectrogram uses; the rest is shaded. None = no shading.
    """
    waveform = np.asarray(waveform, dtype=np.float64)
    t = np.arange(waveform.shape[1]) / sampling_rate_hz
    stacked = isinstance(axes, Axes)
    ax_list = [axes] * 3 if stacked else list(axes)
    if len(ax_list) != 3:
        raise ValueError(f"plot_waveforms needs one or three Axes, got {len(ax_list)}")
    scale = max(float(np.nanmax(np.abs(waveform))), np.finfo(float).tiny)
    for k, (ax, name) in enumerate(zip(ax_list, CHANNELS, strict=True)):
        if stacked:
            ax.plot(t, waveform[k] / scale * 0.45 + (2 - k), lw=0.5, color="black")
        else:
            ax.plot(t, waveform[k], lw=0.5, color="black")
            ax.set_ylabel(f"{name} (counts)")
    for ax in dict.fromkeys(ax_list):  # each Axes once
        _mark_phases(ax, p_arrival_s, s_arrival_s, labels=ax is ax_list[0])
        if window_s is not None and window_s < t[-1]:
            ax.axvspan(window_s, t[-1], color="0.85", lw=0, zorder=0)
        ax.set_xlim(t[0], t[-1])
    if stacked:
        axes.set_yticks([2, 1, 0], list(CHANNELS))
        axes.set_ylim(-0.7, 2.7)
    ax_list[0].legend(loc="upper right", ncols=2, frameon=False)
    ax_list[-1].set_xlabel("time from trace start (s)")


def plot_spectrogram(
    ax: Axes,
    image: np.ndarray,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    channel: int | None = None,
    p_arrival_s: float | None = None,
    s_arrival_s: float | None = None,
) -> None:
    """Draw one spectrogram image: a single channel, or all three as RGB.

    Parameters
    ----------
    image
        ``(3, 33, 96)`` normalised log power in [0, 1] (``SpectrogramSet.as_float``).
    frequency_hz, time_s
        Cell centres of the image's rows and columns.
    channel
        0, 1, 2 (E, N, Z) for one channel, None for the RGB composite (E→R, N→G, Z→B).
    """
    extent = cell_extent(time_s, frequency_hz)
    if channel is None:
        ax.imshow(np.transpose(image, (1, 2, 0)), origin="lower", aspect="auto", extent=extent)
        ax.set_title("RGB = E, N, Z")
    else:
        ax.imshow(
            image[channel],
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap=SPECTROGRAM_CMAP,
            vmin=0.0,
            vmax=1.0,
        )
        ax.set_title(f"{CHANNELS[channel]} component")
    _mark_phases(ax, p_arrival_s, s_arrival_s)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")


def plot_shap_map(
    ax: Axes,
    shap_map: np.ndarray,
    extent: tuple[float, float, float, float],
    vmax: float,
    cmap: Colormap,
    background: np.ndarray | None = None,
) -> ScalarMappable:
    """Draw one SHAP map, averaged over RGB, with opacity proportional to ``|SHAP|``.

    Parameters
    ----------
    shap_map
        ``(h, w, 3)`` or ``(h, w)`` SHAP values (logits).
    extent
        ``imshow`` extent in seconds and Hz (:func:`cell_extent`).
    vmax
        Half-width of the symmetric colour scale (shared across a figure's panels).
    background
        ``(h, w)`` grey image in [0, 1] drawn under the map (a spectrogram), or None.

    Returns
    -------
    The colour scale, for a colour bar.
    """
    values = shap_map.mean(axis=-1) if shap_map.ndim == 3 else shap_map
    if background is not None:  # faint, so that the attribution stays the figure's subject
        ax.imshow(
            background,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="gray_r",
            vmin=0,
            vmax=1,
            alpha=0.35,
        )
    ax.imshow(shap_rgba(values, vmax, cmap), origin="lower", aspect="auto", extent=extent)
    return ScalarMappable(Normalize(-vmax, vmax), cmap)


def plot_mean_shap(
    axes: Sequence[Axes],
    maps: np.ndarray,
    aligned_to: Literal["P", "S"],
    arrival_hist: Sequence[np.ndarray] | None,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    cmap: Colormap,
) -> ScalarMappable:
    """Per-class mean SHAP maps aligned on P or on S, with the other phase's arrivals.

    Parameters
    ----------
    axes
        One Axes per class (pre, post).
    maps
        ``(2, 33, n_times, 3)`` class means: P-aligned ``n_times = 96``, S-aligned 59.
    aligned_to
        ``"P"``: maps as they are, on ``time_s``, P at 5 s. ``"S"``: the study's 8 s
        windows with S at 4 s, drawn on that window's axis (0–8 s).
    arrival_hist
        Per class, arrival times (s, on the drawn axis) of the other phase (S for
        P-aligned, P for S-aligned), histogrammed on a twin axis; None = no histogram.
    frequency_hz, time_s
        Row and column centres of the full (P-aligned) images.
    cmap
        Diverging colour map; one symmetric scale is shared by all panels.

    Returns
    -------
    The shared colour scale, for a colour bar.
    """
    if aligned_to not in ("P", "S"):
        raise ValueError(f"aligned_to must be 'P' or 'S', got {aligned_to!r}")
    axes = list(axes)
    if len(axes) != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} class maps but {len(axes)} Axes")
    if aligned_to == "P":
        columns = np.asarray(time_s, dtype=np.float64)
        phase_s, other = P_ARRIVAL_S, "S"
        xlabel = "time from trace start (s)"
    else:
        step = S_WINDOW_LENGTH_S / maps.shape[2]
        columns = (np.arange(maps.shape[2]) + 0.5) * step
        phase_s, other = S_WINDOW_BEFORE_S, "P"
        xlabel = f"time in the S-aligned window (s), S at {S_WINDOW_BEFORE_S:g} s"
    display = maps.mean(axis=-1)
    vmax = symmetric_limit(display)
    extent = cell_extent(columns, frequency_hz)
    for k, ax in enumerate(axes):
        plot_shap_map(ax, display[k], extent, vmax, cmap)
        ax.axvline(phase_s, color="black", lw=1.0, ls="-")
        ax.set_title(f"{CLASS_NAMES[k]}: mean SHAP, aligned on {aligned_to}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frequency (Hz)" if k == 0 else "")
        ax.set_xlim(extent[0], extent[1])
        if arrival_hist is not None and len(arrival_hist[k]):
            twin = ax.twinx()
            counts, _, _ = twin.hist(
                arrival_hist[k],
                bins=np.linspace(extent[0], extent[1], 41),
                histtype="step",
                color="0.2",
                lw=1.0,
            )
            # the histogram keeps to the lower third, leaving the map readable above it
            twin.set_ylim(0, 3 * max(float(np.max(counts)), 1.0))
            twin.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            twin.set_ylabel(f"{other} arrivals (traces)")
            twin.set_xlim(extent[0], extent[1])
    return ScalarMappable(Normalize(-vmax, vmax), cmap)


# --------------------------------------------------------------------------------------
# drawing: the study's figures
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

    ``stats`` is :func:`shap_trace_stats`'s table.
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
        ``data/spectrograms/metadata.csv`` (the accepted traces).
    shap_stats
        :func:`shap_trace_stats` of the explained traces.
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


def plot_trace(
    fig: Figure,
    waveform: np.ndarray,
    image: np.ndarray,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    sampling_rate_hz: float,
    p_arrival_s: float,
    s_arrival_s: float,
    window_s: float | None = None,
    title: str | None = None,
) -> None:
    """One trace's three components and its spectrogram per channel and as RGB.

    Figure §6.2 of ``docs/method.md``.

    ``waveform`` ``(3, n_samples)`` E, N, Z; ``image`` ``(3, 33, 96)`` in [0, 1]; arrivals
    and ``window_s`` (the part the spectrogram uses) in seconds from the trace start.
    """
    grid = fig.add_gridspec(2, 1, height_ratios=[1.3, 1.0])
    top = grid[0].subgridspec(3, 1, hspace=0.0)
    wave_axes = [fig.add_subplot(top[0])]
    wave_axes += [fig.add_subplot(top[k], sharex=wave_axes[0]) for k in (1, 2)]
    for ax in wave_axes[:2]:
        ax.tick_params(labelbottom=False)
    plot_waveforms(wave_axes, waveform, sampling_rate_hz, p_arrival_s, s_arrival_s, window_s)
    bottom = grid[1].subgridspec(1, 4)
    first = None
    for k, channel in enumerate((0, 1, 2, None)):
        ax = fig.add_subplot(bottom[k], sharey=first)
        if first is None:
            first = ax
        plot_spectrogram(ax, image, frequency_hz, time_s, channel, p_arrival_s, s_arrival_s)
        if k:
            ax.set_ylabel("")
    if title:
        fig.suptitle(title)


def plot_weekly_shap(
    fig: Figure,
    maps: np.ndarray,
    weeks: Sequence[int],
    n_maps: Sequence[int],
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    cmap: Colormap,
    week_classes: Mapping[int, str] | None = None,
    max_columns: int = 6,
) -> None:
    """The mean SHAP map of each ISO week, one panel per week, one shared scale.

    Figure §6.4 of ``docs/method.md``.

    ``maps`` ``(n_weeks, 33, 96, 3)``; ``weeks`` and ``n_maps`` describe its rows;
    ``week_classes`` optionally names each week's class (``pre``/``post``) in its title.
    """
    n = maps.shape[0]
    if n == 0:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no weekly maps", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    display = maps.mean(axis=-1)
    vmax = symmetric_limit(display)
    extent = cell_extent(time_s, frequency_hz)
    ncols = min(max_columns, n)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_axis_off()
            continue
        plot_shap_map(ax, display[k], extent, vmax, cmap)
        ax.axvline(P_ARRIVAL_S, color="black", lw=0.8)
        week = int(weeks[k])
        tag = f" {week_classes[week]}" if week_classes and week in week_classes else ""
        ax.set_title(f"week {week}{tag} (n={int(n_maps[k])})")
        if k % ncols == 0:
            ax.set_ylabel("frequency (Hz)")
        if k >= n - ncols:  # the lowest panel of its column: label its time axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("time (s)")
    fig.colorbar(
        ScalarMappable(Normalize(-vmax, vmax), cmap),
        ax=axes,
        label="mean SHAP (logit), RGB mean",
        shrink=0.8,
    )


def explained_title(trace_name: str, prediction: Mapping[str, Any], groups: Sequence[str]) -> str:
    """Title of a per-trace explanation: groups, label, prediction, logits, probability."""
    label, predicted = class_name(prediction["label"]), class_name(prediction["predicted"])
    verdict = "correct" if label == predicted else "MISCLASSIFIED"
    logit_pre, logit_post = float(prediction["logit_pre"]), float(prediction["logit_post"])
    return (
        f"{trace_name} [{', '.join(groups)}]: label {label}, predicted {predicted} ({verdict})\n"
        f"logits pre {logit_pre:.3f}, post {logit_post:.3f}; "
        f"softmax p({predicted}) = {float(prediction['probability']):.4f}"
    )


def plot_explained_trace(
    fig: Figure,
    waveform: np.ndarray,
    image: np.ndarray,
    maps: Mapping[int, np.ndarray],
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    sampling_rate_hz: float,
    p_arrival_s: float,
    s_arrival_s: float,
    cmap: Colormap,
    title: str,
) -> None:
    """Waveforms, spectrogram and the SHAP map of each explained class.

    Figure §6.5 of ``docs/method.md``.

    Parameters
    ----------
    maps
        Class index → ``(33, 96, 3)`` SHAP map (logits); both classes share one scale.
    title
        :func:`explained_title`.
    """
    classes = sorted(maps)
    grid = fig.add_gridspec(2, 1, height_ratios=[0.8, 1.0])
    plot_waveforms(fig.add_subplot(grid[0]), waveform, sampling_rate_hz, p_arrival_s, s_arrival_s)
    bottom = grid[1].subgridspec(1, 1 + len(classes))
    ax_rgb = fig.add_subplot(bottom[0])
    plot_spectrogram(ax_rgb, image, frequency_hz, time_s, None, p_arrival_s, s_arrival_s)
    vmax = symmetric_limit(*(maps[c].mean(axis=-1) for c in classes))
    extent = cell_extent(time_s, frequency_hz)
    grey = image.mean(axis=0)
    shap_axes = []
    for k, c in enumerate(classes):
        ax = fig.add_subplot(bottom[k + 1], sharey=ax_rgb)
        plot_shap_map(ax, maps[c], extent, vmax, cmap, background=grey)
        _mark_phases(ax, p_arrival_s, s_arrival_s)
        total = float(np.nansum(maps[c]))
        ax.set_title(f"SHAP for {CLASS_NAMES[c]} (sum {total:+.3f})")
        ax.set_xlabel("time (s)")
        shap_axes.append(ax)
    if shap_axes:
        fig.colorbar(
            ScalarMappable(Normalize(-vmax, vmax), cmap),
            ax=shap_axes,
            label="SHAP (logit), RGB mean",
            shrink=0.9,
        )
    fig.suptitle(title)


def plot_confusion_matrix(ax: Axes, labels: Sequence[Any], predicted: Sequence[Any]) -> np.ndarray:
    """Counts and row percentages of (true label, predicted label).

    Figure §6.6 of ``docs/method.md``.

    Returns the ``(2, 2)`` matrix drawn (rows = label, columns = prediction; pre, post).
    """
    truth = np.array([CLASS_NAMES.index(class_name(v)) for v in labels], dtype=np.int64)
    guess = np.array([CLASS_NAMES.index(class_name(v)) for v in predicted], dtype=np.int64)
    n = len(CLASS_NAMES)
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
    ax.set_xticks(range(n), CLASS_NAMES)
    ax.set_yticks(range(n), CLASS_NAMES)
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
    for k, (fold, part) in enumerate(history.sort_values(["fold", "epoch"]).groupby("fold")):
        color = cmap(k % 10)
        lw = 2.2 if best_fold is not None and int(fold) == int(best_fold) else 1.0
        tag = " (model)" if lw > 1 else ""
        ax_loss.plot(
            part["epoch"], part["train_loss"], color=color, lw=lw, label=f"fold {fold}{tag}"
        )
        ax_loss.plot(part["epoch"], part["val_loss"], color=color, lw=lw, ls="--")
        ax_acc.plot(part["epoch"], part["val_accuracy"], color=color, lw=lw, marker="o", ms=3)
    ax_loss.plot([], [], color="0.3", label="train")
    ax_loss.plot([], [], color="0.3", ls="--", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend(frameon=False, ncols=2)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# --------------------------------------------------------------------------------------
# the report's figures
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    """One drawn figure: its file name in ``reports/figures/`` and its caption."""

    filename: str
    title: str
    caption: str
    figure: Figure


def _figure(cfg: PlotsConfig, height_scale: float = 1.0) -> Figure:
    return Figure(
        figsize=(cfg.width_in, cfg.height_in * height_scale), dpi=cfg.dpi, layout="constrained"
    )


def iter_figures(
    inputs: PlotInputs, cfg: PlotsConfig, sampling_rate_hz: float, window_s: float | None = None
) -> Iterator[FigureSpec]:
    """Draw every figure of the report, one at a time (the caller saves and drops each).

    Parameters
    ----------
    inputs
        :func:`load_inputs`.
    cfg
        ``plots`` parameters: figure size (``width_in`` × ``height_in`` for one row of
        panels, taller for multi-row figures), dpi and colour map.
    sampling_rate_hz
        Of the raw waveforms (``spectrogram.sampling_rate_hz``).
    window_s
        Seconds of each trace the spectrogram uses (``n_samples / sampling_rate_hz``).
    """
    cmap = resolve_cmap(cfg.cmap)
    spectra, shaps = inputs.spectrograms, inputs.shap
    meta = spectra.metadata
    freq, time = spectra.frequency_hz, spectra.time_s
    rows = {name: i for i, name in enumerate(meta["trace_name"])}
    stats = shap_trace_stats(shaps.values, shaps.index)

    fig = _figure(cfg, 1.6)
    plot_dataset_overview(fig, meta, stats)
    yield FigureSpec(
        "dataset_overview.png",
        "Data set overview",
        "Pre and post should overlap in travel times (same source region), show a gap in events "
        "around the mainshock, and the SHAP value ranges should sit on both sides of zero.",
        fig,
    )

    name = inputs.example_trace
    row = meta.iloc[rows[name]]
    fig = _figure(cfg, 1.2)
    plot_trace(
        fig,
        inputs.waveforms[name],
        spectra.as_float(rows[name]),
        freq,
        time,
        sampling_rate_hz,
        float(row["trace_p_arrival_s"]),
        float(row["trace_s_arrival_s"]),
        window_s,
        title=f"{name}: {row['label']}, M {float(row['source_magnitude']):.1f}, "
        f"S − P {float(row['p_s_diff_sec']):.2f} s",
    )
    yield FigureSpec(
        figure_filename("trace", name),
        f"Example trace {name}",
        "The P (solid) and S (dashed) onsets on all three components and the energy they bring "
        "into the spectrogram; only the unshaded first seconds feed the model.",
        fig,
    )

    for aligned_to, maps in (("P", shaps.mean_p_aligned), ("S", shaps.mean_s_aligned)):
        fig = _figure(cfg, 0.75)
        axes = fig.subplots(1, 2, sharey=True)
        mappable = plot_mean_shap(
            axes, maps, aligned_to, aligned_arrivals(shaps.index, aligned_to), freq, time, cmap
        )
        fig.colorbar(mappable, ax=axes, label="mean SHAP (logit), RGB mean", shrink=0.9)
        other = "S" if aligned_to == "P" else "P"
        yield FigureSpec(
            f"shap_mean_{aligned_to.lower()}_aligned.png",
            f"Mean SHAP per class, aligned on {aligned_to}",
            f"Where each class draws its evidence relative to {aligned_to} (vertical line); the "
            f"curve is the {other}-arrival histogram. Red supports the class, blue opposes it.",
            fig,
        )

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
        freq,
        time,
        cmap,
        week_classes,
    )
    yield FigureSpec(
        "shap_weekly.png",
        "Mean SHAP per ISO week",
        "Whether the attribution pattern drifts with time within each sequence or flips only at "
        "the mainshock (weeks 43/44).",
        fig,
    )

    predictions = inputs.predictions.set_index("trace_name")
    selection_groups = inputs.selection.groupby("trace_name")["group"].apply(list)
    for name in inputs.explained_traces:
        mine = shaps.index["trace_name"] == name
        maps = {
            CLASS_NAMES.index(class_name(c)): shaps.values[i]
            for i, c in zip(np.flatnonzero(mine), shaps.index.loc[mine, "class_name"], strict=True)
        }
        if not maps:
            raise PlotInputError(
                f"data/shap has no map for selected trace {name!r}; re-run `dvc repro explain`"
            )
        row = meta.iloc[rows[name]]
        fig = _figure(cfg, 1.0)
        plot_explained_trace(
            fig,
            inputs.waveforms[name],
            spectra.as_float(rows[name]),
            maps,
            freq,
            time,
            sampling_rate_hz,
            float(row["trace_p_arrival_s"]),
            float(row["trace_s_arrival_s"]),
            cmap,
            explained_title(name, predictions.loc[name], selection_groups[name]),
        )
        yield FigureSpec(
            figure_filename("explained", name),
            f"Explanation of {name}",
            "Which time–frequency cells pushed the logit of each class up (red) or down (blue); "
            "for a misclassified trace, look for evidence that contradicts its label.",
            fig,
        )

    side = min(cfg.width_in, cfg.height_in) * 0.8
    fig = Figure(figsize=(side, side), dpi=cfg.dpi, layout="constrained")
    ax = fig.add_subplot()
    plot_confusion_matrix(ax, inputs.predictions["label"], inputs.predictions["predicted"])
    yield FigureSpec(
        "confusion_matrix.png",
        "Confusion matrix (test split)",
        "Off-diagonal cells are the misclassified traces explained above; the split is "
        "unbalanced, so read the row percentages.",
        fig,
    )

    fig = _figure(cfg, 0.7)
    # the fold kept as the model (train.json names it chosen_fold; best_fold accepted too)
    best = inputs.train_metrics.get("chosen_fold", inputs.train_metrics.get("best_fold"))
    plot_training_curves(
        fig.subplots(1, 2), inputs.history, best if isinstance(best, int) else None
    )
    yield FigureSpec(
        "training_curves.png",
        "Cross-validation training curves",
        "Validation loss should fall with training loss; a widening gap means over-fitting, "
        "and early stopping keeps each fold's best epoch.",
        fig,
    )
