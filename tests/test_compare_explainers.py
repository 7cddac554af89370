"""Every explainer on the same traces (:mod:`quakeshap.explain.compare`, stage
``explainers``): the scores against hand-built maps, the parameters, the stage's contract on
a tiny random model, and the conclusions that hold on a model trained on the demo data."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from quakeshap import record
from quakeshap.artifacts import (
    ArtifactError,
    checkpoint,
    explainer_comparison,
    metrics,
    predictions,
)
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.selection import CLASS_GROUP, SELECTION_COLUMNS
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import (
    ConfigError,
    DataConfig,
    ExplainersConfig,
    FaithfulnessConfig,
    ShapConfig,
    load_yaml,
    parse_params,
    to_dict,
)
from quakeshap.evaluation import predictions_table
from quakeshap.explain import BANDS_HZ, WINDOWS, ExplainError, ShapMaps, compare
from quakeshap.explain.maps import band_key
from quakeshap.selection import most_confident_per_class
from quakeshap.stages import explainers as explainers_stage
from tests.fixtures import (
    PARAMS_FILE,
    REPO_ROOT,
    demo_spectrogram_set,
    make_checkpoint,
    make_spectrogram_set,
    write_checkpoint,
    write_params,
    write_predictions,
    write_spectrogram_set,
)

FREQUENCY_HZ = np.linspace(0.0, 50.0, 33)
TIME_S = 0.32 + 0.13 * np.arange(96)
#: the ``shap`` settings every tiny run shares: in-process, small background, no
#: faithfulness checks (one test turns them on, small)
TINY_SHAP = ShapConfig(
    batch_size=40, background=4, workers=1, faithfulness=FaithfulnessConfig(enabled=False)
)
#: faithfulness checks small enough for a unit test
SMALL_CHECKS = FaithfulnessConfig(
    n_steps=4, random_orders=2, randomisation_per_class=1, randomisation_max_evals=30
)
#: two partition maskers and a gradient explainer, at a budget that keeps a run short
TINY = ExplainersConfig(
    per_class=1, configurations=("partition:blur(3,3)", "partition:0", "deep"), max_evals=120
)
BAND, WINDOW, TRUTH = (
    explainer_comparison.BAND,
    explainer_comparison.WINDOW,
    explainer_comparison.TRUTH,
)


# --------------------------------------------------------------------------------------
# fixtures: hand-built maps, a tiny spectrogram set with its predictions
# --------------------------------------------------------------------------------------


def _index(labels: list[str], p_s_diff_sec: list[float]) -> pd.DataFrame:
    """A SHAP index of correctly classified ``class`` picks, each map its own class's."""
    return pd.DataFrame(
        {
            "trace_name": [f"t{i}" for i in range(len(labels))],
            "class_index": [record.class_index(c) for c in labels],
            "class_name": labels,
            "groups": CLASS_GROUP,
            "label": labels,
            "predicted": labels,
            "p_s_diff_sec": p_s_diff_sec,
        }
    )


def _run(name: str = "partition:inpaint_telea") -> compare.Configuration:
    cfg = dataclasses.replace(TINY, configurations=(name,))
    return compare.configurations(cfg, TINY_SHAP)[0]


@pytest.fixture
def sset(rng) -> SpectrogramSet:
    """Eight images at the study's shape (pre then post, half of them test traces) with the
    image timing and P–S times the scores need."""
    small = make_spectrogram_set(rng, 4, 4, shape=(3, 33, 96), test_fraction=0.5)
    n = len(small.metadata)
    meta = small.metadata.assign(
        split=["train", "test"] * (n // 2),
        week=40,
        p_s_diff_sec=1.0 + 0.25 * (np.arange(n) % 5),
        trace_p_arrival_s=record.P_ARRIVAL_S,
    )
    meta["trace_s_arrival_s"] = record.P_ARRIVAL_S + meta["p_s_diff_sec"]
    axes = {**small.axes, "n_samples": 1300, "sampling_rate_hz": record.SAMPLING_RATE_HZ}
    return SpectrogramSet(small.images, meta, FREQUENCY_HZ, TIME_S, axes)


def _predictions(sset: SpectrogramSet, margins: list[float]) -> pd.DataFrame:
    """The test traces' predictions, each right with the given logit margin (negative:
    wrong)."""
    test = sset.metadata[sset.metadata["split"] == "test"].reset_index(drop=True)
    sign = np.where(test["label"] == "post", 1.0, -1.0) * np.asarray(margins)
    return predictions_table(test, np.stack([-sign / 2, sign / 2], axis=1))


# --------------------------------------------------------------------------------------
# the scores
# --------------------------------------------------------------------------------------


def test_a_uniform_map_scores_exactly_the_uniform_share_everywhere():
    index = _index(["pre", "post", "post"], [1.0, 1.5, 2.2])
    maps = ShapMaps(np.ones((3, 33, 96, 3), np.float32), index, 0.0)
    truth = compare.TruthBand(26.5625, 42.1875)
    table = compare.score_maps(maps, FREQUENCY_HZ, TIME_S, _run(), truth)
    assert list(table.columns) == list(explainer_comparison.COMPARISON_COLUMNS)
    np.testing.assert_allclose(table["value"], table["uniform"], rtol=1e-12)
    np.testing.assert_allclose(table["ratio"], 1.0, rtol=1e-12)
    post_truth = table[(table["measure"] == TRUTH) & (table["class_name"] == "post")]
    assert post_truth["uniform"].iloc[0] == pytest.approx(11 / 33)  # rows 17..27 of 33
    assert post_truth["n_maps"].iloc[0] == 2


def test_scores_of_maps_with_known_mass():
    """pre: all mass in the 30-40 Hz rows after S; post: half before P in 0-10 Hz, half
    between P and S in 20-30 Hz, with opposite signs (|SHAP| counts, not the sign)."""
    index = _index(["pre", "post"], [2.0, 2.0])  # S at 7 s
    maps = np.zeros((2, 33, 96, 3), np.float32)
    rows = {f"{lo}_{hi}": (FREQUENCY_HZ >= lo) & (FREQUENCY_HZ < hi) for lo, hi in BANDS_HZ}
    maps[0][np.ix_(rows["30_40"], TIME_S >= 7.0)] = 2.0
    maps[1][np.ix_(rows["0_10"], TIME_S < 5.0)] = 1.0 / (rows["0_10"].sum() * (TIME_S < 5).sum())
    between = (TIME_S >= 5.0) & (TIME_S < 7.0)
    maps[1][np.ix_(rows["20_30"], between)] = -1.0 / (rows["20_30"].sum() * between.sum())
    truth = compare.TruthBand(30.0, 40.0)  # the rows of 30-40 Hz, both edges included
    table = compare.score_maps(ShapMaps(maps, index, 0.0), FREQUENCY_HZ, TIME_S, _run(), truth)
    value = table.set_index(list(explainer_comparison.KEY_COLUMNS))["value"][_run().name]
    assert value["pre", BAND, "30_40hz"] == pytest.approx(1.0)
    assert value["pre", WINDOW, "after_s"] == pytest.approx(1.0)
    assert value["pre", TRUTH, truth.region] == pytest.approx(1.0)
    assert value["post", BAND, "0_10hz"] == pytest.approx(0.5)
    assert value["post", BAND, "20_30hz"] == pytest.approx(0.5)
    assert value["post", WINDOW, "before_p"] == pytest.approx(0.5)
    assert value["post", WINDOW, "p_to_s"] == pytest.approx(0.5)
    assert value["post", TRUTH, truth.region] == pytest.approx(0.0)
    for (_, measure), part in table[table["measure"] != TRUTH].groupby(["class_name", "measure"]):
        assert part["value"].sum() == pytest.approx(1.0), measure
        assert part["uniform"].sum() == pytest.approx(1.0), measure


def test_real_data_have_no_truth_rows_and_null_truth_metrics():
    index = _index(["pre", "post"], [1.0, 1.0])
    maps = ShapMaps(np.random.default_rng(0).normal(size=(2, 33, 96, 3)), index, 0.0)
    table = compare.score_maps(maps, FREQUENCY_HZ, TIME_S, _run(), truth=None)
    assert set(table["measure"]) == {BAND, WINDOW}
    assert len(table) == 2 * (len(BANDS_HZ) + len(WINDOWS))
    assert compare.truth_band(DataConfig(source="zenodo"), 0.8) is None
    summary = compare.summarize(table, None)
    assert summary["truth_ratio"] is None and summary["truth_band_hz"] is None
    assert summary["n_maps"] == {"pre": 1, "post": 1}


def test_a_class_without_maps_has_no_rows(caplog):
    index = _index(["post", "post"], [1.0, 1.0])
    maps = ShapMaps(np.ones((2, 33, 96, 3), np.float32), index, 0.0)
    with caplog.at_level(logging.WARNING):
        table = compare.score_maps(maps, FREQUENCY_HZ, TIME_S, _run())
    assert set(table["class_name"]) == {"post"}
    assert "no pre map" in caplog.text


def test_the_demo_truth_band_is_the_generators():
    from quakeshap.demo import discriminative_band_hz

    data = DataConfig()
    band = compare.truth_band(data, 0.8)
    assert (band.lo_hz, band.hi_hz) == discriminative_band_hz(data.demo, fraction=0.8)
    assert band.region == band_key(band.lo_hz, band.hi_hz)
    wider = compare.truth_band(data, 0.5)
    assert wider.lo_hz <= band.lo_hz and wider.hi_hz >= band.hi_hz


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------


def test_configurations_take_masker_and_budget_and_share_the_rest():
    cfg = ExplainersConfig(
        configurations=("partition:blur( 3, 3)", "partition:7", "deep"), faithfulness=True
    )
    shap_cfg = ShapConfig(batch_size=25, seed=9, background=7, max_evals=10)
    runs = compare.configurations(cfg, shap_cfg)
    assert [r.name for r in runs] == list(cfg.configurations)
    assert [(r.shap.explainer, r.shap.masker) for r in runs[:2]] == [
        ("partition", "blur(3,3)"),
        ("partition", "7.0"),
    ]
    assert runs[2].shap.explainer == "deep" and not runs[2].is_partition
    assert all(r.shap.faithfulness == shap_cfg.faithfulness for r in runs)
    unchecked = compare.configurations(dataclasses.replace(cfg, faithfulness=False), shap_cfg)
    assert not any(r.shap.faithfulness.enabled for r in unchecked)
    for r in runs:
        assert (r.shap.max_evals, r.shap.batch_size, r.shap.seed, r.shap.background) == (
            cfg.max_evals,
            25,
            9,
            7,
        )


def test_every_explainer_shap_offers_is_a_configuration():
    """The list follows shap.explainer's choices: a new explainer is one more line."""
    import typing

    names = typing.get_args(typing.get_type_hints(ShapConfig)["explainer"])
    specs = tuple(n if n != "partition" else "partition:inpaint_telea" for n in names)
    assert [e for e, _ in ExplainersConfig(configurations=specs).parsed()] == list(names)


@pytest.fixture
def raw_params() -> dict:
    return load_yaml(REPO_ROOT / PARAMS_FILE)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("configurations", ["partition"], r"explainers\.configurations: 'partition' is not"),
        ("configurations", ["deep:blur(3,3)"], r"explainers\.configurations"),
        ("configurations", ["lime"], r"explainers\.configurations: 'lime'.*deep"),
        ("configurations", ["deep", "deep"], r"explainers\.configurations: \['deep'\] listed"),
        ("configurations", [], r"explainers\.configurations: name at least one"),
        ("per_class", 0, r"explainers\.per_class"),
        ("truth_threshold", 1.5, r"explainers\.truth_threshold"),
        ("max_evals", "many", r"explainers\.max_evals"),
    ],
)
def test_bad_parameters_fail_when_read(raw_params, key, value, pattern):
    bad = copy.deepcopy(raw_params)
    bad["explainers"][key] = value
    with pytest.raises(ConfigError, match=pattern):
        parse_params(bad)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"configurations": ("partition:blur(0,3)",)}, r"configurations: 'partition:blur\(0,3\)'"),
        ({"configurations": ("partition:300",)}, r"configurations: 'partition:300': constant"),
        ({"configurations": ("partition:grey",)}, r"configurations: 'partition:grey'"),
        ({"max_evals": 2}, r"^parameter explainers\.max_evals: 2 is below"),
    ],
)
def test_bad_maskers_and_budgets_fail_naming_the_parameter(changes, pattern):
    cfg = dataclasses.replace(TINY, **changes)
    with pytest.raises(ExplainError, match=pattern) as err:
        compare.configurations(cfg, TINY_SHAP)
    assert "shap." not in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------
# the traces: the most confidently correct of each class
# --------------------------------------------------------------------------------------


def test_most_confident_per_class_takes_the_largest_correct_margins(sset, caplog):
    scored = _predictions(sset, [0.5, 3.0, -4.0, 1.0])
    pre_1, pre_3, _, post_7 = scored["trace_name"]  # the third is misclassified
    assert scored["label"].tolist() == ["pre", "pre", "post", "post"]
    chosen = most_confident_per_class(scored, 1)
    assert list(chosen.columns) == list(SELECTION_COLUMNS)
    assert chosen["trace_name"].tolist() == [pre_3, post_7]
    assert set(chosen["group"]) == {CLASS_GROUP} and not chosen["explain_both"].any()
    with caplog.at_level(logging.WARNING):
        both = most_confident_per_class(scored, 2)
    assert both["trace_name"].tolist() == [pre_3, pre_1, post_7]
    assert "2 most confidently correct 'post' test traces asked for, 1 exist" in caplog.text


# --------------------------------------------------------------------------------------
# the comparison on a tiny random model, and the stage
# --------------------------------------------------------------------------------------


def test_every_configuration_explains_the_same_traces(sset):
    chosen = most_confident_per_class(_predictions(sset, [1.0, 2.0, 3.0, 4.0]), 1)
    runs = compare.configurations(TINY, TINY_SHAP)
    truth = compare.TruthBand(26.5625, 42.1875)
    table = compare.compare_explainers(sset, chosen, make_checkpoint(), runs, truth)
    per_class = len(BANDS_HZ) + len(WINDOWS) + 1
    assert len(table) == len(runs) * 2 * per_class
    assert list(dict.fromkeys(table["configuration"])) == list(TINY.configurations)
    assert (table["n_maps"] == 1).all()
    sums = table[table["measure"] != TRUTH].groupby(list(explainer_comparison.KEY_COLUMNS[:3]))
    np.testing.assert_allclose(sums["value"].sum(), 1.0, rtol=1e-9)
    # the maskers differ, so the maps do
    value = {
        n: table.loc[table["configuration"] == n, "value"].to_numpy() for n in TINY.configurations
    }
    assert not np.allclose(value["partition:blur(3,3)"], value["partition:0"])
    partition = table["explainer"] == "partition"
    assert table.loc[partition, "masker"].tolist()[0] == "blur(3,3)"
    assert table.loc[~partition, "masker"].isna().all()
    assert table.loc[~partition, "max_evals"].isna().all()


def test_faithfulness_numbers_join_the_table_and_the_metrics(sset):
    chosen = most_confident_per_class(_predictions(sset, [1.0, 2.0, 3.0, 4.0]), 1)
    cfg = dataclasses.replace(TINY, configurations=("partition:0", "deep"), faithfulness=True)
    runs = compare.configurations(cfg, dataclasses.replace(TINY_SHAP, faithfulness=SMALL_CHECKS))
    table = compare.compare_explainers(sset, chosen, make_checkpoint(), runs)
    checks = table[table["measure"] == explainer_comparison.FAITHFULNESS]
    assert len(checks) == len(runs) * 2 * 2  # deletion and insertion, per class
    assert set(checks["region"]) == {"deletion_auc", "insertion_auc"}
    assert checks["value"].between(0, 1).all() and checks["uniform"].between(0, 1).all()
    cascade = table[table["measure"] == explainer_comparison.RANDOMISATION]
    assert list(dict.fromkeys(cascade["region"])) == ["fc2", "fc1", "conv3", "conv2", "conv1"]
    assert cascade["value"].between(-1, 1).all() and cascade["uniform"].isna().all()
    summary = compare.summarize(table, None)
    deletion = checks[checks["region"] == "deletion_auc"].set_index(["configuration", "class_name"])
    for name in cfg.configurations:
        for c in record.CLASS_NAMES:
            row = deletion.loc[(name, c)]
            assert summary["deletion_gap"][name][c] == pytest.approx(row["uniform"] - row["value"])
    assert set(summary["insertion_gap"]) == set(cfg.configurations)


def _project(root: Path, sset: SpectrogramSet, **explainers) -> Path:
    write_spectrogram_set(root / spectrogram_set.PATH, sset)
    write_checkpoint(root, make_checkpoint())
    write_predictions(root, _predictions(sset, [1.0, 2.0, 3.0, 4.0]))
    checks = to_dict(TINY_SHAP.faithfulness)
    shap = {"batch_size": 40, "background": 4, "workers": 1, "faithfulness": checks}
    tiny = {**dataclasses.asdict(TINY), "configurations": list(TINY.configurations)}
    return write_params(root, shap=shap, explainers={**tiny, **explainers})


def _run_stage(root: Path) -> int:
    return explainers_stage.main([
        "--params", str(root / PARAMS_FILE),
        "--spectrograms", str(root / spectrogram_set.PATH),
        "--model", str(root / checkpoint.PATH),
        "--predictions", str(root / predictions.PATH),
        "--out", str(root / explainer_comparison.PATH),
        "--metrics", str(root / metrics.PATHS["explainers"]),
    ])  # fmt: skip


def test_stage_writes_table_and_metrics_deterministically(tmp_path, sset):
    _project(tmp_path, sset, configurations=["partition:0", "deep"])
    assert _run_stage(tmp_path) == 0
    out = tmp_path / explainer_comparison.PATH
    first = out.read_bytes(), (tmp_path / metrics.PATHS["explainers"]).read_bytes()
    table = explainer_comparison.load(out)
    assert table["masker"].dropna().tolist()[0] == "0.0"  # text, not a number
    summary = metrics.load(tmp_path / metrics.PATHS["explainers"], "explainers")
    assert summary["configurations"] == ["partition:0", "deep"]
    lo, hi = summary["truth_band_hz"]["lo"], summary["truth_band_hz"]["hi"]
    assert set(table.loc[table["measure"] == TRUTH, "region"]) == {band_key(lo, hi)}
    assert set(summary["truth_ratio"]) == {"partition:0", "deep"}
    assert _run_stage(tmp_path) == 0
    again = out.read_bytes(), (tmp_path / metrics.PATHS["explainers"]).read_bytes()
    assert again == first


def test_stage_bad_configuration_fails_with_one_line_before_any_work(tmp_path, sset, caplog):
    _project(tmp_path, sset, configurations=["partition:blur(0,0)"])
    stale = tmp_path / explainer_comparison.PATH
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run\n")
    with caplog.at_level(logging.ERROR):
        assert _run_stage(tmp_path) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "explainers.configurations" in errors[0]
    assert stale.read_text() == "from an earlier run\n", "nothing done before the check"


def test_stage_on_real_data_writes_no_truth(tmp_path, sset):
    _project(tmp_path, sset, configurations=["partition:0"])
    params = yaml.safe_load((tmp_path / PARAMS_FILE).read_text())
    params["data"]["source"] = "zenodo"
    (tmp_path / PARAMS_FILE).write_text(yaml.safe_dump(params))
    assert _run_stage(tmp_path) == 0
    table = explainer_comparison.load(tmp_path / explainer_comparison.PATH)
    assert TRUTH not in set(table["measure"])
    assert metrics.load(tmp_path / metrics.PATHS["explainers"], "explainers")["truth_ratio"] is None


def test_owner_round_trip_and_errors(tmp_path):
    table = compare.score_maps(
        ShapMaps(np.ones((2, 33, 96, 3)), _index(["pre", "post"], [1.0, 1.0]), 0.0),
        FREQUENCY_HZ,
        TIME_S,
        _run("partition:128"),
    )
    path = tmp_path / explainer_comparison.PATH
    explainer_comparison.write(path, table)
    pd.testing.assert_frame_equal(explainer_comparison.load(path), table, check_dtype=False)
    with pytest.raises(ArtifactError, match="ratio"):
        explainer_comparison.write(path, table.drop(columns="ratio"))
    table.drop(columns="region").to_csv(path, index=False)
    with pytest.raises(ArtifactError, match=r"region.*dvc repro explainers"):
        explainer_comparison.load(path)


# ======================================================================================
# the ground truth: a CNN trained on demo data (slow)
# ======================================================================================

#: a demo with a clear contrast (Q 600 before, 100 after, little scatter) so that a CNN
#: trained for a few epochs separates the classes; the band comes from the generator
GROUND_TRUTH_DEMO = {
    "n_pre": 150,
    "n_post": 150,
    "q_pre": 600.0,
    "q_post": 100.0,
    "q_log_std": 0.1,
    "n_colocated_groups": 0,
}
#: a faithful explainer puts at least this many times the band's share of the image rows
#: into the band, for both classes
FOUND = 1.25


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    """A CNN trained briefly on a small demo set, its test predictions, and the band where
    the demo's classes differ."""
    from quakeshap.config import load_params
    from quakeshap.model import model_from_checkpoint
    from quakeshap.training import train_model

    root = tmp_path_factory.mktemp("demo")
    params = load_params(write_params(root))
    sset, demo_cfg = demo_spectrogram_set(root, params, **GROUND_TRUTH_DEMO)
    train_cfg = dataclasses.replace(
        params.train, n_folds=2, max_epochs=4, patience=2, device="cpu", num_threads=None
    )
    ckpt = train_model(sset, train_cfg).model

    test = sset.rows(ckpt["test_traces"])
    with torch.inference_mode():
        logits = model_from_checkpoint(ckpt)(torch.from_numpy(sset.as_float(test))).numpy()
    scored = predictions_table(sset.metadata.iloc[test], logits.astype(np.float64))
    assert scored["correct"].mean() >= 0.9, "the demo model did not learn the classes"
    truth = compare.truth_band(DataConfig(source="demo", demo=demo_cfg), 0.8)
    assert truth.hi_hz - truth.lo_hz < 30, f"the band {truth} is no narrower than the image"
    return sset, ckpt, scored, truth


def _truth_ratios(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["measure"] == TRUTH]
    return dict(zip(rows["class_name"], rows["ratio"], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("explainer", ["deep", "gradient"])
def test_ground_truth_gradient_explainers_find_the_band(demo_model, explainer):
    """The demo's classes differ by high-frequency attenuation: DeepLIFT and expected
    gradients put well over the band's share of their mass in the band, for both classes,
    and less than their share on the 0-10 Hz rows, where the classes hardly differ."""
    sset, ckpt, scored, truth = demo_model
    chosen = most_confident_per_class(scored, 5)
    cfg = ExplainersConfig(per_class=5, configurations=(explainer,))
    runs = compare.configurations(cfg, dataclasses.replace(TINY_SHAP, background=25))
    table = compare.compare_explainers(sset, chosen, ckpt, runs, truth, workers=1)
    assert (table["n_maps"] == 5).all()
    ratios = _truth_ratios(table)
    assert min(ratios.values()) > FOUND, ratios
    low = table[(table["measure"] == BAND) & (table["region"] == band_key(*BANDS_HZ[0]))]
    assert (low["ratio"] < 1).all(), low


#: explainers whose reference is the masker's fill of the image, not real images: the
#: study's partition explainer at its own budget, and integrated gradients from the
#: inpainted baseline
MASKER_REFERENCED = ["partition:inpaint_telea", "integrated_gradients"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known finding: referenced to the inpainting masker's fill, the maps of the "
    "aftershocks put about the band's share of the image rows into the band where the "
    "demo's classes differ (partition at the study's 5000 evaluations 0.9x, integrated "
    "gradients 1.1x; DeepLIFT's and expected gradients' 1.6x, for both classes); strict, so "
    "that a change in this behaviour is noticed",
)
@pytest.mark.parametrize("configuration", MASKER_REFERENCED)
def test_ground_truth_masker_referenced_explainers_miss_the_band(demo_model, configuration):
    sset, ckpt, scored, truth = demo_model
    chosen = most_confident_per_class(scored, 3)
    cfg = ExplainersConfig(per_class=3, configurations=(configuration,), max_evals=5000)
    runs = compare.configurations(cfg, dataclasses.replace(TINY_SHAP, batch_size=50))
    table = compare.compare_explainers(sset, chosen, ckpt, runs, truth, workers=1)
    if not (table["n_maps"] == 3).all():  # not an AssertionError: not the expected failure
        pytest.fail(f"expected 3 maps per class, got {sorted(set(table['n_maps']))}")
    ratios = _truth_ratios(table)
    assert min(ratios.values()) > FOUND, ratios
