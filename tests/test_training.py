"""Cross-validated training (docs/method.md §3): split, normalisation, balance, folds, early
stopping, model choice, precision guard, determinism, and the train stage end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from quakeshap import record, training
from quakeshap.artifacts import checkpoint, metrics
from quakeshap.config import TrainConfig
from quakeshap.model import DeviceError, model_from_checkpoint
from quakeshap.record import CHANNELS
from quakeshap.stages import train as train_stage
from quakeshap.torch_runtime import Precision, choose_precision, deterministic_torch
from quakeshap.training import EarlyStopping, FoldResult, choose_best_fold, train_model
from quakeshap.training_data import (
    TrainingError,
    balance_classes,
    channel_statistics,
    kfold_indices,
    normalised_tensor,
    train_test_split,
    training_labels,
)
from tests.fixtures import make_spectrogram_set, write_params, write_spectrogram_set

CPU = torch.device("cpu")


def small_cfg(**changes) -> TrainConfig:
    # one thread: tiny batches gain nothing from more, and a busy machine slows them down
    base = dict(device="cpu", n_folds=3, max_epochs=2, patience=1, batch_size=16, seed=7,
                num_threads=1)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def cli(**options) -> list[str]:
    """Command-line arguments for a stage's ``main``: ``cli(params=p)`` → ``["--params", "p"]``."""
    return [item for key, value in options.items() for item in (f"--{key}", str(value))]


# --------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------


def _meta(split, associato):
    return pd.DataFrame({"split": split, "associato": associato})


def test_split_follows_the_split_column():
    meta = _meta(["train", "test", "train", "train", "test"], [0, 3, 3, 0, 0])
    s = train_test_split(meta, exclude_colocated=False)
    np.testing.assert_array_equal(s.train, [0, 2, 3])
    np.testing.assert_array_equal(s.test, [1, 4])
    assert s.n_colocated_moved == 0


def test_colocated_control_moves_every_group_member_to_test():
    """The study's control: no trace with associato != 0 is trained on; all are tested."""
    rng = np.random.default_rng(3)
    n = 400
    split = np.where(rng.random(n) < 0.2, "test", "train")
    associato = np.where(rng.random(n) < 0.1, rng.integers(1, 20, n), 0)
    s = train_test_split(_meta(split, associato), exclude_colocated=True)
    colocated = associato != 0
    assert not colocated[s.train].any()
    assert set(np.flatnonzero(colocated)) <= set(s.test)
    assert set(np.flatnonzero(split == "test")) <= set(s.test)
    assert len(s.train) == int(((split == "train") & ~colocated).sum())
    assert len(s.test) == int(((split == "test") | colocated).sum())
    assert s.n_colocated_moved == int(((split == "train") & colocated).sum())
    assert len(s.train) + len(s.test) == n and not set(s.train) & set(s.test)


def test_unknown_split_value_is_an_error():
    with pytest.raises(TrainingError, match=r"'split' holds \['val'\]"):
        train_test_split(_meta(["train", "val"], [0, 0]), exclude_colocated=False)


# --------------------------------------------------------------------------------------
# normalisation, balance, folds
# --------------------------------------------------------------------------------------


def test_channel_statistics_are_those_of_the_pixel_values(rng):
    images = rng.integers(0, 256, size=(23, 3, 5, 7), dtype=np.uint8)
    images[:, 1] //= 2  # channels differ
    values = images.astype(np.float64) / 255
    mean, std = channel_statistics(images, chunk_size=4)
    np.testing.assert_allclose(mean, values.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, values.std(axis=(0, 2, 3)), rtol=1e-12)  # population std
    # float images in [0, 1] are taken as they are; the chunk size changes nothing
    mean_f, std_f = channel_statistics(values.astype(np.float32), chunk_size=100)
    np.testing.assert_allclose(mean_f, mean, rtol=1e-6)
    np.testing.assert_allclose(std_f, std, rtol=1e-6)


def test_normalised_tensor_is_the_standardised_pixel_values(rng):
    images = rng.integers(0, 256, size=(1100, 3, 2, 3), dtype=np.uint8)  # more than a chunk
    mean, std = channel_statistics(images)
    x = normalised_tensor(images, mean, std, CPU)
    assert x.dtype == torch.float32 and x.shape == images.shape
    expected = (images / 255 - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_constant_channel_cannot_be_normalised():
    images = np.full((4, 3, 2, 2), 7, dtype=np.uint8)
    with pytest.raises(TrainingError, match="constant"):
        channel_statistics(images)


def test_undersampling_balances_and_keeps_the_smaller_class_whole(rng):
    labels = np.array([0] * 70 + [1] * 30)
    idx = balance_classes(labels, "undersample", np.random.default_rng(1))
    assert np.bincount(labels[idx]).tolist() == [30, 30]
    assert set(np.flatnonzero(labels == 1)) <= set(idx)  # every minority trace kept
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    again = balance_classes(labels, "undersample", np.random.default_rng(1))
    other = balance_classes(labels, "undersample", np.random.default_rng(2))
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    np.testing.assert_array_equal(balance_classes(labels, "none", rng), np.arange(100))


def test_a_class_with_no_traces_is_an_error(rng):
    with pytest.raises(TrainingError, match="no 'post' traces"):
        balance_classes(np.zeros(10, dtype=np.int64), "undersample", rng)


@pytest.mark.parametrize(("n", "k"), [(60, 7), (61, 7), (14, 7), (100, 3)])
def test_folds_are_disjoint_cover_everything_and_are_even(n, k):
    labels = np.arange(n) % 2
    folds = kfold_indices(labels, k, np.random.default_rng(0))
    assert len(folds) == k
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(n))  # covering, and disjoint
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.all(np.diff(f) > 0) for f in folds)
    again = kfold_indices(labels, k, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))


def test_a_fold_with_a_single_class_is_an_error():
    labels = np.array([0] * 9 + [1])  # the one 'post' trace sits in one fold only
    with pytest.raises(TrainingError, match=r"single class.*train\.n_folds"):
        kfold_indices(labels, 3, np.random.default_rng(0))
    with pytest.raises(TrainingError, match="cannot make 7 folds"):
        kfold_indices(np.arange(10) % 2, 7, np.random.default_rng(0))


# --------------------------------------------------------------------------------------
# early stopping and model choice
# --------------------------------------------------------------------------------------


def test_early_stopping_with_a_scripted_sequence():
    stopper = EarlyStopping(patience=3)
    script = [0.50, 0.60, 0.60, 0.55, 0.58, 0.70]
    improved = []
    for epoch, acc in enumerate(script, start=1):
        improved.append(stopper.update(epoch, acc))
        if stopper.should_stop:
            break
    # a tie (epoch 3) is no improvement; three epochs without one end training at epoch 5
    assert improved == [True, True, False, False, False]
    assert (stopper.best_epoch, stopper.best) == (2, 0.60)


def test_train_fold_stops_early_and_keeps_the_best_epochs_weights(monkeypatch, rng):
    """The fold runs until patience is exhausted and returns the best epoch's weights."""
    script = iter([(0.9, 0.50), (0.5, 0.75), (0.4, 0.75), (0.3, 0.70), (0.2, 0.9)])
    snapshots = []

    def scripted(model, x, y, index, precision, batch_size, objective):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(script)

    monkeypatch.setattr(training, "_evaluate_batches", scripted)
    sset = make_spectrogram_set(rng, 20, 20)
    x = torch.from_numpy(sset.as_float())
    y = torch.tensor(sset.labels())
    cfg = small_cfg(max_epochs=10, patience=2)
    with deterministic_torch(cfg.seed, CPU, num_threads=1):
        result = training.train_fold(x, y, np.arange(30), np.arange(30, 40), cfg, fold=1, n_folds=1)
    assert result.epochs_run == 4 and result.best_epoch == 2
    assert result.best_val_score == 0.75 and result.best_val_loss == 0.5
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    for k, v in result.state_dict.items():
        torch.testing.assert_close(v, snapshots[1][k], rtol=0, atol=0)
        # trained channels_last, stored in the usual layout
        assert v.is_contiguous(), k
    assert any(not torch.equal(result.state_dict[k], snapshots[3][k]) for k in result.state_dict)


def _fold(k, acc, loss):
    return FoldResult(k, {}, 1, acc, loss, 1, 10, 5, [])


def test_best_fold_highest_accuracy_then_lowest_loss_then_first():
    folds = [_fold(1, 0.90, 0.2), _fold(2, 0.95, 0.3), _fold(3, 0.95, 0.1), _fold(4, 0.95, 0.1)]
    assert choose_best_fold(folds) == 2  # fold 3
    assert choose_best_fold([_fold(1, 0.9, 0.2), _fold(2, 0.9, 0.2)]) == 0
    with pytest.raises(TrainingError):
        choose_best_fold([])


# --------------------------------------------------------------------------------------
# device and precision
# --------------------------------------------------------------------------------------


def test_precision_choice():
    cuda = torch.device("cuda")
    assert choose_precision(CPU, True) == Precision(False, None, False)
    assert choose_precision(cuda, False, bf16_supported=True).autocast is False
    assert choose_precision(cuda, True, bf16_supported=True) == Precision(
        True, torch.bfloat16, False
    )
    assert choose_precision(cuda, True, bf16_supported=False) == Precision(
        True, torch.float16, True
    )


def test_mixed_precision_is_ignored_on_the_cpu(rng):
    """On the CPU the autocast guard stays off: mixed_precision changes nothing."""
    sset = make_spectrogram_set(rng, 24, 24)
    a = train_model(sset, small_cfg(mixed_precision=True, max_epochs=1))
    b = train_model(sset, small_cfg(mixed_precision=False, max_epochs=1))
    assert a.history.equals(b.history)
    assert all(v.dtype != torch.float16 for v in a.model["state_dict"].values())


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, rng):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        train_model(make_spectrogram_set(rng), small_cfg(device="cuda"))


# --------------------------------------------------------------------------------------
# the whole recipe
# --------------------------------------------------------------------------------------


def test_train_model_records_split_metrics_and_history(rng):
    sset = make_spectrogram_set(rng, 40, 26)
    run = train_model(sset, small_cfg(max_epochs=3, patience=2))
    meta = sset.metadata
    is_train = (meta["split"] == "train").to_numpy()
    assert run.model["test_traces"] == meta["trace_name"][~is_train].tolist()
    assert run.model["train_traces"] == meta["trace_name"][is_train].tolist()
    n_post = int((meta["label"][is_train] == "post").sum())
    m = run.metrics
    assert m["n_train"] == is_train.sum() and m["n_test"] == (~is_train).sum()
    assert m["n_balanced"] == 2 * n_post
    assert len(m["folds"]) == 3 and m["chosen_fold"] == run.model["fold"]
    assert m["epochs_run"] == len(run.history) == sum(f["epochs_run"] for f in m["folds"].values())
    assert tuple(run.history.columns) == metrics.HISTORY_COLUMNS
    best = m["folds"][str(m["chosen_fold"])]
    assert best["best_val_accuracy"] == max(f["best_val_accuracy"] for f in m["folds"].values())
    assert sum(f["n_val"] for f in m["folds"].values()) == m["n_balanced"]
    # normalisation = statistics of the whole train split, as stored in the checkpoint
    mean, std = channel_statistics(sset.images[is_train])
    np.testing.assert_allclose(run.model["normalization"]["mean"], mean)
    np.testing.assert_allclose(run.model["normalization"]["std"], std)
    # the separable toy set is learnt
    assert m["best_val_accuracy"] >= 0.9
    assert set(run.folds) == {1, 2, 3}


def test_colocated_variant_split_counts(rng):
    sset = make_spectrogram_set(rng, 40, 30)
    meta = sset.metadata
    groups = np.zeros(len(meta), dtype=np.int64)
    groups[[0, 1, 40, 41, 5, 45]] = [1, 1, 1, 1, 2, 2]  # pre and post traces in each group
    meta["associato"] = groups
    run = train_model(sset, small_cfg(exclude_colocated=True, max_epochs=1))
    colocated = set(meta["trace_name"][groups != 0])
    assert not colocated & set(run.model["train_traces"])
    assert colocated <= set(run.model["test_traces"])
    moved = int(((meta["split"] == "train") & (groups != 0)).sum())
    assert run.metrics["n_colocated_moved"] == moved
    assert run.metrics["n_train"] == int((meta["split"] == "train").sum()) - moved
    assert run.model["exclude_colocated"] is True


def test_no_post_trace_left_for_training_is_an_error(rng):
    sset = make_spectrogram_set(rng, 30, 10)
    sset.metadata.loc[sset.metadata["label"] == "post", "associato"] = 1
    with pytest.raises(TrainingError, match=r"no 'post' traces.*exclude_colocated"):
        train_model(sset, small_cfg(exclude_colocated=True))


def test_unknown_labels_and_an_empty_train_split_are_errors(rng):
    sset = make_spectrogram_set(rng, 10, 10)
    sset.metadata.loc[3, "label"] = "foreshock"
    with pytest.raises(TrainingError, match=r"'label' holds \['foreshock'\]"):
        train_model(sset, small_cfg())
    sset.metadata["label"] = "pre"
    sset.metadata["split"] = "test"
    with pytest.raises(TrainingError, match="train split is empty"):
        train_model(sset, small_cfg())


def test_two_runs_give_identical_weights_metrics_and_files(rng, tmp_path):
    sset = make_spectrogram_set(rng, 30, 30)
    cfg = small_cfg(max_epochs=2, patience=2)
    a, b = train_model(sset, cfg), train_model(sset, cfg)
    for k in a.model["state_dict"]:
        assert torch.equal(a.model["state_dict"][k], b.model["state_dict"][k]), k
    assert a.metrics == b.metrics
    assert a.history.equals(b.history)
    checkpoint.save(a.model, tmp_path / "a.pt")
    checkpoint.save(b.model, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    # another seed trains another model
    c = train_model(sset, small_cfg(max_epochs=2, patience=2, seed=8))
    weights_a, weights_c = a.model["state_dict"], c.model["state_dict"]
    assert any(not torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


def test_shuffling_permutes_only_the_train_labels_and_is_seeded():
    labels = np.array([0] * 30 + [1] * 20)
    train = np.arange(0, 50, 2)  # every other row trains, the others test
    assert training_labels(labels, train, False, np.random.default_rng(0)) is labels
    shuffled = training_labels(labels, train, True, np.random.default_rng(0))
    test = np.setdiff1d(np.arange(50), train)
    np.testing.assert_array_equal(shuffled[test], labels[test])
    assert sorted(shuffled[train]) == sorted(labels[train])  # the class counts stay
    assert not np.array_equal(shuffled[train], labels[train])
    np.testing.assert_array_equal(
        training_labels(labels, train, True, np.random.default_rng(0)), shuffled
    )
    other = training_labels(labels, train, True, np.random.default_rng(1))
    assert not np.array_equal(other, shuffled)
    assert labels.tolist() == [0] * 30 + [1] * 20  # not in place


def _varied_set(rng: np.random.Generator, n_per_class: int):
    """The separable toy set, each image given its own spectral slope and time envelope
    (larger than the class difference), as spectrograms differ in magnitude and distance."""
    sset = make_spectrogram_set(rng, n_per_class, n_per_class, test_fraction=0.5, separation=0.15)
    x = sset.as_float().astype(np.float64)
    n, _, height, width = x.shape
    slope = rng.normal(0, 0.25, (n, 1, 1, 1)) * np.linspace(-1, 1, height)[None, None, :, None]
    envelope = rng.normal(0, 0.25, (n, 1, 1, 1)) * np.linspace(-1, 1, width)[None, None, None, :]
    sset.images[...] = record.to_uint8(np.clip(x + slope + envelope, 0, 1))
    return sset


def test_shuffled_labels_bring_test_accuracy_to_chance(rng):
    """The control on a set the model learns perfectly: with its training labels shuffled,
    the same recipe scores at chance on the true test labels (and says so in its metrics)."""
    from quakeshap.evaluation import predict_logits

    sset = _varied_set(rng, 160)
    test = (sset.metadata["split"] == "test").to_numpy()
    truth = sset.labels()[test]

    def test_accuracy(shuffle: bool, seed: int) -> tuple[float, training.TrainingRun]:
        cfg = small_cfg(max_epochs=3, patience=3, shuffle_labels=shuffle, seed=seed)
        run = train_model(sset, cfg)
        model = model_from_checkpoint(run.model, input_shape=sset.image_shape)
        predicted = predict_logits(model, sset.images[test], CPU).argmax(axis=1)
        return float((predicted == truth).mean()), run

    learnt, run = test_accuracy(False, 7)
    assert learnt >= 0.95 and "shuffle_labels" not in run.metrics
    # ~160 test traces: one seed's accuracy is 0.5 ± 0.04 (1 s.d.) from sampling alone
    chance, runs = zip(*(test_accuracy(True, seed) for seed in (7, 8, 9)), strict=True)
    assert all(abs(a - 0.5) < 0.15 for a in chance), chance
    assert abs(np.mean(chance) - 0.5) < 0.08, chance
    run = runs[0]
    assert run.metrics["shuffle_labels"] is True and run.model["shuffle_labels"] is True
    assert run.metrics["best_val_accuracy"] < 0.8  # validation folds see shuffled labels


def test_training_leaves_the_global_random_state_alone(rng):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model(make_spectrogram_set(rng, 20, 20), small_cfg(max_epochs=1))
    torch.testing.assert_close(torch.rand(3), expected)


# --------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------


def _params(tmp_path, **train):
    return write_params(tmp_path, train={"num_threads": 1, **train})


def test_train_stage_writes_every_output(tmp_path, rng):
    """The real image shape (3, 33, 96), a few batches: the stage's files and formats."""
    sset = make_spectrogram_set(rng, 24, 20, shape=(3, 33, 96))
    spec = write_spectrogram_set(tmp_path / "spectrograms", sset)
    params = _params(tmp_path, n_folds=2, max_epochs=1, device="cpu")
    out = tmp_path / "out"
    models = out / "models"
    metrics_file, history_file = out / metrics.PATHS["train"].name, out / metrics.HISTORY_PATH.name
    argv = cli(params=params, spectrograms=spec, models=models, metrics=metrics_file,
               history=history_file)  # fmt: skip
    assert train_stage.main(argv) == 0
    folds = sorted(p.name for p in (models / checkpoint.FOLDS_DIR.name).iterdir())
    assert folds == [checkpoint.fold_file(1), checkpoint.fold_file(2)]
    ckpt = checkpoint.load(models / checkpoint.PATH.name)
    assert set(checkpoint.KEYS) <= set(ckpt)
    model = model_from_checkpoint(ckpt, input_shape=(3, 33, 96))
    assert model(torch.zeros(1, 3, 33, 96)).shape == (1, 2)
    scores = metrics.load(metrics_file, "train")
    assert scores["chosen_fold"] in (1, 2)
    assert tuple(scores["normalization"]["mean"]) == CHANNELS
    history = metrics.load_history(history_file)
    assert list(history["fold"]) == [1, 2] and list(history["epoch"]) == [1, 1]


def test_train_stage_fails_in_one_line_on_bad_input(tmp_path, caplog):
    params = _params(tmp_path)
    argv = cli(params=params, spectrograms=tmp_path / "absent", models=tmp_path / "models")
    assert train_stage.main(argv) == 1
    assert "spectrogram set incomplete" in caplog.text
    assert not (tmp_path / "models").exists()
    bad = _params(tmp_path, n_folds=1)
    assert train_stage.main(["--params", str(bad)]) == 1
    assert "train.n_folds" in caplog.text
