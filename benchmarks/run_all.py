"""Run every benchmark (``make bench``) and summarise the results as Markdown tables.

Each benchmark runs in its own process (no shared caches, threads or memory between them)
and writes ``<results-dir>/<name>.json``; this script then writes ``SUMMARY.md`` next to
them, the tables of the README's "Performance" section. ``--smoke`` runs the tiny
versions (seconds each: that they still run is what the tests check); their numbers mean
nothing. Exit status 1 when a benchmark failed to produce its result (a missed target is
not a failure: the result says so). ``bench_study`` (the study's workload, ``make
bench-study``) is left out on purpose: it runs the whole pipeline at the study's size.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as common
from quakeshap.files import write_text

log = logging.getLogger("benchmarks.run_all")

BENCHMARKS = (
    "spectrograms",
    "training",
    "shap",
    "explainers",
    "faithfulness",
    "workflow",
    "distributed",
    "stations",
)
SUMMARY_FILE = "SUMMARY.md"


def _format(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "report"}[met]


def summary_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: the machine, one row per benchmark, then one row per target check."""
    if not results:
        return "No benchmark results.\n"
    modes = sorted({r["mode"] for r in results})
    lines = [
        f"Machine: {common.describe_machine(results[0]['machine'])}"
        + (
            " (smoke mode: sizes too small for the numbers to mean anything)"
            if "smoke" in modes
            else ""
        ),
        "",
        "| Benchmark | Study's way | quakeshap | Speed-up | Targets met |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ref, qs = r["reference"], r["quakeshap"]
        lines.append(
            f"| {r['name']} | {_format(ref['median'])} {ref['unit']} "
            f"| {_format(qs['median'])} {qs['unit']} | {r['ratio']:.2f}× | {_verdict(r['met'])} |"
        )
    lines += ["", "| Benchmark | Check | Measured | Target | Met |", "|---|---|---|---|---|"]
    for r in results:
        for check in r.get("checks", []):
            lines.append(
                f"| {r['name']} | {check['description']} | {_format(check['value'])} "
                f"| {check['op']} {_format(check['threshold'])} | {_verdict(check['met'])} |"
            )
    return "\n".join(lines) + "\n"


def load_results(results_dir: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """The results present for ``names``, in that order."""
    out = []
    for name in names:
        path = results_dir / f"{name}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def run_benchmark(name: str, smoke: bool, results_dir: Path, workdir: Path | None) -> bool:
    """One benchmark in its own process, its output on ours; True when it wrote a result."""
    command = [sys.executable, "-m", f"benchmarks.bench_{name}", "--results-dir", str(results_dir)]
    if smoke:
        command.append("--smoke")
    if workdir is not None:
        command += ["--workdir", str(workdir / name)]
    started = time.perf_counter()
    code = subprocess.call(command, cwd=common.REPO_ROOT)
    log.info("%s: exit %d after %.0f s", name, code, time.perf_counter() - started)
    return code == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that they run")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated data here")
    parser.add_argument(
        "--summary-only", action="store_true", help="only rewrite SUMMARY.md from the results"
    )
    args = parser.parse_args(argv)
    common.configure_logging()
    names = args.only or BENCHMARKS
    failed = []
    if not args.summary_only:
        for name in names:
            if not run_benchmark(name, args.smoke, args.results_dir, args.workdir):
                failed.append(name)
    table = summary_table(load_results(args.results_dir, names))
    write_text(args.results_dir / SUMMARY_FILE, table)
    print(table)
    if failed:
        log.error("no result from: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
