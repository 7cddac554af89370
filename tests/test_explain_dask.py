"""``shap.scheduler``: the per-trace jobs on a Dask cluster (a ``LocalCluster`` of two worker
processes started here) give the local pool's maps bit for bit; an unreachable scheduler and
a worker lost mid-trace fail in one line, with nothing written."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
import time

import dask
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from quakeshap import explain as ex
from quakeshap.artifacts import metrics, shap_set
from quakeshap.config import ConfigError, ShapConfig
from quakeshap.explain import ExplainError
from tests.fixtures import make_checkpoint
from tests.test_explain import SMALL, _run_stage, _selection, _write_inputs
from tests.test_explain import sset as sset  # the tiny set, a fixture


def _cluster(**config) -> LocalCluster:
    with dask.config.set(config):
        return LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                            dashboard_address=None, scheduler_port=0)  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    cluster = _cluster()
    yield cluster
    cluster.close()


def _free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scheduler": "host:8786"}, "shap.scheduler: 'host:8786' is neither 'local' nor"),
        ({"scheduler": "http://host:8786"}, "shap.scheduler"),
        ({"scheduler": "tcp://"}, "shap.scheduler"),
        ({"scheduler_timeout_s": 0.0}, "shap.scheduler_timeout_s"),
    ],
)
def test_a_scheduler_that_is_no_address_is_refused_by_name(changes, message):
    with pytest.raises(ConfigError, match=message):
        ShapConfig(**changes)
    for address in ("local", "tcp://10.0.0.5:8786", "tls://scheduler.cluster:8786"):
        assert ShapConfig(scheduler=address).scheduler == address


def test_dask_workers_give_the_local_maps_bit_for_bit(sset, cluster):
    """Against the local path in this process, which gives the local pool's maps bit for
    bit (tests/test_explain.py::test_parallel_equals_serial_and_maps_add_up)."""
    ckpt, chosen = make_checkpoint(), _selection(sset)
    local = ex.explain_selection(sset, chosen, ckpt, SMALL, workers=1)
    on_dask = dataclasses.replace(SMALL, scheduler=cluster.scheduler_address)
    done = []
    remote = ex.explain_selection(sset, chosen, ckpt, on_dask, progress=lambda d, n: done.append(d))
    np.testing.assert_array_equal(remote.values, local.values)
    pd.testing.assert_frame_equal(remote.index, local.index)
    assert done == [1, 2, 3]  # one call per trace, counting up
    # the workers did the work: each built its explainer (the maps are not this process's)
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        built = client.run(lambda: ex.pool._DASK_EXPLAINER is not None)
    assert any(built.values())
    assert ex.pool._DASK_EXPLAINER is None


def test_the_stage_on_dask_writes_the_local_stages_bytes(tmp_path, sset, cluster):
    ckpt, chosen = make_checkpoint(), _selection(sset)

    def run(root, **shap) -> dict[str, bytes]:
        _write_inputs(root, sset, ckpt, chosen, shap=shap)
        assert _run_stage(root) == 0
        out = root / shap_set.PATH
        files = {p.name: p.read_bytes() for p in out.iterdir()}
        return {**files, "metrics": (root / metrics.PATHS["explain"]).read_bytes()}

    local = run(tmp_path / "local")
    assert run(tmp_path / "dask", scheduler=cluster.scheduler_address) == local


def test_an_unreachable_scheduler_fails_within_its_timeout_in_one_line(tmp_path, sset, caplog):
    address = f"tcp://127.0.0.1:{_free_port()}"
    _write_inputs(tmp_path, sset, make_checkpoint(), _selection(sset),
                  shap={"scheduler": address, "scheduler_timeout_s": 2.0})  # fmt: skip
    started = time.perf_counter()
    assert _run_stage(tmp_path) == 1
    assert time.perf_counter() - started < 10  # 2 s of connecting, plus the stage's reading
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage()
    assert f"cannot reach the Dask scheduler at {address} within" in errors[0].getMessage()
    assert not (tmp_path / shap_set.PATH).exists()
    assert not (tmp_path / metrics.PATHS["explain"]).exists()


def test_a_worker_lost_mid_trace_is_a_clear_error(sset):
    """The scheduler set to retry no trace (Dask's default retries a lost trace 3 times,
    with the same result): killing the worker that explains a trace ends the run."""
    cluster = _cluster(**{"distributed.scheduler.allowed-failures": 0})
    try:
        cfg = dataclasses.replace(SMALL, max_evals=4000, scheduler=cluster.scheduler_address)
        outcome: list[BaseException] = []

        def explain() -> None:
            try:
                ex.explain_selection(sset, _selection(sset), make_checkpoint(), cfg)
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        thread = threading.Thread(target=explain)
        thread.start()
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            busy: list[str] = []
            deadline = time.monotonic() + 60
            while not busy and time.monotonic() < deadline:
                busy = [w for w, tasks in client.processing().items() if tasks]
                time.sleep(0.05)
            assert busy, "no worker started a trace"
            time.sleep(0.3)  # inside the trace (each takes seconds at 4000 evaluations)
            pids = client.run(os.getpid, workers=busy[:1])
        os.kill(pids[busy[0]], signal.SIGKILL)
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        cluster.close()
    assert len(outcome) == 1 and isinstance(outcome[0], ExplainError), outcome
    message = str(outcome[0])
    assert "\n" not in message
    assert f"a Dask worker of {cfg.scheduler} died while explaining trace NRCA.IV." in message
