"""Scores of the trained model on the test set (``docs/method.md`` §3, §11).

The positive class is ``post`` (aftershock), as in the study: precision, recall and F1 are
those of ``post``, and ROC AUC ranks traces by their softmax probability of ``post``.
Time-to-failure classes (:func:`multiclass_metrics`) get accuracy, balanced accuracy (the
mean per-class recall Laurenti et al. report), macro F1, the N×N confusion and the chance
levels; a magnitude regression (:func:`regression_metrics`) MAE, RMSE, R², the residuals'
σ and their statistics per magnitude and S−P bin, beside the baselines of
:mod:`quakeshap.magnitude_baseline`.
Functions here are pure (arrays and tables in, numbers and tables out) apart from
:func:`predict_logits`, which runs the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from quakeshap import magnitude_baseline
from quakeshap.artifacts.predictions import (
    CONFUSION_COLUMNS,
    REGRESSION_COLUMNS,
    WEEKLY_COLUMNS,
    prediction_columns,
)
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
    n_outputs: int = 2,
) -> np.ndarray:
    """Logits of ``model`` for every image, in batches (for a regression: its ``(n, 1)``
    output in magnitude units).

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
        return np.zeros((0, n_outputs), dtype=np.float32)
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


def predictions_table(
    metadata: pd.DataFrame, logits: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES
) -> pd.DataFrame:
    """One row per test trace (the contract of ``predictions.csv``).

    Parameters
    ----------
    metadata
        Rows of ``metadata.csv`` for the test traces (``trace_name``, ``label``, ``week``;
        ``target`` for time-to-failure classes).
    logits
        ``(n, k)`` model outputs for the same rows, columns in ``class_names`` order.
    class_names
        The study's ``pre``/``post`` (true class: ``label``) or the time-to-failure
        classes (true class: ``target``).

    Returns
    -------
    Columns :func:`~quakeshap.artifacts.predictions.prediction_columns`
    (:data:`PREDICTION_COLUMNS` for the study); ``probability`` is the softmax probability
    of the predicted class, ``predicted`` the argmax (ties go to the earlier class).
    """
    if logits.shape != (len(metadata), len(class_names)):
        raise EvaluationError(
            f"{logits.shape} logits for {len(metadata)} traces and {len(class_names)} classes"
        )
    prob = softmax(logits)
    predicted = prob.argmax(axis=1)
    names = np.asarray(class_names)
    truth = metadata["label" if tuple(class_names) == CLASS_NAMES else "target"]
    truth = truth.astype(str).to_numpy()
    columns = {
        "trace_name": metadata["trace_name"].astype(str).to_numpy(),
        "label": truth,
        **{f"logit_{n}": logits[:, k].astype(np.float64) for k, n in enumerate(class_names)},
        "probability": prob[np.arange(len(prob)), predicted],
        "predicted": names[predicted],
        "correct": names[predicted] == truth,
        "week": metadata["week"].to_numpy(dtype=np.int64),
    }
    return pd.DataFrame(columns, columns=list(prediction_columns(class_names)))


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


def multiclass_metrics(predictions: pd.DataFrame, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The scores of N classes (time-to-failure) written to ``evaluate.json``.

    Keys: ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in the
    test set: Laurenti et al.'s mean per-class recall), ``f1`` (macro: mean over the
    classes), ``chance`` (the majority class's share of the test set: what always
    answering it scores) and ``chance_balanced`` (1/N: the balanced accuracy of any
    constant answer), ``n_test``, ``n_misclassified``, ``per_class`` (``n``, ``precision``,
    ``recall``, ``f1``) and ``confusion`` (true class → predicted class → count).
    """
    n = len(predictions)
    if n == 0:
        raise EvaluationError("the test set is empty: nothing to evaluate")
    truth = predictions["label"].astype(str).to_numpy()
    guess = predictions["predicted"].astype(str).to_numpy()
    per_class: dict[str, dict[str, Any]] = {}
    for name in class_names:
        tp = int(np.count_nonzero((truth == name) & (guess == name)))
        n_true, n_guess = int(np.count_nonzero(truth == name)), int(np.count_nonzero(guess == name))
        per_class[name] = {
            "n": n_true,
            "precision": _ratio(tp, n_guess),
            "recall": _ratio(tp, n_true),
            "f1": _ratio(2 * tp, n_true + n_guess),
        }
    present = [c for c in class_names if per_class[c]["n"] > 0]
    counts = np.array([per_class[c]["n"] for c in class_names])
    return {
        "accuracy": float(np.mean(truth == guess)),
        "balanced_accuracy": float(np.mean([per_class[c]["recall"] for c in present])),
        "f1": float(np.mean([per_class[c]["f1"] for c in class_names])),
        "chance": float(counts.max() / n),
        "chance_balanced": 1.0 / len(class_names),
        "n_test": n,
        "n_misclassified": int(np.count_nonzero(truth != guess)),
        "per_class": per_class,
        "confusion": {
            t: {g: int(np.count_nonzero((truth == t) & (guess == g))) for g in class_names}
            for t in class_names
        },
    }


def regression_table(metadata: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
    """One row per test trace of a magnitude regression (``predictions.csv``,
    :data:`~quakeshap.artifacts.predictions.REGRESSION_COLUMNS`)."""
    if outputs.shape != (len(metadata), 1):
        raise EvaluationError(
            f"{outputs.shape} outputs for {len(metadata)} traces; expected (n, 1)"
        )
    magnitude = metadata["target"].to_numpy(dtype=np.float64)
    predicted = outputs[:, 0].astype(np.float64)
    return pd.DataFrame(
        {
            "trace_name": metadata["trace_name"].astype(str).to_numpy(),
            "label": metadata["label"].astype(str).to_numpy(),
            "magnitude": magnitude,
            "predicted": predicted,
            "residual": predicted - magnitude,
            "sp_time_s": metadata["p_s_diff_sec"].to_numpy(dtype=np.float64),
            "week": metadata["week"].to_numpy(dtype=np.int64),
        },
        columns=list(REGRESSION_COLUMNS),
    )


def binned_residuals(values: np.ndarray, residual: np.ndarray, width: float) -> dict[str, Any]:
    """Residual statistics per bin of ``values`` (bins ``[k w, (k+1) w)``), keyed by
    ``"lo-hi"``: ``n``, ``mean`` (bias), ``std`` (ddof 1; null below 2 traces), ``mae``."""
    edges = np.floor(values / width) * width
    out: dict[str, Any] = {}
    for lo in np.unique(edges):
        part = residual[edges == lo]
        out[f"{lo:.2f}-{lo + width:.2f}"] = {
            "n": len(part),
            "mean": float(part.mean()),
            "std": float(part.std(ddof=1)) if len(part) > 1 else None,
            "mae": float(np.abs(part).mean()),
        }
    return out


def regression_metrics(table: pd.DataFrame, bin_width: float, sp_bin_s: float) -> dict[str, Any]:
    """The magnitude model's scores in ``evaluate.json``: ``mae``, ``rmse``, ``r2``,
    ``residual_std``, ``bias`` (mean residual), ``n_test``, and residual statistics
    ``by_magnitude`` (bins of ``bin_width``) and ``by_sp_time`` (bins of ``sp_bin_s``)."""
    if len(table) == 0:
        raise EvaluationError("the test set is empty: nothing to evaluate")
    truth = table["magnitude"].to_numpy(dtype=np.float64)
    residual = table["residual"].to_numpy(dtype=np.float64)
    scores = scalar_scores(truth, truth + residual)
    return {
        **scores,
        "bias": float(residual.mean()),
        "by_magnitude": binned_residuals(truth, residual, bin_width),
        "by_sp_time": binned_residuals(table["sp_time_s"].to_numpy(np.float64), residual, sp_bin_s),
    }


def scalar_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """``mae``, ``rmse``, ``r2``, ``residual_std`` and ``n_test`` of predictions."""
    scores = magnitude_baseline.regression_metrics(truth, predicted)
    scores["n_test"] = scores.pop("n")
    return scores


@dataclass(frozen=True)
class Baselines:
    """The magnitude model's baselines on the same test traces."""

    metrics: dict[str, Any]  # "train_mean" and "gradient_boosting" → scalar_scores
    importance: pd.Series  # mean |TreeSHAP| per feature of the gradient boosting, descending


def magnitude_baselines(
    features: pd.DataFrame,
    magnitude: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    n_trees: int,
    seed: int,
) -> Baselines:
    """The train set's mean magnitude, and gradient boosting on the waveform features
    (:mod:`quakeshap.magnitude_baseline`: no catalogue column), fitted on ``train_rows``
    and scored on ``test_rows`` (rows of ``features`` and ``magnitude``); the boosting is
    explained with TreeSHAP on the test rows."""
    x = features[list(magnitude_baseline.FEATURE_NAMES)]
    truth = magnitude[test_rows].astype(np.float64)
    train_mean = np.full(len(test_rows), float(np.mean(magnitude[train_rows])))
    model = magnitude_baseline.fit_baseline(x.iloc[train_rows], magnitude[train_rows],
                                            n_trees, seed)  # fmt: skip
    boosted = magnitude_baseline.predict(model, x.iloc[test_rows])
    shap_values = magnitude_baseline.tree_shap(model, x.iloc[test_rows])
    return Baselines(
        metrics={
            "train_mean": scalar_scores(truth, train_mean),
            "gradient_boosting": scalar_scores(truth, boosted),
        },
        importance=magnitude_baseline.importance(shap_values),
    )


def magnitude_bins(table: pd.DataFrame, width: float) -> pd.DataFrame:
    """``label, predicted`` as magnitude bins ``"lo-hi"`` of ``width``: the confusion table
    (DVC's ``confusion`` template) of a regression."""

    def binned(values: pd.Series) -> np.ndarray:
        lo = np.floor(values.to_numpy(dtype=np.float64) / width) * width
        return np.array([f"{v:.2f}-{v + width:.2f}" for v in lo], dtype=object)

    return pd.DataFrame(
        {"label": binned(table["magnitude"]), "predicted": binned(table["predicted"])},
        columns=list(CONFUSION_COLUMNS),
    )


def weekly_error(predictions: pd.DataFrame, width: float) -> pd.DataFrame:
    """Per ISO week of a regression: ``week, n, accuracy, mae``; ``accuracy`` is the share
    of traces whose predicted magnitude falls in their catalogue magnitude's bin of
    ``width`` (the diagonal of :func:`magnitude_bins`), ``mae`` the mean absolute residual."""
    bins = magnitude_bins(predictions, width)
    frame = predictions.assign(
        abs_residual=predictions["residual"].abs(),
        same_bin=(bins["label"] == bins["predicted"]).to_numpy(),
    )
    grouped = frame.groupby("week")
    return pd.DataFrame(
        {
            "week": grouped.size().index.to_numpy(dtype=np.int64),
            "n": grouped.size().to_numpy(dtype=np.int64),
            "accuracy": grouped["same_bin"].mean().to_numpy(dtype=np.float64),
            "mae": grouped["abs_residual"].mean().to_numpy(dtype=np.float64),
        }
    )


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
