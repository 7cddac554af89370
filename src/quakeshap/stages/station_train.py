"""Stage ``station_train@<STA>``: the CNN2D of one station, trained on its set alone.

``python -m quakeshap.stages.station_train <STA>``: the ``train`` stage's recipe
(``docs/method.md`` §3, the ``train`` parameters) on
``data/stations/spectrograms/<STA>/``; writes ``models/stations/<STA>/`` and
``reports/stations/<STA>/{train.json,history.csv}`` (:mod:`quakeshap.artifacts.stations`).
"""

from __future__ import annotations

import argparse
import sys

from quakeshap.artifacts import stations as station_files
from quakeshap.stages import train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return station_files.station_stage_args(
        __doc__,
        argv,
        spectrograms="spectrograms",
        models="models",
        metrics="train_metrics",
        history="history",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("params", "spectrograms", "models", "metrics", "history")
    return train.main([f"--{n}={getattr(args, n)}" for n in names])


if __name__ == "__main__":
    sys.exit(main())
