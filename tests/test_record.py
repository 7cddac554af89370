"""quakeshap.record: the record's facts, defined once, hold what they promise."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quakeshap import record
from quakeshap.artifacts import raw
from quakeshap.record import (
    CLASS_NAMES,
    P_ARRIVAL_S,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    UnknownClassError,
    class_index,
    class_name,
    s_window_columns,
    to_uint8,
    to_unit,
)

# --------------------------------------------------------------------- classes


@pytest.mark.parametrize("index", range(len(CLASS_NAMES)))
def test_class_index_and_name_round_trip(index: int) -> None:
    name = CLASS_NAMES[index]
    assert class_index(name) == index
    assert class_name(index) == name
    assert class_name(name) == name
    assert class_index(class_name(index)) == index
    # indices as they come from CSV files and numpy arrays
    assert class_index(str(index)) == index
    assert class_index(np.int64(index)) == index


def test_classes_are_pre_then_post() -> None:
    assert CLASS_NAMES == ("pre", "post")


@pytest.mark.parametrize("value", ["PRE", "foreshock", "", 2, -1, "2", None, "x1"])
def test_unknown_class_is_an_error_naming_it(value) -> None:
    with pytest.raises(UnknownClassError, match=re.escape(repr(value))) as err:
        class_index(value)
    assert "pre" in str(err.value) and "post" in str(err.value)
    with pytest.raises(UnknownClassError):
        class_name(value)


def test_unknown_class_is_a_value_error() -> None:
    assert issubclass(UnknownClassError, ValueError)


# --------------------------------------------------------------------- pixels


def test_uint8_round_trip_is_exact_for_every_level() -> None:
    levels = np.arange(256, dtype=np.uint8)
    unit = to_unit(levels)
    assert unit.dtype == np.float32
    assert unit[0] == 0.0 and unit[-1] == 1.0
    np.testing.assert_array_equal(to_uint8(unit), levels)


def test_to_uint8_is_floor_255x(rng: np.random.Generator) -> None:
    x = np.concatenate([rng.random(100_000), [0.0, 1.0, 0.5, 1 / 255, 254 / 255]])
    got = to_uint8(x)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.floor(255 * x).astype(np.uint8))
    assert to_uint8(np.array([1.0]))[0] == 255


def test_to_uint8_clips_outside_the_unit_interval() -> None:
    np.testing.assert_array_equal(to_uint8(np.array([-0.5, 1.5, 7.0])), [0, 255, 255])


def test_to_unit_keeps_float_images() -> None:
    images = np.array([[0.25, 0.75]], dtype=np.float64)
    out = to_unit(images)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images.astype(np.float32))


# --------------------------------------------------------------------- timing


def test_p_arrival() -> None:
    assert P_ARRIVAL_S == 5.0 == P_ARRIVAL_SAMPLE / SAMPLING_RATE_HZ
    assert record.TRACE_SAMPLES / SAMPLING_RATE_HZ == 25.0


def test_s_window_columns_of_the_study() -> None:
    assert s_window_columns(96) == (96 / 13, 59)
    per_s, width = s_window_columns(96)
    assert width == int(record.S_WINDOW_LENGTH_S * per_s)
    assert s_window_columns(45, duration_s=6.4, length_s=3.2) == (45 / 6.4, 22)


def test_iso_week_and_unparsable_times() -> None:
    times = pd.Series(["2016-10-31 00:15:23.830000+00:00", "2016-10-30 06:40:17", "never"])
    assert record.iso_week(times).tolist() == [44, 43, -1]
    assert record.parse_times(times).isna().tolist() == [False, False, True]


def test_mainshock_is_utc_between_the_classes() -> None:
    assert str(record.MAINSHOCK_ORIGIN_UTC.tz) == "UTC"
    assert record.iso_week(pd.Series([str(record.MAINSHOCK_ORIGIN_UTC)])).tolist() == [43]


# --------------------------------------------------------------------- layout

HELPERS = {
    "hdf5": record.hdf5_path,
    "attributes": record.attributes_path,
    "similar": record.similar_traces_path,
}


def _documented(helper) -> str:
    """The ``<raw>/...`` template in a path helper's own docstring."""
    match = re.search(r"``<raw>/([^`]+)``", inspect.getdoc(helper) or "")
    assert match, f"{helper.__name__}: its docstring does not show the layout"
    return match.group(1)


@pytest.mark.parametrize("kind", sorted(HELPERS))
@pytest.mark.parametrize(("station", "label"), [("NRCA", "pre"), ("T1212", "post")])
def test_path_helpers_give_their_documented_layout(
    tmp_path: Path, kind: str, station: str, label: str
) -> None:
    helper = HELPERS[kind]
    template = _documented(helper)
    expected = template.replace("<STA>", station).replace("<label>", label)
    args = (station,) if kind == "similar" else (station, label)
    assert helper(tmp_path, *args) == tmp_path / expected
    assert helper(str(tmp_path), *args) == tmp_path / expected


def test_layout_listed_by_the_raw_owner_is_the_helpers() -> None:
    """The folder tree drawn in quakeshap.artifacts.raw's docstring is what the helpers give."""
    listed = set(re.findall(r"^\s+(dset/\S+)", raw.__doc__ or "", flags=re.MULTILINE))
    station = "NRCA"
    root = Path("ROOT")
    given = {record.similar_traces_path(root, station)}
    for label in CLASS_NAMES:
        given |= {
            record.hdf5_path(root, station, label),
            record.attributes_path(root, station, label),
        }
    assert {t.replace("<STA>", station) for t in listed} == {
        p.relative_to(root).as_posix() for p in given
    }


def test_catalog_dir_holds_the_station_folders(tmp_path: Path) -> None:
    assert record.hdf5_path(tmp_path, "X", "pre").parent.parent == tmp_path / record.CATALOG_DIR
    assert record.similar_traces_path(tmp_path, "X").parent == tmp_path / record.SIMILAR_DIR
