"""``data/shap/``: the ``explain`` stage's maps, their index and their means.

``values.npy``
    ``(n_maps, 33, 96, 3)`` float32: one SHAP map per (trace, explained class), in logits;
    axes frequency × time × channel (E, N, Z).
``index.csv``
    Row ``i`` describes map ``i`` (:data:`INDEX_COLUMNS`): the trace, the class explained,
    the selection groups it came from, its label, the predicted class, its week, its S − P
    time, and the additivity check (``base_value``, ``f_x``, ``shap_sum``,
    ``additivity_error``).
``mean_p_aligned.npy`` / ``mean_s_aligned.npy``
    ``(2, 33, 96, 3)`` / ``(2, 33, 59, 3)``: per-class means [pre, post] of the maps that
    :func:`class_mean_mask` admits, as they are (P at 5 s) and cut to the study's 8 s
    window with S at 4 s (``docs/method.md`` §5).
``weekly_mean.npy`` + ``weekly.csv``
    ``(n_weeks, 33, 96, 3)`` mean map per ISO week, and ``week, n_maps`` per row.
``groups.json``
    Only for a task other than the study's pre/post (``docs/method.md`` §11): the names of
    the mean maps' groups, in order (the time-to-failure classes; the magnitude bins), as
    ``{"groups": [...]}``. Without it the groups are ``pre`` and ``post``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quakeshap import files
from quakeshap.artifacts import ArtifactError, read_table
from quakeshap.artifacts.selection import CLASS_GROUP
from quakeshap.record import CLASS_NAMES

#: where the ``explain`` stage writes the set
PATH = Path("data/shap")
VALUES_FILE = "values.npy"
INDEX_FILE = "index.csv"
MEAN_P_FILE = "mean_p_aligned.npy"
MEAN_S_FILE = "mean_s_aligned.npy"
WEEKLY_MEAN_FILE = "weekly_mean.npy"
WEEKLY_FILE = "weekly.csv"
GROUPS_FILE = "groups.json"
#: ``class_name`` of a regression's maps: its one output
REGRESSION_OUTPUT = "magnitude"

#: columns of ``index.csv``
INDEX_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "class_index",
    "class_name",
    "groups",
    "label",
    "predicted",
    "week",
    "p_s_diff_sec",
    "base_value",
    "f_x",
    "shap_sum",
    "additivity_error",
)
WEEKLY_COLUMNS: tuple[str, str] = ("week", "n_maps")
#: joins the selection groups of one trace in the ``groups`` column (``class;week``)
GROUP_SEPARATOR = ";"


@dataclass(frozen=True)
class ShapSet:
    """The folder's content, as written and as loaded."""

    values: np.ndarray  # (n_maps, 33, 96, 3) float32, one map per (trace, explained class)
    index: pd.DataFrame  # row i describes map i
    mean_p_aligned: np.ndarray  # (2, 33, 96, 3): [pre, post]
    mean_s_aligned: np.ndarray  # (2, 33, 59, 3)
    weekly_mean: np.ndarray  # (n_weeks, 33, 96, 3)
    weekly: pd.DataFrame  # week, n_maps; row i describes weekly_mean[i]
    groups: tuple[str, ...] = CLASS_NAMES  # names of the mean maps, in order


def join_groups(groups: Iterable[str]) -> str:
    """The ``groups`` cell of a trace selected for several groups: each once, in order."""
    return GROUP_SEPARATOR.join(dict.fromkeys(str(g) for g in groups))


def in_group(index: pd.DataFrame, group: str) -> np.ndarray:
    """``(n_maps,)`` booleans: the maps of traces selected (also) for ``group``."""
    groups = index["groups"].astype(str).str.split(GROUP_SEPARATOR)
    return groups.map(lambda g: group in g).to_numpy(dtype=bool)


def explained_names(index: pd.DataFrame, outputs: tuple[str, ...] = CLASS_NAMES) -> np.ndarray:
    """``(n_maps,)`` the output each map explains, by name (``class_name``; from
    ``class_index`` and ``outputs`` for an index of class numbers only)."""
    if "class_name" in index.columns:
        return index["class_name"].astype(str).to_numpy()
    return np.array([outputs[int(c)] for c in index["class_index"]], dtype=object)


def class_mean_mask(
    index: pd.DataFrame, class_idx: int | None = None, groups: tuple[str, ...] = CLASS_NAMES
) -> np.ndarray:
    """Which maps enter a per-class mean map: ``(n_maps,)`` booleans.

    A map enters the mean of class ``c`` (position in ``groups``) when its trace was
    selected for the ``class`` group, is of class ``c``, is predicted as ``c``, and the map
    explains ``c`` (a regression's maps all explain its one output; its classes are
    magnitude bins). With ``class_idx`` None, the maps of every class's mean. The mean
    maps, the metrics and the figures (the arrival histograms drawn under a mean) all use
    this one rule.
    """
    position = {name: i for i, name in enumerate(groups)}
    label = index["label"].astype(str).map(position).fillna(-1).to_numpy(dtype=np.int64)
    pred = index["predicted"].astype(str).map(position).fillna(-2).to_numpy(dtype=np.int64)
    explained = explained_names(index, groups)
    regression = explained == REGRESSION_OUTPUT
    own = (label == pred) & ((explained == index["label"].astype(str).to_numpy()) | regression)
    if class_idx is not None:
        own &= label == class_idx
    return in_group(index, CLASS_GROUP) & own


def write(folder: str | Path, shap_set: ShapSet) -> None:
    """Write ``data/shap/`` atomically: all files appear together, or none."""
    with files.atomic_dir(folder) as tmp:
        files.save_npy(tmp / VALUES_FILE, shap_set.values.astype(np.float32))
        files.write_csv(tmp / INDEX_FILE, shap_set.index[list(INDEX_COLUMNS)])
        files.save_npy(tmp / MEAN_P_FILE, shap_set.mean_p_aligned)
        files.save_npy(tmp / MEAN_S_FILE, shap_set.mean_s_aligned)
        files.save_npy(tmp / WEEKLY_MEAN_FILE, shap_set.weekly_mean)
        files.write_csv(tmp / WEEKLY_FILE, shap_set.weekly[list(WEEKLY_COLUMNS)])
        if tuple(shap_set.groups) != CLASS_NAMES:
            files.write_json(tmp / GROUPS_FILE, {"groups": list(shap_set.groups)})


def _load_array(path: Path, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise ArtifactError(f"missing input {path}; run `dvc repro explain` first")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ArtifactError(f"{path}: not a readable .npy array ({exc})") from exc
    if array.ndim != ndim or array.shape[-1] != 3:
        raise ArtifactError(
            f"{path}: shape {array.shape}, expected {ndim} dimensions ending in 3 channels"
        )
    return array.astype(np.float32, copy=False)


def load(folder: str | Path = PATH, image_hw: tuple[int, int] | None = None) -> ShapSet:
    """Read ``data/shap/`` and check that its files agree with each other.

    Parameters
    ----------
    folder
        The ``explain`` stage's output folder.
    image_hw
        ``(n_frequencies, n_times)`` of the spectrograms (33, 96); maps of another size are
        an error (the folder is from another run).
    """
    folder = Path(folder)
    values = _load_array(folder / VALUES_FILE, 4)
    mean_p = _load_array(folder / MEAN_P_FILE, 4)
    mean_s = _load_array(folder / MEAN_S_FILE, 4)
    weekly_mean = _load_array(folder / WEEKLY_MEAN_FILE, 4)
    index = read_table(folder / INDEX_FILE, INDEX_COLUMNS, "explain")
    weekly = read_table(folder / WEEKLY_FILE, WEEKLY_COLUMNS, "explain")
    groups = CLASS_NAMES
    if (folder / GROUPS_FILE).is_file():
        groups = tuple(json.loads((folder / GROUPS_FILE).read_text())["groups"])
    hw = image_hw if image_hw is not None else tuple(values.shape[1:3])
    problems = []
    if values.shape[0] != len(index):
        problems.append(
            f"{VALUES_FILE} holds {values.shape[0]} maps but {INDEX_FILE} {len(index)} rows"
        )
    if weekly_mean.shape[0] != len(weekly):
        problems.append(
            f"{WEEKLY_MEAN_FILE} holds {weekly_mean.shape[0]} maps but {WEEKLY_FILE} "
            f"{len(weekly)} rows"
        )
    for name, array in (
        (VALUES_FILE, values),
        (MEAN_P_FILE, mean_p),
        (WEEKLY_MEAN_FILE, weekly_mean),
    ):
        if tuple(array.shape[1:3]) != tuple(hw):
            problems.append(f"{name} maps are {array.shape[1:3]}, the spectrograms {tuple(hw)}")
    for name, array in ((MEAN_P_FILE, mean_p), (MEAN_S_FILE, mean_s)):
        if array.shape[0] != len(groups) or array.shape[1] != hw[0]:
            problems.append(
                f"{name} has shape {array.shape}, expected ({len(groups)}, {hw[0]}, …, 3)"
            )
    if problems:
        raise ArtifactError(
            f"{folder} is inconsistent: " + "; ".join(problems) + ". Re-run `dvc repro explain`"
        )
    return ShapSet(values, index, mean_p, mean_s, weekly_mean, weekly, groups)
