"""The small tables behind the figures, computed from the SHAP set's maps and index."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from quakeshap.artifacts.shap_set import class_mean_mask
from quakeshap.plots.inputs import class_name
from quakeshap.record import CLASS_NAMES, P_ARRIVAL_S, S_WINDOW_BEFORE_S


def shap_trace_stats(values: np.ndarray, index: pd.DataFrame) -> pd.DataFrame:
    """Minimum, maximum and mean SHAP value of each trace's map for its predicted class.

    Parameters
    ----------
    values
        ``(n_maps, 33, 96, 3)`` SHAP maps (logits).
    index
        The SHAP set's index (:mod:`quakeshap.artifacts.shap_set`): row i describes map i.

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


def class_mean_members(index: pd.DataFrame, groups: tuple[str, ...] = CLASS_NAMES) -> pd.DataFrame:
    """Rows of ``index`` that make up the per-class mean maps
    (:func:`~quakeshap.artifacts.shap_set.class_mean_mask`)."""
    return index[class_mean_mask(index, None, groups)]


def aligned_arrivals(
    index: pd.DataFrame, aligned_to: Literal["P", "S"], groups: tuple[str, ...] = CLASS_NAMES
) -> list[np.ndarray]:
    """Per class, the arrival of the *other* phase on the aligned map's time axis (s).

    P-aligned maps: the S arrivals, ``5 + p_s_diff_sec``; S-aligned maps: the P arrivals,
    ``4 - p_s_diff_sec``, for the traces averaged into each class mean.
    """
    members = class_mean_members(index, groups)
    labels = members["label"].astype(str)
    out = []
    for name in groups:
        ps = members.loc[labels == name, "p_s_diff_sec"].to_numpy(dtype=np.float64)
        out.append(P_ARRIVAL_S + ps if aligned_to == "P" else S_WINDOW_BEFORE_S - ps)
    return out
