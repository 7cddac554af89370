"""Run a stage module in this process and record how long its ``main()`` took.

Usage::

    python -m benchmarks._timed_stage TIMING.json quakeshap.stages.spectrograms [stage arguments]

Writes ``{"import_s", "main_s", "returncode", "peak_rss_mib"}`` to ``TIMING.json`` and
exits with the stage's code. ``import_s`` is the time to import the stage module and the
libraries it imports at the top; ``main_s`` is its ``main(argv)``: the stage's work (read,
compute, write). ``peak_rss_mib`` is this process's high-water resident memory (``VmHWM``,
file-backed mapped pages included), with sampled peaks of its anonymous and file-backed
parts (``peak_rss_anon_mib``, ``peak_rss_file_mib``). They are read here because the
kernel's ``ru_maxrss`` of a child also counts the RSS its parent had when it forked it.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from pathlib import Path


def peak_rss_mib() -> float | None:
    """High-water resident memory of this process (``VmHWM``), MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class MemorySampler(threading.Thread):
    """Samples this process's anonymous and file-backed RSS every ``interval_s`` seconds.

    ``VmHWM`` gives the exact peak but not what it is made of; the samples tell heap
    (``RssAnon``) from mapped files (``RssFile``, e.g. a memory-mapped output array).
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peaks = {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                key = line.split(":", 1)[0]
                if key in self.peaks:
                    self.peaks[key] = max(self.peaks[key], int(line.split()[1]) / 1024.0)
        except OSError:
            pass

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        self.sample()
        return {
            "peak_rss_anon_mib": self.peaks["RssAnon"],
            "peak_rss_file_mib": self.peaks["RssFile"],
        }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    timing_path, module_name = Path(argv[0]), argv[1]
    start = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"cannot import stage module {module_name!r}: {exc}", file=sys.stderr)
        return 2
    imported = time.perf_counter()
    sampler = MemorySampler()
    sampler.start()
    returncode = int(module.main(argv[2:]) or 0)
    done = time.perf_counter()
    memory = sampler.stop()
    timing_path.write_text(
        json.dumps(
            {
                "import_s": imported - start,
                "main_s": done - imported,
                "returncode": returncode,
                "peak_rss_mib": peak_rss_mib(),
                **memory,
            }
        )
    )
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
