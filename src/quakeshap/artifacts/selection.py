"""``data/selection.csv``: which test traces the ``explain`` stage explains.

One row per (trace, group) (:data:`SELECTION_COLUMNS`): ``group`` is ``class``,
``misclassified``, ``example`` or ``week``; ``reason`` says why the trace was picked;
``explain_both`` asks for the maps of both classes (misclassified traces and examples).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quakeshap.artifacts import read_table
from quakeshap.files import write_csv

#: the selection's groups: the per-class picks, the misclassified traces, the examples, the
#: weekly picks
GROUPS: tuple[str, str, str, str] = ("class", "misclassified", "example", "week")
CLASS_GROUP, MISCLASSIFIED_GROUP, EXAMPLE_GROUP, WEEK_GROUP = GROUPS
#: where the ``select`` stage writes it
PATH = Path("data/selection.csv")
SELECTION_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "group",
    "reason",
    "label",
    "predicted",
    "week",
    "explain_both",
)


def write(path: str | Path, table: pd.DataFrame) -> None:
    write_csv(path, table[list(SELECTION_COLUMNS)])


def load(path: str | Path = PATH) -> pd.DataFrame:
    """The selection, checked to have :data:`SELECTION_COLUMNS`."""
    return read_table(path, SELECTION_COLUMNS, "select")
