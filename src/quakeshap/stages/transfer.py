"""Stage ``transfer@<split>``: every model on every station, and the stations page.

``python -m quakeshap.stages.transfer <event|trace>``: each station's model and the
network model of ``<split>`` scored on each station's test set (the transfer matrix,
:func:`quakeshap.stations.transfer_table`), the per-station SHAP band and window
fractions (from each station's ``explain.json``), the per-station class-mean maps on one
shared colour scale, and the network model's split leak. Writes
``reports/stations/transfer/<split>/`` (``transfer.csv``, ``shap_fractions.csv``, the
figures, ``stations.html``) and the metrics ``reports/stations/transfer/<split>.json``.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from quakeshap import files, report
from quakeshap.artifacts import checkpoint, metrics, shap_set
from quakeshap.artifacts import stations as station_files
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import PARAMS_FILE, Params, load_params
from quakeshap.explain.maps import BANDS_HZ, WINDOWS, band_fractions, band_key, window_fractions
from quakeshap.model import DeviceError, resolve_device
from quakeshap.plots.stations import plot_station_mean_maps, plot_transfer_matrix
from quakeshap.record import P_ARRIVAL_S
from quakeshap.stages import run_stage
from quakeshap.stations import StationsError, load_station_sets, transfer_summary, transfer_table

log = logging.getLogger("quakeshap.stages.transfer")

TRANSFER_FIGURE = "transfer_matrix.png"
MEAN_MAPS_FIGURE = "station_mean_maps.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", choices=station_files.NETWORK_SPLITS)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--spectrograms", type=Path, default=station_files.SPECTROGRAMS_DIR)
    parser.add_argument("--station-models", type=Path, default=station_files.MODELS_DIR)
    parser.add_argument("--shap", type=Path, default=station_files.SHAP_DIR)
    args = parser.parse_args(argv)
    paths = station_files.network_paths(args.split)
    args.network_model, args.network_metrics = paths.model, paths.train_metrics
    args.out, args.metrics = paths.transfer, paths.transfer_metrics
    return args


def shap_fractions(
    folder: Path, codes: list[str], frequency_hz: np.ndarray, time_s: np.ndarray
) -> pd.DataFrame:
    """Per station and class: the mean share of |SHAP| per frequency band and time window
    over the maps that enter the class mean (as ``explain.json``'s ``band_fraction`` and
    ``window_fraction``), one row per (station, class)."""
    rows = []
    for code in codes:
        sset = shap_set.load(folder / code)
        s_times = P_ARRIVAL_S + sset.index["p_s_diff_sec"].to_numpy(dtype=np.float64)
        bands = band_fractions(sset.values, frequency_hz)
        windows = window_fractions(sset.values, time_s, s_times)
        for c, group in enumerate(sset.groups):
            mask = shap_set.class_mean_mask(sset.index, c, sset.groups)
            row: dict[str, Any] = {"station": code, "class": group, "n_maps": int(mask.sum())}
            band_mean = bands[mask].mean(axis=0) if mask.any() else np.full(len(BANDS_HZ), np.nan)
            window_mean = (
                windows[mask].mean(axis=0) if mask.any() else np.full(len(WINDOWS), np.nan)
            )
            for (lo, hi), value in zip(BANDS_HZ, band_mean, strict=True):
                row[band_key(lo, hi)] = float(value)
            for name, value in zip(WINDOWS, window_mean, strict=True):
                row[name] = float(value)
            rows.append(row)
    return pd.DataFrame(rows)


def _png(fig: Figure, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def figures(
    params: Params,
    table: pd.DataFrame,
    score: str,
    shap_sets: dict[str, shap_set.ShapSet],
    first: SpectrogramSet,
) -> list:
    """The page's two figures, as :class:`quakeshap.report.ReportFigure`."""
    cfg = params.plots
    out = []
    with matplotlib.rc_context({"font.size": cfg.font_size}):
        fig = Figure(figsize=(cfg.width_in, cfg.height_in), layout="constrained")
        plot_transfer_matrix(fig, table, score)
        out.append(
            report.ReportFigure(
                TRANSFER_FIGURE,
                "Transfer matrix",
                f"{score} of every model (rows) on every station's test set (columns); the "
                "diagonal is each station's model at home, the last row the network model",
                _png(fig, cfg.dpi),
            )
        )
        fig = Figure(
            figsize=(cfg.width_in, max(cfg.height_in, 1.6 * len(shap_sets))),
            layout="constrained",
        )
        vmax = plot_station_mean_maps(
            fig,
            {code: s.mean_p_aligned for code, s in shap_sets.items()},
            next(iter(shap_sets.values())).groups,
            first.frequency_hz,
            first.time_s,
            matplotlib.colormaps[cfg.cmap],
        )
        out.append(
            report.ReportFigure(
                MEAN_MAPS_FIGURE,
                "Mean SHAP maps per station",
                f"each station model's class-mean map (E+N+Z, P at 5 s) on one colour scale "
                f"(±{vmax:.3g} logit): where the stations' models look alike, and where not",
                _png(fig, cfg.dpi),
            )
        )
    return out


def render(
    split: str,
    summary: dict[str, Any],
    table: pd.DataFrame,
    fractions: pd.DataFrame,
    figs: list,
    figures_dir: Path,
) -> str:
    """The stations page: the transfer matrix, the leak, the SHAP fractions, the figures
    (``figures_dir``: where they are saved beside the page, as their captions say)."""
    score = summary["score"]
    matrix = table.pivot(index="model", columns="station", values=score)
    models = list(dict.fromkeys(table["model"]))
    stations = list(dict.fromkeys(table["station"]))
    leak = summary["network_leak"]
    sections = [
        report.section(
            "transfer",
            "Transfer matrix",
            report.html_table(
                ["model", *stations],
                [[m, *matrix.loc[m, stations].tolist()] for m in models],
            )
            + report.html_table(
                ["", "value"],
                [
                    [
                        "station models on their own station (mean)",
                        summary["station_models"]["own_station_mean"],
                    ],
                    [
                        "station models on the other stations (mean)",
                        summary["station_models"]["other_stations_mean"],
                    ],
                    [
                        f"network model ({split} split), all test images",
                        summary[f"network_{split}"]["overall"],
                    ],
                ],
            ),
        ),
        report.section(
            "leak",
            "The network model's split",
            f"<p>Split by <code>{split}</code>: {leak['test_images_with_train_event']} of "
            f"{leak['n_test']} test images ({leak['share']:.1%}) share their event with a "
            f"train image; {leak['events_on_both_sides']} events sit on both sides.</p>",
        ),
        report.section(
            "shap",
            "SHAP per station",
            report.html_table(list(fractions.columns), fractions.itertuples(index=False)),
        ),
        report.section(
            "figures", "Figures", "".join(report.figure_html(f, figures_dir) for f in figs)
        ),
    ]
    toc = [("transfer", "Transfer"), ("leak", "Leak"), ("shap", "SHAP"), ("figures", "Figures")]
    return report.page(f"quakeshap: stations, network model split by {split}", sections, toc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        params = load_params(args.params)
        codes = list(params.stations.codes)
        sets = load_station_sets(args.spectrograms, codes)
        model_name = checkpoint.PATH.name
        models = {code: args.station_models / code / model_name for code in codes}
        models[f"network_{args.split}"] = args.network_model
        table = transfer_table(models, sets, resolve_device(params.train.device))
        summary = transfer_summary(table, codes)
        summary["network_leak"] = metrics.load(args.network_metrics, "network_train")["leak"]
        first = sets[codes[0]]
        fractions = shap_fractions(args.shap, codes, first.frequency_hz, first.time_s)
        shap_sets = {code: shap_set.load(args.shap / code) for code in codes}
        figs = figures(params, table, summary["score"], shap_sets, first)
        with files.atomic_dir(args.out) as tmp:
            files.write_csv(tmp / station_files.TRANSFER_FILE, table)
            files.write_csv(tmp / station_files.SHAP_FRACTIONS_FILE, fractions)
            (tmp / station_files.FIGURES).mkdir()
            for fig in figs:
                files.write_bytes(tmp / station_files.FIGURES / fig.filename, fig.png)
            files.write_text(
                tmp / station_files.PAGE_FILE,
                render(
                    args.split, summary, table, fractions, figs, args.out / station_files.FIGURES
                ),
            )
            metrics.write(args.metrics, summary)
        log.info(
            "transfer matrix of %d models on %d stations → %s", len(models), len(codes), args.out
        )

    return run_stage("transfer", work, errors=(DeviceError, StationsError))


if __name__ == "__main__":
    sys.exit(main())
