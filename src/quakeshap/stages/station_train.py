"""Stage ``station_train@<STA>``: the CNN2D of one station, trained on its set alone.

``python -m quakeshap.stages.station_train <STA>``: the ``train`` stage's recipe
(``docs/method.md`` §3, the ``train`` parameters) on
``data/stations/spectrograms/<STA>/``; writes ``models/stations/<STA>/`` and
``reports/stations/<STA>/{train.json,history.csv}`` (:mod:`quakeshap.artifacts.stations`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quakeshap.artifacts import stations as station_files
from quakeshap.config import PARAMS_FILE
from quakeshap.stages import train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("station", help="station code")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = parser.parse_args(argv)
    paths = station_files.station_paths(args.station)
    args.spectrograms, args.models = paths.spectrograms, paths.models
    args.metrics, args.history = paths.train_metrics, paths.history
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("params", "spectrograms", "models", "metrics", "history")
    return train.main([f"--{n}={getattr(args, n)}" for n in names])


if __name__ == "__main__":
    sys.exit(main())
