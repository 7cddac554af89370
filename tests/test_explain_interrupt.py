"""Stopping the explain stage stops its workers: Ctrl+C and SIGTERM end the stage and its
pool within seconds, with no output left; SIGKILL leaves the workers to notice and exit
(``docs/cluster.md``). The stage runs as a real process with two spawned workers, each in
the middle of a long trace when the signal comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from quakeshap.artifacts import metrics, shap_set
from tests.fixtures import make_checkpoint
from tests.test_explain import _selection, _write_inputs, stage_args
from tests.test_explain import sset as sset  # the tiny set, a fixture

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

#: seconds the workers have to be gone after the signal
GONE_WITHIN_S = 5.0


def _start_stage(root: Path) -> subprocess.Popen:
    """The explain stage with 2 workers on traces that take minutes (5000 evaluations and
    the faithfulness checks each), in a session of its own (its own process group)."""
    command = [sys.executable, "-m", "quakeshap.stages.explain", *stage_args(root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip


def _ignores_sigint(pid: int) -> bool:
    """Whether the process ignores SIGINT: the first thing a worker's initializer does."""
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    mask = int(ignored.split()[1], 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


def _working_pool(stage: subprocess.Popen, timeout_s: float = 180) -> list[psutil.Process]:
    """Every descendant of the stage, once its 2 pool workers have started working."""
    parent = psutil.Process(stage.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert stage.poll() is None, stage.communicate()[1][-3000:]
        try:
            children = parent.children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())
                       and "resource_tracker" not in " ".join(c.cmdline())]  # fmt: skip
            if len(workers) == 2 and all(_ignores_sigint(w.pid) for w in workers):
                time.sleep(1.0)  # into their first trace
                return parent.children(recursive=True)
        except (psutil.NoSuchProcess, FileNotFoundError, StopIteration):
            pass
        time.sleep(0.2)
    pytest.fail("the stage's workers did not start")


def _gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still alive after ``seconds`` (zombies count as gone)."""
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(autouse=True)
def ctrl_c_not_ignored():
    """Start the stages as a terminal starts a foreground job: with Ctrl+C at Python's
    default. A test run started in the background (``make test &``, ``nohup``) ignores
    SIGINT, and a child inherits that: the stage then rightly leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def project(tmp_path, sset):
    _write_inputs(tmp_path, sset, make_checkpoint(), _selection(sset),
                  shap={"workers": 2, "max_evals": 5000})  # fmt: skip
    return tmp_path


@pytest.mark.parametrize(
    ("how", "code"),
    [("ctrl+c", 128 + signal.SIGINT), ("sigterm", 128 + signal.SIGTERM)],
)
def test_ctrl_c_and_sigterm_stop_the_stage_and_its_workers(project, how, code):
    stage = _start_stage(project)
    try:
        descendants = _working_pool(stage)
        assert len(descendants) >= 2
        if how == "ctrl+c":  # a terminal sends SIGINT to the whole foreground group
            os.killpg(stage.pid, signal.SIGINT)
        else:  # a scheduler (SLURM, systemd, dvc's own Ctrl+C) signals the stage
            os.kill(stage.pid, signal.SIGTERM)
        started = time.monotonic()
        _, stderr = stage.communicate(timeout=60)
        assert time.monotonic() - started < GONE_WITHIN_S + 5
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode == code, stderr[-3000:]
    assert _gone_within(descendants, GONE_WITHIN_S) == []
    name = signal.Signals(code - 128).name
    lines = [line for line in stderr.splitlines() if "interrupted by" in line]
    assert lines == [f"ERROR quakeshap.stages.explain: interrupted by {name}: every worker "
                     f"stopped, nothing written to {project / shap_set.PATH}"]  # fmt: skip
    assert "Traceback" not in stderr
    assert not (project / shap_set.PATH).exists()
    assert not (project / metrics.PATHS["explain"]).exists()
    folder = (project / shap_set.PATH).parent
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_workers_of_a_killed_stage_exit_instead_of_finishing_their_traces(project):
    stage = _start_stage(project)
    try:
        descendants = _working_pool(stage)
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait(timeout=10)
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode == -signal.SIGKILL
    assert _gone_within(descendants, GONE_WITHIN_S) == []
    assert not (project / shap_set.PATH).exists()
