"""Stage ``train``: cross-validated CNN2D on the spectrograms (``docs/method.md`` §3).

Reads ``data/spectrograms/`` and ``params.yaml:train``; writes ``models/model.pt`` (the
chosen fold, with the traces it was trained and tested on), ``models/folds/fold_<k>.pt``,
``reports/metrics/train.json`` and ``reports/train/history.csv``.

Under ``torchrun --nproc-per-node N -m quakeshap.stages.train`` every fold trains
data-parallel across the N processes (:mod:`quakeshap.distributed`, ``docs/cluster.md``);
rank 0 alone logs and writes the same files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from quakeshap import distributed
from quakeshap.artifacts import checkpoint, metrics
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.model import DeviceError
from quakeshap.stages import run_stage, stage_parser
from quakeshap.training import TrainingError, train_model

log = logging.getLogger("quakeshap.stages.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__,
        spectrograms=spectrogram_set.PATH,
        models=checkpoint.PATH.parent,
        metrics=metrics.PATHS["train"],
        history=metrics.HISTORY_PATH,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    # cuBLAS reads this at its first use: deterministic matrix products on CUDA
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def work() -> None:
        world = distributed.world_from_env()  # None: one process, as ever
        if world is not None and not world.is_main:  # rank 0 speaks for all; errors still show
            logging.getLogger("quakeshap").setLevel(logging.WARNING)
        params = load_params(args.params)
        data = spectrogram_set.load(args.spectrograms)
        with distributed.process_group(world, params.train.device) as device:
            run = train_model(data, params.train, task=params.task, device=device,
                              progress=progress and (world is None or world.is_main),
                              world=world)  # fmt: skip
        if world is not None and not world.is_main:
            return
        model = args.models / checkpoint.PATH.name
        checkpoint.save_folds(run.folds, args.models / checkpoint.FOLDS_DIR.name)
        checkpoint.save(run.model, model)
        metrics.write(args.metrics, run.metrics)
        metrics.write_history(args.history, run.history)
        score = "val_mae" if data.is_regression else "val_accuracy"
        log.info(
            "model = fold %d (%s %.4f) → %s",
            run.metrics["chosen_fold"], score.replace("_", " "), run.metrics[f"best_{score}"],
            model,
        )  # fmt: skip

    return run_stage("train", work, errors=(DeviceError, TrainingError))


if __name__ == "__main__":
    sys.exit(main())
