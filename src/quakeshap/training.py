"""Cross-validated training of the study's CNN2D (``docs/method.md`` §3).

The recipe, each step a parameter of ``train`` in ``params.yaml``:

1. **Split.** The train split of ``metadata.csv`` (``split == "train"``) is trained on, the
   test split is held out. With ``exclude_colocated`` (the study's co-located control) every
   trace of a co-located group (``associato != 0``) leaves the train split and joins the
   test split. The study reported this variant as "3434 train / 1265 test": 3434 is the size
   of the *balanced* train set, 1265 the test split plus the moved traces. With
   ``shuffle_labels`` (the shuffled-labels control) the labels of the balanced train set
   (step 3) are permuted at random (seeded) among its traces; the test set keeps its true
   labels.
2. **Normalisation.** Per-channel mean and (population) standard deviation of the pixel
   values in [0, 1] over the whole effective train split, before balancing: the study's
   "train split" statistics. They are computed once and shared by all folds (so each
   fold's validation images take part in them, as in the study).
3. **Balance.** The larger class is undersampled at random (seeded) to the size of the
   smaller one (``balance: undersample``), or the split is used as it is (``none``).
4. **K-fold cross-validation** over the balanced set (seeded shuffle, ``n_folds`` disjoint
   validation folds covering it). Per fold: a fresh CNN2D, Adam(``lr``), mini-batches of
   ``batch_size``, at most ``max_epochs`` epochs, early stopping on validation accuracy with
   ``patience``; the weights of the best epoch are kept.
5. **Model choice.** The fold with the highest best validation accuracy is the model (ties:
   the lower validation loss at that epoch, then the lower fold number).

The whole (normalised) data set lives in one tensor on the training device; mini-batches
are gathered by index tensors drawn from a seeded :class:`torch.Generator`, so the loop has
no per-sample Python, file reads or table look-ups. Everything random derives from
``train.seed``: the same inputs on the same machine give the same weights bit for bit.

Steps 1 to 4 on the data side (split, statistics, balance, folds) are pure functions in
:mod:`quakeshap.training_data`; mixed precision, deterministic kernels and the per-fold
seeds are :mod:`quakeshap.torch_runtime`'s. This module holds the fold loop, the
cross-validation and the run the ``train`` stage writes (checkpoints, metrics, history).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from quakeshap.artifacts import checkpoint
from quakeshap.artifacts.metrics import HISTORY_COLUMNS
from quakeshap.artifacts.spectrograms import DatasetError, SpectrogramSet
from quakeshap.config import TaskConfig, TrainConfig
from quakeshap.distributed import World, check_world_fits, rank_seed
from quakeshap.model import CNN2D, ModelConfig, resolve_device
from quakeshap.record import CHANNELS
from quakeshap.torch_runtime import Precision, choose_precision, deterministic_torch, fold_seed
from quakeshap.training_data import (
    TrainingError,
    TrainTestSplit,
    balance_classes,
    channel_statistics,
    kfold_indices,
    normalised_tensor,
    train_test_split,
    training_labels,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# early stopping and model choice
# --------------------------------------------------------------------------------------


class EarlyStopping:
    """Stop when the validation score (accuracy; −MAE for magnitude) has not improved for
    ``patience`` epochs.

    Only a strictly higher score counts as an improvement, so the earliest of equally
    good epochs is kept.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record one epoch's score; True when it is the best so far."""
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, epoch
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= self.patience


@dataclass(frozen=True)
class FoldResult:
    """One fold's outcome; epochs and folds are numbered from 1."""

    fold: int
    state_dict: dict[str, torch.Tensor]  # weights of the best epoch, on the CPU
    best_epoch: int
    best_val_score: float  # accuracy; −MAE (magnitude units) for a regression
    best_val_loss: float
    epochs_run: int
    n_train: int
    n_val: int
    history: list[dict[str, float]]  # one row per epoch: fold, epoch, losses, score


@dataclass(frozen=True)
class Objective:
    """What a fold minimises and scores: the classes, or the magnitude.

    A regression trains on standardised targets (``(m - mean) / std`` of the train split)
    with a Huber (``delta`` in magnitude units, divided by ``std``) or squared loss; its
    score is −MAE in magnitude units, so that higher is better for both kinds.
    """

    regression: bool = False
    loss: str = "cross_entropy"  # cross_entropy | huber | mse
    huber_delta: float = 0.5
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def score_name(self) -> str:
        return "val_mae" if self.regression else "val_accuracy"

    def loss_fn(self, reduction: str = "mean") -> nn.Module:
        if self.loss == "huber":
            return nn.HuberLoss(reduction=reduction, delta=self.huber_delta / self.target_std)
        if self.loss == "mse":
            return nn.MSELoss(reduction=reduction)
        return nn.CrossEntropyLoss(reduction=reduction)

    def outputs(self, model_output: torch.Tensor) -> torch.Tensor:
        """The model's output as the loss takes it: logits, or ``(n,)`` values."""
        return model_output[:, 0] if self.regression else model_output

    def targets(self, values: np.ndarray, device: torch.device) -> torch.Tensor:
        if not self.regression:
            return torch.as_tensor(values, dtype=torch.int64).to(device)
        scaled = (np.asarray(values, np.float64) - self.target_mean) / self.target_std
        return torch.as_tensor(scaled, dtype=torch.float32).to(device)

    def batch_score(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the batch: correct predictions, or −|error| in magnitude units."""
        if self.regression:
            return -((outputs.double() - y.double()).abs().sum() * self.target_std)
        return (outputs.argmax(dim=1) == y).sum().double()

    def report(self, score: float) -> float:
        """A score as written to the history and metrics: accuracy, or MAE (positive)."""
        return -score if self.regression else score


CLASSIFICATION = Objective()


def choose_best_fold(folds: Sequence[FoldResult]) -> int:
    """Position in ``folds`` of the model: highest best validation score (accuracy, or
    −MAE), then lowest validation loss at that epoch, then lowest fold number."""
    if not folds:
        raise TrainingError("no fold was trained")
    ranked = sorted(
        range(len(folds)),
        key=lambda i: (-folds[i].best_val_score, folds[i].best_val_loss, folds[i].fold),
    )
    return ranked[0]


# --------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------


def _evaluate_batches(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    precision: Precision,
    batch_size: int,
    objective: Objective = CLASSIFICATION,
) -> tuple[float, float]:
    """Mean loss and score (accuracy, or −MAE) of ``model`` on rows ``index`` of ``x``/``y``.

    In batches of the training's size, as the study validated: on a CPU they stay in cache
    (batches of 512 made the validation pass twice as slow, ``benchmarks/bench_training``).
    """
    loss_sum, score = _evaluate_sums(model, x, y, index, precision, batch_size, objective)
    n = len(index)
    return float(loss_sum) / n, float(score) / n


def _evaluate_shared(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    precision: Precision,
    batch_size: int,
    objective: Objective,
    *,
    world: World,
) -> tuple[float, float]:
    """:func:`_evaluate_batches` with the rows shared out among ``world``'s ranks: each
    scores its part of ``index``, and the sums are added up (the same on every rank)."""
    part = world.split(index)
    loss_sum, score = _evaluate_sums(model, x, y, part, precision, batch_size, objective)
    total_loss, total_score, total = world.all_sum([loss_sum, score, len(part)])
    return total_loss / total, total_score / total


def _evaluate_sums(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    precision: Precision,
    batch_size: int,
    objective: Objective,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and score of ``model`` over rows ``index``, float64 on ``x``'s device."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    score = torch.zeros((), dtype=torch.float64, device=x.device)
    loss_fn = objective.loss_fn(reduction="sum")
    with torch.inference_mode():
        for start in range(0, len(index), batch_size):
            idx = index[start : start + batch_size]
            with torch.autocast(x.device.type, dtype=precision.dtype, enabled=precision.autocast):
                out = model(x[idx].contiguous(memory_format=torch.channels_last))
            out = objective.outputs(out.float())
            loss_sum += loss_fn(out, y[idx]).double()
            score += objective.batch_score(out, y[idx])
    return loss_sum, score


def _model_config(shape: tuple[int, ...], dropout: float, n_outputs: int = 2) -> ModelConfig:
    """The CNN2D for images of ``shape`` ``(n, channels, height, width)`` with ``n_outputs``
    outputs (classes; 1 for a regression)."""
    return ModelConfig(in_channels=shape[1], height=shape[2], width=shape[3],
                       n_classes=n_outputs, dropout=dropout)  # fmt: skip


@dataclass(frozen=True)
class _Learner:
    """One fold's model and what updates it."""

    model: CNN2D
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    precision: Precision
    objective: Objective = CLASSIFICATION
    world: World | None = None
    #: the model in DistributedDataParallel (training steps under torchrun), else None
    replica: nn.Module | None = None

    @classmethod
    def fresh(
        cls,
        config: ModelConfig,
        cfg: TrainConfig,
        precision: Precision,
        device: torch.device,
        objective: Objective = CLASSIFICATION,
        world: World | None = None,
    ) -> _Learner:
        """A newly initialised CNN2D (draws from torch's global generator) and its Adam;
        with a ``world``, wrapped in DistributedDataParallel for the training steps."""
        # channels_last: the convolutions' fast layout on CPUs (17% faster epochs measured
        # here) and GPUs; the function is the same, the last bits of the sums may differ
        model = CNN2D(config).to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
        replica = None if world is None else world.wrap(model, device)
        return cls(model, optimizer, scaler, objective.loss_fn(), precision, objective,
                   world, replica)  # fmt: skip

    def train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        train_index: torch.Tensor,
        generator: torch.Generator,
        batch_size: int,
        desc: str,
        progress: bool,
    ) -> float:
        """One pass over ``train_index`` in an order drawn from ``generator``; the mean loss.

        ``desc`` and ``progress``: the label of the epoch's progress bar, and whether to draw it.
        With a ``world``, this rank trains on its share of the order (:meth:`World.shard`)
        and the mean is over every rank's rows.
        """
        self.model.train()
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        if self.world is not None:
            order = self.world.shard(order)
        order = order.to(x.device)
        net = self.model if self.replica is None else self.replica
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        n_batches = -(-len(order) // batch_size)
        batches = range(0, len(order), batch_size)
        bar = tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False,
                   disable=not progress)  # fmt: skip
        for start in bar:
            idx = order[start : start + batch_size]
            batch = x[idx].contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                x.device.type, dtype=self.precision.dtype, enabled=self.precision.autocast
            ):
                loss = self.loss_fn(self.objective.outputs(net(batch)), y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach().double() * len(idx)
        if self.world is not None:
            total_loss, total = self.world.all_sum([loss_sum, len(order)])
            self.world.sync_buffers(self.model)
            return total_loss / total
        return float(loss_sum) / len(order)

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the weights on the CPU, in the usual (contiguous) layout."""
        return {
            k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
            for k, v in self.model.state_dict().items()
        }


def train_fold(
    x: torch.Tensor,
    y: torch.Tensor,
    train_index: np.ndarray,
    val_index: np.ndarray,
    cfg: TrainConfig,
    *,
    fold: int,
    n_folds: int,
    progress: bool = False,
    objective: Objective = CLASSIFICATION,
    n_outputs: int = 2,
    world: World | None = None,
) -> FoldResult:
    """Train one fold from scratch and keep its best epoch.

    Parameters
    ----------
    x
        ``(n, 3, H, W)`` float32 normalised images, already on the training device.
    y
        ``(n,)`` int64 class indices on the same device (float32 standardised targets
        for a regression, :meth:`Objective.targets`).
    train_index, val_index
        Rows of ``x`` to train and to validate on.
    cfg
        ``lr``, ``batch_size``, ``max_epochs``, ``patience``, ``dropout``,
        ``mixed_precision`` and ``seed`` are used.
    fold, n_folds
        1-based fold number (it selects the fold's seed) and the fold count (for messages).
    progress
        Draw tqdm bars (one per fold, one per epoch).
    objective, n_outputs
        The loss and score (:class:`Objective`), and the model's outputs.
    world
        The torchrun job to train data-parallel in (:mod:`quakeshap.distributed`); None =
        this process alone.

    Notes
    -----
    Seeds torch's global generator (weight initialisation, dropout) from ``cfg.seed`` and
    ``fold``: call it inside :func:`deterministic_torch`, as :func:`cross_validate` does,
    to keep the caller's random state and get deterministic kernels.
    """
    precision = choose_precision(x.device, cfg.mixed_precision)
    seed = fold_seed(cfg.seed, fold)
    torch.manual_seed(seed)  # model initialisation and dropout masks
    batch_generator = torch.Generator(device="cpu").manual_seed(seed)
    config = _model_config(x.shape, cfg.dropout, n_outputs)
    learner = _Learner.fresh(config, cfg, precision, x.device, objective, world)
    evaluate = _evaluate_batches
    if world is not None:  # the same initial weights everywhere, a dropout stream per rank
        torch.manual_seed(rank_seed(seed, world.rank))
        evaluate = functools.partial(_evaluate_shared, world=world)
    train_t = torch.as_tensor(train_index, dtype=torch.int64)
    val_t = torch.as_tensor(val_index, dtype=torch.int64, device=x.device)
    stopper = EarlyStopping(cfg.patience)
    best_state: dict[str, torch.Tensor] = {}
    best_loss = float("nan")
    history: list[dict[str, float]] = []

    with tqdm(total=cfg.max_epochs, desc=f"fold {fold}/{n_folds}", unit="epoch",
              disable=not progress) as bar:  # fmt: skip
        for epoch in range(1, cfg.max_epochs + 1):
            started = time.perf_counter()
            train_loss = learner.train_epoch(x, y, train_t, batch_generator, cfg.batch_size,
                                             f"epoch {epoch}", progress)  # fmt: skip
            val_loss, val_score = evaluate(
                learner.model, x, y, val_t, learner.precision, cfg.batch_size, objective
            )
            row = (fold, epoch, train_loss, val_loss, objective.report(val_score))
            history.append(dict(zip(HISTORY_COLUMNS, row, strict=True)))
            if stopper.update(epoch, val_score):
                best_loss, best_state = val_loss, learner.weights()
            log.debug(
                "fold %d epoch %d: train loss %.4f, val loss %.4f, %s %.4f (%.1f s)",
                fold, epoch, train_loss, val_loss, objective.score_name, row[-1],
                time.perf_counter() - started,
            )  # fmt: skip
            bar.set_postfix(val=f"{row[-1]:.4f}", best=f"{objective.report(stopper.best):.4f}")
            bar.update()
            if stopper.should_stop:
                break
    assert stopper.best is not None and stopper.best_epoch is not None
    log.info(
        "fold %d/%d: best epoch %d of %d, %s %.4f, val loss %.4f",
        fold, n_folds, stopper.best_epoch, len(history), objective.score_name.replace("_", " "),
        objective.report(stopper.best), best_loss,
    )  # fmt: skip
    return FoldResult(fold, best_state, stopper.best_epoch, stopper.best, best_loss,
                      len(history), len(train_index), len(val_index), history)  # fmt: skip


@dataclass(frozen=True)
class CrossValidation:
    """All folds and the chosen one (``best`` is a position in ``folds``)."""

    folds: list[FoldResult]
    best: int
    model_config: ModelConfig
    objective: Objective = CLASSIFICATION

    @property
    def best_fold(self) -> FoldResult:
        return self.folds[self.best]

    def history(self) -> pd.DataFrame:
        """One row per (fold, epoch): :data:`~quakeshap.artifacts.metrics.HISTORY_COLUMNS`."""
        rows = [row for fold in self.folds for row in fold.history]
        table = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).astype(
            {"fold": "int64", "epoch": "int64"}
        )
        return table.rename(columns={HISTORY_COLUMNS[-1]: self.objective.score_name})


def cross_validate(
    images: np.ndarray,
    labels: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    progress: bool = False,
    objective: Objective = CLASSIFICATION,
    n_outputs: int = 2,
    world: World | None = None,
) -> CrossValidation:
    """K-fold cross-validation of CNN2D on an (already balanced) training set.

    Parameters
    ----------
    images
        ``(n, 3, H, W)``, ``uint8`` (``floor(255 x)``) or float in [0, 1].
    labels
        ``(n,)`` class indices (0 = pre, 1 = post for the study); magnitudes for a
        regression ``objective``.
    mean, std
        ``(3,)`` per-channel normalisation of the [0, 1] pixel values.
    cfg
        The ``train`` parameters.
    device
        Where to train; None = resolve ``cfg.device``.
    progress
        Draw progress bars.
    objective, n_outputs
        Classes (the default) or a regression (:class:`Objective`), and the model's outputs.
    world
        Train each fold data-parallel across this torchrun job's ranks (None = alone); too
        many ranks for the folds' train rows is a :class:`TrainingError` before any training.
    """
    if len(images) != len(labels):
        raise TrainingError(f"{len(images)} images but {len(labels)} labels")
    device = resolve_device(cfg.device) if device is None else device
    folds_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    folds = kfold_indices(None if objective.regression else labels, cfg.n_folds, folds_rng,
                          n=len(labels))  # fmt: skip
    if world is not None:
        check_world_fits(world, [len(labels) - len(val) for val in folds], cfg.batch_size)
    with deterministic_torch(cfg.seed, device, cfg.num_threads):
        x = normalised_tensor(images, mean, std, device)
        y = objective.targets(labels, device)
        results = []
        everything = np.arange(len(labels))
        for k, val in enumerate(folds, start=1):
            train = np.setdiff1d(everything, val, assume_unique=True)
            results.append(
                train_fold(x, y, train, val, cfg, fold=k, n_folds=cfg.n_folds,
                           progress=progress, objective=objective, n_outputs=n_outputs,
                           world=world)
            )  # fmt: skip
    best = choose_best_fold(results)
    log.info(
        "chosen: fold %d (%s %.4f)", results[best].fold, objective.score_name.replace("_", " "),
        objective.report(results[best].best_val_score),
    )  # fmt: skip
    config = _model_config(images.shape, cfg.dropout, n_outputs)
    return CrossValidation(folds=results, best=best, model_config=config, objective=objective)


# --------------------------------------------------------------------------------------
# the whole recipe on a spectrogram set
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRun:
    """What the train stage writes: checkpoints, metrics and history."""

    model: dict[str, Any]  # checkpoint of the chosen fold
    folds: dict[int, dict[str, Any]]  # fold number -> checkpoint
    metrics: dict[str, Any]  # reports/metrics/train.json
    history: pd.DataFrame  # reports/train/history.csv
    split: TrainTestSplit = field(repr=False)


def objective_for(data: SpectrogramSet, task: TaskConfig, train_rows: np.ndarray) -> Objective:
    """Cross-entropy over the classes, or the magnitude loss of ``task.magnitude`` on
    targets standardised by the train rows' mean and (population) std."""
    if not data.is_regression:
        return CLASSIFICATION
    values = data.targets()[train_rows].astype(np.float64)
    std = float(values.std()) if len(values) > 1 and values.std() > 0 else 1.0
    return Objective(regression=True, loss=task.magnitude.loss,
                     huber_delta=task.magnitude.huber_delta,
                     target_mean=float(values.mean()), target_std=std)  # fmt: skip


def train_model(
    data: SpectrogramSet,
    cfg: TrainConfig,
    *,
    task: TaskConfig | None = None,
    device: torch.device | None = None,
    progress: bool = False,
    world: World | None = None,
) -> TrainingRun:
    """Run the study's training recipe (module docstring) on a spectrogram set.

    The checkpoint of the chosen fold also records the traces trained and tested on
    (``train_traces``, ``test_traces``): the evaluate stage tests on exactly that test set,
    which differs from the ``split`` column under ``exclude_colocated``. The task (classes
    or magnitude) is the set's (:attr:`SpectrogramSet.task_kind`); ``task`` gives the
    magnitude loss (default: ``TaskConfig()``'s). A regression trains on every train
    trace: there are no classes to balance. With a ``world`` (a torchrun job, ``device``
    this rank's) every fold trains data-parallel across its ranks, and ``train.json``
    records ``world_size``; the outputs are the same files.
    """
    task = TaskConfig() if task is None else task
    device = resolve_device(cfg.device) if device is None else device
    split = train_test_split(data.metadata, cfg.exclude_colocated)
    if len(split.test) == 0:
        log.warning("the test set is empty: the evaluate stage will have nothing to score")
    if len(split.train) == 0:
        raise TrainingError("the train split is empty; check metadata.csv's 'split' column")
    try:
        labels_all = data.targets()
    except DatasetError as exc:
        raise TrainingError(str(exc)) from None
    train_labels = labels_all[split.train]
    objective = objective_for(data, task, split.train)
    if objective.regression:
        balanced = split.train
    else:
        balance_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
        balanced = split.train[
            balance_classes(train_labels, cfg.balance, balance_rng, data.class_names)
        ]
    shuffle_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    labels_all = training_labels(labels_all, balanced, cfg.shuffle_labels, shuffle_rng)
    mean, std = channel_statistics(data.images[split.train])
    _log_split(split, train_labels, len(balanced), cfg.exclude_colocated, device, data)
    if world is not None:
        log.info("DistributedDataParallel over %d ranks: batches of %d per rank, %d per step",
                 world.size, cfg.batch_size, world.size * cfg.batch_size)  # fmt: skip
    started = time.perf_counter()
    n_outputs = 1 if objective.regression else len(data.class_names)
    cv = cross_validate(
        data.images[balanced], labels_all[balanced], mean, std, cfg,
        device=device, progress=progress, objective=objective, n_outputs=n_outputs, world=world,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    epochs = sum(f.epochs_run for f in cv.folds)
    log.info("trained %d folds, %d epochs in %.1f s (%.2f s/epoch)", len(cv.folds), epochs,
             elapsed, elapsed / max(epochs, 1))  # fmt: skip

    names = data.metadata["trace_name"].astype(str).to_numpy()
    normalization = {"mean": mean.tolist(), "std": std.tolist()}
    traces = {
        "train_traces": names[split.train].tolist(),
        "test_traces": names[split.test].tolist(),
        "exclude_colocated": cfg.exclude_colocated,
    }
    if cfg.shuffle_labels:  # recorded only when on: the default outputs stay as they were
        traces["shuffle_labels"] = True
    # the task, recorded only for the other kinds: the study's checkpoint stays as it was
    task_keys: dict[str, Any] = {}
    if data.task_kind != "prepost":
        task_keys["task"] = {"kind": data.task_kind, "classes": list(data.class_names)}
    if objective.regression:
        task_keys["target_scale"] = {"mean": objective.target_mean, "std": objective.target_std}
    classes = list(data.class_names)
    model = _fold_checkpoint(cv.model_config, cv.best_fold, normalization,
                             {**traces, **task_keys}, classes)  # fmt: skip
    metrics = _run_metrics(split, len(balanced), cv, normalization, epochs)
    if cfg.shuffle_labels:
        metrics["shuffle_labels"] = True
    if world is not None:  # recorded only under torchrun: one process's outputs stay as they were
        metrics["world_size"] = world.size
    return TrainingRun(
        model=model,
        folds={
            f.fold: _fold_checkpoint(cv.model_config, f, normalization, task_keys, classes)
            for f in cv.folds
        },
        metrics=metrics,
        history=cv.history(),
        split=split,
    )


def _log_split(
    split: TrainTestSplit,
    train_labels: np.ndarray,
    n_balanced: int,
    exclude_colocated: bool,
    device: torch.device,
    data: SpectrogramSet,
) -> None:
    if data.is_regression:
        what = f"magnitude {train_labels.min():.2f} to {train_labels.max():.2f}"
    else:
        counts = np.bincount(train_labels, minlength=len(data.class_names))
        what = ", ".join(f"{n} {c}" for c, n in zip(data.class_names, counts, strict=True))
    log.info(
        "train split: %d traces (%s), %d trained on; test set: %d traces%s; device %s",
        len(split.train),
        what,
        n_balanced,
        len(split.test),
        f" ({split.n_colocated_moved} co-located moved from train)" * exclude_colocated,
        device,
    )


def _fold_checkpoint(
    config: ModelConfig,
    fold: FoldResult,
    normalization: dict[str, list[float]],
    extra: dict[str, Any],
    class_names: list[str],
) -> dict[str, Any]:
    """The self-describing checkpoint of one fold's best weights, with ``extra`` keys."""
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation draws numbers
        net = CNN2D(config)
    net.load_state_dict(fold.state_dict)
    info = {"fold": fold.fold, "best_epoch": fold.best_epoch, **extra}
    return checkpoint.make(net, class_names, normalization["mean"],
                           normalization["std"], extra=info)  # fmt: skip


def _run_metrics(
    split: TrainTestSplit,
    n_balanced: int,
    cv: CrossValidation,
    normalization: dict[str, list[float]],
    epochs: int,
) -> dict[str, Any]:
    """``reports/metrics/train.json``: the split's sizes, the chosen fold, every fold.

    The score is named for what it is: ``val_accuracy``, or ``val_mae`` (magnitude units)
    for a regression.
    """
    best = cv.best_fold
    name, report = cv.objective.score_name, cv.objective.report
    return {
        "n_train": len(split.train),
        "n_balanced": n_balanced,
        "n_test": len(split.test),
        "n_colocated_moved": int(split.n_colocated_moved),
        "chosen_fold": best.fold,
        f"best_{name}": report(best.best_val_score),
        "best_val_loss": best.best_val_loss,
        f"mean_{name}": float(np.mean([report(f.best_val_score) for f in cv.folds])),
        "epochs_run": int(epochs),
        # per channel (E, N, Z = R, G, B), as dicts so that `dvc metrics show` has columns
        "normalization": {
            stat: dict(zip(CHANNELS, values, strict=False))
            for stat, values in normalization.items()
        },
        "folds": {
            str(f.fold): {
                "best_epoch": f.best_epoch,
                f"best_{name}": report(f.best_val_score),
                "best_val_loss": f.best_val_loss,
                "epochs_run": f.epochs_run,
                "n_train": f.n_train,
                "n_val": f.n_val,
            }
            for f in cv.folds
        },
    }
