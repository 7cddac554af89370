"""The study's controls: profiles/controls/<name>.yaml patches, `python -m quakeshap.controls run`.

Unit tests check the patches, their composition on the demo and on the study, the runner's
checks and its dvc commands (with a fake dvc). One slow end-to-end test queues every control
on the tiny demo as a real ``dvc exp run`` experiment and checks that each finished with
its metrics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quakeshap import control_report, controls
from quakeshap.artifacts import checkpoint
from quakeshap.artifacts import metrics as metric_files
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_yaml, parse_params
from quakeshap.controls import ControlError, check_names, plan_controls, run_controls
from quakeshap.profiles import ProfileError, apply_patch, compose, profile_overrides
from tests.dvc_helpers import STAGES, TINY_PARAMS, snapshot_repo

ROOT = Path(__file__).resolve().parents[1]
CONTROLS_DIR = ROOT / controls.CONTROLS_DIR
BASE = load_yaml(ROOT / "params.yaml")
STUDY = load_yaml(ROOT / "profiles" / "study.yaml")

#: the controls the study's brief asks for (docs/dvc.md, "Controls")
EXPECTED = {
    "study", "lowpass_10hz", "highpass_10hz", "wrong_boundary", "split_event", "split_time",
    "no_colocated", "window_before_p", "window_p_to_s", "window_after_s", "matched",
    "shuffled_labels",
}  # fmt: skip


def _plan(names=(), profile=None):
    return plan_controls(names, BASE, profile, CONTROLS_DIR)


# --------------------------------------------------------------------------------------
# the patches
# --------------------------------------------------------------------------------------


def test_every_control_is_defined():
    assert set(controls.known_controls(CONTROLS_DIR)) == EXPECTED


@pytest.mark.parametrize("profile", [None, STUDY], ids=["demo", "study"])
def test_every_control_is_a_valid_configuration_that_changes_only_its_keys(profile):
    plan = {control.name: control for control in _plan(profile=profile)}
    start = set(profile_overrides(STUDY, BASE)) if profile is not None else set()
    for name, control in plan.items():
        patch = load_yaml(CONTROLS_DIR / f"{name}.yaml")
        changed = set(control.overrides) - start
        keys = {o.split("=", 1)[0] for o in changed}
        assert keys == set(_leaf_keys(patch)), name
        assert control.experiment == f"control-{name}"
    study = tuple(profile_overrides(STUDY, BASE)) if profile is not None else ()
    assert plan["study"].overrides == study


def _leaf_keys(mapping, prefix=""):
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from _leaf_keys(value, dotted)
        else:
            yield dotted


def test_the_controls_set_what_they_say():
    def config(name, profile=None):
        patch = load_yaml(CONTROLS_DIR / f"{name}.yaml")
        return parse_params(compose(BASE, profile, [patch]))

    assert config("study") == parse_params(BASE)
    assert config("study", STUDY) == parse_params(STUDY)
    assert config("lowpass_10hz").spectrogram.preprocess.lowpass_hz == 10.0
    assert config("highpass_10hz").spectrogram.preprocess.highpass_hz == 10.0
    assert config("split_event").split.by == "event"
    assert config("split_time").split.by == "time"
    assert config("no_colocated").train.exclude_colocated is True
    assert config("matched").split.match == "magnitude_distance"
    assert config("shuffled_labels").train.shuffle_labels is True
    for window in ("before_p", "p_to_s", "after_s"):
        assert config(f"window_{window}").spectrogram.window == window
    wrong = config("wrong_boundary", STUDY)
    assert wrong.task.boundary_time != BASE["task"]["boundary_time"]
    # the real record's pre traces run from 2016-08-24 to 2016-10-26 (docs/method.md §1)
    assert "2016-08-24" < wrong.task.boundary_time < "2016-10-26"
    assert config("matched", STUDY).train.n_folds == 7  # the study's values underneath


# --------------------------------------------------------------------------------------
# composing profiles
# --------------------------------------------------------------------------------------


def test_a_patch_sets_only_its_keys_and_changes_nothing_in_place():
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": 3}
    patched = apply_patch(base, {"a": {"y": {"z": 5}}})
    assert patched == {"a": {"x": 1, "y": {"z": 5}}, "b": 3}
    assert base == {"a": {"x": 1, "y": {"z": 2}}, "b": 3}
    assert apply_patch(base, {}) == base


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"a": {"w": 1}}, r"a\.w is not in params\.yaml"),
        ({"a": 1}, r"a is a section in params\.yaml"),
        ({"b": {"c": 1}}, r"b is a value in params\.yaml"),
    ],
)
def test_a_patch_with_other_keys_is_refused(patch, message):
    with pytest.raises(ProfileError, match=message):
        apply_patch({"a": {"x": 1}, "b": 3}, patch)


def test_composition_applies_the_patch_on_top_of_the_profile():
    patch = {"split": {"by": "time"}}
    config = compose(BASE, STUDY, [patch])
    overrides = profile_overrides(config, BASE)
    assert 'split.by="time"' in overrides and "train.n_folds=7" in overrides
    incomplete = {k: v for k, v in STUDY.items() if k != "plots"}
    with pytest.raises(ProfileError, match=r"missing from the profile: plots\.dpi"):
        compose(BASE, incomplete, [patch])


def test_profiles_command_line_takes_patches(tmp_path):
    def cli(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "quakeshap.profiles",
                *args,
                "--base",
                str(ROOT / "params.yaml"),
            ],
            capture_output=True,
            text=True,
        )

    matched = str(CONTROLS_DIR / "matched.yaml")
    out = cli("--patch", matched)
    assert out.returncode == 0 and out.stdout.strip() == "-S 'split.match=\"magnitude_distance\"'"
    both = cli(str(ROOT / "profiles" / "study.yaml"), "--patch", matched)
    assert "train.n_folds=7" in both.stdout and "magnitude_distance" in both.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("split: {by: weekday}\n")
    proc = cli("--patch", str(bad))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "split.by" in proc.stderr and str(bad) in proc.stderr


# --------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------


def test_unknown_control_fails_listing_the_known_ones():
    with pytest.raises(ControlError) as err:
        check_names(["matched", "no_such", "other"], sorted(EXPECTED))
    message = str(err.value)
    assert message.startswith("unknown control(s) no_such, other; known controls: ")
    assert all(name in message for name in EXPECTED)
    assert check_names([], ["a", "b"]) == ["a", "b"]
    assert check_names(["b", "a", "b"], ["a", "b"]) == ["b", "a"]


def test_command_line_unknown_name_fails_in_one_line_before_any_work(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "quakeshap.controls", "run", "matched", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent"},  # no dvc to call: nothing may be run
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: unknown control(s) nope; known controls: ")


def test_an_invalid_control_fails_naming_it(tmp_path):
    for name in ("good", "broken"):
        (tmp_path / f"{name}.yaml").write_text("{}\n")
    (tmp_path / "broken.yaml").write_text("train: {n_folds: 1}\n")
    with pytest.raises(ControlError, match=r"^control broken: .*train\.n_folds: must be >= 2"):
        plan_controls([], BASE, None, tmp_path)


class FakeDvc:
    """Records dvc commands; the queue finishes one task per look at it."""

    def __init__(self, existing=(), fail=(), status="{}"):
        self.calls: list[list[str]] = []
        self.existing = set(existing)
        self.fail = set(fail)
        self.queued: list[str] = []
        self.status = status

    def __call__(self, args: list[str]) -> str:
        self.calls.append(args[1:])
        command = args[1:3]
        if command == ["status", "--json"]:
            return self.status
        if command == ["exp", "list"]:
            return "\n".join(sorted(self.existing)) + "\n"
        if command == ["exp", "run"]:
            self.queued.append(args[args.index("-n") + 1])
        if command == ["queue", "status"]:
            done = self.queued.pop(0)
            if done not in self.fail:
                self.existing.add(done)
            rows = [f"abc1234  {name}  04:01 PM  Queued" for name in self.queued]
            return "Task  Name  Created  Status\n" + "\n".join(rows) + "\n\nWorker status: 1 active"
        return ""


def test_runner_queues_each_control_then_runs_the_queue_one_at_a_time():
    plan = _plan(["matched", "study"])
    dvc = FakeDvc(fail={"control-study"})
    results = run_controls(plan, run=dvc, poll_s=0, log=lambda _: None)
    assert results == {"matched": True, "study": False}
    assert dvc.calls[:2] == [["status", "--json"], ["exp", "list", "--name-only"]]
    assert dvc.calls[2] == [
        "exp", "run", "--queue", "-n", "control-matched", "-S", 'split.match="magnitude_distance"'
    ]  # fmt: skip
    assert dvc.calls[3] == ["exp", "run", "--queue", "-n", "control-study"]
    assert dvc.calls[4] == ["queue", "start", "-j", "1"]
    assert dvc.calls[-1] == ["exp", "list", "--name-only"]


def test_runner_refuses_to_overwrite_an_experiment_unless_asked():
    plan = _plan(["matched"])
    dvc = FakeDvc(existing={"control-matched", "other"})
    with pytest.raises(ControlError, match=r"control-matched already exist.*--replace"):
        run_controls(plan, run=dvc, poll_s=0, log=lambda _: None)
    assert len(dvc.calls) == 2  # nothing queued
    dvc = FakeDvc(existing={"control-matched"})
    run_controls(plan, replace=True, run=dvc, poll_s=0, log=lambda _: None)
    assert dvc.calls[2] == ["exp", "remove", "control-matched"]


#: ``dvc status --json`` of a workspace whose params.yaml and code moved on from dvc.lock,
#: and of a fresh clone whose outputs were never pulled (as dvc 3.67 writes them)
SETS, MODEL = spectrogram_set.PATH.as_posix(), checkpoint.PATH.as_posix()
STALE = {
    "train": [
        {"changed deps": {"src/quakeshap/training.py": "modified", SETS: "deleted",
                          "params.yaml": {"train": "modified"}}},
        {"changed outs": {MODEL: "not in cache"}},
    ],
    "plots": [{"changed deps": {"params.yaml": {"plots.dpi": "modified"}}}],
}  # fmt: skip
UNPULLED = {
    "train": [{"changed outs": {MODEL: "deleted"}}],
    "evaluate": [{"changed deps": {MODEL: "deleted"}}],
    "explain": [{"changed deps": {MODEL: "not in cache"}}],
}


def test_runner_refuses_a_workspace_that_dvc_lock_does_not_describe():
    assert controls.stale_stages(STALE) == ["train", "plots"]
    assert controls.stale_stages(UNPULLED) == []
    assert controls.stale_stages({"train": ["changed command"]}) == ["train"]
    dvc = FakeDvc(status=json.dumps(STALE))
    with pytest.raises(ControlError, match=r"stage\(s\) train, plots changed\): run `dvc repro`"):
        run_controls(_plan(["matched"]), run=dvc, poll_s=0, log=lambda _: None)
    assert dvc.calls == [["status", "--json"]]  # nothing queued
    dvc = FakeDvc(status=json.dumps(UNPULLED))
    assert run_controls(_plan(["matched"]), run=dvc, poll_s=0, log=lambda _: None) == {
        "matched": True
    }


def test_pending_experiments_are_read_from_the_queue_status():
    status = (
        "Task     Name             Created    Status\n"
        "753b005  control-matched  04:01 PM   Running\n"
        "1ae8b65  control-study    04:01 PM   Queued\n"
        "0bbb118  control-split    04:00 PM   Success\n"
        "9999999  control-study    03:00 PM   Failed\n"
        "\nWorker status: 1 active, 0 idle\n"
    )
    names = ["control-matched", "control-study", "control-split", "control-x"]
    assert controls.pending_experiments(status, names) == {"control-matched", "control-study"}


# --------------------------------------------------------------------------------------
# end to end: every control as a real DVC experiment on the tiny demo
# --------------------------------------------------------------------------------------

#: on top of the tiny demo: fewer SHAP maps (the controls' metrics, not their figures), and
#: no faithfulness checks (the comparison's faithfulness table: tests/test_control_report.py)
E2E_PARAMS = {
    **TINY_PARAMS,
    "select.week_min": 44,
    "select.week_max": 44,
    "shap.faithfulness.enabled": False,
}


#: the controls the end-to-end run makes real experiments of: one per code path a control
#: takes (the baseline, a waveform filter, a split, a time window, matched classes, shuffled
#: labels); the other six take the same paths with other values (highpass_10hz as
#: lowpass_10hz, split_event as split_time, the other windows as window_p_to_s,
#: wrong_boundary and no_colocated through one parameter each), and every patch is checked
#: above. All twelve as experiments take about ten minutes on two cores.
E2E_CONTROLS = (
    "study", "lowpass_10hz", "split_time", "window_p_to_s", "matched", "shuffled_labels",
)  # fmt: skip


@pytest.mark.slow
def test_make_controls_runs_controls_as_experiments(tmp_path_factory):
    assert set(E2E_CONTROLS) <= EXPECTED
    state = tmp_path_factory.mktemp("dvc-state")
    repo = snapshot_repo(ROOT, tmp_path_factory.mktemp("controls") / "repo", state)
    repo.set_params(E2E_PARAMS)
    repo.commit("tiny demo configuration")
    started = time.monotonic()
    assert repo.repro() == list(STAGES)  # the baseline the controls start from (and `study` is)
    repo.commit("reproduce the tiny demo")
    try:
        # up to explain: every metric the comparison reads, without the figures
        make = ["make", "-o", ".venv/.installed", "controls", f"CONTROLS={' '.join(E2E_CONTROLS)}",
                "CONTROLS_FLAGS=--until explain"]  # fmt: skip
        proc = repo.run(make, check=False, timeout=3000)
    finally:
        repo.dvc("queue", "stop", check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(E2E_CONTROLS)
    assert f"{n} of {n} control(s) finished" in proc.stdout
    show = json.loads(repo.dvc("exp", "show", "--json").stdout)
    found = {
        exp["name"]: exp["revs"][0]["data"]
        for baseline in show
        for exp in baseline.get("experiments") or []
    }
    assert set(found) == {f"control-{name}" for name in E2E_CONTROLS}
    for name, data in found.items():
        evaluate = data["metrics"][metric_files.PATHS["evaluate"].as_posix()]["data"]
        assert {"accuracy", "f1"} <= set(evaluate), name
        # ROC AUC is undefined (null, which dvc exp show leaves out) when the test set holds
        # one class: split_time's latest traces are all aftershocks
        one_class = evaluate["n_pre"] == 0 or evaluate["n_post"] == 0
        assert ("roc_auc" in evaluate) != one_class, name
        explain = data["metrics"][metric_files.PATHS["explain"].as_posix()]["data"]
        assert {"band_fraction", "window_fraction"} <= set(explain), name
    params = {n: d["params"]["params.yaml"]["data"] for n, d in found.items()}
    assert params["control-matched"]["split"]["match"] == "magnitude_distance"
    assert params["control-study"] == yaml.safe_load((repo.root / "params.yaml").read_text())
    # and the comparison page, written from `dvc exp show --json` after the queue
    page = (repo.root / control_report.PAGE).read_text()
    for name in E2E_CONTROLS:
        assert f"<td>{name}</td>" in page, name
    assert page.count("<td>done</td>") == n
    print(f"\n{n} controls on the tiny demo: {elapsed:.0f} s")
    shutil.rmtree(repo.root, ignore_errors=True)
