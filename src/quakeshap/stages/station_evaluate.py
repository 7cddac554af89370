"""Stage ``station_evaluate@<STA>``: one station's model on its own test set.

``python -m quakeshap.stages.station_evaluate <STA>``: the ``evaluate`` stage on
``data/stations/spectrograms/<STA>/`` with ``models/stations/<STA>/model.pt``; writes
``reports/stations/<STA>/evaluate/`` and ``evaluate.json``. (Every model on every station:
the ``transfer`` stages.)
"""

from __future__ import annotations

import argparse
import sys

from quakeshap.artifacts import stations as station_files
from quakeshap.stages import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return station_files.station_stage_args(
        __doc__,
        argv,
        spectrograms="spectrograms",
        model="model",
        out="evaluation",
        metrics="evaluate_metrics",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("params", "spectrograms", "model", "out", "metrics")
    return evaluate.main([f"--{n}={getattr(args, n)}" for n in names])


if __name__ == "__main__":
    sys.exit(main())
