"""What the figures are drawn from: every input of the ``plots`` stage, read and checked.

:func:`load_inputs` reads each artefact through its owner in :mod:`quakeshap.artifacts`,
checks that they come from one run (the SHAP maps, the selection and the predictions name
traces of the spectrogram set) and picks the traces drawn one by one
(:func:`traces_to_draw`). Every problem is a :class:`PlotInputError` that says what to
re-run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quakeshap import record
from quakeshap.artifacts import (
    ArtifactError,
    explainer_comparison,
    metrics,
    predictions,
    raw,
    selection,
    shap_set,
)
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.selection import EXAMPLE_GROUP, MISCLASSIFIED_GROUP
from quakeshap.artifacts.spectrograms import SpectrogramSet

log = logging.getLogger(__name__)

#: selection groups that get a per-trace explanation figure, in drawing order
EXPLAINED_GROUPS = (MISCLASSIFIED_GROUP, EXAMPLE_GROUP)


class PlotInputError(ValueError):
    """An input of the ``plots`` stage is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class InputPaths:
    """Where the ``plots`` stage reads: each artefact's owner's path (relative to the repo)."""

    raw: Path = raw.PATH
    spectrograms: Path = spectrogram_set.PATH
    selection: Path = selection.PATH
    shap: Path = shap_set.PATH
    history: Path = metrics.HISTORY_PATH
    rejected: Path = metrics.REJECTED_PATH
    predictions: Path = predictions.PATH
    train_metrics: Path = metrics.PATHS["train"]
    evaluate_metrics: Path = metrics.PATHS["evaluate"]
    explain_metrics: Path = metrics.PATHS["explain"]
    explainer_comparison: Path = explainer_comparison.PATH
    explainers_metrics: Path = metrics.PATHS["explainers"]

    def under(self, root: str | Path) -> InputPaths:
        """The same layout below another folder (a temporary clone, a test's tmp_path)."""
        root = Path(root)
        return InputPaths(**{f.name: root / getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class PlotInputs:
    """Everything the figures and the report are drawn from."""

    spectrograms: SpectrogramSet
    shap: shap_set.ShapSet
    selection: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    rejected: pd.DataFrame
    train_metrics: dict[str, Any]
    evaluate_metrics: dict[str, Any]
    explain_metrics: dict[str, Any]
    #: every explainer on the same traces (:mod:`quakeshap.artifacts.explainer_comparison`)
    explainer_comparison: pd.DataFrame
    explainers_metrics: dict[str, Any]
    #: trace drawn in the single-trace figure
    example_trace: str
    #: traces with a per-trace explanation figure (misclassified, then examples)
    explained_traces: tuple[str, ...]
    #: raw waveforms ``(3, n_samples)`` of the example and explained traces, by name
    waveforms: dict[str, np.ndarray] = field(default_factory=dict)


def class_name(value: Any) -> str:
    """A class given as its name (``"post"``) or its index (``1``), as its name."""
    try:
        return record.class_name(value)
    except record.UnknownClassError as exc:
        raise PlotInputError(str(exc)) from None


def traces_to_draw(
    chosen: pd.DataFrame, known: Sequence[str], example_trace: str | None
) -> tuple[str, tuple[str, ...]]:
    """The single-trace figure's trace and the traces with an explanation figure.

    Parameters
    ----------
    chosen
        The selection (:mod:`quakeshap.artifacts.selection`).
    known
        Trace names of the spectrogram set.
    example_trace
        ``plots.example_trace``; None = the first ``example`` row of the selection (else
        its first row).

    Returns
    -------
    The example trace, and the explained traces: the ``misclassified`` then the
    ``example`` rows, each once.
    """
    known_set = set(known)
    explained: list[str] = []
    for group in EXPLAINED_GROUPS:
        for name in chosen.loc[chosen["group"] == group, "trace_name"]:
            if name not in explained:
                explained.append(name)
    if example_trace is None:
        examples = chosen.loc[chosen["group"] == EXAMPLE_GROUP, "trace_name"]
        candidates = examples if len(examples) else chosen["trace_name"]
        if not len(candidates):
            raise PlotInputError(f"{selection.PATH} is empty: nothing to draw")
        example_trace = str(candidates.iloc[0])
    elif example_trace not in known_set:
        metadata_path = spectrogram_set.PATH / spectrogram_set.METADATA_FILE
        raise PlotInputError(
            f"parameter plots.example_trace: {example_trace!r} is not in the spectrogram set; "
            f"give a trace_name of {metadata_path} or null"
        )
    missing = [n for n in [example_trace, *explained] if n not in known_set]
    if missing:
        raise PlotInputError(
            f"selected trace(s) {missing[:5]} are not in the spectrogram set: "
            f"{selection.PATH} is from another run; re-run `dvc repro select`"
        )
    return example_trace, tuple(explained)


def load_inputs(paths: InputPaths, example_trace: str | None = None) -> PlotInputs:
    """Read and cross-check everything the ``plots`` stage draws from.

    ``example_trace`` is ``plots.example_trace`` (:func:`traces_to_draw`). The spectrogram
    images are memory-mapped; of the raw waveforms only the traces drawn are read.
    """
    try:
        return _load_inputs(paths, example_trace)
    except ArtifactError as exc:
        raise PlotInputError(str(exc)) from exc


def _load_inputs(paths: InputPaths, example_trace: str | None) -> PlotInputs:
    spectra = spectrogram_set.load(paths.spectrograms, mmap=True)
    shaps = shap_set.load(paths.shap, spectra.image_shape[1:])
    known = spectra.metadata["trace_name"]
    unknown = sorted(set(shaps.index["trace_name"]) - set(known))
    if unknown:
        raise PlotInputError(
            f"{paths.shap}/{shap_set.INDEX_FILE} names trace(s) not in the spectrogram set, "
            f"e.g. {unknown[:5]}; re-run `dvc repro explain`"
        )
    chosen = selection.load(paths.selection)
    example, explained = traces_to_draw(chosen, known.tolist(), example_trace)
    scored = predictions.load(paths.predictions)
    missing = sorted(set(explained) - set(scored["trace_name"]))
    if missing:
        raise PlotInputError(
            f"{paths.predictions} has no prediction for explained trace(s) {missing[:5]}; "
            "re-run `dvc repro evaluate`"
        )
    log.info(
        "%d traces, %d SHAP maps; example trace %s; %d trace(s) explained one by one",
        len(spectra),
        len(shaps.index),
        example,
        len(explained),
    )
    return PlotInputs(
        spectrograms=spectra,
        shap=shaps,
        selection=chosen,
        predictions=scored,
        history=metrics.load_history(paths.history),
        rejected=metrics.load_rejected(paths.rejected),
        train_metrics=metrics.load(paths.train_metrics, "train"),
        evaluate_metrics=metrics.load(paths.evaluate_metrics, "evaluate"),
        explain_metrics=metrics.load(paths.explain_metrics, "explain"),
        explainer_comparison=explainer_comparison.load(paths.explainer_comparison),
        explainers_metrics=metrics.load(paths.explainers_metrics, "explainers"),
        example_trace=example,
        explained_traces=explained,
        waveforms=raw.read_traces(paths.raw, spectra.metadata, [example, *explained]),
    )
