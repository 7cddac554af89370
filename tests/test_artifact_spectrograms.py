"""quakeshap.artifacts.spectrograms: the set's three files must agree, or loading says why."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from quakeshap import files
from quakeshap.artifacts import ArtifactError
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.spectrograms import DatasetError
from quakeshap.record import CLASS_NAMES


def _write_set(folder, rng, n=4, dtype=np.uint8, drop=None):
    if dtype == np.uint8:
        images = rng.integers(0, 256, size=(n, 3, 33, 96), dtype=np.uint8)
    else:
        images = rng.random((n, 3, 33, 96)).astype(np.float32)
    meta = {c: [f"{c}{i}" for i in range(n)] for c in spectrogram_set.REQUIRED_COLUMNS}
    meta["label"] = list(CLASS_NAMES) * (n // 2)
    frame = pd.DataFrame(meta)
    if drop:
        frame = frame.drop(columns=[drop])
    axes = {"frequency_hz": np.linspace(0, 50, 33), "time_s": np.arange(96.0)}
    spectrogram_set.write(folder, images, frame, axes)
    return images, frame


def test_load_and_scale(tmp_path, rng):
    images, _ = _write_set(tmp_path / "s", rng)
    sset = spectrogram_set.load(tmp_path / "s")
    assert len(sset) == 4 and sset.image_shape == (3, 33, 96)
    x = sset.as_float()
    assert x.dtype == np.float32
    np.testing.assert_allclose(x * 255, images.astype(np.float32), atol=1e-4)
    np.testing.assert_array_equal(sset.labels(), [0, 1, 0, 1])
    np.testing.assert_array_equal(sset.rows(["trace_name2", "trace_name0"]), [2, 0])


def test_write_then_load_gives_back_the_set(tmp_path, rng):
    images, frame = _write_set(tmp_path / "s", rng)
    sset = spectrogram_set.load(tmp_path / "s")
    np.testing.assert_array_equal(sset.images, images)
    pd.testing.assert_frame_equal(sset.metadata, frame, check_dtype=False)
    np.testing.assert_array_equal(sset.frequency_hz, np.linspace(0, 50, 33))
    np.testing.assert_array_equal(sset.time_s, np.arange(96.0))
    assert spectrogram_set.load_trace_names(tmp_path / "s").tolist() == frame["trace_name"].tolist()
    # the images file holds what numpy.save writes; the metadata what files.write_csv does
    buffer = io.BytesIO()
    np.save(buffer, images)
    assert (tmp_path / "s" / spectrogram_set.IMAGES_FILE).read_bytes() == buffer.getvalue()
    files.write_csv(tmp_path / "expected.csv", frame)
    assert (tmp_path / "s" / spectrogram_set.METADATA_FILE).read_bytes() == (
        tmp_path / "expected.csv"
    ).read_bytes()


def test_streamed_writing_equals_a_whole_write(tmp_path, rng):
    images, frame = _write_set(tmp_path / "whole", rng)
    axes = {"frequency_hz": np.linspace(0, 50, 33), "time_s": np.arange(96.0)}
    with spectrogram_set.writing(tmp_path / "parts", images.shape[1:], np.uint8, 10) as out:
        out.append(images[:1])
        out.append(images[1:])
        out.finish(frame, axes)
    for name in (spectrogram_set.IMAGES_FILE, spectrogram_set.METADATA_FILE):
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_unfinished_writing_leaves_nothing(tmp_path, rng):
    with pytest.raises(RuntimeError, match="without metadata"):
        with spectrogram_set.writing(tmp_path / "s", (3, 2, 2), np.uint8, 1) as out:
            out.append(np.zeros((1, 3, 2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_float32_set_is_taken_as_is(tmp_path, rng):
    images, _ = _write_set(tmp_path / "s", rng, dtype=np.float32)
    np.testing.assert_array_equal(spectrogram_set.load(tmp_path / "s").as_float(), images)


def test_unknown_trace_is_an_error(tmp_path, rng):
    _write_set(tmp_path / "s", rng)
    sset = spectrogram_set.load(tmp_path / "s")
    with pytest.raises(DatasetError, match="not in the spectrogram set"):
        sset.rows(["nope"])


def test_missing_file_column_and_mismatch(tmp_path, rng):
    assert issubclass(DatasetError, ArtifactError)
    with pytest.raises(DatasetError, match=r"incomplete.*dvc repro spectrograms"):
        spectrogram_set.load(tmp_path / "absent")
    with pytest.raises(DatasetError, match="dvc repro spectrograms"):
        spectrogram_set.load_trace_names(tmp_path / "absent")
    _write_set(tmp_path / "nocol", rng, drop="week")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['week'\]"):
        spectrogram_set.load(tmp_path / "nocol")
    _write_set(tmp_path / "mix", rng)
    mixed = tmp_path / "mix" / spectrogram_set.IMAGES_FILE
    files.save_npy(mixed, np.zeros((5, 3, 33, 96), np.uint8))
    with pytest.raises(DatasetError, match="mixes two runs"):
        spectrogram_set.load(tmp_path / "mix")


def test_other_dtypes_and_axes_of_another_size_are_refused(tmp_path, rng):
    _write_set(tmp_path / "s", rng)
    images = tmp_path / "s" / spectrogram_set.IMAGES_FILE
    files.save_npy(images, np.zeros((4, 3, 33, 96), np.int16))
    with pytest.raises(DatasetError, match="int16"):
        spectrogram_set.load(tmp_path / "s")
    files.save_npy(images, np.zeros((4, 3, 33, 95), np.uint8))
    with pytest.raises(DatasetError, match="describes 33×96 images"):
        spectrogram_set.load(tmp_path / "s")
