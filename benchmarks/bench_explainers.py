"""Benchmark 4: the ``deep`` and ``gradient`` explainers against the study's.

A report of what users trade: per-trace cost of ``shap.explainer: deep`` (DeepLIFT) and
``gradient`` (expected gradients) against the study's PartitionExplainer at its settings,
and how alike their maps are (Pearson correlation with the partition maps of the same
traces, per class).

reference
    :func:`benchmarks.reference.partition.explain_study_way` (one process, one trace at a
    time, ``max_evals`` 5000): seconds per trace.
quakeshap
    :func:`quakeshap.explain.explain_selection` with ``explainer`` ``deep`` and ``gradient``
    (100 background images, one worker per core as ``shap.workers: auto``): the marginal
    seconds per trace, plus the run's one-off set-up spread over a study-sized selection.
    The headline is the slower of the two.

The partition maps the others are correlated with come from ``explain_selection`` with the
partition explainer, which gives the reference's values (``bench_shap``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images, in_memory_set, selection_frame, trained_checkpoint
from benchmarks.reference.partition import explain_study_way
from quakeshap.config import FaithfulnessConfig, ShapConfig
from quakeshap.explain import explain_selection, trace_seed
from quakeshap.model import model_from_checkpoint
from quakeshap.record import CLASS_NAMES

log = logging.getLogger("benchmarks.explainers")

NAME = "explainers"
TARGET = (
    "deep and gradient explainers >= 20x cheaper per trace than the study's partition "
    "explainer; Pearson correlation of their maps with the partition maps reported per class"
)
ALTERNATIVES = ("deep", "gradient")


@dataclass(frozen=True)
class Plan:
    per_class: int  # traces per class whose maps are compared
    n_reference: int  # traces the reference's cost is measured on
    max_evals: int
    repeats: int
    n_images: int
    workers: int | None  # quakeshap's worker processes; None = one per core (the default)


FULL = Plan(6, n_reference=2, max_evals=5000, repeats=3, n_images=600, workers=None)
SMOKE = Plan(2, n_reference=1, max_evals=120, repeats=1, n_images=80, workers=1)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps, flattened; NaN when one is constant."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def correlations(
    maps: np.ndarray, partition: np.ndarray, classes: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per class: median and spread of per-trace correlations, and that of the class means.

    ``rgb`` correlates the (33, 96, 3) maps; ``display`` the maps averaged over RGB, as the
    figures show them.
    """
    out: dict[str, dict[str, float]] = {}
    for index, name in enumerate(CLASS_NAMES):
        mine = classes == index
        if not mine.any():
            continue
        pairs = list(zip(maps[mine], partition[mine], strict=True))
        rgb = [pearson(m, p) for m, p in pairs]
        display = [pearson(m.mean(-1), p.mean(-1)) for m, p in pairs]
        out[name] = {
            "n_traces": int(mine.sum()),
            "median_rgb": float(np.nanmedian(rgb)),
            "min_rgb": float(np.nanmin(rgb)),
            "max_rgb": float(np.nanmax(rgb)),
            "median_display": float(np.nanmedian(display)),
            "class_mean_display": pearson(
                maps[mine].mean(0).mean(-1), partition[mine].mean(0).mean(-1)
            ),
        }
    return out


#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
Correlations are Pearson's r between an alternative's map and the partition map of the same
trace and class (rgb: the (33, 96, 3) maps; display: averaged over RGB as in the figures;
class_mean_display: of the per-class mean maps). The partition maps are Owen values relative
to the inpainted image, deep/gradient attributions are relative to a background of train
images: the scales differ, correlation is what is comparable. Both sides use every core:
quakeshap one worker per core with one torch thread each, the reference torch's default
threads.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    repeats = args.repeats or plan.repeats
    n_cores = common.usable_cores()
    images, labels = demo_images(plan.n_images)
    sset = in_memory_set(images, labels)
    ckpt = trained_checkpoint(sset, epochs=2 if not args.smoke else 1)
    model = model_from_checkpoint(ckpt)
    test = np.flatnonzero(sset.metadata["split"].to_numpy() == "test")
    with torch.no_grad():
        predicted = model(torch.from_numpy(sset.as_float(test))).numpy().argmax(axis=1)
    # per_class correctly classified test traces of each class
    picks = np.concatenate(
        [test[(labels[test] == c) & (predicted == c)][: plan.per_class] for c in (0, 1)]
    )
    if len(picks) == 0:
        raise common.BenchmarkError("the benchmark model classifies no test trace correctly")
    picked_predicted = labels[picks]
    selection = selection_frame(sset, picks, picked_predicted)
    cfg = dataclasses.replace(
        ShapConfig(),
        max_evals=plan.max_evals,
        batch_size=50,
        device="cpu",
        background=100,
        faithfulness=FaithfulnessConfig(enabled=False),  # the explainers alone
    )
    names = sset.metadata["trace_name"].to_numpy()

    reference_samples = []
    ref_rows = picks[: plan.n_reference]
    explain_study_way(model, images[ref_rows[:1]], None, 60, 50)  # numba warm-up, untimed
    for _ in range(repeats):
        seconds, _ = common.time_call(
            lambda: explain_study_way(
                model,
                images[ref_rows],
                None,
                plan.max_evals,
                50,
                seeds=[trace_seed(cfg.seed, names[r]) for r in ref_rows],
            )
        )
        reference_samples.append(seconds / len(ref_rows))

    partition = explain_selection(
        sset,
        selection,
        ckpt,
        dataclasses.replace(cfg, explainer="partition"),
        workers=plan.workers or n_cores,
    )
    workers = plan.workers or n_cores
    n_small = min(workers, len(picks) - 1) if len(picks) > 1 else len(picks)
    results: dict[str, Any] = {}
    for explainer in ALTERNATIVES:
        alt_cfg = dataclasses.replace(cfg, explainer=explainer)

        def explain(n: int, alt_cfg: ShapConfig = alt_cfg) -> Any:
            return explain_selection(sset, selection.iloc[:n], ckpt, alt_cfg, workers=workers)

        per_trace, setup = [], []
        for _ in range(repeats):
            # a run pays a one-off set-up (workers, the background through the network):
            # the per-trace cost is the marginal one, between a small and a full run
            small_s = common.time_call(lambda explain=explain: explain(n_small))[0]
            seconds, maps = common.time_call(lambda explain=explain: explain(len(picks)))
            if len(picks) > n_small:
                marginal = max(seconds - small_s, 1e-9) / (len(picks) - n_small)
            else:
                marginal = seconds / len(picks)
            setup.append(max(small_s - n_small * marginal, 0.0))
            per_trace.append(marginal + setup[-1] / common.STUDY_SELECTION)
        results[explainer] = {
            "cost": common.summarize(per_trace, "s/trace", "lower", workers=workers),
            "setup_s": float(np.median(setup)),
            "correlation_with_partition": correlations(
                maps.values, partition.values, picked_predicted
            ),
            "max_additivity_error": float(maps.index["additivity_error"].max()),
        }

    reference = common.summarize(reference_samples, "s/trace", "lower", explainer="partition")
    slowest = max(ALTERNATIVES, key=lambda e: results[e]["cost"]["median"])
    quakeshap = dict(results[slowest]["cost"], explainer=slowest)
    checks = [
        common.Check(
            f"{explainer}_speedup_vs_reference",
            reference["median"] / results[explainer]["cost"]["median"],
            ">=",
            20.0,
            f"the study's partition seconds per trace / {explainer}'s",
        )
        for explainer in ALTERNATIVES
    ]
    details = {
        "explainers": results,
        "n_traces_compared": len(picks),
        "partition_settings": {"max_evals": plan.max_evals, "batch_size": 50},
        "background": cfg.background,
        "notes": NOTES,
    }
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
