"""The many-station pipeline's artefacts (``docs/stations.md``): where each station's and
each network model's files go.

Per station ``<STA>`` (stages ``station_*@<STA>``):

- ``data/stations/spectrograms/<STA>/``: its spectrogram set (:mod:`.spectrograms`);
- ``models/stations/<STA>/``: its model and folds (:mod:`.checkpoint`);
- ``data/stations/selection/<STA>.csv`` and ``data/stations/shap/<STA>/``: the traces
  explained and their SHAP set (:mod:`.selection`, :mod:`.shap_set`);
- ``reports/stations/<STA>/``: ``rejected.csv``, ``train.json``, ``history.csv``,
  ``evaluate/`` (:mod:`.predictions`), ``evaluate.json``, ``explain.json``.

Per network model, trained on every listed station under split ``<split>`` (``event`` or
``trace``; stages ``network_train@<split>`` and ``transfer@<split>``):

- ``models/network/<split>/``: the model and its folds;
- ``reports/stations/network/<split>/``: ``train.json`` (with the leak of the split) and
  ``history.csv``;
- ``reports/stations/transfer/<split>/``: ``transfer.csv`` (every model on every station's
  test set), ``shap_fractions.csv``, the figures and ``stations.html`` (the stations page),
  and beside it ``reports/stations/transfer/<split>.json``, the metrics.

The sets of all stations sit side by side under one folder, so that a network stage can
depend on them all (``data/stations/spectrograms``) without depending on anything else a
station stage writes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from quakeshap.artifacts import metrics, predictions
from quakeshap.config import PARAMS_FILE

#: every station's spectrogram set, one folder per station
SPECTROGRAMS_DIR = Path("data/stations/spectrograms")
SELECTION_DIR = Path("data/stations/selection")
SHAP_DIR = Path("data/stations/shap")
MODELS_DIR = Path("models/stations")
NETWORK_MODELS_DIR = Path("models/network")
REPORTS_DIR = Path("reports/stations")
NETWORK_REPORTS_DIR = REPORTS_DIR / "network"
TRANSFER_DIR = REPORTS_DIR / "transfer"

#: a station's reports are named as the main chain's
REJECTED_FILE = metrics.REJECTED_PATH.name
TRAIN_FILE = metrics.PATHS["train"].name
HISTORY_FILE = metrics.HISTORY_PATH.name
EVALUATE_FILE = metrics.PATHS["evaluate"].name
EXPLAIN_FILE = metrics.PATHS["explain"].name
TRANSFER_FILE = "transfer.csv"
SHAP_FRACTIONS_FILE = "shap_fractions.csv"
#: the stations page of a network split
PAGE_FILE = "stations.html"
FIGURES = "figures"

#: the network models' splits: by event (no leak) or by image (the sibling study's)
NETWORK_SPLITS: tuple[str, str] = ("event", "trace")


class _WithModel:
    """Paths with a ``models`` folder: the model's checkpoint in it."""

    models: Path

    @property
    def model(self) -> Path:
        return self.models / _checkpoint_name()


@dataclass(frozen=True)
class StationPaths(_WithModel):
    """Everything the stage set of one station reads and writes."""

    code: str
    spectrograms: Path
    rejected: Path
    models: Path
    train_metrics: Path
    history: Path
    evaluation: Path
    evaluate_metrics: Path
    selection: Path
    shap: Path
    explain_metrics: Path

    @property
    def predictions(self) -> Path:
        return self.evaluation / predictions.PREDICTIONS_FILE


def station_paths(code: str) -> StationPaths:
    reports = REPORTS_DIR / code
    return StationPaths(
        code=code,
        spectrograms=SPECTROGRAMS_DIR / code,
        rejected=reports / REJECTED_FILE,
        models=MODELS_DIR / code,
        train_metrics=reports / TRAIN_FILE,
        history=reports / HISTORY_FILE,
        evaluation=reports / predictions.FOLDER.name,
        evaluate_metrics=reports / EVALUATE_FILE,
        selection=SELECTION_DIR / f"{code}.csv",
        shap=SHAP_DIR / code,
        explain_metrics=reports / EXPLAIN_FILE,
    )


@dataclass(frozen=True)
class NetworkPaths(_WithModel):
    """What the network model of one split and its transfer report write."""

    split: str
    models: Path
    train_metrics: Path
    history: Path
    transfer: Path
    transfer_metrics: Path


def _checkpoint_name() -> str:
    """The checkpoint's file name, from its owner (imported on use: it imports torch, which
    a station's spectrograms stage does not need)."""
    from quakeshap.artifacts import checkpoint

    return checkpoint.PATH.name


def network_paths(split: str) -> NetworkPaths:
    reports = NETWORK_REPORTS_DIR / split
    return NetworkPaths(
        split=split,
        models=NETWORK_MODELS_DIR / split,
        train_metrics=reports / TRAIN_FILE,
        history=reports / HISTORY_FILE,
        transfer=TRANSFER_DIR / split,
        transfer_metrics=TRANSFER_DIR / f"{split}.json",
    )


def station_stage_args(doc: str, argv: list[str] | None, **paths: str) -> argparse.Namespace:
    """The command line of a station stage that runs a main-chain stage on one station's
    files: ``<STA> [--params FILE]``, then each ``paths`` argument set to that attribute of
    :func:`station_paths` (``spectrograms="spectrograms", metrics="train_metrics"``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("station", help="station code")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = parser.parse_args(argv)
    station = station_paths(args.station)
    for name, attribute in paths.items():
        setattr(args, name, getattr(station, attribute))
    return args


def read_metrics(path: Path, stage: str) -> dict:
    """A station stage's metrics file (:func:`quakeshap.artifacts.metrics.load`)."""
    return metrics.load(path, stage)
