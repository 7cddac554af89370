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

Integrated gradients (``integrated_gradients``)
-----------------------------------------------
Captum's ``IntegratedGradients`` (Sundararajan et al. 2017, arXiv:1703.01365) integrates the
gradient of each explained logit along the straight path from a baseline to the image, in
``IG_STEPS`` Gauss–Legendre steps, on the [0, 1] pixels. The baseline is the configured
masker's fill of the whole image, the image the partition explainer calls fully masked (for
inpainting: the image's mean colour), so the values sum to ``f(x) − f(baseline)``, the
partition maps' base value, up to the integral's error, which is recorded as the additivity
error and does not fail the stage. It needs no background images.

Faithfulness
------------
With ``shap.faithfulness.enabled``, each worker also scores the maps of its trace
(:mod:`~quakeshap.explain.faithfulness`, ``docs/method.md`` §10): deletion and insertion
curves over the image's (frequency, time) cells, filled by the configured masker whatever
the explainer, against seeded random orders; and for the first
``randomisation_per_class`` traces of each class, the maps of the same explainer on the
model randomised layer by layer from the output down. :func:`summarize` averages the
numbers per class under ``faithfulness``; the maps themselves do not change.

What the ground truth says
--------------------------
On demo data, whose classes differ only by high-frequency attenuation, DeepLIFT and
expected-gradients maps put their ``|SHAP|`` mass in the generator's discriminative band,
while the study's ``inpaint_telea`` partition maps do not for every class: the aftershocks'
maps hold no more than the band's share of the image rows there, and a little more than
their share on the bright low-frequency rows. :mod:`~quakeshap.explain.compare` (the
``explainers`` stage) scores every explainer on the same traces against that band, and
``tests/test_compare_explainers.py`` fixes the finding (the partition case as a strict
expected failure). Read the study's maps as "what the model is sensitive to under
inpainting", and compare with ``deep``.

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

Modules
-------
* :mod:`~quakeshap.explain.explainers`: the ``shap`` parameter checks, the model as shap
  sees it (:class:`PixelModel`, :func:`fuse_batch_norm`) and :class:`TraceExplainer`, which
  explains one trace.
* :mod:`~quakeshap.explain.pool`: the selection → one job per trace (:func:`plan_jobs`),
  the worker processes (:func:`run_jobs`), and :func:`explain_selection`, which does both
  and checks additivity.
* :mod:`~quakeshap.explain.maps`: pure aggregates over maps, and :func:`aggregate`, the
  content of ``data/shap/``.
* :mod:`~quakeshap.explain.metrics`: :func:`summarize`, the stage's metrics.
* :mod:`~quakeshap.explain.faithfulness`: deletion/insertion curves and the
  model-randomisation cascade, pure functions over arrays and a model callable.
* :mod:`~quakeshap.explain.compare`: every explainer configuration on the same traces,
  scored against the demo's ground truth (the ``explainers`` stage; imported as
  ``from quakeshap.explain import compare``).

The names below are the package's public interface.
"""

from quakeshap.explain.explainers import (
    BACKGROUND_EXPLAINERS,
    GRADIENT_SAMPLES,
    IG_STEPS,
    MASKER_EXPLAINERS,
    MIN_PARTITION_EVALS,
    ExplainError,
    ExplainJob,
    JobResult,
    PixelModel,
    TraceExplainer,
    check_config,
    check_max_evals,
    fuse_batch_norm,
    masker_fill,
    parse_masker,
    single_threaded,
    to_masker_image,
)
from quakeshap.explain.faithfulness import Faithfulness
from quakeshap.explain.maps import (
    BANDS_HZ,
    WINDOWS,
    ShapMaps,
    aggregate,
    align_on_s,
    band_fractions,
    band_share,
    class_means,
    weekly_means,
    window_fractions,
)
from quakeshap.explain.metrics import faithfulness_metrics, image_timing, summarize
from quakeshap.explain.pool import (
    Plan,
    draw_background,
    explain_selection,
    plan_jobs,
    run_jobs,
    trace_seed,
)

__all__ = [
    "BACKGROUND_EXPLAINERS",
    "BANDS_HZ",
    "GRADIENT_SAMPLES",
    "IG_STEPS",
    "MASKER_EXPLAINERS",
    "MIN_PARTITION_EVALS",
    "WINDOWS",
    "ExplainError",
    "ExplainJob",
    "Faithfulness",
    "JobResult",
    "PixelModel",
    "Plan",
    "ShapMaps",
    "TraceExplainer",
    "aggregate",
    "align_on_s",
    "band_fractions",
    "band_share",
    "check_config",
    "check_max_evals",
    "class_means",
    "draw_background",
    "explain_selection",
    "faithfulness_metrics",
    "fuse_batch_norm",
    "image_timing",
    "masker_fill",
    "parse_masker",
    "plan_jobs",
    "run_jobs",
    "single_threaded",
    "summarize",
    "to_masker_image",
    "trace_seed",
    "weekly_means",
    "window_fractions",
]
