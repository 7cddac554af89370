"""SHAP maps of the selected traces, in parallel, additivity checked (``docs/method.md`` §5).

The study's method (the default, ``shap.explainer: partition``)
---------------------------------------------------------------
Each image ``x`` (``(3, 33, 96)``, pixel values in [0, 1] as the model saw them) is laid out
as ``(33, 96, 3)`` (frequency, time, E/N/Z = R/G/B) and min–max scaled *per image* to
``uint8`` 0..255, because shap's ``Image`` masker inpaints with OpenCV, which works on 8-bit
images::

    u = rint(255 · (x − min x) / (max x − min x))

The model function handed to shap undoes that scaling with the minimum and maximum of the
image being explained, ``x = u / 255 · (max x − min x) + min x``, applies the training
normalisation and returns the two logits, as the study describes (``docs/method.md`` §5; its
spectrograms, read back from 8-bit PNGs, span 0..1, so the scaling is ``u = 255 x``). With the
default ``uint8``
spectrograms (values ``k / 255``) the round trip is exact; with ``float32`` spectrograms the
explained image is ``x`` rounded to 1/255 of its range, and ``f_x`` is the model on that image.

``shap.maskers.Image(masker, (33, 96, 3))`` with ``shap.Explainer`` gives a
``PartitionExplainer``; it spends ``max_evals`` model evaluations in batches of
``batch_size``. The values are Owen values in logits: for each explained class they sum to
``f(x) − f(fully masked x)``, and the ``base_value`` is the model on the fully masked image
(for inpainting: the image filled with its mean colour). A trace is explained for its
predicted class, or for both classes (in one shap call, as the study did) when its selection
row says ``explain_both`` (misclassified traces and examples). A trace that appears in
several selection groups is explained once.

Gradient-based alternatives (``deep``, ``gradient``)
----------------------------------------------------
``shap.DeepExplainer`` (DeepLIFT with a background set) and ``shap.GradientExplainer``
(expected gradients) take ``shap.background`` images drawn, seeded with ``shap.seed``, from
the traces the model was trained on (the checkpoint's ``train_traces``). They attribute the
logits to the *input pixels* relative to the background: the values sum to
``f(x) − E_background[f]``, so their ``base_value`` is the mean logit over the background,
not the model on the fully masked image, and their maps are not on the same scale as
partition maps (the reference differs; the unit, logits per pixel, is the same). They are
computed on the normalised input of the bare CNN; since the normalisation is an affine map
per channel, attributions ``grad · (x − b)`` are identical to those with respect to the
[0, 1] pixels. DeepLIFT is additive up to floating point; expected gradients are a Monte
Carlo estimate (``GRADIENT_SAMPLES`` samples per trace), so their additivity error is
recorded but does not fail the stage (only the partition explainer's does).

What the ground truth says
--------------------------
On demo data, whose classes differ only by high-frequency attenuation, DeepLIFT maps put
their ``|SHAP|`` mass in the generator's discriminative band (``tests/test_explain.py``),
while the study's ``inpaint_telea`` partition maps put much of theirs on the bright
low-frequency rows, where inpainting changes the image most, and not in that band: read
the study's maps as "what the model is sensitive to under inpainting", and compare with
``deep``.

Determinism and parallelism
---------------------------
shap breaks ties in its partition queue, and the gradient explainer draws its samples, from
numpy's *global* random state. Every trace is therefore explained under a seed derived from
``shap.seed`` and its trace name (the global state is restored afterwards), with one torch
and one OpenCV thread, and with a masker and explainer built for that trace alone. The result
of a trace does not depend on which process explains it or on what that process did before:
a parallel run gives exactly the values of a serial run. Workers are ``spawn``-ed processes;
each receives the checkpoint (and background) once, in its initializer.

Speed
-----
At the study's settings a trace costs about 5000 inpaintings and 5000 forward passes. On a
CPU about 58% of the time goes to ``cv2.inpaint``, a quarter to the model and the rest to
shap's bookkeeping, all single-threaded: throughput comes from explaining traces in
``shap.workers`` processes (``auto`` = one per core), each with the model on the GPU when
``shap.device`` resolves to CUDA. The model shap evaluates has its batch norms folded into
the convolutions and runs in the channels-last layout (together ~2x faster on the CPU, the
same function up to float rounding); ``f_x`` and the base values come from that same model.

Aggregates
----------
``align_on_s`` cuts the study's S-aligned window, ``class_means`` and ``weekly_means``
average maps, ``band_fractions`` and ``window_fractions`` measure where the ``|SHAP|`` mass
lies; :func:`summarize` turns them into the stage's metrics.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import multiprocessing
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from quakeshap import record
from quakeshap.artifacts.selection import SELECTION_COLUMNS, WEEK_GROUP
from quakeshap.artifacts.shap_set import INDEX_COLUMNS, ShapSet, class_mean_mask, in_group
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import ShapConfig, resolve_workers
from quakeshap.model import model_from_checkpoint, resolve_device
from quakeshap.record import (
    CLASS_NAMES,
    P_ARRIVAL_S,
    S_WINDOW_BEFORE_S,
    STUDY_IMAGE_DURATION_S,
    s_window_columns,
)

log = logging.getLogger(__name__)

#: frequency bands (Hz) of the band metrics; the last band includes its upper edge
BANDS_HZ: tuple[tuple[float, float], ...] = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50))
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
                "inpaint_ns, blur(k,k) with integer k, or a number in 0..255"
            ) from None
    if not (math.isfinite(value) and 0 <= value <= 255):
        raise ExplainError(
            f"parameter shap.masker: constant {value!r} is outside the masker's 0..255 range"
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
    """Every ``shap`` parameter check that needs no data: run it before any work."""
    parse_masker(cfg.masker)
    if cfg.explainer == "partition":
        check_max_evals(cfg.max_evals, image_shape)
    resolve_device(cfg.device)


def trace_seed(seed: int, trace_name: str) -> int:
    """A 32-bit seed for one trace, from ``shap.seed`` and the trace name (order-free)."""
    state = np.random.SeedSequence([seed, zlib.crc32(trace_name.encode("utf-8"))])
    return int(state.generate_state(1, dtype=np.uint32)[0])


# --------------------------------------------------------------------------------------
# the model as shap sees it
# --------------------------------------------------------------------------------------


def to_masker_image(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Lay out one image for the masker: ``(3, H, W)`` in [0, 1] → ``(H, W, 3)`` uint8.

    Returns the 8-bit image and the minimum and maximum of ``image`` that
    :class:`PixelModel` needs to undo the scaling. A constant image maps to zeros.
    """
    hwc = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    lo, hi = float(hwc.min()), float(hwc.max())
    span = hi - lo if hi > lo else 1.0
    scaled = np.rint((hwc.astype(np.float64) - lo) / span * 255.0)
    return scaled.clip(0, 255).astype(np.uint8), lo, hi


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
        self.trace_name = trace_name
        self.offset = lo
        self.span = hi - lo if hi > lo else 1.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.asarray(batch, dtype=np.float32) / np.float32(255.0)
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
                "check the checkpoint (models/model.pt) and the trace's spectrogram"
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
        # [0, 1] pixels because the normalisation is affine per channel (module docstring)
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
                "check the checkpoint (models/model.pt) and the trace's spectrogram"
            )
        assert self._background_logits is not None
        base = self._background_logits.mean(axis=0)[list(job.classes)]
        return JobResult(job.trace_name, job.classes, values.astype(np.float32), base, logits)


# --------------------------------------------------------------------------------------
# many traces, in worker processes
# --------------------------------------------------------------------------------------

_WORKER: TraceExplainer | None = None


def _checkpoint_bytes(ckpt: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def _worker_init(
    ckpt_bytes: bytes, cfg: ShapConfig, device: str, background: np.ndarray | None
) -> None:
    """Build the process's :class:`TraceExplainer` once (spawned worker initializer)."""
    global _WORKER
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ckpt = torch.load(io.BytesIO(ckpt_bytes), map_location="cpu", weights_only=True)
    _WORKER = TraceExplainer(ckpt, cfg, torch.device(device), background)


def _worker_explain(job: ExplainJob) -> JobResult:
    assert _WORKER is not None, "worker used before its initializer ran"
    return _WORKER.explain(job)


def run_jobs(
    jobs: Sequence[ExplainJob],
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    background: np.ndarray | None = None,
    workers: int = 1,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[JobResult]:
    """Explain ``jobs``, in ``workers`` spawned processes or (``workers=1``) in this one.

    Both paths run the same per-trace computation with one torch/OpenCV thread, so they
    give identical values. Results come back in the order of ``jobs``; ``progress`` is
    called with the number of traces done and the total after each one.
    """
    device = device if device is not None else resolve_device(cfg.device)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        with single_threaded():
            explainer = TraceExplainer(ckpt, cfg, device, background)
            for i, job in enumerate(jobs):
                results.append(explainer.explain(job))
                if progress is not None:
                    progress(i + 1, len(jobs))
        return results

    workers = min(workers, len(jobs))
    # a few chunks per worker: little IPC, still balanced when trace costs differ
    chunksize = max(1, len(jobs) // (4 * workers))
    context = multiprocessing.get_context("spawn")
    initargs = (_checkpoint_bytes(ckpt), cfg, str(device), background)
    results = []
    with context.Pool(workers, initializer=_worker_init, initargs=initargs) as pool:
        for i, result in enumerate(pool.imap(_worker_explain, jobs, chunksize=chunksize)):
            results.append(result)
            if progress is not None:
                progress(i + 1, len(jobs))
    return results


# --------------------------------------------------------------------------------------
# the selection → jobs → maps
# --------------------------------------------------------------------------------------


def class_index(value: Any) -> int:
    """A class given as a name (``pre``/``post``) or an index → its index."""
    try:
        return record.class_index(value)
    except record.UnknownClassError as exc:
        raise ExplainError(str(exc)) from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", ""):
            return False
        raise ExplainError(f"selection column explain_both: {value!r} is not a boolean")
    return bool(value)


@dataclass(frozen=True)
class Plan:
    """What to explain: one job per trace, and one index row per (trace, class)."""

    jobs: list[ExplainJob]
    index: pd.DataFrame  # INDEX_COLUMNS without the value columns, row i = map i


def plan_jobs(selection: pd.DataFrame, sset: SpectrogramSet, seed: int) -> Plan:
    """Deduplicate the selection into one job per trace.

    A trace is explained for its predicted class, or for both classes when any of its
    selection rows says ``explain_both``. Traces keep the order of their first appearance
    in the selection; maps of a trace are ordered by class index.
    """
    absent = [c for c in SELECTION_COLUMNS if c not in selection.columns]
    if absent:
        raise ExplainError(
            f"data/selection.csv lacks column(s) {absent}; re-run `dvc repro select`"
        )
    if selection.empty:
        raise ExplainError("data/selection.csv selects no trace; nothing to explain")
    selection = selection.assign(trace_name=selection["trace_name"].astype(str))
    names = list(dict.fromkeys(selection["trace_name"]))
    rows = sset.rows(names)  # DatasetError naming the missing traces
    meta = sset.metadata.iloc[rows].set_index("trace_name")
    images = sset.as_float(rows)

    jobs, records = [], []
    for name, image in zip(names, images, strict=True):
        mine = selection[selection["trace_name"] == name]
        predicted = {class_index(v) for v in mine["predicted"]}
        if len(predicted) != 1:
            raise ExplainError(f"data/selection.csv gives trace {name} two predicted classes")
        pred = predicted.pop()
        both = any(_as_bool(v) for v in mine["explain_both"])
        classes = tuple(range(len(CLASS_NAMES))) if both else (pred,)
        jobs.append(ExplainJob(name, image, classes, trace_seed(seed, name)))
        groups = ";".join(dict.fromkeys(mine["group"].astype(str)))
        first = mine.iloc[0]
        for c in classes:
            records.append(
                {
                    "trace_name": name,
                    "class_index": c,
                    "class_name": CLASS_NAMES[c],
                    "groups": groups,
                    "label": first["label"],
                    "predicted": first["predicted"],
                    "week": int(meta.loc[name, "week"]),
                    "p_s_diff_sec": float(meta.loc[name, "p_s_diff_sec"]),
                }
            )
    return Plan(jobs, pd.DataFrame.from_records(records))


@dataclass(frozen=True)
class ShapMaps:
    """All maps of a run and their index (``data/shap/values.npy`` + ``index.csv``)."""

    values: np.ndarray  # (n_maps, 33, 96, 3) float32, logits
    index: pd.DataFrame  # INDEX_COLUMNS, row i describes values[i]
    seconds: float  # wall time of the explanation (not written to cached outputs)


def explain_selection(
    sset: SpectrogramSet,
    selection: pd.DataFrame,
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ShapMaps:
    """Explain every selected trace (``docs/method.md`` §5) and check additivity.

    Parameters
    ----------
    sset
        The spectrogram set the selection refers to.
    selection
        ``data/selection.csv``: one row per (trace, group).
    ckpt
        The trained model's checkpoint; a model for other image shapes is an error.
    cfg
        ``shap`` parameters.
    workers
        Worker processes; None = ``cfg.workers`` (``auto`` = all cores).
    progress
        Called with the number of traces done and the total after each trace.

    Raises
    ------
    ExplainError
        Bad parameters, NaN logits, or (partition explainer) an additivity error above
        ``cfg.additivity_tolerance``.
    """
    check_config(cfg, (sset.image_shape[1], sset.image_shape[2], sset.image_shape[0]))
    device = resolve_device(cfg.device)
    model_from_checkpoint(ckpt, input_shape=sset.image_shape)  # CheckpointError on mismatch
    plan = plan_jobs(selection, sset, cfg.seed)
    background = None
    if cfg.explainer != "partition":
        background = draw_background(sset, cfg.background, cfg.seed, ckpt.get("train_traces"))
    n_workers = resolve_workers(cfg.workers) if workers is None else workers
    n_workers = max(1, min(n_workers, len(plan.jobs)))
    log.info(
        "explaining %d trace(s) → %d map(s) with %s (max_evals %d, batch %d), %d worker(s) on %s",
        len(plan.jobs),
        len(plan.index),
        cfg.explainer,
        cfg.max_evals,
        cfg.batch_size,
        n_workers,
        device,
    )
    start = time.perf_counter()
    results = run_jobs(plan.jobs, ckpt, cfg, background, n_workers, device, progress)
    seconds = time.perf_counter() - start

    values = np.concatenate([r.values for r in results], axis=0)
    base = np.concatenate([r.base_values for r in results])
    f_x = np.concatenate([r.logits[list(r.classes)] for r in results])
    for result, job in zip(results, plan.jobs, strict=True):
        top = int(np.argmax(result.logits))
        pred = plan.index.loc[plan.index["trace_name"] == job.trace_name, "predicted"].iloc[0]
        if top != class_index(pred):
            log.warning(
                "trace %s: the model predicts %s but the selection says %s",
                job.trace_name,
                CLASS_NAMES[top],
                pred,
            )
    shap_sum = values.astype(np.float64).sum(axis=(1, 2, 3))
    error = np.abs(shap_sum - (f_x - base))
    index = plan.index.assign(base_value=base, f_x=f_x, shap_sum=shap_sum, additivity_error=error)
    worst = int(np.argmax(error))
    if cfg.explainer == "partition" and error[worst] > cfg.additivity_tolerance:
        raise ExplainError(
            f"additivity violated: |sum(SHAP) - (f(x) - base)| = {error[worst]:.3g} logits for "
            f"trace {index['trace_name'].iloc[worst]} (class {index['class_name'].iloc[worst]}) "
            f"exceeds shap.additivity_tolerance = {cfg.additivity_tolerance:g}"
        )
    return ShapMaps(values, index[list(INDEX_COLUMNS)], seconds)


def draw_background(
    sset: SpectrogramSet, n: int, seed: int, train_traces: Sequence[str] | None = None
) -> np.ndarray:
    """``n`` training images (seeded draw without replacement), ``(n, 3, 33, 96)`` float32.

    ``train_traces`` (the checkpoint's record of what the model was trained on) wins over
    the ``split`` column, which differs from it under ``train.exclude_colocated``.
    """
    if train_traces is not None:
        train = np.sort(sset.rows(list(train_traces)))
    else:
        train = np.flatnonzero(sset.metadata["split"].to_numpy() == "train")
    if len(train) == 0:
        raise ExplainError("no train-split spectrograms to draw the background images from")
    if n > len(train):
        log.warning("shap.background = %d but the train split has %d images", n, len(train))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(train, size=min(n, len(train)), replace=False))
    return sset.as_float(chosen)


# --------------------------------------------------------------------------------------
# aggregates (pure functions over maps (n, 33, 96, 3))
# --------------------------------------------------------------------------------------


def align_on_s(
    maps: np.ndarray,
    p_s_diff_sec: np.ndarray | Sequence[float],
    p_arrival_s: float = P_ARRIVAL_S,
    duration_s: float = STUDY_IMAGE_DURATION_S,
) -> np.ndarray:
    """Cut each map to the study's 8 s window with S at 4 s (``docs/method.md`` §5).

    Column ``j`` of the result is column ``start + j`` of the map, with
    ``start = int((S − 4 s) · n / duration_s)``, ``S = p_arrival_s + p_s_diff_sec`` and the
    width ``int(8 s · n / duration_s)`` (59 of 96 columns, as the study computed them).
    Where a window runs past either edge of the image (S later than ~9.7 s or earlier than
    4 s, which the real data never reach), the missing columns are NaN rather than shifted,
    so a column always means the same time relative to S; averages use ``nanmean``.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    p_s_diff_sec
        ``(n,)`` S − P times in s.

    Returns
    -------
    ``(n, n_freq, width, 3)`` float32.
    """
    maps = np.asarray(maps)
    p_s = np.asarray(p_s_diff_sec, dtype=np.float64).reshape(-1)
    if len(p_s) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(p_s)} P–S times")
    n_time = maps.shape[2]
    per_s, width = s_window_columns(n_time, duration_s)
    out = np.full((maps.shape[0], maps.shape[1], width, *maps.shape[3:]), np.nan, np.float32)
    for i, diff in enumerate(p_s):
        if not np.isfinite(diff):
            continue
        start = math.floor((p_arrival_s + diff - S_WINDOW_BEFORE_S) * per_s)
        lo, hi = max(start, 0), min(start + width, n_time)
        if hi > lo:
            out[i, :, lo - start : hi - start] = maps[i, :, lo:hi]
    return out


def _band_masks(axis: np.ndarray, edges: Sequence[tuple[float, float]]) -> np.ndarray:
    """``(n_bands, len(axis))`` booleans: ``lo <= v < hi``, the last band closed at ``hi``."""
    masks = []
    for k, (lo, hi) in enumerate(edges):
        upper = axis <= hi if k == len(edges) - 1 else axis < hi
        masks.append((axis >= lo) & upper)
    return np.asarray(masks)


def band_fractions(
    maps: np.ndarray,
    frequency_hz: np.ndarray,
    bands: Sequence[tuple[float, float]] = BANDS_HZ,
) -> np.ndarray:
    """Fraction of each map's ``|SHAP|`` mass in each frequency band.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    frequency_hz
        ``(n_freq,)`` row frequencies.
    bands
        ``(lo, hi)`` in Hz; a row belongs to a band when ``lo <= f < hi`` (the last band
        also takes ``f == hi``, so 0–50 Hz covers every row).

    Returns
    -------
    ``(n, n_bands)``; rows sum to 1 when the bands cover every frequency (NaN for an
    all-zero map).
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=(2, 3))  # (n, n_freq)
    masks = _band_masks(np.asarray(frequency_hz, dtype=np.float64), bands)
    per_band = mass @ masks.T.astype(np.float64)
    total = mass.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return per_band / total


def band_share(
    frequency_hz: np.ndarray, bands: Sequence[tuple[float, float]] = BANDS_HZ
) -> np.ndarray:
    """Each band's share of the image rows: the fraction a uniform map would give."""
    masks = _band_masks(np.asarray(frequency_hz, dtype=np.float64), bands)
    return masks.sum(axis=1) / len(frequency_hz)


WINDOWS = ("before_p", "p_to_s", "after_s")


def window_fractions(
    maps: np.ndarray,
    time_s: np.ndarray,
    s_times: np.ndarray | Sequence[float],
    p_times: np.ndarray | Sequence[float] | float = P_ARRIVAL_S,
) -> np.ndarray:
    """Fraction of each map's ``|SHAP|`` mass before P, between P and S, and after S.

    Parameters
    ----------
    maps
        ``(n, n_freq, n_time, 3)``.
    time_s
        ``(n_time,)`` column times (window centres, s from the trace start).
    s_times
        ``(n,)`` S arrival of each trace, s from the trace start.
    p_times
        P arrival(s), s; default 5 s for every trace.

    Returns
    -------
    ``(n, 3)``: ``t < P``, ``P <= t < S``, ``t >= S``; rows sum to 1.
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64)).sum(axis=(1, 3))  # (n, n_time)
    t = np.asarray(time_s, dtype=np.float64)[None, :]
    s = np.asarray(s_times, dtype=np.float64).reshape(-1, 1)
    p = np.broadcast_to(np.asarray(p_times, dtype=np.float64).reshape(-1, 1), s.shape)
    before = (mass * (t < p)).sum(axis=1)
    between = (mass * ((t >= p) & (t < s))).sum(axis=1)
    after = (mass * (t >= s)).sum(axis=1)
    parts = np.stack([before, between, after], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return parts / parts.sum(axis=1, keepdims=True)


def class_means(maps: np.ndarray, index: pd.DataFrame, n_classes: int = 2) -> np.ndarray:
    """Per-class mean of the maps :func:`~quakeshap.artifacts.shap_set.class_mean_mask` admits.

    ``maps`` may be the full maps or their S-aligned cuts; NaN columns (S windows past the
    image) are ignored. A class without maps gets an all-NaN mean.

    Returns
    -------
    ``(n_classes, *maps.shape[1:])`` float32.
    """
    out = np.full((n_classes, *maps.shape[1:]), np.nan, dtype=np.float32)
    for c in range(n_classes):
        chosen = maps[class_mean_mask(index, c)]
        if len(chosen):
            with np.errstate(invalid="ignore"), _quiet_nanmean():
                out[c] = np.nanmean(chosen.astype(np.float64), axis=0)
        else:
            log.warning(
                "no correctly classified %s trace explained: its mean map is NaN", CLASS_NAMES[c]
            )
    return out


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        yield


def weekly_means(maps: np.ndarray, index: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Mean map per ISO week over the ``week`` group, each trace's predicted-class map.

    Returns
    -------
    ``(n_weeks, *maps.shape[1:])`` float32 and a table ``week, n_maps`` (weeks ascending).
    """
    pred = index["predicted"].map(class_index).to_numpy()
    chosen = in_group(index, WEEK_GROUP) & (index["class_index"].to_numpy() == pred)
    weeks = np.sort(index.loc[chosen, "week"].unique())
    means = np.zeros((len(weeks), *maps.shape[1:]), dtype=np.float32)
    counts = []
    for k, week in enumerate(weeks):
        rows = chosen & (index["week"].to_numpy() == week)
        means[k] = maps[rows].astype(np.float64).mean(axis=0)
        counts.append(int(rows.sum()))
    return means, pd.DataFrame({"week": weeks.astype(int), "n_maps": counts})


def _band_key(lo: float, hi: float) -> str:
    return f"{lo:g}_{hi:g}hz"


def image_timing(axes: dict[str, Any]) -> tuple[float, float]:
    """``(duration_s, p_arrival_s)`` of the images from ``axes.json``.

    The duration is the waveform window the spectrogram covers (``n_samples`` /
    ``sampling_rate_hz``: 13 s in the study), the base of the study's seconds → columns
    conversion; both fall back to the study's values when ``axes.json`` lacks them.
    """
    duration = STUDY_IMAGE_DURATION_S
    if "n_samples" in axes and "sampling_rate_hz" in axes:
        duration = float(axes["n_samples"]) / float(axes["sampling_rate_hz"])
    return duration, float(axes.get("p_arrival_s", P_ARRIVAL_S))


def summarize(
    shap_maps: ShapMaps,
    frequency_hz: np.ndarray,
    time_s: np.ndarray,
    cfg: ShapConfig,
    duration_s: float = STUDY_IMAGE_DURATION_S,
    p_arrival_s: float = P_ARRIVAL_S,
) -> dict[str, Any]:
    """The stage's metrics (``reports/metrics/explain.json``), deterministic: no timings.

    ``band_fraction`` and ``window_fraction`` are means over the ``class``-group maps of a
    class of each map's fraction of ``|SHAP|`` mass (every trace weighs the same);
    ``band_share`` is each band's share of the image rows, what a uniform map would give.
    """
    values, index = shap_maps.values, shap_maps.index
    s_times = p_arrival_s + index["p_s_diff_sec"].to_numpy(dtype=np.float64)
    bands = band_fractions(values, frequency_hz)
    windows = window_fractions(values, time_s, s_times, p_arrival_s)
    n_time = values.shape[2]
    per_s, width = s_window_columns(n_time, duration_s)
    start = np.floor((s_times - S_WINDOW_BEFORE_S) * per_s)
    metrics: dict[str, Any] = {
        "explainer": cfg.explainer,
        "masker": str(parse_masker(cfg.masker)) if cfg.explainer == "partition" else None,
        "max_evals": cfg.max_evals if cfg.explainer == "partition" else None,
        "n_traces": int(index["trace_name"].nunique()),
        "n_maps": len(index),
        "n_s_window_clipped": int(((start < 0) | (start + width > n_time)).sum()),
        "additivity_error_max": float(index["additivity_error"].max()),
        "additivity_error_mean": float(index["additivity_error"].mean()),
        "band_share": {
            _band_key(lo, hi): float(s)
            for (lo, hi), s in zip(BANDS_HZ, band_share(frequency_hz), strict=True)
        },
        "band_fraction": {},
        "window_fraction": {},
        "n_class_maps": {},
    }
    for c, name in enumerate(CLASS_NAMES):
        mask = class_mean_mask(index, c)
        metrics["n_class_maps"][name] = int(mask.sum())
        if mask.any():
            b = bands[mask].mean(axis=0)
            w = windows[mask].mean(axis=0)
        else:
            b = np.full(len(BANDS_HZ), np.nan)
            w = np.full(len(WINDOWS), np.nan)
        metrics["band_fraction"][name] = {
            _band_key(lo, hi): float(v) for (lo, hi), v in zip(BANDS_HZ, b, strict=True)
        }
        metrics["window_fraction"][name] = {k: float(v) for k, v in zip(WINDOWS, w, strict=True)}
    return metrics


def aggregate(
    shap_maps: ShapMaps,
    duration_s: float = STUDY_IMAGE_DURATION_S,
    p_arrival_s: float = P_ARRIVAL_S,
) -> ShapSet:
    """The maps with their per-class means aligned on P and on S, and their weekly means
    (``docs/method.md`` §5): the content of ``data/shap/``."""
    values, index = shap_maps.values, shap_maps.index
    p_s = index["p_s_diff_sec"].to_numpy(dtype=np.float64)
    aligned = align_on_s(values, p_s, p_arrival_s, duration_s)
    weekly_mean, weekly = weekly_means(values, index)
    return ShapSet(
        values=values,
        index=index,
        mean_p_aligned=class_means(values, index, len(CLASS_NAMES)),
        mean_s_aligned=class_means(aligned, index, len(CLASS_NAMES)),
        weekly_mean=weekly_mean,
        weekly=weekly,
    )
