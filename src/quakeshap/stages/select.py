"""Stage ``select``: pick the test traces to explain (``docs/method.md`` §4).

Reads ``reports/evaluate/predictions.csv`` (and ``data/spectrograms/metadata.csv`` to word
errors about example names); writes ``data/selection.csv``, one row per (trace, group), and
``reports/metrics/select.json`` (counts per group, including requests capped by what exists).
"""

from __future__ import annotations

import argparse
import sys

from quakeshap.artifacts import metrics, predictions, selection
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.selection import SelectionError, select_traces
from quakeshap.stages import run_stage, stage_parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__,
        predictions=predictions.PATH,
        spectrograms=spectrogram_set.PATH,
        out=selection.PATH,
        summary=metrics.PATHS["select"],
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        params = load_params(args.params)
        table = predictions.load(args.predictions)
        known = spectrogram_set.load_trace_names(args.spectrograms)
        chosen = select_traces(
            table, params.select, known_traces=set(known),
            bin_width=params.task.magnitude.bin_width,
        )  # fmt: skip
        selection.write(args.out, chosen.table)
        metrics.write(args.summary, chosen.summary)

    return run_stage("select", work, errors=(SelectionError,))


if __name__ == "__main__":
    sys.exit(main())
