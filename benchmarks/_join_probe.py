"""Join every station's spectrogram set into one, two ways (``benchmarks/bench_stations.py``).

``main(["whole", FOLDER, STA, ...])``: the study's way, every set read whole into memory
and concatenated (``numpy.load`` without memory-mapping, ``numpy.concatenate``).
``main(["mmap", FOLDER, STA, ...])``: quakeshap's, :func:`quakeshap.stations.network_set`
(memory-mapped sets streamed into one memory-mapped file). Either way the joined images are
then read once, chunk by chunk, for the per-channel statistics a training run computes
first (:func:`quakeshap.training_data.channel_statistics`), so that both touch every byte.
Run through :mod:`benchmarks._timed_stage`, which reports the time and the peak memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.stations import load_station_sets, network_set
from quakeshap.training_data import channel_statistics


def main(argv: list[str] | None = None) -> int:
    mode, folder, *codes = argv or []
    if mode == "whole":
        sets = [spectrogram_set.load(Path(folder) / code) for code in codes]
        images = np.concatenate([s.images for s in sets])
        channel_statistics(images)
        return 0
    if mode != "mmap":
        raise SystemExit(f"unknown mode {mode!r}: whole or mmap")
    with network_set(load_station_sets(folder, codes)) as joined:
        channel_statistics(joined.images)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
