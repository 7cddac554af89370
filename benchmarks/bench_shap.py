"""Benchmark 3: SHAP maps at the study's settings, quakeshap against the study.

The same traces (demo spectrograms), the same briefly trained CNN2D, the study's settings
(PartitionExplainer, ``inpaint_telea``, ``max_evals`` 5000, ``batch_size`` 50, top class):

reference
    :func:`benchmarks.reference.partition.explain_study_way`: one trace at a time in one
    process, torch with its default threads.
quakeshap
    :func:`quakeshap.explain.explain_selection` (what the ``explain`` stage runs) with
    1 worker and with one worker per core.

Throughput is traces per second. Each serial contender (the reference, quakeshap with one
worker) runs in a fresh process of its own after an untimed warm-up trace, timed trace by
trace. The parallel run's start-up (spawning the workers, imports, numba compiling shap's
code in each) is paid once per stage run, whatever the number of traces: its throughput is
the steady one, from the arrival of the ``n_workers``-th result to the last, and the
start-up is reported apart (a projection to a study-sized selection adds it back). Scaling
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
import multiprocessing
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images, in_memory_set, selection_frame, trained_checkpoint
from benchmarks.reference.partition import explain_study_way
from quakeshap.config import FaithfulnessConfig, ShapConfig
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
    traces_per_worker: int  # the parallel run: this many traces per worker
    max_evals: int
    batch_size: int
    repeats: int  # of the parallel run
    n_images: int  # demo images the model is trained on (the explained ones among them)


FULL = Plan(4, max_evals=5000, batch_size=50, repeats=2, n_images=600)
SMOKE = Plan(1, max_evals=120, batch_size=50, repeats=1, n_images=80)
#: evaluations per trace of the untimed warm-up
WARMUP_EVALS = 60


def per_trace_seconds(run: Callable[[Callable[[int, int], None]], Any]) -> tuple[list[float], Any]:
    """Call ``run(progress)``; the seconds from its start to each trace's ``progress`` call."""
    start = time.perf_counter()
    stamps: list[float] = []
    result = run(lambda done, total: stamps.append(time.perf_counter() - start))
    return stamps, result


def steady_throughput(stamps: Sequence[float], n_workers: int) -> tuple[float, float]:
    """Traces per second once every worker has finished its first trace, and how long
    that took (the run's start-up: spawning, imports, compiling, plus one trace)."""
    if len(stamps) <= n_workers:
        return len(stamps) / stamps[-1], stamps[-1]
    first = stamps[n_workers - 1]
    return (len(stamps) - n_workers) / (stamps[-1] - first), first


@dataclass(frozen=True)
class SerialTask:
    """What a serial contender needs, sent to a fresh process."""

    sset: Any
    selection: pd.DataFrame
    ckpt: dict[str, Any]
    cfg: ShapConfig
    rows: np.ndarray  # rows of ``sset`` explained (the selection's traces)
    seeds: list[int]


def serial_contender(kind: str, task: SerialTask) -> tuple[list[float], Any]:
    """Time ``kind`` (``reference`` or ``quakeshap``) trace by trace after an untimed
    warm-up. Runs in a spawned process, so that neither side inherits the other's state."""
    cfg = task.cfg
    images = task.sset.images
    if kind == "reference":
        model = model_from_checkpoint(task.ckpt)
        rows = task.rows
        explain_study_way(model, images[rows[:1]], None, WARMUP_EVALS, cfg.batch_size, cfg.masker)

        def run(progress: Callable[[int, int], None]) -> list[Any]:
            out = []
            for i, row in enumerate(rows):
                out += explain_study_way(
                    model, images[[row]], None, cfg.max_evals, cfg.batch_size, cfg.masker,
                    [task.seeds[i]],
                )  # fmt: skip
                progress(i + 1, len(rows))
            return out

        stamps, out = per_trace_seconds(run)
        return stamps, np.stack([np.moveaxis(r.values, -1, 0)[0] for r in out])
    warm = dataclasses.replace(cfg, max_evals=WARMUP_EVALS)
    explain_selection(task.sset, task.selection.iloc[:1], task.ckpt, warm, workers=1)
    stamps, maps = per_trace_seconds(
        lambda p: explain_selection(task.sset, task.selection, task.ckpt, cfg, 1, p)
    )
    return stamps, maps.values


def in_fresh_process(kind: str, task: SerialTask) -> tuple[list[float], Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(serial_contender, (kind, task))


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


#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
Profiles come from cProfile, which slows Python-heavy code more than native code: read the
fractions, and take the times from the unprofiled runs. quakeshap with 1 worker uses one
torch thread (as every worker does); the reference uses torch's default (all cores) for its
model calls.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores, >= 2)"
    )
    return parser


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
        # the SHAP run alone, as the reference computes it (bench_faithfulness times the rest)
        faithfulness=FaithfulnessConfig(enabled=False),
    )
    names = sset.metadata["trace_name"].to_numpy()[test]
    seeds = [trace_seed(cfg.seed, name) for name in names]
    task = SerialTask(sset, selection, ckpt, cfg, test, seeds)

    # each serial contender in a fresh process of its own, one after the other
    reference_stamps, reference_maps = in_fresh_process("reference", task)
    serial_stamps, serial_maps = in_fresh_process("quakeshap", task)
    parallel_samples, startup_samples = [], []
    for _ in range(repeats):
        stamps, parallel_out = per_trace_seconds(
            lambda p: explain_selection(sset, selection, ckpt, cfg, n_workers, p)
        )
        throughput, startup = steady_throughput(stamps, n_workers)
        parallel_samples.append(throughput)
        startup_samples.append(startup)
    startup_s = float(np.median(startup_samples))

    difference = np.abs(reference_maps.astype(np.float32) - parallel_out.values)
    equivalence = {
        "n_maps": len(reference_maps),
        "max_abs_difference_vs_reference": float(difference.max()),
        "max_abs_value": float(np.abs(reference_maps).max()),
        "parallel_equals_serial": bool(np.array_equal(serial_maps, parallel_out.values)),
        "max_additivity_error": float(parallel_out.index["additivity_error"].max()),
        "note": (
            "the reference runs torch with its default threads, quakeshap with one per "
            "worker: torch's multi-threaded kernels round differently in the last bits; "
            "with one thread the reference gives bit-identical maps (tests/test_benchmarks.py)"
        ),
    }

    # where one trace's time goes, at the same settings, in this process: warmed up first
    # so that numba's compilation of shap's code is not counted as the reference's work
    explain_study_way(model, images[test[:1]], None, WARMUP_EVALS, plan.batch_size, cfg.masker)
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

    reference = common.summarize(
        [1 / s for s in np.diff(reference_stamps, prepend=0.0)], "traces/s", "higher"
    )
    quakeshap = common.summarize(parallel_samples, "traces/s", "higher", workers=n_workers)
    serial = common.summarize(
        [1 / s for s in np.diff(serial_stamps, prepend=0.0)], "traces/s", "higher", workers=1
    )
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
        "first_result_per_worker_s": startup_s,
        "projected_seconds_per_trace_at_study_size": {
            # the study's selection: 300 per class + misclassified + examples + week top-ups
            "n_traces": common.STUDY_SELECTION,
            "reference": 1 / reference["median"],
            # the start-up holds each worker's first trace too
            "quakeshap": (startup_s + (common.STUDY_SELECTION - n_workers) / quakeshap["median"])
            / common.STUDY_SELECTION,
        },
        "seconds_per_trace": {
            "reference": 1 / reference["median"],
            "quakeshap_1_worker": 1 / serial["median"],
            f"quakeshap_{n_workers}_workers": 1 / quakeshap["median"],
        },
        "equivalence": equivalence,
        "profile_one_trace": {"reference": profile_reference, "quakeshap": profile_quakeshap},
        "notes": NOTES,
    }
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
