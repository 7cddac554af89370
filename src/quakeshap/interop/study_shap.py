"""The study's released SHAP maps → a quakeshap SHAP set, and the two set side by side.

The study's repository releases ``explainability/shap_tensors.zip`` (``docs/method.md``
§8): float64 ``.npy`` maps, frequency (0–50 Hz) × time (0.32–12.67 s) × E, N, Z:

==================================  ======================  ================================
entries                             shape                   what
==================================  ======================  ================================
``foreshocks/<trace_name>.npy``     (1, 33, 96, 3)          300 correct ``pre`` test traces
``aftershocks/<trace_name>.npy``    (1, 33, 96, 3)          300 correct ``post`` test traces
``temporal/``, ``colocated/``       (1, 33, 96, 3)          180 / 130, the top class
``misclassified/``, ``examples/``   (1, 33, 96, 3, 2)       4 / 2; last axis by predicted rank
``avg_p_{pre,post}.npy``            (33, 96, 3)             the study's P-aligned means
``avg_s_{pre,post}.npy``            (33, 59, 3)             the study's S-aligned means
==================================  ======================  ================================

:func:`import_release` turns them into :class:`quakeshap.artifacts.shap_set.ShapSet`: the
maps in quakeshap's layout (the study's own frequency × time × channel order, the leading
axis of one dropped, float32), one index row per (trace, explained class), the study's own
mean maps as the set's means. The release stores maps by *predicted rank* (index 0 = the
class the model predicted), not by class id; :func:`explained_classes` recovers the class,
in this order:

1. ``foreshocks`` and ``aftershocks`` hold correctly classified ``pre`` and ``post`` traces
   (``docs/method.md`` §4): their top class is the folder's class, in every folder the
   trace appears in (``temporal`` reuses them).
2. A predictions table (``predictions.csv`` of quakeshap's ``evaluate`` run with the
   converted study checkpoint, :mod:`quakeshap.interop.study_checkpoint`) gives the
   predicted class of every trace it lists; rank 1 is then the other class.
3. A ``misclassified`` trace whose label is known (a metadata table) was predicted as the
   other class.
4. Otherwise the class is not recoverable: the map keeps its rank, ``class_name``
   ``rank0`` (the predicted class) or ``rank1``, with ``class_index`` -1, and enters no
   per-class measure. No rule from the values alone is used: the sums of the two ranks'
   maps differ by the logit margin minus the margin at the masked base, whose sign is
   unknown.

:func:`compare` puts a study set beside one of quakeshap's: the band, window and time
fractions and the mean-map peak per class (the functions of
:mod:`quakeshap.explain.metrics`), the correlation of the mean maps, and the correlation of
the maps of every trace both explained for the same class.

Commands (``docs/study-release.md``)::

    python -m quakeshap.interop.study_shap shap_tensors.zip OUT_DIR \
        [--metadata CSV] [--predictions CSV]
    python -m quakeshap.interop.study_shap compare STUDY_SET OUR_SHAP_DIR OUT.json
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from quakeshap import files
from quakeshap.artifacts import predictions as predictions_table
from quakeshap.artifacts import shap_set
from quakeshap.artifacts.selection import (
    CLASS_GROUP,
    EXAMPLE_GROUP,
    MISCLASSIFIED_GROUP,
    WEEK_GROUP,
)
from quakeshap.artifacts.shap_set import INDEX_COLUMNS, ShapSet, class_mean_mask
from quakeshap.config import SpectrogramConfig
from quakeshap.explain.maps import (
    BANDS_HZ,
    WINDOWS,
    band_fractions,
    band_key,
    band_share,
    weekly_means,
    window_fractions,
)
from quakeshap.explain.metrics import fixed_window_fractions, mean_map_peak
from quakeshap.interop.study_release import Release, StudyReleaseError, run_command
from quakeshap.published import TIME_WINDOWS_S
from quakeshap.record import CLASS_NAMES, P_ARRIVAL_S, iso_week, s_window_columns
from quakeshap.spectrogram import spectrogram_axes

log = logging.getLogger(__name__)

#: the release's folders of per-trace maps → the quakeshap selection group of their traces
FOLDER_GROUPS: dict[str, str] = {
    "foreshocks": CLASS_GROUP,
    "aftershocks": CLASS_GROUP,
    "temporal": WEEK_GROUP,
    "colocated": "colocated",
    "misclassified": MISCLASSIFIED_GROUP,
    "examples": EXAMPLE_GROUP,
}
#: folders whose maps hold both classes, last axis by predicted rank
RANKED_FOLDERS = frozenset({"misclassified", "examples"})
#: folders of correctly classified traces: the top class is the folder's class
FOLDER_CLASS: dict[str, str] = {"foreshocks": CLASS_NAMES[0], "aftershocks": CLASS_NAMES[1]}
#: the study's mean maps, per class in :data:`CLASS_NAMES` order
MEAN_P_FILES: tuple[str, str] = ("avg_p_pre.npy", "avg_p_post.npy")
MEAN_S_FILES: tuple[str, str] = ("avg_s_pre.npy", "avg_s_post.npy")
#: ``class_name`` of a map whose class could not be recovered: its predicted rank
RANK_NAMES: tuple[str, str] = ("rank0", "rank1")
NPY_SUFFIX = ".npy"


def study_axes() -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (33, Hz) and column times (96, s) of the study's images
    (``docs/method.md`` §2)."""
    return spectrogram_axes(SpectrogramConfig())


# --------------------------------------------------------------------------------------
# reading the release
# --------------------------------------------------------------------------------------


def _read_map(release: Release, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One ``.npy`` of the release, checked: float, finite, of ``shape``; as float64."""
    where = release.where(name)
    try:
        array = np.load(io.BytesIO(release.read(name)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise StudyReleaseError(f"{where}: not a readable .npy array ({exc})") from None
    if array.shape != shape:
        raise StudyReleaseError(f"{where}: shape {array.shape}, expected {shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise StudyReleaseError(
            f"{where}: dtype {array.dtype}, expected floating-point SHAP values"
        )
    if not np.isfinite(array).all():
        raise StudyReleaseError(f"{where}: holds NaN or inf")
    return array.astype(np.float64, copy=False)


def map_entries(release: Release) -> list[tuple[str, str]]:
    """``(folder, entry)`` of every per-trace map, folders in :data:`FOLDER_GROUPS` order,
    entries by name; an entry of no known folder is logged and left out."""
    found: dict[str, list[str]] = {folder: [] for folder in FOLDER_GROUPS}
    known = {*MEAN_P_FILES, *MEAN_S_FILES}
    ignored = []
    for name in release.names:
        path = PurePosixPath(name)
        if path.suffix != NPY_SUFFIX or path.name in known:
            continue
        if path.parent.name in found:
            found[path.parent.name].append(name)
        else:
            ignored.append(name)
    if ignored:
        log.warning("%d .npy file(s) outside the release's folders left out, e.g. %s",
                    len(ignored), ignored[:3])  # fmt: skip
    if not any(found.values()):
        raise StudyReleaseError(
            f"{release.path}: no per-trace maps in any of the folders {list(FOLDER_GROUPS)}; "
            "is this the study's shap_tensors.zip?"
        )
    return [(folder, name) for folder, names in found.items() for name in names]


def _trace_info(metadata: pd.DataFrame | None, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """One row per known trace: ``label``, ``predicted``, ``week``, ``p_s_diff_sec``
    (empty text, -1 and NaN where unknown), from the optional tables."""
    for table in (metadata, predictions):
        if table is not None and "trace_name" not in table.columns:
            raise StudyReleaseError(f"a table given lacks trace_name (has {list(table.columns)})")
    names = pd.Index([])
    for table in (metadata, predictions):
        if table is not None:
            names = names.union(pd.Index(table["trace_name"].astype(str)))
    info = pd.DataFrame(index=names)
    info["label"], info["predicted"], info["week"] = "", "", -1
    info["p_s_diff_sec"] = np.nan
    if metadata is not None:
        meta = metadata.drop_duplicates("trace_name")
        meta.index = pd.Index(meta["trace_name"].astype(str))
        if "label" in meta.columns:
            info.loc[meta.index, "label"] = meta["label"].fillna("").astype(str)
        if "week" in meta.columns:
            info.loc[meta.index, "week"] = pd.to_numeric(meta["week"], errors="coerce").fillna(-1)
        elif "trace_start_time" in meta.columns:
            info.loc[meta.index, "week"] = iso_week(meta["trace_start_time"])
        if "p_s_diff_sec" in meta.columns:
            info.loc[meta.index, "p_s_diff_sec"] = pd.to_numeric(
                meta["p_s_diff_sec"], errors="coerce"
            )
    if predictions is not None:
        pred = predictions.drop_duplicates("trace_name")
        pred.index = pd.Index(pred["trace_name"].astype(str))
        info.loc[pred.index, "predicted"] = pred["predicted"].astype(str)
        unknown = info.loc[pred.index, "label"] == ""
        info.loc[unknown[unknown].index, "label"] = pred.loc[unknown[unknown].index, "label"]
        no_week = info.loc[pred.index, "week"] < 0
        info.loc[no_week[no_week].index, "week"] = pred.loc[no_week[no_week].index, "week"]
    info["week"] = info["week"].astype(np.int64)
    return info


def explained_classes(
    folder: str, trace: str, info: pd.DataFrame, known: Mapping[str, str]
) -> tuple[str, str, tuple[str, ...]]:
    """``(label, predicted, class of each rank)`` of one map of the release.

    ``known`` maps the traces of ``foreshocks`` and ``aftershocks`` to their folder's
    class, which is theirs in every folder. The rules are the module docstring's; an
    unrecoverable class is its rank's name (:data:`RANK_NAMES`), ``predicted`` then empty.
    """
    label, predicted = "", ""
    if trace in info.index:
        label, predicted = str(info.at[trace, "label"]), str(info.at[trace, "predicted"])
    if trace in known:
        own = known[trace]
        if predicted and predicted != own:
            log.warning("%s/%s: the predictions say %s, the release's folders %s; using %s",
                        folder, trace, predicted, own, own)  # fmt: skip
        if label and label != own:
            log.warning("%s/%s: labelled %s in the metadata, %s in the release", folder,
                        trace, label, own)  # fmt: skip
        predicted, label = own, label or own
    elif not predicted and folder == "misclassified" and label in CLASS_NAMES:
        predicted = CLASS_NAMES[1 - CLASS_NAMES.index(label)]
    if predicted not in CLASS_NAMES:
        return label, "", RANK_NAMES
    return label, predicted, (predicted, CLASS_NAMES[1 - CLASS_NAMES.index(predicted)])


def import_release(
    path: str | Path,
    metadata: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
) -> ShapSet:
    """The study's ``shap_tensors.zip`` (or its unpacked folder) as a SHAP set.

    Parameters
    ----------
    path
        The archive or folder.
    metadata
        Optional table with ``trace_name`` and any of ``label``, ``week`` (or
        ``trace_start_time``), ``p_s_diff_sec``: the study's ``metadata.csv`` or
        ``data/spectrograms/metadata.csv``.
    predictions
        Optional ``predictions.csv`` (:mod:`quakeshap.artifacts.predictions`) of the
        study's model: the predicted class of each trace.

    Returns
    -------
    ShapSet
        ``values`` ``(n_maps, 33, 96, 3)`` float32 in the release's folder order; the
        index (:data:`~quakeshap.artifacts.shap_set.INDEX_COLUMNS`; ``base_value``, ``f_x``
        and ``additivity_error`` NaN: the release has no base values; ``shap_sum`` the
        map's sum); the study's mean maps; weekly means of the ``temporal`` maps whose
        week and class are known.
    """
    frequency_hz, time_s = study_axes()
    hw = (len(frequency_hz), len(time_s))
    s_width = s_window_columns(len(time_s))[1]
    info = _trace_info(metadata, predictions)
    rows: list[dict[str, Any]] = []
    maps: list[np.ndarray] = []
    seen: dict[tuple[str, str], int] = {}
    with Release(path) as release:
        entries = map_entries(release)
        known = {
            PurePosixPath(name).stem: FOLDER_CLASS[folder]
            for folder, name in entries
            if folder in FOLDER_CLASS
        }
        for folder, name in entries:
            ranked = folder in RANKED_FOLDERS
            shape = (1, *hw, 3, 2) if ranked else (1, *hw, 3)
            array = _read_map(release, name, shape)[0]
            trace = PurePosixPath(name).stem
            label, predicted, classes = explained_classes(folder, trace, info, known)
            for rank, explained in enumerate(classes[: 2 if ranked else 1]):
                values = array[..., rank] if ranked else array
                key = (trace, explained)
                if key in seen and np.array_equal(maps[seen[key]], values.astype(np.float32)):
                    row = rows[seen[key]]
                    row["groups"] = shap_set.join_groups(
                        [*row["groups"].split(shap_set.GROUP_SEPARATOR), FOLDER_GROUPS[folder]]
                    )
                    continue
                if key in seen:
                    log.warning("%s: a second, different map of %s for %s; both kept",
                                release.where(name), trace, explained)  # fmt: skip
                seen.setdefault(key, len(rows))
                maps.append(values.astype(np.float32))
                rows.append(_index_row(trace, explained, FOLDER_GROUPS[folder], label,
                                       predicted, info, values))  # fmt: skip
        means = [
            np.stack([_read_map(release, release.find_one(f, "a mean map"), shape) for f in names])
            for names, shape in ((MEAN_P_FILES, (*hw, 3)), (MEAN_S_FILES, (hw[0], s_width, 3)))
        ]
    values = np.stack(maps)
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    known_week = (index["week"] >= 0).to_numpy()
    weekly_mean, weekly = weekly_means(values[known_week], index[known_week].reset_index(drop=True))
    recovered = index["class_index"] >= 0
    log.info(
        "%d maps of %d traces read; %d of known class, %d kept by rank",
        len(index), index["trace_name"].nunique(), recovered.sum(), (~recovered).sum(),
    )  # fmt: skip
    mean_p, mean_s = (m.astype(np.float32) for m in means)
    return ShapSet(values, index, mean_p, mean_s, weekly_mean, weekly, CLASS_NAMES)


def _index_row(
    trace: str,
    explained: str,
    group: str,
    label: str,
    predicted: str,
    info: pd.DataFrame,
    values: np.ndarray,
) -> dict[str, Any]:
    known = trace in info.index
    return {
        "trace_name": trace,
        "class_index": CLASS_NAMES.index(explained) if explained in CLASS_NAMES else -1,
        "class_name": explained,
        "groups": group,
        "label": label,
        "predicted": predicted,
        "week": int(info.at[trace, "week"]) if known else -1,
        "p_s_diff_sec": float(info.at[trace, "p_s_diff_sec"]) if known else np.nan,
        "base_value": np.nan,
        "f_x": np.nan,
        "shap_sum": float(values.sum()),
        "additivity_error": np.nan,
    }


# --------------------------------------------------------------------------------------
# the study's maps beside ours
# --------------------------------------------------------------------------------------


def _finite_mean(rows: np.ndarray) -> np.ndarray:
    """Column means over the rows whose values are all finite; NaN without any."""
    rows = np.asarray(rows, dtype=np.float64)
    keep = np.isfinite(rows).all(axis=1)
    if not keep.any():
        return np.full(rows.shape[1], np.nan)
    return rows[keep].mean(axis=0)


def summarize_set(
    sset: ShapSet, frequency_hz: np.ndarray, time_s: np.ndarray, p_arrival_s: float = P_ARRIVAL_S
) -> dict[str, dict[str, Any]]:
    """Where a set's per-class maps put their ``|SHAP|`` mass, measured as
    ``reports/metrics/explain.json`` measures it: per class over the maps that
    :func:`~quakeshap.artifacts.shap_set.class_mean_mask` admits, the mean of each map's
    fractions per band (``band_fraction``), per window before P / P to S / after S
    (``window_fraction``, over the maps whose S − P time is known) and per fixed window
    (``time_fraction``), the mean map's peak, and the number of maps."""
    values, index = sset.values, sset.index
    s_times = p_arrival_s + pd.to_numeric(index["p_s_diff_sec"], errors="coerce").to_numpy(
        dtype=np.float64
    )
    bands = band_fractions(values, frequency_hz)
    windows = window_fractions(values, time_s, s_times, p_arrival_s)
    windows[~np.isfinite(s_times)] = np.nan  # S unknown: no window to measure
    fixed = fixed_window_fractions(values, time_s)
    out: dict[str, dict[str, Any]] = {
        "band_fraction": {},
        "window_fraction": {},
        "time_fraction": {},
        "mean_map_peak": {},
        "n_class_maps": {},
    }
    for c, name in enumerate(CLASS_NAMES):
        mask = class_mean_mask(index, c, CLASS_NAMES)
        out["n_class_maps"][name] = int(mask.sum())
        b, w, t = (_finite_mean(x[mask]) for x in (bands, windows, fixed))
        peak = mean_map_peak(values[mask], frequency_hz, time_s) if mask.any() else (np.nan,) * 2
        out["band_fraction"][name] = {
            band_key(lo, hi): float(v) for (lo, hi), v in zip(BANDS_HZ, b, strict=True)
        }
        out["window_fraction"][name] = {k: float(v) for k, v in zip(WINDOWS, w, strict=True)}
        out["time_fraction"][name] = {
            k: float(v) for (k, _, _), v in zip(TIME_WINDOWS_S, t, strict=True)
        }
        out["mean_map_peak"][name] = {"frequency_hz": peak[0], "time_s": peak[1]}
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps over their finite pixels; NaN when one is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def trace_correlations(study: ShapSet, ours: ShapSet) -> pd.DataFrame:
    """``trace_name, class_name, pearson``: the correlation of the two sets' maps of every
    (trace, class) both explained (each set's first map of the pair), by trace name."""

    def first(sset: ShapSet) -> pd.Series:
        named = sset.index["class_name"].astype(str).isin(CLASS_NAMES)
        keys = sset.index.loc[named, ["trace_name", "class_name"]].astype(str)
        return (
            pd.Series(keys.index, index=pd.MultiIndex.from_frame(keys))
            .groupby(level=[0, 1])
            .first()
        )

    mine, theirs = first(ours), first(study)
    common = theirs.index.intersection(mine.index).sort_values()
    return pd.DataFrame(
        {
            "trace_name": [k[0] for k in common],
            "class_name": [k[1] for k in common],
            "pearson": [_pearson(study.values[theirs[k]], ours.values[mine[k]]) for k in common],
        }
    )


def compare(
    study: ShapSet,
    ours: ShapSet,
    frequency_hz: np.ndarray | None = None,
    time_s: np.ndarray | None = None,
) -> dict[str, Any]:
    """The study's maps beside quakeshap's, as a JSON-ready dict.

    ``band_fraction``, ``window_fraction``, ``time_fraction``, ``mean_map_peak`` and
    ``n_class_maps`` hold one column per class and set (``pre``, ``post`` for ours,
    ``pre (study)``, ``post (study)``), the rows as in ``explain.json``;
    ``mean_map_correlation`` the Pearson correlation of the two sets' P- and S-aligned
    mean maps per class; ``trace_correlation`` a summary of :func:`trace_correlations`,
    listed per trace in ``traces``.
    """
    if frequency_hz is None or time_s is None:
        frequency_hz, time_s = study_axes()
    for name, sset in (("the study's set", study), ("ours", ours)):
        if sset.values.shape[1:3] != (len(frequency_hz), len(time_s)):
            raise StudyReleaseError(
                f"{name} holds maps of {sset.values.shape[1:3]}, the study's images are "
                f"{(len(frequency_hz), len(time_s))}"
            )
    mine = summarize_set(ours, frequency_hz, time_s)
    theirs = summarize_set(study, frequency_hz, time_s)
    result: dict[str, Any] = {
        key: {**mine[key], **{f"{c} (study)": v for c, v in theirs[key].items()}} for key in mine
    }
    result["band_share"] = {
        band_key(lo, hi): float(s)
        for (lo, hi), s in zip(BANDS_HZ, band_share(frequency_hz), strict=True)
    }
    result["mean_map_correlation"] = {
        aligned: {
            name: _pearson(getattr(study, attr)[c], getattr(ours, attr)[c])
            for c, name in enumerate(CLASS_NAMES)
        }
        for aligned, attr in (("p_aligned", "mean_p_aligned"), ("s_aligned", "mean_s_aligned"))
    }
    table = trace_correlations(study, ours)
    r = table["pearson"].to_numpy(dtype=np.float64)
    finite = r[np.isfinite(r)]
    result["trace_correlation"] = {
        "n_traces": len(table),
        **{
            stat: float(fn(finite)) if finite.size else float("nan")
            for stat, fn in (("mean", np.mean), ("median", np.median), ("min", np.min),
                             ("max", np.max))
        },
    }  # fmt: skip
    result["traces"] = table.to_dict(orient="records")
    return result


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


def _read_csv(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    try:
        return pd.read_csv(path, dtype={"trace_name": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyReleaseError(f"{path}: not a readable table ({exc})") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        parser = argparse.ArgumentParser(
            prog="python -m quakeshap.interop.study_shap compare",
            description="The study's SHAP set beside one of quakeshap's, as JSON.",
        )
        parser.add_argument("study", type=Path, help="a SHAP set imported from the release")
        parser.add_argument("ours", type=Path, help="quakeshap's SHAP set (data/shap)")
        parser.add_argument("out", type=Path, help="the JSON file to write")
        args = parser.parse_args(argv[1:])
        args.command = "compare"
        return args
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", type=Path, help="shap_tensors.zip or its unpacked folder")
    parser.add_argument("out", type=Path, help="the SHAP set folder to write")
    parser.add_argument("--metadata", type=Path, help="metadata.csv: labels, weeks, S-P times")
    parser.add_argument(
        "--predictions", type=Path, help="predictions.csv of the study's model: its classes"
    )
    args = parser.parse_args(argv)
    args.command = "import"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        if args.command == "compare":
            result = compare(shap_set.load(args.study), shap_set.load(args.ours))
            files.write_json(args.out, result)
            log.info("%s: %d traces in common, mean correlation %.3f", args.out,
                     result["trace_correlation"]["n_traces"],
                     result["trace_correlation"]["mean"])  # fmt: skip
            return
        predictions = None
        if args.predictions is not None:
            predictions = predictions_table.load(args.predictions)
        study = import_release(args.release, _read_csv(args.metadata), predictions)
        shap_set.write(args.out, study)
        log.info("%s → %s", args.release, args.out)

    return run_command(__name__, work)


if __name__ == "__main__":
    sys.exit(main())
