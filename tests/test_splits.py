"""quakeshap.splits: the train/test split and the co-located groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from quakeshap.artifacts.raw import WaveformError
from quakeshap.config import SplitConfig
from quakeshap.record import similar_traces_path
from quakeshap.splits import (
    assign_split,
    associato_ids,
    read_similar_traces,
    reset_singleton_groups,
)

from .raw_fixtures import RawSet, write_raw

# ---------------------------------------------------------------- associato


def test_associato_is_group_plus_one_else_zero() -> None:
    similar = pd.DataFrame({"trace_name": ["a", "b", "c"], "associato_ev": [0, 0, 4]})
    names = pd.Series(["x", "a", "c", "b", "y"])
    assert associato_ids(names, similar).tolist() == [0, 1, 5, 1, 0]
    assert associato_ids(names, None).tolist() == [0] * 5


def test_singleton_groups_are_reset() -> None:
    ids = np.array([0, 1, 5, 1, 0, 7, 7, 7, 9])
    assert reset_singleton_groups(ids).tolist() == [0, 1, 0, 1, 0, 7, 7, 7, 0]
    assert reset_singleton_groups(np.array([], dtype=np.int64)).tolist() == []


def test_missing_similar_file_is_not_an_error(raw: RawSet, caplog) -> None:
    similar_traces_path(raw.root, "NRCA").unlink()
    assert read_similar_traces(raw.root, ["NRCA"]) is None
    assert "no co-located groups" in caplog.text


def test_similar_tables_of_several_stations_are_concatenated(raw: RawSet, rng) -> None:
    write_raw(raw.root, rng, n_pre=2, n_post=2, station="T1212", groups={"X": 3})
    table = read_similar_traces(raw.root, ["NRCA", "T1212"])
    assert table["trace_name"].tolist() == [*raw.similar["trace_name"], "X"]
    assert table["associato_ev"].tolist()[-1] == 3


# ---------------------------------------------------------------- split


def _catalog(rng: np.random.Generator, n: int, n_events: int | None = None) -> pd.DataFrame:
    start = pd.Timestamp("2016-08-24", tz="UTC")
    times = [start + pd.Timedelta(seconds=float(s)) for s in rng.uniform(0, 1e7, n)]
    return pd.DataFrame(
        {
            "trace_name": [f"T{i}" for i in range(n)],
            "source_id": rng.integers(0, n_events or n, n).astype(str),
            "trace_start_time": [t.strftime("%Y-%m-%d %H:%M:%S.%f+00:00") for t in times],
        }
    )


@pytest.mark.parametrize(("n", "seed", "fraction"), [(5830, 42, 0.2), (101, 7, 0.3)])
def test_trace_split_is_the_studys_train_test_split(rng, n, seed, fraction) -> None:
    catalog = _catalog(rng, n)
    split = assign_split(catalog, SplitConfig(by="trace", test_fraction=fraction, seed=seed))
    train, test = train_test_split(catalog, test_size=fraction, random_state=seed)
    assert set(np.flatnonzero(split == "test")) == set(test.index)
    assert set(np.flatnonzero(split == "train")) == set(train.index)


def test_trace_split_that_leaves_no_training_trace_is_refused(rng) -> None:
    with pytest.raises(WaveformError, match=r"split\.test_fraction = 0\.9 leaves no training"):
        assign_split(_catalog(rng, 3), SplitConfig(by="trace", test_fraction=0.9))


def test_study_counts_after_dropping_its_four_malformed_traces(rng) -> None:
    split = assign_split(_catalog(rng, 5830), SplitConfig().for_task("prepost"))
    assert (split == "test").sum() == 1166 and (split == "train").sum() == 4664
    # 1166/4664 minus the study's 4 dropped traces gives its 1165/4661 when one was in test


def test_event_split_keeps_events_whole(rng) -> None:
    catalog = _catalog(rng, 300, n_events=60)
    split = assign_split(catalog, SplitConfig(by="event", test_fraction=0.25, seed=3))
    sides = pd.Series(split).groupby(catalog["source_id"]).nunique()
    assert (sides == 1).all()
    n_test_events = catalog["source_id"][split == "test"].nunique()
    assert n_test_events == np.ceil(0.25 * catalog["source_id"].nunique())


def test_time_split_is_chronological(rng) -> None:
    catalog = _catalog(rng, 200)
    split = assign_split(catalog, SplitConfig(by="time", test_fraction=0.2, seed=0))
    times = pd.to_datetime(catalog["trace_start_time"], utc=True, format="ISO8601")
    assert (split == "test").sum() == 40
    assert times[split == "test"].min() > times[split == "train"].max()


@pytest.mark.parametrize("by", ["trace", "event", "time"])
def test_split_is_deterministic_and_seeded(rng, by) -> None:
    catalog = _catalog(rng, 120)
    a = assign_split(catalog, SplitConfig(by=by, seed=1))
    np.testing.assert_array_equal(a, assign_split(catalog, SplitConfig(by=by, seed=1)))
    if by != "time":
        assert not np.array_equal(a, assign_split(catalog, SplitConfig(by=by, seed=2)))
