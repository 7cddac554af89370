"""The distributed benchmark runs (smoke mode: a 1- and a 2-worker LocalCluster, a torchrun
of 2 gloo ranks) and writes a well-formed result; its numbers are not asserted."""

from __future__ import annotations

import pytest

from tests.test_benchmarks import _run_smoke


@pytest.mark.slow
def test_distributed_benchmark_smoke(tmp_path):
    result = _run_smoke("distributed", tmp_path)
    checks = {c["name"]: c for c in result["checks"]}
    # the maps on Dask are the local path's, whatever the machine's load
    assert checks["dask_max_abs_difference_vs_local"]["value"] == 0.0
    training = result["details"]["training"]
    assert training["one_process"]["world_size"] == 1
    ranks = training["ddp_2_ranks_by_batch_per_rank"]
    assert {r["world_size"] for r in ranks.values()} == {2}
    assert all(0 <= r["test_accuracy"] <= 1 for r in ranks.values())
