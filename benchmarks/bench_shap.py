"""Benchmark 3 (issue 6): SHAP maps at the study's settings, quakeshap against the study.

The same traces (demo spectrograms), the same briefly trained CNN2D, the study's settings
(PartitionExplainer, ``inpaint_telea``, ``max_evals`` 5000, ``batch_size`` 50, top class):

reference
    :func:`benchmarks.reference.partition.explain_study_way`: one trace at a time in one
    process, torch with its default threads.
quakeshap
    :func:`quakeshap.explain.explain_selection` (what the ``explain`` stage runs) with
    1 worker and with one worker per core.

Throughput is traces per second. The serial runs are timed trace by trace. The parallel
run's start-up (spawning the workers, imports, numba compiling shap's code) is paid once
per stage run, whatever the number of traces: the parallel throughput is the marginal one,
from two runs of ``n_workers`` and ``traces_per_worker × n_workers`` traces (their time
difference divided by the difference in traces), and the start-up is what is left of the
smaller run. A projection to a study-sized selection adds the start-up back. Scaling
efficiency = throughput with n workers / (n × throughput with 1 worker). The values of
both are compared map by map. cProfile splits one trace's time between the masker (shap's
``Image.__call__``: OpenCV inpainting), the model (shap's ``Model.__call__``: the torch
forward passes) and everything else.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import logging
import os
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images, in_memory_set, selection_frame, trained_checkpoint
from benchmarks.reference.partition import explain_study_way
from quakeshap.config import ShapConfig
from quakeshap.explain import (
    ExplainJob,
    TraceExplainer,
    explain_selection,
    single_threaded,
    trace_seed,
)
from quakeshap.model import model_from_checkpoint

log = logging.getLogger("benchmarks.shap")

NAME = "shap"
TARGET = (
    "explain throughput >= 1.6x the study's serial PartitionExplainer on all cores, scaling "
    "efficiency >= 70%, identical values"
)


@dataclass(frozen=True)
class Plan:
    traces_per_worker: int  # the larger parallel run: this many traces per worker
    max_evals: int
    batch_size: int
    repeats: int  # of the parallel runs
    n_images: int  # demo images the model is trained on (the explained ones among them)
    #: time a small parallel run too, to separate start-up from throughput (else the
    #: parallel throughput includes the start-up: fine for a smoke run)
    marginal: bool


FULL = Plan(3, max_evals=5000, batch_size=50, repeats=2, n_images=600, marginal=True)
SMOKE = Plan(1, max_evals=120, batch_size=50, repeats=1, n_images=80, marginal=False)
#: evaluations per trace of the untimed warm-up
WARMUP_EVALS = 60


def per_trace_seconds(run: Callable[[Callable[[int, int], None]], Any]) -> tuple[list[float], Any]:
    """Call ``run(progress)`` and time each trace from the progress callbacks."""
    stamps = [time.perf_counter()]
    result = run(lambda done, total: stamps.append(time.perf_counter()))
    return list(np.diff(stamps)), result


def time_split(fn: Callable[[], Any]) -> dict[str, float]:
    """Run ``fn`` under cProfile: seconds in shap's masker, in the model, and the rest."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    masker = model = 0.0
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace(os.sep, "/")
        if function == "__call__" and path.endswith("shap/maskers/_image.py"):
            masker += cumulative
        elif function == "__call__" and path.endswith("shap/models/_model.py"):
            model += cumulative
    total = stats.total_tt  # type: ignore[attr-defined]
    return {
        "total_s": total,
        "masker_s": masker,
        "model_s": model,
        "overhead_s": total - masker - model,
        "masker_fraction": masker / total,
        "model_fraction": model / total,
        "overhead_fraction": (total - masker - model) / total,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    repeats = args.repeats or plan.repeats
    n_workers = args.workers or max(2, common.usable_cores())
    n_traces = n_workers * plan.traces_per_worker
    images, labels = demo_images(plan.n_images)
    sset = in_memory_set(images, labels)
    ckpt = trained_checkpoint(sset, epochs=2 if not args.smoke else 1)
    model = model_from_checkpoint(ckpt)
    test = np.flatnonzero(sset.metadata["split"].to_numpy() == "test")[:n_traces]
    if len(test) < n_traces:
        raise common.BenchmarkError(f"{len(test)} test images, {n_traces} needed")
    with torch.no_grad():
        logits = model(torch.from_numpy(sset.as_float(test))).numpy()
    predicted = logits.argmax(axis=1)
    selection = selection_frame(sset, test, predicted)
    cfg = dataclasses.replace(
        ShapConfig(),
        explainer="partition",
        masker="inpaint_telea",
        max_evals=plan.max_evals,
        batch_size=plan.batch_size,
        device="cpu",
    )
    names = sset.metadata["trace_name"].to_numpy()[test]
    seeds = [trace_seed(cfg.seed, name) for name in names]

    def reference_run(progress: Callable[[int, int], None]) -> list[Any]:
        out = []
        for i, row in enumerate(test):
            one = explain_study_way(
                model, images[[row]], None, plan.max_evals, plan.batch_size, cfg.masker, [seeds[i]]
            )
            out += one
            progress(i + 1, len(test))
        return out

    def quakeshap_run(workers: int, n: int, progress: Any = None) -> Any:
        return explain_selection(sset, selection.iloc[:n], ckpt, cfg, workers, progress)

    # untimed warm-up: numba compiles shap's partition code once per process
    warm = dataclasses.replace(cfg, max_evals=WARMUP_EVALS)
    explain_study_way(model, images[test[:1]], None, WARMUP_EVALS, plan.batch_size, cfg.masker)
    explain_selection(sset, selection.iloc[:1], ckpt, warm, workers=1)

    reference_seconds, reference_out = per_trace_seconds(reference_run)
    serial_seconds, serial_out = per_trace_seconds(lambda p: quakeshap_run(1, n_traces, p))
    parallel_samples, startup_samples = [], []
    for _ in range(repeats):
        large_s, parallel_out = common.time_call(lambda: quakeshap_run(n_workers, n_traces))
        if not plan.marginal:
            parallel_samples.append(n_traces / large_s)
            continue
        small_s = common.time_call(lambda: quakeshap_run(n_workers, n_workers))[0]
        if large_s <= small_s:
            raise common.BenchmarkError(
                f"{n_traces} traces took {large_s:.1f} s, {n_workers} took {small_s:.1f} s: "
                "the machine is too busy to measure; run again when it is idle"
            )
        throughput = (n_traces - n_workers) / (large_s - small_s)
        parallel_samples.append(throughput)
        startup_samples.append(small_s - n_workers / throughput)
    startup_s = float(np.median(startup_samples)) if startup_samples else None

    reference_maps = np.stack([np.moveaxis(r.values, -1, 0)[0] for r in reference_out])
    difference = np.abs(reference_maps.astype(np.float32) - parallel_out.values)
    equivalence = {
        "n_maps": len(reference_maps),
        "max_abs_difference_vs_reference": float(difference.max()),
        "max_abs_value": float(np.abs(reference_maps).max()),
        "parallel_equals_serial": bool(np.array_equal(serial_out.values, parallel_out.values)),
        "max_additivity_error": float(parallel_out.index["additivity_error"].max()),
        "note": (
            "the reference runs torch with its default threads, quakeshap with one per "
            "worker: torch's multi-threaded kernels round differently in the last bits; "
            "with one thread the reference gives bit-identical maps (tests/test_benchmarks.py)"
        ),
    }

    # where one trace's time goes, at the same settings
    job = ExplainJob(
        names[0], sset.as_float(test[:1])[0], (int(predicted[0]),), seeds[0]
    )  # fmt: skip
    profile_reference = time_split(
        lambda: explain_study_way(
            model, images[test[:1]], None, plan.max_evals, plan.batch_size, cfg.masker, seeds[:1]
        )
    )

    def quakeshap_one() -> None:
        with single_threaded():
            TraceExplainer(ckpt, cfg, torch.device("cpu")).explain(job)

    profile_quakeshap = time_split(quakeshap_one)

    reference = common.summarize([1 / s for s in reference_seconds], "traces/s", "higher")
    quakeshap = common.summarize(parallel_samples, "traces/s", "higher", workers=n_workers)
    serial = common.summarize([1 / s for s in serial_seconds], "traces/s", "higher", workers=1)
    efficiency = quakeshap["median"] / (n_workers * serial["median"])
    checks = [
        common.Check(
            "speedup_vs_reference",
            common.speedup(reference, quakeshap),
            ">=",
            1.6,
            f"quakeshap throughput with {n_workers} workers / the study's serial throughput",
        ),
        common.Check(
            "scaling_efficiency",
            efficiency,
            ">=",
            0.70,
            f"throughput with {n_workers} workers / ({n_workers} x throughput with 1 worker)",
        ),
        common.Check(
            "max_abs_difference_vs_reference",
            equivalence["max_abs_difference_vs_reference"],
            "<=",
            1e-6,
            "largest difference between the reference's and quakeshap's maps, in logits",
        ),
    ]
    details = {
        "n_traces": n_traces,
        "max_evals": plan.max_evals,
        "batch_size": plan.batch_size,
        "masker": cfg.masker,
        "workers": n_workers,
        "quakeshap_serial": serial,
        "worker_startup_s": startup_s,
        "projected_seconds_per_trace_at_study_size": {
            # the study's selection: 300 per class + misclassified + examples + week top-ups
            "n_traces": common.STUDY_SELECTION,
            "reference": 1 / reference["median"],
            "quakeshap": (startup_s or 0.0) / common.STUDY_SELECTION + 1 / quakeshap["median"],
        },
        "seconds_per_trace": {
            "reference": 1 / reference["median"],
            "quakeshap_1_worker": 1 / serial["median"],
            f"quakeshap_{n_workers}_workers": 1 / quakeshap["median"],
        },
        "equivalence": equivalence,
        "profile_one_trace": {"reference": profile_reference, "quakeshap": profile_quakeshap},
        "notes": (
            "Profiles come from cProfile, which slows Python-heavy code more than native "
            "code: read the fractions, and take the times from the unprofiled runs. quakeshap "
            "with 1 worker uses one torch thread (as every worker does); the reference uses "
            "torch's default (all cores) for its model calls."
        ),
    }
    return common.make_result(
        NAME, "smoke" if args.smoke else "full", reference, quakeshap, TARGET, checks, details
    )


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores, >= 2)"
    )
    return parser


def main() -> int:
    return common.main_wrapper(run, build_parser())


if __name__ == "__main__":
    sys.exit(main())
