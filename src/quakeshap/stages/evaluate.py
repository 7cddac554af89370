"""Stage ``evaluate``: score the trained model on its test set.

Reads ``models/model.pt`` and ``data/spectrograms/``; tests on the traces the checkpoint
lists as its test set (:func:`quakeshap.evaluation.test_rows`). Writes
``reports/evaluate/`` (predictions, confusion, weekly accuracy:
:mod:`quakeshap.artifacts.predictions`) and ``reports/metrics/evaluate.json``, for the
task the set was made for (``docs/method.md`` §11): the study's two classes, N
time-to-failure classes, or the magnitude with its baselines (the confusion table then
holds magnitude bins, and the weekly table the share of traces predicted in their bin and
the mean absolute residual).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import numpy as np

from quakeshap import evaluation
from quakeshap.artifacts import checkpoint, metrics, predictions
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import MagnitudeConfig, load_params
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
        params = load_params(args.params)
        device = resolve_device(params.train.device)
        data = spectrogram_set.load(args.spectrograms, mmap=True)
        ckpt = checkpoint.load(args.model)
        model = model_from_checkpoint(
            ckpt, input_shape=data.image_shape, task=(data.task_kind, data.class_names)
        )
        rows = evaluation.test_rows(data, ckpt)
        outputs = evaluation.predict_logits(
            model, data.images[rows], device, n_outputs=len(data.class_names)
        )
        if data.is_regression:
            evaluate_magnitude(args, data, ckpt, rows, outputs, params.task.magnitude)
            return
        table = evaluation.predictions_table(data.metadata.iloc[rows], outputs, data.class_names)
        if data.task_kind == "prepost":
            scores = evaluation.classification_metrics(table)
        else:
            scores = evaluation.multiclass_metrics(table, data.class_names)
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


def evaluate_magnitude(
    args: argparse.Namespace,
    data: spectrogram_set.SpectrogramSet,
    ckpt: dict[str, Any],
    rows: np.ndarray,
    outputs: np.ndarray,
    cfg: MagnitudeConfig,
) -> None:
    """The magnitude model's predictions and scores, beside its baselines on the same
    test traces (the train set's mean; gradient boosting on the waveform features)."""
    table = evaluation.regression_table(data.metadata.iloc[rows], outputs)
    scores = evaluation.regression_metrics(table, cfg.bin_width, cfg.sp_bin_s)
    train_rows = data.rows(ckpt.get("train_traces", []))
    if len(train_rows) == 0:
        train_rows = np.flatnonzero(data.metadata["split"].to_numpy() == "train")
    features = spectrogram_set.load_features(args.spectrograms)
    baselines = evaluation.magnitude_baselines(
        features, data.targets().astype(np.float64), train_rows, rows,
        cfg.baseline_trees, cfg.baseline_seed,
    )  # fmt: skip
    scores["baselines"] = {
        **baselines.metrics,
        "gradient_boosting_importance": baselines.importance.head(10).round(6).to_dict(),
    }
    bins = evaluation.magnitude_bins(table, cfg.bin_width)
    predictions.write(args.out, table, bins, evaluation.weekly_error(table, cfg.bin_width))
    metrics.write(args.metrics, scores)
    log.info(
        "test set: %d traces, MAE %.3f, RMSE %.3f, R2 %.3f; train-mean baseline MAE %.3f, "
        "gradient boosting MAE %.3f",
        scores["n_test"], scores["mae"], scores["rmse"], scores["r2"],
        baselines.metrics["train_mean"]["mae"], baselines.metrics["gradient_boosting"]["mae"],
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
