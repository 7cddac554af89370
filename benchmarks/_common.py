"""What every benchmark shares: the machine, timing, peak memory, and the result file.

A result file ``benchmarks/results/<name>.json`` holds::

    name        the benchmark ("spectrograms", "training", ...)
    mode        "full" or "smoke" (smoke results only show that the code runs)
    machine     cores, CPU model, memory, GPU if any, library versions
    reference   {median, unit, samples, ...}: the study's way
    quakeshap   {median, unit, samples, ...}: quakeshap's way, same data, same run
    ratio       speed-up of quakeshap over the reference (> 1 = quakeshap is faster)
    target      the target, in words
    checks      [{name, value, op, threshold, met, description}]: every target as a number
    met         all checks met (null when the benchmark only reports)
    details     whatever else the benchmark measured (scaling tables, profiles, ...)

Timings are never asserted by the tests: :func:`validate_result` checks the form only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from quakeshap.files import write_json

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCHEMA_VERSION = 1
#: about how many traces the study's selection explains (docs/method.md §4: 300 per class,
#: the misclassified, two examples, weekly top-ups); one-off set-up costs are spread over it
STUDY_SELECTION = 650
REQUIRED_KEYS = ("name", "mode", "machine", "reference", "quakeshap", "ratio", "target", "met")


class BenchmarkError(RuntimeError):
    """A benchmark could not run (missing piece of quakeshap, failing subprocess, ...)."""


# --------------------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("quakeshap", "numpy", "scipy", "h5py", "pandas", "torch", "shap", "dvc"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """Describe the machine the numbers come from: cores, CPU model, memory, GPU."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = {
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        }
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": _memory_gib(),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "torch_threads": torch.get_num_threads(),
        # other work on the machine skews timings: the 1-minute load average now
        "load_average_1m": _load_average(),
        "versions": _versions(),
    }


def describe_machine(machine: dict[str, Any]) -> str:
    """One line for tables: ``2 cores, AMD EPYC, 23.4 GiB, no GPU``."""
    gpu = machine.get("gpu")
    gpu_text = f"GPU {gpu['name']}" if gpu else "no GPU"
    return (
        f"{machine.get('usable_cores')} cores, {machine.get('cpu_model')}, "
        f"{machine.get('memory_gib')} GiB, {gpu_text}"
    )


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------


def summarize(
    samples: Sequence[float], unit: str, better: Literal["higher", "lower"], **extra: Any
) -> dict[str, Any]:
    """Median and spread of repeated measurements, with what "better" means for them."""
    values = [float(v) for v in samples]
    if not values:
        raise BenchmarkError(f"no samples to summarise for unit {unit!r}")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": values,
        "unit": unit,
        "better": better,
        **extra,
    }


def speedup(reference: dict[str, Any], quakeshap: dict[str, Any]) -> float:
    """How many times faster quakeshap is (> 1 = faster), whatever the units' direction."""
    if reference["unit"] != quakeshap["unit"] or reference["better"] != quakeshap["better"]:
        raise BenchmarkError(
            f"cannot compare {reference['unit']} ({reference['better']} is better) with "
            f"{quakeshap['unit']} ({quakeshap['better']} is better)"
        )
    r, q = reference["median"], quakeshap["median"]
    return q / r if reference["better"] == "higher" else r / q


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@dataclass(frozen=True)
class Check:
    """One target as a number: ``value op threshold`` (e.g. speed-up >= 20)."""

    name: str
    value: float
    op: Literal[">=", "<="]
    threshold: float
    description: str

    @property
    def met(self) -> bool:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": float(self.value),
            "op": self.op,
            "threshold": float(self.threshold),
            "met": self.met,
            "description": self.description,
        }


@dataclass(frozen=True)
class ProcessRun:
    """A finished subprocess: wall time, exit status, output (stdout and stderr), and the
    seconds after the start at which each output line arrived."""

    wall_s: float
    returncode: int
    output: str
    line_times: tuple[tuple[float, str], ...] = ()


def run_process(
    cmd: Sequence[str],
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 3600.0,
    log_path: Path | None = None,
    heartbeat_s: float = 30.0,
) -> ProcessRun:
    """Run ``cmd`` to completion and measure its wall time and when each line was printed.

    With ``log_path``, every line also goes to that file as it arrives, after its seconds
    since the start and a tab, with a :data:`HEARTBEAT` line every ``heartbeat_s`` seconds
    and an :data:`EXIT` line at the end: a run stopped from outside (the machine shut down)
    leaves a record of how far it got, to the heartbeat (:func:`read_process_log`).

    Peak memory is not measured here: on Linux a child's ``ru_maxrss`` includes the RSS
    its parent had at fork time. A process that matters reports its own high-water mark
    (:mod:`benchmarks._timed_stage`).
    """
    start = time.perf_counter()
    stamped: list[tuple[float, str]] = []
    log_file = None if log_path is None else open(log_path, "w", encoding="utf-8")
    lock = threading.Lock()

    def record(line: str, keep: bool = True) -> None:
        t = time.perf_counter() - start
        with lock:
            if keep:
                stamped.append((t, line))
            if log_file is not None:
                log_file.write(f"{t:.3f}\t{line}\n")
                log_file.flush()

    proc = subprocess.Popen(
        list(map(str, cmd)),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            record(line.rstrip("\n"))

    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat_s):
            record(HEARTBEAT, keep=False)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if log_file is not None:
        threading.Thread(target=beat, daemon=True).start()
    try:
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchmarkError(f"{' '.join(map(str, cmd))} ran past {timeout_s:.0f} s") from None
        wall_s = time.perf_counter() - start
        reader.join()
        record(f"{EXIT} {returncode}", keep=False)
    finally:
        done.set()
        if log_file is not None:
            with lock:
                log_file.close()
                log_file = None
    output = "".join(line + "\n" for _, line in stamped)
    return ProcessRun(wall_s, returncode, output, tuple(stamped))


#: :func:`run_process`'s log: the line written every ``heartbeat_s``, and the last line's start
HEARTBEAT = "# heartbeat"
EXIT = "# exit"


def read_process_log(path: Path) -> tuple[ProcessRun, bool]:
    """A :func:`run_process` log read back: the run (``wall_s`` its exit, or for a run that
    never got there its last line or heartbeat; ``returncode`` -1 then), and whether it
    exited."""
    stamped: list[tuple[float, str]] = []
    last, returncode = 0.0, None
    for raw in path.read_text(encoding="utf-8").splitlines():
        seconds, sep, line = raw.partition("\t")
        if not sep:
            continue
        last = float(seconds)
        if line.startswith(EXIT):
            returncode = int(line.split()[-1])
        elif line != HEARTBEAT:
            stamped.append((last, line))
    output = "".join(line + "\n" for _, line in stamped)
    exited = returncode is not None
    return ProcessRun(last, returncode if exited else -1, output, tuple(stamped)), exited


def check_process(run: ProcessRun, what: str) -> ProcessRun:
    """Raise :class:`BenchmarkError` with the output's tail when ``run`` failed."""
    if run.returncode != 0:
        tail = "\n".join(run.output.strip().splitlines()[-20:])
        raise BenchmarkError(f"{what} failed with exit code {run.returncode}:\n{tail}")
    return run


def write_params(source: Path, target: Path, overrides: dict[str, Any]) -> Path:
    """Write ``source`` (a ``params.yaml``) to ``target`` with existing dotted keys changed
    (``{"spectrogram.workers": 1}``); returns ``target``. Comments are not kept."""
    params = yaml.safe_load(source.read_text())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        section = params
        for name in parents:
            section = section[name]
        if leaf not in section:
            raise BenchmarkError(f"{source} has no key {dotted}")
        section[leaf] = value
    target.write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: this interpreter's ``bin`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------
# the result file
# --------------------------------------------------------------------------------------


def make_result(
    name: str,
    mode: str | argparse.Namespace,
    reference: dict[str, Any],
    quakeshap: dict[str, Any],
    target: str,
    checks: Sequence[Check],
    details: dict[str, Any] | None = None,
    report_only: bool = False,
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a result dict (see the module docstring); ``met`` is null when report-only.

    ``mode`` is ``"smoke"`` or ``"full"``, or the parsed arguments that say which.
    """
    if isinstance(mode, argparse.Namespace):
        mode = "smoke" if mode.smoke else "full"
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "mode": mode,
        "machine": machine if machine is not None else machine_info(),
        "reference": reference,
        "quakeshap": quakeshap,
        "ratio": speedup(reference, quakeshap),
        "target": target,
        "checks": [c.as_dict() for c in checks],
        "met": None if report_only else all(c.met for c in checks),
        "details": details or {},
    }


def validate_result(result: Any) -> list[str]:
    """Problems with a result's form (empty list = well formed). Never looks at speed."""
    problems: list[str] = []
    if not isinstance(result, dict):
        return [f"result is a {type(result).__name__}, not an object"]
    problems += [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in result]
    if problems:
        return problems
    if not isinstance(result["name"], str) or not result["name"]:
        problems.append("name must be a non-empty string")
    if result["mode"] not in ("full", "smoke"):
        problems.append(f"mode {result['mode']!r} is neither 'full' nor 'smoke'")
    machine = result["machine"]
    if not isinstance(machine, dict) or not {"cpu_model", "cores", "gpu"} <= set(machine):
        problems.append("machine must name cpu_model, cores and gpu")
    for side in ("reference", "quakeshap"):
        block = result[side]
        if not isinstance(block, dict):
            problems.append(f"{side} is not an object")
            continue
        median = block.get("median")
        if not isinstance(median, int | float) or not median > 0:
            problems.append(f"{side}.median must be a positive number, got {median!r}")
        if not isinstance(block.get("unit"), str) or not block.get("unit"):
            problems.append(f"{side}.unit must be a non-empty string")
        if block.get("better") not in ("higher", "lower"):
            problems.append(f"{side}.better must be 'higher' or 'lower'")
    if not isinstance(result["ratio"], int | float) or not result["ratio"] > 0:
        problems.append(f"ratio must be a positive number, got {result['ratio']!r}")
    if not isinstance(result["target"], str) or not result["target"]:
        problems.append("target must be a non-empty string")
    checks = result.get("checks", [])
    if not isinstance(checks, list):
        problems.append("checks must be a list")
        checks = []
    for check in checks:
        if not isinstance(check, dict) or {"name", "value", "op", "threshold", "met"} - set(check):
            problems.append(f"malformed check {check!r}")
    if result["met"] is not None:
        if not isinstance(result["met"], bool):
            problems.append("met must be true, false or null")
        elif checks and result["met"] != all(c.get("met") for c in checks):
            problems.append("met disagrees with the checks")
    return problems


def write_result(result: dict[str, Any], results_dir: str | Path | None = None) -> Path:
    """Validate and write ``<results_dir>/<name>.json`` atomically; return its path."""
    problems = validate_result(result)
    if problems:
        raise BenchmarkError(f"malformed result for {result.get('name')!r}: {problems}")
    path = Path(results_dir if results_dir is not None else RESULTS_DIR) / f"{result['name']}.json"
    write_json(path, result)
    verdict = {True: "met", False: "NOT met", None: "report"}[result["met"]]
    log.info(
        "%s: quakeshap %.4g %s vs reference %.4g %s: ratio %.2f (%s) → %s",
        result["name"],
        result["quakeshap"]["median"],
        result["quakeshap"]["unit"],
        result["reference"]["median"],
        result["reference"]["unit"],
        result["ratio"],
        verdict,
        path,
    )
    return path


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def make_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repetition: checks that it runs"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where <name>.json goes (default {RESULTS_DIR.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repetitions per measurement (median kept)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch folder for generated data (default: a temporary folder, removed after)",
    )
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@contextlib.contextmanager
def scratch_dir(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` when given (kept), else a temporary folder removed afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=f"quakeshap-bench-{prefix}-") as tmp:
        yield Path(tmp)


def main_wrapper(run: Callable[[argparse.Namespace], dict[str, Any]], parser: Any) -> int:
    """Parse arguments, run, write the result; a :class:`BenchmarkError` is one line, exit 1."""
    args = parser.parse_args()
    configure_logging()
    load_at_start = _load_average()
    try:
        result = run(args)
        result["machine"]["load_average_1m_at_start"] = load_at_start
        write_result(result, args.results_dir)
    except BenchmarkError as exc:
        log.error("%s", exc)
        return 1
    return 0
