"""Stage ``station_spectrograms@<STA>``: one station's catalogue → its spectrogram set.

``python -m quakeshap.stages.station_spectrograms <STA>``: checks the layout of every
station of ``stations.codes`` first (:func:`quakeshap.stations.check_layout`), then builds
the station's set exactly as the ``spectrograms`` stage builds the main one, from its own
catalogue, split by event (``split.by: event_hash``: an event's side is the same at every
station). Writes ``data/stations/spectrograms/<STA>/`` and
``reports/stations/<STA>/rejected.csv`` (:mod:`quakeshap.artifacts.stations`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quakeshap.artifacts import raw
from quakeshap.artifacts import stations as station_files
from quakeshap.config import load_params
from quakeshap.spectrogram import SpectrogramError, build_spectrogram_set
from quakeshap.stages import run_stage, stage_parser
from quakeshap.stages.spectrograms import log_summary
from quakeshap.stations import StationsError, check_layout, station_params


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(__doc__, raw=raw.PATH)
    parser.add_argument("station", help="station code (a folder under data/raw)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rejected", type=Path, default=None)
    args = parser.parse_args(argv)
    paths = station_files.station_paths(args.station)
    args.out = args.out or paths.spectrograms
    args.rejected = args.rejected or paths.rejected
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        params = load_params(args.params)
        check_layout(args.raw, list(dict.fromkeys([*params.stations.codes, args.station])))
        built = build_spectrogram_set(
            station_params(params, args.station), args.raw, args.out, args.rejected
        )
        log_summary(*built)

    return run_stage(
        "station_spectrograms", work, errors=(SpectrogramError, StationsError, OSError)
    )


if __name__ == "__main__":
    sys.exit(main())
