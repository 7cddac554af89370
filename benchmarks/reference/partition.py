"""The study's SHAP step (docs/method.md §5): PartitionExplainer, one trace at a time, one process.

Every image (the study's PNG values, laid out ``(33, 96, 3)``) is min–max scaled to uint8
0..255 for shap's ``Image`` masker (``inpaint_telea``); the model function undoes that
scaling, normalises as in training and returns the two logits. ``shap.Explainer(f,
masker)`` picks the PartitionExplainer; it is called on one image at a time with
``max_evals=5000`` and ``batch_size=50``, explaining the top predicted class, or both
classes for the traces the selection marks ``explain_both``. torch runs with its default
thread count, as in the study's notebook.

Two details the study's text leaves open are fixed the way quakeshap fixes them, so that
the values can be compared exactly (neither changes the cost): the model function returns
float64 logits, and shap's partition queue, which breaks ties with ``np.random``, can be
given a per-trace seed of numpy's global state (``seeds``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shap
import torch
from torch import nn

from quakeshap.record import CLASS_NAMES, to_unit


@dataclass(frozen=True)
class StudyExplanation:
    """One trace's explanation: ``values`` ``(33, 96, 3, k)`` for the ``k`` explained classes."""

    values: np.ndarray
    base_values: np.ndarray  # (k,) logits of the fully masked image
    classes: np.ndarray  # (k,) class indices, in the order of the last axis of values


def to_masker_scale(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min–max scale a ``(33, 96, 3)`` image in [0, 1] to uint8 0..255 for the masker.

    Returns the 8-bit image and the ``(lo, hi)`` that undo it. For the study's images
    (min 0 and max 1 by construction) this is ``255 x`` exactly.
    """
    lo, hi = float(image.min()), float(image.max())
    span = hi - lo if hi > lo else 1.0
    scaled = np.rint((image.astype(np.float64) - lo) / span * 255.0)
    return scaled.clip(0, 255).astype(np.uint8), lo, hi


def study_model_function(
    model: nn.Module, lo: float = 0.0, hi: float = 1.0
) -> Callable[[np.ndarray], np.ndarray]:
    """The function the study gave shap: 8-bit ``(b, 33, 96, 3)`` → logits ``(b, 2)``.

    ``model`` takes pixel values in [0, 1], channels first, and normalises them itself (as
    :func:`quakeshap.model.model_from_checkpoint` builds it).
    """
    span = hi - lo if hi > lo else 1.0

    def f(batch: np.ndarray) -> np.ndarray:
        pixels = np.asarray(batch, dtype=np.float32) / np.float32(255.0)
        pixels = pixels * np.float32(span) + np.float32(lo)
        with torch.no_grad():
            logits = model(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
        return logits.numpy().astype(np.float64)

    return f


def explain_study_way(
    model: nn.Module,
    images: np.ndarray,
    explain_both: Sequence[bool] | None = None,
    max_evals: int = 5000,
    batch_size: int = 50,
    masker: str = "inpaint_telea",
    seeds: Sequence[int] | None = None,
) -> list[StudyExplanation]:
    """Explain ``images`` one at a time, in this process, the study's way.

    Parameters
    ----------
    model
        Eval-mode module taking ``(b, 3, 33, 96)`` pixel values in [0, 1].
    images
        ``(n, 3, 33, 96)`` pixel values in [0, 1] (float) or the study's uint8 PNG values.
    explain_both
        Per image: True = explain both classes, False = the top predicted class only.
    seeds
        Per image: seed numpy's global state with it first (None = leave it as it is).
    """
    if images.dtype == np.uint8:
        images = to_unit(images)
    both = [False] * len(images) if explain_both is None else list(explain_both)
    per_image_seed = [None] * len(images) if seeds is None else list(seeds)
    saved_state = np.random.get_state()  # noqa: NPY002
    out = []
    for image, explain_all, seed in zip(images, both, per_image_seed, strict=True):
        scaled, lo, hi = to_masker_scale(image.transpose(1, 2, 0))
        f = study_model_function(model, lo, hi)
        explainer = shap.Explainer(
            f, shap.maskers.Image(masker, scaled.shape), output_names=list(CLASS_NAMES)
        )
        if explain_all:
            outputs, classes = np.arange(len(CLASS_NAMES)), np.arange(len(CLASS_NAMES))
        else:  # the top predicted class, as the study asked for it
            outputs = shap.Explanation.argsort.flip[:1]
            classes = np.array([int(np.argmax(f(scaled[None])[0]))])
        if seed is not None:
            np.random.seed(seed)  # noqa: NPY002  (shap draws from the global state)
        explanation = explainer(
            scaled[None], max_evals=max_evals, batch_size=batch_size, outputs=outputs, silent=True
        )
        out.append(
            StudyExplanation(
                values=np.asarray(explanation.values[0]),
                base_values=np.atleast_1d(np.asarray(explanation.base_values[0])),
                classes=classes,
            )
        )
    if seeds is not None:
        np.random.set_state(saved_state)  # noqa: NPY002
    return out
