"""Figures: the expected files with stable bytes, and the properties each figure promises."""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import struct
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

from quakeshap import files, plots, published, record
from quakeshap.artifacts import explainer_comparison, metrics, raw, shap_set
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import ConfigError, PlotsConfig
from quakeshap.plots import PlotInputError, figures
from quakeshap.report import FIGURES_DIR, REPORT_FILE
from tests.fixtures import PARAMS_FILE, STATION, run_plots_stage

COOLWARM = matplotlib.colormaps["coolwarm"]


def _copy_inputs(root: Path, dest: Path) -> Path:
    """The project's inputs without the stage's outputs."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(FIGURES_DIR.name, REPORT_FILE.name))
    return dest


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return chunks


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def test_stage_writes_every_figure_with_stable_names(plots_project):
    root, facts = plots_project
    explained = {f"explained_{n}.png" for n in facts["misclassified"] + facts["examples"]}
    expected = {
        "dataset_overview.png",
        f"trace_{facts['example']}.png",
        "shap_mean_p_aligned.png",
        "shap_mean_s_aligned.png",
        "shap_weekly.png",
        "explainer_comparison.png",
        "confusion_matrix.png",
        "training_curves.png",
        *explained,
    }
    figure_dir = root / FIGURES_DIR
    assert {p.name for p in figure_dir.iterdir()} == expected
    assert len(explained) == 4  # two misclassified, one example per class
    dpi = yaml.safe_load((root / PARAMS_FILE).read_text())["plots"]["dpi"]
    for path in figure_dir.iterdir():
        data = path.read_bytes()
        chunks = _png_chunks(data)
        assert b"tIME" not in chunks, f"{path.name} carries a timestamp"
        assert b"Software" not in data, f"{path.name} carries a software stamp"
        with Image.open(path) as image:
            assert min(image.size) >= 2 * dpi  # a real figure, not an empty canvas
    assert (root / REPORT_FILE).is_file()
    # nothing temporary left beside the outputs
    assert not [p for p in figure_dir.parent.iterdir() if p.name.startswith(".")]


def test_stage_is_byte_identical_across_runs(plots_project, tmp_path):
    root, _ = plots_project
    again = _copy_inputs(root, tmp_path / "again")
    assert run_plots_stage(again) == 0
    first = sorted((root / FIGURES_DIR).iterdir())
    second = sorted((again / FIGURES_DIR).iterdir())
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between runs"
    assert (root / REPORT_FILE).read_bytes() == (again / REPORT_FILE).read_bytes()


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (shap_set.PATH / shap_set.WEEKLY_FILE, str(shap_set.PATH / shap_set.WEEKLY_FILE)),
        (metrics.PATHS["explain"], str(metrics.PATHS["explain"])),
        (spectrogram_set.PATH / spectrogram_set.AXES_FILE, spectrogram_set.AXES_FILE),
        (record.hdf5_path(raw.PATH, STATION, "pre"), record.hdf5_path("", STATION, "pre").name),
        (metrics.HISTORY_PATH, str(metrics.HISTORY_PATH)),
        (explainer_comparison.PATH, str(explainer_comparison.PATH)),
    ],
    ids=["weekly", "explain-metrics", "axes", "waveforms", "history", "explainers"],
)
def test_missing_input_is_a_clear_error_and_writes_nothing(
    plots_project, tmp_path, caplog, remove, named
):
    project = _copy_inputs(plots_project[0], tmp_path / "p")
    (project / remove).unlink()
    with caplog.at_level(logging.ERROR):
        assert run_plots_stage(project) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and named in errors[0] and "dvc repro" in errors[0]
    assert not (project / FIGURES_DIR).exists()
    assert not (project / REPORT_FILE).exists()


def test_inconsistent_shap_folder_is_rejected(plots_project, tmp_path, caplog):
    project = _copy_inputs(plots_project[0], tmp_path / "p")
    folder = project / shap_set.PATH
    shaps = shap_set.load(folder)
    shap_set.write(folder, dataclasses.replace(shaps, index=shaps.index.iloc[:-1]))
    with caplog.at_level(logging.ERROR):
        assert run_plots_stage(project) == 1
    assert f"{shap_set.VALUES_FILE} holds" in caplog.text
    assert shap_set.INDEX_FILE in caplog.text


def test_trace_missing_from_the_raw_data_is_named(plots_project, tmp_path):
    project = _copy_inputs(plots_project[0], tmp_path / "p")
    paths = plots.InputPaths().under(project)
    inputs = plots.load_inputs(paths)
    example, meta = inputs.example_trace, inputs.spectrograms.metadata
    label = meta.loc[meta["trace_name"] == example, "label"].iloc[0]
    path = record.hdf5_path(paths.raw, STATION, label)
    with h5py.File(path, "r") as h5:
        kept = {name: h5[name][()] for name in h5 if name != example}
    raw.write_waveforms(path, list(kept), list(kept.values()))
    with pytest.raises(PlotInputError, match=re.escape(example)):
        plots.load_inputs(paths)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("example_trace", "NRCA.IV.nope_EV", "plots.example_trace"),
        ("cmap", "not_a_cmap", "plots.cmap"),
        ("dpi", 0, "plots.dpi"),
    ],
)
def test_bad_plot_parameter_is_a_clear_error(plots_project, tmp_path, caplog, key, value, message):
    project = _copy_inputs(plots_project[0], tmp_path / "p")
    params = yaml.safe_load((project / PARAMS_FILE).read_text())
    params["plots"][key] = value
    (project / PARAMS_FILE).write_text(yaml.safe_dump(params))
    with caplog.at_level(logging.ERROR):
        assert run_plots_stage(project) == 1
    assert message in caplog.text
    assert not (project / FIGURES_DIR).exists()


def test_failure_while_drawing_keeps_the_previous_outputs(plots_project, tmp_path, monkeypatch):
    project = tmp_path / "p"
    shutil.copytree(plots_project[0], project)
    before = {p.name: p.read_bytes() for p in (project / FIGURES_DIR).iterdir()}
    page = (project / REPORT_FILE).read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    # fails at the third figure, after two were saved in the temporary folder
    monkeypatch.setattr(figures, "plot_mean_shap", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        run_plots_stage(project)
    after = {p.name: p.read_bytes() for p in (project / FIGURES_DIR).iterdir()}
    assert after == before
    assert (project / REPORT_FILE).read_bytes() == page
    assert not [p for p in (project / FIGURES_DIR).parent.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# colour scales and maps
# --------------------------------------------------------------------------------------


def test_symmetric_limit_ignores_nan_and_never_returns_zero():
    assert plots.symmetric_limit(np.array([0.5, -2.0]), np.array([np.nan, 1.0])) == 2.0
    assert plots.symmetric_limit(np.zeros(3), np.full(2, np.nan)) == 1.0


def test_shap_rgba_opacity_is_proportional_to_magnitude():
    values = np.array([[-2.0, -1.0, 0.0, 0.5, 2.0, np.nan]])
    rgba = plots.shap_rgba(values, 2.0, COOLWARM)
    np.testing.assert_allclose(rgba[0, :, 3], [1.0, 0.5, 0.0, 0.25, 1.0, 0.0])
    np.testing.assert_allclose(rgba[0, 0, :3], COOLWARM(0.0)[:3])  # most negative: blue end
    np.testing.assert_allclose(rgba[0, 4, :3], COOLWARM(1.0)[:3])  # most positive: red end


def _class_maps(rng, n_times):
    maps = rng.normal(0, 0.01, (2, 33, n_times, 3)).astype(np.float32)
    maps[0, 5, 7, :] = -0.3  # the largest |value| of both panels, in the pre panel
    maps[1, 20, 3, :] = 0.15
    return maps


@pytest.mark.parametrize("aligned_to", ["P", "S"])
def test_plot_mean_shap_shares_one_symmetric_scale(rng, aligned_to):
    n_times = 96 if aligned_to == "P" else 59
    maps = _class_maps(rng, n_times)
    freq, time = np.linspace(0, 50, 33), 0.32 + 0.13 * np.arange(96)
    arrivals = [rng.uniform(1.0, 3.0, 7), rng.uniform(1.0, 3.0, 5)]
    fig = Figure()
    axes = fig.subplots(1, 2)
    mappable = plots.plot_mean_shap(axes, maps, aligned_to, arrivals, freq, time, COOLWARM)
    assert mappable.norm.vmin == pytest.approx(-0.3) and mappable.norm.vmax == pytest.approx(0.3)
    pre, post = (ax.images[0].get_array() for ax in axes)
    assert pre[5, 7, 3] == pytest.approx(1.0)  # the extreme is fully opaque ...
    assert post[20, 3, 3] == pytest.approx(0.5)  # ... and the other panel is on its scale
    np.testing.assert_allclose(post[20, 3, :3], COOLWARM(0.75)[:3], atol=0.02)
    left, right, _, _ = axes[0].images[0].get_extent()
    if aligned_to == "P":
        assert (left, right) == pytest.approx((time[0] - 0.065, time[-1] + 0.065))
    else:
        assert (left, right) == pytest.approx((0.0, record.S_WINDOW_LENGTH_S))
    phase = record.P_ARRIVAL_S if aligned_to == "P" else record.S_WINDOW_BEFORE_S
    assert any(tuple(line.get_xdata()) == (phase, phase) for line in axes[0].lines)
    # a twin axis per panel histograms the other phase's arrivals, in its lower third
    twins = [ax for ax in fig.axes if ax not in list(axes)]
    assert len(twins) == 2
    other = "S" if aligned_to == "P" else "P"
    for twin, times in zip(twins, arrivals, strict=True):
        assert twin.get_ylabel() == f"{other} arrivals (traces)"
        counts, _ = np.histogram(times, np.linspace(left, right, 41))
        assert twin.get_ylim()[1] == pytest.approx(3 * counts.max())


def test_plot_mean_shap_rejects_unknown_alignment(rng):
    fig = Figure()
    with pytest.raises(ValueError, match="aligned_to"):
        plots.plot_mean_shap(
            fig.subplots(1, 2),
            _class_maps(rng, 96),
            "Q",
            None,
            np.arange(33),
            np.arange(96),
            COOLWARM,
        )


def test_weekly_panels_share_one_scale(rng):
    weekly = np.zeros((3, 33, 96, 3), dtype=np.float32)
    weekly[0, 10, 10] = 1.0
    weekly[1, 10, 10] = 2.0
    weekly[2, 10, 10] = -4.0
    fig = Figure()
    plots.plot_weekly_shap(
        fig,
        weekly,
        [40, 44, 45],
        [3, 2, 1],
        np.linspace(0, 50, 33),
        np.arange(96) * 0.13,
        COOLWARM,
        {40: "pre", 44: "post"},
    )
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [
        "week 40 pre (n=3)",
        "week 44 post (n=2)",
        "week 45 (n=1)",
    ]
    alphas = [ax.images[0].get_array()[10, 10, 3] for ax in panels]
    np.testing.assert_allclose(alphas, [0.25, 0.5, 1.0])


# --------------------------------------------------------------------------------------
# tables behind the figures
# --------------------------------------------------------------------------------------


def test_confusion_matrix_counts_match_hand_count():
    labels = ["pre", "pre", "pre", "post", "post", 1]
    predicted = ["pre", "post", "pre", "post", "pre", "post"]
    fig = Figure()
    ax = fig.add_subplot()
    matrix = plots.plot_confusion_matrix(ax, labels, predicted)
    np.testing.assert_array_equal(matrix, [[2, 1], [1, 2]])
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["1\n33.3%", "1\n33.3%", "2\n66.7%", "2\n66.7%"]
    assert "accuracy 0.6667" in ax.get_title()


def test_shap_trace_stats_use_the_predicted_class_map():
    values = np.zeros((3, 2, 2, 3), dtype=np.float32)
    values[0] = 1.0  # trace a, class pre (not predicted)
    values[1, 0, 0, 0] = -3.0  # trace a, class post (predicted)
    values[1, 1, 1, 2] = 6.0
    values[2] = -0.5  # trace b, class pre (predicted)
    index = pd.DataFrame(
        {
            "trace_name": ["a", "a", "b"],
            "class_name": ["pre", "post", "pre"],
            "predicted": ["post", "post", "pre"],
        }
    )
    stats = plots.shap_trace_stats(values, index)
    assert stats["trace_name"].tolist() == ["a", "b"]
    np.testing.assert_allclose(stats["min"], [-3.0, -0.5])
    np.testing.assert_allclose(stats["max"], [6.0, -0.5])
    np.testing.assert_allclose(stats["mean"], [3.0 / 12, -0.5])


def test_aligned_arrivals_use_the_class_mean_members():
    index = pd.DataFrame(
        {
            "trace_name": ["a", "b", "c", "d"],
            "groups": ["class", "class;week", "misclassified", "class"],
            "class_index": [0, 1, 1, 0],
            "class_name": ["pre", "post", "post", "pre"],
            "label": ["pre", "post", "pre", "post"],
            "predicted": ["pre", "post", "post", "pre"],
            "p_s_diff_sec": [1.0, 2.0, 1.5, 1.2],
        }
    )
    p = plots.aligned_arrivals(index, "P")
    s = plots.aligned_arrivals(index, "S")
    np.testing.assert_allclose(p[0], [6.0])  # c is misclassified, d explained for pre
    np.testing.assert_allclose(p[1], [7.0])
    np.testing.assert_allclose(s[0], [3.0])
    np.testing.assert_allclose(s[1], [2.0])


def test_traces_to_draw_orders_and_deduplicates():
    selection = pd.DataFrame(
        {
            "trace_name": ["c1", "e1", "m1", "e2", "m1", "w1"],
            "group": ["class", "example", "misclassified", "example", "week", "week"],
        }
    )
    known = ["c1", "e1", "e2", "m1", "w1"]
    example, explained = plots.traces_to_draw(selection, known, None)
    assert example == "e1" and explained == ("m1", "e1", "e2")
    assert plots.traces_to_draw(selection, known, "w1")[0] == "w1"
    with pytest.raises(PlotInputError, match=r"plots\.example_trace"):
        plots.traces_to_draw(selection, known, "zz")
    with pytest.raises(PlotInputError, match="another run"):
        plots.traces_to_draw(selection, ["c1", "e1", "e2"], None)


def test_resolve_cmap_names_the_parameter():
    assert plots.resolve_cmap("coolwarm").name == "coolwarm"
    with pytest.raises(ConfigError, match=r"plots\.cmap"):
        plots.resolve_cmap("nope")


def test_figure_parameters_reach_the_figures(plots_project):
    root, _ = plots_project
    inputs = plots.load_inputs(plots.InputPaths().under(root))
    cfg = PlotsConfig(dpi=30, font_size=13.0, cmap="RdBu_r", width_in=7.0, height_in=4.0)
    with matplotlib.rc_context(plots.style(cfg)):
        specs = {s.filename: s.figure for s in plots.iter_figures(inputs, cfg, 100.0, 13.0)}
    assert tuple(specs["shap_mean_p_aligned.png"].get_size_inches()) == pytest.approx((7.0, 3.0))
    assert tuple(specs["dataset_overview.png"].get_size_inches()) == pytest.approx((7.0, 6.4))
    overview = specs["dataset_overview.png"]
    overview.draw_without_rendering()
    by_label = {ax.get_ylabel(): ax.get_position() for ax in overview.axes}
    beside = by_label["events per day"].y1 - by_label["SHAP value per trace (logit)"].y0
    # the map fills the two rows beside it (an equal-aspect box would leave a gap)
    assert by_label["latitude (°N)"].height > 0.8 * beside
    ax = specs["training_curves.png"].axes[0]
    assert ax.xaxis.label.get_fontsize() == pytest.approx(13.0)
    mean = specs["shap_mean_p_aligned.png"].axes[0].images[0].get_array()
    assert mean.shape[-1] == 4  # RGBA drawn with the chosen map


def test_same_figure_renders_to_identical_bytes(rng, tmp_path):
    maps = _class_maps(rng, 96)
    paths = []
    for k in range(2):
        fig = Figure(figsize=(6, 3), layout="constrained")
        axes = fig.subplots(1, 2)
        arrivals = [np.array([6.0, 6.5]), np.array([7.0])]
        mappable = plots.plot_mean_shap(
            axes, maps, "P", arrivals, np.linspace(0, 50, 33), np.arange(96) * 0.13, COOLWARM
        )
        fig.colorbar(mappable, ax=axes)
        paths.append(tmp_path / f"{k}.png")
        files.save_figure(fig, paths[-1], dpi=40)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_explainer_figure_draws_every_configuration_against_a_uniform_map(plots_project):
    root, facts = plots_project
    table = explainer_comparison.load(root / explainer_comparison.PATH)
    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot()
    regions = plots.plot_explainer_fractions(ax, table, "post")
    drawn = table[
        (table["class_name"] == "post") & (table["measure"] != explainer_comparison.WINDOW)
    ]
    assert regions == list(dict.fromkeys(drawn["region"]))
    truth = drawn["measure"] == explainer_comparison.TRUTH
    assert regions[-1] == drawn.loc[truth, "region"].iloc[0]
    # one bar per (configuration, region), as high as the table's value
    heights = [bar.get_height() for bars in ax.containers for bar in bars]
    assert len(heights) == len(facts["configurations"]) * len(regions)
    np.testing.assert_allclose(sorted(heights), sorted(drawn["value"]))
    # one line per region at the uniform map's share
    (lines,) = ax.collections
    levels = [seg[0][1] for seg in lines.get_segments()]
    np.testing.assert_allclose(levels, drawn.drop_duplicates("region")["uniform"])
    assert "(truth)" in ax.get_xticklabels()[-1].get_text()
    # the study's published fractions (real record) as diamonds over the 10 Hz bands
    (study,) = [line for line in ax.get_lines() if line.get_label() == "the study (real record)"]
    bands = [r for r in regions if r in published.BAND_FRACTION["post"]]
    assert len(bands) == 5
    np.testing.assert_allclose(
        study.get_ydata(), [published.BAND_FRACTION["post"][b] for b in bands]
    )
