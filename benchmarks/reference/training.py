"""The study's training data path (docs/method.md §3): a PNG decoded and a DataFrame row
looked up for every sample, in ``Dataset.__getitem__``, batched by a ``DataLoader``.

The model, loss and optimiser are the same as quakeshap's (the study's CNN2D, cross-entropy,
Adam); only the way batches reach the model differs, which is what the training benchmark
measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import image as mpimg
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from quakeshap.record import CLASS_NAMES


def write_study_pngs(
    images: np.ndarray, trace_names: Sequence[str], folder: str | Path
) -> list[str]:
    """Write ``(n, 3, H, W)`` uint8 images as the study's RGBA PNG files; return the file names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    filenames = []
    for image, name in zip(images, trace_names, strict=True):
        filename = f"{name}.png"
        mpimg.imsave(folder / filename, np.ascontiguousarray(image.transpose(1, 2, 0)))
        filenames.append(filename)
    return filenames


class StudyPNGDataset(Dataset):
    """One sample = one PNG decoded from disk plus its row of the metadata table.

    Parameters
    ----------
    metadata
        Needs ``filename`` and ``label`` (``pre``/``post``) columns.
    png_dir
        Folder of the PNG files.
    mean, std
        Per-channel normalisation of pixel values in [0, 1] (the train split's statistics).
    """

    def __init__(
        self,
        metadata: pd.DataFrame,
        png_dir: str | Path,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.metadata = metadata.reset_index(drop=True)
        self.png_dir = Path(png_dir)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.class_index = {name: i for i, name in enumerate(CLASS_NAMES)}

    def __len__(self) -> int:
        return len(self.metadata)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.metadata.iloc[index]
        rgb = np.array(Image.open(self.png_dir / row["filename"]).convert("RGB"), copy=True)
        pixels = torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        return (pixels - self.mean) / self.std, self.class_index[row["label"]]


def study_loader(
    dataset: StudyPNGDataset,
    batch_size: int = 32,
    order: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """The study's ``DataLoader``: shuffled batches, or batches in a given sample ``order``."""
    if order is not None:
        # the loader still draws a base seed per pass: from ``generator``, not the global RNG
        generator = generator if generator is not None else torch.Generator()
        return DataLoader(dataset, batch_size=batch_size, sampler=list(order), generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
) -> list[float]:
    """One training pass; returns the loss of every batch.

    With a :func:`study_loader` as ``batches`` this is the study's epoch; with a list of
    batches already in memory it is the floor: the model's pure compute for the same batches.
    """
    criterion = nn.CrossEntropyLoss()
    device = next(model.parameters()).device
    model.train()
    losses = []
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``batches`` (the study's validation pass)."""
    device = next(model.parameters()).device
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in batches:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
    return loss_sum / count, correct / count
