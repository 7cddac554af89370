"""SHAP maps: the aggregates against hand-built maps, and the explainer's contract
(additivity, parallel = serial, bad input) on a tiny random model. The ground truth on the
demo data, for every explainer, is in tests/test_compare_explainers.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from quakeshap import explain as ex
from quakeshap import record
from quakeshap.artifacts import checkpoint, metrics, selection, shap_set
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.checkpoint import CheckpointError
from quakeshap.artifacts.selection import (
    CLASS_GROUP,
    MISCLASSIFIED_GROUP,
    SELECTION_COLUMNS,
    WEEK_GROUP,
)
from quakeshap.artifacts.spectrograms import REQUIRED_COLUMNS, SpectrogramSet
from quakeshap.config import ShapConfig
from quakeshap.explain import ExplainError
from quakeshap.stages import explain as explain_stage
from tests.fixtures import (
    PARAMS_FILE,
    STATION,
    make_checkpoint,
    write_checkpoint,
    write_params,
    write_selection,
    write_spectrogram_set,
)

FREQUENCY_HZ = np.linspace(0.0, 50.0, 33)
TIME_S = 0.32 + 0.13 * np.arange(96)
SMALL = ShapConfig(max_evals=120, batch_size=40, workers=1)


# --------------------------------------------------------------------------------------
# fixtures: a tiny spectrogram set, a random-weight model, a selection
# --------------------------------------------------------------------------------------


def _metadata(n: int) -> pd.DataFrame:
    meta = pd.DataFrame({c: [f"{c}{i}" for i in range(n)] for c in REQUIRED_COLUMNS})
    meta["trace_name"] = [f"{STATION}.IV.{100 + i}_EV" for i in range(n)]
    meta["label"] = ["pre", "post"] * (n // 2) + ["pre"] * (n % 2)
    meta["split"] = ["train", "test"] * (n // 2) + ["test"] * (n % 2)
    meta["week"] = 40 + np.arange(n) % 6
    meta["p_s_diff_sec"] = 1.0 + 0.25 * (np.arange(n) % 5)
    meta["trace_p_arrival_s"] = record.P_ARRIVAL_S
    meta["trace_s_arrival_s"] = record.P_ARRIVAL_S + meta["p_s_diff_sec"]
    return meta


@pytest.fixture
def sset(rng) -> SpectrogramSet:
    n = 8
    # smooth-ish images (inpainting has structure to work with), min-max normalised per
    # image over the three channels and stored as floor(255 x), as the spectrograms are
    base = rng.random((n, 3, 33, 96))
    smooth = (base + np.roll(base, 1, axis=3) + np.roll(base, 1, axis=2)) / 3
    lo, hi = smooth.min(axis=(1, 2, 3), keepdims=True), smooth.max(axis=(1, 2, 3), keepdims=True)
    images = record.to_uint8((smooth - lo) / (hi - lo))
    # a 13 s waveform window at 100 Hz: the study's image timing (ex.image_timing)
    axes = {"n_samples": 1300, "sampling_rate_hz": record.SAMPLING_RATE_HZ}
    return SpectrogramSet(images, _metadata(n), FREQUENCY_HZ, TIME_S, axes)


def _pick(
    trace_name: str, group: str, label: str, predicted: str, explain_both: bool, week: int = 0
) -> dict:
    """One selection row."""
    return {
        "trace_name": trace_name,
        "group": group,
        "reason": "test",
        "label": label,
        "predicted": predicted,
        "week": week,
        "explain_both": explain_both,
    }


def _selection_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)[list(SELECTION_COLUMNS)]  # KeyError if a column is missing


def _selection(sset: SpectrogramSet) -> pd.DataFrame:
    names = sset.metadata["trace_name"]
    weeks = sset.metadata.set_index("trace_name")["week"]
    rows = [
        (names[1], CLASS_GROUP, "post", "post", False),
        (names[3], MISCLASSIFIED_GROUP, "post", "pre", True),
        (names[3], WEEK_GROUP, "post", "pre", False),
        (names[4], CLASS_GROUP, "pre", "pre", False),
        (names[4], WEEK_GROUP, "pre", "pre", False),
    ]
    return _selection_table([_pick(*row, week=int(weeks[row[0]])) for row in rows])


def _write_inputs(
    root: Path, sset: SpectrogramSet, ckpt: dict, chosen: pd.DataFrame, shap: dict | None = None
) -> Path:
    """The explain stage's inputs at their project paths under ``root``; returns the
    params file."""
    write_spectrogram_set(root / spectrogram_set.PATH, sset)
    write_checkpoint(root, ckpt)
    write_selection(root, chosen)
    return write_params(
        root, shap={"max_evals": 120, "batch_size": 40, "workers": 1, **(shap or {})}
    )


def stage_args(root: Path) -> list[str]:
    """The explain stage's arguments for the project under ``root``."""
    return [
        "--params", str(root / PARAMS_FILE),
        "--spectrograms", str(root / spectrogram_set.PATH),
        "--model", str(root / checkpoint.PATH),
        "--selection", str(root / selection.PATH),
        "--out", str(root / shap_set.PATH),
        "--metrics", str(root / metrics.PATHS["explain"]),
    ]  # fmt: skip


def _run_stage(root: Path) -> int:
    return explain_stage.main(stage_args(root))


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("inpaint_telea", "inpaint_telea"),
        ("inpaint_ns", "inpaint_ns"),
        ("blur(5,5)", "blur(5,5)"),
        (" blur( 3 , 7 ) ", "blur(3,7)"),
        ("0", 0.0),
        ("127.5", 127.5),
        (255, 255.0),
    ],
)
def test_parse_masker_accepts_shaps_maskers(spec, expected):
    assert ex.parse_masker(spec) == expected


@pytest.mark.parametrize(
    "spec", ["inpaint", "blur(5)", "blur(0,5)", "blur(a,b)", "gaussian", "-1", "256", "nan", ""]
)
def test_parse_masker_rejects_what_does_not_parse(spec):
    with pytest.raises(ExplainError, match=r"shap\.masker"):
        ex.parse_masker(spec)


def test_max_evals_below_shaps_minimum_fails_before_any_work(sset):
    ex.check_max_evals(ex.MIN_PARTITION_EVALS, (33, 96, 3))
    cfg = dataclasses.replace(SMALL, max_evals=ex.MIN_PARTITION_EVALS - 1)
    with pytest.raises(ExplainError, match=r"shap.max_evals: 3 is below .* minimum of 4"):
        # a checkpoint of the wrong shape would fail later: the parameter check comes first
        ex.explain_selection(sset, _selection(sset), make_checkpoint(height=32), cfg)


def test_masker_image_round_trip(sset, rng):
    model = ex.PixelModel(torch.nn.Identity(), torch.device("cpu"))  # returns the pixels

    def round_trip(image):
        u8, lo, hi = ex.to_masker_image(image)
        assert u8.shape == (33, 96, 3) and u8.dtype == np.uint8
        assert u8.min() == 0 and u8.max() == record.PIXEL_LEVELS
        model.set_image("t", lo, hi)
        return model(u8[None].astype(np.float64))[0].astype(np.float32), hi - lo

    # uint8 spectrograms (k / 255, spanning 0..1): the model sees exactly the training pixels
    image = sset.as_float(np.array([0]))[0]
    np.testing.assert_array_equal(round_trip(image)[0], image)
    # float32 spectrograms: within half a step of the 8-bit grid over the image's range
    image = (0.2 + 0.7 * rng.random((3, 33, 96))).astype(np.float32)
    pixels, span = round_trip(image)
    np.testing.assert_allclose(pixels, image, atol=0.5 * span / record.PIXEL_LEVELS + 1e-6)


def test_folding_batch_norm_keeps_the_function(rng):
    from quakeshap.model import model_from_checkpoint

    ckpt = make_checkpoint()
    for key, value in ckpt["state_dict"].items():  # non-trivial running statistics
        if key.endswith(("running_mean", "bias")) and value.is_floating_point():
            value.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, value.shape)))
        elif key.endswith("running_var"):
            value.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, value.shape)))
    x = torch.from_numpy(rng.random((4, 3, 33, 96), dtype=np.float32))
    plain = model_from_checkpoint(ckpt)
    fused = ex.fuse_batch_norm(model_from_checkpoint(ckpt))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# aggregates against hand-built maps
# --------------------------------------------------------------------------------------


def test_align_on_s_cuts_the_studys_window():
    # column j holds the value j: the cut shows which columns were taken
    maps = np.broadcast_to(np.arange(96, dtype=np.float32)[None, None, :, None], (3, 33, 96, 3))
    out = ex.align_on_s(maps, [1.0, 2.3, 6.5])
    assert out.shape == (3, 33, 59, 3)  # int(8 * 96 / 13) = 59
    # S = 6 s: start int((6 - 4) * 96 / 13) = int(14.77) = 14
    np.testing.assert_array_equal(out[0, 0, :, 0], np.arange(14, 73))
    # S = 7.3 s: start int(3.3 * 96 / 13) = int(24.37) = 24
    np.testing.assert_array_equal(out[1, 5, :, 2], np.arange(24, 83))
    # S = 11.5 s: start int(7.5 * 96 / 13) = 55, the window runs 18 columns past the image:
    # those are NaN, not shifted, so column 29 (S) still means S
    np.testing.assert_array_equal(out[2, 0, :41, 1], np.arange(55, 96))
    assert np.isnan(out[2, :, 41:]).all()


def test_band_fractions_against_a_map_with_known_mass():
    maps = np.zeros((2, 33, 96, 3))
    rows_10_20 = (FREQUENCY_HZ >= 10) & (FREQUENCY_HZ < 20)
    maps[0, rows_10_20] = -2.0  # the sign does not matter: |SHAP| mass
    maps[1, FREQUENCY_HZ == 50.0, :10, 0] = 1.0  # 50 Hz belongs to the last band
    maps[1, FREQUENCY_HZ == 0.0, :30, 0] = 1.0  # 3 times as much at 0 Hz
    got = ex.band_fractions(maps, FREQUENCY_HZ)
    np.testing.assert_allclose(got[0], [0, 1, 0, 0, 0])
    np.testing.assert_allclose(got[1], [0.75, 0, 0, 0, 0.25])
    # a band edge on a row: lo <= f < hi
    np.testing.assert_allclose(
        ex.band_fractions(np.ones((1, 3, 4, 1)), np.array([0.0, 10.0, 20.0]), [(0, 10), (10, 20)]),
        [[1 / 3, 2 / 3]],
    )
    # a uniform map gives each band its share of the rows
    np.testing.assert_allclose(
        ex.band_fractions(np.ones((1, 33, 96, 3)), FREQUENCY_HZ)[0], ex.band_share(FREQUENCY_HZ)
    )
    assert ex.band_share(FREQUENCY_HZ).sum() == pytest.approx(1.0)


def test_window_fractions_split_before_p_p_to_s_after_s():
    maps = np.zeros((2, 33, 96, 3))
    t = TIME_S
    maps[0, :, t < 5.0] = 1.0  # all before P
    maps[1, 0, (t >= 5.0) & (t < 6.5), 0] = 3.0  # P to S (S at 6.5 s)
    maps[1, 0, t >= 6.5, 0] = 1.0
    got = ex.window_fractions(maps, t, s_times=[7.0, 6.5])
    np.testing.assert_allclose(got[0], [1, 0, 0])
    n_ps, n_after = ((t >= 5) & (t < 6.5)).sum(), (t >= 6.5).sum()
    expected = np.array([0, 3 * n_ps, n_after]) / (3 * n_ps + n_after)
    np.testing.assert_allclose(got[1], expected)


def test_class_and_weekly_means_take_the_right_maps():
    class_week = shap_set.join_groups([CLASS_GROUP, WEEK_GROUP])
    wrong_week = shap_set.join_groups([MISCLASSIFIED_GROUP, WEEK_GROUP])
    index = pd.DataFrame(
        {
            "trace_name": ["a", "b", "c", "c", "d"],
            "class_index": [0, 0, 0, 1, 1],
            "groups": [class_week, CLASS_GROUP, wrong_week, wrong_week, WEEK_GROUP],
            "label": ["pre", "pre", "post", "post", "post"],
            "predicted": ["pre", "pre", "pre", "pre", "post"],
            "week": [40, 41, 40, 40, 46],
        }
    )
    maps = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 4, 3))
    means = ex.class_means(maps, index)
    np.testing.assert_allclose(means[0], 0.5)  # a and b: correct pre traces explained as pre
    assert np.isnan(means[1]).all()  # no correctly classified post trace in the class group
    weekly, table = ex.weekly_means(maps, index)
    # week group, each trace's predicted-class map: a (0) and c as pre (2) in week 40, d in 46
    assert list(table.columns) == list(shap_set.WEEKLY_COLUMNS)
    assert table.to_dict("list") == {"week": [40, 46], "n_maps": [2, 1]}
    np.testing.assert_allclose(weekly[:, 0, 0, 0], [1.0, 4.0])


# --------------------------------------------------------------------------------------
# the explainer on a tiny random model
# --------------------------------------------------------------------------------------


def test_parallel_equals_serial_and_maps_add_up(sset):
    ckpt, chosen = make_checkpoint(), _selection(sset)
    serial = ex.explain_selection(sset, chosen, ckpt, SMALL, workers=1)
    parallel = ex.explain_selection(sset, chosen, ckpt, SMALL, workers=2)
    np.testing.assert_array_equal(serial.values, parallel.values)
    pd.testing.assert_frame_equal(serial.index, parallel.index)

    index = serial.index
    # one map per (trace, class); trace 3 (misclassified) gets both classes, once
    assert index[["trace_name", "class_index"]].values.tolist() == [
        [sset.metadata.trace_name[1], 1],
        [sset.metadata.trace_name[3], 0],
        [sset.metadata.trace_name[3], 1],
        [sset.metadata.trace_name[4], 0],
    ]
    assert index["groups"].tolist()[1] == f"{MISCLASSIFIED_GROUP};{WEEK_GROUP}"
    assert serial.values.shape == (4, 33, 96, 3) and serial.values.dtype == np.float32
    # additivity: sum(SHAP) = f(x) - base, with f(x) evaluated independently of shap
    sums = serial.values.astype(np.float64).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(sums, index["f_x"] - index["base_value"], atol=1e-4)
    assert index["additivity_error"].max() < SMALL.additivity_tolerance
    assert np.abs(index["f_x"] - index["base_value"]).max() > 1e-3  # not a trivial check
    # the map is not uniform: the explainer split the image
    assert np.unique(serial.values[0]).size > 10


def test_a_trace_is_explained_the_same_whatever_else_is_explained(sset):
    ckpt, chosen = make_checkpoint(), _selection(sset)
    alone = chosen[chosen.trace_name == sset.metadata.trace_name[4]]
    full = ex.explain_selection(sset, chosen, ckpt, SMALL, workers=1)
    single = ex.explain_selection(sset, alone, ckpt, SMALL, workers=1)
    np.testing.assert_array_equal(full.values[-1], single.values[0])


def test_nan_logits_are_an_error(sset):
    ckpt = make_checkpoint()
    ckpt["state_dict"]["classifier.5.bias"][:] = float("nan")
    with pytest.raises(ExplainError, match=r"trace NRCA.IV.101_EV: the model returned NaN"):
        ex.explain_selection(sset, _selection(sset), ckpt, SMALL, workers=1)


def test_model_for_another_image_shape_is_an_error(sset):
    with pytest.raises(CheckpointError, match=r"trained on images of shape \(3, 32, 96\)"):
        ex.explain_selection(sset, _selection(sset), make_checkpoint(height=32), SMALL)


def test_additivity_beyond_tolerance_fails(sset):
    cfg = dataclasses.replace(SMALL, additivity_tolerance=1e-15)
    with pytest.raises(ExplainError, match="additivity violated"):
        ex.explain_selection(sset, _selection(sset), make_checkpoint(), cfg, workers=1)


@pytest.mark.parametrize("explainer", ["deep", "gradient", "integrated_gradients"])
def test_gradient_based_explainers_give_maps_in_the_same_layout(sset, explainer):
    cfg = dataclasses.replace(SMALL, explainer=explainer, background=3)
    chosen = _selection(sset).iloc[:2]  # trace 1 (post), trace 3 (both classes)
    maps = ex.explain_selection(sset, chosen, make_checkpoint(), cfg, workers=1)
    assert maps.values.shape == (3, 33, 96, 3) and np.isfinite(maps.values).all()
    errors = maps.index["additivity_error"].to_numpy()
    scale = np.abs(maps.index["f_x"] - maps.index["base_value"]).to_numpy()
    if explainer == "deep":  # DeepLIFT is additive up to floating point
        np.testing.assert_array_less(errors, 1e-3 * np.maximum(scale, 1))
    elif explainer == "integrated_gradients":  # complete up to the path integral's error
        np.testing.assert_array_less(errors, 0.02 * scale + 1e-4)
        assert maps.faithfulness is not None  # scored with the masker's fill all the same
    else:  # expected gradients: a Monte Carlo estimate, recorded but not exact
        assert np.isfinite(errors).all()


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def test_stage_writes_the_contract_and_is_deterministic(tmp_path, sset):
    _write_inputs(tmp_path, sset, make_checkpoint(), _selection(sset))
    assert _run_stage(tmp_path) == 0
    out = tmp_path / shap_set.PATH
    metrics_file = tmp_path / metrics.PATHS["explain"]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([
        shap_set.VALUES_FILE, shap_set.INDEX_FILE, shap_set.MEAN_P_FILE, shap_set.MEAN_S_FILE,
        shap_set.WEEKLY_MEAN_FILE, shap_set.WEEKLY_FILE,
    ])  # fmt: skip
    shaps = shap_set.load(out, image_hw=(33, 96))
    assert list(shaps.index.columns) == list(shap_set.INDEX_COLUMNS)
    assert len(shaps.index) == len(shaps.values) == 4
    assert shaps.mean_p_aligned.shape == (2, 33, 96, 3)
    assert shaps.mean_s_aligned.shape == (2, 33, 59, 3)
    assert shaps.weekly_mean.shape == (len(shaps.weekly), 33, 96, 3)
    summary = metrics.load(metrics_file, "explain")
    assert summary["n_maps"] == 4 and summary["n_traces"] == 3
    assert summary["additivity_error_max"] < 1e-3
    for name in record.CLASS_NAMES:
        if summary["n_class_maps"][name]:
            assert sum(summary["band_fraction"][name].values()) == pytest.approx(1.0)
            assert sum(summary["window_fraction"][name].values()) == pytest.approx(1.0)

    def outputs() -> dict[str, bytes]:
        found = {p.name: p.read_bytes() for p in out.iterdir()}
        return {**found, metrics_file.name: metrics_file.read_bytes()}

    before = outputs()
    assert _run_stage(tmp_path) == 0
    assert outputs() == before


def test_stage_writes_faithfulness_metrics_and_leaves_the_maps_alone(tmp_path, sset):
    """``shap.faithfulness`` adds ``faithfulness`` to explain.json; data/shap is unchanged."""
    from quakeshap.config import FaithfulnessConfig, to_dict

    def run(root: Path, enabled: bool) -> tuple[dict[str, bytes], dict]:
        checks = FaithfulnessConfig(
            enabled=enabled, n_steps=5, random_orders=2, randomisation_max_evals=30
        )
        shap = {"faithfulness": to_dict(checks)}
        _write_inputs(root, sset, make_checkpoint(), _selection(sset), shap=shap)
        assert _run_stage(root) == 0
        maps = {p.name: p.read_bytes() for p in (root / shap_set.PATH).iterdir()}
        return maps, metrics.load(root / metrics.PATHS["explain"], "explain")

    maps_on, summary_on = run(tmp_path / "on", True)
    maps_off, summary_off = run(tmp_path / "off", False)
    assert maps_on == maps_off
    assert summary_off == {k: v for k, v in summary_on.items() if k != "faithfulness"}
    checks = summary_on["faithfulness"]
    assert checks["fill"] == "inpaint_telea" and checks["rank_by"] == "signed"
    assert (checks["n_cells"], checks["n_steps"], checks["random_orders"]) == (33 * 96, 5, 2)
    # trace 1 (post) and 4 (pre) enter the class means; trace 3 (misclassified) adds 2 maps
    assert checks["n_maps"] == {"pre": 1, "post": 1, "all": 4}
    for key in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
        assert all(0 <= v <= 1 for v in checks[key].values()), key
    for group in ("pre", "post", "all"):
        assert checks["deletion_gap"][group] == pytest.approx(
            checks["random_deletion_auc"][group] - checks["deletion_auc"][group]
        )
    cascade = checks["randomisation"]
    assert cascade["max_evals"] == 30
    assert cascade["n_maps"] == {"pre": 1, "post": 1, "all": 2}
    assert set(cascade["spearman"]["all"]) == {"fc2", "fc1", "conv3", "conv2", "conv1"}
    assert all(-1 <= v <= 1 for v in cascade["spearman"]["pre"].values())


def test_stage_missing_trace_fails_and_leaves_no_output(tmp_path, sset, caplog):
    chosen = _selection(sset)
    chosen.loc[0, "trace_name"] = missing = f"{STATION}.IV.999_EV"
    _write_inputs(tmp_path, sset, make_checkpoint(), chosen)
    assert _run_stage(tmp_path) == 1
    assert missing in caplog.text and "not in the spectrogram set" in caplog.text
    assert not (tmp_path / shap_set.PATH).exists()
    assert not (tmp_path / metrics.PATHS["explain"]).exists()
    # no temporary folder left beside the output
    folder = (tmp_path / shap_set.PATH).parent
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("shap", "message"),
    [
        ({"masker": "smudge"}, "is not a masker"),
        ({"max_evals": 2}, "below the partition explainer's minimum"),
    ],
)
def test_stage_bad_parameters_fail_with_one_line(tmp_path, sset, caplog, shap, message):
    _write_inputs(tmp_path, sset, make_checkpoint(), _selection(sset), shap=shap)
    assert _run_stage(tmp_path) == 1
    assert message in caplog.text
    assert not (tmp_path / shap_set.PATH).exists()
