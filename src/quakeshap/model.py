"""The study's CNN2D, rebuilt from its checkpoint.

Architecture (``docs/method.md`` §3), for an input of shape ``(n, 3, 33, 96)``::

    conv3x3(3→32, pad 1) → BN → maxpool 2 → ReLU      (32, 16, 48)
    conv3x3(32→64, pad 1) → BN → maxpool 2 → ReLU     (64, 8, 24)
    conv3x3(64→128, pad 1) → BN → ReLU                (128, 8, 24)
    flatten (24576) → dropout → linear 24576→128 → ReLU → dropout → linear 128→2

3,239,810 parameters. Every layer is its own module (no ReLU or pooling module is
reused), so explainers that hook modules (shap's DeepExplainer, captum's DeepLift) see one
module per use; the function computed is the study's.

The checkpoint format (weights, model configuration, class names, normalisation) is
:mod:`quakeshap.artifacts.checkpoint`'s; :func:`model_from_checkpoint` rebuilds the model
from it alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from quakeshap.artifacts.checkpoint import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """What it takes to rebuild :class:`CNN2D`."""

    in_channels: int = 3
    height: int = 33
    width: int = 96
    n_classes: int = 2
    dropout: float = 0.1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.height, self.width)


class CNN2D(nn.Module):
    """The study's spectrogram classifier; takes normalised images, returns logits."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        c = self.config
        self.features = nn.Sequential(
            nn.Conv2d(c.in_channels, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.BatchNorm2d(64),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
        )
        flat = 128 * (c.height // 4) * (c.width // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(c.dropout),
            nn.Linear(flat, 128),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(128, c.n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` for images ``(n, 3, H, W)`` with pixel values in [0, 1]."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Unscale(nn.Module):
    """``y * std + mean``: a regression head's standardised output back in target units."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float32))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


class DeviceError(RuntimeError):
    """The requested compute device is not available on this machine."""


def resolve_device(device: str) -> torch.device:
    """Turn a ``device`` parameter (``auto`` | ``cuda`` | ``cpu``) into a :class:`torch.device`.

    ``auto`` picks CUDA when a GPU is visible, else the CPU; ``cuda`` without a visible GPU
    is a :class:`DeviceError` rather than a silent fall-back to a much slower run.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "device 'cuda' was requested but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "set the device parameter to 'auto' or 'cpu', or install a CUDA build of torch"
            )
        return torch.device("cuda")
    if device == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {device!r}: expected 'auto', 'cuda' or 'cpu'")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def checkpoint_task(ckpt: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The task a checkpoint was trained for: its kind and its outputs' names."""
    return str(ckpt.get("task", {}).get("kind", "prepost")), tuple(ckpt["class_names"])


def check_task(ckpt: dict[str, Any], kind: str, class_names: tuple[str, ...]) -> None:
    """A :class:`CheckpointError` in one line when the checkpoint was trained for another
    task (``task.kind``, or other classes) than the data it is handed."""
    trained = checkpoint_task(ckpt)
    if trained != (kind, tuple(class_names)):
        raise CheckpointError(
            f"the model was trained for task {trained[0]} (outputs {list(trained[1])}) but the "
            f"spectrogram set is for task {kind} (outputs {list(class_names)}): retrain "
            "(`dvc repro train`) after changing task parameters"
        )


def cnn_of(model: nn.Module) -> CNN2D:
    """The :class:`CNN2D` inside a model rebuilt by :func:`model_from_checkpoint` (itself,
    or the one that a normalisation or a regression's :class:`Unscale` wraps)."""
    if isinstance(model, CNN2D):
        return model
    for module in model.modules():
        if isinstance(module, CNN2D):
            return module
    raise TypeError(f"{type(model).__name__} holds no CNN2D")


def model_from_checkpoint(
    ckpt: dict[str, Any],
    input_shape: tuple[int, int, int] | None = None,
    normalized_input: bool = False,
    task: tuple[str, tuple[str, ...]] | None = None,
) -> nn.Module:
    """Rebuild the model in eval mode.

    Parameters
    ----------
    ckpt
        As returned by :func:`quakeshap.artifacts.checkpoint.load`.
    input_shape
        ``(channels, height, width)`` of the images it will see; a mismatch with the
        checkpoint's ``model_config`` is a :class:`CheckpointError`.
    normalized_input
        False (default): the returned module takes pixel values in [0, 1] and applies the
        checkpoint's normalisation first. True: the bare :class:`CNN2D`.
    task
        ``(kind, output names)`` of the data it will see (:func:`check_task`).

    A regression checkpoint (``target_scale``) ends in :class:`Unscale`: the output is in
    magnitude units either way.
    """
    if task is not None:
        check_task(ckpt, *task)
    config = ModelConfig(**ckpt["model_config"])
    if input_shape is not None and tuple(input_shape) != config.input_shape:
        raise CheckpointError(
            f"the model was trained on images of shape {config.input_shape} but the "
            f"spectrograms have shape {tuple(input_shape)}: retrain (`dvc repro train`) "
            "after changing spectrogram parameters"
        )
    net: nn.Module = CNN2D(config)
    net.load_state_dict(ckpt["state_dict"])
    if "target_scale" in ckpt:
        scale = ckpt["target_scale"]
        net = nn.Sequential(net, Unscale(scale["mean"], scale["std"]))
    if normalized_input:
        return net.eval()
    norm = ckpt["normalization"]
    return nn.Sequential(Normalize(norm["mean"], norm["std"]), net).eval()
