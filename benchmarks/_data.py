"""Benchmark inputs: raw data sets of any size in the record's layout, and the read floor.

A small demo data set (:func:`quakeshap.demo.write_demo_dataset`, physically realistic and
with the record's defects) is the pool; :func:`replicate_raw` cycles through it to write a
raw layout of ``n`` traces with unique names, quickly (the demo generator would need
minutes for 50,000 traces and the spectrogram's cost does not depend on the content).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts import raw
from quakeshap.artifacts.selection import CLASS_GROUP, SELECTION_COLUMNS
from quakeshap.artifacts.spectrograms import SpectrogramSet, axes_record
from quakeshap.config import DemoConfig, SpectrogramConfig
from quakeshap.demo import write_demo_dataset
from quakeshap.record import CLASS_NAMES, attributes_path, hdf5_path, similar_traces_path
from quakeshap.splits import read_similar_traces

log = logging.getLogger(__name__)

STATION = "NRCA"


def write_pool(
    root: Path, n_pre: int, n_post: int, seed: int = 20161030, defects: bool = True
) -> Path:
    """A demo data set of ``n_pre + n_post`` listed traces under ``root``; returns ``root``.

    ``defects``: plant the demo's default defects (missing channels, NaN, absent from the
    HDF5 file: 5 traces), or none (for pools too small to stay under the stage's
    ``max_rejected_fraction``).
    """
    n_defects = {"n_missing_channels": 3, "n_nan_traces": 1, "n_missing_in_hdf5": 1}
    if not defects:
        n_defects = dict.fromkeys(n_defects, 0)
    # the generator needs 11 anchor events + 4 per co-located group + the defects per class
    spare = min(n_pre, n_post) - 11 - sum(n_defects.values())
    cfg = dataclasses.replace(
        DemoConfig(),
        seed=seed,
        n_pre=n_pre,
        n_post=n_post,
        n_colocated_groups=max(0, min(12, spare // 8)),
        **n_defects,
    )
    write_demo_dataset(cfg, root)
    return root


def replicate_raw(pool_root: Path, out_root: Path, n_traces: int) -> int:
    """Write a raw layout of ``n_traces`` listed traces by cycling through the pool's.

    The class proportions, the attribute values and the defects of the pool are kept
    (a pool trace absent from its HDF5 file stays absent in every copy); every copy gets a
    new ``trace_name`` and ``source_id``. The similar-traces table lists the pool's groups
    for the first copy only. Everything is written through the raw layout's writers
    (:mod:`quakeshap.artifacts.raw`). Returns the number of traces listed.
    """
    tables = {
        label: raw.read_attributes(attributes_path(pool_root, STATION, label))
        for label in CLASS_NAMES
    }
    n_pool = sum(len(t) for t in tables.values())
    n_first = round(n_traces * len(tables[CLASS_NAMES[0]]) / n_pool)
    counts = {CLASS_NAMES[0]: n_first, CLASS_NAMES[1]: n_traces - n_first}
    renamed: dict[str, str] = {}
    for index, label in enumerate(CLASS_NAMES):
        table, n_out = tables[label], counts[label]
        rows = table.iloc[np.arange(n_out) % len(table)].reset_index(drop=True)
        ids = (index + 3) * 100_000_000 + np.arange(n_out)
        names = [f"{STATION}.IV.{i}_EV" for i in ids]
        renamed.update(zip(table["trace_name"], names[: len(table)], strict=False))
        original = rows["trace_name"].to_numpy()
        rows["trace_name"] = names
        rows["source_id"] = ids.astype(str)
        raw.write_attributes(attributes_path(out_root, STATION, label), rows)
        with h5py.File(hdf5_path(pool_root, STATION, label), "r") as src:
            cache = {name: src[name][()] for name in src}
        kept = [i for i, source in enumerate(original) if source in cache]
        raw.write_waveforms(
            hdf5_path(out_root, STATION, label),
            [names[i] for i in kept],
            [cache[original[i]] for i in kept],
        )
    similar = read_similar_traces(pool_root, [STATION])
    if similar is not None:
        similar["trace_name"] = similar["trace_name"].map(renamed).astype(object)
        raw.write_similar_traces(similar_traces_path(out_root, STATION), similar.dropna())
    log.info("wrote %d traces under %s", n_traces, out_root)
    return n_traces


READ_STRATEGIES = ("h5py", "h5py_low_level", "offsets_mmap")


def read_floor(
    raw_root: Path, how: str = "h5py", collect: dict[str, np.ndarray] | None = None
) -> int:
    """Read every listed trace from the HDF5 files, and nothing else.

    The physical floor of the ``spectrograms`` stage: each trace's whole dataset (the stage
    checks every sample for NaN) copied into memory, nothing validated, computed or
    written. Three ways (``how``), from the most common to the fastest:

    ``h5py``
        ``file[name][()]``, h5py's high-level API (what most code does).
    ``h5py_low_level``
        Open the dataset by name, ``DatasetID.read`` into a new array: no selection
        machinery.
    ``offsets_mmap``
        Open the dataset by name only to ask for its byte offset, then copy the bytes out
        of one memory map of the file (contiguous, uncompressed little-endian float64
        datasets, as the record's; others fall back to ``h5py_low_level``).

    Returns the number of traces read; ``collect``, when given, receives every array by
    trace name (to check that the three ways read the same values).
    """
    if how not in READ_STRATEGIES:
        raise ValueError(f"unknown read strategy {how!r}; expected one of {READ_STRATEGIES}")
    count = 0
    for label in CLASS_NAMES:
        listed = attributes_path(raw_root, STATION, label)
        names = pd.read_csv(listed, usecols=["trace_name"], dtype=str)["trace_name"]
        path = hdf5_path(raw_root, STATION, label)
        with h5py.File(path, "r") as h5:
            mapped = np.memmap(path, dtype=np.uint8, mode="r") if how == "offsets_mmap" else None
            for name in names:
                dataset = h5.get(name)
                if dataset is None:
                    continue
                count += 1
                if how == "h5py":
                    out = dataset[()]
                else:
                    offset = dataset.id.get_offset() if mapped is not None else None
                    contiguous = dataset.dtype == np.dtype("<f8") and not dataset.chunks
                    if offset is not None and contiguous:
                        size = int(np.prod(dataset.shape))
                        out = np.frombuffer(mapped, "<f8", size, offset).reshape(dataset.shape)
                        out = out.copy()
                    else:
                        out = np.empty(dataset.shape, dtype=dataset.dtype)
                        dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
                if collect is not None:
                    collect[name] = out
            del mapped
    return count


def demo_images(
    n_images: int, n_pool: int = 200, seed: int = 20161030
) -> tuple[np.ndarray, np.ndarray]:
    """Realistic spectrogram images and labels: a demo catalogue's, repeated to ``n_images``.

    Returns ``(n_images, 3, 33, 96)`` uint8 (the study's PNG values) and ``(n_images,)``
    int64 class indices (0 = pre, 1 = post).
    """
    from quakeshap.demo import demo_catalog, synthesize_waveforms
    from quakeshap.spectrogram import compute_spectrograms, quantize

    n_pre = n_pool // 2
    cfg = dataclasses.replace(
        DemoConfig(), seed=seed, n_pre=n_pre, n_post=n_pool - n_pre, n_colocated_groups=0
    )
    catalog = demo_catalog(cfg)
    spectra = compute_spectrograms(synthesize_waveforms(catalog, cfg), SpectrogramConfig())
    images = quantize(spectra.images, "uint8")
    labels = (catalog["label"].to_numpy() == CLASS_NAMES[1]).astype(np.int64)
    take = np.arange(n_images) % len(images)
    return images[take], labels[take]


def in_memory_set(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> SpectrogramSet:
    """A :class:`SpectrogramSet` around ``images`` with the metadata later stages read.

    Trace names ``T00000``…; ``split``: the first 80 % train, the rest test; weeks and
    P–S times drawn from ``seed``. Axes: the study's (:func:`axes_record` of the default
    spectrogram parameters).
    """
    from quakeshap.spectrogram import spectrogram_axes

    rng = np.random.default_rng(seed)
    n = len(images)
    cfg = SpectrogramConfig()
    frequency_hz, time_s = spectrogram_axes(cfg)
    metadata = pd.DataFrame(
        {
            "trace_name": [f"T{i:05d}" for i in range(n)],
            "label": np.asarray(CLASS_NAMES)[labels],
            "split": np.where(np.arange(n) < int(0.8 * n), "train", "test"),
            "week": np.where(labels == 0, 40, 46),
            "p_s_diff_sec": rng.uniform(1.0, 2.5, n).round(2),
        }
    )
    axes = axes_record(cfg, frequency_hz, time_s)
    return SpectrogramSet(images, metadata, frequency_hz, time_s, axes)


def trained_checkpoint(sset: SpectrogramSet, epochs: int = 2, seed: int = 0) -> dict:
    """A CNN2D briefly trained (quakeshap's loop) on the train split of ``sset``.

    Explanations of a random-weight model would time the same but correlate meaninglessly;
    a couple of epochs on demo spectrograms give a model with a real decision to explain.
    """
    import torch

    from quakeshap.artifacts import checkpoint
    from quakeshap.config import TrainConfig
    from quakeshap.model import CNN2D
    from quakeshap.training import channel_statistics, train_fold

    train = np.flatnonzero(sset.metadata["split"].to_numpy() == "train")
    n_val = max(1, len(train) // 5)
    mean, std = channel_statistics(sset.images[train])
    m = mean.astype(np.float32)[None, :, None, None]
    s = std.astype(np.float32)[None, :, None, None]
    x = torch.from_numpy((sset.as_float(train) - m) / s)
    y = torch.as_tensor(sset.labels()[train])
    cfg = dataclasses.replace(
        TrainConfig(), seed=seed, max_epochs=epochs, patience=epochs, device="cpu"
    )
    fold = train_fold(x, y, np.arange(n_val, len(train)), np.arange(n_val), cfg, fold=1, n_folds=5)
    net = CNN2D()
    net.load_state_dict(fold.state_dict)
    log.info("benchmark model: val accuracy %.3f after %d epoch(s)", fold.best_val_score, epochs)
    return checkpoint.make(
        net,
        list(CLASS_NAMES),
        mean.tolist(),
        std.tolist(),
        extra={"train_traces": sset.metadata["trace_name"].to_numpy()[train].tolist()},
    )


def selection_frame(sset: SpectrogramSet, rows: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """A selection table (:mod:`quakeshap.artifacts.selection`): the given rows in the
    ``class`` group, one class each (``predicted``: class indices)."""
    meta = sset.metadata.iloc[rows].reset_index(drop=True)
    table = meta.assign(
        group=CLASS_GROUP,
        reason="benchmark",
        predicted=np.asarray(CLASS_NAMES)[predicted],
        explain_both=False,
    )
    return table[list(SELECTION_COLUMNS)]
