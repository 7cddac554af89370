"""The spectrogram data set on disk: ``data/spectrograms/``.

Three files, written together by the ``spectrograms`` stage and read by every later stage:

``images.npy``
    ``(n_traces, 3, 33, 96)``; ``uint8`` holding ``floor(255 x)`` (the study's PNG values,
    the default) or ``float32`` holding ``x`` in [0, 1]. Channel order E, N, Z (R, G, B).
``metadata.csv``
    Row ``i`` describes image ``i``: the study's 17 attribute columns, then ``label``
    (``pre``/``post``), ``split`` (``train``/``test``), ``associato`` (co-located group id,
    0 = none), ``week`` (ISO week of ``trace_start_time``), ``filename`` (as the study named
    its PNG files) and SeisBench-style columns of our own (``station_code``,
    ``trace_p_arrival_sample``, ``trace_s_arrival_sample``, ``trace_p_arrival_s``,
    ``trace_s_arrival_s``).
``axes.json``
    ``frequency_hz`` (33 values), ``time_s`` (96 values, centre of each window from the
    start of the trace), ``quantization``, and the spectrogram parameters used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: index 0 = pre (foreshock), 1 = post (aftershock); the positive class is "post"
CLASS_NAMES: tuple[str, str] = ("pre", "post")

#: the study's attribute columns, in the study's order
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "trace_start_time",
    "network_code",
    "receiver_name",
    "receiver_type",
    "receiver_elevation_m",
    "receiver_latitude",
    "receiver_longitude",
    "source_id",
    "source_depth_km",
    "source_latitude",
    "source_longitude",
    "source_magnitude",
    "source_origin_time",
    "p_travel_sec",
    "s_travel_sec",
    "p_s_diff_sec",
)

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

IMAGES_FILE = "images.npy"
METADATA_FILE = "metadata.csv"
AXES_FILE = "axes.json"


class DatasetError(ValueError):
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
        images = self.images if index is None else self.images[index]
        if images.dtype == np.uint8:
            return images.astype(np.float32) / np.float32(255.0)
        return images.astype(np.float32, copy=False)

    def labels(self) -> np.ndarray:
        """Class indices (0 = pre, 1 = post), ``(n,)`` int64."""
        return (
            self.metadata["label"]
            .map({n: i for i, n in enumerate(CLASS_NAMES)})
            .to_numpy(dtype=np.int64)
        )

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


def load_spectrogram_set(folder: str | Path, mmap: bool = False) -> SpectrogramSet:
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
