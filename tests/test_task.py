"""task.boundary_time: the classes come from each event's origin time and the boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quakeshap.config import MAINSHOCK_ISO, ConfigError, DemoConfig, TaskConfig
from quakeshap.demo.catalog import demo_catalog
from quakeshap.record import MAINSHOCK_ORIGIN_UTC, parse_times
from quakeshap.task import assign_labels, boundary_labels


def _catalog(times: list[str], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"source_origin_time": times, "label": labels})


def test_default_boundary_is_the_norcia_mainshock():
    assert TaskConfig().boundary_utc == MAINSHOCK_ORIGIN_UTC
    assert MAINSHOCK_ISO == "2016-10-30T06:40:17Z"


def test_labels_split_at_the_boundary_which_belongs_to_post():
    times = parse_times(
        pd.Series(["2016-10-30 06:40:16.999", "2016-10-30 06:40:17", "2016-10-31 00:00:00", "x"])
    )
    labels = boundary_labels(times, MAINSHOCK_ORIGIN_UTC)
    assert labels.tolist() == ["pre", "post", "post", None]


def test_default_boundary_gives_the_files_labels_on_the_demo():
    catalog = demo_catalog(DemoConfig())
    labels, reasons = assign_labels(catalog, TaskConfig())
    assert labels.tolist() == catalog["label"].tolist()
    assert reasons.isna().all()


def test_another_boundary_relabels_by_origin_time():
    catalog = _catalog(
        ["2016-08-25 10:00:00", "2016-09-30 10:00:00", "2016-10-20 00:00:00", "2016-11-02"],
        ["pre", "pre", "pre", "post"],
    )
    labels, _ = assign_labels(catalog, TaskConfig("2016-09-25T00:00:00Z"))
    assert labels.tolist() == ["pre", "post", "post", "post"]
    # a zone other than UTC is honoured: 02:00+02:00 is midnight UTC
    labels, _ = assign_labels(catalog, TaskConfig("2016-10-20T02:00:00.001+02:00"))
    assert labels.tolist() == ["pre", "pre", "pre", "post"]


def test_unreadable_origin_time_is_a_rejection_not_a_guess():
    catalog = _catalog(["2016-08-25 10:00:00", "not a time", "2016-11-02"], ["pre", "pre", "post"])
    labels, reasons = assign_labels(catalog, TaskConfig())
    assert reasons.isna().tolist() == [True, False, True]
    assert reasons[1].startswith("bad source_origin_time: 'not a time'")
    assert labels.tolist() == ["pre", "pre", "post"]


@pytest.mark.parametrize(
    ("boundary", "empty"),
    [("2016-08-25T10:00:00Z", "pre"), ("2016-01-01T00:00:00Z", "pre"), ("2017-01-01", "post")],
)
def test_boundary_outside_the_catalogue_fails_naming_the_parameter(boundary, empty):
    catalog = _catalog(["2016-08-25 10:00:00", "2016-11-02 00:00:00"], ["pre", "post"])
    with pytest.raises(ConfigError) as err:
        assign_labels(catalog, TaskConfig(boundary))
    message = str(err.value)
    assert message.startswith("parameter task.boundary_time:")
    assert f"no '{empty}' trace" in message and "\n" not in message


@pytest.mark.parametrize("text", ["yesterday", "2016-13-01", ""])
def test_unparsable_boundary_is_a_config_error(text):
    with pytest.raises(ConfigError, match=r"^parameter task\.boundary_time: .* ISO 8601"):
        TaskConfig(text)


def test_demo_catalogue_spans_the_wrong_boundary_control():
    """profiles/controls/wrong_boundary.yaml's time lies inside the demo's pre period."""
    import yaml

    from tests.conftest import REPO_ROOT

    control = yaml.safe_load((REPO_ROOT / "profiles/controls/wrong_boundary.yaml").read_text())
    boundary = TaskConfig(control["task"]["boundary_time"])
    catalog = demo_catalog(DemoConfig())
    labels, _ = assign_labels(catalog, boundary)
    moved = (labels != catalog["label"].to_numpy()).sum()
    pre = (catalog["label"] == "pre").sum()
    # a sizeable share of the file's foreshocks changes class, and both classes stay
    assert 0.2 * pre < moved < 0.8 * pre
    assert np.all(labels[catalog["label"].to_numpy() == "post"] == "post")
