"""Benchmark 1 (issue 6): the ``spectrograms`` stage against the study's per-trace loop.

Same raw data for both (a demo pool replicated to the sizes below, in the record's
layout; warm page cache for every contender):

reference
    :func:`benchmarks.reference.spectrograms.run_study_loop`: scipy per trace and channel,
    one ``plt.imsave`` PNG per trace, then ``metadata.csv``.
quakeshap
    ``stages/spectrograms.py`` in a fresh process (through :mod:`benchmarks._timed_stage`):
    its ``main()`` time is the stage's work (read, validate, compute, write); the process's
    wall time and its peak RSS (``VmHWM``) are recorded too.
floor
    :func:`benchmarks._data.read_floor`: only reading the same waveforms from the HDF5
    files, the fastest of three ways (h5py's high-level API, its low-level read, byte
    offsets + a memory map of the file).

Throughput is listed traces per second. At 2k, 10k and 50k traces the stage's time and
peak RSS show whether time grows linearly and memory stays flat.
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

log = logging.getLogger("benchmarks.spectrograms")

NAME = "spectrograms"
TARGET = (
    "stage throughput >= 20x the study's per-trace loop; stage time <= 2x reading the "
    "waveforms; linear time and flat peak RSS over 2k, 10k, 50k traces"
)


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # listed traces per data set
    headline: int  # the size the ratios are quoted at (one of sizes)
    repeats: int  # per size up to the headline; larger sizes run once
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
            common.REPO_ROOT / "stages" / "spectrograms.py",
            "--params",
            params,
            "--raw",
            raw,
            "--out",
            out,
            "--rejected",
            work / "rejected.csv",
        ],
        cwd=common.REPO_ROOT,
        env=common.python_env(),
    )
    common.check_process(run, f"stages/spectrograms.py on {raw}")
    times = json.loads(timing.read_text())
    return {
        "main_s": times["main_s"],
        "import_s": times["import_s"],
        "wall_s": run.wall_s,
        "peak_rss_mib": times["peak_rss_mib"],
        "peak_rss_anon_mib": times["peak_rss_anon_mib"],
        "peak_rss_file_mib": times["peak_rss_file_mib"],
    }


def compare_outputs(reference_dir: Path, stage_out: Path, n_compare: int) -> dict[str, Any]:
    """Reference PNG values against the stage's ``images.npy`` for the first traces."""
    import numpy as np

    from quakeshap.dataset import load_spectrogram_set

    stage = load_spectrogram_set(stage_out, mmap=True)
    names = stage.metadata["trace_name"].to_numpy()[:n_compare]
    worst, differing, total = 0, 0, 0
    for row, name in enumerate(names):
        reference = read_study_png(reference_dir / f"{name}.png").astype(np.int16)
        delta = np.abs(reference - stage.images[row].astype(np.int16))
        worst = max(worst, int(delta.max()))
        differing += int((delta > 0).sum())
        total += delta.size
    return {
        "n_traces_compared": len(names),
        "max_abs_difference_uint8": worst,
        "fraction_of_pixels_differing": differing / max(total, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    repeats = args.repeats or plan.repeats
    params = common.REPO_ROOT / "params.yaml"
    with common.scratch_dir(args.workdir, NAME) as work:
        pool = write_pool(work / "pool", *plan.pool, defects=plan.pool_defects)
        scaling: list[dict[str, Any]] = []
        headline_out = work / f"out_{plan.headline}"
        stage_samples: list[float] = []
        for n in plan.sizes:
            raw = work / f"raw_{n}"
            replicate_raw(pool, raw, n)
            runs = []
            reads: dict[str, list[float]] = {how: [] for how in READ_STRATEGIES}
            for _ in range(repeats if n <= plan.headline else 1):
                for how in READ_STRATEGIES:
                    reads[how].append(
                        common.time_call(lambda raw=raw, h=how: read_floor(raw, h))[0]
                    )
                runs.append(run_stage(raw, work / f"out_{n}", work, params))
            main_s = statistics.median(r["main_s"] for r in runs)
            read_s = {how: statistics.median(seconds) for how, seconds in reads.items()}
            floor_s = min(read_s.values())
            scaling.append(
                {
                    "n_traces": n,
                    "stage_main_s": main_s,
                    "stage_wall_s": statistics.median(r["wall_s"] for r in runs),
                    "stage_import_s": statistics.median(r["import_s"] for r in runs),
                    "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                    "peak_rss_anon_mib": max(r["peak_rss_anon_mib"] for r in runs),
                    "peak_rss_file_mib": max(r["peak_rss_file_mib"] for r in runs),
                    "read_floor_s": floor_s,
                    "read_s": read_s,
                    "stage_over_floor": main_s / floor_s,
                    "us_per_trace": 1e6 * main_s / n,
                    "repeats": len(runs),
                }
            )
            log.info("%d traces: %s", n, scaling[-1])
            if n == plan.headline:
                stage_samples = [n / r["main_s"] for r in runs]
            else:
                shutil.rmtree(work / f"out_{n}", ignore_errors=True)
            if n > plan.headline:
                shutil.rmtree(raw, ignore_errors=True)

        reference_samples = []
        for _ in range(repeats):
            png_dir = work / "reference_png"
            shutil.rmtree(png_dir, ignore_errors=True)
            seconds, _ = common.time_call(
                lambda png_dir=png_dir: run_study_loop(work / f"raw_{plan.headline}", png_dir)
            )
            reference_samples.append(plan.headline / seconds)
        equivalence = compare_outputs(work / "reference_png", headline_out, plan.n_compare)

    at = {row["n_traces"]: row for row in scaling}
    smallest, largest = at[min(plan.sizes)], at[max(plan.sizes)]
    reference = common.summarize(reference_samples, "traces/s", "higher", n_traces=plan.headline)
    quakeshap = common.summarize(stage_samples, "traces/s", "higher", n_traces=plan.headline)
    checks = [
        common.Check(
            "speedup_vs_reference",
            common.speedup(reference, quakeshap),
            ">=",
            20.0,
            f"stage main() throughput / study loop throughput at {plan.headline} traces",
        ),
        common.Check(
            "stage_over_read_floor",
            at[plan.headline]["stage_over_floor"],
            "<=",
            2.0,
            f"stage main() time / time to only read the waveforms, {plan.headline} traces",
        ),
        common.Check(
            "time_per_trace_growth",
            largest["us_per_trace"] / smallest["us_per_trace"],
            "<=",
            1.2,
            f"time per trace at {largest['n_traces']} / at {smallest['n_traces']} traces "
            "(1 = linear)",
        ),
        common.Check(
            "peak_rss_growth",
            largest["peak_rss_mib"] / smallest["peak_rss_mib"],
            "<=",
            1.25,
            f"peak RSS at {largest['n_traces']} / at {smallest['n_traces']} traces (1 = flat)",
        ),
    ]
    details = {
        "scaling": scaling,
        "equivalence": equivalence,
        "notes": (
            "Throughput counts listed traces. quakeshap = the stage's main() in a fresh "
            "process (interpreter start-up and imports excluded, listed as stage_import_s; "
            "stage_wall_s includes them). Peak RSS = VmHWM of that process, file-backed "
            "mapped pages included. Raw data: a "
            "demo pool replicated to each size, read from a warm page cache by every "
            "contender."
        ),
    }
    return common.make_result(
        NAME, "smoke" if args.smoke else "full", reference, quakeshap, TARGET, checks, details
    )


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def main() -> int:
    return common.main_wrapper(run, build_parser())


if __name__ == "__main__":
    sys.exit(main())
