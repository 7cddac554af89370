"""The training set of the CNN2D: steps 1 to 4 of the recipe in :mod:`quakeshap.training`
(``docs/method.md`` §3), as pure functions over tables and arrays.

- :func:`train_test_split`: which rows are trained and tested on (the ``split`` column, or
  the study's co-located control);
- :func:`channel_statistics` and :func:`normalised_tensor`: the per-channel normalisation
  of the train split's pixel values;
- :func:`balance_classes`: the seeded undersampling of the larger class;
- :func:`training_labels`: the labels trained on, shuffled by the shuffled-labels control;
- :func:`kfold_indices`: the seeded cross-validation folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from quakeshap.record import CLASS_NAMES


class TrainingError(ValueError):
    """The data cannot be trained on as configured (an empty class, a one-class fold, ...)."""


@dataclass(frozen=True)
class TrainTestSplit:
    """Row indices (into the spectrogram set) of the traces trained on and tested on.

    ``n_colocated_moved`` counts train-split traces moved to the test set by
    ``exclude_colocated``.
    """

    train: np.ndarray  # (n_train,) int64, ascending
    test: np.ndarray  # (n_test,) int64, ascending
    n_colocated_moved: int = 0


def train_test_split(metadata: pd.DataFrame, exclude_colocated: bool) -> TrainTestSplit:
    """The effective train and test rows of ``metadata`` (columns ``split``, ``associato``).

    Parameters
    ----------
    metadata
        ``metadata.csv`` of the spectrogram set, one row per image.
    exclude_colocated
        False: the ``split`` column as it is. True: the study's co-located control, every
        trace with ``associato != 0`` goes to the test set.
    """
    split = metadata["split"].to_numpy()
    unknown = sorted(set(split) - {"train", "test"})
    if unknown:
        raise TrainingError(
            f"metadata column 'split' holds {unknown}; expected only 'train' and 'test'"
        )
    is_train = split == "train"
    moved = 0
    if exclude_colocated:
        colocated = metadata["associato"].to_numpy() != 0
        moved = int(np.count_nonzero(is_train & colocated))
        is_train = is_train & ~colocated
    return TrainTestSplit(
        train=np.flatnonzero(is_train).astype(np.int64),
        test=np.flatnonzero(~is_train).astype(np.int64),
        n_colocated_moved=moved,
    )


def training_labels(
    labels: np.ndarray, rows: np.ndarray, shuffle: bool, rng: np.random.Generator
) -> np.ndarray:
    """The class of every row as training sees it.

    Parameters
    ----------
    labels
        ``(n,)`` class indices of every row of the spectrogram set (the true classes).
    rows
        Row indices of the traces trained on (the balanced train set).
    shuffle
        ``train.shuffle_labels``: the shuffled-labels control. The labels of ``rows`` are
        permuted among themselves at random, so the class counts stay and the link between
        an image and its class is gone. Every other row keeps its true label: the model is
        tested on the true classes and should score at chance.
    rng
        Source of the permutation (used only when ``shuffle``).

    Returns
    -------
    ``(n,)``: ``labels`` itself when not ``shuffle``, else a shuffled copy.
    """
    if not shuffle:
        return labels
    rows = np.asarray(rows, dtype=np.int64)
    out = labels.copy()
    out[rows] = labels[rows][rng.permutation(len(rows))]
    return out


def channel_statistics(images: np.ndarray, chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation of pixel values in [0, 1].

    Parameters
    ----------
    images
        ``(n, channels, height, width)``: ``uint8`` holding ``floor(255 x)`` (then the
        statistics are those of ``k / 255``) or float in [0, 1].
    chunk_size
        Images per chunk: bounds the float64 working memory.

    Returns
    -------
    mean, std
        ``(channels,)`` float64 each. Accumulated in float64 in a fixed order, so the
        result does not depend on the chunk size beyond rounding in the last digits.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise TrainingError(f"need a non-empty (n, c, h, w) image array, got {images.shape}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    n_values = images.shape[0] * images.shape[2] * images.shape[3]
    total = np.zeros(images.shape[1])
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].astype(np.float64) / scale
        total += chunk.sum(axis=(0, 2, 3))
    mean = total / n_values
    squares = np.zeros(images.shape[1])
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].astype(np.float64) / scale
        squares += ((chunk - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / n_values)
    if np.any(std == 0):
        raise TrainingError(
            f"a channel of the train images is constant (std {std.tolist()}): cannot normalise"
        )
    return mean, std


def normalised_tensor(
    images: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device
) -> torch.Tensor:
    """``(images in [0, 1] - mean) / std`` as one float32 tensor on ``device``.

    Converted in chunks on the CPU (pinned memory for a fast copy to a GPU) so that a
    float64 copy of the whole set never exists.
    """
    pin = device.type == "cuda"
    out = torch.empty(images.shape, dtype=torch.float32, pin_memory=pin)
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(1.0)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    for start in range(0, len(images), 1024):
        chunk = images[start : start + 1024].astype(np.float32) / scale
        out[start : start + 1024] = torch.from_numpy((chunk - m) / s)
    return out.to(device, non_blocking=pin)


def balance_classes(
    labels: np.ndarray,
    how: str,
    rng: np.random.Generator,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> np.ndarray:
    """Indices (into ``labels``) of a class-balanced subset, ascending.

    Parameters
    ----------
    labels
        ``(n,)`` class indices (positions in ``class_names``).
    how
        ``"undersample"``: every class is cut at random to the size of the smallest one
        (the study). ``"none"``: all indices.
    rng
        Source of the random choice.
    class_names
        The classes (the study's ``pre``/``post`` by default; the time-to-failure classes).
    """
    n_classes = len(class_names)
    counts = np.bincount(labels, minlength=n_classes)
    empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise TrainingError(
            f"the train split has no '{', '.join(empty)}' traces (class counts "
            f"{counts.tolist()}); check the split and train.exclude_colocated"
        )
    if how == "none":
        return np.arange(len(labels), dtype=np.int64)
    if how != "undersample":
        raise TrainingError(f"unknown train.balance {how!r}: expected 'undersample' or 'none'")
    n_keep = int(counts.min())
    keep = [
        rng.choice(np.flatnonzero(labels == c), size=n_keep, replace=False)
        for c in range(n_classes)
    ]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def kfold_indices(
    labels: np.ndarray | None, n_folds: int, rng: np.random.Generator, n: int | None = None
) -> list[np.ndarray]:
    """Validation indices of each fold: a seeded shuffle cut into ``n_folds`` parts.

    The parts are disjoint and together cover ``0 .. n - 1`` (sizes differ by at most
    one); each is sorted. A fold whose validation part or training remainder holds a single
    class is a :class:`TrainingError`: its accuracy would say nothing.

    Parameters
    ----------
    labels
        ``(n,)`` class indices of the (balanced) training set; None for a regression
        (no class check), with ``n`` the number of images.
    """
    n = len(labels) if labels is not None else int(n)
    if n_folds < 2:
        raise TrainingError(f"train.n_folds = {n_folds}: cross-validation needs >= 2 folds")
    if n < 2 * n_folds:
        raise TrainingError(
            f"{n} training images cannot make {n_folds} folds of at least two images each; "
            "lower train.n_folds or use more data"
        )
    order = rng.permutation(n)
    folds = [np.sort(part).astype(np.int64) for part in np.array_split(order, n_folds)]
    if labels is None:
        return folds
    n_classes = len(np.unique(labels))
    for k, val in enumerate(folds, start=1):
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        for what, part in (("validation", labels[val]), ("training", labels[mask])):
            if len(np.unique(part)) < n_classes:
                raise TrainingError(
                    f"fold {k}/{n_folds}: its {what} part holds a single class "
                    f"({len(part)} images, all of class {int(part[0])}); use fewer "
                    "folds (train.n_folds) or more data"
                )
    return folds
