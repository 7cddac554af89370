"""Drawing on time–frequency axes: waveforms, spectrograms and SHAP maps.

Each ``plot_*`` function takes a matplotlib ``Axes`` (or a ``Figure`` for the multi-panel
ones) and arrays, draws, and returns; it never saves, reads files or touches pyplot's
global state.

SHAP maps are ``(freq=33, time=96, channel=3)`` (RGB = E, N, Z) in logit units. For
display they are averaged over the three channels and drawn with a diverging colour map on
one symmetric scale per figure, with opacity proportional to ``|SHAP|`` so that what the
model ignores fades out.

Time axes: P-aligned maps use the spectrogram's own window centres (0.32–12.67 s from the
trace start, P at 5 s). S-aligned maps are the study's 8 s windows with S at 4 s
(``docs/method.md`` §5); they are drawn on that window's axis, 0–8 s, which is how the
study mapped columns to seconds (96 columns over 13 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from quakeshap.record import (
    CHANNELS,
    CLASS_NAMES,
    P_ARRIVAL_S,
    S_WINDOW_BEFORE_S,
    S_WINDOW_LENGTH_S,
)

#: the single-channel spectrogram colour map (the diverging ``plots.cmap`` is for SHAP)
SPECTROGRAM_CMAP = "magma"


# --------------------------------------------------------------------------------------
# colour scales
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# traces, spectrograms, SHAP maps
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
    names: Sequence[str] = CLASS_NAMES,
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
    names
        The panels' groups (the classes; a regression's magnitude bins).

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
        ax.set_title(f"{names[k]}: mean SHAP, aligned on {aligned_to}")
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
# the study's multi-panel figures
# --------------------------------------------------------------------------------------


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
    names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Waveforms, spectrogram and the SHAP map of each explained class.

    Figure §6.5 of ``docs/method.md``.

    Parameters
    ----------
    maps
        Class index → ``(33, 96, 3)`` SHAP map (logits); both classes share one scale.
    title
        :func:`quakeshap.plots.figures.explained_title`.
    names
        The model's outputs by index (the classes, or ``magnitude``).
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
        ax.set_title(f"SHAP for {names[c]} (sum {total:+.3f})")
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
