"""One trace at a time: the ``shap`` parameters, the model as shap sees it, and the explainer.

:func:`parse_masker` and :func:`check_config` validate the ``shap`` parameters before any
work; :func:`to_masker_image` and :class:`PixelModel` put an image into, and the model
behind, the 8-bit world of shap's ``Image`` masker; :class:`TraceExplainer` turns one
:class:`ExplainJob` into its maps (``docs/method.md`` §5). The package docstring of
:mod:`quakeshap.explain` describes the method.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quakeshap.artifacts import checkpoint
from quakeshap.config import ShapConfig
from quakeshap.model import model_from_checkpoint, resolve_device
from quakeshap.record import PIXEL_LEVELS

#: Monte Carlo samples per trace of the gradient explainer (shap's default)
GRADIENT_SAMPLES = 200
#: the smallest ``max_evals`` that splits the image at all (see :func:`check_max_evals`)
MIN_PARTITION_EVALS = 4


class ExplainError(ValueError):
    """The inputs or parameters of the explanation are unusable; the message says why."""


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------

_BLUR = re.compile(r"^blur\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def parse_masker(spec: str | float) -> str | float:
    """Validate ``shap.masker`` and return what ``shap.maskers.Image`` takes.

    Parameters
    ----------
    spec
        ``"inpaint_telea"`` (the study), ``"inpaint_ns"``, ``"blur(kx,ky)"`` (OpenCV box
        blur with a kernel of ``kx × ky`` pixels, both > 0) or a number: masked features
        are set to that constant, in the masker's 0..255 units (the images are 8-bit there,
        so the constant is truncated to an integer).

    Returns
    -------
    The canonical masker string (``"blur(5,5)"``), or the constant as a float.
    """
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        value = float(spec)
    else:
        text = str(spec).strip()
        if text in ("inpaint_telea", "inpaint_ns"):
            return text
        match = _BLUR.match(text)
        if match:
            kx, ky = int(match.group(1)), int(match.group(2))
            if kx < 1 or ky < 1:
                raise ExplainError(f"parameter shap.masker: blur kernel {text!r} must be >= 1")
            return f"blur({kx},{ky})"
        try:
            value = float(text)
        except ValueError:
            raise ExplainError(
                f"parameter shap.masker: {spec!r} is not a masker; use inpaint_telea, "
                f"inpaint_ns, blur(k,k) with integer k, or a number in 0..{PIXEL_LEVELS}"
            ) from None
    if not (math.isfinite(value) and 0 <= value <= PIXEL_LEVELS):
        raise ExplainError(
            f"parameter shap.masker: constant {value!r} is outside the masker's "
            f"0..{PIXEL_LEVELS} range"
        )
    return value


def check_max_evals(max_evals: int, image_shape: tuple[int, ...]) -> None:
    """Fail before any work when ``max_evals`` is below what the partition explainer needs.

    shap's ``PartitionExplainer`` evaluates the fully masked and the unmasked image, then
    gives its Owen recursion the remaining ``max_evals − 2`` evaluations, two per split of
    the image's partition tree. With ``max_evals <= 2`` nothing is split and ``f(x) − base``
    is spread evenly over every feature of the ``image_shape`` map: a map that explains
    nothing. :data:`MIN_PARTITION_EVALS` = 4 pays for the first split (shap rounds a budget
    of 3 up to the same 4 evaluations).
    """
    n_features = int(np.prod(image_shape))
    if max_evals < MIN_PARTITION_EVALS:
        raise ExplainError(
            f"parameter shap.max_evals: {max_evals} is below the partition explainer's "
            f"minimum of {MIN_PARTITION_EVALS} for an image of {n_features} features "
            f"{tuple(image_shape)}; the study used 5000"
        )


def check_config(cfg: ShapConfig, image_shape: tuple[int, ...] = (33, 96, 3)) -> None:
    """Every ``shap`` parameter check that needs no data: run it before any work.

    ``image_shape`` is the masker's ``(H, W, 3)`` layout of the images.
    """
    parse_masker(cfg.masker)
    if cfg.explainer == "partition":
        check_max_evals(cfg.max_evals, image_shape)
    resolve_device(cfg.device)


# --------------------------------------------------------------------------------------
# the model as shap sees it
# --------------------------------------------------------------------------------------


def to_masker_image(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Lay out one image for the masker: ``(3, H, W)`` in [0, 1] → ``(H, W, 3)`` uint8.

    Returns the 8-bit image, min–max scaled to ``0..PIXEL_LEVELS``, and the minimum and
    maximum of ``image`` that :class:`PixelModel` needs to undo the scaling. A constant
    image maps to zeros.
    """
    hwc = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    lo, hi = float(hwc.min()), float(hwc.max())
    span = hi - lo if hi > lo else 1.0
    scaled = np.rint((hwc.astype(np.float64) - lo) / span * float(PIXEL_LEVELS))
    return scaled.clip(0, PIXEL_LEVELS).astype(np.uint8), lo, hi


class PixelModel:
    """The function shap evaluates: 8-bit ``(b, H, W, 3)`` images → logits ``(b, 2)``.

    ``offset`` and ``span`` (the minimum and the range of the image being explained)
    undo :func:`to_masker_image`: ``x = u / 255 · span + offset``, the pixel values in [0, 1]
    the model was trained on (for ``uint8`` spectrograms exactly ``k / 255``, as in
    training). A NaN or infinite logit is an :class:`ExplainError`.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.offset = 0.0
        self.span = 1.0
        self.trace_name = "?"

    def set_image(self, trace_name: str, lo: float, hi: float) -> None:
        """The image about to be explained: its name (for messages), minimum and maximum."""
        self.trace_name = trace_name
        self.offset = lo
        self.span = hi - lo if hi > lo else 1.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.asarray(batch, dtype=np.float32) / np.float32(PIXEL_LEVELS)
        if self.span != 1.0 or self.offset != 0.0:
            pixels = pixels * np.float32(self.span) + np.float32(self.offset)
        # (b, H, W, 3) → (b, 3, H, W) as a view: exactly torch's channels_last layout, which
        # the CPU convolutions run ~1.5x faster on than the default layout
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
        with torch.inference_mode():
            logits = self.model(tensor.to(self.device)).double().cpu().numpy()
        if not np.isfinite(logits).all():
            raise ExplainError(
                f"trace {self.trace_name}: the model returned NaN or infinite logits; "
                f"check the checkpoint ({checkpoint.PATH}) and the trace's spectrogram"
            )
        return logits


def fuse_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` into that convolution.

    The function computed is the same (up to float rounding, ~1e-7 in the logits); the
    partition explainer evaluates the model thousands of times per trace and the folded
    model is ~20% faster on the CPU. The model must be in eval mode; it is changed in place.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = torch.nn.Identity()
    return model


# --------------------------------------------------------------------------------------
# one trace
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainJob:
    """One trace to explain for one or both classes."""

    trace_name: str
    image: np.ndarray  # (3, 33, 96) float32, pixel values in [0, 1]
    classes: tuple[int, ...]  # class indices, ascending
    seed: int


@dataclass(frozen=True)
class JobResult:
    """The maps of one :class:`ExplainJob`, in logits."""

    trace_name: str
    classes: tuple[int, ...]
    values: np.ndarray  # (n_classes, 33, 96, 3) float32
    base_values: np.ndarray  # (n_classes,) float64
    logits: np.ndarray  # (n_outputs,) float64: f(x), every class


@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global RandomState (shap draws from it) and restore it afterwards.

    shap's partition queue and gradient explainer call ``np.random`` directly, so the
    legacy global state is the only handle on their randomness.
    """
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One torch thread and one OpenCV thread (what every worker uses), restored after."""
    import cv2

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


class TraceExplainer:
    """Explains one trace at a time with the configured shap explainer.

    Built once per process (the model, and the background of the gradient-based
    explainers); the partition explainer and its masker are rebuilt for every trace, so
    that no state (shap caches its base value and blurred image between calls) leaks from
    one trace into the next.
    """

    def __init__(
        self,
        ckpt: dict[str, Any],
        cfg: ShapConfig,
        device: torch.device,
        background: np.ndarray | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.masker_spec = parse_masker(cfg.masker)
        # the model shap evaluates thousands of times per trace: batch norm folded into the
        # convolutions, channels_last layout (see PixelModel)
        model = fuse_batch_norm(model_from_checkpoint(ckpt))
        self.model = model.to(device, memory_format=torch.channels_last)
        self.pixel_model = PixelModel(self.model, device)
        self._gradient_explainer: Any = None
        self._background_logits: np.ndarray | None = None
        if cfg.explainer != "partition":
            if background is None or len(background) == 0:
                raise ExplainError(
                    f"shap.explainer {cfg.explainer!r} needs background images from the "
                    "train split, and none were given"
                )
            self._init_gradient_explainer(ckpt, background)

    def _init_gradient_explainer(self, ckpt: dict[str, Any], background: np.ndarray) -> None:
        import shap

        # the bare CNN on normalised input: attributions grad·(x − b) equal those w.r.t. the
        # [0, 1] pixels because the normalisation is affine per channel (package docstring)
        self.net = model_from_checkpoint(ckpt, normalized_input=True).to(self.device)
        self.normalize = model_from_checkpoint(ckpt)[0].to(self.device)
        with torch.inference_mode():
            bg = self.normalize(torch.from_numpy(background).to(self.device))
            self._background_logits = self.net(bg).double().cpu().numpy()
        bg = bg.clone()
        if self.cfg.explainer == "deep":
            self._gradient_explainer = shap.DeepExplainer(self.net, bg)
        else:
            self._gradient_explainer = shap.GradientExplainer(
                self.net, bg, batch_size=self.cfg.batch_size
            )

    def explain(self, job: ExplainJob) -> JobResult:
        """The maps of one trace: ``(len(job.classes), 33, 96, 3)`` float32, in logits."""
        if self.cfg.explainer == "partition":
            return self._explain_partition(job)
        return self._explain_gradient(job)

    def _explain_partition(self, job: ExplainJob) -> JobResult:
        import shap

        image_u8, lo, hi = to_masker_image(job.image)
        self.pixel_model.set_image(job.trace_name, lo, hi)
        masker = shap.maskers.Image(self.masker_spec, image_u8.shape)
        explainer = shap.Explainer(self.pixel_model, masker)
        with _numpy_global_seed(job.seed):
            explanation = explainer(
                image_u8[None],
                max_evals=self.cfg.max_evals,
                batch_size=self.cfg.batch_size,
                outputs=np.asarray(job.classes),
                silent=True,
            )
        # (1, H, W, 3, n_classes) → (n_classes, H, W, 3)
        values = np.moveaxis(np.asarray(explanation.values)[0], -1, 0)
        base = np.asarray(explanation.base_values, dtype=np.float64).reshape(-1)
        # f(x) evaluated independently of shap: the additivity check is not circular
        logits = self.pixel_model(image_u8[None])[0]
        return JobResult(job.trace_name, job.classes, values.astype(np.float32), base, logits)

    def _explain_gradient(self, job: ExplainJob) -> JobResult:
        x = self.normalize(torch.from_numpy(job.image[None]).to(self.device))
        if self.cfg.explainer == "deep":
            with _numpy_global_seed(job.seed):
                raw = self._gradient_explainer.shap_values(x, check_additivity=False)
        else:
            with _numpy_global_seed(job.seed):
                raw = self._gradient_explainer.shap_values(
                    x, nsamples=GRADIENT_SAMPLES, rseed=job.seed
                )
        # (1, 3, H, W, n_outputs) → (n_outputs, H, W, 3)
        values = np.asarray(raw)[0].transpose(3, 1, 2, 0)[list(job.classes)]
        with torch.inference_mode():
            logits = self.net(x).double().cpu().numpy()[0]
        if not np.isfinite(logits).all() or not np.isfinite(values).all():
            raise ExplainError(
                f"trace {job.trace_name}: the model returned NaN or infinite values; "
                f"check the checkpoint ({checkpoint.PATH}) and the trace's spectrogram"
            )
        assert self._background_logits is not None
        base = self._background_logits.mean(axis=0)[list(job.classes)]
        return JobResult(job.trace_name, job.classes, values.astype(np.float32), base, logits)
