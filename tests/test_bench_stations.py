"""Benchmark smoke runs of their own file, so that pytest-xdist (``--dist loadfile``) runs
them beside tests/test_benchmarks.py rather than after it."""

from __future__ import annotations

import pytest

from tests.test_benchmarks import _run_smoke


@pytest.mark.slow
def test_stations_benchmark_smoke(tmp_path):
    result = _run_smoke("stations", tmp_path)
    details = result["details"]
    stations = details["stations"]
    sizes = [row["n_traces"] for row in details["scaling"]]
    assert sizes == [60 * len(stations), 80 * len(stations)]
    assert all(row["peak_rss_mib"] > 0 and row["main_s"] > 0 for row in details["scaling"])
    assert len(details["join"]["whole"]) == len(details["join"]["mmap"]) >= 1
    training = details["network_training"]
    assert training["seconds_per_epoch"] > 0 and len(training["n_train_per_fold"]) == 2
    checks = {check["name"] for check in result["checks"]}
    assert checks == {"time_per_trace_growth", "peak_rss_growth", "join_peak_rss_ratio"}
