"""A stand-in stage that only touches memory: what :mod:`benchmarks._timed_stage` measures.

``main(["300"])`` allocates 300 MiB and writes to every page of it, then returns 0; with
no argument it does nothing. ``tests/test_benchmarks.py`` runs it through the timer to
check that the peak memory reported is the stage process's own, not its parent's.
"""

from __future__ import annotations

import sys

PAGE_BYTES = 4096


def main(argv: list[str] | None = None) -> int:
    mib = int(argv[0]) if argv else 0
    block = bytearray(mib * 2**20)
    block[::PAGE_BYTES] = b"x" * len(block[::PAGE_BYTES])  # resident, not just reserved
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
