"""``reports/evaluate/``: the ``evaluate`` stage's tables.

``predictions.csv``
    One row per test trace (:data:`PREDICTION_COLUMNS`): its label, both logits, the
    softmax probability of ``post``, the predicted class, whether it is correct, its week.
``confusion.csv``
    ``label, predicted`` per test trace: the input of DVC's ``confusion`` plot template.
``weekly_accuracy.csv``
    ``week, n, accuracy``, weeks ascending.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quakeshap.artifacts import read_table
from quakeshap.files import write_csv

#: the folder of the three tables
FOLDER = Path("reports/evaluate")
PREDICTIONS_FILE = "predictions.csv"
CONFUSION_FILE = "confusion.csv"
WEEKLY_FILE = "weekly_accuracy.csv"
#: what the select stage and the figures read
PATH = FOLDER / PREDICTIONS_FILE

#: columns of ``predictions.csv``
PREDICTION_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "label",
    "logit_pre",
    "logit_post",
    "probability",
    "predicted",
    "correct",
    "week",
)
CONFUSION_COLUMNS: tuple[str, str] = ("label", "predicted")
WEEKLY_COLUMNS: tuple[str, str, str] = ("week", "n", "accuracy")


def write(
    folder: str | Path, predictions: pd.DataFrame, confusion: pd.DataFrame, weekly: pd.DataFrame
) -> None:
    """Write the three tables (each atomically)."""
    folder = Path(folder)
    write_csv(folder / PREDICTIONS_FILE, predictions[list(PREDICTION_COLUMNS)])
    write_csv(folder / CONFUSION_FILE, confusion[list(CONFUSION_COLUMNS)])
    write_csv(folder / WEEKLY_FILE, weekly[list(WEEKLY_COLUMNS)])


def load(path: str | Path = PATH) -> pd.DataFrame:
    """``predictions.csv``, checked to have :data:`PREDICTION_COLUMNS`."""
    return read_table(path, PREDICTION_COLUMNS, "evaluate")
