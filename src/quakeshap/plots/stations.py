"""The stations page's figures (``docs/stations.md``): the transfer matrix as a heatmap, and
the per-station mean SHAP maps on one shared colour scale.

Drawing functions only, as the rest of :mod:`quakeshap.plots`: they take a ``Figure`` and
arrays or tables, draw, and return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from quakeshap.plots.maps import cell_extent, symmetric_limit


def plot_transfer_matrix(fig: Figure, table: pd.DataFrame, score: str) -> None:
    """Every model (rows) on every station's test set (columns), the score in each cell.

    ``table``: :func:`quakeshap.stations.transfer_table`'s rows (``model``, ``station``,
    ``n``, ``score``), models and stations in the order they appear.
    """
    models = list(dict.fromkeys(table["model"]))
    stations = list(dict.fromkeys(table["station"]))
    matrix = table.pivot(index="model", columns="station", values=score)
    values = matrix.loc[models, stations].to_numpy(dtype=np.float64)
    ax = fig.add_subplot()
    lo, hi = (0.0, 1.0) if score == "accuracy" else (0.0, float(np.nanmax(values)) or 1.0)
    image = ax.imshow(values, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(stations)), stations, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_xlabel("test set of station")
    ax.set_ylabel("model")
    for i in range(len(models)):
        for j in range(len(stations)):
            if np.isfinite(values[i, j]):
                light = (values[i, j] - lo) / (hi - lo) < 0.6
                ax.text(
                    j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize="small",
                    color="white" if light else "black",
                )  # fmt: skip
    fig.colorbar(image, ax=ax, label=score)


def plot_station_mean_maps(
    fig: Figure,
    maps: Mapping[str, np.ndarray],
    groups: Sequence[str],
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    cmap: Colormap,
) -> float:
    """One row per station, one column per class: each station's class-mean SHAP map,
    summed over the three channels, all on one symmetric colour scale.

    ``maps``: ``{station: (n_groups, n_freq, n_time, 3)}`` (a SHAP set's
    ``mean_p_aligned``). Returns the colour limit (the largest |value| of any panel), so
    that a caption can quote it.
    """
    summed = {code: np.asarray(m, dtype=np.float64).sum(axis=-1) for code, m in maps.items()}
    vmax = symmetric_limit(*summed.values())
    norm = Normalize(-vmax, vmax)
    extent = cell_extent(time_s, frequency_hz)
    axes = fig.subplots(len(summed), len(groups), sharex=True, sharey=True, squeeze=False)
    image = None
    for i, (code, group_maps) in enumerate(summed.items()):
        for j, group in enumerate(groups):
            ax = axes[i, j]
            image = ax.imshow(
                group_maps[j], origin="lower", aspect="auto", extent=extent, cmap=cmap, norm=norm
            )
            if i == 0:
                ax.set_title(f"mean SHAP, {group}")
            if j == 0:
                ax.set_ylabel(f"{code}\nHz")
            if i == len(summed) - 1:
                ax.set_xlabel("time (s)")
    if image is not None:
        fig.colorbar(image, ax=axes, label="SHAP (logit), E+N+Z", shrink=0.6)
    return vmax
