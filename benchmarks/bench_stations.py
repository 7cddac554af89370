"""Benchmark 7: the nine-station demo at about 80,000 traces, memory flat in the traces.

The nine-station demo (``profiles/stations/nine.yaml``: every event recorded at FDMO, MC2,
MMO1, NRCA, T1212, T1213, T1214, T1216 and T1244) is generated at two sizes, 9,000 and
80,100 traces (1,000 and 8,900 events per station), and measured in fresh processes
(:mod:`benchmarks._timed_stage`: ``main()`` seconds and the process's peak RSS, ``VmHWM``):

spectrograms
    The ``spectrograms`` stage on all nine stations at once (one set of every trace), at
    both sizes: time per trace should stay put (linear time) and peak RSS too (flat).
joining the stations' sets
    At the larger size, each station's set made by its own ``station_spectrograms`` stage,
    then joined into the network set and read once for the channel statistics, two ways
    (:mod:`benchmarks._join_probe`), interleaved round by round: the study's way (every set
    read whole into memory and concatenated) and quakeshap's (memory-mapped sets streamed
    into one memory-mapped file, :func:`quakeshap.stations.network_set`); compared on
    anonymous memory (``peak_rss_anon_mib``), since the pages of a memory-mapped file count
    in ``VmHWM`` while the kernel can drop them at any time.
a training epoch
    The ``network_train`` stage (split by event) at the larger size with two folds of one
    epoch each: the seconds per epoch its log reports, its ``main()`` time and its peak
    RSS. Reported, not targeted: training holds the normalised train split in one float32
    tensor (``docs/method.md`` §3), so its memory grows with the traces by design.

The waveform generation is timed and reported but not part of any target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _common as common
from quakeshap.artifacts import metrics
from quakeshap.artifacts import stations as station_files
from quakeshap.config import DemoConfig
from quakeshap.demo import write_demo_dataset
from quakeshap.demo.stations import DEMO_STATIONS

log = logging.getLogger("benchmarks.stations")

NAME = "stations"
TARGET = (
    "nine stations through spectrograms: time per trace and peak RSS at ~80k traces within "
    "1.2x and 1.25x of those at ~9k (linear time, flat memory); joining the stations' sets "
    "memory-mapped needs <= 0.5x the peak anonymous RSS of reading them whole"
)
CODES = tuple(sorted(DEMO_STATIONS))


@dataclass(frozen=True)
class Plan:
    events: tuple[int, int]  # events per station at the two sizes (pre + post)
    rounds: int  # rounds of the join comparison
    groups: int  # co-located groups of the demo
    codes: tuple[str, ...]  # the stations


FULL = Plan((1_000, 8_900), 2, DemoConfig().n_colocated_groups, CODES)
#: three stations, tiny: the code paths of the full run, in about a minute
SMOKE = Plan((60, 80), 1, 2, CODES[:3])


def _demo(events: int, groups: int, codes: tuple[str, ...]) -> DemoConfig:
    """The nine-station demo with ``events`` events (3:2 pre:post as the default demo)."""
    n_pre = round(events * 0.6)
    return dataclasses.replace(
        DemoConfig(),
        n_pre=n_pre,
        n_post=events - n_pre,
        n_colocated_groups=groups,
        stations=codes,
    )


def timed(work: Path, module: str, argv: list[Any], cwd: Path | None = None) -> dict[str, Any]:
    """``module``'s ``main(argv)`` in a fresh process: seconds, peak RSS, output."""
    timing = work / "timing.json"
    run = common.run_process(
        [sys.executable, "-m", "benchmarks._timed_stage", timing, module, *argv],
        cwd=cwd or common.REPO_ROOT,
        env=common.python_env({"PYTHONPATH": str(common.REPO_ROOT)}),
        timeout_s=7200.0,
    )
    common.check_process(run, f"{module} {' '.join(map(str, argv))}")
    times = json.loads(timing.read_text())
    return {
        "main_s": times["main_s"],
        "wall_s": run.wall_s,
        "peak_rss_mib": times["peak_rss_mib"],
        "peak_rss_anon_mib": times["peak_rss_anon_mib"],
        "peak_rss_file_mib": times["peak_rss_file_mib"],
        "output": run.output,
    }


def spectrograms_at(work: Path, events: int, plan: Plan) -> dict[str, Any]:
    """Generate the demo at one size and run the spectrograms stage on all nine stations."""
    raw = work / f"raw_{events}"
    codes = plan.codes
    cfg = _demo(events, plan.groups, codes)
    started = time.perf_counter()
    write_demo_dataset(cfg, raw)
    generate_s = time.perf_counter() - started
    params = common.write_params(
        common.REPO_ROOT / "params.yaml",
        work / "params_spectrograms.yaml",
        {"spectrogram.stations": list(codes), "data.demo.stations": list(codes)},
    )
    out = work / f"spectrograms_{events}"
    run = timed(
        work,
        "quakeshap.stages.spectrograms",
        ["--params", params, "--raw", raw, "--out", out,
         "--rejected", work / metrics.REJECTED_PATH.name],
    )  # fmt: skip
    n = len(codes) * events
    shutil.rmtree(out, ignore_errors=True)
    return {
        "events_per_station": events,
        "n_traces": n,
        "generate_s": generate_s,
        "main_s": run["main_s"],
        "us_per_trace": 1e6 * run["main_s"] / n,
        "peak_rss_mib": run["peak_rss_mib"],
        "peak_rss_anon_mib": run["peak_rss_anon_mib"],
        "raw": str(raw),
    }


def station_sets(work: Path, raw: Path, params: Path, codes: tuple[str, ...]) -> tuple[Path, float]:
    """Every station's set through its own stage, under ``work``; the seconds they took."""
    total = 0.0
    for code in codes:
        paths = station_files.station_paths(code)
        run = timed(
            work,
            "quakeshap.stages.station_spectrograms",
            [code, "--params", params, "--raw", raw, "--out", work / paths.spectrograms,
             "--rejected", work / paths.rejected],
        )  # fmt: skip
        total += run["main_s"]
    return work / station_files.SPECTROGRAMS_DIR, total


def join_rounds(
    work: Path, sets: Path, rounds: int, codes: tuple[str, ...]
) -> dict[str, list[dict[str, float]]]:
    """Both ways of joining, interleaved: ``{whole: [...], mmap: [...]}``."""
    runs: dict[str, list[dict[str, float]]] = {"whole": [], "mmap": []}
    for _ in range(rounds):
        for mode in runs:
            run = timed(work, "benchmarks._join_probe", [mode, sets, *codes])
            keys = ("main_s", "peak_rss_mib", "peak_rss_anon_mib", "peak_rss_file_mib")
            runs[mode].append({k: run[k] for k in keys})
    return runs


def training_epoch(work: Path, raw: Path, params: Path) -> dict[str, Any]:
    """The network model (split by event), two folds of one epoch, at the larger size."""
    run = timed(
        work,
        "quakeshap.stages.network_train",
        ["event", "--params", params, "--raw", raw,
         "--spectrograms", work / station_files.SPECTROGRAMS_DIR],
        cwd=work,
    )  # fmt: skip
    found = re.findall(r"in ([0-9.]+) s \(([0-9.]+) s/epoch\)", run["output"])
    if not found:
        raise common.BenchmarkError("network_train did not log its seconds per epoch")
    train = json.loads((work / station_files.network_paths("event").train_metrics).read_text())
    return {
        "seconds_per_epoch": float(found[-1][1]),
        "main_s": run["main_s"],
        "peak_rss_mib": run["peak_rss_mib"],
        "n_train_per_fold": {k: v["n_train"] for k, v in train["folds"].items()},
        "n_val_per_fold": {k: v["n_val"] for k, v in train["folds"].items()},
    }


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    with common.scratch_dir(args.workdir, NAME) as work:
        scaling = [spectrograms_at(work, events, plan) for events in plan.events]
        for row in scaling:
            log.info("spectrograms: %s", row)
        raw = Path(scaling[-1].pop("raw"))
        scaling[0].pop("raw")
        params = common.write_params(
            common.REPO_ROOT / "params.yaml",
            work / "params_stations.yaml",
            {
                "data.demo.stations": list(plan.codes),
                "stations.codes": list(plan.codes),
                "stations.network_splits": ["event"],
                "train.n_folds": 2,
                "train.max_epochs": 1,
                "train.patience": 1,
            },
        )
        sets, station_s = station_sets(work, raw, params, plan.codes)
        joins = join_rounds(work, sets, args.repeats or plan.rounds, plan.codes)
        epoch = training_epoch(work, raw, params)
    small, large = scaling
    # anonymous memory: the pages of memory-mapped files count in VmHWM too, but the kernel
    # drops them under pressure; what a set read whole costs is anonymous
    whole = common.summarize([r["peak_rss_anon_mib"] for r in joins["whole"]], "MiB", "lower")
    mmap = common.summarize([r["peak_rss_anon_mib"] for r in joins["mmap"]], "MiB", "lower")
    checks = [
        common.Check(
            "time_per_trace_growth",
            large["us_per_trace"] / small["us_per_trace"],
            "<=",
            1.2,
            f"spectrograms stage time per trace at {large['n_traces']} / at "
            f"{small['n_traces']} traces, nine stations (1 = linear)",
        ),
        common.Check(
            "peak_rss_growth",
            large["peak_rss_mib"] / small["peak_rss_mib"],
            "<=",
            1.25,
            f"spectrograms stage peak RSS at {large['n_traces']} / at {small['n_traces']} "
            "traces, nine stations (1 = flat)",
        ),
        common.Check(
            "join_peak_rss_ratio",
            mmap["median"] / whole["median"],
            "<=",
            0.5,
            f"peak anonymous RSS joining the stations' sets of {large['n_traces']} traces: "
            "memory-mapped / read whole",
        ),
    ]
    details = {
        "scaling": scaling,
        "station_spectrograms_total_s": station_s,
        "join": {
            "whole": joins["whole"],
            "mmap": joins["mmap"],
            "seconds": {
                mode: common.summarize([r["main_s"] for r in rows], "s", "lower")
                for mode, rows in joins.items()
            },
        },
        "network_training": epoch,
        "stations": list(plan.codes),
    }
    return common.make_result(NAME, args, whole, mmap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
