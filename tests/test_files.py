"""Atomic writes leave either the complete new output or the old one, never a partial file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quakeshap import files


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp left
    with files.atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_failure_keeps_previous_and_cleans_up(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(ValueError), files.atomic_dir(target) as tmp:
        (tmp / "a").write_text("partial")
        raise ValueError("boom")
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "stale").write_text("x")
    with files.atomic_dir(target) as tmp:
        (tmp / "fresh").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_write_json_is_stable_and_sorted(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    files.write_json(a, {"b": np.float32(0.5), "a": [np.int64(1), 2], "c": np.arange(2)})
    files.write_json(b, {"c": [0, 1], "a": [1, 2], "b": 0.5})
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().endswith("\n")
    assert list(json.loads(a.read_text())) == ["a", "b", "c"]


def test_write_json_maps_nonfinite_to_null(tmp_path):
    path = tmp_path / "m.json"
    files.write_json(path, {"auc": float("nan")})
    assert json.loads(path.read_text()) == {"auc": None}


def test_save_npy_roundtrip_and_bytes(tmp_path, rng):
    array = rng.random((4, 3, 5)).astype(np.float32)
    files.save_npy(tmp_path / "x.npy", array)
    files.save_npy(tmp_path / "y.npy", array.copy())
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), array)
    assert (tmp_path / "x.npy").read_bytes() == (tmp_path / "y.npy").read_bytes()


@pytest.mark.parametrize("max_rows", [7, 100_000])
def test_npy_row_writer_gives_numpy_save_bytes(tmp_path, rng, max_rows):
    rows = (rng.random((7, 3, 4, 5)) * 255).astype(np.uint8)
    with files.NpyRowWriter(tmp_path / "rows.npy", (3, 4, 5), np.uint8, max_rows) as out:
        out.append(rows[:3])
        out.append(rows[3:3])  # an empty chunk (all traces rejected) is fine
        out.append(rows[3:])
    np.save(tmp_path / "whole.npy", rows)
    assert (tmp_path / "rows.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_npy_row_writer_refuses_rows_of_another_shape_or_type(tmp_path):
    with files.NpyRowWriter(tmp_path / "rows.npy", (3, 4), np.uint8, 10) as out:
        with pytest.raises(ValueError, match=r"do not fit .*rows\.npy"):
            out.append(np.zeros((2, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="do not fit"):
            out.append(np.zeros((2, 3, 4), np.float32))


def test_write_csv_has_no_index(tmp_path):
    path = tmp_path / "t.csv"
    files.write_csv(path, pd.DataFrame({"x": [1, 2]}))
    assert path.read_text() == "x\n1\n2\n"


def test_save_figure_has_stable_bytes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name in ("a.png", "b.png"):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [1, 0])
        files.save_figure(fig, tmp_path / name, dpi=50)
        plt.close(fig)
        paths.append(tmp_path / name)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert b"Software" not in paths[0].read_bytes()


def test_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        files.write_text(tmp_path / "f.txt", "x")
        with files.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
