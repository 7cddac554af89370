"""Stage ``plots``: the study's figures (``reports/figures/``) and ``reports/index.html``.

Reads the outputs of every earlier stage (see ``dvc.yaml``), draws each figure of
``docs/method.md`` §6 with :mod:`quakeshap.plots` and embeds them in the one-page report of
:mod:`quakeshap.report`. Both outputs are written atomically: on any error the previous
ones stay as they were.

    python -m quakeshap.stages.plots [--params params.yaml] [--root .] [--study-maps JSON]

``--study-maps`` (not part of the DVC stage) adds the study's released SHAP maps beside this
run's, as ``python -m quakeshap.interop.study_shap compare`` wrote them
(``docs/study-release.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from quakeshap import files, plots, report
from quakeshap.artifacts import stations as station_files
from quakeshap.config import load_params, load_yaml
from quakeshap.report import FIGURES_DIR, REPORT_FILE
from quakeshap.stages import run_stage, stage_parser

log = logging.getLogger("quakeshap.stages.plots")

#: the report's title for each ``task.kind``
TITLES = {
    "prepost": "quakeshap: what the CNN learned from foreshocks and aftershocks",
    "ttf": "quakeshap: what the CNN learned about the time to failure",
    "magnitude": "quakeshap: what the CNN learned about earthquake magnitude",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = stage_parser(__doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="project folder")
    parser.add_argument(
        "--study-maps", type=Path, help="JSON of study_shap compare: the study's maps beside ours"
    )
    return parser.parse_args(argv)


def read_study_maps(path: Path) -> dict:
    """The JSON ``study_shap compare`` wrote; a :class:`~quakeshap.plots.PlotInputError` in
    one line when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise plots.PlotInputError(f"{path}: not a readable comparison ({exc})") from None


def stations_pages(splits: Sequence[str]) -> list[tuple[str, str]]:
    """``(split, link from the report)`` of each stations page the run's parameters make
    (``stations.network_splits``; the ``transfer`` stages write them)."""
    pages = []
    for split in splits:
        path = station_files.network_paths(split).transfer / station_files.PAGE_FILE
        pages.append((split, Path(os.path.relpath(path, REPORT_FILE.parent)).as_posix()))
    return pages


def run(params_path: Path, root: Path, study_maps: Path | None = None) -> None:
    params = load_params(params_path)
    comparison = None if study_maps is None else read_study_maps(study_maps)
    cfg = params.plots
    plots.resolve_cmap(cfg.cmap)  # a bad colour map fails before any reading
    inputs = plots.load_inputs(plots.InputPaths().under(root), cfg.example_trace)
    sampling_rate_hz = params.spectrogram.sampling_rate_hz
    window_s = params.spectrogram.n_samples / sampling_rate_hz

    embedded: list[report.ReportFigure] = []
    with matplotlib.rc_context(plots.style(cfg)), files.atomic_dir(root / FIGURES_DIR) as tmp:
        for spec in plots.iter_figures(inputs, cfg, sampling_rate_hz, window_s):
            files.save_figure(spec.figure, tmp / spec.filename, cfg.dpi)
            png = (tmp / spec.filename).read_bytes()
            embedded.append(report.ReportFigure(spec.filename, spec.title, spec.caption, png))
            log.info("drew %s", spec.filename)
        page = report.render_report(
            params=load_yaml(params_path),
            metadata=inputs.spectrograms.metadata,
            rejected=inputs.rejected,
            train_metrics=inputs.train_metrics,
            evaluate_metrics=inputs.evaluate_metrics,
            explain_metrics=inputs.explain_metrics,
            figures=embedded,
            comparison=inputs.explainer_comparison,
            explainers_metrics=inputs.explainers_metrics,
            title=TITLES[inputs.spectrograms.task_kind],
            study_columns=inputs.spectrograms.task_kind == "prepost",
            study_maps=comparison,
            stations_pages=stations_pages(params.stations.network_splits),
        )
    files.write_text(root / REPORT_FILE, page)
    log.info(
        "wrote %d figures to %s and %s (%.1f MB)",
        len(embedded),
        FIGURES_DIR,
        REPORT_FILE,
        len(page) / 1e6,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    matplotlib.use("Agg")
    return run_stage(
        "plots",
        lambda: run(args.params, args.root, args.study_maps),
        errors=(plots.PlotInputError,),
    )


if __name__ == "__main__":
    sys.exit(main())
