"""``reports/evaluate/``: the ``evaluate`` stage's tables.

``predictions.csv``
    One row per test trace (:data:`PREDICTION_COLUMNS`): its label, both logits, the
    softmax probability of the predicted class, the predicted class, whether it is
    correct, its week. With time-to-failure classes one ``logit_<class>`` per class
    (:func:`prediction_columns`); for magnitude :data:`REGRESSION_COLUMNS` (catalogue and
    predicted magnitude, residual = predicted − catalogue, S−P time).
``confusion.csv``
    ``label, predicted`` per test trace: the input of DVC's ``confusion`` plot template
    (not written for a magnitude regression).
``weekly_accuracy.csv``
    ``week, n, accuracy``, weeks ascending; a regression's adds ``mae`` (its ``accuracy``:
    the share predicted in their catalogue magnitude's bin).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quakeshap.artifacts import ArtifactError, read_table
from quakeshap.files import write_csv
from quakeshap.record import CLASS_NAMES

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
#: columns of ``predictions.csv`` under ``task.kind: magnitude`` (``label`` is the side)
REGRESSION_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "label",
    "magnitude",
    "predicted",
    "residual",
    "sp_time_s",
    "week",
)


def prediction_columns(class_names: tuple[str, ...]) -> tuple[str, ...]:
    """Columns of ``predictions.csv`` for these classes: one ``logit_<class>`` each (the
    study's :data:`PREDICTION_COLUMNS` for ``pre``/``post``)."""
    logits = tuple(f"logit_{name}" for name in class_names)
    return ("trace_name", "label", *logits, "probability", "predicted", "correct", "week")


WEEKLY_COLUMNS: tuple[str, str, str] = ("week", "n", "accuracy")


def write(
    folder: str | Path,
    predictions: pd.DataFrame,
    confusion: pd.DataFrame | None,
    weekly: pd.DataFrame,
) -> None:
    """Write the tables (each atomically); a regression has no confusion table."""
    folder = Path(folder)
    if is_regression(predictions):
        columns = REGRESSION_COLUMNS
    else:
        columns = prediction_columns(class_names(predictions) or CLASS_NAMES)
    write_csv(folder / PREDICTIONS_FILE, predictions[list(columns)])
    if confusion is not None:
        write_csv(folder / CONFUSION_FILE, confusion[list(CONFUSION_COLUMNS)])
    write_csv(folder / WEEKLY_FILE, weekly)


def is_regression(table: pd.DataFrame) -> bool:
    """Whether a predictions table is a magnitude regression's."""
    return "residual" in table.columns


def class_names(table: pd.DataFrame) -> tuple[str, ...]:
    """The classes of a classification's predictions table, from its ``logit_`` columns."""
    return tuple(c.removeprefix("logit_") for c in table.columns if c.startswith("logit_"))


def load(path: str | Path = PATH) -> pd.DataFrame:
    """``predictions.csv``, checked to have :data:`PREDICTION_COLUMNS` (the study's), the
    columns of its classes (:func:`prediction_columns`) or :data:`REGRESSION_COLUMNS`."""
    frame = read_table(path, ("trace_name",), "evaluate")
    names = class_names(frame)
    if is_regression(frame):
        expected = REGRESSION_COLUMNS
    else:
        expected = prediction_columns(names) if names else PREDICTION_COLUMNS
    absent = [c for c in expected if c not in frame.columns]
    if absent:
        raise ArtifactError(
            f"{path} lacks column(s) {absent} (has {list(frame.columns)}); it was written by "
            "another version of the `evaluate` stage: re-run `dvc repro evaluate`"
        )
    return frame
