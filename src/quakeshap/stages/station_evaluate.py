"""Stage ``station_evaluate@<STA>``: one station's model on its own test set.

``python -m quakeshap.stages.station_evaluate <STA>``: the ``evaluate`` stage on
``data/stations/spectrograms/<STA>/`` with ``models/stations/<STA>/model.pt``; writes
``reports/stations/<STA>/evaluate/`` and ``evaluate.json``. (Every model on every station:
the ``transfer`` stages.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quakeshap.artifacts import stations as station_files
from quakeshap.config import PARAMS_FILE
from quakeshap.stages import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("station", help="station code")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    args = parser.parse_args(argv)
    paths = station_files.station_paths(args.station)
    args.spectrograms, args.model = paths.spectrograms, paths.model
    args.out, args.metrics = paths.evaluation, paths.evaluate_metrics
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("params", "spectrograms", "model", "out", "metrics")
    return evaluate.main([f"--{n}={getattr(args, n)}" for n in names])


if __name__ == "__main__":
    sys.exit(main())
