"""Scores of the trained model on the test set (``docs/method.md`` §3).

The positive class is ``post`` (aftershock), as in the study: precision, recall and F1 are
those of ``post``, and ROC AUC ranks traces by their softmax probability of ``post``.
Functions here are pure (arrays and tables in, numbers and tables out) apart from
:func:`predict_logits`, which runs the model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from quakeshap.artifacts.predictions import CONFUSION_COLUMNS, PREDICTION_COLUMNS, WEEKLY_COLUMNS
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """The test set or the model's outputs cannot be scored."""


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """Logits of ``model`` for every image, in batches.

    Parameters
    ----------
    model
        Takes pixel values in [0, 1] (``model_from_checkpoint`` with its normalisation).
    images
        ``(n, 3, H, W)``: ``uint8`` holding ``floor(255 x)`` or float in [0, 1].
    device
        Where the model runs; images are moved there one batch at a time.

    Returns
    -------
    ``(n, n_classes)`` float32 logits.
    """
    model = model.to(device).eval()
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(1.0)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].astype(np.float32) / scale
            logits = model(torch.from_numpy(chunk).to(device))
            out.append(logits.float().cpu().numpy())
    if not out:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    logits = np.concatenate(out)
    if not np.all(np.isfinite(logits)):
        bad = int(np.count_nonzero(~np.isfinite(logits).all(axis=1)))
        raise EvaluationError(
            f"the model returned non-finite logits for {bad} image(s); the checkpoint or the "
            "images are corrupt: re-run `dvc repro train`"
        )
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, ``(n, k)`` → ``(n, k)``."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions_table(metadata: pd.DataFrame, logits: np.ndarray) -> pd.DataFrame:
    """One row per test trace (the contract of ``predictions.csv``).

    Parameters
    ----------
    metadata
        Rows of ``metadata.csv`` for the test traces (``trace_name``, ``label``, ``week``).
    logits
        ``(n, 2)`` model outputs for the same rows, columns in :data:`CLASS_NAMES` order.

    Returns
    -------
    Columns :data:`PREDICTION_COLUMNS`; ``probability`` is the softmax probability of the
    predicted class, ``predicted`` the argmax (ties go to ``pre``).
    """
    if logits.shape != (len(metadata), len(CLASS_NAMES)):
        raise EvaluationError(
            f"{logits.shape} logits for {len(metadata)} traces and {len(CLASS_NAMES)} classes"
        )
    prob = softmax(logits)
    predicted = prob.argmax(axis=1)
    names = np.asarray(CLASS_NAMES)
    return pd.DataFrame(
        {
            "trace_name": metadata["trace_name"].astype(str).to_numpy(),
            "label": metadata["label"].astype(str).to_numpy(),
            "logit_pre": logits[:, 0].astype(np.float64),
            "logit_post": logits[:, 1].astype(np.float64),
            "probability": prob[np.arange(len(prob)), predicted],
            "predicted": names[predicted],
            "correct": names[predicted] == metadata["label"].astype(str).to_numpy(),
            "week": metadata["week"].to_numpy(dtype=np.int64),
        },
        columns=list(PREDICTION_COLUMNS),
    )


def post_probability(predictions: pd.DataFrame) -> np.ndarray:
    """Softmax probability of ``post`` for each row of a predictions table, ``(n,)``."""
    return softmax(predictions[["logit_pre", "logit_post"]].to_numpy())[:, 1]


def confusion_counts(label: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """``tn, fp, fn, tp`` with ``post`` as the positive class (arrays of class names)."""
    label = np.asarray(label) == "post"
    predicted = np.asarray(predicted) == "post"
    return {
        "tn": int(np.count_nonzero(~label & ~predicted)),
        "fp": int(np.count_nonzero(~label & predicted)),
        "fn": int(np.count_nonzero(label & ~predicted)),
        "tp": int(np.count_nonzero(label & predicted)),
    }


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative (ties count one half), from the Mann–Whitney rank sum.

    NaN when one of the classes is absent.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ratio(num: int, den: int) -> float:
    # sklearn's zero_division=0 convention: an empty denominator scores 0
    return num / den if den else 0.0


def classification_metrics(predictions: pd.DataFrame) -> dict[str, Any]:
    """The scores written to ``reports/metrics/evaluate.json``.

    Keys: ``accuracy``, ``precision``, ``recall``, ``f1`` (positive class ``post``),
    ``balanced_accuracy``, ``roc_auc`` (NaN, written as null, when the test set holds a
    single class), ``n_test``, ``n_pre``, ``n_post``, ``n_misclassified`` and
    ``confusion`` (``tn, fp, fn, tp``).
    """
    n = len(predictions)
    if n == 0:
        raise EvaluationError("the test set is empty: nothing to evaluate")
    c = confusion_counts(predictions["label"].to_numpy(), predictions["predicted"].to_numpy())
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    f1 = _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    specificity = _ratio(c["tn"], c["tn"] + c["fp"])
    positive = predictions["label"].to_numpy() == "post"
    return {
        "accuracy": (c["tp"] + c["tn"]) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": (recall + specificity) / 2,
        "roc_auc": roc_auc(positive, post_probability(predictions)),
        "n_test": n,
        "n_pre": int(np.count_nonzero(~positive)),
        "n_post": int(np.count_nonzero(positive)),
        "n_misclassified": c["fp"] + c["fn"],
        "confusion": c,
    }


def weekly_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per ISO week (:data:`~quakeshap.artifacts.predictions.WEEKLY_COLUMNS`: week,
    number of test traces, accuracy), weeks ascending."""
    grouped = predictions.groupby("week", sort=True)["correct"]
    return pd.DataFrame(
        {
            "week": grouped.size().index.to_numpy(dtype=np.int64),
            "n": grouped.size().to_numpy(dtype=np.int64),
            "accuracy": grouped.mean().to_numpy(dtype=np.float64),
        },
        columns=list(WEEKLY_COLUMNS),
    )


def confusion_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """``label, predicted`` per test trace: the input of DVC's ``confusion`` plot template."""
    return predictions[list(CONFUSION_COLUMNS)].reset_index(drop=True)


def test_rows(data: SpectrogramSet, ckpt: dict[str, Any]) -> np.ndarray:
    """Image indices of the test set: the traces the checkpoint lists as ``test_traces``.

    Those are the ``split`` column's test split, plus the co-located traces under
    ``train.exclude_colocated``; a checkpoint that does not list them (written by other
    code) is tested on ``split == "test"``, with a warning.
    """
    if "test_traces" in ckpt:
        return data.rows(ckpt["test_traces"])
    log.warning("the checkpoint does not list its test traces: using split == 'test'")
    return (data.metadata["split"] == "test").to_numpy().nonzero()[0]
