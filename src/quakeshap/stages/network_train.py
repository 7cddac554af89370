"""Stage ``network_train@<split>``: one CNN2D trained on every station at once.

``python -m quakeshap.stages.network_train <event|trace>``: joins the spectrogram sets of
``stations.codes`` (memory-mapped, :func:`quakeshap.stations.network_set`) and trains the
``train`` stage's recipe on them. ``event``: the stations' own split, by event (an event
sits on one side at every station). ``trace``: the sibling study's random per-image split
over the joined set, which puts recordings of one event on both sides; the metrics say how
many test images share their event with a train image (``leak``). Writes
``models/network/<split>/`` and ``reports/stations/network/<split>/``
(:mod:`quakeshap.artifacts.stations`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from quakeshap.artifacts import checkpoint, metrics, raw
from quakeshap.artifacts import stations as station_files
from quakeshap.config import PARAMS_FILE, load_params
from quakeshap.model import DeviceError
from quakeshap.stages import run_stage
from quakeshap.stations import (
    StationsError,
    check_layout,
    load_station_sets,
    network_set,
    resplit_by_trace,
    split_leak,
)
from quakeshap.training import TrainingError, train_model

log = logging.getLogger("quakeshap.stages.network_train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", choices=station_files.NETWORK_SPLITS)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--raw", type=Path, default=raw.PATH)
    parser.add_argument("--spectrograms", type=Path, default=station_files.SPECTROGRAMS_DIR)
    args = parser.parse_args(argv)
    paths = station_files.network_paths(args.split)
    args.models, args.metrics, args.history = paths.models, paths.train_metrics, paths.history
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def work() -> None:
        params = load_params(args.params)
        codes = list(params.stations.codes)
        check_layout(args.raw, codes)
        sets = load_station_sets(args.spectrograms, codes)
        with network_set(sets, scratch=None) as data:
            if args.split == "trace":
                data = dataclasses.replace(
                    data, metadata=resplit_by_trace(data.metadata, params.split)
                )
            leak = split_leak(data.metadata)
            log.info(
                "network model on %d stations, %d images, split by %s: %d of %d test images "
                "share their event with a train image",
                len(codes), len(data), args.split, leak["test_images_with_train_event"],
                leak["n_test"],
            )  # fmt: skip
            run = train_model(data, params.train, task=params.task, progress=False)
        checkpoint.save_folds(run.folds, args.models / checkpoint.FOLDS_DIR.name)
        checkpoint.save(run.model, args.models / checkpoint.PATH.name)
        metrics.write(args.metrics, {**run.metrics, "stations": codes, "leak": leak})
        metrics.write_history(args.history, run.history)

    return run_stage("network_train", work, errors=(DeviceError, TrainingError, StationsError))


if __name__ == "__main__":
    sys.exit(main())
