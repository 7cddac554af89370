"""Stage ``explainers``: every explainer on the same traces, scored against the demo's
ground truth (``docs/method.md`` §9).

Reads ``data/spectrograms/``, ``models/model.pt`` and ``reports/evaluate/predictions.csv``;
explains the ``explainers.per_class`` most confidently correct test traces of each class
with every configuration of ``explainers.configurations``, and writes
``reports/explainers/comparison.csv`` (:mod:`quakeshap.artifacts.explainer_comparison`)
and ``reports/metrics/explainers.json``. Neither holds timings: the same inputs give the
same bytes.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from quakeshap.artifacts import checkpoint, explainer_comparison, metrics, predictions
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.explainer_comparison import COMPARISON_COLUMNS
from quakeshap.config import load_params
from quakeshap.explain import ExplainError, compare, resume
from quakeshap.files import remove_outputs
from quakeshap.model import DeviceError
from quakeshap.selection import SelectionError, most_confident_per_class
from quakeshap.stages import run_stage, stage_parser

log = logging.getLogger("quakeshap.stages.explainers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__,
        spectrograms=spectrogram_set.PATH,
        model=checkpoint.PATH,
        predictions=predictions.PATH,
        out=explainer_comparison.PATH,
        metrics=metrics.PATHS["explainers"],
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="override shap.workers (benchmarks)"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    cfg = params.explainers
    # bad configurations fail before work
    runs = compare.configurations(cfg, resume.anchored(params.shap, args.params))
    truth = compare.truth_band(params.data, cfg.truth_threshold)
    remove_outputs(args.out, args.metrics)
    sset = spectrogram_set.load(args.spectrograms, mmap=True)
    if sset.task_kind != "prepost":
        # the ground truth scored here is the demo's pre/post band: other tasks are scored
        # against their own truth by the explain stage's band fractions (docs/method.md §11)
        log.info("task.kind %s: the explainer comparison is the pre/post task's; skipped",
                 sset.task_kind)  # fmt: skip
        explainer_comparison.write(args.out, pd.DataFrame(columns=COMPARISON_COLUMNS))
        metrics.write(args.metrics, {"skipped": f"task.kind {sset.task_kind}"})
        return
    chosen = most_confident_per_class(predictions.load(args.predictions), cfg.per_class)
    ckpt = checkpoint.load(args.model)
    if truth is not None:
        log.info("ground truth: the demo's classes differ most at %s", truth.region)
    table = compare.compare_explainers(sset, chosen, ckpt, runs, truth, args.workers)
    explainer_comparison.write(args.out, table)
    metrics.write(args.metrics, compare.summarize(table, truth))
    log.info("%d configuration(s) on %d trace(s): %s", len(runs), len(chosen), args.out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    errors = (DeviceError, ExplainError, SelectionError)
    return run_stage("explainers", lambda: run(args), errors=errors)


if __name__ == "__main__":
    sys.exit(main())
