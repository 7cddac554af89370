"""Stage ``spectrograms``: ``data/raw/`` → ``data/spectrograms/`` + ``reports/data/rejected.csv``.

Reads the catalogue of the stations in ``spectrogram.stations``, assigns the train/test
split (``split``), streams the waveforms chunk by chunk through the optional preprocessing
and the study's spectrogram (``docs/method.md`` §2), and writes the images, their metadata
and axes (:mod:`quakeshap.artifacts.spectrograms`). Unusable traces are listed with their
reason in ``reports/data/rejected.csv``; the stage fails when more than
``spectrogram.max_rejected_fraction`` of the listed traces are rejected. Nothing is left
half-written: the output folder is built in a temporary sibling and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from quakeshap.artifacts import metrics, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.record import CLASS_NAMES
from quakeshap.spectrogram import SpectrogramError, build_spectrogram_set
from quakeshap.stages import run_stage, stage_parser
from quakeshap.waveforms import rejection_kinds

log = logging.getLogger("quakeshap.stages.spectrograms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__, raw=raw.PATH, out=spectrogram_set.PATH, rejected=metrics.REJECTED_PATH
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every rejection")
    return parser.parse_args(argv)


def log_summary(metadata: pd.DataFrame, rejections: pd.DataFrame) -> None:
    """What was written: counts per split and class, rejections by kind, co-located groups."""
    log.info(
        "%d spectrograms written, %d traces rejected%s",
        len(metadata),
        len(rejections),
        "".join(f"; {n} {kind}" for kind, n in rejection_kinds(rejections).most_common()),
    )
    counts = pd.crosstab(metadata["split"], metadata["label"]).reindex(
        index=["train", "test"], columns=list(CLASS_NAMES), fill_value=0
    )
    for split, row in counts.iterrows():
        log.info("%s: %s", split, ", ".join(f"{n} {label}" for label, n in row.items()))
        if (row == 0).any():
            log.warning("the %s split lacks a class: later stages will fail or mislead", split)
    grouped = metadata["associato"] != 0
    log.info(
        "%d traces in %d co-located groups",
        grouped.sum(),
        metadata.loc[grouped, "associato"].nunique(),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        params = load_params(args.params)
        log_summary(*build_spectrogram_set(params, args.raw, args.out, args.rejected))

    return run_stage("spectrograms", work, errors=(SpectrogramError, OSError), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
