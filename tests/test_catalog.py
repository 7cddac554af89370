"""The catalogue's controls in the spectrograms stage: boundary, matched classes, time windows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from quakeshap.artifacts import metrics, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.catalog import prepare_catalog, window_columns
from quakeshap.config import ConfigError, Params, SplitConfig, TaskConfig, to_dict
from quakeshap.masking import fill_outside_columns
from quakeshap.record import attributes_path
from quakeshap.spectrogram import build_spectrogram_set, spectrogram_axes
from quakeshap.splits import match_bins, match_classes
from quakeshap.stages import spectrograms as spectrograms_stage
from tests.raw_fixtures import RawSet, write_raw

TIME_S = spectrogram_axes(Params().spectrogram)[1]


def _with(params: Params, section: str, **changes) -> Params:
    return dataclasses.replace(
        params, **{section: dataclasses.replace(getattr(params, section), **changes)}
    )


def _rewrite_attributes(data: RawSet, label: str, **columns) -> None:
    table = data.attributes[label].copy()
    for name, values in columns.items():
        table[name] = values
    raw.write_attributes(attributes_path(data.root, data.station, label), table)
    data.attributes[label] = table


def _build(
    params: Params, root: Path, data: RawSet
) -> tuple[spectrogram_set.SpectrogramSet, pd.DataFrame]:
    out, rejected = root / spectrogram_set.PATH, root / metrics.REJECTED_PATH
    build_spectrogram_set(params, data.root, out, rejected)
    return spectrogram_set.load(out), metrics.load_rejected(rejected)


# --------------------------------------------------------------------------------------
# time windows
# --------------------------------------------------------------------------------------


def test_window_columns_by_hand():
    """Columns are centred at 0.32 + 0.13 k s: P = 5 s is column 36, S = 6 s falls after 43."""
    assert TIME_S[36] == 5.0 and TIME_S[43] < 6.0 < TIME_S[44]
    catalog = pd.DataFrame({"p_s_diff_sec": [1.0, 8.0]})
    before = window_columns(catalog, "before_p", TIME_S)
    between = window_columns(catalog, "p_to_s", TIME_S)
    after = window_columns(catalog, "after_s", TIME_S)
    assert np.flatnonzero(before[0]).tolist() == list(range(36))
    assert np.flatnonzero(between[0]).tolist() == list(range(36, 44))
    assert np.flatnonzero(after[0]).tolist() == list(range(44, 96))
    assert not after[1].any()  # S at 13 s: after the last column (12.67 s)
    # the three windows share out every column
    assert (before.astype(int) + between + after == 1).all()


@pytest.fixture
def data(tmp_path, rng) -> RawSet:
    return write_raw(tmp_path / "raw", rng, n_pre=8, n_post=6)


def test_a_window_keeps_its_columns_and_fills_the_others(tmp_path, data):
    whole, _ = _build(Params(), tmp_path / "all", data)
    params = _with(Params(), "spectrogram", window="p_to_s", window_fill="blur(3,3)")
    cut, rejected = _build(params, tmp_path / "cut", data)
    assert rejected.empty
    keep = window_columns(whole.metadata, "p_to_s", TIME_S)
    np.testing.assert_array_equal(cut.images, fill_outside_columns(whole.images, keep, "blur(3,3)"))
    for i in range(len(cut)):
        np.testing.assert_array_equal(cut.images[i][..., keep[i]], whole.images[i][..., keep[i]])
    assert not np.array_equal(cut.images[..., :36], whole.images[..., :36])
    assert cut.axes["time_window"] == "p_to_s" and cut.axes["time_window_fill"] == "blur(3,3)"
    assert "time_window" not in whole.axes  # the study's axes.json has no such key


def test_a_trace_whose_window_is_empty_is_left_out_with_its_reason(tmp_path, data):
    p_s = data.attributes["post"]["p_s_diff_sec"].to_numpy().copy()
    p_s[0] = 8.0  # S at 13 s: nothing after S in the image
    _rewrite_attributes(data, "post", p_s_diff_sec=p_s)
    params = _with(Params(), "spectrogram", window="after_s")
    # one of 14 traces is over spectrogram.max_rejected_fraction (0.05), yet not a defect
    sset, rejected = _build(params, tmp_path, data)
    name = data.attributes["post"]["trace_name"].iloc[0]
    assert name not in sset.metadata["trace_name"].tolist() and len(sset) == 13
    assert rejected["trace_name"].tolist() == [name]
    reason = rejected["reason"].iloc[0]
    assert reason.startswith("empty time window: spectrogram.window = after_s keeps no column")
    assert "(S at 13.00 s; columns at 0.32-12.67 s)" in reason


def test_a_window_empty_for_every_trace_fails_before_any_work(tmp_path, data, caplog):
    for label in ("pre", "post"):
        _rewrite_attributes(data, label, p_s_diff_sec=8.5)
    params_file = tmp_path / "params.yaml"
    values = to_dict(_with(Params(), "spectrogram", window="after_s"))
    params_file.write_text(yaml.safe_dump(values))
    out = tmp_path / "spectrograms"
    argv = ["--params", str(params_file), "--raw", str(data.root), "--out", str(out),
            "--rejected", str(tmp_path / metrics.REJECTED_PATH)]  # fmt: skip
    assert spectrograms_stage.main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith("parameter spectrogram.window: after_s keeps no image column")
    assert "S at 13.50-13.50 s, columns at 0.32-12.67 s" in errors[0]
    assert not out.exists()


def test_a_bad_window_fill_fails_before_the_catalogue_is_read(tmp_path):
    params = _with(Params(), "spectrogram", window="before_p", window_fill="smudge")
    with pytest.raises(ConfigError, match=r"^parameter spectrogram\.window_fill: 'smudge'"):
        prepare_catalog(params, tmp_path / "nothing-here", TIME_S)


# --------------------------------------------------------------------------------------
# the boundary
# --------------------------------------------------------------------------------------


def test_default_boundary_keeps_the_files_labels(data):
    prepared = prepare_catalog(Params(), data.root, TIME_S)
    expected = ["pre"] * 8 + ["post"] * 6
    assert prepared.catalog["label"].tolist() == expected
    assert prepared.skip.isna().all() and prepared.keep_columns is None


def test_another_boundary_moves_late_foreshocks_to_post(data):
    times = pd.to_datetime(data.attributes["pre"]["source_origin_time"])
    boundary = times.iloc[4] + pd.Timedelta(seconds=1)
    params = _with(Params(), "task", boundary_time=boundary.isoformat())
    labels = prepare_catalog(params, data.root, TIME_S).catalog["label"].tolist()
    assert labels == ["pre"] * 5 + ["post"] * 9


def test_a_boundary_outside_the_catalogue_fails_before_any_waveform(tmp_path, data):
    params = dataclasses.replace(Params(), task=TaskConfig("2017-06-01T00:00:00Z"))
    with pytest.raises(ConfigError, match=r"^parameter task\.boundary_time: .* no 'post' trace"):
        build_spectrogram_set(params, data.root, tmp_path / "out", tmp_path / metrics.REJECTED_PATH)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# matched classes
# --------------------------------------------------------------------------------------


def _catalog(rng: np.random.Generator, n_pre: int = 300, n_post: int = 200) -> pd.DataFrame:
    """Pre events larger and farther than post ones: both separate the classes."""
    return pd.DataFrame(
        {
            "label": ["pre"] * n_pre + ["post"] * n_post,
            "source_magnitude": np.round(
                np.concatenate([rng.normal(1.8, 0.5, n_pre), rng.normal(1.3, 0.5, n_post)]), 1
            ),
            "p_s_diff_sec": np.round(
                np.concatenate([rng.uniform(1.0, 2.5, n_pre), rng.uniform(0.8, 1.8, n_post)]), 2
            ),
        }
    )


def _histograms(catalog: pd.DataFrame, widths) -> dict[str, pd.Series]:
    bins = pd.Series(map(tuple, match_bins(catalog, widths)), index=catalog.index)
    return {c: bins[catalog["label"] == c].value_counts().sort_index() for c in ("pre", "post")}


def test_matching_equalises_the_joint_histogram(rng):
    catalog = _catalog(rng)
    cfg = SplitConfig(match="magnitude_distance")
    eligible = np.ones(len(catalog), dtype=bool)
    eligible[:3] = False  # already rejected: left alone
    dropped = match_classes(catalog, cfg, eligible)
    keep = eligible.copy()
    keep[list(dropped)] = False
    kept = catalog[keep]
    before = _histograms(catalog, cfg.match_bins)
    after = _histograms(kept, cfg.match_bins)
    assert not before["pre"].equals(before["post"])
    pd.testing.assert_series_equal(after["pre"], after["post"], check_names=False)
    assert (
        50 < len(kept) < 400 and (kept["label"] == "pre").sum() == (kept["label"] == "post").sum()
    )
    assert not set(dropped) & {0, 1, 2}
    assert all(
        r.startswith("unmatched: split.match = magnitude_distance") for r in dropped.values()
    )
    # seeded: the same seed drops the same rows, another seed others
    assert match_classes(catalog, cfg, eligible) == dropped
    other = match_classes(catalog, dataclasses.replace(cfg, seed=7), eligible)
    assert set(other) != set(dropped) and len(other) == len(dropped)


def test_no_matching_drops_nothing(rng):
    catalog = _catalog(rng)
    assert match_classes(catalog, SplitConfig(), np.ones(len(catalog), dtype=bool)) == {}


def test_bins_read_decimal_values_as_written():
    catalog = pd.DataFrame(
        {"source_magnitude": [0.6, 0.59, np.nan], "p_s_diff_sec": [1.5, 0.49, 1]}
    )
    bins = match_bins(catalog, (0.2, 0.5))
    assert bins[:2].tolist() == [[3, 3], [2, 0]]
    assert bins[2, 0] < -(2**60)


def test_bad_match_bins_are_a_config_error():
    with pytest.raises(ConfigError, match=r"^parameter split\.match_bins"):
        SplitConfig(match_bins=(0.2,))
    with pytest.raises(ConfigError, match=r"^parameter split\.match_bins"):
        SplitConfig(match_bins=(0.2, 0.0))


def test_matching_in_the_stage_lists_the_dropped_traces(tmp_path, data):
    # every post event at M 1.0, every pre event at M 2.0 but two: only those two match
    mags = np.full(8, 2.0)
    mags[:2] = 1.0
    _rewrite_attributes(data, "pre", source_magnitude=mags)
    _rewrite_attributes(data, "post", source_magnitude=1.0, p_s_diff_sec=1.6)
    _rewrite_attributes(data, "pre", p_s_diff_sec=1.6)
    params = _with(Params(), "split", match="magnitude_distance")
    sset, rejected = _build(params, tmp_path, data)
    assert sset.metadata["label"].value_counts().to_dict() == {"pre": 2, "post": 2}
    assert len(rejected) == 10
    assert rejected["reason"].str.startswith("unmatched: ").all()
    assert set(sset.metadata["split"]) <= {"train", "test"}


def test_matching_that_keeps_nothing_fails(tmp_path, data):
    _rewrite_attributes(data, "pre", source_magnitude=3.0)
    _rewrite_attributes(data, "post", source_magnitude=1.0)
    params = _with(Params(), "split", match="magnitude_distance")
    with pytest.raises(ConfigError, match=r"^parameter split\.match: no \(magnitude, S-P\) bin"):
        prepare_catalog(params, data.root, TIME_S)
