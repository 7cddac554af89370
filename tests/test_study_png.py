"""``spectrogram.source: png``: the study's preprocessed archive read as the spectrogram set."""

from __future__ import annotations

import io
import json
import logging
import shutil
import zipfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from quakeshap.artifacts import metrics, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.config import ConfigError, SpectrogramConfig, load_params
from quakeshap.interop import study_png
from quakeshap.interop.study_release import StudyReleaseError
from quakeshap.spectrogram import build_spectrogram_set, compute_spectrograms, quantize
from quakeshap.stages import spectrograms as spectrograms_stage

from .fixtures import write_params
from .raw_fixtures import write_raw

matplotlib.use("Agg")
from matplotlib import pyplot as plt

#: the study's metadata.csv: the attributes and the columns it added (docs/method.md §2)
STUDY_COLUMNS = [*ATTRIBUTE_COLUMNS, "label", "split", "filename", "associato", "week"]
TOP = "preprocessed_dset/"
ARCHIVE = "dset_preprocessed.zip"


def build(root: Path, raw_root: Path, **spectrogram) -> tuple[Path, pd.DataFrame]:
    """Run the stage's work with ``spectrogram`` changed; returns the set's folder."""
    params = load_params(write_params(root, spectrogram=spectrogram))
    out = root / spectrogram_set.PATH
    metadata, _ = build_spectrogram_set(params, raw_root, out, root / metrics.REJECTED_PATH)
    return out, metadata


@pytest.fixture(scope="module")
def computed(tmp_path_factory) -> tuple[Path, Path]:
    """A raw record and the set computed from its waveforms, with study-style PNG files."""
    root = tmp_path_factory.mktemp("computed")
    raw_set = write_raw(root / raw.PATH, np.random.default_rng(5), n_pre=6, n_post=5)
    out, _ = build(root, raw_set.root, export_png=True)
    return raw_set.root, out


def study_archive(
    target: Path, computed_set: Path, png: dict[str, bytes] | None = None, **extra: bytes
) -> Path:
    """The study's ``dset_preprocessed.zip`` made from a computed set: its PNG files (or
    ``png``), its table cut to the study's columns, ``f_t_range.npy`` and ``stats.json``;
    ``extra`` adds or replaces entries (a value of ``b""`` leaves the entry out)."""
    table = pd.read_csv(computed_set / spectrogram_set.METADATA_FILE, dtype={"trace_name": str})
    if png is None:
        png = {
            f: (computed_set / spectrogram_set.PNG_DIR / f).read_bytes() for f in table["filename"]
        }
    ranges = io.BytesIO()
    np.save(ranges, np.array([0.0, 50.0, 0.32, 12.67]))
    entries = {
        spectrogram_set.METADATA_FILE: table[STUDY_COLUMNS].to_csv(index=False).encode(),
        "f_t_range.npy": ranges.getvalue(),
        "stats.json": json.dumps({"mean": [0.68, 0.67, 0.65], "std": [0.13] * 3}).encode(),
        **{f"spectrograms/{name}": data for name, data in png.items()},
    }
    entries.update(extra)
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in entries.items():
            if data:
                zf.writestr(TOP + name, data)
    return target


def test_imsave_stores_floor_255x_with_0hz_on_top(tmp_path):
    """What ``plt.imsave`` of a (33, 96, 3) image writes is a 96 × 33 RGBA file whose
    values are the uint8 set's, row 0 (0 Hz) on top: read_png gives exactly quantize."""
    rng = np.random.default_rng(0)
    waves = rng.normal(0, 1, (1, 3, 1300)) * np.linspace(1, 50, 1300)
    x = compute_spectrograms(waves, SpectrogramConfig()).images[0]  # (3, 33, 96) in [0, 1]
    x[:, 0, :] = 0.0  # 0 Hz row dark, so a flip would show
    path = tmp_path / "trace.png"
    plt.imsave(path, np.moveaxis(x, 0, -1))  # as the study's notebook did
    with Image.open(path) as image:
        assert (image.size, image.mode) == ((96, 33), "RGBA")
    stored = study_png.read_png(path.read_bytes(), str(path), (33, 96))
    np.testing.assert_array_equal(stored, quantize(x, "uint8"))
    assert (stored[:, 0, :] == 0).all() and stored[:, -1, :].any()


def test_export_png_then_png_source_gives_the_same_set(tmp_path, computed, caplog):
    """A round trip: the study-style PNG files quakeshap exports, read back as the png
    source, give the set computed from the waveforms, value for value."""
    raw_root, waveform_set = computed
    archive_root = tmp_path / "raw"
    # the record's waveforms beside the archive, as `dvc repro download` would leave them
    shutil.copytree(raw_root, archive_root)
    study_archive(archive_root / ARCHIVE, waveform_set)
    with caplog.at_level(logging.INFO, logger="quakeshap"):
        out, metadata = build(tmp_path, archive_root, source="png", png_archive=ARCHIVE)
    ours, theirs = spectrogram_set.load(out), spectrogram_set.load(waveform_set)
    assert ours.images.dtype == np.uint8
    np.testing.assert_array_equal(ours.images, theirs.images)
    pd.testing.assert_frame_equal(ours.metadata, theirs.metadata)
    assert (out / spectrogram_set.METADATA_FILE).read_bytes() == (
        waveform_set / spectrogram_set.METADATA_FILE
    ).read_bytes()
    assert {k: v for k, v in ours.axes.items() if k not in ("source", "png_archive")} == {
        k: v for k, v in theirs.axes.items() if k != "export_png"
    }
    assert (ours.axes["source"], ours.axes["png_archive"]) == ("png", ARCHIVE)
    assert "source" not in theirs.axes  # the waveform path records nothing new
    assert f"{len(metadata)} PNG images equal the images of their waveforms" in caplog.text
    assert (metadata["associato"] != 0).sum() == 3  # the co-located group came through
    rejected = metrics.load_rejected(tmp_path / metrics.REJECTED_PATH)
    assert rejected.empty and list(rejected.columns) == list(metrics.REJECTED_COLUMNS)


def test_unpacked_folder_and_stage_command(tmp_path, computed):
    _, waveform_set = computed
    archive_root = tmp_path / "raw"
    archive_root.mkdir()
    with zipfile.ZipFile(study_archive(tmp_path / ARCHIVE, waveform_set)) as zf:
        zf.extractall(archive_root)  # the download stage unpacks archives into data/raw
    params = write_params(tmp_path, spectrogram={"source": "png", "png_archive": "."})
    out = tmp_path / spectrogram_set.PATH
    argv = ["--params", str(params), "--raw", str(archive_root), "--out", str(out),
            "--rejected", str(tmp_path / metrics.REJECTED_PATH)]  # fmt: skip
    assert spectrograms_stage.main(argv) == 0
    np.testing.assert_array_equal(
        spectrogram_set.load(out).images, spectrogram_set.load(waveform_set).images
    )


def test_images_that_differ_from_their_waveforms_are_reported(tmp_path, computed, caplog):
    raw_root, waveform_set = computed
    table = pd.read_csv(waveform_set / spectrogram_set.METADATA_FILE, dtype={"trace_name": str})
    png = {}
    for name in table["filename"]:
        with Image.open(waveform_set / spectrogram_set.PNG_DIR / name) as image:
            pixels = np.asarray(image)[::-1]  # 0 Hz at the bottom
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
        png[name] = buffer.getvalue()
    shutil.copytree(raw_root, tmp_path / "raw")
    study_archive(tmp_path / "raw" / ARCHIVE, waveform_set, png)
    with caplog.at_level(logging.WARNING, logger="quakeshap"):
        build(tmp_path, tmp_path / "raw", source="png", png_archive=ARCHIVE)
    assert f"{len(table)} of {len(table)} PNG images differ" in caplog.text
    assert "upside down they agree better" in caplog.text


def _png(width: int, height: int, mode: str = "RGBA", alpha: int = 255) -> bytes:
    shape = (height, width) if mode in ("L", "I;16") else (height, width, len(mode))
    pixels = np.full(shape, 100, dtype=np.uint16 if mode == "I;16" else np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = alpha
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _first_png(waveform_set: Path) -> str:
    table = pd.read_csv(waveform_set / spectrogram_set.METADATA_FILE, dtype={"trace_name": str})
    return str(table["filename"].iloc[0])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_size", r"spectrograms/{png}: 33 × 96 pixels \(width × height\), expected 96 × 33"),
        ("grey", r"spectrograms/{png}: PNG mode L, expected 8-bit RGBA"),
        ("sixteen_bit", r"spectrograms/{png}: 16-bit PNG, expected 8-bit"),
        ("transparent", r"spectrograms/{png}: transparent pixels"),
        ("not_png", r"spectrograms/{png}: not a readable PNG image"),
        ("missing_png", r"metadata\.csv: 1 row\(s\) without their PNG .* e\.g\. {trace}"),
        ("no_table", r"{archive}: no metadata\.csv"),
        ("bad_axes", r"f_t_range\.npy: axes \[0\.0, 40\.0, 0\.32, 12\.67\]"),
        ("bad_label", r"metadata\.csv: label 'foreshock' of {trace}"),
        ("duplicate", r"two images called {png}"),
    ],
)
def test_bad_archive_is_refused_naming_the_file(tmp_path, computed, case, message):
    _, waveform_set = computed
    png, trace = _first_png(waveform_set), _first_png(waveform_set).removesuffix(".png")
    table = pd.read_csv(waveform_set / spectrogram_set.METADATA_FILE, dtype={"trace_name": str})
    extra: dict[str, bytes] = {}
    ranges = io.BytesIO()
    np.save(ranges, np.array([0.0, 40.0, 0.32, 12.67]))
    bad_label = table[STUDY_COLUMNS].replace({"label": {"pre": "foreshock"}})
    extra = {
        "wrong_size": {f"spectrograms/{png}": _png(33, 96)},
        "grey": {f"spectrograms/{png}": _png(96, 33, "L")},
        "sixteen_bit": {f"spectrograms/{png}": _png(96, 33, "I;16")},
        "transparent": {f"spectrograms/{png}": _png(96, 33, alpha=0)},
        "not_png": {f"spectrograms/{png}": b"GIF89a not a png"},
        "missing_png": {f"spectrograms/{png}": b""},
        "no_table": {spectrogram_set.METADATA_FILE: b""},
        "bad_axes": {"f_t_range.npy": ranges.getvalue()},
        "bad_label": {spectrogram_set.METADATA_FILE: bad_label.to_csv(index=False).encode()},
        "duplicate": {f"copy/{png}": (waveform_set / spectrogram_set.PNG_DIR / png).read_bytes()},
    }[case]
    archive_root = tmp_path / "raw"
    archive_root.mkdir()
    archive = study_archive(archive_root / ARCHIVE, waveform_set, **extra)
    pattern = message.format(png=png, trace=trace, archive=archive)
    with pytest.raises(StudyReleaseError, match=pattern) as err:
        build(tmp_path, archive_root, source="png", png_archive=ARCHIVE)
    assert str(archive) in str(err.value)
    # nothing half-written: neither the set nor the rejected traces
    assert not (tmp_path / spectrogram_set.PATH).exists()
    assert not (tmp_path / metrics.REJECTED_PATH).exists()
    assert [p.name for p in (tmp_path / spectrogram_set.PATH).parent.glob("*")] == []


def test_stage_reports_a_bad_archive_in_one_line(tmp_path, computed, caplog):
    _, waveform_set = computed
    (tmp_path / "raw").mkdir()
    study_archive(tmp_path / "raw" / ARCHIVE, waveform_set, **{spectrogram_set.METADATA_FILE: b""})
    params = write_params(tmp_path, spectrogram={"source": "png", "png_archive": ARCHIVE})
    argv = ["--params", str(params), "--raw", str(tmp_path / "raw"),
            "--out", str(tmp_path / "out"), "--rejected", str(tmp_path / "r.csv")]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert spectrograms_stage.main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and "no metadata.csv" in errors[0]
    # an archive that is not there at all
    params = write_params(tmp_path, spectrogram={"source": "png", "png_archive": "absent.zip"})
    assert spectrograms_stage.main(argv) == 1
    assert "absent.zip: no such file or folder" in caplog.text


@pytest.mark.parametrize(
    ("spectrogram", "task", "key"),
    [
        ({"source": "png"}, {}, "spectrogram.png_archive"),
        ({"source": "png", "png_archive": "a.zip", "quantization": "float32"}, {},
         "spectrogram.quantization"),
        ({"source": "png", "png_archive": "a.zip", "window": "p_to_s"}, {}, "spectrogram.window"),
        ({"source": "png", "png_archive": "a.zip", "export_png": True}, {},
         "spectrogram.export_png"),
        ({"png_archive": "/data/dset_preprocessed.zip"}, {}, "spectrogram.png_archive"),
        ({"png_archive": "../dset_preprocessed.zip"}, {}, "spectrogram.png_archive"),
        ({"source": "png", "png_archive": "a.zip"}, {"kind": "ttf"}, "task.kind"),
    ],
)  # fmt: skip
def test_parameters_the_png_source_cannot_honour(tmp_path, spectrogram, task, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        params = load_params(write_params(tmp_path, spectrogram=spectrogram, task=task))
        study_png.check_source(params)
