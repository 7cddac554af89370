"""Benchmark 6: what the faithfulness checks add to the ``explain`` stage, per trace.

The demo's selection size (16 traces: per class, per week, misclassified, examples) at the
demo's settings (PartitionExplainer, ``inpaint_telea``, ``max_evals`` 5000, ``batch_size``
50), explained one trace at a time in this process with one torch and one OpenCV thread, as
each worker of the stage does:

reference
    The SHAP run itself: :meth:`quakeshap.explain.TraceExplainer.explain` with
    ``shap.faithfulness.enabled: false``, seconds per trace.
quakeshap
    The faithfulness checks of the same traces at the default ``shap.faithfulness``
    settings: :meth:`~quakeshap.explain.TraceExplainer.score_faithfulness` given the SHAP
    run's maps (deletion/insertion curves of every trace, and the model-randomisation
    cascade of the traces that :func:`quakeshap.explain.plan_jobs` picks for it, one per
    class: the cascade's set-up, five randomised explainers built once per process, is in
    the first cascaded trace). Seconds per trace, averaged over the whole selection.

The target is the fraction faithfulness / SHAP, at most 0.2.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images, in_memory_set, selection_frame, trained_checkpoint
from quakeshap.config import FaithfulnessConfig, ShapConfig
from quakeshap.explain import TraceExplainer, plan_jobs, single_threaded
from quakeshap.model import model_from_checkpoint

log = logging.getLogger("benchmarks.faithfulness")

NAME = "faithfulness"
TARGET = (
    "faithfulness checks (deletion/insertion of every trace, randomisation cascade of one "
    "trace per class) cost <= 20% of the SHAP run itself per trace, at the demo's settings"
)
#: the most the checks may cost, as a fraction of the SHAP run
MAX_FRACTION = 0.20


@dataclass(frozen=True)
class Plan:
    n_traces: int  # traces explained (the demo's selection explains 16)
    max_evals: int
    n_images: int  # demo images the model is trained on (the explained ones among them)
    faithfulness: FaithfulnessConfig


FULL = Plan(16, max_evals=5000, n_images=600, faithfulness=FaithfulnessConfig())
SMOKE = Plan(
    2,
    max_evals=120,
    n_images=80,
    faithfulness=FaithfulnessConfig(n_steps=4, random_orders=1, randomisation_max_evals=60),
)

#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
Both sides run in this process, one trace after the other, with one torch and one OpenCV
thread (what each worker of the explain stage uses), so the fraction holds for any number of
workers. 'cascade' traces re-explain the trace with the trained model at the cascade's
budget and with each of the five randomised models; their seconds include building the five
randomised explainers once. A selection with more traces per class than the demo's spreads
the cascade over more traces: the fraction falls.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    images, labels = demo_images(plan.n_images)
    sset = in_memory_set(images, labels)
    ckpt = trained_checkpoint(sset, epochs=2 if not args.smoke else 1)
    test = np.flatnonzero(sset.metadata["split"].to_numpy() == "test")
    with torch.no_grad():
        predicted = model_from_checkpoint(ckpt)(torch.from_numpy(sset.as_float(test)))
    predicted = predicted.numpy().argmax(axis=1)
    # the two predicted classes alternating, correctly classified traces first, so that
    # each class has a trace for the cascade (the stage takes those whose maps enter the
    # class means: correctly classified); a weak smoke model may predict one class only
    correct = labels[test] == predicted
    by_class = [
        np.concatenate([test[correct & (predicted == c)], test[~correct & (predicted == c)]])
        for c in (0, 1)
    ]
    alternating = [r for pair in itertools.zip_longest(*by_class) for r in pair if r is not None]
    rows = np.array(alternating[: plan.n_traces])
    if len(rows) < plan.n_traces:
        raise common.BenchmarkError(f"{len(test)} test traces, {plan.n_traces} needed")
    prediction = dict(zip(test.tolist(), predicted.tolist(), strict=True))
    selection = selection_frame(sset, rows, np.array([prediction[r] for r in rows.tolist()]))
    cfg = dataclasses.replace(
        ShapConfig(), max_evals=plan.max_evals, device="cpu", faithfulness=plan.faithfulness
    )
    shap_only = dataclasses.replace(cfg, faithfulness=FaithfulnessConfig(enabled=False))
    jobs = plan_jobs(selection, sset, cfg.seed, cfg.faithfulness.randomisation_per_class).jobs

    shap_s, faith_s, cascaded = [], [], []
    with single_threaded():
        explainer = TraceExplainer(ckpt, shap_only, torch.device("cpu"))
        checker = TraceExplainer(ckpt, cfg, torch.device("cpu"))
        # warm-up, untimed (numba compiles shap's code, OpenCV loads): a small budget, no cascade
        warm = TraceExplainer(ckpt, dataclasses.replace(shap_only, max_evals=60), explainer.device)
        first = dataclasses.replace(jobs[0], randomise=False)
        checker.score_faithfulness(first, warm.explain(first))
        for job in jobs:
            seconds, result = common.time_call(lambda job=job: explainer.explain(job))
            shap_s.append(seconds)
            checks_s, _ = common.time_call(
                lambda job=job, result=result: checker.score_faithfulness(job, result)
            )
            faith_s.append(checks_s)
            cascaded.append(job.randomise)
    shap_s, faith_s, cascaded = np.array(shap_s), np.array(faith_s), np.array(cascaded)
    fraction = float(faith_s.sum() / shap_s.sum())

    reference = common.summarize([float(shap_s.mean())], "s/trace", "lower", explainer="partition")
    quakeshap = common.summarize([float(faith_s.mean())], "s/trace", "lower")
    checks = [
        common.Check(
            "faithfulness_fraction_of_shap",
            fraction,
            "<=",
            MAX_FRACTION,
            "seconds of the faithfulness checks / seconds of the SHAP runs, same traces",
        )
    ]
    details = {
        "n_traces": len(jobs),
        "n_cascaded": int(cascaded.sum()),
        "max_evals": plan.max_evals,
        "faithfulness": dataclasses.asdict(plan.faithfulness),
        "shap_seconds_per_trace": shap_s.tolist(),
        "faithfulness_seconds_per_trace": faith_s.tolist(),
        "deletion_insertion_seconds_per_trace": float(np.median(faith_s[~cascaded]))
        if (~cascaded).any()
        else None,
        "cascade_seconds_per_cascaded_trace": faith_s[cascaded].tolist(),
        "notes": NOTES,
    }
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
