"""Stage ``station_explain@<STA>``: SHAP maps of one station's model.

``python -m quakeshap.stages.station_explain <STA>``: picks the
``stations.explain_per_class`` most confidently correct test traces of each class from
``reports/stations/<STA>/evaluate/predictions.csv`` (written to
``data/stations/selection/<STA>.csv``), then runs the ``explain`` stage on them with the
station's model and set (the ``shap`` parameters): ``data/stations/shap/<STA>/`` and
``reports/stations/<STA>/explain.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from quakeshap.artifacts import predictions, selection
from quakeshap.artifacts import stations as station_files
from quakeshap.config import load_params
from quakeshap.selection import most_confident_per_class
from quakeshap.stages import explain, run_stage


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return station_files.station_stage_args(
        __doc__,
        argv,
        spectrograms="spectrograms",
        model="model",
        predictions="predictions",
        selection="selection",
        out="shap",
        metrics="explain_metrics",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def pick() -> None:
        params = load_params(args.params)
        table = most_confident_per_class(
            predictions.load(args.predictions),
            params.stations.explain_per_class,
            params.task.magnitude.bin_width,
        )
        selection.write(args.selection, table)
        logging.getLogger("quakeshap.stages.station_explain").info(
            "%s: %d traces to explain", args.station, len(table)
        )

    code = run_stage("station_explain", pick)
    if code:
        return code
    names = ("params", "spectrograms", "model", "selection", "out", "metrics")
    return explain.main([f"--{n}={getattr(args, n)}" for n in names])


if __name__ == "__main__":
    sys.exit(main())
