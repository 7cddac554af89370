"""Stage ``explain``: SHAP maps of the selected traces (SPEC §5).

Reads ``data/spectrograms/``, ``models/model.pt`` and ``data/selection.csv``; writes
``data/shap/`` (maps, index, mean maps; see :mod:`quakeshap.explain`) and
``reports/metrics/explain.json``. The metrics hold no timings, so that the same inputs give
the same bytes; the wall time is logged, and ``--timing FILE`` writes it to a file outside
the DAG (for benchmarks).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from quakeshap import io
from quakeshap.config import ConfigError, load_params
from quakeshap.dataset import DatasetError, load_spectrogram_set
from quakeshap.explain import (
    ExplainError,
    aggregate,
    check_config,
    explain_selection,
    image_timing,
    summarize,
    write_shap_folder,
)
from quakeshap.model import CheckpointError, DeviceError, load_checkpoint

log = logging.getLogger("quakeshap.stages.explain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--spectrograms", type=Path, default=Path("data/spectrograms"))
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--selection", type=Path, default=Path("data/selection.csv"))
    parser.add_argument("--out", type=Path, default=Path("data/shap"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/metrics/explain.json"))
    parser.add_argument(
        "--workers", type=int, default=None, help="override shap.workers (benchmarks)"
    )
    parser.add_argument(
        "--timing", type=Path, default=None, help="also write the wall time to this JSON file"
    )
    return parser.parse_args(argv)


def read_selection(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ExplainError(f"{path}: no selection; run `dvc repro select`")
    return pd.read_csv(path, dtype={"trace_name": str})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_params(args.params).shap
        check_config(cfg)  # a bad masker or max_evals fails before anything is read
        io.remove_outputs(args.out, args.metrics)
        sset = load_spectrogram_set(args.spectrograms)
        selection = read_selection(args.selection)
        ckpt = load_checkpoint(args.model)
        quiet = not sys.stderr.isatty() or bool(os.environ.get("CI"))
        with tqdm(desc="explain", unit="trace", disable=quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            maps = explain_selection(sset, selection, ckpt, cfg, args.workers, progress)
        duration_s, p_arrival_s = image_timing(sset.axes)
        metrics = summarize(maps, sset.frequency_hz, sset.time_s, cfg, duration_s, p_arrival_s)
        write_shap_folder(args.out, maps, aggregate(maps, duration_s, p_arrival_s))
        io.write_json(args.metrics, metrics)
    except (ConfigError, DatasetError, CheckpointError, DeviceError, ExplainError) as exc:
        log.error("%s", exc)
        return 1
    n_traces = metrics["n_traces"]
    log.info(
        "%d map(s) of %d trace(s) in %.1f s (%.2f s per trace); additivity error max %.2e",
        metrics["n_maps"],
        n_traces,
        maps.seconds,
        maps.seconds / n_traces,
        metrics["additivity_error_max"],
    )
    if args.timing is not None:
        io.write_json(
            args.timing,
            {
                "seconds": maps.seconds,
                "n_traces": n_traces,
                "seconds_per_trace": maps.seconds / n_traces,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
