"""quakeshap.unpickle: the record's similar-traces pickle is read without running its code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakeshap.artifacts import raw
from quakeshap.artifacts.raw import WaveformError
from quakeshap.record import similar_traces_path
from quakeshap.unpickle import load_similar_traces


def _write_similar(path: Path, frame: pd.DataFrame, protocol: int) -> None:
    with open(path, "wb") as fh:
        pickle.dump(frame, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("text_dtype", [object, "str"])
def test_similar_traces_round_trip(tmp_path: Path, protocol: int, text_dtype) -> None:
    frame = pd.DataFrame(
        {
            "trace_name": pd.array(["A_EV", "B_EV", "C_EV"], dtype=text_dtype),
            "associato_ev": np.array([3, 3, 0], dtype=np.int32),
            "distance_km": [0.2, 0.5, np.nan],
        },
        index=[10, 11, 12],
    )
    path = tmp_path / "similar.csv"
    _write_similar(path, frame, protocol)
    table = load_similar_traces(path)
    assert table["trace_name"].tolist() == ["A_EV", "B_EV", "C_EV"]
    assert table["associato_ev"].tolist() == [3, 3, 0]
    assert table["associato_ev"].dtype == np.int64


def test_similar_traces_with_other_kinds_of_columns(tmp_path: Path) -> None:
    """The record's table has columns we do not know: times, categories, nullable ints."""
    frame = pd.DataFrame(
        {
            "trace_name": ["A", "B"],
            "associato_ev": [2, 2],
            "origin": pd.to_datetime(["2016-10-30 06:40:17", "2016-10-31 00:00:00"], utc=True),
            "naive": pd.to_datetime(["2016-10-30 06:40:17", "2016-10-31 00:00:00"]),
            "lag": pd.to_timedelta([1.5, 2.0], unit="s"),
            "stamp": pd.Series(
                [pd.Timestamp("2016-10-30"), pd.Timestamp("2016-11-01")], dtype=object
            ),
            "kind": pd.Categorical(["x", "y"]),
            "count": pd.array([1, None], dtype="Int64"),
            "ok": [True, False],
            "score": np.float32([0.5, 0.25]),
        }
    )
    path = tmp_path / "similar.csv"
    for protocol in (2, 4, 5):
        _write_similar(path, frame, protocol)
        assert load_similar_traces(path)["associato_ev"].tolist() == [2, 2]


def test_similar_traces_written_by_pandas(tmp_path: Path) -> None:
    path = similar_traces_path(tmp_path, "NRCA")
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"trace_name": ["A"], "associato_ev": [1]}).to_pickle(path)
    assert load_similar_traces(path)["associato_ev"].tolist() == [1]


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsCommand, _Evaluates])
def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "similar.csv"
    # the payload hides inside an otherwise genuine frame
    frame = pd.DataFrame({"trace_name": ["A"], "associato_ev": [payload(marker)]})
    path.write_bytes(pickle.dumps(frame, protocol=4))
    with pytest.raises(WaveformError, match=f"{path}: refused to load .*(system|eval)"):
        load_similar_traces(path)
    assert not marker.exists()


def test_pickle_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "similar.csv"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WaveformError, match="holds a list, expected a DataFrame"):
        load_similar_traces(path)
    path.write_text("trace_name,associato_ev\nA,1\n")
    with pytest.raises(WaveformError, match="not a readable pandas pickle"):
        load_similar_traces(path)


def test_similar_traces_needs_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "similar.csv"
    pd.DataFrame({"trace_name": ["A"], "group": [1]}).to_pickle(path)
    with pytest.raises(WaveformError, match=r"lacks column\(s\) \['associato_ev'\]"):
        load_similar_traces(path)


@pytest.mark.parametrize("ids", [[1.5, 2.0], [-1, 2], [np.nan, 1]])
def test_similar_traces_ids_must_be_integers(tmp_path: Path, ids) -> None:
    path = tmp_path / "similar.csv"
    pd.DataFrame({"trace_name": ["A", "B"], "associato_ev": ids}).to_pickle(path)
    with pytest.raises(WaveformError, match="non-negative integers"):
        load_similar_traces(path)


def test_similar_traces_conflicting_groups(tmp_path: Path) -> None:
    path = tmp_path / "similar.csv"
    pd.DataFrame({"trace_name": ["A", "A", "B", "B"], "associato_ev": [1, 2, 3, 3]}).to_pickle(path)
    with pytest.raises(WaveformError, match=r"two groups, e.g. \['A'\]"):
        load_similar_traces(path)


def test_the_raw_owners_writer_gives_what_the_loader_reads(tmp_path: Path) -> None:
    path = similar_traces_path(tmp_path, "NRCA")
    table = pd.DataFrame(dict(zip(raw.SIMILAR_COLUMNS, (["A", "B"], [4, 4]), strict=True)))
    raw.write_similar_traces(path, table)
    loaded = load_similar_traces(path)
    assert list(loaded.columns) == list(raw.SIMILAR_COLUMNS)
    assert loaded.to_dict("list") == table.to_dict("list")
