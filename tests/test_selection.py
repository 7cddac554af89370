"""Selection of the traces to explain (docs/method.md §4): class picks, misclassified,
examples, weeks, and the select stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quakeshap.artifacts import metrics, selection
from quakeshap.artifacts.predictions import PATH as PREDICTIONS_PATH
from quakeshap.artifacts.selection import (
    CLASS_GROUP,
    EXAMPLE_GROUP,
    GROUPS,
    MISCLASSIFIED_GROUP,
    SELECTION_COLUMNS,
    WEEK_GROUP,
)
from quakeshap.config import SelectConfig
from quakeshap.evaluation import predictions_table
from quakeshap.selection import SelectionError, select_traces
from quakeshap.stages import select as select_stage
from tests.fixtures import (
    make_spectrogram_set,
    write_params,
    write_predictions,
    write_spectrogram_set,
)
from tests.test_training import cli


def predictions(rng: np.random.Generator, n: int = 240, error_rate: float = 0.1) -> pd.DataFrame:
    """A predictions table: pre in weeks 34–43, post in 44–51, ~error_rate misclassified."""
    label = np.where(np.arange(n) % 5 < 3, "pre", "post")
    week = np.where(label == "pre", rng.integers(34, 44, n), rng.integers(44, 52, n))
    wrong = rng.random(n) < error_rate
    predicted = np.where(wrong, np.where(label == "pre", "post", "pre"), label)
    margin = rng.uniform(0.1, 8.0, n)
    logit_post = np.where(predicted == "post", margin / 2, -margin / 2)
    names = [f"NRCA.IV.{100000 + i}_EV" for i in range(n)]
    meta = pd.DataFrame({"trace_name": names, "label": label, "week": week})
    return predictions_table(meta, np.stack([-logit_post, logit_post], axis=1))


def cfg(**changes) -> SelectConfig:
    base = dict(seed=42, per_class=5, per_week=3, week_min=34, week_max=51,
                max_misclassified=None, examples=())  # fmt: skip
    return SelectConfig(**{**base, **changes})


def group(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table[table["group"] == name]


def test_contract_columns_and_one_row_per_trace_and_group(rng):
    table = select_traces(predictions(rng), cfg()).table
    assert tuple(table.columns) == SELECTION_COLUMNS
    assert not table.duplicated(["trace_name", "group"]).any()
    assert set(table["group"]) == set(GROUPS)
    both = table["group"].isin([MISCLASSIFIED_GROUP, EXAMPLE_GROUP])
    assert table["explain_both"].tolist() == both.tolist()
    assert table["reason"].str.len().min() > 0


def test_class_picks_are_correct_seeded_and_independent_of_row_order(rng):
    pred = predictions(rng)
    picks = group(select_traces(pred, cfg()).table, CLASS_GROUP)
    merged = picks.merge(pred, on="trace_name", suffixes=("", "_p"))
    assert merged["correct"].all()
    assert picks["label"].value_counts().to_dict() == {"pre": 5, "post": 5}
    shuffled = pred.sample(frac=1, random_state=1)
    again = group(select_traces(shuffled, cfg()).table, CLASS_GROUP)
    assert again["trace_name"].tolist() == picks["trace_name"].tolist()
    other = group(select_traces(pred, cfg(seed=43)).table, CLASS_GROUP)
    assert set(other["trace_name"]) != set(picks["trace_name"])
    # the per-week request draws from its own stream: it does not move the class picks
    wider = group(select_traces(pred, cfg(per_week=7)).table, CLASS_GROUP)
    assert wider["trace_name"].tolist() == picks["trace_name"].tolist()


def test_asking_for_more_than_exists_caps_and_reports(rng, caplog):
    pred = predictions(rng, n=40)
    pred.loc[pred["label"] == "post", "correct"] = False  # no correct post at all
    pred.loc[pred["label"] == "post", "predicted"] = "pre"
    n_pre_ok = int((pred["correct"] & (pred["label"] == "pre")).sum())
    result = select_traces(pred, cfg(per_class=1000))
    picks = group(result.table, CLASS_GROUP)
    assert (picks["label"] == "pre").sum() == n_pre_ok and (picks["label"] == "post").sum() == 0
    s = result.summary[CLASS_GROUP]
    assert s["pre"] == {"requested": 1000, "selected": n_pre_ok, "capped": 1000 - n_pre_ok}
    assert s["post"] == {"requested": 1000, "selected": 0, "capped": 1000}
    assert "only 0 correctly classified 'post'" in caplog.text
    assert result.summary["capped"] >= 2000 - n_pre_ok


def test_every_misclassified_trace_or_the_most_confident_ones(rng):
    pred = predictions(rng)
    wrong = pred[~pred["correct"]]
    rows = group(select_traces(pred, cfg()).table, MISCLASSIFIED_GROUP)
    assert sorted(rows["trace_name"]) == sorted(wrong["trace_name"])
    assert (rows["label"] != rows["predicted"]).all()
    assert rows["reason"].str.contains(r"logits pre -?\d+\.\d{3}, post -?\d+\.\d{3}").all()
    capped = select_traces(pred, cfg(max_misclassified=2))
    top = wrong.assign(m=(wrong["logit_post"] - wrong["logit_pre"]).abs()).nlargest(2, "m")
    assert set(group(capped.table, MISCLASSIFIED_GROUP)["trace_name"]) == set(top["trace_name"])
    assert capped.summary[MISCLASSIFIED_GROUP] == {"available": len(wrong), "selected": 2}


def test_default_examples_are_the_most_confidently_correct_per_class(rng):
    pred = predictions(rng)
    rows = group(select_traces(pred, cfg()).table, EXAMPLE_GROUP)
    assert rows["label"].tolist() == ["pre", "post"]
    ok = pred[pred["correct"]].assign(m=(pred["logit_post"] - pred["logit_pre"]).abs())
    for name in ("pre", "post"):
        best = ok[ok["label"] == name].nlargest(1, "m")["trace_name"].item()
        assert rows.loc[rows["label"] == name, "trace_name"].item() == best
    assert rows["explain_both"].all()


def test_named_examples_and_close_matches_for_unknown_names(rng):
    pred = predictions(rng)
    names = ("NRCA.IV.100007_EV", "NRCA.IV.100002_EV")
    rows = group(select_traces(pred, cfg(examples=names)).table, EXAMPLE_GROUP)
    assert tuple(rows["trace_name"]) == names
    with pytest.raises(SelectionError, match=r"'nrca\.iv\.100007_ev' is not a test trace "
                       r"\(close matches: NRCA\.IV\.100007_EV, "):  # fmt: skip
        select_traces(pred, cfg(examples=("nrca.iv.100007_ev",)))
    with pytest.raises(SelectionError, match="no close match"):
        select_traces(pred, cfg(examples=("something else",)))
    with pytest.raises(SelectionError, match="in the data set but not in the test set"):
        select_traces(pred, cfg(examples=("NRCA.IV.TRAIN_EV",)), known_traces={"NRCA.IV.TRAIN_EV"})


def test_weeks_reuse_class_picks_first_then_top_up(rng):
    pred = predictions(rng, n=400)
    result = select_traces(pred, cfg(per_class=40, per_week=4, week_min=36, week_max=49))
    table = result.table
    class_picks = set(group(table, CLASS_GROUP)["trace_name"])
    weeks = group(table, WEEK_GROUP)
    assert set(weeks["week"]) <= set(range(36, 50))
    correct = set(pred.loc[pred["correct"], "trace_name"])
    assert set(weeks["trace_name"]) <= correct
    week_of = pred.set_index("trace_name")["week"]
    for week, rows in weeks.groupby("week"):
        assert len(rows) <= 4
        in_week_picks = {t for t in class_picks if week_of[t] == week}
        reused = set(rows.loc[rows["reason"].str.endswith("re-used"), "trace_name"])
        topped = set(rows["trace_name"]) - reused
        assert reused <= in_week_picks and not topped & class_picks
        # top-ups only when the week's class picks are not enough
        assert len(reused) == min(4, len(in_week_picks))
        available = int(((pred["week"] == week) & pred["correct"]).sum())
        assert len(rows) == min(4, available)
    assert result.summary[WEEK_GROUP]["reused"] == int(
        weeks["reason"].str.endswith("re-used").sum()
    )


def test_a_short_week_is_capped_not_an_error(rng, caplog):
    pred = predictions(rng, n=300)
    pred = pred[pred["week"] != 40]  # week 40: nothing
    keep_41 = pred.index[pred["week"] == 41][:1]
    pred = pred[(pred["week"] != 41) | pred.index.isin(keep_41)]  # week 41: one trace
    pred.loc[keep_41, ["correct", "predicted"]] = [True, "pre"]
    result = select_traces(pred, cfg(per_week=3))
    weeks = group(result.table, WEEK_GROUP)
    assert (weeks["week"] == 40).sum() == 0 and (weeks["week"] == 41).sum() == 1
    assert result.summary[WEEK_GROUP]["short_weeks"]["40"] == 0
    assert result.summary[WEEK_GROUP]["short_weeks"]["41"] == 1
    assert result.summary[WEEK_GROUP]["capped"] >= 5
    assert "week 40: 0" in caplog.text


def test_no_correct_trace_in_any_week_selects_none_and_reports(rng):
    """An undertrained model may get every trace of the week range wrong: cap, don't crash."""
    pred = predictions(rng, n=120)
    result = select_traces(pred, cfg(per_week=2, week_min=60, week_max=61))
    assert len(group(result.table, WEEK_GROUP)) == 0
    assert result.summary[WEEK_GROUP]["capped"] == 4
    assert result.summary[WEEK_GROUP]["reused"] == 0


def test_bad_predictions_tables(rng):
    pred = predictions(rng, n=20)
    with pytest.raises(SelectionError, match=r"lacks column\(s\) \['week'\]"):
        select_traces(pred.drop(columns="week"), cfg())
    with pytest.raises(SelectionError, match="listed twice"):
        select_traces(pd.concat([pred, pred.iloc[:1]]), cfg())
    bad = pred.copy()
    bad.loc[0, "label"] = "foreshock"
    with pytest.raises(SelectionError, match="unknown class name"):
        select_traces(bad, cfg())


def test_select_stage(tmp_path, rng, caplog):
    pred = predictions(rng)
    write_predictions(tmp_path, pred)
    spectrograms = tmp_path / "spectrograms"
    write_spectrogram_set(spectrograms, make_spectrogram_set(np.random.default_rng(0), 240, 10))
    params = write_params(tmp_path)

    def argv(name):
        return cli(params=params, predictions=tmp_path / PREDICTIONS_PATH,
                   spectrograms=spectrograms, out=tmp_path / name / selection.PATH.name,
                   summary=tmp_path / name / metrics.PATHS["select"].name)  # fmt: skip

    assert select_stage.main(argv("a")) == 0 and select_stage.main(argv("b")) == 0
    for name in (selection.PATH.name, metrics.PATHS["select"].name):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    table = selection.load(tmp_path / "a" / selection.PATH.name)
    assert tuple(table.columns) == SELECTION_COLUMNS
    assert table["explain_both"].dtype == bool
    summary = metrics.load(tmp_path / "a" / metrics.PATHS["select"].name, "select")
    assert summary["n_rows"] == len(table)

    params = write_params(tmp_path, select={"examples": ["NRCA.IV.100001_ev"]})
    assert select_stage.main(argv("c")) == 1
    assert "close matches: NRCA.IV.100001_EV, " in caplog.text
    assert not (tmp_path / "c" / selection.PATH.name).exists()
    # a name of the data set that is not a test trace: the message says so
    params = write_params(tmp_path, select={"examples": ["NRCA.IV.100245_EV"]})
    assert select_stage.main(argv("d")) == 1
    assert "'NRCA.IV.100245_EV' is in the data set but not in the test set" in caplog.text
