"""One trace at a time: the ``shap`` parameters, the model as shap sees it, and the explainer.

:func:`parse_masker` and :func:`check_config` validate the ``shap`` parameters before any
work; :func:`to_masker_image` and :class:`PixelModel` put an image into, and the model
behind, the 8-bit world of shap's ``Image`` masker; :class:`TraceExplainer` turns one
:class:`ExplainJob` into its maps (``docs/method.md`` §5). The package docstring of
:mod:`quakeshap.explain` describes the method.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quakeshap import masking
from quakeshap.artifacts import checkpoint
from quakeshap.config import ConfigError, ShapConfig
from quakeshap.explain.faithfulness import (
    Faithfulness,
    deletion_insertion,
    randomisation_cascade,
    rank_correlation,
    with_randomisation,
)
from quakeshap.model import cnn_of, model_from_checkpoint, resolve_device
from quakeshap.record import PIXEL_LEVELS

#: Monte Carlo samples per trace of the gradient explainer (shap's default)
GRADIENT_SAMPLES = 200
#: the smallest ``max_evals`` that splits the image at all (see :func:`check_max_evals`)
MIN_PARTITION_EVALS = 4
#: explainers that attribute relative to background images drawn from the train split
BACKGROUND_EXPLAINERS = ("deep", "gradient")
#: explainers that use ``shap.masker``: partition fills its coalitions with it, integrated
#: gradients starts its path from its fill of the whole image
MASKER_EXPLAINERS = ("partition", "integrated_gradients")
#: steps of integrated gradients' path integral (Captum's default, Gauss–Legendre)
IG_STEPS = 50
#: spawn key of the random removal orders' stream, under each trace's seed
RANDOM_ORDERS_STREAM = 1


class ExplainError(ValueError):
    """The inputs or parameters of the explanation are unusable; the message says why."""


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------


def parse_masker(spec: str | float) -> str | float:
    """Validate ``shap.masker`` and return what ``shap.maskers.Image`` takes.

    :func:`quakeshap.masking.parse_masker` (the same specifications as
    ``spectrogram.window_fill``), failing with an :class:`ExplainError`.
    """
    try:
        return masking.parse_masker(spec, "shap.masker")
    except ConfigError as exc:
        raise ExplainError(str(exc)) from None


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
    check_faithfulness(cfg, image_shape)
    resolve_device(cfg.device)


def cascade_max_evals(cfg: ShapConfig) -> int:
    """The partition budget of the randomisation cascade's maps, at most ``shap.max_evals``."""
    wanted = cfg.faithfulness.randomisation_max_evals
    return cfg.max_evals if wanted is None else min(wanted, cfg.max_evals)


def check_faithfulness(cfg: ShapConfig, image_shape: tuple[int, ...] = (33, 96, 3)) -> None:
    """The ``shap.faithfulness`` checks that need the image shape (``(H, W, 3)``)."""
    fc = cfg.faithfulness
    if not fc.enabled:
        return
    n_cells = int(image_shape[0]) * int(image_shape[1])
    if fc.n_steps > n_cells:
        raise ExplainError(
            f"parameter shap.faithfulness.n_steps: {fc.n_steps} is more steps than the "
            f"image's {n_cells} (frequency, time) cells"
        )
    if cfg.explainer == "partition" and fc.randomisation_per_class > 0:
        evals = cascade_max_evals(cfg)
        if evals < MIN_PARTITION_EVALS:
            raise ExplainError(
                f"parameter shap.faithfulness.randomisation_max_evals: {evals} is below the "
                f"partition explainer's minimum of {MIN_PARTITION_EVALS}"
            )


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


def masker_fill(spec: str | float, image_u8: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The fill of ``shap.maskers.Image(spec)`` on one image, as a function of a keep-mask.

    ``image_u8`` is :func:`to_masker_image`'s ``(H, W, 3)`` uint8 image; the function takes
    ``(H, W)`` booleans (True = the pixel stays, all three channels) and returns the
    ``(H, W, 3)`` uint8 image shap's masker makes of it: the very masker the partition
    explainer fills its coalitions with (inpainting from the kept pixels; a fully hidden
    image becomes its mean colour). A fresh masker serves each image (shap caches a blur by
    the image's identity).
    """
    import shap

    masker = shap.maskers.Image(spec, image_u8.shape)
    image_u8 = np.ascontiguousarray(image_u8)

    def fill(keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return image_u8.copy()
        mask = np.repeat(keep[:, :, None], image_u8.shape[2], axis=2).ravel()
        return np.asarray(masker(mask, image_u8)[0]).reshape(image_u8.shape)

    return fill


def from_masker_image(image_u8: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Undo :func:`to_masker_image`: ``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 pixel values,
    with :class:`PixelModel`'s arithmetic."""
    pixels = np.asarray(image_u8, dtype=np.float32) / np.float32(PIXEL_LEVELS)
    span = hi - lo if hi > lo else 1.0
    if span != 1.0 or lo != 0.0:
        pixels = pixels * np.float32(span) + np.float32(lo)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


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
    #: also explain it under the model-randomisation cascade (shap.faithfulness)
    randomise: bool = False


@dataclass(frozen=True)
class JobResult:
    """The maps of one :class:`ExplainJob`, in logits."""

    trace_name: str
    classes: tuple[int, ...]
    values: np.ndarray  # (n_classes, 33, 96, 3) float32
    base_values: np.ndarray  # (n_classes,) float64
    logits: np.ndarray  # (n_outputs,) float64: f(x), every class
    #: the maps' faithfulness numbers (one row per class), None when not computed
    faithfulness: Faithfulness | None = None


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
        self.ckpt = ckpt
        self.background = background
        self.masker_spec = parse_masker(cfg.masker)
        # the model shap evaluates thousands of times per trace: batch norm folded into the
        # convolutions, channels_last layout (see PixelModel)
        model = fuse_batch_norm(model_from_checkpoint(ckpt))
        self.model = model.to(device, memory_format=torch.channels_last)
        self.pixel_model = PixelModel(self.model, device)
        self._gradient_explainer: Any = None
        self._background_logits: np.ndarray | None = None
        self._cascade: tuple[TraceExplainer | None, list[tuple[str, TraceExplainer]]] | None
        self._cascade = None
        if cfg.explainer == "integrated_gradients":
            # the unfused model on [0, 1] pixels: the path runs through the pixels themselves
            self.ig_model = model_from_checkpoint(ckpt).to(device)
        elif cfg.explainer in BACKGROUND_EXPLAINERS:
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
        """The maps of one trace: ``(len(job.classes), 33, 96, 3)`` float32, in logits, and
        with ``shap.faithfulness.enabled`` their faithfulness numbers."""
        if self.cfg.explainer == "partition":
            result = self._explain_partition(job)
        elif self.cfg.explainer == "integrated_gradients":
            result = self._explain_integrated_gradients(job)
        else:
            result = self._explain_gradient(job)
        if self.cfg.faithfulness.enabled:
            result = dataclasses.replace(result, faithfulness=self.score_faithfulness(job, result))
        return result

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

    def _explain_integrated_gradients(self, job: ExplainJob) -> JobResult:
        """Integrated gradients (Captum) from the masker's fill of the whole image.

        The baseline is the image the partition explainer calls fully masked (for
        inpainting: the image's mean colour), so the values sum, up to the path integral's
        error, to ``f(x) − f(baseline)``: the partition maps' base value and scale.
        """
        from captum.attr import IntegratedGradients

        image_u8, lo, hi = to_masker_image(job.image)
        hidden = masker_fill(self.masker_spec, image_u8)(np.zeros(image_u8.shape[:2], bool))
        n = len(job.classes)
        x = torch.from_numpy(np.ascontiguousarray(job.image[None], dtype=np.float32))
        baseline = torch.from_numpy(from_masker_image(hidden, lo, hi)[None])
        x, baseline = x.to(self.device), baseline.to(self.device)
        attributions = IntegratedGradients(self.ig_model).attribute(
            x.repeat(n, 1, 1, 1),
            baselines=baseline.repeat(n, 1, 1, 1),
            target=list(job.classes),
            n_steps=IG_STEPS,
            internal_batch_size=max(self.cfg.batch_size, n),
        )
        values = attributions.detach().cpu().numpy().transpose(0, 2, 3, 1)
        with torch.inference_mode():
            logits = self.ig_model(x).double().cpu().numpy()[0]
            base = self.ig_model(baseline).double().cpu().numpy()[0][list(job.classes)]
        if not np.isfinite(logits).all() or not np.isfinite(values).all():
            raise ExplainError(
                f"trace {job.trace_name}: the model returned NaN or infinite values; "
                f"check the checkpoint ({checkpoint.PATH}) and the trace's spectrogram"
            )
        return JobResult(job.trace_name, job.classes, values.astype(np.float32), base, logits)

    def score_faithfulness(self, job: ExplainJob, result: JobResult) -> Faithfulness:
        """Deletion/insertion areas of the job's maps with the configured masker's fill,
        scored by the model as shap sees it, and the randomisation cascade if the job asks.

        The random orders come from the trace's own seed; shap's global random state is
        not touched, so the maps of this and later traces do not depend on this step.
        """
        fc = self.cfg.faithfulness
        image_u8, lo, hi = to_masker_image(job.image)
        self.pixel_model.set_image(job.trace_name, lo, hi)
        stream = np.random.SeedSequence(job.seed, spawn_key=(RANDOM_ORDERS_STREAM,))
        scores = deletion_insertion(
            result.values,
            result.classes,
            masker_fill(self.masker_spec, image_u8),
            self.pixel_model,
            fc.n_steps,
            fc.random_orders,
            fc.rank_by,
            np.random.default_rng(stream),
            self.cfg.batch_size,
        )
        if not job.randomise:
            return scores
        reference_explainer, steps = self._cascade_explainers()
        reference = result.values
        if reference_explainer is not None:  # the cascade runs on a smaller partition budget
            reference = reference_explainer.explain(job).values
        rho = [
            [rank_correlation(a, b) for a, b in zip(reference, e.explain(job).values, strict=True)]
            for _, e in steps
        ]
        return with_randomisation(scores, [name for name, _ in steps], np.asarray(rho).T)

    def _cascade_explainers(self) -> tuple[TraceExplainer | None, list[tuple[str, TraceExplainer]]]:
        """Built once per process: one explainer per step of the cascade (seeded with
        ``shap.seed``, so every trace meets the same randomised models), and the trained
        model's explainer at the cascade's budget when it differs from ``shap.max_evals``."""
        if self._cascade is None:
            cfg = dataclasses.replace(
                self.cfg,
                max_evals=cascade_max_evals(self.cfg),
                faithfulness=dataclasses.replace(self.cfg.faithfulness, enabled=False),
            )
            generator = torch.Generator().manual_seed(self.cfg.seed)
            # the CNN's own weights (a regression's Unscale comes back with the checkpoint)
            net = cnn_of(model_from_checkpoint(self.ckpt, normalized_input=True))
            steps = []
            for name, model in randomisation_cascade(net, generator):
                randomised = {**self.ckpt, "state_dict": model.state_dict()}
                steps.append((name, TraceExplainer(randomised, cfg, self.device, self.background)))
            reference = None
            if self.cfg.explainer == "partition" and cfg.max_evals != self.cfg.max_evals:
                reference = TraceExplainer(self.ckpt, cfg, self.device, self.background)
            self._cascade = (reference, steps)
        return self._cascade
