"""The DVC workflow users rely on: ``dvc repro``, ``dvc exp``, remotes, artifacts.

Two kinds of tests:

- fast, static checks of ``dvc.yaml``: the data deps form a chain, artifacts are stage
  outputs (``tests/test_dag.py`` checks the code deps);
- end-to-end tests with the real ``dvc`` CLI (marked ``slow``). One session fixture copies
  the working tree into a temporary git repository, writes the tiny demo configuration of
  :data:`tests.dvc_helpers.TINY_PARAMS` into its ``params.yaml`` and runs ``dvc repro`` once;
  every test that changes something works on a full copy of that repository (``.git``,
  ``.dvc/cache`` and workspace), so the pipeline runs from scratch only twice per session
  (the second run checks that two fresh runs give the same ``dvc.lock``). The S3 tests run
  ``moto_server`` on 127.0.0.1 (:mod:`tests.s3_server`).

``test_committed_lock_matches_a_fresh_demo_run`` reproduces the committed ``params.yaml`` up
to ``spectrograms`` only: ``download`` and ``spectrograms`` are bit-for-bit reproducible on any
machine, while training on the full demo takes minutes and its float results may differ
between CPUs, so the later stages are checked for determinism on the tiny configuration
(two fresh runs, same machine) instead.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from quakeshap import report
from quakeshap.artifacts import checkpoint, raw, shap_set
from quakeshap.artifacts import metrics as metric_files
from tests.dvc_helpers import (
    REPO_ROOT,
    STAGES,
    TINY_PARAMS,
    Repo,
    copy_repo,
    file_md5s,
    lock_outs,
    snapshot_repo,
    wait_until,
)
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer, free_port

#: the two released artifacts (dvc.yaml's ``artifacts``), as their owners place them
MODEL = checkpoint.PATH.as_posix()
SHAP = shap_set.PATH.as_posix()


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def _stage_paths(stage: dict, kind: str) -> list[str]:
    """Paths of ``deps`` / ``outs`` / ``metrics`` / ``plots`` entries (str or {path: opts})."""
    paths = []
    for entry in stage.get(kind, []):
        paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def _stage_outputs(stage: dict) -> list[str]:
    return [p for kind in ("outs", "metrics", "plots") for p in _stage_paths(stage, kind)]


# --------------------------------------------------------------------------------------
# static checks of dvc.yaml (fast)
# --------------------------------------------------------------------------------------


def test_data_deps_are_outputs_of_earlier_stages():
    """Besides code, a stage reads only what an earlier stage wrote (tests/test_dag.py checks
    the code deps and the stage order)."""
    stages = _dvc_yaml()["stages"]
    produced: dict[str, str] = {}
    for name, stage in stages.items():
        for dep in _stage_paths(stage, "deps"):
            if dep.startswith("src/"):
                continue
            owners = {s for out, s in produced.items() if dep == out or dep.startswith(out + "/")}
            assert owners, f"stage {name}: dep {dep} is not an output of an earlier stage"
        for out in _stage_outputs(stage):
            produced[out] = name


def test_artifacts_are_stage_outputs():
    spec = _dvc_yaml()
    outs = {p for stage in spec["stages"].values() for p in _stage_paths(stage, "outs")}
    artifacts = spec["artifacts"]
    assert artifacts["cnn2d"]["path"] == MODEL
    assert artifacts["cnn2d"]["type"] == "model"
    assert artifacts["shap-maps"]["path"] == SHAP
    for name, artifact in artifacts.items():
        assert artifact["path"] in outs, f"artifact {name}: {artifact['path']} is no stage output"
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name), f"{name}: not a GTO name"


# --------------------------------------------------------------------------------------
# end-to-end: one pipeline per session, copies for mutations
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dvc_state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dvc-state")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, dvc_state) -> Repo:
    """The tiny demo pipeline, reproduced once and committed (read-only for tests)."""
    repo = snapshot_repo(REPO_ROOT, tmp_path_factory.mktemp("pipeline") / "repo", dvc_state)
    where = repo.run(["python", "-c", "import quakeshap; print(quakeshap.__file__)"]).stdout
    assert Path(where.strip()).is_relative_to(repo.root), "stages must import the copy's src/"
    repo.set_params(TINY_PARAMS)
    repo.commit("tiny demo configuration")
    assert repo.repro() == list(STAGES)
    repo.commit("reproduce the tiny demo")
    return repo


@pytest.fixture
def work(pipeline, tmp_path) -> Repo:
    """A private full copy of the reproduced pipeline."""
    return copy_repo(pipeline, tmp_path / "repo")


def _stages_with_dep(path: str) -> list[str]:
    stages = _dvc_yaml()["stages"]
    return [name for name in STAGES if path in _stage_paths(stages[name], "deps")]


@pytest.mark.slow
def test_second_repro_does_nothing(work):
    start = time.monotonic()
    assert work.repro() == []
    elapsed = time.monotonic() - start
    assert work.is_up_to_date()
    assert elapsed < 30, f"a no-op dvc repro took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"plots.dpi": 30}, ["plots"]),
        ({"shap.max_evals": 120}, ["explain", "plots"]),
        ({"explainers.max_evals": 120}, ["explainers", "plots"]),
        ({"train.lr": 0.0005}, ["train", "evaluate", "select", "explain", "explainers", "plots"]),
    ],
    ids=["plots", "shap", "explainers", "train"],
)
def test_a_parameter_reruns_its_stage_and_those_after_it(work, change, expected):
    work.set_params(change)
    assert work.repro() == expected
    assert work.is_up_to_date()


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    ["src/quakeshap/training.py", "src/quakeshap/spectrogram.py", "src/quakeshap/report.py"],
)
def test_editing_a_module_reruns_exactly_the_stages_that_import_it(work, module):
    # outputs are deterministic, so stages after those that import the module see
    # unchanged inputs and are skipped
    expected = _stages_with_dep(module)
    assert expected, f"no stage depends on {module}"
    work.append_line(module, "# an edit that changes nothing")
    assert work.repro() == expected


@pytest.mark.slow
def test_deleted_outputs_are_restored_by_checkout(work):
    outs = lock_outs(work.lock())
    before = file_md5s(work.root, outs)
    for rel in (MODEL, SHAP, report.FIGURES_DIR.as_posix(), raw.PATH.as_posix()):
        path = work.root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not work.is_up_to_date()
    work.dvc("checkout")
    assert file_md5s(work.root, outs) == before
    assert work.is_up_to_date()


@pytest.mark.slow
def test_two_fresh_runs_give_identical_dvc_lock(pipeline, tmp_path):
    second = Repo(tmp_path / "second", pipeline.state_dir)
    pipeline.run(["git", "clone", "-q", str(pipeline.root), str(second.root)], cwd=tmp_path)
    second.git("reset", "-q", "--hard", "HEAD~1")  # the tiny configuration, before any run
    assert second.repro() == list(STAGES)
    assert (second.root / "dvc.lock").read_text() == (pipeline.root / "dvc.lock").read_text()


def _experiments(show: list[dict]) -> dict[str, dict]:
    """``{name: data}`` of every experiment in ``dvc exp show --json`` output."""
    found = {}
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            found[exp["name"]] = exp["revs"][0]["data"]
    return found


@pytest.mark.slow
def test_experiments_show_and_diff(work, tmp_path):
    work.dvc("exp", "run", "-n", "dpi30", "-S", "plots.dpi=30")
    work.dvc("exp", "run", "-n", "dpi35-wide", "-S", "plots.dpi=35", "-S", "plots.width_in=12.0")
    exps = _experiments(json.loads(work.dvc("exp", "show", "--json").stdout))
    assert {"dpi30", "dpi35-wide"} <= set(exps)
    for name, dpi in (("dpi30", 30), ("dpi35-wide", 35)):
        data = exps[name]
        assert data["params"]["params.yaml"]["data"]["plots"]["dpi"] == dpi
        metrics = data["metrics"]
        evaluate = metrics[metric_files.PATHS["evaluate"].as_posix()]["data"]
        assert {"accuracy", "f1", "precision", "recall"} <= set(evaluate)
        explain = metrics[metric_files.PATHS["explain"].as_posix()]["data"]
        assert "additivity_error_max" in explain
        assert "band_fraction" in explain
        assert metric_files.PATHS["train"].as_posix() in metrics
    diff = json.loads(work.dvc("exp", "diff", "dpi30", "dpi35-wide", "--json").stdout)
    changed = diff["params"]["params.yaml"]
    assert changed["plots.dpi"]["old"] == 30 and changed["plots.dpi"]["new"] == 35
    assert "plots.width_in" in changed
    # the figures changed, the metrics did not
    assert json.loads(work.dvc("metrics", "diff", "dpi30", "dpi35-wide", "--json").stdout) == {}
    params = json.loads(work.dvc("params", "diff", "dpi30", "dpi35-wide", "--json").stdout)
    assert set(params["params.yaml"]) == {"plots.dpi", "plots.width_in"}
    out = tmp_path / "plots-diff"
    work.dvc("plots", "diff", "dpi30", "dpi35-wide", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "dpi30" in html and "dpi35-wide" in html


@pytest.mark.slow
def test_queued_sweep_runs_every_value(work):
    work.dvc("exp", "run", "--queue", "-S", "plots.dpi=30,35")
    work.dvc("queue", "start", "-j", "1")
    try:

        def finished() -> bool:
            status = work.dvc("queue", "status").stdout
            return not re.search(r"\b(Queued|Running)\b", status)

        assert wait_until(finished, timeout=600, interval=2), "the queue did not finish"
    finally:
        work.dvc("queue", "stop", check=False)
    status = work.dvc("queue", "status").stdout
    assert status.count("Success") == 2, status
    exps = _experiments(json.loads(work.dvc("exp", "show", "--json").stdout))
    dpis = sorted(e["params"]["params.yaml"]["data"]["plots"]["dpi"] for e in exps.values())
    assert dpis == [30, 35]


@pytest.mark.slow
def test_artifacts_can_be_fetched_with_dvc_get(work, tmp_path):
    lock = work.lock()
    model_md5 = next(out["md5"] for out in lock["stages"]["train"]["outs"] if out["path"] == MODEL)
    target = tmp_path / "fetched"
    target.mkdir()
    url = str(work.root)
    work.dvc("get", url, MODEL, "--rev", "main", "-o", "fetched.pt", cwd=target)
    assert file_md5s(target, ["fetched.pt"]) == {"fetched.pt": model_md5}
    # a release: a GTO tag names the artifact's version
    work.git("tag", "-a", "cnn2d@v0.1.0", "-m", "release cnn2d v0.1.0")
    work.git("tag", "-a", "shap-maps@v0.1.0", "-m", "release shap-maps v0.1.0")
    work.dvc("artifacts", "get", url, "cnn2d", "-o", "cnn2d.pt", cwd=target)
    assert file_md5s(target, ["cnn2d.pt"]) == {"cnn2d.pt": model_md5}
    work.dvc("artifacts", "get", url, "shap-maps", "--rev", "v0.1.0", "-o", "shap", cwd=target)
    fetched = {k.removeprefix("shap/"): v for k, v in file_md5s(target, ["shap"]).items()}
    original = {k.removeprefix(f"{SHAP}/"): v for k, v in file_md5s(work.root, [SHAP]).items()}
    assert fetched == original


@pytest.mark.slow
def test_make_study_runs_the_study_profile_as_a_named_experiment(tmp_path, dvc_state):
    """`make study` (queued here: the study downloads the real data) sets every study value."""
    repo = snapshot_repo(REPO_ROOT, tmp_path / "repo", dvc_state)
    repo.run(["make", "-o", ".venv/.installed", "study", "STUDY_FLAGS=--queue"])
    try:
        exps = _experiments(json.loads(repo.dvc("exp", "show", "--json").stdout))
        assert "study" in exps
        params = exps["study"]["params"]["params.yaml"]["data"]
        assert params == yaml.safe_load((REPO_ROOT / "profiles" / "study.yaml").read_text())
    finally:
        repo.dvc("queue", "remove", "--queued", check=False)


# --------------------------------------------------------------------------------------
# remotes: a real S3-compatible server on 127.0.0.1
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    with MotoServer() as server:
        yield server


def _add_s3_remote(repo: Repo, name: str, url: str, endpoint: str) -> None:
    repo.dvc("remote", "add", "-d", name, url)
    repo.dvc("remote", "modify", name, "endpointurl", endpoint)
    repo.dvc("remote", "modify", name, "region", REGION)
    _add_credentials(repo, name)


def _add_credentials(repo: Repo, name: str) -> None:
    repo.dvc("remote", "modify", "--local", name, "access_key_id", ACCESS_KEY_ID)
    repo.dvc("remote", "modify", "--local", name, "secret_access_key", SECRET_ACCESS_KEY)


@pytest.mark.slow
def test_push_and_pull_through_s3(work, s3, tmp_path):
    s3.create_bucket("quakeshap-remote")
    _add_s3_remote(work, "storage", "s3://quakeshap-remote/dvcstore", s3.url)
    assert SECRET_ACCESS_KEY not in (work.root / ".dvc" / "config").read_text()
    assert SECRET_ACCESS_KEY in (work.root / ".dvc" / "config.local").read_text()
    assert work.git("status", "--porcelain", "--ignored", ".dvc/config.local").stdout.startswith(
        "!!"
    ), ".dvc/config.local must be git-ignored"
    work.commit("add the S3 remote")

    # `make release` refuses outputs that dvc.lock does not describe ...
    make_release = ["make", "-o", ".venv/.installed", "release"]
    work.set_params({"plots.dpi": 31})
    refused = work.run(make_release, check=False)
    assert refused.returncode != 0
    assert "outputs differ from dvc.lock" in refused.stderr
    assert not s3.keys("quakeshap-remote")
    work.git("checkout", "--", "params.yaml")
    # ... and pushes to the default remote otherwise (the venv stamp is not rebuilt here)
    released = work.run(make_release)
    assert "pushed" in released.stdout + released.stderr
    assert s3.keys("quakeshap-remote")

    clone = Repo(tmp_path / "clone", work.state_dir)
    work.run(["git", "clone", "-q", str(work.root), str(clone.root)], cwd=tmp_path)
    _add_credentials(clone, "storage")
    outs = lock_outs(clone.lock())
    original = file_md5s(work.root, outs)

    # one stage's outputs only (metrics with `cache: false` are in git, not in the remote)
    in_git = set(clone.git("ls-files").stdout.splitlines())
    clone.dvc("pull", "explain")
    explain_outs = lock_outs(clone.lock(), ["explain"])
    assert file_md5s(clone.root, explain_outs) == file_md5s(work.root, explain_outs)
    for rel in set(outs) - set(explain_outs) - in_git:
        assert not (clone.root / rel).exists(), f"dvc pull explain also fetched {rel}"

    # everything, identical, and nothing left to reproduce
    clone.dvc("pull")
    assert file_md5s(clone.root, outs) == original
    assert clone.is_up_to_date()
    assert clone.repro() == []


@pytest.mark.slow
def test_unreachable_remote_fails_quickly_with_a_clear_error(work):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _add_s3_remote(work, "offline", "s3://quakeshap-remote/dvcstore", endpoint)
    start = time.monotonic()
    proc = work.dvc("push", check=False, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert f'Could not connect to the endpoint URL: "{endpoint}/' in proc.stderr, proc.stderr
    assert elapsed < 60, f"dvc push to a closed port took {elapsed:.0f} s"


@pytest.mark.slow
def test_missing_bucket_fails_with_a_clear_error(work, s3):
    _add_s3_remote(work, "nobucket", "s3://quakeshap-no-such-bucket/dvcstore", s3.url)
    proc = work.dvc("push", check=False, timeout=120)
    assert proc.returncode != 0
    assert "The specified bucket does not exist" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------
# the committed dvc.lock
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_committed_lock_matches_a_fresh_demo_run(tmp_path, dvc_state):
    committed_file = REPO_ROOT / "dvc.lock"
    if not committed_file.exists():
        pytest.fail("dvc.lock is not committed: run `make` and commit dvc.lock")
    committed = yaml.safe_load(committed_file.read_text())
    repo = snapshot_repo(REPO_ROOT, tmp_path / "repo", dvc_state)
    assert repo.repro("spectrograms") == ["download", "spectrograms"]
    fresh = repo.lock()
    for stage in ("download", "spectrograms"):
        assert fresh["stages"][stage] == committed["stages"][stage], (
            f"stage {stage}: the committed dvc.lock differs from a fresh `dvc repro`; "
            "run `make` and commit dvc.lock"
        )
