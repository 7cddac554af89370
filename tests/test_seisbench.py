"""SeisBench out and in (:mod:`quakeshap.interop.seisbench`, ``data.source: seisbench``).

A tiny demo run is exported as two SeisBench data sets, read back with the real
``seisbench.data.WaveformDataset``, and converted back into the record's layout by the
``download`` stage: the record's files must come back as they were, and the spectrograms
made of them must equal the run's. A foreign data set (written with SeisBench's own
writer: blocked traces, another component order, P anywhere) is cut around its P arrivals.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import seisbench.data as seisbench_data
import yaml
from scipy import signal

from quakeshap import demo, record
from quakeshap.artifacts import metrics, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import ConfigError, Params, SeisbenchConfig, parse_params, to_dict
from quakeshap.interop import seisbench as export_cli
from quakeshap.interop.seisbench import SPECTROGRAMS_DATASET, WAVEFORMS_DATASET
from quakeshap.interop.seisbench_dataset import (
    SeisbenchError,
    convert_to_record,
    metadata_file,
    waveforms_file,
    write_dataset,
)
from quakeshap.spectrogram import build_spectrogram_set
from quakeshap.stages import download

STATION = "NRCA"
BOUNDARY = record.MAINSHOCK_ORIGIN_UTC


@dataclasses.dataclass(frozen=True)
class Run:
    root: Path
    raw: Path
    spectrograms: Path
    export: Path
    params: Params


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A tiny demo run (120 traces, defects included), its spectrograms and its export."""
    root = tmp_path_factory.mktemp("seisbench_run")
    params = Params()
    small = dataclasses.replace(params.data.demo, n_pre=60, n_post=60, n_colocated_groups=3)
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, demo=small))
    demo.write_demo_dataset(params.data.demo, root / raw.PATH)
    out = root / spectrogram_set.PATH
    build_spectrogram_set(params, root / raw.PATH, out, root / metrics.REJECTED_PATH)
    assert export_cli.main(["export", "--raw", str(root / raw.PATH), "--spectrograms",
                            str(out), "--out", str(root / "export")]) == 0  # fmt: skip
    return Run(root, root / raw.PATH, out, root / "export", params)


def _dataset(folder: Path, **kwargs: object) -> object:
    return seisbench_data.WaveformDataset(folder, component_order="ENZ", **kwargs)


def _raw_waveforms(raw_root: Path, names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for label in record.CLASS_NAMES:
        with h5py.File(record.hdf5_path(raw_root, STATION, label), "r") as fh:
            out.update({n: fh[n][()] for n in names if n in fh})
    return out


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------


def test_export_is_a_seisbench_waveform_dataset(run):
    sset = spectrogram_set.load(run.spectrograms)
    data = _dataset(run.export / WAVEFORMS_DATASET)
    meta = data.metadata
    names = sset.metadata["trace_name"].tolist()
    assert meta["trace_name"].tolist() == names
    assert meta["split"].tolist() == sset.metadata["split"].tolist()
    assert meta["label"].tolist() == sset.metadata["label"].tolist()
    assert (meta["trace_sampling_rate_hz"] == 100.0).all()
    assert (meta["trace_p_arrival_sample"] == record.P_ARRIVAL_SAMPLE).all()
    s_sample = 500 + 100 * sset.metadata["p_s_diff_sec"].to_numpy()
    np.testing.assert_allclose(meta["trace_s_arrival_sample"], s_sample, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(meta["source_magnitude"], sset.metadata["source_magnitude"])
    assert meta["source_id"].astype(str).tolist() == sset.metadata["source_id"].tolist()
    assert (meta["station_code"] == STATION).all()
    assert (meta["station_network_code"] == "IV").all()
    start = pd.to_datetime(meta["trace_start_time"], utc=True)
    assert (start == record.parse_times(sset.metadata["trace_start_time"])).all()
    origin = record.parse_times(sset.metadata["source_origin_time"])
    assert (meta["source_origin_time"] == origin).all()
    fmt = data.data_format
    assert fmt["component_order"] == "ENZ" and fmt["dimension_order"] == "CW"
    assert fmt["sampling_rate"] == 100.0
    assert fmt["measurement"] == "velocity" and fmt["unit"] == "counts"
    waves = data.get_waveforms()
    assert waves.shape == (len(names), 3, record.TRACE_SAMPLES)
    originals = _raw_waveforms(run.raw, names)
    for k in (0, len(names) // 2, len(names) - 1):
        np.testing.assert_array_equal(waves[k], originals[names[k]])
    # SeisBench's own splits work on it
    assert len(data.train()) + len(data.test()) == len(names)


def test_spectrogram_dataset_holds_the_model_images(run):
    sset = spectrogram_set.load(run.spectrograms)
    data = _dataset(run.export / SPECTROGRAMS_DATASET, dimension_order="NCHW")
    images = data.get_waveforms()
    assert images.shape == (len(sset), 3, 33, 96) and images.dtype == np.float32
    np.testing.assert_array_equal(images, sset.as_float())
    np.testing.assert_array_equal(data.data_format["frequency_hz"], sset.frequency_hz)
    rate = data.metadata["trace_sampling_rate_hz"].to_numpy()
    np.testing.assert_allclose(rate, 1 / (sset.time_s[1] - sset.time_s[0]))
    # arrivals are column positions: column k lies at time_s[0] + k / rate from the start
    p_s = sset.time_s[0] + data.metadata["trace_p_arrival_sample"].to_numpy() / rate
    np.testing.assert_allclose(p_s, record.P_ARRIVAL_S, atol=1e-9)
    s_s = sset.time_s[0] + data.metadata["trace_s_arrival_sample"].to_numpy() / rate
    np.testing.assert_allclose(s_s, sset.metadata["trace_s_arrival_s"], atol=1e-9)
    first = pd.to_datetime(data.metadata["trace_start_time"], utc=True)
    start = record.parse_times(sset.metadata["trace_start_time"])
    np.testing.assert_allclose((first - start).dt.total_seconds(), sset.time_s[0], atol=1e-6)


def test_export_twice_gives_the_same_bytes(run, tmp_path):
    again = tmp_path / "again"
    argv = ["export", "--raw", str(run.raw), "--spectrograms", str(run.spectrograms)]
    assert export_cli.main([*argv, "--out", str(again)]) == 0
    for dataset in (WAVEFORMS_DATASET, SPECTROGRAMS_DATASET):
        for name in (metadata_file(), waveforms_file()):
            first = (run.export / dataset / name).read_bytes()
            assert (again / dataset / name).read_bytes() == first, (dataset, name)


def test_export_refuses_a_raw_folder_of_another_run(run, tmp_path):
    other = tmp_path / "raw"
    shutil.copytree(run.raw, other)
    names = spectrogram_set.load_trace_names(run.spectrograms).tolist()
    path = record.hdf5_path(other, STATION, "pre")
    with h5py.File(path, "a") as fh:
        gone = next(n for n in names if n in fh)
        del fh[gone]
    out = tmp_path / "export"
    argv = ["export", "--raw", str(other), "--spectrograms", str(run.spectrograms)]
    assert export_cli.main([*argv, "--out", str(out)]) == 1
    assert not out.exists()


# --------------------------------------------------------------------------------------
# import: the round trip through the download stage
# --------------------------------------------------------------------------------------


def _params_file(folder: Path, params: Params, **seisbench: object) -> Path:
    data = dataclasses.replace(
        params.data, source="seisbench", seisbench=SeisbenchConfig(**seisbench)
    )
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(to_dict(dataclasses.replace(params, data=data))))
    return path


def test_round_trip_gives_back_the_record_files(run, tmp_path):
    params = _params_file(tmp_path, run.params, path=str(run.export / WAVEFORMS_DATASET))
    out = tmp_path / "raw"
    assert download.main(["--params", str(params), "--out", str(out)]) == 0
    assert (out / raw.MANIFEST_FILE).is_file()
    sset = spectrogram_set.load(run.spectrograms)
    exported = set(sset.metadata["trace_name"])
    for label in record.CLASS_NAMES:
        before = raw.read_attributes(record.attributes_path(run.raw, STATION, label))
        before = before[before["trace_name"].isin(exported)].reset_index(drop=True)
        after = raw.read_attributes(record.attributes_path(out, STATION, label))
        pd.testing.assert_frame_equal(after, before)
        # the text itself: times and numbers written as the record writes them
        lines = record.attributes_path(out, STATION, label).read_text().splitlines()
        original = set(record.attributes_path(run.raw, STATION, label).read_text().splitlines())
        assert set(lines) <= original
        with (
            h5py.File(record.hdf5_path(run.raw, STATION, label), "r") as a,
            h5py.File(record.hdf5_path(out, STATION, label), "r") as b,
        ):
            assert sorted(b) == sorted(after["trace_name"])
            for name in b:
                np.testing.assert_array_equal(b[name][()], a[name][()])
    similar = pd.read_pickle(record.similar_traces_path(out, STATION))
    grouped = sset.metadata.loc[sset.metadata["associato"] > 0]
    assert sorted(similar["trace_name"]) == sorted(grouped["trace_name"])
    # the spectrogram stage makes the same images of the imported layout
    again = tmp_path / "spectrograms"
    build_spectrogram_set(run.params, out, again, tmp_path / metrics.REJECTED_PATH)
    second = spectrogram_set.load(again)
    assert second.metadata["trace_name"].tolist() == sset.metadata["trace_name"].tolist()
    np.testing.assert_array_equal(second.images, sset.images)


def _copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_missing_p_column_is_refused_naming_the_file(run, tmp_path):
    folder = _copy_dataset(run.export / WAVEFORMS_DATASET, tmp_path / "bad")
    table = pd.read_csv(folder / metadata_file())
    table.drop(columns="trace_p_arrival_sample").to_csv(folder / metadata_file(), index=False)
    with pytest.raises(SeisbenchError) as info:
        convert_to_record(SeisbenchConfig(path=str(folder)), BOUNDARY, tmp_path / "out")
    message = str(info.value)
    assert str(folder / metadata_file()) in message and "trace_p_arrival_sample" in message
    assert "\n" not in message
    # through the stage: exit 1, and the previous raw folder untouched
    out = tmp_path / "raw"
    out.mkdir()
    (out / "kept").write_text("previous run")
    params = _params_file(tmp_path, run.params, path=str(folder))
    assert download.main(["--params", str(params), "--out", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["kept"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".raw.")]


def test_unknown_station_and_missing_path_are_refused(run, tmp_path):
    cfg = SeisbenchConfig(path=str(run.export / WAVEFORMS_DATASET), stations=("XXXX",))
    with pytest.raises(SeisbenchError, match=r"XXXX.*has \['NRCA'\]"):
        convert_to_record(cfg, BOUNDARY, tmp_path)
    with pytest.raises(SeisbenchError, match="no such folder"):
        convert_to_record(SeisbenchConfig(path=str(tmp_path / "nowhere")), BOUNDARY, tmp_path)
    mapping = to_dict(Params())
    mapping["data"]["source"] = "seisbench"
    with pytest.raises(ConfigError, match=r"data\.seisbench\.path"):
        parse_params(mapping)
    mapping["data"]["seisbench"]["path"] = str(run.export / WAVEFORMS_DATASET)
    assert parse_params(mapping).data.seisbench.path == mapping["data"]["seisbench"]["path"]
    mapping["data"]["seisbench"]["stations"] = ["NRCA", "NRCA"]
    with pytest.raises(ConfigError, match=r"data\.seisbench\.stations.*twice"):
        parse_params(mapping)
    with pytest.raises(ConfigError, match=r"data\.seisbench\.path"):
        SeisbenchConfig(path=" ")


def _upsampled(run: Run, folder: Path, n: int) -> pd.DataFrame:
    """The first ``n`` exported traces of each class at 200 Hz, as a SeisBench data set."""
    data = _dataset(run.export / WAVEFORMS_DATASET)
    meta = pd.read_csv(run.export / WAVEFORMS_DATASET / metadata_file(), dtype=str)
    meta = meta.groupby("label", sort=False).head(n)
    for column in ("trace_p_arrival_sample", "trace_s_arrival_sample"):
        meta[column] = pd.to_numeric(meta[column]) * 2
    meta["trace_sampling_rate_hz"] = 200.0
    meta["trace_npts"] = 2 * record.TRACE_SAMPLES
    waves = [signal.resample_poly(data.get_waveforms(idx=i), 2, 1, axis=-1) for i in meta.index]
    folder.mkdir()
    fmt = {"sampling_rate": 200.0, "component_order": "ENZ", "dimension_order": "CW"}
    write_dataset(folder, meta, waves, fmt)
    return meta


def test_other_sampling_rates_are_refused_or_resampled(run, tmp_path):
    folder = tmp_path / "at200"
    meta = _upsampled(run, folder, 2)
    with pytest.raises(SeisbenchError, match=r"4 trace\(s\) sampled at \[200.0\] Hz.*resample"):
        convert_to_record(SeisbenchConfig(path=str(folder)), BOUNDARY, tmp_path / "refused")
    out = tmp_path / "resampled"
    convert_to_record(SeisbenchConfig(path=str(folder), resample=True), BOUNDARY, out)
    names = meta["trace_name"].tolist()
    originals = _raw_waveforms(run.raw, names)
    back = _raw_waveforms(out, names)
    assert sorted(back) == sorted(names)
    for name in names:
        a, b = originals[name], back[name]
        assert b.shape == a.shape
        # decimated back to 100 Hz with a zero-phase filter: P stays put, the signal is kept
        inner = slice(100, -100)
        error = np.linalg.norm(b[:, inner] - a[:, inner]) / np.linalg.norm(a[:, inner])
        assert error < 0.05, (name, error)
    for label in record.CLASS_NAMES:
        after = raw.read_attributes(record.attributes_path(out, STATION, label))
        before = raw.read_attributes(record.attributes_path(run.raw, STATION, label))
        before = before.set_index("trace_name").loc[after["trace_name"]].reset_index()
        assert after["trace_start_time"].tolist() == before["trace_start_time"].tolist()


# --------------------------------------------------------------------------------------
# a foreign data set, written by SeisBench's own writer
# --------------------------------------------------------------------------------------


def test_foreign_dataset_is_cut_around_p(tmp_path, caplog):
    rng = np.random.default_rng(7)
    folder = tmp_path / "foreign"
    n_samples = 4000
    start = pd.Timestamp("2016-10-29T12:00:00Z")
    rows = []
    p_samples = [1234.0, 2000.0, 300.0, np.nan]  # the last two cannot be placed
    for i, p in enumerate(p_samples):
        origin = start + pd.Timedelta(hours=i * 24) - pd.Timedelta(seconds=3)
        rows.append(
            {
                "trace_name": f"EX.STA{i}",
                "trace_start_time": (start + pd.Timedelta(hours=i * 24)).isoformat(),
                "trace_sampling_rate_hz": 100.0,
                "trace_p_arrival_sample": p,
                "trace_s_arrival_sample": p + 150.0,
                "station_code": "ABC",
                "station_network_code": "XX",
                "source_id": f"ev{i:03d}",
                "source_origin_time": origin.isoformat(),
                "source_magnitude": 1.5 + i,
            }
        )
    waves = rng.normal(size=(len(rows), 3, n_samples)).astype(np.float32)
    folder.mkdir()
    with seisbench_data.WaveformDataWriter(
        folder / metadata_file(), folder / waveforms_file()
    ) as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": 100.0,
        }
        for row, wave in zip(rows, waves, strict=True):
            writer.add_trace(dict(row), wave)
    blocked = pd.read_csv(folder / metadata_file())
    assert blocked["trace_name"].str.contains("$", regex=False).all()  # SeisBench's blocks

    out = tmp_path / "raw"
    with caplog.at_level(logging.WARNING):
        result = convert_to_record(SeisbenchConfig(path=str(folder)), BOUNDARY, out)
    assert result.left_out == {
        "P arrival less than 5 s after the start": 1,
        "no P arrival (trace_p_arrival_sample is empty)": 1,
    }
    assert "left out 1 trace(s)" in caplog.text
    # trace 0 starts before the mainshock, trace 1 a day later, after it
    assert result.written == {("ABC", "pre"): 1, ("ABC", "post"): 1}
    for i, label in ((0, "pre"), (1, "post")):
        p = int(p_samples[i])
        table = raw.read_attributes(record.attributes_path(out, "ABC", label))
        assert table["trace_name"].tolist() == [f"EX.STA{i}"]
        row = table.iloc[0]
        cut_start = start + pd.Timedelta(hours=i * 24) + pd.Timedelta(seconds=(p - 500) / 100)
        assert record.parse_times(pd.Series([row["trace_start_time"]])).iloc[0] == cut_start
        assert row["p_travel_sec"] == pytest.approx(3 + p / 100)
        assert row["p_s_diff_sec"] == pytest.approx(1.5)
        assert row["s_travel_sec"] == pytest.approx(3 + p / 100 + 1.5)
        assert row["network_code"] == "XX" and row["source_id"] == f"ev{i:03d}"
        with h5py.File(record.hdf5_path(out, "ABC", label), "r") as fh:
            stored = fh[f"EX.STA{i}"][()]
        expected = waves[i][[2, 1, 0], p - 500 : p + 2000]  # ZNE → ENZ, P at sample 500
        np.testing.assert_array_equal(stored, expected.astype(np.float64))


def test_rotated_components_are_required(run, tmp_path):
    folder = _copy_dataset(run.export / WAVEFORMS_DATASET, tmp_path / "z12")
    with h5py.File(folder / waveforms_file(), "a") as fh:
        del fh["data_format/component_order"]
        fh["data_format"].create_dataset("component_order", data="Z12")
    with pytest.raises(SeisbenchError, match=r"no trace has the components ENZ.*Z12"):
        convert_to_record(SeisbenchConfig(path=str(folder)), BOUNDARY, tmp_path / "out")
