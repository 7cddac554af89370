"""quakeshap.waveforms: the catalogue, trace validation, preprocessing, the rejections.

The unpickler of the similar-traces table is tested in test_unpickle.py, the split and the
co-located groups in test_splits.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from quakeshap.artifacts.metrics import REJECTED_COLUMNS
from quakeshap.artifacts.raw import (
    ATTRIBUTE_COLUMNS,
    METADATA_CACHE_BYTES,
    WaveformError,
    list_stations,
)
from quakeshap.config import PreprocessConfig
from quakeshap.record import CATALOG_DIR, attributes_path, hdf5_path
from quakeshap.waveforms import (
    TooManyRejectedError,
    WaveformReader,
    check_rejections,
    iter_waveforms,
    preprocess_waveforms,
    read_catalog,
    row_rejections,
)

from .raw_fixtures import RawSet, synthetic_waveform, write_hdf5, write_raw


def _relative(path: Path, raw: RawSet) -> str:
    """A file of the raw layout as the catalogue's ``hdf5_file`` names it."""
    return path.relative_to(raw.root).as_posix()


def read_all(raw: RawSet, chunk_size: int = 4, n_samples: int = 1300):
    catalog = read_catalog(raw.root, [raw.station])
    chunks = list(iter_waveforms(catalog, raw.root, n_samples, chunk_size))
    rows = np.concatenate([c.rows for c in chunks])
    data = np.concatenate([c.data for c in chunks])
    rejected = {k: v for c in chunks for k, v in c.rejected.items()}
    return catalog, chunks, rows, data, rejected


# ---------------------------------------------------------------- catalogue


def test_catalog_lists_pre_then_post_in_file_order(raw: RawSet) -> None:
    catalog = read_catalog(raw.root, ["NRCA"])
    expected = [*raw.attributes["pre"]["trace_name"], *raw.attributes["post"]["trace_name"]]
    assert catalog["trace_name"].tolist() == expected
    assert catalog["label"].tolist() == ["pre"] * 6 + ["post"] * 4
    assert list(catalog.columns[:17]) == list(ATTRIBUTE_COLUMNS)
    assert catalog["hdf5_file"].iloc[0] == _relative(hdf5_path(raw.root, "NRCA", "pre"), raw)
    assert catalog["hdf5_file"].iloc[-1] == _relative(hdf5_path(raw.root, "NRCA", "post"), raw)
    times = pd.to_datetime(catalog["trace_start_time"], utc=True, format="ISO8601")
    assert catalog["week"].tolist() == times.dt.isocalendar().week.astype(int).tolist()
    assert catalog["trace_start_time"].iloc[0] == raw.attributes["pre"]["trace_start_time"][0]


def test_iso_week_of_the_studys_timestamp_format(tmp_path: Path, rng) -> None:
    raw = write_raw(tmp_path, rng, n_pre=1, n_post=1)
    path = attributes_path(tmp_path, "NRCA", "post")
    table = pd.read_csv(path, dtype=str)
    table.loc[0, "trace_start_time"] = "2016-10-31 00:15:23.830000+00:00"
    table.to_csv(path, index=False)
    catalog = read_catalog(raw.root, ["NRCA"])
    assert catalog["week"].tolist()[-1] == 44


def test_several_stations_one_after_the_other(raw: RawSet, rng) -> None:
    other = write_raw(raw.root, rng, n_pre=2, n_post=3, station="T1212", groups={})
    catalog = read_catalog(raw.root, ["T1212", "NRCA"])
    assert catalog["station_code"].tolist() == ["T1212"] * 5 + ["NRCA"] * 10
    assert catalog["trace_name"].tolist()[:5] == [
        *other.attributes["pre"]["trace_name"],
        *other.attributes["post"]["trace_name"],
    ]
    assert catalog["hdf5_file"][0] == _relative(hdf5_path(raw.root, "T1212", "pre"), raw)
    assert list_stations(raw.root) == ["NRCA", "T1212"]


def test_unknown_station_lists_the_present_ones(raw: RawSet) -> None:
    with pytest.raises(WaveformError, match=r"unknown station\(s\) \['NRCB'\].*\['NRCA'\]"):
        read_catalog(raw.root, ["NRCB"])


def test_missing_catalogue_folder(tmp_path: Path) -> None:
    with pytest.raises(WaveformError, match="dvc repro download") as err:
        list_stations(tmp_path)
    assert str(tmp_path / CATALOG_DIR) in str(err.value)


def test_missing_attribute_table(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "post")
    path.unlink()
    with pytest.raises(WaveformError, match=f"{path}: attribute table missing"):
        read_catalog(raw.root, ["NRCA"])


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\x00\xff" * 20, b'a,b\n"x,1\n'])
def test_unreadable_attribute_table(raw: RawSet, content: bytes) -> None:
    path = attributes_path(raw.root, "NRCA", "pre")
    path.write_bytes(content)
    with pytest.raises(WaveformError, match=f"{path}: (not a readable CSV|missing column)"):
        read_catalog(raw.root, ["NRCA"])


def test_missing_columns_are_named(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "pre")
    raw.attributes["pre"].drop(columns=["p_s_diff_sec", "source_id"]).to_csv(path, index=False)
    with pytest.raises(WaveformError, match=r"missing column\(s\) \['source_id', 'p_s_diff_sec'\]"):
        read_catalog(raw.root, ["NRCA"])


def test_extra_columns_are_ignored(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "pre")
    raw.attributes["pre"].assign(extra=1).to_csv(path, index=False)
    assert "extra" not in read_catalog(raw.root, ["NRCA"]).columns


def test_empty_attribute_table(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "post")
    raw.attributes["post"].iloc[:0].to_csv(path, index=False)
    with pytest.raises(WaveformError, match="lists no trace"):
        read_catalog(raw.root, ["NRCA"])


def test_non_numeric_p_s_time(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "pre")
    raw.attributes["pre"].assign(p_s_diff_sec="fast").to_csv(path, index=False)
    with pytest.raises(WaveformError, match="p_s_diff_sec is not numeric"):
        read_catalog(raw.root, ["NRCA"])


@pytest.mark.parametrize("across_files", [False, True])
def test_duplicate_trace_names(raw: RawSet, across_files: bool) -> None:
    pre = raw.attributes["pre"]
    if across_files:
        post = raw.attributes["post"].copy()
        post.loc[0, "trace_name"] = pre["trace_name"][2]
        post.to_csv(attributes_path(raw.root, "NRCA", "post"), index=False)
    else:
        pd.concat([pre, pre.iloc[[2]]]).to_csv(
            attributes_path(raw.root, "NRCA", "pre"), index=False
        )
    with pytest.raises(WaveformError, match=rf"duplicate trace name.*{pre['trace_name'][2]}"):
        read_catalog(raw.root, ["NRCA"])


def test_row_rejections(raw: RawSet) -> None:
    path = attributes_path(raw.root, "NRCA", "pre")
    table = raw.attributes["pre"].copy()
    table["trace_start_time"] = table["trace_start_time"].astype(object)
    table.loc[1, "trace_start_time"] = "yesterday"
    table.loc[3, "p_s_diff_sec"] = np.nan
    table.to_csv(path, index=False)
    catalog = read_catalog(raw.root, ["NRCA"])
    reasons = row_rejections(catalog)
    assert reasons[1] == "bad trace_start_time: 'yesterday' is not a timestamp"
    assert reasons[3].startswith("missing p_s_diff_sec")
    assert reasons.drop([1, 3]).isna().all()
    assert catalog["week"][1] == -1


# ---------------------------------------------------------------- waveforms


def test_reads_every_valid_trace(raw: RawSet) -> None:
    catalog, _, rows, data, rejected = read_all(raw)
    assert rejected == {}
    assert rows.tolist() == list(range(10))
    assert data.shape == (10, 3, 1300) and data.dtype == np.float64
    first = raw.waveforms["pre"][catalog["trace_name"][0]]
    np.testing.assert_array_equal(data[0], first[:, :1300])


@pytest.mark.parametrize("chunk_size", [1, 3, 10, 512])
def test_chunking_changes_nothing(raw: RawSet, chunk_size: int) -> None:
    _, _, rows_ref, data_ref, _ = read_all(raw, chunk_size=512)
    _, chunks, rows, data, _ = read_all(raw, chunk_size=chunk_size)
    assert all(len(c.rows) + len(c.rejected) <= chunk_size for c in chunks)
    np.testing.assert_array_equal(rows, rows_ref)
    np.testing.assert_array_equal(data, data_ref)


def test_bad_traces_are_rejected_with_reasons(raw: RawSet, rng) -> None:
    pre = dict(raw.waveforms["pre"])
    names = list(pre)
    pre[names[0]] = pre[names[0]][:2]  # two channels
    pre[names[1]] = pre[names[1]][:, :1299]  # one sample short
    pre[names[2]] = pre[names[2]].copy()
    pre[names[2]][1, 2000] = np.nan  # NaN outside the 13 s window still disqualifies
    pre[names[3]] = pre[names[3]].copy()
    pre[names[3]][0, 10:12] = [np.inf, -np.inf]
    pre[names[4]] = np.concatenate([pre[names[4]], pre[names[4]][:1]])  # four channels
    del pre[names[5]]  # listed, absent
    write_hdf5(hdf5_path(raw.root, "NRCA", "pre"), pre)
    _, _, rows, data, rejected = read_all(raw)
    assert rejected == {
        0: "fewer than 3 channels: shape (2, 2500)",
        1: "too few samples: 1299 < 1300 (spectrogram.n_samples)",
        2: "non-finite samples: 1 NaN, 0 inf",
        3: "non-finite samples: 0 NaN, 2 inf",
        4: "more than 3 channels: shape (4, 2500), expected E, N, Z",
        5: "absent from HDF5: listed in the attribute table but not in "
        + hdf5_path(raw.root, "NRCA", "pre").name,
    }
    assert rows.tolist() == [6, 7, 8, 9]
    assert data.shape == (4, 3, 1300)


def test_one_dimensional_and_group_nodes_are_rejected(raw: RawSet) -> None:
    names = list(raw.waveforms["post"])
    with h5py.File(hdf5_path(raw.root, "NRCA", "post"), "a") as fh:
        del fh[names[0]], fh[names[1]]
        fh.create_dataset(names[0], data=np.zeros(2500))
        fh.create_group(names[1])
    _, _, _, _, rejected = read_all(raw)
    assert rejected[6].startswith("bad shape: (2500,)")
    assert rejected[7].startswith("not a dataset")


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i4", ">i8", "<u2"])
def test_stored_types_read_as_numpy_converts_them(raw: RawSet, dtype: str) -> None:
    pre = {
        name: (trace * 100).astype(dtype) if dtype[1] in "iu" else trace.astype(dtype)
        for name, trace in raw.waveforms["pre"].items()
    }
    write_hdf5(hdf5_path(raw.root, "NRCA", "pre"), pre)
    catalog, _, rows, data, rejected = read_all(raw)
    assert rejected == {}
    for row, name in zip(rows[:6], catalog["trace_name"][:6], strict=True):
        expected = np.asarray(pre[name], dtype=np.float64)[:, :1300]
        np.testing.assert_array_equal(data[row], expected)


def test_types_hdf5_cannot_convert_take_the_high_level_path(raw: RawSet) -> None:
    pre = dict(raw.waveforms["pre"])
    names = list(pre)
    pre[names[0]] = np.full((3, 2500), b"x", dtype="S1")  # text: unreadable as numbers
    pre[names[1]] = pre[names[1]] > 0  # booleans: numpy reads them as 0/1
    write_hdf5(hdf5_path(raw.root, "NRCA", "pre"), pre)
    _, _, rows, data, rejected = read_all(raw)
    assert list(rejected) == [0] and rejected[0].startswith("unreadable: ")
    assert rows[0] == 1
    np.testing.assert_array_equal(data[0], (raw.waveforms["pre"][names[1]] > 0)[:, :1300])


def test_reader_keeps_hdf5s_metadata_cache_small(raw: RawSet) -> None:
    catalog = read_catalog(raw.root, ["NRCA"])
    files = catalog["hdf5_file"].to_numpy()
    with WaveformReader(raw.root, files) as reader:
        assert reader._files == {}  # checked on entry, opened on first use
        chunk = reader.read_chunk(3, catalog["trace_name"][:5], files[:5], 1300)
        handles = list(reader._files.values())
        assert len(handles) == len(set(files[:5]))  # each file of those rows opened once
        for handle in handles:
            assert handle.id.get_mdc_config().max_size == METADATA_CACHE_BYTES
    assert chunk.rows.tolist() == [3, 4, 5, 6, 7]  # positions start at the given row
    assert not any(handle.id.valid for handle in handles)  # closed on exit


def test_reader_closes_each_file_after_its_last_row(raw: RawSet) -> None:
    """One file open at a time while the rows run through them in order: the memory HDF5
    keeps per open file does not add up over stations."""
    catalog = read_catalog(raw.root, ["NRCA"])
    names, files = catalog["trace_name"].to_numpy(), catalog["hdf5_file"].to_numpy()
    first = files[0]
    last_of_first = int(np.flatnonzero(files == first).max())
    with WaveformReader(raw.root, files) as reader:
        reader.read_chunk(0, names[:last_of_first], files[:last_of_first], 1300)
        handle = reader._files[first]
        assert handle.id.valid  # one row of the file still to read
        reader.read_chunk(last_of_first, names[last_of_first:last_of_first + 1],
                          files[last_of_first:last_of_first + 1], 1300)  # fmt: skip
        assert not handle.id.valid and first not in reader._files
        rest = reader.read_chunk(last_of_first + 1, names[last_of_first + 1 :],
                                 files[last_of_first + 1 :], 1300)  # fmt: skip
        assert reader._files == {}  # every row read: every file closed
    assert len(rest.rows) + len(rest.rejected) == len(files) - last_of_first - 1


def test_read_chunk_into_a_reused_buffer(raw: RawSet) -> None:
    catalog = read_catalog(raw.root, ["NRCA"])
    names, files = catalog["trace_name"].to_numpy(), catalog["hdf5_file"].to_numpy()
    buffer = np.full((6, 3, 1300), np.nan)
    with WaveformReader(raw.root, files) as reader:
        fresh = reader.read_chunk(0, names[:4], files[:4], 1300)
        into = reader.read_chunk(0, names[:4], files[:4], 1300, out=buffer)
        assert np.shares_memory(into.data, buffer) and into.data.shape == (4, 3, 1300)
        np.testing.assert_array_equal(into.data, fresh.data)
        with pytest.raises(ValueError, match="cannot hold"):
            reader.read_chunk(0, names[:7], files[:7], 1300, out=buffer)


def test_transform_sees_whole_traces_before_the_cut(raw: RawSet) -> None:
    catalog = read_catalog(raw.root, ["NRCA"])
    seen = []

    def reverse(trace: np.ndarray) -> np.ndarray:
        seen.append(trace.shape)
        return trace[:, ::-1]

    chunks = list(iter_waveforms(catalog, raw.root, 1300, 3, transform=reverse))
    assert seen == [(3, 2500)] * 10
    last = raw.waveforms["post"][catalog["trace_name"].iloc[-1]]
    np.testing.assert_array_equal(chunks[-1].data[-1], last[:, ::-1][:, :1300])


def test_skip_reports_given_reasons_without_reading(raw: RawSet) -> None:
    catalog = read_catalog(raw.root, ["NRCA"])
    skip = pd.Series([None] * len(catalog), dtype=object)
    skip[4] = "bad trace_start_time: 'x' is not a timestamp"
    chunks = list(iter_waveforms(catalog, raw.root, 1300, 100, skip=skip))
    assert chunks[0].rejected == {4: skip[4]}
    assert 4 not in chunks[0].rows


def test_missing_hdf5(raw: RawSet) -> None:
    path = hdf5_path(raw.root, "NRCA", "post")
    path.unlink()
    catalog = read_catalog(raw.root, ["NRCA"])
    with pytest.raises(WaveformError, match=f"{path}: HDF5 waveform file missing"):
        next(iter_waveforms(catalog, raw.root, 1300, 4))


def test_corrupt_hdf5(raw: RawSet) -> None:
    path = hdf5_path(raw.root, "NRCA", "pre")
    path.write_bytes(b"this is not HDF5" * 100)
    catalog = read_catalog(raw.root, ["NRCA"])
    with pytest.raises(WaveformError, match=f"{path}: not a readable HDF5 file"):
        next(iter_waveforms(catalog, raw.root, 1300, 4))


def test_truncated_hdf5(raw: RawSet) -> None:
    path = hdf5_path(raw.root, "NRCA", "pre")
    path.write_bytes(path.read_bytes()[:4000])
    catalog = read_catalog(raw.root, ["NRCA"])
    with pytest.raises(WaveformError, match="not a readable HDF5 file"):
        list(iter_waveforms(catalog, raw.root, 1300, 4))


# ---------------------------------------------------------------- preprocessing


def test_preprocessing_off_leaves_data_untouched(rng) -> None:
    data = rng.normal(size=(2, 3, 2500))
    out = preprocess_waveforms(data, 100.0, PreprocessConfig())
    assert out is data


def test_preprocessing_matches_obspy(rng) -> None:
    from obspy import Trace

    data = np.stack([synthetic_waveform(rng, 1.5) + 40.0 for _ in range(2)])
    cfg = PreprocessConfig(
        demean=True, detrend=True, taper_fraction=0.05, highpass_hz=1.0, lowpass_hz=10.0
    )
    out = preprocess_waveforms(data, 100.0, cfg)
    trace = Trace(data=data[1, 2].copy(), header={"sampling_rate": 100.0})
    trace.detrend("demean").detrend("linear").taper(0.05, type="hann")
    trace.filter("bandpass", freqmin=1.0, freqmax=10.0, corners=4, zerophase=True)
    np.testing.assert_array_equal(out[1, 2], trace.data)
    assert out.shape == data.shape and out.dtype == np.float64


def test_lowpass_removes_high_frequencies(rng) -> None:
    data = rng.normal(size=(1, 3, 2500))
    out = preprocess_waveforms(data, 100.0, PreprocessConfig(lowpass_hz=10.0))
    f = np.fft.rfftfreq(2500, 0.01)
    before = np.abs(np.fft.rfft(data, axis=-1)) ** 2
    after = np.abs(np.fft.rfft(out, axis=-1)) ** 2
    high = f > 20
    assert after[..., high].sum() < 1e-4 * before[..., high].sum()
    low = f < 5
    assert after[..., low].sum() > 0.8 * before[..., low].sum()


def test_demean_only(rng) -> None:
    data = rng.normal(size=(2, 3, 500)) + 5.0
    out = preprocess_waveforms(data, 100.0, PreprocessConfig(demean=True))
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out, data - data.mean(axis=-1, keepdims=True), atol=1e-12)


# ---------------------------------------------------------------- rejection limit


def test_rejection_limit_is_inclusive() -> None:
    values = (["a", "b"], ["f", "f"], ["x: 1", "y: 2"])
    rejections = pd.DataFrame(dict(zip(REJECTED_COLUMNS, values, strict=True)))
    check_rejections(rejections, 10, 0.2, "raw")  # exactly at the limit: fine
    with pytest.raises(TooManyRejectedError, match=r"2 of 9 traces under raw .*1 x, 1 y"):
        check_rejections(rejections, 9, 0.2, "raw")
    with pytest.raises(TooManyRejectedError, match="2 of 2"):
        check_rejections(rejections, 2, 1.0, "raw")  # nothing left is never fine
