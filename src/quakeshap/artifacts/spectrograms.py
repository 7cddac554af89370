"""``data/spectrograms/``: the spectrogram set, written by the ``spectrograms`` stage and
read by every later stage.

``images.npy``
    ``(n_traces, 3, 33, 96)``; ``uint8`` holding ``floor(255 x)`` (the study's PNG values,
    the default) or ``float32`` holding ``x`` in [0, 1]. Channel order E, N, Z (R, G, B).
``metadata.csv``
    Row ``i`` describes image ``i``: the study's 17 attribute columns, then ``label``
    (``pre``/``post``), ``split`` (``train``/``test``), ``filename`` (as the study named
    its PNG files), ``associato`` (co-located group id, 0 = none), ``week`` (ISO week of
    ``trace_start_time``) and SeisBench-style columns of our own (``station_code``,
    ``trace_p_arrival_sample``, ``trace_s_arrival_sample``, ``trace_p_arrival_s``,
    ``trace_s_arrival_s``); ``target`` (the time-to-failure class or the magnitude) when
    ``task.kind`` is not ``prepost``.
``axes.json``
    ``frequency_hz`` (33 values), ``time_s`` (96 values, centre of each window from the
    start of the trace), ``quantization``, and the spectrogram parameters used
    (:func:`axes_record`), with the time window kept when it is not the whole image, and
    the task (``kind``, ``classes``) when it is not the study's pre/post.
``features.csv``
    Only with ``task.kind: magnitude``: ``trace_name`` and the waveform features of each
    image's trace (:mod:`quakeshap.magnitude_baseline`), the gradient-boosting baseline's
    inputs; row ``i`` describes image ``i``.
``png/``
    Only with ``spectrogram.export_png``: one study-style PNG per image.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quakeshap import files
from quakeshap.artifacts import ArtifactError
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.config import SpectrogramConfig, to_dict
from quakeshap.record import CHANNELS, CLASS_NAMES, P_ARRIVAL_S, to_unit

#: where the ``spectrograms`` stage writes the set
PATH = Path("data/spectrograms")
IMAGES_FILE = "images.npy"
METADATA_FILE = "metadata.csv"
AXES_FILE = "axes.json"
FEATURES_FILE = "features.csv"
PNG_DIR = "png"

#: columns every later stage may rely on
REQUIRED_COLUMNS: tuple[str, ...] = (
    *ATTRIBUTE_COLUMNS,
    "label",
    "split",
    "associato",
    "week",
    "trace_p_arrival_s",
    "trace_s_arrival_s",
)


class DatasetError(ArtifactError):
    """The spectrogram folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class SpectrogramSet:
    """Images, their metadata and their axes, as loaded from ``data/spectrograms/``."""

    images: np.ndarray  # (n, 3, 33, 96) uint8 or float32
    metadata: pd.DataFrame  # one row per image
    frequency_hz: np.ndarray  # (33,)
    time_s: np.ndarray  # (96,)
    axes: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def as_float(self, index: np.ndarray | slice | None = None) -> np.ndarray:
        """Pixel values in [0, 1] as float32, ``(n, 3, 33, 96)``: what the model sees."""
        return to_unit(self.images if index is None else self.images[index])

    @property
    def task_kind(self) -> str:
        """``prepost`` (the study), ``ttf`` or ``magnitude`` (:mod:`quakeshap.task`)."""
        return str(self.axes.get("task", {}).get("kind", "prepost"))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's outputs by index (``("magnitude",)`` for the regression)."""
        return tuple(self.axes.get("task", {}).get("classes", CLASS_NAMES))

    @property
    def is_regression(self) -> bool:
        return self.task_kind == "magnitude"

    def labels(self) -> np.ndarray:
        """Class indices into :attr:`class_names` (0 = pre, 1 = post for the study),
        ``(n,)`` int64; :class:`DatasetError` for a regression set or an unknown class."""
        if self.is_regression:
            raise DatasetError("a magnitude set has targets, not classes: use targets()")
        column = "label" if self.task_kind == "prepost" else "target"
        index = self.metadata[column].map({n: i for i, n in enumerate(self.class_names)})
        if index.isna().any():
            unknown = sorted(set(self.metadata.loc[index.isna(), column].astype(str)))
            raise DatasetError(
                f"metadata column {column!r} holds {unknown[:5]}; expected only "
                f"{list(self.class_names)}: re-run `dvc repro spectrograms`"
            )
        return index.to_numpy(dtype=np.int64)

    def targets(self) -> np.ndarray:
        """What the model is trained to output: class indices, or magnitudes ``(n,)``
        float32 for ``task.kind: magnitude``."""
        if self.is_regression:
            return self.metadata["target"].to_numpy(dtype=np.float32)
        return self.labels()

    def rows(self, trace_names: list[str] | pd.Series) -> np.ndarray:
        """Image indices of the given trace names; unknown names are a :class:`DatasetError`."""
        position = pd.Series(np.arange(len(self.metadata)), index=self.metadata["trace_name"])
        names = pd.Index(list(trace_names))
        unknown = names[~names.isin(position.index)]
        if len(unknown):
            raise DatasetError(
                f"{len(unknown)} trace(s) not in the spectrogram set, e.g. {list(unknown[:5])}; "
                "was the selection made from another run? Re-run `dvc repro`."
            )
        return position.loc[names].to_numpy(dtype=np.int64)


def axes_record(
    cfg: SpectrogramConfig,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``axes.json``: the image axes and every spectrogram parameter that made them.

    With a time-window ablation (``spectrogram.window`` other than ``all``) the record also
    holds ``time_window`` and ``time_window_fill``; without one it holds neither, as
    before the ablations existed. Likewise ``task`` (:func:`quakeshap.task.task_record`)
    only for a task other than the study's pre/post.
    """
    record = {
        "frequency_hz": frequency_hz,
        "time_s": time_s,
        "quantization": cfg.quantization,
        "channels": list(CHANNELS),
        "stations": list(cfg.stations),
        "sampling_rate_hz": cfg.sampling_rate_hz,
        "n_samples": cfg.n_samples,
        "nperseg": cfg.nperseg,
        "noverlap": cfg.noverlap,
        "window": "tukey(0.25)",
        "log_floor": cfg.log_floor,
        "p_arrival_s": P_ARRIVAL_S,
        "preprocess": to_dict(cfg.preprocess),
    }
    if cfg.window != "all":
        record.update(time_window=cfg.window, time_window_fill=cfg.window_fill)
    if task is not None:
        record["task"] = task
    return record


class SetWriter:
    """The open temporary folder of :func:`writing`: images go in by chunks, then
    :meth:`finish` writes the metadata and the axes."""

    def __init__(self, folder: Path, images: files.NpyRowWriter) -> None:
        self.folder, self.images = folder, images
        self.finished = False

    @property
    def png_dir(self) -> Path:
        """Where the optional study-style PNG files go (created on first use)."""
        path = self.folder / PNG_DIR
        path.mkdir(exist_ok=True)
        return path

    def append(self, images: np.ndarray) -> None:
        self.images.append(images)

    def write_features(self, features: pd.DataFrame) -> None:
        """``features.csv`` (``task.kind: magnitude`` only), one row per image."""
        features.to_csv(self.folder / FEATURES_FILE, index=False, lineterminator="\n")

    def finish(self, metadata: pd.DataFrame, axes: dict[str, Any]) -> None:
        # straight into the temporary folder, in pieces: files.write_csv's bytes, without
        # the whole text in memory
        metadata.to_csv(self.folder / METADATA_FILE, index=False, lineterminator="\n")
        files.write_json(self.folder / AXES_FILE, axes)
        self.finished = True


@contextlib.contextmanager
def writing(
    folder: str | Path, image_shape: tuple[int, int, int], dtype: type[np.generic], max_rows: int
) -> Iterator[SetWriter]:
    """Write a spectrogram set atomically, images streamed to disk chunk by chunk.

    The folder appears complete when the block ends after :meth:`SetWriter.finish`, and
    not at all (an earlier one stays) when the block fails.
    """
    with files.atomic_dir(folder) as tmp:
        with files.NpyRowWriter(tmp / IMAGES_FILE, image_shape, dtype, max_rows) as images:
            writer = SetWriter(tmp, images)
            yield writer
        if not writer.finished:
            raise RuntimeError(f"{folder}: the spectrogram set was left without metadata")


def write(
    folder: str | Path, images: np.ndarray, metadata: pd.DataFrame, axes: dict[str, Any]
) -> None:
    """Write a whole spectrogram set held in memory (fixtures, benchmarks)."""
    with writing(folder, images.shape[1:], images.dtype.type, len(images)) as out:
        out.append(images)
        out.finish(metadata, axes)


def load(folder: str | Path = PATH, mmap: bool = False) -> SpectrogramSet:
    """Read ``data/spectrograms/`` and check that its three files agree.

    Parameters
    ----------
    folder
        The stage's output folder.
    mmap
        Memory-map ``images.npy`` instead of reading it (for large sets).
    """
    folder = Path(folder)
    paths = {name: folder / name for name in (IMAGES_FILE, METADATA_FILE, AXES_FILE)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetError(
            f"spectrogram set incomplete, missing {missing}; run `dvc repro spectrograms`"
        )
    try:
        images = np.load(paths[IMAGES_FILE], mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"{paths[IMAGES_FILE]}: not a readable .npy array ({exc})") from exc
    metadata = pd.read_csv(paths[METADATA_FILE], dtype={"trace_name": str, "source_id": str})
    axes = json.loads(paths[AXES_FILE].read_text())
    absent = [c for c in REQUIRED_COLUMNS if c not in metadata.columns]
    if absent:
        raise DatasetError(f"{paths[METADATA_FILE]} lacks column(s) {absent}")
    if images.ndim != 4 or images.shape[0] != len(metadata):
        raise DatasetError(
            f"{paths[IMAGES_FILE]} has shape {images.shape} but {paths[METADATA_FILE]} has "
            f"{len(metadata)} rows; the folder mixes two runs: re-run `dvc repro spectrograms`"
        )
    if images.dtype not in (np.uint8, np.float32):
        raise DatasetError(f"{paths[IMAGES_FILE]}: dtype {images.dtype}, expected uint8 or float32")
    frequency_hz = np.asarray(axes["frequency_hz"], dtype=np.float64)
    time_s = np.asarray(axes["time_s"], dtype=np.float64)
    if images.shape[2:] != (len(frequency_hz), len(time_s)):
        raise DatasetError(
            f"{paths[AXES_FILE]} describes {len(frequency_hz)}×{len(time_s)} images but "
            f"{paths[IMAGES_FILE]} holds {images.shape[2:]}"
        )
    return SpectrogramSet(images, metadata, frequency_hz, time_s, axes)


def load_features(folder: str | Path = PATH) -> pd.DataFrame:
    """``features.csv`` of a magnitude set (:class:`DatasetError` when it is missing)."""
    path = Path(folder) / FEATURES_FILE
    if not path.is_file():
        raise DatasetError(
            f"{path} not found: the waveform features are written under task.kind magnitude; "
            "run `dvc repro spectrograms`"
        )
    return pd.read_csv(path, dtype={"trace_name": str})


def load_trace_names(folder: str | Path = PATH) -> pd.Series:
    """The ``trace_name`` column of ``metadata.csv`` alone (cheap: no images are read)."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise DatasetError(f"{path} not found; run `dvc repro spectrograms` first")
    return pd.read_csv(path, usecols=["trace_name"], dtype=str)["trace_name"]
