"""The study's workload benchmark (``make bench-study``): its profile, when its targets are
judged, its log reader, and its smoke run; a file of its own, so that pytest-xdist
(``--dist loadfile``) runs it beside tests/test_benchmarks.py."""

from __future__ import annotations

import json

import pytest

from benchmarks import _common as common
from quakeshap.config import load_params


def test_study_workload_profile_is_the_study_on_demo_data_of_its_size():
    from benchmarks.bench_study import workload_config
    from quakeshap.config import parse_params

    config = workload_config(common.REPO_ROOT, smoke=False, device=None)
    p = parse_params(config)
    study = load_params(common.REPO_ROOT / "profiles" / "study.yaml")
    # docs/method.md §1: the study's catalogue sizes, generated offline
    assert (p.data.source, p.data.demo.n_pre, p.data.demo.n_post) == ("demo", 3636, 2194)
    assert (p.train.n_folds, p.select.per_class, p.select.per_week) == (7, 300, 10)
    assert (p.select.week_min, p.select.week_max, p.select.max_misclassified) == (34, 51, None)
    assert p.shap.max_evals == 5000 and p.shap.faithfulness.enabled
    # everything but the data is the study profile's
    for section in ("task", "spectrogram", "split", "train", "select", "shap", "explainers"):
        assert getattr(p, section) == getattr(study, section), section


@pytest.mark.slow
def test_study_workload_benchmark_smoke(tmp_path):
    # _run_smoke's steps: the module (bench_study) and its result (study_workload) differ in name
    from benchmarks import bench_study
    from tests.dvc_helpers import STAGES

    args = bench_study.build_parser().parse_args(
        ["--smoke", "--results-dir", str(tmp_path), "--workdir", str(tmp_path / "work")]
    )
    path = common.write_result(bench_study.run(args), tmp_path)
    assert path.name == "study_workload.json"
    result = json.loads(path.read_text())
    assert common.validate_result(result) == []
    assert result["name"] == "study_workload" and result["mode"] == "smoke"
    assert result["checks"] and result["machine"]["cores"] >= 1
    details = result["details"]
    stages = details["stage_seconds"]
    assert set(stages) == set(STAGES)  # every stage of the pipeline ran, each timed
    assert all(seconds > 0 for seconds in stages.values())
    assert sum(stages.values()) < result["quakeshap"]["median"]
    assert details["n_traces_explained"] == details["explain_log"]["n_traces"] > 0
    assert details["explain_seconds_per_trace"] == pytest.approx(
        stages["explain"] / details["n_traces_explained"]
    )
    assert "shap.faithfulness.enabled=false" in details["params_overrides"]
    # the targets are set for a GPU box: judged only there, a report elsewhere
    judged = result["machine"]["gpu"] is not None
    assert details["checks_apply"] is judged
    assert {c["name"] for c in result["checks"]} == {"workload_s", "explain_seconds_per_trace"}
    if judged:
        assert result["met"] == all(c["met"] for c in result["checks"])
    else:
        assert result["met"] is None and all(c["met"] is None for c in result["checks"])


def test_study_workload_targets_are_judged_on_a_gpu_box_only():
    from benchmarks.bench_study import checks_apply

    gpu = {"name": "NVIDIA H200", "count": 1, "memory_gib": 139.8}
    assert checks_apply({"gpu": gpu}, None)[0] and checks_apply({"gpu": gpu}, "cuda")[0]
    assert not checks_apply({"gpu": gpu}, "cpu")[0]
    assert not checks_apply({"gpu": None}, None)[0]


def test_study_workload_reads_the_explain_stage_s_own_log_lines():
    from benchmarks.bench_study import explain_log, stage_output

    pool = "INFO quakeshap.explain.pool: explaining"
    evals = "(max_evals 100, batch 50)"
    lines = (
        (1.0, "Running stage 'explainers':"),
        (1.5, f"{pool} 2 trace(s) → 2 map(s) with deep {evals}, 1 worker(s) on cpu"),
        (3.0, "Running stage 'explain':"),
        (3.5, f"{pool} 3 trace(s) → 5 map(s) with partition {evals}, 4 worker(s) on cuda"),
        (9.0, "INFO quakeshap.stages.explain: 5 map(s) of 3 trace(s) in 6.0 s (2.00 s per trace)"),
        (9.5, "Running stage 'plots':"),
    )  # fmt: skip
    logged = explain_log(stage_output(common.ProcessRun(10.0, 0, "", lines), "explain"))
    assert logged == {
        "workers": 4, "device": "cuda", "n_traces": 3, "seconds": 6.0, "seconds_per_trace": 2.0
    }  # fmt: skip
    with pytest.raises(common.BenchmarkError, match="log lines were not found"):
        explain_log(stage_output(common.ProcessRun(10.0, 0, "", lines), "explainers"))


def test_a_process_log_records_lines_heartbeats_and_the_exit(tmp_path):
    import sys

    log_path = tmp_path / "run.log"
    script = "import time; print('Running stage \\'a\\':', flush=True); time.sleep(0.5); print('x')"
    run = common.run_process([sys.executable, "-c", script], log_path=log_path, heartbeat_s=0.1)
    text = log_path.read_text()
    assert common.HEARTBEAT in text and text.splitlines()[-1].split("\t")[1] == f"{common.EXIT} 0"
    back, exited = common.read_process_log(log_path)
    assert exited and back.returncode == 0
    assert [line for _, line in back.line_times] == ["Running stage 'a':", "x"]
    for (t_back, _), (t_run, _) in zip(back.line_times, run.line_times, strict=True):
        assert t_back == pytest.approx(t_run, abs=1e-3)  # written to the millisecond
    # a run stopped from outside: no exit line; it counts to its last heartbeat
    cut = [line for line in text.splitlines() if not line.split("\t")[1].startswith("# exit")]
    cut.append(f"{float(cut[-1].split(chr(9))[0]) + 30:.3f}\t{common.HEARTBEAT}")
    log_path.write_text("\n".join(cut) + "\n")
    stopped, exited = common.read_process_log(log_path)
    assert not exited and stopped.returncode == -1
    assert stopped.wall_s == pytest.approx(float(cut[-1].split("\t")[0]))


def test_the_attempts_of_a_resumed_run_add_up_stage_by_stage():
    from benchmarks.bench_study import add_up

    first = common.ProcessRun(100.0, -1, "", (
        (1.0, "Running stage 'train':"), (40.0, "Running stage 'explain':")))  # fmt: skip
    second = common.ProcessRun(70.0, 0, "", (
        (2.0, "Running stage 'explain':"), (50.0, "Running stage 'plots':")))  # fmt: skip
    stages, total = add_up([(first, False), (second, True)])
    assert stages == {"train": 39.0, "explain": 60.0 + 48.0, "plots": 20.0}
    assert total == 170.0


def test_resume_refuses_a_folder_from_another_tree_or_other_settings(tmp_path):
    from benchmarks.bench_study import prepare

    with pytest.raises(common.BenchmarkError, match="holds no stopped run"):
        prepare(common.REPO_ROOT, tmp_path, {"a": 1}, resume=True)
    (tmp_path / "repo").mkdir()
    (tmp_path / "source.json").write_text(json.dumps({"fingerprint": "0" * 64, "files_copied": 3}))
    with pytest.raises(common.BenchmarkError, match="other library sources"):
        prepare(common.REPO_ROOT, tmp_path, {"a": 1}, resume=True)
