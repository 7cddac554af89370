"""Stage ``evaluate``: score the trained model on its test set.

Reads ``models/model.pt`` and ``data/spectrograms/``; tests on the traces the checkpoint
lists as ``test_traces`` (the ``split`` column's test split, plus the co-located traces
under ``train.exclude_colocated``). Writes ``reports/evaluate/predictions.csv``,
``confusion.csv``, ``weekly_accuracy.csv`` and ``reports/metrics/evaluate.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from quakeshap import evaluation
from quakeshap.config import ConfigError, load_params
from quakeshap.dataset import DatasetError, load_spectrogram_set
from quakeshap.io import write_csv, write_json
from quakeshap.model import (
    CheckpointError,
    DeviceError,
    load_checkpoint,
    model_from_checkpoint,
    resolve_device,
)

log = logging.getLogger("quakeshap.stages.evaluate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--spectrograms", default="data/spectrograms", type=Path)
    parser.add_argument("--model", default="models/model.pt", type=Path)
    parser.add_argument("--out", default="reports/evaluate", type=Path)
    parser.add_argument("--metrics", default="reports/metrics/evaluate.json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        device = resolve_device(load_params(args.params).train.device)
        data = load_spectrogram_set(args.spectrograms)
        ckpt = load_checkpoint(args.model)
        model = model_from_checkpoint(ckpt, input_shape=data.image_shape)
        if "test_traces" in ckpt:
            rows = data.rows(ckpt["test_traces"])
        else:
            log.warning("%s does not list its test traces: using split == 'test'", args.model)
            rows = (data.metadata["split"] == "test").to_numpy().nonzero()[0]
        logits = evaluation.predict_logits(model, data.images[rows], device)
        predictions = evaluation.predictions_table(data.metadata.iloc[rows], logits)
        metrics = evaluation.classification_metrics(predictions)
    except (
        ConfigError,
        DatasetError,
        CheckpointError,
        DeviceError,
        evaluation.EvaluationError,
    ) as exc:
        log.error("%s", exc)
        return 1
    write_csv(args.out / "predictions.csv", predictions)
    write_csv(args.out / "confusion.csv", evaluation.confusion_table(predictions))
    write_csv(args.out / "weekly_accuracy.csv", evaluation.weekly_accuracy(predictions))
    write_json(args.metrics, metrics)
    log.info(
        "test set: %d traces, accuracy %.4f, F1 %.4f, %d misclassified",
        metrics["n_test"], metrics["accuracy"], metrics["f1"], metrics["n_misclassified"],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
