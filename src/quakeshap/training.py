"""Cross-validated training of the study's CNN2D (SPEC §3).

The recipe, each step a parameter of ``train`` in ``params.yaml``:

1. **Split.** The train split of ``metadata.csv`` (``split == "train"``) is trained on, the
   test split is held out. With ``exclude_colocated`` (the study's co-located control) every
   trace of a co-located group (``associato != 0``) leaves the train split and joins the
   test split. The study reported this variant as "3434 train / 1265 test": 3434 is the size
   of the *balanced* train set, 1265 the test split plus the moved traces.
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
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from quakeshap.artifacts.metrics import HISTORY_COLUMNS
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import TrainConfig
from quakeshap.model import CNN2D, ModelConfig, resolve_device
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """The data cannot be trained on as configured (an empty class, a one-class fold, ...)."""


# --------------------------------------------------------------------------------------
# split, normalisation, balance, folds: pure functions over arrays
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainTestSplit:
    """Row indices (into the spectrogram set) of the traces trained on and tested on.

    ``n_colocated_moved`` counts train-split traces moved to the test set by
    ``exclude_colocated``.
    """

    train: np.ndarray  # (n_train,) int64, ascending
    test: np.ndarray  # (n_test,) int64, ascending
    n_colocated_moved: int = 0


def train_test_split(metadata: pd.DataFrame, exclude_colocated: bool) -> TrainTestSplit:
    """The effective train and test rows of ``metadata`` (columns ``split``, ``associato``).

    Parameters
    ----------
    metadata
        ``metadata.csv`` of the spectrogram set, one row per image.
    exclude_colocated
        False: the ``split`` column as it is. True: the study's co-located control, every
        trace with ``associato != 0`` goes to the test set.
    """
    split = metadata["split"].to_numpy()
    unknown = sorted(set(split) - {"train", "test"})
    if unknown:
        raise TrainingError(
            f"metadata column 'split' holds {unknown}; expected only 'train' and 'test'"
        )
    is_train = split == "train"
    moved = 0
    if exclude_colocated:
        colocated = metadata["associato"].to_numpy() != 0
        moved = int(np.count_nonzero(is_train & colocated))
        is_train = is_train & ~colocated
    return TrainTestSplit(
        train=np.flatnonzero(is_train).astype(np.int64),
        test=np.flatnonzero(~is_train).astype(np.int64),
        n_colocated_moved=moved,
    )


def channel_statistics(images: np.ndarray, chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation of pixel values in [0, 1].

    Parameters
    ----------
    images
        ``(n, channels, height, width)``: ``uint8`` holding ``floor(255 x)`` (then the
        statistics are those of ``k / 255``) or float in [0, 1].
    chunk_size
        Images per chunk: bounds the float64 working memory.

    Returns
    -------
    mean, std
        ``(channels,)`` float64 each. Accumulated in float64 in a fixed order, so the
        result does not depend on the chunk size beyond rounding in the last digits.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise TrainingError(f"need a non-empty (n, c, h, w) image array, got {images.shape}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    n_values = images.shape[0] * images.shape[2] * images.shape[3]
    total = np.zeros(images.shape[1])
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].astype(np.float64) / scale
        total += chunk.sum(axis=(0, 2, 3))
    mean = total / n_values
    squares = np.zeros(images.shape[1])
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].astype(np.float64) / scale
        squares += ((chunk - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / n_values)
    if np.any(std == 0):
        raise TrainingError(
            f"a channel of the train images is constant (std {std.tolist()}): cannot normalise"
        )
    return mean, std


def balance_classes(labels: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """Indices (into ``labels``) of a class-balanced subset, ascending.

    Parameters
    ----------
    labels
        ``(n,)`` class indices (positions in :data:`~quakeshap.dataset.CLASS_NAMES`).
    how
        ``"undersample"``: every class is cut at random to the size of the smallest one
        (the study). ``"none"``: all indices.
    rng
        Source of the random choice.
    """
    n_classes = len(CLASS_NAMES)
    counts = np.bincount(labels, minlength=n_classes)
    empty = [CLASS_NAMES[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise TrainingError(
            f"the train split has no '{', '.join(empty)}' traces (class counts "
            f"{counts.tolist()}); check the split and train.exclude_colocated"
        )
    if how == "none":
        return np.arange(len(labels), dtype=np.int64)
    if how != "undersample":
        raise TrainingError(f"unknown train.balance {how!r}: expected 'undersample' or 'none'")
    n_keep = int(counts.min())
    keep = [
        rng.choice(np.flatnonzero(labels == c), size=n_keep, replace=False)
        for c in range(n_classes)
    ]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def kfold_indices(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Validation indices of each fold: a seeded shuffle cut into ``n_folds`` parts.

    The parts are disjoint and together cover ``0 .. n - 1`` (sizes differ by at most
    one); each is sorted. A fold whose validation part or training remainder holds a single
    class is a :class:`TrainingError`: its accuracy would say nothing.

    Parameters
    ----------
    labels
        ``(n,)`` class indices of the (balanced) training set.
    """
    n = len(labels)
    if n_folds < 2:
        raise TrainingError(f"train.n_folds = {n_folds}: cross-validation needs >= 2 folds")
    if n < 2 * n_folds:
        raise TrainingError(
            f"{n} training images cannot make {n_folds} folds of at least two images each; "
            "lower train.n_folds or use more data"
        )
    order = rng.permutation(n)
    folds = [np.sort(part).astype(np.int64) for part in np.array_split(order, n_folds)]
    n_classes = len(np.unique(labels))
    for k, val in enumerate(folds, start=1):
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        for what, part in (("validation", labels[val]), ("training", labels[mask])):
            if len(np.unique(part)) < n_classes:
                raise TrainingError(
                    f"fold {k}/{n_folds}: its {what} part holds a single class "
                    f"({len(part)} images, all '{CLASS_NAMES[int(part[0])]}'); use fewer "
                    "folds (train.n_folds) or more data"
                )
    return folds


class EarlyStopping:
    """Stop when validation accuracy has not improved for ``patience`` epochs.

    Only a strictly higher accuracy counts as an improvement, so the earliest of equally
    good epochs is kept.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0

    def update(self, epoch: int, accuracy: float) -> bool:
        """Record one epoch's accuracy; True when it is the best so far."""
        if self.best is None or accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch
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
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    n_train: int
    n_val: int
    history: list[dict[str, float]]  # one row per epoch: fold, epoch, losses, accuracy


def choose_best_fold(folds: Sequence[FoldResult]) -> int:
    """Position in ``folds`` of the model: highest best validation accuracy, then lowest
    validation loss at that epoch, then lowest fold number."""
    if not folds:
        raise TrainingError("no fold was trained")
    ranked = sorted(
        range(len(folds)),
        key=lambda i: (-folds[i].best_val_accuracy, folds[i].best_val_loss, folds[i].fold),
    )
    return ranked[0]


# --------------------------------------------------------------------------------------
# device, precision, determinism
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast on or off, its dtype, and whether losses are
    scaled (float16 needs a GradScaler, bfloat16 does not)."""

    autocast: bool
    dtype: torch.dtype | None
    grad_scaler: bool


def choose_precision(
    device: torch.device, mixed_precision: bool, bf16_supported: bool | None = None
) -> Precision:
    """Mixed precision on CUDA only: bfloat16 where the GPU has it, else float16 with
    loss scaling. On the CPU training stays in float32 (autocast there is slower on most
    CPUs and changes the numbers)."""
    if device.type != "cuda" or not mixed_precision:
        return Precision(autocast=False, dtype=None, grad_scaler=False)
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    if bf16_supported:
        return Precision(autocast=True, dtype=torch.bfloat16, grad_scaler=False)
    return Precision(autocast=True, dtype=torch.float16, grad_scaler=True)


@contextlib.contextmanager
def deterministic_torch(seed: int, device: torch.device, num_threads: int | None) -> Iterator[None]:
    """Seed torch and make its kernels deterministic inside the block, then restore.

    The global RNG state is forked (``torch.random.fork_rng``) so that training leaves the
    caller's random state as it found it. On CUDA, cuDNN autotuning is off and
    deterministic kernels are requested (cuBLAS additionally needs
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment, which the train stage sets).
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.manual_seed(seed)
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            if num_threads is not None:
                torch.set_num_threads(num_threads)
            yield
        finally:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
            torch.backends.cudnn.deterministic = saved[2]
            torch.backends.cudnn.benchmark = saved[3]
            torch.set_num_threads(saved[4])


def fold_seed(seed: int, fold: int) -> int:
    """An independent seed per fold, so that a fold's weights do not depend on the others."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1, dtype=np.uint64)[0] >> 1)


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
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on rows ``index`` of ``x``/``y``.

    In batches of the training's size, as the study validated: on a CPU they stay in cache
    (batches of 512 made the validation pass twice as slow, ``benchmarks/bench_training``).
    """
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.inference_mode():
        for start in range(0, len(index), batch_size):
            idx = index[start : start + batch_size]
            with torch.autocast(x.device.type, dtype=precision.dtype, enabled=precision.autocast):
                logits = model(x[idx].contiguous(memory_format=torch.channels_last))
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y[idx], reduction="sum").double()
            correct += (logits.argmax(dim=1) == y[idx]).sum()
    n = len(index)
    return float(loss_sum) / n, int(correct) / n


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
) -> FoldResult:
    """Train one fold from scratch and keep its best epoch.

    Parameters
    ----------
    x
        ``(n, 3, H, W)`` float32 normalised images, already on the training device.
    y
        ``(n,)`` int64 class indices on the same device.
    train_index, val_index
        Rows of ``x`` to train and to validate on.
    cfg
        ``lr``, ``batch_size``, ``max_epochs``, ``patience``, ``dropout``,
        ``mixed_precision`` and ``seed`` are used.
    fold, n_folds
        1-based fold number (it selects the fold's seed) and the fold count (for messages).
    progress
        Draw tqdm bars (one per fold, one per epoch).

    Notes
    -----
    Seeds torch's global generator (weight initialisation, dropout) from ``cfg.seed`` and
    ``fold``: call it inside :func:`deterministic_torch`, as :func:`cross_validate` does,
    to keep the caller's random state and get deterministic kernels.
    """
    device = x.device
    precision = choose_precision(device, cfg.mixed_precision)
    seed = fold_seed(cfg.seed, fold)
    torch.manual_seed(seed)  # model initialisation and dropout masks
    batch_generator = torch.Generator(device="cpu").manual_seed(seed)

    config = ModelConfig(
        in_channels=x.shape[1], height=x.shape[2], width=x.shape[3], dropout=cfg.dropout
    )
    # channels_last: the convolutions' fast layout on CPUs (17% faster epochs measured
    # here) and GPUs; the function is the same, the last bits of the sums may differ
    model = CNN2D(config).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaler)
    loss_fn = nn.CrossEntropyLoss()

    train_t = torch.as_tensor(train_index, dtype=torch.int64)
    val_t = torch.as_tensor(val_index, dtype=torch.int64, device=device)
    stopper = EarlyStopping(cfg.patience)
    best_state: dict[str, torch.Tensor] = {}
    best_loss = float("nan")
    history: list[dict[str, float]] = []
    n_batches = -(-len(train_index) // cfg.batch_size)

    bar = tqdm(
        total=cfg.max_epochs, desc=f"fold {fold}/{n_folds}", unit="epoch", disable=not progress
    )
    with bar:
        for epoch in range(1, cfg.max_epochs + 1):
            started = time.perf_counter()
            model.train()
            order = train_t[torch.randperm(len(train_t), generator=batch_generator)].to(device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for start in tqdm(
                range(0, len(order), cfg.batch_size),
                total=n_batches,
                desc=f"epoch {epoch}",
                unit="batch",
                leave=False,
                disable=not progress,
            ):
                idx = order[start : start + cfg.batch_size]
                batch = x[idx].contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.autocast):
                    loss = loss_fn(model(batch), y[idx])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach().double() * len(idx)
            train_loss = float(loss_sum) / len(order)
            val_loss, val_accuracy = _evaluate_batches(
                model, x, y, val_t, precision, cfg.batch_size
            )
            history.append(
                {
                    "fold": fold,
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                }
            )
            if stopper.update(epoch, val_accuracy):
                best_loss = val_loss
                best_state = {  # a copy, in the usual (contiguous) layout
                    k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                    for k, v in model.state_dict().items()
                }
            log.debug(
                "fold %d epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f (%.1f s)",
                fold, epoch, train_loss, val_loss, val_accuracy, time.perf_counter() - started,
            )  # fmt: skip
            bar.set_postfix(val_acc=f"{val_accuracy:.4f}", best=f"{stopper.best:.4f}")
            bar.update()
            if stopper.should_stop:
                break
    assert stopper.best is not None and stopper.best_epoch is not None
    log.info(
        "fold %d/%d: best epoch %d of %d, val accuracy %.4f, val loss %.4f",
        fold, n_folds, stopper.best_epoch, len(history), stopper.best, best_loss,
    )  # fmt: skip
    return FoldResult(
        fold=fold,
        state_dict=best_state,
        best_epoch=stopper.best_epoch,
        best_val_accuracy=stopper.best,
        best_val_loss=best_loss,
        epochs_run=len(history),
        n_train=len(train_index),
        n_val=len(val_index),
        history=history,
    )


@dataclass(frozen=True)
class CrossValidation:
    """All folds and the chosen one (``best`` is a position in ``folds``)."""

    folds: list[FoldResult]
    best: int
    model_config: ModelConfig

    @property
    def best_fold(self) -> FoldResult:
        return self.folds[self.best]

    def history(self) -> pd.DataFrame:
        """One row per (fold, epoch): fold, epoch, train_loss, val_loss, val_accuracy."""
        rows = [row for fold in self.folds for row in fold.history]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).astype(
            {"fold": "int64", "epoch": "int64"}
        )


def cross_validate(
    images: np.ndarray,
    labels: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    progress: bool = False,
) -> CrossValidation:
    """K-fold cross-validation of CNN2D on an (already balanced) training set.

    Parameters
    ----------
    images
        ``(n, 3, H, W)``, ``uint8`` (``floor(255 x)``) or float in [0, 1].
    labels
        ``(n,)`` class indices (0 = pre, 1 = post).
    mean, std
        ``(3,)`` per-channel normalisation of the [0, 1] pixel values.
    cfg
        The ``train`` parameters.
    device
        Where to train; None = resolve ``cfg.device``.
    progress
        Draw progress bars.
    """
    if len(images) != len(labels):
        raise TrainingError(f"{len(images)} images but {len(labels)} labels")
    device = resolve_device(cfg.device) if device is None else device
    folds_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    folds = kfold_indices(labels, cfg.n_folds, folds_rng)
    with deterministic_torch(cfg.seed, device, cfg.num_threads):
        x = _to_normalised_tensor(images, mean, std, device)
        y = torch.as_tensor(labels, dtype=torch.int64).to(device)
        results = []
        everything = np.arange(len(labels))
        for k, val in enumerate(folds, start=1):
            train = np.setdiff1d(everything, val, assume_unique=True)
            results.append(
                train_fold(x, y, train, val, cfg, fold=k, n_folds=cfg.n_folds, progress=progress)
            )
    best = choose_best_fold(results)
    config = ModelConfig(
        in_channels=images.shape[1], height=images.shape[2], width=images.shape[3],
        dropout=cfg.dropout,
    )  # fmt: skip
    log.info(
        "chosen: fold %d (val accuracy %.4f)", results[best].fold, results[best].best_val_accuracy
    )
    return CrossValidation(folds=results, best=best, model_config=config)


def _to_normalised_tensor(
    images: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device
) -> torch.Tensor:
    """``(images in [0, 1] - mean) / std`` as one float32 tensor on ``device``.

    Converted in chunks on the CPU (pinned memory for a fast copy to a GPU) so that a
    float64 copy of the whole set never exists.
    """
    pin = device.type == "cuda"
    out = torch.empty(images.shape, dtype=torch.float32, pin_memory=pin)
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(1.0)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    for start in range(0, len(images), 1024):
        chunk = images[start : start + 1024].astype(np.float32) / scale
        out[start : start + 1024] = torch.from_numpy((chunk - m) / s)
    return out.to(device, non_blocking=pin)


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


def train_model(
    data: SpectrogramSet,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    progress: bool = False,
) -> TrainingRun:
    """Run the study's training recipe (module docstring) on a spectrogram set.

    The checkpoint of the chosen fold also records the traces trained and tested on
    (``train_traces``, ``test_traces``): the evaluate stage tests on exactly that test set,
    which differs from the ``split`` column under ``exclude_colocated``.
    """
    device = resolve_device(cfg.device) if device is None else device
    split = train_test_split(data.metadata, cfg.exclude_colocated)
    if len(split.test) == 0:
        log.warning("the test set is empty: the evaluate stage will have nothing to score")
    if len(split.train) == 0:
        raise TrainingError("the train split is empty; check metadata.csv's 'split' column")
    unknown = sorted(set(data.metadata["label"].astype(str)) - set(CLASS_NAMES))
    if unknown:
        raise TrainingError(
            f"metadata column 'label' holds {unknown[:5]}; expected only {list(CLASS_NAMES)}"
        )
    labels_all = data.labels()
    train_labels = labels_all[split.train]
    balance_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    balanced = split.train[balance_classes(train_labels, cfg.balance, balance_rng)]
    train_images = data.images[split.train]
    mean, std = channel_statistics(train_images)
    counts = np.bincount(train_labels, minlength=len(CLASS_NAMES))
    log.info(
        "train split: %d traces (%s), %d balanced; test set: %d traces%s; device %s",
        len(split.train),
        ", ".join(f"{n} {c}" for c, n in zip(CLASS_NAMES, counts, strict=True)),
        len(balanced),
        len(split.test),
        f" ({split.n_colocated_moved} co-located moved from train)" * cfg.exclude_colocated,
        device,
    )
    started = time.perf_counter()
    cv = cross_validate(
        data.images[balanced], labels_all[balanced], mean, std, cfg,
        device=device, progress=progress,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    epochs = sum(f.epochs_run for f in cv.folds)
    log.info("trained %d folds, %d epochs in %.1f s (%.2f s/epoch)", len(cv.folds), epochs,
             elapsed, elapsed / max(epochs, 1))  # fmt: skip

    names = data.metadata["trace_name"].astype(str).to_numpy()
    normalization = {"mean": mean.tolist(), "std": std.tolist()}

    def fold_checkpoint(fold: FoldResult, extra: dict[str, Any]) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation draws numbers
            net = CNN2D(cv.model_config)
        net.load_state_dict(fold.state_dict)
        info = {"fold": fold.fold, "best_epoch": fold.best_epoch, **extra}
        return checkpoint.make(net, list(CLASS_NAMES), normalization["mean"],
                               normalization["std"], extra=info)  # fmt: skip

    best = cv.best_fold
    model = fold_checkpoint(
        best,
        {
            "train_traces": names[split.train].tolist(),
            "test_traces": names[split.test].tolist(),
            "exclude_colocated": cfg.exclude_colocated,
        },
    )
    metrics = {
        "n_train": len(split.train),
        "n_balanced": len(balanced),
        "n_test": len(split.test),
        "n_colocated_moved": int(split.n_colocated_moved),
        "chosen_fold": best.fold,
        "best_val_accuracy": best.best_val_accuracy,
        "best_val_loss": best.best_val_loss,
        "mean_val_accuracy": float(np.mean([f.best_val_accuracy for f in cv.folds])),
        "epochs_run": int(epochs),
        # per channel (E, N, Z = R, G, B), as dicts so that `dvc metrics show` has columns
        "normalization": {
            stat: dict(zip(("E", "N", "Z"), values, strict=False))
            for stat, values in normalization.items()
        },
        "folds": {
            str(f.fold): {
                "best_epoch": f.best_epoch,
                "best_val_accuracy": f.best_val_accuracy,
                "best_val_loss": f.best_val_loss,
                "epochs_run": f.epochs_run,
                "n_train": f.n_train,
                "n_val": f.n_val,
            }
            for f in cv.folds
        },
    }
    return TrainingRun(
        model=model,
        folds={f.fold: fold_checkpoint(f, {}) for f in cv.folds},
        metrics=metrics,
        history=cv.history(),
        split=split,
    )
