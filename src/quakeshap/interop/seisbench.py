"""A run's data as two SeisBench data sets: ``python -m quakeshap.interop.seisbench export``.

::

    python -m quakeshap.interop.seisbench export --out exports/seisbench
        [--raw data/raw] [--spectrograms data/spectrograms]

writes, atomically (a temporary sibling renamed when complete), two SeisBench
``WaveformDataset`` folders (format: :mod:`quakeshap.interop.seisbench_dataset`) holding the
traces of the spectrogram set, in its order, with its ``split`` and ``label``:

``<out>/waveforms/``
    The raw traces as the record has them: ``(3, 2500)`` float64 counts, components E, N, Z
    (``data_format``: ``dimension_order`` ``CW``, ``component_order`` ``ENZ``,
    ``sampling_rate`` 100, ``measurement`` velocity, ``unit`` counts), P at sample 500.
``<out>/spectrograms/``
    The images the model saw: ``(3, 33, 96)`` float32 in [0, 1] per trace
    (``dimension_order`` ``CHW``: component E/N/Z, frequency, time; ``component_order``
    ``ENZ``). The time axis is SeisBench's ``W``: ``sampling_rate`` is the image's columns
    per second (100/13 Hz at the study's settings), ``trace_start_time`` the time of the
    first column's centre, and the arrival samples are column positions (P at 36.0 for the
    study's images). ``data_format`` also holds ``frequency_hz`` (the rows) and ``time_s``
    (the columns, seconds from the trace start).

Both tables have the SeisBench columns (``trace_name``, ``trace_start_time``,
``trace_sampling_rate_hz``, ``trace_npts``, ``trace_p_arrival_sample``,
``trace_s_arrival_sample``, ``station_*``, ``source_*``, ``split``), quakeshap's ``label``,
``associato`` and (for a time-to-failure or magnitude set) ``target``, and the study's
travel-time columns under their own names. ``data.source: seisbench`` reads the waveform
folder back into the record's layout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts import ArtifactError, raw
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import ConfigError
from quakeshap.files import atomic_dir
from quakeshap.interop.seisbench_dataset import (
    COMPONENT_ORDER,
    RECORD_TO_SEISBENCH,
    TRAVEL_TIME_COLUMNS,
    SeisbenchError,
    iso_utc,
    write_dataset,
)
from quakeshap.record import (
    CLASS_NAMES,
    P_ARRIVAL_SAMPLE,
    SAMPLING_RATE_HZ,
    TRACE_SAMPLES,
    hdf5_path,
)

log = logging.getLogger("quakeshap.interop.seisbench")

#: the two data sets of an export, folders under ``--out``
WAVEFORMS_DATASET = "waveforms"
SPECTROGRAMS_DATASET = "spectrograms"
#: quakeshap's own columns carried into both tables, when the set has them
OWN_COLUMNS: tuple[str, ...] = ("split", "label", "associato", "target")

#: ``data_format`` of the waveform data set: the record's traces as they are
WAVEFORM_FORMAT: dict[str, object] = {
    "sampling_rate": SAMPLING_RATE_HZ,
    "component_order": COMPONENT_ORDER,
    "dimension_order": "CW",
    "measurement": "velocity",
    "unit": "counts",
    "instrument_response": "not restituted",
}


def seisbench_table(metadata: pd.DataFrame) -> pd.DataFrame:
    """The SeisBench columns of the spectrogram set's rows, for the waveform data set.

    ``metadata`` is ``metadata.csv`` of the set; times become ISO 8601 UTC, the S arrival
    the exact sample ``500 + 100 p_s_diff_sec`` (a float, as in INSTANCE).
    """
    table = pd.DataFrame({"trace_name": metadata["trace_name"].astype(str).to_numpy()})
    for column in OWN_COLUMNS:
        if column in metadata.columns:
            table[column] = metadata[column].to_numpy()
    table["trace_start_time"] = iso_utc(metadata["trace_start_time"])
    table["trace_sampling_rate_hz"] = SAMPLING_RATE_HZ
    table["trace_npts"] = TRACE_SAMPLES  # the record's length; the export writes each one's
    table["trace_p_arrival_sample"] = P_ARRIVAL_SAMPLE
    ps = pd.to_numeric(metadata["p_s_diff_sec"], errors="coerce").to_numpy(np.float64)
    table["trace_s_arrival_sample"] = P_ARRIVAL_SAMPLE + ps * SAMPLING_RATE_HZ
    for study, name in RECORD_TO_SEISBENCH.items():
        if name in table.columns:
            continue
        values = metadata[study]
        table[name] = iso_utc(values) if study == "source_origin_time" else values.to_numpy()
    for study, name in TRAVEL_TIME_COLUMNS.items():
        table[name] = metadata[study].to_numpy()
    return table


def spectrogram_table(waveforms: pd.DataFrame, time_s: np.ndarray) -> pd.DataFrame:
    """The spectrogram data set's table: the waveform table with its time axis moved to
    the image's columns (``W``): start at the first column, rate in columns per second,
    arrivals as column positions."""
    step_s = float(time_s[1] - time_s[0])
    table = waveforms.copy()
    start = pd.to_datetime(table["trace_start_time"], utc=True, format="ISO8601")
    first = start + pd.to_timedelta(round(float(time_s[0]) * 1e9), unit="ns")
    table["trace_start_time"] = iso_utc(pd.Series(first))
    table["trace_sampling_rate_hz"] = 1.0 / step_s
    for column in ("trace_p_arrival_sample", "trace_s_arrival_sample"):
        seconds = table[column].to_numpy(np.float64) / SAMPLING_RATE_HZ
        table[column] = (seconds - float(time_s[0])) / step_s
    table["trace_npts"] = len(time_s)
    return table


@contextlib.contextmanager
def raw_traces(raw_root: Path, metadata: pd.DataFrame) -> Iterator[dict[str, h5py.Dataset]]:
    """The HDF5 dataset of every trace of ``metadata``, found in its station's pre or post
    file (a wrong-boundary control labels traces against their file), files kept open."""
    found: dict[str, h5py.Dataset] = {}
    wanted = set(metadata["trace_name"].astype(str))
    with contextlib.ExitStack() as stack:
        for station in sorted(set(metadata["station_code"].astype(str))):
            for label in CLASS_NAMES:
                path = hdf5_path(raw_root, station, label)
                handle = stack.enter_context(raw.open_hdf5(path))
                found.update({n: handle[n] for n in wanted.intersection(handle.keys())})
        missing = sorted(wanted - set(found))
        if missing:
            raise SeisbenchError(
                f"{raw_root} lacks {len(missing)} trace(s) of the spectrogram set, e.g. "
                f"{missing[:3]}: data/raw and data/spectrograms are from different runs; "
                "run `dvc repro`"
            )
        yield found


def export(raw_root: Path, spectrograms: Path, out: Path) -> int:
    """Write the two data sets of a run under ``out`` (module docstring); returns the
    number of traces."""
    sset = spectrogram_set.load(spectrograms, mmap=True)
    metadata = sset.metadata
    waveforms = seisbench_table(metadata)
    names = waveforms["trace_name"].tolist()
    with raw_traces(raw_root, metadata) as traces, atomic_dir(out) as tmp:
        waveforms["trace_npts"] = [traces[n].shape[-1] for n in names]
        folder = tmp / WAVEFORMS_DATASET
        folder.mkdir()
        arrays = (np.asarray(traces[n][()], dtype=np.float64) for n in names)
        write_dataset(folder, waveforms, arrays, WAVEFORM_FORMAT)
        folder = tmp / SPECTROGRAMS_DATASET
        folder.mkdir()
        images = (sset.as_float(np.array([i]))[0] for i in range(len(sset)))
        image_format = {
            "sampling_rate": 1.0 / float(sset.time_s[1] - sset.time_s[0]),
            "component_order": COMPONENT_ORDER,
            "dimension_order": "CHW",
            "measurement": "spectrogram",
            "unit": "log10 power, min-max scaled to [0, 1] over E, N, Z together",
            "frequency_hz": sset.frequency_hz,
            "time_s": sset.time_s,
            "quantization": str(sset.axes.get("quantization", "float32")),
        }
        write_dataset(folder, spectrogram_table(waveforms, sset.time_s), images, image_format)
    log.info("%s: %d traces as SeisBench data sets (waveforms, spectrograms)", out, len(names))
    return len(names)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", help="write a run's traces as SeisBench data sets")
    out.add_argument("--out", type=Path, required=True, help="folder to create (replaced)")
    out.add_argument("--raw", type=Path, default=raw.PATH)
    out.add_argument("--spectrograms", type=Path, default=spectrogram_set.PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        export(args.raw, args.spectrograms, args.out)
    except (ArtifactError, ConfigError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
