"""Benchmark 1: the ``spectrograms`` stage against the study's per-trace loop.

Same raw data for every contender (a demo pool replicated to the sizes below, in the
record's layout; warm page cache for all):

reference
    :func:`benchmarks.reference.spectrograms.run_study_loop`: scipy per trace and channel,
    one ``plt.imsave`` PNG per trace, then its metadata table; one thread.
quakeshap, one thread
    The stage (``python -m quakeshap.stages.spectrograms``) with ``spectrogram.workers: 1``,
    in a fresh process (through :mod:`benchmarks._timed_stage`): its ``main()`` time is the
    stage's work (read, validate, compute, write); the process's wall time and its peak RSS
    (``VmHWM``) are recorded too. The same resources as the reference: this is the
    headline ratio.
quakeshap, all cores
    The same with ``spectrogram.workers: auto`` (the default: one thread per core), to be
    read against the same one-thread reference.
floor
    :func:`benchmarks._data.read_floor`: only reading the same waveforms from the HDF5
    files, the fastest of three ways (h5py's high-level API, its low-level read, byte
    offsets + a memory map of the file).

The contenders run interleaved, round by round (reference, one thread, all cores, floor;
then again), so that a slow spell of the machine hits them all. Throughput is listed
traces per second. At 2k, 10k and 50k traces the stage's time and peak RSS show whether
time grows linearly and memory stays flat; the reference runs at the headline size only.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _common as common
from benchmarks._data import READ_STRATEGIES, read_floor, replicate_raw, write_pool
from benchmarks.reference.spectrograms import read_study_png, run_study_loop
from quakeshap.artifacts import metrics
from quakeshap.config import resolve_workers

log = logging.getLogger("benchmarks.spectrograms")

NAME = "spectrograms"
TARGET = (
    "stage throughput >= 20x the study's per-trace loop, with one thread as the loop has "
    "and with all cores; stage time <= 2x reading the waveforms; linear time and flat peak "
    "RSS over 2k, 10k, 50k traces"
)
STAGE_MODULE = "quakeshap.stages.spectrograms"
#: the stage's two settings of ``spectrogram.workers``, in the order they run in a round
SETTINGS: dict[str, int | str] = {"one_thread": 1, "all_cores": "auto"}


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # listed traces per data set
    headline: int  # the size the ratios are quoted at (one of sizes)
    rounds: int  # per size up to the headline; larger sizes run one round
    pool: tuple[int, int]  # demo pool: n_pre, n_post
    pool_defects: bool
    n_compare: int  # traces whose reference PNG is compared with the stage's image


FULL = Plan((2_000, 10_000, 50_000), 10_000, 3, (300, 200), True, 500)
SMOKE = Plan((40, 80), 80, 1, (30, 20), False, 20)


def run_stage(raw: Path, out: Path, work: Path, params: Path) -> dict[str, float]:
    """One stage run in a fresh process: main() seconds, import seconds, wall, peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    timing = work / "timing.json"
    run = common.run_process(
        [
            sys.executable,
            "-m",
            "benchmarks._timed_stage",
            timing,
            STAGE_MODULE,
            "--params",
            params,
            "--raw",
            raw,
            "--out",
            out,
            "--rejected",
            work / metrics.REJECTED_PATH.name,
        ],
        cwd=common.REPO_ROOT,
        env=common.python_env(),
    )
    common.check_process(run, f"{STAGE_MODULE} on {raw} with {params.name}")
    times = json.loads(timing.read_text())
    return {
        "main_s": times["main_s"],
        "import_s": times["import_s"],
        "wall_s": run.wall_s,
        "peak_rss_mib": times["peak_rss_mib"],
        "peak_rss_anon_mib": times["peak_rss_anon_mib"],
        "peak_rss_file_mib": times["peak_rss_file_mib"],
    }


def stage_row(runs: list[dict[str, float]], n: int, floor_s: float) -> dict[str, Any]:
    """One setting's runs at one size: medians of the times, the highest peaks."""
    main_s = statistics.median(r["main_s"] for r in runs)
    return {
        "main_s": main_s,
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "import_s": statistics.median(r["import_s"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "peak_rss_anon_mib": max(r["peak_rss_anon_mib"] for r in runs),
        "peak_rss_file_mib": max(r["peak_rss_file_mib"] for r in runs),
        "over_floor": main_s / floor_s,
        "us_per_trace": 1e6 * main_s / n,
        "traces_per_s": [n / r["main_s"] for r in runs],
    }


def compare_outputs(reference_dir: Path, outs: dict[str, Path], n_compare: int) -> dict[str, Any]:
    """Reference PNG values against the one-thread stage's images for the first traces,
    and the one-thread images against the all-core ones (all of them)."""
    import numpy as np

    from quakeshap.artifacts import spectrograms

    stage = {setting: spectrograms.load(out, mmap=True) for setting, out in outs.items()}
    one_thread = stage["one_thread"]
    names = one_thread.metadata["trace_name"].to_numpy()[:n_compare]
    worst, differing, total = 0, 0, 0
    for row, name in enumerate(names):
        reference = read_study_png(reference_dir / f"{name}.png").astype(np.int16)
        delta = np.abs(reference - one_thread.images[row].astype(np.int16))
        worst = max(worst, int(delta.max()))
        differing += int((delta > 0).sum())
        total += delta.size
    return {
        "n_traces_compared": len(names),
        "max_abs_difference_uint8": worst,
        "fraction_of_pixels_differing": differing / max(total, 1),
        "one_thread_equals_all_cores": bool(
            np.array_equal(one_thread.images, stage["all_cores"].images)
            and one_thread.metadata.equals(stage["all_cores"].metadata)
        ),
    }


def measure_size(
    raw: Path, n: int, rounds: int, work: Path, params: dict[str, Path], reference: bool
) -> tuple[dict[str, Any], list[float]]:
    """``rounds`` interleaved rounds at one size: the study loop (when ``reference``), the
    stage with each setting, the read floor. Returns the scaling row and the study loop's
    throughputs (traces/s)."""
    runs: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    reads: dict[str, list[float]] = {how: [] for how in READ_STRATEGIES}
    reference_samples = []
    for _ in range(rounds):
        if reference:
            png_dir = work / "reference_png"
            shutil.rmtree(png_dir, ignore_errors=True)
            seconds, _ = common.time_call(lambda png_dir=png_dir: run_study_loop(raw, png_dir))
            reference_samples.append(n / seconds)
        for setting, path in params.items():
            runs[setting].append(run_stage(raw, work / f"out_{n}_{setting}", work, path))
        for how in READ_STRATEGIES:
            reads[how].append(common.time_call(lambda how=how: read_floor(raw, how))[0])
    read_s = {how: statistics.median(seconds) for how, seconds in reads.items()}
    floor_s = min(read_s.values())
    row = {
        "n_traces": n,
        "rounds": rounds,
        "read_floor_s": floor_s,
        "read_s": read_s,
        "stage": {setting: stage_row(runs[setting], n, floor_s) for setting in SETTINGS},
    }
    return row, reference_samples


def measure(
    plan: Plan, rounds: int, work: Path
) -> tuple[list[dict[str, Any]], list[float], dict[str, Any]]:
    """Every size of ``plan`` in ``work``: the scaling rows, the study loop's throughputs
    (traces/s, headline size) and the comparison of the outputs (headline size)."""
    params = {
        setting: common.write_params(
            common.REPO_ROOT / "params.yaml",
            work / f"params_{setting}.yaml",
            {"spectrogram.workers": workers},
        )
        for setting, workers in SETTINGS.items()
    }
    pool = write_pool(work / "pool", *plan.pool, defects=plan.pool_defects)
    scaling: list[dict[str, Any]] = []
    reference_samples: list[float] = []
    equivalence: dict[str, Any] = {}
    for n in plan.sizes:
        raw = work / f"raw_{n}"
        replicate_raw(pool, raw, n)
        headline = n == plan.headline
        row, samples = measure_size(
            raw, n, rounds if n <= plan.headline else 1, work, params, reference=headline
        )
        scaling.append(row)
        reference_samples += samples
        log.info("%d traces: %s", n, row)
        outs = {setting: work / f"out_{n}_{setting}" for setting in SETTINGS}
        if headline:
            equivalence = compare_outputs(work / "reference_png", outs, plan.n_compare)
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
        if n > plan.headline:
            shutil.rmtree(raw, ignore_errors=True)
    return scaling, reference_samples, equivalence


def target_checks(
    plan: Plan, scaling: list[dict[str, Any]], ratios: dict[str, float], workers: int
) -> list[common.Check]:
    """The target as numbers: both speed-ups, the read floor, linear time, flat memory
    (the last three for the stage as it runs by default, on all cores)."""
    stage_at = {row["n_traces"]: row["stage"]["all_cores"] for row in scaling}
    smallest, largest = min(plan.sizes), max(plan.sizes)
    return [
        common.Check(
            "speedup_vs_reference_one_thread",
            ratios["one_thread_vs_reference"],
            ">=",
            20.0,
            "stage main() throughput with one thread / study loop throughput (one thread), "
            f"{plan.headline} traces",
        ),
        common.Check(
            "speedup_vs_reference_all_cores",
            ratios["all_cores_vs_reference"],
            ">=",
            20.0,
            f"stage main() throughput on all cores ({workers} threads) / study loop "
            f"throughput (one thread), {plan.headline} traces",
        ),
        common.Check(
            "stage_over_read_floor",
            stage_at[plan.headline]["over_floor"],
            "<=",
            2.0,
            "stage main() time on all cores / time to only read the waveforms, "
            f"{plan.headline} traces",
        ),
        common.Check(
            "time_per_trace_growth",
            stage_at[largest]["us_per_trace"] / stage_at[smallest]["us_per_trace"],
            "<=",
            1.2,
            f"stage time per trace (all cores) at {largest} / at {smallest} traces (1 = linear)",
        ),
        common.Check(
            "peak_rss_growth",
            stage_at[largest]["peak_rss_mib"] / stage_at[smallest]["peak_rss_mib"],
            "<=",
            1.25,
            f"stage peak RSS (all cores) at {largest} / at {smallest} traces (1 = flat)",
        ),
    ]


#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
Throughput counts listed traces. quakeshap = the stage's main() in a fresh process
(interpreter start-up and imports excluded, listed as import_s; wall_s includes them), with
spectrogram.workers 1 (the headline: one thread, as the study's loop) and auto (all cores,
details.all_cores). Contenders interleaved round by round: study loop, one thread, all
cores, read floor. Peak RSS = VmHWM of the stage's process, file-backed mapped pages
included. Raw data: a demo pool replicated to each size, read from a warm page cache by
every contender.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    with common.scratch_dir(args.workdir, NAME) as work:
        scaling, reference_samples, equivalence = measure(plan, args.repeats or plan.rounds, work)
    headline = next(row["stage"] for row in scaling if row["n_traces"] == plan.headline)
    workers = resolve_workers("auto")
    reference = common.summarize(
        reference_samples, "traces/s", "higher", n_traces=plan.headline, threads=1
    )
    quakeshap, all_cores = (
        common.summarize(
            headline[setting]["traces_per_s"],
            "traces/s",
            "higher",
            n_traces=plan.headline,
            workers=n,
        )
        for setting, n in (("one_thread", 1), ("all_cores", workers))
    )
    ratios = {
        "one_thread_vs_reference": common.speedup(reference, quakeshap),
        "all_cores_vs_reference": common.speedup(reference, all_cores),
        "all_cores_vs_one_thread": common.speedup(quakeshap, all_cores),
    }
    details = {
        "all_cores": all_cores,
        "ratios": ratios,
        "scaling": scaling,
        "equivalence": equivalence,
        "notes": NOTES,
    }
    checks = target_checks(plan, scaling, ratios, workers)
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
