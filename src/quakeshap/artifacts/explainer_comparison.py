"""``reports/explainers/comparison.csv``: every explainer on the same traces, side by side.

One row per (configuration, class, measure, region), tidy (:data:`COMPARISON_COLUMNS`):

``configuration``
    As ``explainers.configurations`` spells it (``partition:inpaint_telea``, ``deep``);
    ``explainer``, ``masker`` and ``max_evals`` take it apart (empty where they do not
    apply).
``class_name``, ``n_maps``
    The class and how many of its traces' maps the row averages.
``measure``, ``region``
    :data:`BAND` (``region`` a 10 Hz band, ``0_10hz`` …), :data:`WINDOW` (``before_p``,
    ``p_to_s``, ``after_s``), :data:`TRUTH` (the demo generator's discriminative band,
    ``26.5625_42.1875hz``; absent on real data, which have no ground truth);
    :data:`FAITHFULNESS` (``deletion_auc``, ``insertion_auc``) and :data:`RANDOMISATION`
    (one region per layer of the cascade, ``fc2`` … ``conv1``) when ``shap.faithfulness``
    is on.
``value``, ``uniform``, ``ratio``
    The mean over the class's maps of the fraction of ``|SHAP|`` mass in the region; what a
    uniform map would give there (the region's share of the image); ``value / uniform``.
    For :data:`FAITHFULNESS`: the area under the map's deletion or insertion curve, and
    under the curves of random orders; for :data:`RANDOMISATION`: the Spearman correlation
    with the maps of the model randomised down to that layer (``uniform`` empty).

Rows are in configuration order, then class, then measure and region order: the same
inputs give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from quakeshap.artifacts import ArtifactError, read_table
from quakeshap.files import write_csv

#: where the ``explainers`` stage writes the table
PATH = Path("reports/explainers/comparison.csv")
COMPARISON_COLUMNS: tuple[str, ...] = (
    "configuration",
    "explainer",
    "masker",
    "max_evals",
    "class_name",
    "n_maps",
    "measure",
    "region",
    "value",
    "uniform",
    "ratio",
)
#: the columns that identify a row
KEY_COLUMNS: tuple[str, ...] = ("configuration", "class_name", "measure", "region")
#: the measures: mass per 10 Hz band, per time window, in the ground-truth band (demo only);
#: deletion/insertion areas and the randomisation cascade (with shap.faithfulness)
MEASURES: tuple[str, ...] = ("band", "window", "truth", "faithfulness", "randomisation")
BAND, WINDOW, TRUTH, FAITHFULNESS, RANDOMISATION = MEASURES
#: columns read as text whatever they hold (a constant masker reads as a number otherwise)
_TEXT = {"configuration": str, "explainer": str, "masker": str, "region": str}


def write(path: str | Path, table: pd.DataFrame) -> None:
    """Write the table (its :data:`COMPARISON_COLUMNS`, in that order)."""
    absent = [c for c in COMPARISON_COLUMNS if c not in table.columns]
    if absent:
        raise ArtifactError(f"{path}: the comparison lacks column(s) {absent}")
    write_csv(path, table[list(COMPARISON_COLUMNS)])


def load(path: str | Path = PATH) -> pd.DataFrame:
    """The comparison, checked to have :data:`COMPARISON_COLUMNS`."""
    return read_table(path, COMPARISON_COLUMNS, "explainers", dtype=_TEXT)
