"""Benchmark 2: a training epoch, quakeshap against the study's data path.

The study's setting: 3534 balanced traces, 7 folds, so an epoch trains on 3030 samples
(95 batches of 32) and validates on 504. All three contenders train a fresh CNN2D with
Adam(1e-3) on the same images (demo spectrograms, the study's uint8 PNG values) for one
epoch, then validate:

reference
    :mod:`benchmarks.reference.training`: PNG files decoded and a DataFrame row looked up
    per sample in ``Dataset.__getitem__``, a shuffling ``DataLoader``.
quakeshap
    :func:`quakeshap.training.train_fold` with ``max_epochs=1``: the stage's own loop
    (normalised tensors in memory, batches gathered by index).
pure compute
    The same forward, backward and step on batches already gathered in memory: the floor,
    in the study's memory layout (NCHW: what the reference adds to it is its data path)
    and in quakeshap's (channels_last: what quakeshap adds to it is its data path).

``--device cuda`` times the same on a GPU (the study: 11-16 s per epoch on its GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images
from benchmarks.reference.training import (
    StudyPNGDataset,
    evaluate,
    study_loader,
    train_epoch,
    write_study_pngs,
)
from quakeshap.config import TrainConfig
from quakeshap.model import CNN2D, resolve_device
from quakeshap.record import CLASS_NAMES, to_unit
from quakeshap.training import channel_statistics, train_fold

log = logging.getLogger("benchmarks.training")

NAME = "training"
TARGET = (
    "epoch >= 1.3x faster than the study's PNG + DataFrame data path on CPU, and within "
    "10% of the model's pure compute for the same batches"
)


@dataclass(frozen=True)
class Plan:
    n_train: int  # samples trained on per epoch
    n_val: int  # samples validated on per epoch
    repeats: int


FULL = Plan(3030, 504, 5)
SMOKE = Plan(64, 32, 1)


def _normalised(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    m = mean.astype(np.float32)[None, :, None, None]
    s = std.astype(np.float32)[None, :, None, None]
    return torch.from_numpy((to_unit(images) - m) / s)


#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
Each sample: a fresh CNN2D + Adam, one training pass over n_train samples in batches of 32
and one validation pass over n_val. Images: demo spectrograms (uint8 PNG values); the
reference decodes them from PNG files on a warm page cache. torch threads: the default (all
cores). quakeshap trains in the channels_last layout; layout_speedup = pure compute NCHW /
channels_last. reference_overhead_s is against the NCHW floor, quakeshap_overhead_s against
the channels_last one.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    repeats = args.repeats or plan.repeats
    device = resolve_device(args.device)
    n = plan.n_train + plan.n_val
    images, labels = demo_images(n)
    mean, std = channel_statistics(images)
    train_index, val_index = np.arange(plan.n_train), np.arange(plan.n_train, n)
    cfg = dataclasses.replace(TrainConfig(), max_epochs=1, patience=1, device=device.type)
    batch = cfg.batch_size
    x = _normalised(images, mean, std).to(device)
    y = torch.as_tensor(labels).to(device)

    def new_model(layout: torch.memory_format) -> tuple[CNN2D, torch.optim.Optimizer]:
        model = CNN2D().to(device, memory_format=layout)
        return model, torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def quakeshap_epoch() -> None:
        train_fold(x, y, train_index, val_index, cfg, fold=1, n_folds=7)

    generator = torch.Generator().manual_seed(0)

    def pure_epoch(layout: torch.memory_format) -> float:
        """Seconds of one epoch on batches gathered beforehand (the gathering is not timed)."""
        order = torch.randperm(plan.n_train, generator=generator).to(device)
        batches = [
            (x[order[i : i + batch]].contiguous(memory_format=layout), y[order[i : i + batch]])
            for i in range(0, len(order), batch)
        ]
        val = [
            (x[v].contiguous(memory_format=layout), y[v])
            for v in torch.arange(plan.n_train, n, device=device).split(batch)
        ]
        model, optimizer = new_model(layout)
        return common.time_call(
            lambda: (train_epoch(model, batches, optimizer), evaluate(model, val))
        )[0]

    with common.scratch_dir(args.workdir, NAME) as work:
        png_dir = work / "png"
        names = [f"NRCA.IV.{i}_EV" for i in range(n)]
        filenames = write_study_pngs(images, names, png_dir)
        metadata = pd.DataFrame(
            {"trace_name": names, "filename": filenames, "label": np.asarray(CLASS_NAMES)[labels]}
        )
        train_set = StudyPNGDataset(metadata.iloc[train_index], png_dir, mean, std)
        val_set = StudyPNGDataset(metadata.iloc[val_index], png_dir, mean, std)

        def reference_epoch() -> None:
            model, optimizer = new_model(torch.contiguous_format)
            train_epoch(model, study_loader(train_set, batch, generator=generator), optimizer)
            evaluate(model, study_loader(val_set, batch, order=range(len(val_set))))

        # one untimed warm-up of each (allocator, oneDNN primitives, page cache)
        quakeshap_epoch()
        reference_epoch()
        pure_epoch(torch.contiguous_format)
        pure_epoch(torch.channels_last)
        reference_samples, quakeshap_samples, pure_samples, pure_cl_samples = [], [], [], []
        for _ in range(repeats):  # interleaved: a slow spell of the machine hits all four
            reference_samples.append(common.time_call(reference_epoch)[0])
            quakeshap_samples.append(common.time_call(quakeshap_epoch)[0])
            pure_samples.append(pure_epoch(torch.contiguous_format))
            pure_cl_samples.append(pure_epoch(torch.channels_last))

    unit = f"s/epoch ({plan.n_train} train + {plan.n_val} val samples)"
    reference = common.summarize(reference_samples, unit, "lower")
    quakeshap = common.summarize(quakeshap_samples, unit, "lower")
    pure = common.summarize(pure_samples, unit, "lower", layout="NCHW (the study's)")
    pure_cl = common.summarize(pure_cl_samples, unit, "lower", layout="channels_last (quakeshap's)")
    checks = [
        common.Check(
            "speedup_vs_reference",
            common.speedup(reference, quakeshap),
            ">=",
            1.3,
            "study data path epoch time / quakeshap epoch time",
        ),
        common.Check(
            "quakeshap_over_pure_compute",
            quakeshap["median"] / pure_cl["median"],
            "<=",
            1.10,
            "quakeshap epoch time / pure compute time of the same model and layout "
            "(channels_last) for the same number of batches",
        ),
    ]
    details = {
        "device": str(device),
        "pure_compute": pure,
        "pure_compute_channels_last": pure_cl,
        "reference_overhead_s": reference["median"] - pure["median"],
        "quakeshap_overhead_s": quakeshap["median"] - pure_cl["median"],
        "layout_speedup": pure["median"] / pure_cl["median"],
        "batch_size": batch,
        "n_batches": -(-plan.n_train // batch),
        "notes": NOTES,
    }
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
