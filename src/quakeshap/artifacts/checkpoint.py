"""``models/model.pt`` and ``models/folds/fold_<k>.pt``: self-describing checkpoints.

A checkpoint is a ``dict`` that the stages after training rebuild the model from, alone
(:func:`quakeshap.model.model_from_checkpoint`):

``state_dict``
    The CNN2D's weights, on the CPU.
``model_config``
    :class:`quakeshap.model.ModelConfig` as a dict.
``class_names``
    Class names by output index (``["pre", "post"]``).
``normalization``
    ``{"mean": [3], "std": [3]}``: per-channel mean and std of the train split's pixel
    values in [0, 1].

The ``train`` stage adds what it knows of the run (the fold, its best epoch, the traces it
was trained and tested on: ``train_traces``, ``test_traces``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from quakeshap.artifacts import ArtifactError
from quakeshap.files import atomic_dir, atomic_path

#: the chosen model
PATH = Path("models/model.pt")
#: one checkpoint per fold, ``fold_<k>.pt``
FOLDS_DIR = Path("models/folds")
KEYS = ("state_dict", "model_config", "class_names", "normalization")


class CheckpointError(ArtifactError):
    """A checkpoint is unreadable or does not fit the data it is used on."""


def fold_file(k: int) -> str:
    """File name of fold ``k``'s checkpoint in :data:`FOLDS_DIR`."""
    return f"fold_{k}.pt"


def make(
    model: torch.nn.Module,
    class_names: list[str],
    mean: list[float],
    std: list[float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The self-describing checkpoint dict (weights on the CPU, plain Python metadata).

    ``model`` is a :class:`quakeshap.model.CNN2D` (its ``config`` is saved with it).
    """
    ckpt = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_config": asdict(model.config),
        "class_names": list(class_names),
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
    }
    if extra:
        ckpt.update(extra)
    return ckpt


def save(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint atomically."""
    # through a file object: given a path, torch names the archive's inner folder after the
    # (random) temporary file name, and the bytes would differ from one save to the next
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(ckpt, fh)


def save_folds(folds: dict[int, dict[str, Any]], folder: str | Path = FOLDS_DIR) -> None:
    """Write every fold's checkpoint into ``folder``, all together or none."""
    with atomic_dir(folder) as tmp:
        for k, ckpt in folds.items():
            save(ckpt, tmp / fold_file(k))


def load(path: str | Path = PATH) -> dict[str, Any]:
    """Read a checkpoint (weights only: no code runs on load) and check its keys."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint; run `dvc repro train`") from None
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(
            f"{path}: not a readable quakeshap checkpoint ({exc}); re-run `dvc repro train`"
        ) from exc
    missing = [k for k in KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks {missing}; it was not written by quakeshap: "
            "re-run `dvc repro train`"
        )
    return ckpt
