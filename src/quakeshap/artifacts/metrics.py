"""The stages' reports: ``reports/metrics/<stage>.json``, the training history and the
rejected traces.

``reports/metrics/{train,evaluate,select,explain,explainers}.json``
    One JSON object per stage (DVC metrics: sorted keys, no timings, stable bytes).
``reports/train/history.csv``
    One row per (fold, epoch): :data:`HISTORY_COLUMNS` (a DVC plot); a magnitude model's
    last column is ``val_mae`` instead of ``val_accuracy``.
``reports/data/rejected.csv``
    One row per trace the ``spectrograms`` stage left out: :data:`REJECTED_COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from quakeshap.artifacts import read_json, read_table
from quakeshap.files import write_csv, write_json

#: the folder of the metrics files
FOLDER = Path("reports/metrics")
#: the stages that write a metrics file, in DAG order
STAGES: tuple[str, ...] = ("train", "evaluate", "select", "explain", "explainers")
#: ``reports/metrics/<stage>.json`` of each of them
PATHS: dict[str, Path] = {stage: FOLDER / f"{stage}.json" for stage in STAGES}

HISTORY_PATH = Path("reports/train/history.csv")
HISTORY_COLUMNS: tuple[str, ...] = ("fold", "epoch", "train_loss", "val_loss", "val_accuracy")

REJECTED_PATH = Path("reports/data/rejected.csv")
REJECTED_COLUMNS: tuple[str, str, str] = ("trace_name", "file", "reason")


def write(file: str | Path, metrics: dict[str, Any]) -> None:
    write_json(file, metrics)


def load(file: str | Path, stage: str) -> dict[str, Any]:
    """One stage's metrics (``stage`` names it in the message when the file is missing)."""
    return read_json(file, stage)


#: a magnitude regression's history: its score is the validation MAE
REGRESSION_HISTORY_COLUMNS: tuple[str, ...] = (*HISTORY_COLUMNS[:-1], "val_mae")


def write_history(file: str | Path, history: pd.DataFrame) -> None:
    regression = "val_mae" in history.columns
    write_csv(file, history[list(REGRESSION_HISTORY_COLUMNS if regression else HISTORY_COLUMNS)])


def load_history(file: str | Path = HISTORY_PATH) -> pd.DataFrame:
    """The training history (:data:`HISTORY_COLUMNS`, or :data:`REGRESSION_HISTORY_COLUMNS`
    for a magnitude model)."""
    table = read_table(file, HISTORY_COLUMNS[:-1], "train")
    if "val_mae" not in table.columns and HISTORY_COLUMNS[-1] not in table.columns:
        return read_table(file, HISTORY_COLUMNS, "train")  # the message names the column
    return table


def write_rejected(file: str | Path, rejected: pd.DataFrame) -> None:
    write_csv(file, rejected[list(REJECTED_COLUMNS)])


def load_rejected(file: str | Path = REJECTED_PATH) -> pd.DataFrame:
    return read_table(file, REJECTED_COLUMNS, "spectrograms")
