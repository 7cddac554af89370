"""Test-set scores (positive class: post), predictions table, and the evaluate stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from quakeshap import evaluation
from quakeshap.artifacts import checkpoint, metrics, predictions
from quakeshap.evaluation import EvaluationError
from quakeshap.stages import evaluate as evaluate_stage
from tests.fixtures import (
    PARAMS_FILE,
    make_checkpoint,
    make_spectrogram_set,
    write_checkpoint,
    write_params,
    write_spectrogram_set,
)
from tests.test_training import cli


def _table(label, predicted, week=None):
    """A predictions table whose logits give the ``predicted`` classes."""
    predicted = np.asarray(predicted)
    margin = np.linspace(0.5, 3.0, len(predicted))
    logit_post = np.where(predicted == "post", margin, -margin)
    meta = pd.DataFrame(
        {
            "trace_name": [f"t{i}" for i in range(len(label))],
            "label": label,
            "week": week if week is not None else [40] * len(label),
        }
    )
    logits = np.stack([-logit_post, logit_post], axis=1).reshape(-1, 2)
    return evaluation.predictions_table(meta, logits)


def test_metrics_against_a_hand_computed_confusion_matrix():
    # 4 tp, 3 tn, 2 fp (pre called post), 1 fn (post called pre)
    label = ["post"] * 4 + ["pre"] * 3 + ["pre"] * 2 + ["post"]
    predicted = ["post"] * 4 + ["pre"] * 3 + ["post"] * 2 + ["pre"]
    m = evaluation.classification_metrics(_table(label, predicted))
    assert m["confusion"] == {"tp": 4, "tn": 3, "fp": 2, "fn": 1}
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    assert m["balanced_accuracy"] == pytest.approx((4 / 5 + 3 / 5) / 2)
    assert (m["n_test"], m["n_pre"], m["n_post"], m["n_misclassified"]) == (10, 5, 5, 3)


def test_no_positive_prediction_scores_zero_not_nan():
    m = evaluation.classification_metrics(_table(["pre", "post"], ["pre", "pre"]))
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_roc_auc_matches_sklearn_with_ties(rng):
    positive = rng.random(200) < 0.4
    score = np.round(rng.random(200) + 0.3 * positive, 1)  # many ties
    assert evaluation.roc_auc(positive, score) == pytest.approx(roc_auc_score(positive, score))
    assert evaluation.roc_auc(np.array([True, True, False]), np.array([0.9, 0.8, 0.1])) == 1.0
    assert np.isnan(evaluation.roc_auc(np.array([True, True]), np.array([0.2, 0.3])))


def test_single_class_test_set_has_null_auc(tmp_path):
    from quakeshap.files import write_json

    m = evaluation.classification_metrics(_table(["pre", "pre"], ["pre", "post"]))
    assert np.isnan(m["roc_auc"])
    write_json(tmp_path / "m.json", m)
    assert json.loads((tmp_path / "m.json").read_text())["roc_auc"] is None


def test_empty_test_set_is_an_error():
    with pytest.raises(EvaluationError, match="empty"):
        evaluation.classification_metrics(_table([], []))


def test_predictions_table_follows_the_contract():
    meta = pd.DataFrame({"trace_name": ["a", "b", "c"], "label": ["pre", "post", "post"],
                         "week": [40, 45, 46], "other": [1, 2, 3]})  # fmt: skip
    logits = np.array([[2.0, -1.0], [1000.0, 999.0], [0.0, 0.0]], dtype=np.float32)
    table = evaluation.predictions_table(meta, logits)
    assert tuple(table.columns) == predictions.PREDICTION_COLUMNS
    assert table["predicted"].tolist() == ["pre", "pre", "pre"]  # a tie goes to pre
    assert table["correct"].tolist() == [True, False, False]
    expected = [1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(-1.0)), 0.5]  # no overflow at 1000
    np.testing.assert_allclose(table["probability"], expected)
    with pytest.raises(EvaluationError, match="logits for 3 traces"):
        evaluation.predictions_table(meta, logits[:2])


def test_weekly_accuracy_by_hand():
    table = _table(["pre", "pre", "post", "post", "post"], ["pre", "post", "post", "post", "pre"],
                   week=[35, 35, 45, 45, 44])  # fmt: skip
    weekly = evaluation.weekly_accuracy(table)
    assert weekly.to_dict("list") == {
        "week": [35, 44, 45],
        "n": [2, 1, 2],
        "accuracy": [0.5, 0.0, 1.0],
    }


def test_predict_logits_batches_and_input_types(rng):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 2)).eval()
    images = rng.integers(0, 256, size=(7, 3, 4, 5), dtype=np.uint8)
    floats = images.astype(np.float32) / 255
    expected = model(torch.from_numpy(floats)).detach().numpy()
    for batch_size in (1, 3, 100):
        got = evaluation.predict_logits(model, images, torch.device("cpu"), batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    got = evaluation.predict_logits(model, floats, torch.device("cpu"))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert evaluation.predict_logits(model, images[:0], torch.device("cpu")).shape == (0, 2)


def test_non_finite_logits_are_an_error(rng):
    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 2), float("nan"))

    with pytest.raises(EvaluationError, match="non-finite logits for 2 image"):
        evaluation.predict_logits(Broken(), np.zeros((2, 3, 4, 4), np.uint8), torch.device("cpu"))


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def _project(tmp_path, rng, test_traces=None, height=33):
    sset = make_spectrogram_set(rng, 30, 20, shape=(3, 33, 96))
    write_spectrogram_set(tmp_path / "spectrograms", sset)
    ckpt = make_checkpoint(height=height)
    if test_traces is not None:
        ckpt["test_traces"] = test_traces
    write_checkpoint(tmp_path, ckpt)
    write_params(tmp_path, train={"device": "cpu"})
    return sset


def _argv(tmp_path, out="out"):
    return cli(params=tmp_path / PARAMS_FILE, spectrograms=tmp_path / "spectrograms",
               model=tmp_path / checkpoint.PATH, out=tmp_path / out,
               metrics=tmp_path / out / metrics.PATHS["evaluate"].name)  # fmt: skip


def test_evaluate_stage_scores_the_checkpoints_test_set(tmp_path, rng):
    """The test set is the checkpoint's list (e.g. the co-located control's), in its order."""
    chosen = ["NRCA.IV.100003_EV", "NRCA.IV.100045_EV", "NRCA.IV.100010_EV", "NRCA.IV.100031_EV"]
    sset = _project(tmp_path, rng, test_traces=chosen)
    assert set(chosen) <= set(sset.metadata["trace_name"])
    assert evaluate_stage.main(_argv(tmp_path)) == 0
    out = tmp_path / "out"
    table = predictions.load(out / predictions.PREDICTIONS_FILE)
    assert tuple(table.columns) == predictions.PREDICTION_COLUMNS
    assert table["trace_name"].tolist() == chosen
    scores = metrics.load(out / metrics.PATHS["evaluate"].name, "evaluate")
    assert scores["n_test"] == 4 and set(scores["confusion"]) == {"tn", "fp", "fn", "tp"}
    confusion = pd.read_csv(out / predictions.CONFUSION_FILE)
    assert tuple(confusion.columns) == predictions.CONFUSION_COLUMNS and len(confusion) == 4
    weekly = pd.read_csv(out / predictions.WEEKLY_FILE)
    assert tuple(weekly.columns) == predictions.WEEKLY_COLUMNS and weekly["n"].sum() == 4
    # deterministic: a second run writes the same bytes
    assert evaluate_stage.main(_argv(tmp_path, out="again")) == 0
    names = (predictions.PREDICTIONS_FILE, predictions.CONFUSION_FILE, predictions.WEEKLY_FILE,
             metrics.PATHS["evaluate"].name)  # fmt: skip
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_evaluate_stage_without_test_list_uses_the_split_column(tmp_path, rng):
    sset = _project(tmp_path, rng)
    assert evaluate_stage.main(_argv(tmp_path)) == 0
    table = predictions.load(tmp_path / "out" / predictions.PREDICTIONS_FILE)
    expected = sset.metadata.loc[sset.metadata["split"] == "test", "trace_name"]
    assert table["trace_name"].tolist() == expected.tolist()


def test_evaluate_stage_rejects_a_model_for_another_image_shape(tmp_path, rng, caplog):
    _project(tmp_path, rng, height=65)
    assert evaluate_stage.main(_argv(tmp_path)) == 1
    assert "trained on images of shape (3, 65, 96)" in caplog.text
    assert not (tmp_path / "out" / predictions.PREDICTIONS_FILE).exists()


def test_evaluate_stage_rejects_unknown_test_traces(tmp_path, rng, caplog):
    _project(tmp_path, rng, test_traces=["NRCA.IV.nope_EV"])
    assert evaluate_stage.main(_argv(tmp_path)) == 1
    assert "not in the spectrogram set" in caplog.text
