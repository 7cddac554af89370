"""The controls page: read from ``dvc exp show --json``, complete, deterministic, and
loading cleanly in a real browser. The layout below is what DVC 3.67 writes (checked
against a real ``dvc exp show --json``; the end-to-end test of the controls runs DVC)."""

from __future__ import annotations

import json

import matplotlib
import pandas as pd
import pytest

from quakeshap import control_report as cr
from quakeshap import published
from quakeshap.artifacts import metrics
from tests.browser import view_page

matplotlib.use("Agg")

BASE = {"train": {"seed": 42, "shuffle": False}, "spectrogram": {"lowpass_hz": None}}


def _metrics(acc: float, n_pre: int, n_post: int, pre_band: float) -> dict:
    bands = {k: (1 - pre_band) / 4 for k in cr.BAND_KEYS}
    bands["30_40hz"] = pre_band
    return {
        str(metrics.PATHS["evaluate"]): {
            "data": {
                "accuracy": acc,
                "balanced_accuracy": acc,
                "f1": acc,
                "roc_auc": acc,
                "n_pre": n_pre,
                "n_post": n_post,
                "n_test": n_pre + n_post,
            }
        },
        str(metrics.PATHS["explain"]): {
            "data": {
                "band_fraction": {"pre": bands, "post": bands},
                "time_fraction": {
                    "pre": {"before_5s": 0.2, "5_to_6.5s": 0.3, "after_6.5s": 0.5},
                    "post": {"before_5s": 0.1, "5_to_6.5s": 0.3, "after_6.5s": 0.6},
                },
                "faithfulness": {"deletion_gap": {"pre": 0.12, "post": 0.05}},
            }
        },
    }


def _exp(name: str, params: dict, metrics: dict | None, executor: dict | None = None) -> dict:
    return {
        "revs": [
            {
                "rev": "b" * 40,
                "name": name,
                "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics or {}},
                "error": None,
                "experiments": None,
            }
        ],
        "executor": executor,
        "name": name,
    }


def exp_show() -> list:
    lowpass = {**BASE, "spectrogram": {"lowpass_hz": 10.0}}
    shuffled = {**BASE, "train": {"seed": 42, "shuffle": True}}
    return [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {
            "rev": "a" * 40,
            "name": "main",
            "data": {"params": {"params.yaml": {"data": BASE}}, "metrics": {}},
            "error": None,
            "experiments": [
                _exp("control-study", BASE, _metrics(0.93, 60, 40, 0.5)),
                _exp("control-lowpass", lowpass, _metrics(0.71, 60, 40, 0.3)),
                _exp("control-shuffled", shuffled, None, {"state": "queued"}),
                _exp("control-broken", BASE, None, {"state": "failed"}),
                _exp("control-busy", BASE, _metrics(0.6, 6, 4, 0.2), {"state": "running"}),
                _exp("someone-elses", BASE, _metrics(0.5, 1, 1, 0.2)),
            ],
        },
    ]


def test_reads_only_the_controls_with_their_state_and_metrics():
    runs, baseline = cr.read_experiments(exp_show())
    assert [r.name for r in runs] == ["broken", "busy", "lowpass", "shuffled", "study"]
    state = {r.name: r.state for r in runs}
    assert state == {
        "broken": "failed",
        "busy": "running",
        "lowpass": "done",
        "shuffled": "queued",
        "study": "done",
    }
    # a running experiment's metrics may be half old, half new: none are shown
    assert next(r for r in runs if r.name == "busy").metrics == {}
    assert baseline == BASE
    lowpass = next(r for r in runs if r.name == "lowpass")
    assert lowpass.metrics["evaluate"]["accuracy"] == 0.71
    assert cr.changed_params(lowpass, baseline) == "spectrogram.lowpass_hz=10"


def test_summary_has_chance_as_the_majority_share_and_no_numbers_for_unfinished_runs():
    runs, baseline = cr.read_experiments(exp_show())
    table = cr.summary_table(runs, baseline).set_index("control")
    assert table.loc["study", "chance"] == pytest.approx(0.6)
    assert table.loc["study", "changes"] == "—"
    assert pd.isna(table.loc["shuffled", "accuracy"])
    assert table.loc["shuffled", "changes"] == "train.shuffle=true"


def test_band_table_sets_the_studys_published_fractions_beside_the_runs():
    runs, _ = cr.read_experiments(exp_show())
    table = cr.shap_table(runs, "band_fraction")
    study = table[table["control"] == "study (published)"].set_index("class")
    for c in ("pre", "post"):
        assert study.loc[c, "30_40hz"] == published.BAND_FRACTION[c]["30_40hz"]
    ours = table[(table["control"] == "lowpass") & (table["class"] == "pre")]
    assert float(ours["30_40hz"].iloc[0]) == pytest.approx(0.3)
    # window fractions have no published counterpart in these keys: no study rows
    assert "study (published)" not in set(cr.shap_table(runs, "window_fraction")["control"])


def test_faithfulness_table_flattens_whatever_the_explainer_wrote():
    runs, _ = cr.read_experiments(exp_show())
    table = cr.faithfulness_table(runs).set_index("control")
    assert table.loc["study", "deletion_gap.pre"] == pytest.approx(0.12)
    assert set(table.index) == {"study", "lowpass"}


def test_not_an_exp_show_listing_is_an_error():
    with pytest.raises(cr.ControlReportError, match="list"):
        cr.read_experiments({"rev": "workspace"})


def test_cli_without_controls_fails_with_one_line(tmp_path, caplog):
    listing = tmp_path / "exp.json"
    listing.write_text(json.dumps(exp_show()[:1]))
    assert cr.main(["--exp-json", str(listing), "--root", str(tmp_path)]) == 1
    assert "make controls" in caplog.text
    assert not (tmp_path / cr.PAGE).exists()


@pytest.fixture
def page(tmp_path):
    listing = tmp_path / "exp.json"
    listing.write_text(json.dumps(exp_show()))
    assert cr.main(["--exp-json", str(listing), "--root", str(tmp_path)]) == 0
    return tmp_path / cr.PAGE


def test_page_holds_tables_and_figures_and_is_deterministic(page, tmp_path):
    text = page.read_text()
    for needle in ("study (published)", "lowpass", "queued", "failed", "deletion_gap.pre"):
        assert needle in text
    assert text.count("<img ") == 2
    assert sorted(p.name for p in (tmp_path / cr.FIGURES).iterdir()) == [
        "accuracy.png",
        "band_fractions.png",
    ]
    first = page.read_bytes()
    listing = tmp_path / "exp.json"
    assert cr.main(["--exp-json", str(listing), "--root", str(tmp_path)]) == 0
    assert page.read_bytes() == first


@pytest.mark.browser
def test_page_loads_in_headless_chromium(chromium, page, tmp_path):
    view = view_page(chromium, page, tmp_path / "profile")
    assert view.title.startswith("quakeshap")
    assert len(view.images) == 2
    assert all(i["complete"] and i["width"] > 0 for i in view.images), view.images
    assert view.fetched == []
    assert not view.errors, view.errors
    assert {"control", "accuracy", "chance", "30_40hz"} <= set(view.headers)


def test_settings_apply_to_every_control_alike():
    from quakeshap.config import PARAMS_FILE, load_yaml
    from quakeshap.controls import ControlError, plan_controls, settings_patch

    patch = settings_patch(["shap.max_evals=1000", "train.max_epochs=2"])
    assert patch == {"shap": {"max_evals": 1000}, "train": {"max_epochs": 2}}
    plan = plan_controls(["study", "lowpass_10hz"], load_yaml(PARAMS_FILE), settings=patch)
    for control in plan:
        assert "shap.max_evals=1000" in control.overrides
        assert "train.max_epochs=2" in control.overrides
    with pytest.raises(ControlError, match=r"section\.key=value"):
        settings_patch(["max_evals=3"])
    with pytest.raises(ControlError, match=r"shap\.max_evals"):
        plan_controls(["study"], load_yaml(PARAMS_FILE), settings={"shap": {"max_evals": 0}})


def test_until_runs_each_control_only_up_to_a_stage():
    from quakeshap.controls import Control, queue_command

    control = Control("lowpass_10hz", "control-lowpass_10hz", ("spectrogram.x=1",))
    full = queue_command(control, "dvc")
    assert full[-2:] == ["-S", "spectrogram.x=1"]
    assert queue_command(control, "dvc", until="explain") == [*full, "explain"]


def test_markdown_record_holds_the_same_tables(tmp_path):
    listing = tmp_path / "exp.json"
    listing.write_text(json.dumps(exp_show()))
    out = tmp_path / "controls.md"
    args = ["--exp-json", str(listing), "--root", str(tmp_path), "--markdown", str(out)]
    assert cr.main([*args, "--command", "make controls"]) == 0
    text = out.read_text()
    assert "make controls" in text
    assert "| lowpass | done | spectrogram.lowpass_hz=10 | 0.710 |" in text
    assert "| 0.600 | 100 |" in text  # chance, and n_test as an integer
    assert "| shuffled | queued | train.shuffle=true | – |" in text
    assert "| study (published) | post | 0.091 |" in text
    assert "deletion_gap.pre" in text
