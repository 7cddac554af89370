"""Stage ``evaluate``: score the trained model on its test set.

Reads ``models/model.pt`` and ``data/spectrograms/``; tests on the traces the checkpoint
lists as its test set (:func:`quakeshap.evaluation.test_rows`). Writes
``reports/evaluate/`` (predictions, confusion, weekly accuracy:
:mod:`quakeshap.artifacts.predictions`) and ``reports/metrics/evaluate.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from quakeshap import evaluation
from quakeshap.artifacts import checkpoint, metrics, predictions
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.model import DeviceError, model_from_checkpoint, resolve_device
from quakeshap.stages import run_stage, stage_parser

log = logging.getLogger("quakeshap.stages.evaluate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__,
        spectrograms=spectrogram_set.PATH,
        model=checkpoint.PATH,
        out=predictions.FOLDER,
        metrics=metrics.PATHS["evaluate"],
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        device = resolve_device(load_params(args.params).train.device)
        data = spectrogram_set.load(args.spectrograms)
        ckpt = checkpoint.load(args.model)
        model = model_from_checkpoint(ckpt, input_shape=data.image_shape)
        rows = evaluation.test_rows(data, ckpt)
        logits = evaluation.predict_logits(model, data.images[rows], device)
        table = evaluation.predictions_table(data.metadata.iloc[rows], logits)
        scores = evaluation.classification_metrics(table)
        predictions.write(
            args.out,
            table,
            evaluation.confusion_table(table),
            evaluation.weekly_accuracy(table),
        )
        metrics.write(args.metrics, scores)
        log.info(
            "test set: %d traces, accuracy %.4f, F1 %.4f, %d misclassified",
            scores["n_test"], scores["accuracy"], scores["f1"], scores["n_misclassified"],
        )  # fmt: skip

    return run_stage("evaluate", work, errors=(DeviceError, evaluation.EvaluationError))


if __name__ == "__main__":
    sys.exit(main())
