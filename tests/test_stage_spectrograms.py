"""The ``spectrograms`` stage end to end: outputs, determinism, every bad input."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from quakeshap import files as quakeshap_files
from quakeshap.artifacts import metrics, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS
from quakeshap.artifacts.spectrograms import REQUIRED_COLUMNS
from quakeshap.config import load_params
from quakeshap.record import attributes_path, hdf5_path, similar_traces_path
from quakeshap.spectrogram import build_spectrogram_set, compute_spectrograms, quantize
from quakeshap.stages import spectrograms as spectrograms_stage

from .raw_fixtures import RawSet, write_hdf5, write_raw

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stage() -> ModuleType:
    return spectrograms_stage


@dataclasses.dataclass
class Project:
    """A working folder with params.yaml, data/raw, and the stage's output paths."""

    root: Path
    raw: RawSet

    @property
    def out(self) -> Path:
        return self.root / spectrogram_set.PATH

    @property
    def rejected(self) -> Path:
        return self.root / metrics.REJECTED_PATH

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def set_params(self, **spectrogram) -> None:
        params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
        for key, value in spectrogram.items():
            section, _, name = key.rpartition("__")
            target = params[section or "spectrogram"]
            target[name] = value
        self.params.write_text(yaml.safe_dump(params))

    def argv(self) -> list[str]:
        return [
            "--params",
            str(self.params),
            "--raw",
            str(self.raw.root),
            "--out",
            str(self.out),
            "--rejected",
            str(self.rejected),
        ]

    def leftovers(self) -> list[str]:
        """Anything the stage left in its output folders (temporary siblings included)."""
        found = []
        for folder in (self.root / "data", self.root / "reports"):
            if folder.exists():
                found += [p.name for p in folder.rglob("*") if raw.PATH.name not in p.parts]
        return found


@pytest.fixture
def project(tmp_path: Path, rng: np.random.Generator) -> Project:
    proj = Project(tmp_path, write_raw(tmp_path / raw.PATH, rng, n_pre=9, n_post=7))
    proj.set_params(max_rejected_fraction=0.3)
    return proj


def run_ok(stage: ModuleType, project: Project) -> None:
    assert stage.main(project.argv()) == 0


def test_outputs_describe_the_valid_traces(stage, project: Project) -> None:
    names = list(project.raw.waveforms["pre"])
    pre = dict(project.raw.waveforms["pre"])
    pre[names[1]] = pre[names[1]][:2]
    write_hdf5(hdf5_path(project.raw.root, "NRCA", "pre"), pre)
    run_ok(stage, project)

    dataset = spectrogram_set.load(project.out)
    assert len(dataset) == 15
    assert dataset.images.dtype == np.uint8 and dataset.images.shape == (15, 3, 33, 96)
    meta = dataset.metadata
    assert list(meta.columns[:17]) == list(ATTRIBUTE_COLUMNS)
    assert set(REQUIRED_COLUMNS) <= set(meta.columns)
    expected = [n for n in names if n != names[1]] + list(project.raw.waveforms["post"])
    assert meta["trace_name"].tolist() == expected
    assert meta["label"].tolist() == ["pre"] * 8 + ["post"] * 7
    assert meta["filename"].tolist() == [f"{n}.png" for n in expected]
    assert (meta["trace_p_arrival_s"] == 5.0).all() and (
        meta["trace_p_arrival_sample"] == 500
    ).all()
    np.testing.assert_allclose(meta["trace_s_arrival_s"], 5.0 + meta["p_s_diff_sec"])
    # attribute values come through unchanged
    source = project.raw.attributes["pre"].set_index("trace_name")
    row = meta.set_index("trace_name").loc[names[0]]
    assert row["trace_start_time"] == source.loc[names[0], "trace_start_time"]
    assert row["source_magnitude"] == source.loc[names[0], "source_magnitude"]

    rejected = metrics.load_rejected(project.rejected)
    pre_file = hdf5_path(project.raw.root, "NRCA", "pre").relative_to(project.raw.root)
    values = (names[1], pre_file.as_posix(), "fewer than 3 channels: shape (2, 2500)")
    assert rejected.to_dict("records") == [dict(zip(metrics.REJECTED_COLUMNS, values, strict=True))]

    # every image is the study's spectrogram of its raw trace
    waves = {**project.raw.waveforms["pre"], **project.raw.waveforms["post"]}
    stack = np.stack([waves[n] for n in expected])
    reference = quantize(
        compute_spectrograms(stack, load_params(project.params).spectrogram).images, "uint8"
    )
    np.testing.assert_array_equal(dataset.images, reference)
    np.testing.assert_allclose(dataset.frequency_hz, np.linspace(0, 50, 33))
    assert dataset.time_s[0] == pytest.approx(0.32) and dataset.time_s[-1] == pytest.approx(12.67)
    assert dataset.axes["quantization"] == "uint8"
    assert {p.name for p in project.out.iterdir()} == {
        spectrogram_set.IMAGES_FILE,
        spectrogram_set.METADATA_FILE,
        spectrogram_set.AXES_FILE,
    }


def test_associato_and_singletons(stage, project: Project) -> None:
    pre = list(project.raw.waveforms["pre"])
    post = list(project.raw.waveforms["post"])
    groups = {pre[0]: 0, pre[1]: 0, post[0]: 0, pre[2]: 5, post[1]: 5, pre[3]: 9, "GONE": 9}
    similar = dict(zip(raw.SIMILAR_COLUMNS, (list(groups), list(groups.values())), strict=True))
    raw.write_similar_traces(similar_traces_path(project.raw.root, "NRCA"), pd.DataFrame(similar))
    # post[1] is rejected: group 5 is left with pre[2] alone and is reset
    with h5py.File(hdf5_path(project.raw.root, "NRCA", "post"), "a") as fh:
        del fh[post[1]]
    run_ok(stage, project)
    meta = spectrogram_set.load(project.out).metadata.set_index("trace_name")["associato"]
    assert meta[[pre[0], pre[1], post[0]]].tolist() == [1, 1, 1]
    assert meta[pre[2]] == 0 and meta[pre[3]] == 0
    assert (meta.drop([pre[0], pre[1], post[0]]) == 0).all()


def test_week_and_split(stage, project: Project) -> None:
    run_ok(stage, project)
    meta = spectrogram_set.load(project.out).metadata
    weeks = pd.to_datetime(meta["trace_start_time"], utc=True).dt.isocalendar().week
    assert meta["week"].tolist() == weeks.astype(int).tolist()
    assert set(meta["split"]) == {"train", "test"}
    assert (meta["split"] == "test").sum() == 4  # ceil(0.2 * 16)


def test_run_twice_is_byte_identical(stage, project: Project) -> None:
    def snapshot() -> dict[str, bytes]:
        files = [*project.out.rglob("*"), project.rejected]
        return {str(p.relative_to(project.root)): p.read_bytes() for p in files if p.is_file()}

    with h5py.File(hdf5_path(project.raw.root, "NRCA", "post"), "a") as fh:
        del fh[next(iter(project.raw.waveforms["post"]))]
    run_ok(stage, project)
    first = snapshot()
    run_ok(stage, project)
    assert snapshot() == first
    project.set_params(max_rejected_fraction=0.3, chunk_size=1)
    run_ok(stage, project)
    assert snapshot() == first  # the chunk size changes nothing but memory
    for workers in (1, 3):
        project.set_params(max_rejected_fraction=0.3, chunk_size=3, workers=workers)
        run_ok(stage, project)
        assert snapshot() == first  # nor does the number of threads


def test_images_file_is_what_numpy_save_writes(project: Project) -> None:
    # two rejected traces: the file is written for 16 rows and ends holding 14
    pre = dict(project.raw.waveforms["pre"])
    names = list(pre)
    pre[names[2]] = pre[names[2]][:1]
    del pre[names[5]]
    write_hdf5(hdf5_path(project.raw.root, "NRCA", "pre"), pre)
    project.set_params(max_rejected_fraction=0.3, chunk_size=4)
    params = load_params(project.params)
    metadata, rejections = build_spectrogram_set(
        params, project.raw.root, project.out, project.rejected
    )
    assert len(rejections) == 2
    images = np.load(project.out / spectrogram_set.IMAGES_FILE)
    assert images.shape == (14, 3, 33, 96)
    buffer = io.BytesIO()
    np.save(buffer, images)
    assert (project.out / spectrogram_set.IMAGES_FILE).read_bytes() == buffer.getvalue()
    # the metadata is streamed to disk: the bytes quakeshap.files.write_csv gives
    quakeshap_files.write_csv(project.root / "expected.csv", metadata)
    assert (project.out / spectrogram_set.METADATA_FILE).read_bytes() == (
        project.root / "expected.csv"
    ).read_bytes()


def test_float32_preprocessing_and_png_export(stage, project: Project) -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["spectrogram"].update(quantization="float32", export_png=True, chunk_size=5)
    params["spectrogram"]["preprocess"].update(demean=True, lowpass_hz=10.0)
    project.params.write_text(yaml.safe_dump(params))
    run_ok(stage, project)
    dataset = spectrogram_set.load(project.out)
    assert dataset.images.dtype == np.float32
    assert dataset.axes["preprocess"]["lowpass_hz"] == 10.0
    pngs = sorted(p.name for p in (project.out / spectrogram_set.PNG_DIR).iterdir())
    assert pngs == sorted(dataset.metadata["filename"])
    # low-passed at 10 Hz: little power left above 20 Hz compared with the unfiltered run
    high = dataset.frequency_hz > 20
    filtered = dataset.images[:, :, high].mean()
    project.set_params(quantization="float32")
    run_ok(stage, project)
    assert filtered < spectrogram_set.load(project.out).images[:, :, high].mean()
    assert not (project.out / spectrogram_set.PNG_DIR).exists()


def test_demo_dataset_rejects_exactly_its_planted_defects(stage, tmp_path: Path) -> None:
    from quakeshap.config import DemoConfig
    from quakeshap.demo import demo_defects, write_demo_dataset

    cfg = DemoConfig(n_pre=40, n_post=40, n_colocated_groups=2)
    write_demo_dataset(cfg, tmp_path / raw.PATH)
    proj = Project(tmp_path, RawSet(tmp_path / raw.PATH, "NRCA", {}, {}, pd.DataFrame()))
    proj.set_params(max_rejected_fraction=0.1)
    run_ok(stage, proj)
    rejected = metrics.load_rejected(proj.rejected)
    assert set(rejected["trace_name"]) == set(demo_defects(cfg).all)
    meta = spectrogram_set.load(proj.out).metadata
    assert len(meta) + len(rejected) == 80
    assert meta["associato"].gt(0).any()


# ---------------------------------------------------------------- bad input


def expect_failure(stage, project: Project, caplog, *patterns: str) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert stage.main(project.argv()) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    for pattern in patterns:
        assert pattern in errors[0], errors[0]
    assert project.leftovers() == []


def test_missing_hdf5(stage, project: Project, caplog) -> None:
    path = hdf5_path(project.raw.root, "NRCA", "post")
    path.unlink()
    expect_failure(stage, project, caplog, str(path), "missing", "dvc repro download")


def test_corrupt_hdf5(stage, project: Project, caplog) -> None:
    path = hdf5_path(project.raw.root, "NRCA", "pre")
    path.write_bytes(os.urandom(5000))
    expect_failure(stage, project, caplog, str(path), "not a readable HDF5 file")


def test_missing_csv(stage, project: Project, caplog) -> None:
    path = attributes_path(project.raw.root, "NRCA", "pre")
    path.unlink()
    expect_failure(stage, project, caplog, str(path), "attribute table missing")


def test_corrupt_csv(stage, project: Project, caplog) -> None:
    path = attributes_path(project.raw.root, "NRCA", "post")
    path.write_bytes(b"\x00\x01\x02\xff" * 50)
    expect_failure(stage, project, caplog, str(path))


def test_csv_missing_a_column(stage, project: Project, caplog) -> None:
    path = attributes_path(project.raw.root, "NRCA", "post")
    project.raw.attributes["post"].drop(columns="trace_start_time").to_csv(path, index=False)
    expect_failure(stage, project, caplog, str(path), "['trace_start_time']")


def test_duplicate_trace_names(stage, project: Project, caplog) -> None:
    path = attributes_path(project.raw.root, "NRCA", "post")
    table = project.raw.attributes["post"]
    pd.concat([table, table.iloc[[0]]]).to_csv(path, index=False)
    expect_failure(stage, project, caplog, "duplicate trace name", table["trace_name"][0])


def test_unknown_station(stage, project: Project, caplog) -> None:
    project.set_params(stations=["NRCA", "XYZ"])
    expect_failure(stage, project, caplog, "['XYZ']", "spectrogram.stations", "['NRCA']")


@pytest.mark.parametrize("defect", ["nan", "inf", "channels", "samples", "absent"])
def test_too_many_rejected(stage, project: Project, caplog, defect: str) -> None:
    pre = dict(project.raw.waveforms["pre"])
    names = list(pre)[:3]
    for name in names:
        if defect in ("nan", "inf"):
            pre[name] = pre[name].copy()
            pre[name][0, 5] = np.nan if defect == "nan" else np.inf
        elif defect == "channels":
            pre[name] = pre[name][:1]
        elif defect == "samples":
            pre[name] = pre[name][:, :1000]
        else:
            del pre[name]
    write_hdf5(hdf5_path(project.raw.root, "NRCA", "pre"), pre)
    project.set_params(max_rejected_fraction=0.1)  # 3 of 16 = 18.8 %
    expect_failure(stage, project, caplog, "3 of 16 traces", "max_rejected_fraction", names[0])
    project.set_params(max_rejected_fraction=0.2)
    run_ok(stage, project)
    assert len(metrics.load_rejected(project.rejected)) == 3


def test_every_trace_rejected(stage, project: Project, caplog) -> None:
    for label in ("pre", "post"):
        write_hdf5(hdf5_path(project.raw.root, "NRCA", label), {})
    project.set_params(max_rejected_fraction=1.0)
    expect_failure(stage, project, caplog, "16 of 16 traces", "absent from HDF5")


def test_constant_trace_is_rejected_not_nan(stage, project: Project) -> None:
    post = dict(project.raw.waveforms["post"])
    name = next(iter(post))
    post[name] = np.full((3, 2500), 12.0)
    write_hdf5(hdf5_path(project.raw.root, "NRCA", "post"), post)
    run_ok(stage, project)
    rejected = metrics.load_rejected(project.rejected)
    assert rejected["trace_name"].tolist() == [name]
    assert rejected["reason"][0].startswith("constant spectrogram")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle(stage, project: Project, caplog) -> None:
    marker = project.root / "pwned"
    path = similar_traces_path(project.raw.root, "NRCA")
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    expect_failure(stage, project, caplog, str(path), "refused to load", "posix.system")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunk_sise": 10}, "spectrogram.chunk_sise (did you mean 'chunk_size'?)"),
        ({"chunk_size": "many"}, "spectrogram.chunk_size"),
        ({"quantization": "uint16"}, "spectrogram.quantization"),
        ({"split__by": "random"}, "split.by"),
        ({"noverlap": 64}, "spectrogram.noverlap"),
    ],
)
def test_bad_parameters_fail_before_any_work(stage, project: Project, caplog, change, message):
    # an earlier good run: a bad parameter must not even touch its outputs
    run_ok(stage, project)
    before = (project.out / spectrogram_set.IMAGES_FILE).read_bytes()
    project.set_params(max_rejected_fraction=0.3, **change)
    caplog.clear()
    assert stage.main(project.argv()) == 1
    assert message in caplog.text
    assert (project.out / spectrogram_set.IMAGES_FILE).read_bytes() == before


def test_lowpass_above_nyquist_is_a_parameter_error(stage, project: Project, caplog) -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["spectrogram"]["preprocess"]["lowpass_hz"] = 60.0
    project.params.write_text(yaml.safe_dump(params))
    expect_failure(stage, project, caplog, "spectrogram.preprocess.lowpass_hz", "Nyquist")


@pytest.mark.slow
def test_command_line_prints_one_line_and_exits_1(project: Project) -> None:
    project.set_params(stations=["NOPE"])
    result = subprocess.run(
        [sys.executable, "-m", spectrograms_stage.__name__, *project.argv()],
        capture_output=True,
        text=True,
        cwd=project.root,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "['NOPE']" in errors[0]
