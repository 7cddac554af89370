"""Stage ``select``: pick the test traces to explain (SPEC §4).

(The script is not called ``select.py``: in ``stages/`` that name would shadow the standard
library's ``select`` module for every stage script, since Python puts a script's folder first
on ``sys.path``.)

Reads ``reports/evaluate/predictions.csv`` (and ``data/spectrograms/metadata.csv`` to word
errors about example names); writes ``data/selection.csv``, one row per (trace, group), and
``reports/metrics/select.json`` (counts per group, including requests capped by what exists).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from quakeshap.config import ConfigError, load_params
from quakeshap.io import write_csv, write_json
from quakeshap.selection import SelectionError, select_traces

log = logging.getLogger("quakeshap.stages.select")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--predictions", default="reports/evaluate/predictions.csv", type=Path)
    parser.add_argument("--metadata", default="data/spectrograms/metadata.csv", type=Path)
    parser.add_argument("--out", default="data/selection.csv", type=Path)
    parser.add_argument("--summary", default="reports/metrics/select.json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_params(args.params).select
        for path in (args.predictions, args.metadata):
            if not path.is_file():
                raise SelectionError(f"{path} not found; run `dvc repro evaluate` first")
        predictions = pd.read_csv(args.predictions, dtype={"trace_name": str})
        known = pd.read_csv(args.metadata, usecols=["trace_name"], dtype=str)["trace_name"]
        selection = select_traces(predictions, cfg, known_traces=set(known))
    except (ConfigError, SelectionError) as exc:
        log.error("%s", exc)
        return 1
    write_csv(args.out, selection.table)
    write_json(args.summary, selection.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
