"""The files that pass between stages, one owner module each.

Every artefact has exactly one module here that knows its path in the project, its file
names, columns and dtypes, and offers its ``write`` and ``load``; stages, figures, the
report, benchmarks and test fixtures all go through it (``tests/test_artifacts.py`` fails
when a file name or a column list is spelled out anywhere else).

==========================  ===========================================  ==============
module                      artefact                                     written by
==========================  ===========================================  ==============
:mod:`.raw`                 ``data/raw/``: the record's layout            download
:mod:`.spectrograms`        ``data/spectrograms/``                        spectrograms
:mod:`.checkpoint`          ``models/model.pt``, ``models/folds/``        train
:mod:`.predictions`         ``reports/evaluate/*.csv``                    evaluate
:mod:`.selection`           ``data/selection.csv``                        select
:mod:`.shap_set`            ``data/shap/``                                explain
:mod:`.metrics`             ``reports/metrics/*.json``, ``history.csv``,  every stage
                            ``rejected.csv``
==========================  ===========================================  ==============

:mod:`.explainer_comparison` owns ``reports/explainers/comparison.csv``, written by
``explainers``.

This module holds what they share: the error type and the checked readers of a CSV table
and of a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd


class ArtifactError(ValueError):
    """An artefact is missing, unreadable or inconsistent; the message says what to re-run."""


def read_table(
    path: str | Path, columns: Sequence[str], stage: str, dtype: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Read a CSV artefact and check that it has ``columns``.

    ``stage`` names the stage that writes it, for the message (``dvc repro <stage>``);
    ``trace_name`` is always read as text.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing input {path}; run `dvc repro {stage}` first")
    try:
        frame = pd.read_csv(path, dtype={"trace_name": str, **(dtype or {})})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"{path}: not a readable CSV table ({exc}); re-run `dvc repro {stage}`"
        ) from exc
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ArtifactError(
            f"{path} lacks column(s) {absent} (has {list(frame.columns)}); it was written by "
            f"another version of the `{stage}` stage: re-run `dvc repro {stage}`"
        )
    return frame


def read_json(path: str | Path, stage: str) -> dict[str, Any]:
    """Read a JSON artefact that holds an object at the top level."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing input {path}; run `dvc repro {stage}` first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); re-run `dvc repro {stage}`") from exc
    if not isinstance(data, dict):
        raise ArtifactError(
            f"{path}: expected a JSON object, got {type(data).__name__}; re-run `dvc repro {stage}`"
        )
    return data
