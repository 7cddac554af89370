"""A stopped explain run resumes where it was (``shap.resume_dir``): the finished traces are
read back, only the others are explained, and the outputs equal those of a run that was
never stopped, byte for byte. The store keys on everything the values depend on."""

from __future__ import annotations

import dataclasses
import filecmp

import numpy as np
import pytest

from quakeshap import explain as ex
from quakeshap.artifacts import metrics, shap_set
from quakeshap.config import load_yaml
from quakeshap.explain import resume
from quakeshap.explain.explainers import TraceExplainer
from quakeshap.stages import explain as explain_stage
from tests.conftest import REPO_ROOT
from tests.fixtures import make_checkpoint
from tests.test_explain import SMALL, _selection, _write_inputs, stage_args
from tests.test_explain import sset as sset  # the tiny set, a fixture

STORE = ".quakeshap/explain"


class Counting:
    """Records the traces :meth:`TraceExplainer.explain` finishes (the outermost calls: the
    faithfulness cascade calls it again inside); Ctrl+C as trace number ``stop_at`` starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, stop_at: int | None = None) -> None:
        self.names: list[str] = []
        self.depth = 0
        original = TraceExplainer.explain
        counter = self

        def explain(self: TraceExplainer, job: ex.ExplainJob) -> ex.JobResult:
            if counter.depth == 0 and stop_at is not None and len(counter.names) + 1 == stop_at:
                raise KeyboardInterrupt
            counter.depth += 1
            try:
                result = original(self, job)
            finally:
                counter.depth -= 1
            if counter.depth == 0:
                counter.names.append(job.trace_name)
            return result

        monkeypatch.setattr(TraceExplainer, "explain", explain)


def _stored(root) -> list:
    return sorted((root / STORE).rglob("*.npz"))


def _project(root, sset, **shap):
    """The stage's inputs under ``root``, resuming into ``STORE``; the faithfulness checks
    off (their numbers' round trip through the store is checked on its own, below)."""
    checks = {**load_yaml(REPO_ROOT / "params.yaml")["shap"]["faithfulness"], "enabled": False}
    _write_inputs(root, sset, make_checkpoint(), _selection(sset),
                  shap={"resume_dir": STORE, "faithfulness": checks, **shap})  # fmt: skip
    return root


def test_a_stopped_stage_resumes_and_writes_what_an_unstopped_one_writes(
    tmp_path, sset, monkeypatch
):
    whole = _project(tmp_path / "whole", sset)
    assert explain_stage.main(stage_args(whole)) == 0
    assert _stored(whole) == []  # the store goes once every trace has its maps

    stopped = _project(tmp_path / "stopped", sset)
    first = Counting(monkeypatch, stop_at=3)  # Ctrl+C while the third trace runs
    assert explain_stage.main(stage_args(stopped)) == 128 + 2
    assert len(first.names) == 2
    assert len(_stored(stopped)) == 2
    assert not (stopped / shap_set.PATH).exists()
    assert not (stopped / metrics.PATHS["explain"]).exists()

    monkeypatch.undo()  # the first patch goes
    second = Counting(monkeypatch)
    assert explain_stage.main(stage_args(stopped)) == 0
    n_jobs = _selection(sset)["trace_name"].nunique()
    assert len(second.names) == n_jobs - 2
    assert set(second.names).isdisjoint(first.names)
    assert _stored(stopped) == []
    assert not (stopped / STORE).exists()
    for path in (shap_set.PATH, metrics.PATHS["explain"]):
        compared = filecmp.dircmp(whole / path, stopped / path) if (whole / path).is_dir() else None
        if compared is None:
            assert (whole / path).read_bytes() == (stopped / path).read_bytes(), path
        else:
            assert compared.diff_files == [] and compared.left_only == [], path
            for name in compared.common_files:
                assert filecmp.cmp(whole / path / name, stopped / path / name, shallow=False)


def test_a_relative_store_lies_beside_the_params_file(tmp_path, sset, monkeypatch):
    project = _project(tmp_path, sset)
    monkeypatch.chdir(tmp_path.parent)  # not the project: the store must not follow the cwd
    Counting(monkeypatch, stop_at=2)
    assert explain_stage.main(stage_args(project)) == 128 + 2
    assert len(_stored(project)) == 1


def test_no_store_without_resume_dir(tmp_path, sset, monkeypatch):
    project = _project(tmp_path, sset, resume_dir=None)
    Counting(monkeypatch, stop_at=3)
    assert explain_stage.main(stage_args(project)) == 128 + 2
    assert not (project / STORE).exists()


@pytest.fixture
def plan_and_ckpt(sset):
    return ex.plan_jobs(_selection(sset), sset, SMALL.seed), make_checkpoint()


def test_a_stored_result_reads_back_identical_with_its_faithfulness(tmp_path, sset):
    cfg = dataclasses.replace(SMALL, faithfulness=dataclasses.replace(
        SMALL.faithfulness, enabled=True, n_steps=4, random_orders=1,
        randomisation_per_class=1, randomisation_max_evals=80))  # fmt: skip
    plan = ex.plan_jobs(_selection(sset), sset, cfg.seed, randomise_per_class=1)
    ckpt = make_checkpoint()
    results = ex.run_jobs(plan.jobs, ckpt, cfg)
    assert any(r.faithfulness is not None and r.faithfulness.layers for r in results)
    store = resume.ResultStore(tmp_path, resume.run_key(ckpt, cfg, None, "cpu"))
    for job, result in zip(plan.jobs, results, strict=True):
        store.save(job, result)
    for job, result in zip(plan.jobs, results, strict=True):
        back = store.load(job)
        assert back is not None and back.trace_name == result.trace_name
        assert back.classes == result.classes
        for name in ("values", "base_values", "logits"):
            a, b = getattr(result, name), getattr(back, name)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        fa, fb = result.faithfulness, back.faithfulness
        assert fb.layers == fa.layers
        for field in dataclasses.fields(fa):
            if field.name != "layers":
                np.testing.assert_array_equal(getattr(fb, field.name), getattr(fa, field.name))
    assert [p.name for p in store.folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "change",
    [{"max_evals": 200}, {"masker": "blur(4,4)"}, {"seed": 1}, {"batch_size": 20}],
)
def test_a_setting_that_changes_the_values_changes_the_run_key(plan_and_ckpt, change):
    _, ckpt = plan_and_ckpt
    assert resume.run_key(ckpt, SMALL, None, "cpu") != resume.run_key(
        ckpt, dataclasses.replace(SMALL, **change), None, "cpu"
    )


@pytest.mark.parametrize(
    "change",
    [{"workers": 2}, {"scheduler": "tcp://127.0.0.1:8786"}, {"additivity_tolerance": 1.0},
     {"resume_dir": "elsewhere"}],
)  # fmt: skip
def test_where_and_how_fast_do_not_change_the_run_key(plan_and_ckpt, change):
    _, ckpt = plan_and_ckpt
    assert resume.run_key(ckpt, SMALL, None, "cpu") == resume.run_key(
        ckpt, dataclasses.replace(SMALL, **change), None, "cpu"
    )


def test_other_weights_a_device_or_background_change_the_run_key(plan_and_ckpt):
    _, ckpt = plan_and_ckpt
    key = resume.run_key(ckpt, SMALL, None, "cpu")
    assert key != resume.run_key(make_checkpoint(seed=1), SMALL, None, "cpu")
    assert key != resume.run_key(ckpt, SMALL, None, "cuda")
    assert key != resume.run_key(ckpt, SMALL, np.zeros((2, 3, 33, 96), np.float32), "cpu")


def test_a_job_key_covers_the_image_and_the_classes(plan_and_ckpt):
    (plan, _) = plan_and_ckpt
    job = plan.jobs[0]
    image = job.image.copy()
    image[0, 0, 0] += 1 / 255
    keys = {
        resume.job_key(job),
        resume.job_key(dataclasses.replace(job, image=image)),
        resume.job_key(dataclasses.replace(job, classes=(0, 1))),
        resume.job_key(dataclasses.replace(job, seed=job.seed + 1)),
        resume.job_key(dataclasses.replace(job, randomise=not job.randomise)),
    }
    assert len(keys) == 5


def test_a_cut_short_file_is_reported_removed_and_explained_again(
    tmp_path, sset, plan_and_ckpt, caplog
):
    plan, ckpt = plan_and_ckpt  # jobs without the cascade: faithfulness off below
    off = dataclasses.replace(SMALL.faithfulness, enabled=False)
    cfg = dataclasses.replace(SMALL, resume_dir=str(tmp_path), faithfulness=off)
    unstopped = dataclasses.replace(cfg, resume_dir=None)
    whole = ex.explain_selection(sset, _selection(sset), ckpt, unstopped)
    store = resume.ResultStore(tmp_path, resume.run_key(ckpt, cfg, None, "cpu"))
    results = ex.run_jobs(plan.jobs[:2], ckpt, cfg)
    for job, result in zip(plan.jobs[:2], results, strict=True):
        store.save(job, result)
    path = store._path(plan.jobs[1])
    path.write_bytes(path.read_bytes()[:100])
    maps = ex.explain_selection(sset, _selection(sset), ckpt, cfg)
    assert maps.n_resumed == 1
    assert "not a whole result of trace" in caplog.text
    assert maps.values.tobytes() == whole.values.tobytes()
    assert not store.folder.exists()


def test_resume_dir_must_name_a_folder():
    from quakeshap.config import ConfigError, ShapConfig

    with pytest.raises(ConfigError, match=r"shap\.resume_dir"):
        ShapConfig(resume_dir="  ")
