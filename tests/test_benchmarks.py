"""The benchmarks run and write well-formed results; their references compute what quakeshap does.

Timings are never asserted: only that each benchmark runs (smoke mode), that its result
file has the agreed form, and that every reference implementation (the study's way) gives
the same values as quakeshap on the same inputs, so that each ratio compares the same work.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from benchmarks import _common as common
from benchmarks import run_all
from benchmarks._data import (
    READ_STRATEGIES,
    STATION,
    demo_images,
    in_memory_set,
    read_floor,
    replicate_raw,
    selection_frame,
    write_pool,
)
from benchmarks.bench_shap import steady_throughput
from benchmarks.bench_workflow import stage_seconds
from benchmarks.reference.partition import explain_study_way
from benchmarks.reference.spectrograms import read_study_png, run_study_loop, study_image
from benchmarks.reference.training import (
    StudyPNGDataset,
    evaluate,
    study_loader,
    train_epoch,
    write_study_pngs,
)
from quakeshap.artifacts import checkpoint
from quakeshap.artifacts.selection import SELECTION_COLUMNS
from quakeshap.config import ShapConfig, SpectrogramConfig, SplitConfig, TrainConfig, load_params
from quakeshap.explain import explain_selection, trace_seed
from quakeshap.model import CNN2D, ModelConfig, model_from_checkpoint
from quakeshap.record import CLASS_NAMES, hdf5_path, to_unit
from quakeshap.spectrogram import compute_spectrograms, quantize
from quakeshap.splits import assign_split
from quakeshap.training import channel_statistics, fold_seed, train_fold
from quakeshap.waveforms import read_catalog

# --------------------------------------------------------------------------------------
# the result format
# --------------------------------------------------------------------------------------

MACHINE = {"cpu_model": "test CPU", "cores": 2, "usable_cores": 2, "gpu": None}


def _result(**overrides):
    reference = common.summarize([2.0, 1.0, 3.0], "s", "lower")
    quakeshap = common.summarize([0.5, 0.4], "s", "lower")
    checks = [common.Check("speedup", 4.0, ">=", 2.0, "x")]
    result = common.make_result(
        "demo", "smoke", reference, quakeshap, "faster", checks, machine=MACHINE
    )
    result.update(overrides)
    return result


def test_make_result_computes_medians_ratio_and_verdict():
    result = _result()
    assert result["reference"]["median"] == 2.0
    assert result["quakeshap"]["median"] == pytest.approx(0.45)
    assert result["ratio"] == pytest.approx(2.0 / 0.45)
    assert result["met"] is True
    assert common.validate_result(result) == []


def test_speedup_follows_the_direction_of_the_unit():
    slow = common.summarize([10.0], "traces/s", "higher")
    fast = common.summarize([40.0], "traces/s", "higher")
    assert common.speedup(slow, fast) == pytest.approx(4.0)
    with pytest.raises(common.BenchmarkError, match="cannot compare"):
        common.speedup(slow, common.summarize([1.0], "s", "lower"))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"met": False}, "met disagrees"),
        ({"ratio": -1.0}, "ratio"),
        ({"mode": "fast"}, "mode"),
        ({"target": ""}, "target"),
        ({"machine": {"cores": 2}}, "machine"),
        ({"quakeshap": {"median": 0.0, "unit": "s", "better": "lower"}}, "quakeshap.median"),
    ],
)
def test_validate_result_names_what_is_wrong(overrides, problem):
    problems = common.validate_result(_result(**overrides))
    assert any(problem in p for p in problems), problems


def test_validate_result_requires_every_key():
    result = _result()
    del result["reference"]
    assert common.validate_result(result) == ["missing key 'reference'"]
    with pytest.raises(common.BenchmarkError, match="malformed"):
        common.write_result(result, "/nonexistent")


def test_write_result_and_summary_table(tmp_path):
    path = common.write_result(_result(), tmp_path)
    assert path == tmp_path / "demo.json"
    assert json.loads(path.read_text())["name"] == "demo"
    table = run_all.summary_table([json.loads(path.read_text())])
    assert "test CPU" in table and "no GPU" in table
    assert "| demo | 2 s | 0.45 s | 4.44× | yes |" in table
    assert "| demo | x | 4 | >= 2 | yes |" in table


def test_run_process_reports_exit_status_and_output():
    ok = common.run_process([sys.executable, "-c", "print('hello')"])
    failing = common.run_process([sys.executable, "-c", "raise SystemExit(3)"])
    assert (ok.returncode, ok.output.strip()) == (0, "hello") and ok.wall_s > 0
    with pytest.raises(common.BenchmarkError, match="exit code 3"):
        common.check_process(failing, "the child")


#: a stand-in stage that only allocates memory
PROBE_STAGE = "benchmarks._probe_stage"


def test_timed_stage_reports_the_stage_s_own_peak_memory(tmp_path):
    peaks = {}
    for name, mib in (("big", ["300"]), ("small", [])):
        timing = tmp_path / f"{name}.json"
        run = common.run_process(
            [sys.executable, "-m", "benchmarks._timed_stage", timing, PROBE_STAGE, *mib],
            cwd=common.REPO_ROOT,
        )
        common.check_process(run, "the timed stage")
        times = json.loads(timing.read_text())
        assert times["returncode"] == 0 and times["main_s"] >= 0 and times["import_s"] >= 0
        peaks[name] = times["peak_rss_mib"]
    # the parent (this test process) holds far more than 300 MiB: it must not count
    assert peaks["big"] >= 300 > peaks["small"]


def test_timed_stage_names_a_module_it_cannot_import(tmp_path):
    run = common.run_process(
        [sys.executable, "-m", "benchmarks._timed_stage", tmp_path / "t.json", "no_such.stage"],
        cwd=common.REPO_ROOT,
    )
    assert run.returncode == 2 and "cannot import stage module 'no_such.stage'" in run.output


def test_write_params_changes_existing_keys_only(tmp_path):
    target = common.write_params(
        common.REPO_ROOT / "params.yaml", tmp_path / "params.yaml", {"spectrogram.workers": 1}
    )
    assert load_params(target).spectrogram.workers == 1
    with pytest.raises(common.BenchmarkError, match=r"no key spectrogram\.threads"):
        common.write_params(target, target, {"spectrogram.threads": 1})


def test_gpu_script_runs_the_pipeline_stages_as_modules():
    script = (common.REPO_ROOT / "benchmarks" / "gpu_run.sh").read_text()
    stages = re.search(r"^for stage in (.+); do$", script, re.MULTILINE).group(1).split()
    assert '"$py" -m quakeshap.stages.$stage' in script
    dvc_stages = list(yaml.safe_load((common.REPO_ROOT / "dvc.yaml").read_text())["stages"])
    assert stages == dvc_stages[: len(stages)]  # the pipeline's order, up to explain
    for stage in stages:
        assert importlib.util.find_spec(f"quakeshap.stages.{stage}") is not None, stage


# --------------------------------------------------------------------------------------
# benchmark inputs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A tiny demo data set without defects (the study loop and the stage read it)."""
    return write_pool(tmp_path_factory.mktemp("pool"), 30, 20, defects=False)


def test_replicate_raw_writes_unique_traces_in_the_record_layout(pool, tmp_path):
    assert replicate_raw(pool, tmp_path, 120) == 120
    catalog = read_catalog(tmp_path, ["NRCA"])
    assert len(catalog) == 120 and catalog["trace_name"].is_unique
    assert set(catalog["label"]) == set(CLASS_NAMES)
    pre_file, post_file = (hdf5_path(tmp_path, STATION, label) for label in CLASS_NAMES)
    with h5py.File(pre_file) as pre, h5py.File(post_file) as post:
        assert len(pre) + len(post) == 120
    arrays = {}
    for how in READ_STRATEGIES:
        collected = {}
        assert read_floor(tmp_path, how, collected) == 120
        arrays[how] = collected
    for name, expected in arrays["h5py"].items():
        for how in READ_STRATEGIES[1:]:
            np.testing.assert_array_equal(arrays[how][name], expected)


# --------------------------------------------------------------------------------------
# the references compute what quakeshap computes
# --------------------------------------------------------------------------------------


def test_study_spectrogram_equals_quakeshap(rng):
    waveforms = rng.normal(size=(4, 3, 2500)) * rng.uniform(1, 1e4, size=(4, 3, 1))
    ours = compute_spectrograms(waveforms, SpectrogramConfig()).images
    for waveform, image in zip(waveforms, ours, strict=True):
        np.testing.assert_allclose(study_image(waveform), image.transpose(1, 2, 0), atol=1e-12)


def test_study_loop_pngs_and_split_match_quakeshap(pool, tmp_path):
    metadata = run_study_loop(pool, tmp_path)
    catalog = read_catalog(pool, ["NRCA"])
    assert list(metadata["trace_name"]) == list(catalog["trace_name"])
    # the study's random 80/20 split, reproduced by quakeshap
    split = dict(
        zip(
            catalog["trace_name"],
            assign_split(catalog, SplitConfig().for_task("prepost")),
            strict=True,
        )
    )
    assert list(metadata["split"]) == [split[name] for name in metadata["trace_name"]]
    # the PNG values are quakeshap's uint8 images (up to the floor of values 255 x that
    # land within rounding of an integer)
    for label in CLASS_NAMES:
        names = list(metadata.loc[metadata["label"] == label, "trace_name"])
        with h5py.File(hdf5_path(pool, STATION, label)) as h5:
            waveforms = np.stack([h5[name][()] for name in names])
        ours = quantize(compute_spectrograms(waveforms, SpectrogramConfig()).images, "uint8")
        theirs = np.stack([read_study_png(tmp_path / f"{name}.png") for name in names])
        difference = np.abs(ours.astype(int) - theirs.astype(int))
        assert difference.max() <= 1
        assert (difference > 0).mean() < 1e-4


@pytest.fixture
def one_thread():
    """The reference with one torch thread: bit-identical to quakeshap's workers."""
    import cv2

    saved = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


@pytest.fixture(scope="module")
def demo():
    """Demo spectrograms (uint8) and labels: 40 traces, repeated to 60."""
    return demo_images(60, n_pool=40)


def test_study_data_path_gives_quakeshap_losses_for_the_same_batches(demo, one_thread, tmp_path):
    images, labels = demo
    train_index, val_index = np.arange(40), np.arange(40, 60)
    mean, std = channel_statistics(images[train_index])
    cfg = dataclasses.replace(TrainConfig(), seed=7, max_epochs=2, patience=2, device="cpu")
    m = mean.astype(np.float32)[None, :, None, None]
    s = std.astype(np.float32)[None, :, None, None]
    x = torch.from_numpy((to_unit(images) - m) / s)
    y = torch.as_tensor(labels)
    ours = train_fold(x, y, train_index, val_index, cfg, fold=1, n_folds=3).history

    # the study's way, fed the batches train_fold draws, from the same initial weights
    names = [f"NRCA.IV.{i}_EV" for i in range(len(images))]
    filenames = write_study_pngs(images, names, tmp_path)
    table = pd.DataFrame({"filename": filenames, "label": np.asarray(CLASS_NAMES)[labels]})
    train_set = StudyPNGDataset(table.iloc[train_index], tmp_path, mean, std)
    val_set = StudyPNGDataset(table.iloc[val_index], tmp_path, mean, std)
    seed = fold_seed(cfg.seed, 1)
    torch.manual_seed(seed)
    model = CNN2D(ModelConfig(dropout=cfg.dropout))
    # the layout train_fold computes in: the data path is the only difference left
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = torch.Generator().manual_seed(seed)
    for epoch in ours:
        order = torch.randperm(len(train_index), generator=batches).tolist()
        losses = train_epoch(model, study_loader(train_set, cfg.batch_size, order=order), optimizer)
        sizes = [len(order[i : i + cfg.batch_size]) for i in range(0, len(order), cfg.batch_size)]
        train_loss = float(np.dot(losses, sizes) / len(order))
        val_loss, val_accuracy = evaluate(model, study_loader(val_set, 32, order=range(20)))
        assert train_loss == pytest.approx(epoch["train_loss"], rel=1e-6)
        assert val_loss == pytest.approx(epoch["val_loss"], rel=1e-5, abs=1e-7)
        assert val_accuracy == epoch["val_accuracy"]


def test_study_shap_maps_equal_quakeshap_maps(demo, one_thread):
    images, labels = demo
    sset = in_memory_set(images[:6], labels[:6])
    torch.manual_seed(3)
    ckpt = checkpoint.make(CNN2D(), list(CLASS_NAMES), [0.6, 0.6, 0.6], [0.2, 0.2, 0.2])
    model = model_from_checkpoint(ckpt)
    rows = np.array([0, 5])
    with torch.no_grad():
        predicted = model(torch.from_numpy(sset.as_float(rows))).numpy().argmax(axis=1)
    selection = selection_frame(sset, rows, predicted).assign(explain_both=[False, True])
    assert list(selection.columns) == list(SELECTION_COLUMNS)
    cfg = dataclasses.replace(ShapConfig(), max_evals=100, device="cpu")

    ours = explain_selection(sset, selection, ckpt, cfg, workers=1)
    names = sset.metadata["trace_name"].to_numpy()[rows]
    theirs = explain_study_way(
        model,
        images[rows],
        [False, True],
        max_evals=100,
        seeds=[trace_seed(cfg.seed, n) for n in names],
    )
    assert list(theirs[0].classes) == [predicted[0]] and list(theirs[1].classes) == [0, 1]
    reference = np.concatenate([np.moveaxis(t.values, -1, 0) for t in theirs])
    # quakeshap evaluates the model with batch norm folded into the convolutions: the same
    # function up to float rounding (~1e-7 logits), so the maps agree to rounding, not bits
    scale = np.abs(reference).max()
    np.testing.assert_allclose(
        ours.values, reference.astype(np.float32), rtol=1e-3, atol=1e-5 * scale
    )
    base = np.concatenate([t.base_values for t in theirs])
    np.testing.assert_allclose(ours.index["base_value"].to_numpy(), base, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------
# every benchmark runs (smoke mode) and writes a well-formed result
# --------------------------------------------------------------------------------------


def _run_smoke(name, tmp_path):
    module = importlib.import_module(f"benchmarks.bench_{name}")
    args = module.build_parser().parse_args(
        ["--smoke", "--results-dir", str(tmp_path), "--workdir", str(tmp_path / "work")]
    )
    path = common.write_result(module.run(args), tmp_path)
    result = json.loads(path.read_text())
    assert common.validate_result(result) == []
    assert result["name"] == name and result["mode"] == "smoke"
    assert result["checks"] and result["machine"]["cores"] >= 1
    return result


@pytest.mark.slow
def test_spectrograms_benchmark_smoke(tmp_path):
    result = _run_smoke("spectrograms", tmp_path)
    details = result["details"]
    assert details["equivalence"]["max_abs_difference_uint8"] <= 1
    assert details["equivalence"]["one_thread_equals_all_cores"]
    # the headline compares one thread with the study's one thread; all cores come beside it
    assert result["quakeshap"]["workers"] == 1 and result["reference"]["threads"] == 1
    assert details["all_cores"]["workers"] >= 1
    assert result["ratio"] == pytest.approx(details["ratios"]["one_thread_vs_reference"])
    checks = {check["name"] for check in result["checks"]}
    assert {"speedup_vs_reference_one_thread", "speedup_vs_reference_all_cores"} <= checks
    scaling = details["scaling"]
    assert [row["n_traces"] for row in scaling] == [40, 80]
    for row in scaling:
        assert row["read_floor_s"] > 0
        assert set(row["stage"]) == {"one_thread", "all_cores"}
        assert all(stage["peak_rss_mib"] > 0 for stage in row["stage"].values())


@pytest.mark.slow
def test_training_benchmark_smoke(tmp_path):
    result = _run_smoke("training", tmp_path)
    assert result["details"]["pure_compute"]["median"] > 0
    assert result["details"]["device"] == "cpu"


def test_steady_throughput_leaves_out_each_workers_first_trace():
    # 2 workers: first results after 10 s (start-up + one trace), then one per worker every 4 s
    stamps = [10.0, 10.5, 14.0, 14.5, 18.0, 18.5]
    throughput, startup = steady_throughput(stamps, 2)
    assert throughput == pytest.approx(0.5)  # 2 workers / 4 s
    assert startup == 10.5
    # no trace after the first per worker: the whole run is all there is
    assert steady_throughput([6.0, 8.0], 2) == (pytest.approx(0.25), 8.0)


def test_stage_seconds_run_from_one_announcement_to_the_next():
    lines = (
        (1.0, "Running stage 'download':"),
        (1.1, "> python -m quakeshap.stages.download"),
        (4.0, "Running stage 'spectrograms':"),
        (9.0, "Updating lock file 'dvc.lock'"),
    )
    run = common.ProcessRun(10.0, 0, "", lines)
    assert stage_seconds(run) == {"download": 3.0, "spectrograms": 6.0}


@pytest.mark.slow
def test_shap_benchmark_smoke(tmp_path):
    result = _run_smoke("shap", tmp_path)
    equivalence = result["details"]["equivalence"]
    assert equivalence["parallel_equals_serial"]
    assert equivalence["max_abs_difference_vs_reference"] <= 1e-6
    for side in ("reference", "quakeshap"):
        split = result["details"]["profile_one_trace"][side]
        assert split["masker_s"] > 0 and split["model_s"] > 0
        assert split["masker_s"] + split["model_s"] <= split["total_s"]


@pytest.mark.slow
def test_explainers_benchmark_smoke(tmp_path):
    result = _run_smoke("explainers", tmp_path)
    explainers = result["details"]["explainers"]
    assert set(explainers) == {"deep", "gradient"}
    for report in explainers.values():
        assert report["correlation_with_partition"]
        for per_class in report["correlation_with_partition"].values():
            assert -1.0 <= per_class["median_rgb"] <= 1.0


@pytest.mark.slow
def test_faithfulness_benchmark_smoke(tmp_path):
    result = _run_smoke("faithfulness", tmp_path)
    details = result["details"]
    # one trace per class whose map enters the class mean: 1 or 2 with the smoke's weak model
    assert details["n_traces"] == 2 and details["n_cascaded"] in (1, 2)
    assert len(details["shap_seconds_per_trace"]) == len(details["faithfulness_seconds_per_trace"])
    check = result["checks"][0]
    assert check["name"] == "faithfulness_fraction_of_shap" and check["value"] > 0
    assert result["ratio"] == pytest.approx(1 / check["value"])


@pytest.mark.slow
def test_workflow_benchmark_smoke(tmp_path):
    result = _run_smoke("workflow", tmp_path)
    stage_seconds = result["details"]["stage_seconds"]
    assert list(stage_seconds) == ["download", "spectrograms"]
    assert all(seconds > 0 for seconds in stage_seconds.values())
    # from the first stage's announcement to the end: less than the whole run
    assert sum(stage_seconds.values()) < result["reference"]["median"]
    assert result["quakeshap"]["n"] == 2


def test_run_all_rewrites_the_summary_from_results(tmp_path):
    common.write_result(_result(name="training"), tmp_path)
    common.write_result(_result(name="shap", met=None), tmp_path)
    common.write_result(_result(name="unknown"), tmp_path)
    assert run_all.main(["--summary-only", "--results-dir", str(tmp_path)]) == 0
    summary = (tmp_path / run_all.SUMMARY_FILE).read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| training |")]
    assert len(rows) == 2  # the benchmark and its check
    assert "| shap | 2 s | 0.45 s | 4.44× | report |" in summary
    assert "unknown" not in summary
