"""The on-disk spectrogram set: its three files must agree, or loading says why."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from quakeshap import dataset, files
from quakeshap.dataset import DatasetError


def _write_set(folder, rng, n=4, dtype=np.uint8, drop=None):
    folder.mkdir(parents=True, exist_ok=True)
    if dtype == np.uint8:
        images = rng.integers(0, 256, size=(n, 3, 33, 96), dtype=np.uint8)
    else:
        images = rng.random((n, 3, 33, 96)).astype(np.float32)
    files.save_npy(folder / dataset.IMAGES_FILE, images)
    meta = {c: [f"{c}{i}" for i in range(n)] for c in dataset.REQUIRED_COLUMNS}
    meta["label"] = ["pre", "post"] * (n // 2)
    frame = pd.DataFrame(meta)
    if drop:
        frame = frame.drop(columns=[drop])
    files.write_csv(folder / dataset.METADATA_FILE, frame)
    axes = {"frequency_hz": np.linspace(0, 50, 33).tolist(), "time_s": np.arange(96).tolist()}
    (folder / dataset.AXES_FILE).write_text(json.dumps(axes))
    return images


def test_load_and_scale(tmp_path, rng):
    images = _write_set(tmp_path / "s", rng)
    sset = dataset.load_spectrogram_set(tmp_path / "s")
    assert len(sset) == 4 and sset.image_shape == (3, 33, 96)
    x = sset.as_float()
    assert x.dtype == np.float32
    np.testing.assert_allclose(x * 255, images.astype(np.float32), atol=1e-4)
    np.testing.assert_array_equal(sset.labels(), [0, 1, 0, 1])
    np.testing.assert_array_equal(sset.rows(["trace_name2", "trace_name0"]), [2, 0])


def test_float32_set_is_taken_as_is(tmp_path, rng):
    images = _write_set(tmp_path / "s", rng, dtype=np.float32)
    np.testing.assert_array_equal(dataset.load_spectrogram_set(tmp_path / "s").as_float(), images)


def test_unknown_trace_is_an_error(tmp_path, rng):
    _write_set(tmp_path / "s", rng)
    sset = dataset.load_spectrogram_set(tmp_path / "s")
    with pytest.raises(DatasetError, match="not in the spectrogram set"):
        sset.rows(["nope"])


def test_missing_file_column_and_mismatch(tmp_path, rng):
    with pytest.raises(DatasetError, match="incomplete"):
        dataset.load_spectrogram_set(tmp_path / "absent")
    _write_set(tmp_path / "nocol", rng, drop="week")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['week'\]"):
        dataset.load_spectrogram_set(tmp_path / "nocol")
    _write_set(tmp_path / "mix", rng)
    files.save_npy(tmp_path / "mix" / dataset.IMAGES_FILE, np.zeros((5, 3, 33, 96), np.uint8))
    with pytest.raises(DatasetError, match="mixes two runs"):
        dataset.load_spectrogram_set(tmp_path / "mix")
