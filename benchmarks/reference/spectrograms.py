"""The study's spectrogram step (docs/method.md §2): a Python loop over traces, one PNG per
trace.

For every row of the station's pre and post attribute tables the study read the trace from
the HDF5 file, computed ``scipy.signal.spectrogram`` channel by channel on the first 13 s,
took ``log10(S + 1e-10)``, min–max normalised the three channels together, stacked them as
an RGB image ``(33, 96, 3)`` (E→R, N→G, Z→B) and wrote it with ``matplotlib.pyplot.imsave``;
a metadata table (attributes + label, split, filename, week) described the PNG files. The
record's layout, class names, channel order and sampling rate come from
:mod:`quakeshap.record`; the arithmetic is the study's own.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib import image as mpimg
from scipy import signal
from sklearn.model_selection import train_test_split

from quakeshap.artifacts.spectrograms import METADATA_FILE
from quakeshap.record import CHANNELS, CLASS_NAMES, SAMPLING_RATE_HZ, attributes_path, hdf5_path

#: the study wrote ``noverlap=64*0.8`` (51.2); scipy truncated it to 51, i.e. a 13-sample hop
STUDY_NOVERLAP = int(64 * 0.8)


def study_image(
    waveform: np.ndarray,
    sampling_rate_hz: float = SAMPLING_RATE_HZ,
    n_samples: int = 1300,
    nperseg: int = 64,
    noverlap: int = STUDY_NOVERLAP,
    log_floor: float = 1e-10,
) -> np.ndarray:
    """One trace's RGB spectrogram as the study computed it.

    Parameters
    ----------
    waveform
        ``(3, n)`` counts, channels E, N, Z, ``n >= n_samples``.

    Returns
    -------
    numpy.ndarray
        ``(33, 96, 3)`` float64 in [0, 1] for the study's settings: (frequency, time, E/N/Z).
    """
    channels = []
    for component in range(len(CHANNELS)):
        _, _, power = signal.spectrogram(
            waveform[component, :n_samples], fs=sampling_rate_hz, nperseg=nperseg, noverlap=noverlap
        )
        channels.append(np.log10(power + log_floor))
    image = np.stack(channels, axis=-1)
    return (image - image.min()) / (image.max() - image.min())


def run_study_loop(
    raw_root: str | Path, out_dir: str | Path, station: str = "NRCA"
) -> pd.DataFrame:
    """Write one PNG per trace and the metadata table into ``out_dir``, the study's way.

    Parameters
    ----------
    raw_root
        The extracted record: holds ``dset/data/catalogs/<station>/``.
    out_dir
        Created if needed; receives ``<trace_name>.png`` and the metadata table
        (:data:`~quakeshap.artifacts.spectrograms.METADATA_FILE`, as the study named it).

    Returns
    -------
    pandas.DataFrame
        The metadata written, one row per PNG, in the order traces were processed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for label in CLASS_NAMES:
        table = pd.read_csv(attributes_path(raw_root, station, label))
        tables.append(table.assign(label=label, filename=table["trace_name"] + ".png"))
    listed = pd.concat(tables, ignore_index=True)
    # the study split all listed rows (its published 4661/1165 implies the split came
    # before the 4 malformed traces were dropped)
    train, _ = train_test_split(listed, test_size=0.2, random_state=42)
    listed["split"] = np.where(listed.index.isin(train.index), "train", "test")
    start = pd.to_datetime(listed["trace_start_time"], format="ISO8601", utc=True)
    listed["week"] = start.dt.isocalendar().week.astype(int)
    written = []
    for label in CLASS_NAMES:
        with h5py.File(hdf5_path(raw_root, station, label), "r") as h5:
            for row in listed[listed["label"] == label].itertuples():
                if row.trace_name not in h5:
                    continue
                waveform = h5[row.trace_name][()]
                if waveform.ndim != 2 or waveform.shape[0] < 3:
                    continue  # the study dropped the traces with missing channels
                if not np.isfinite(waveform).all():
                    continue  # none in the record; the demo plants some
                mpimg.imsave(out / row.filename, study_image(waveform))
                written.append(row.Index)
    metadata = listed.loc[written].reset_index(drop=True)
    metadata.to_csv(out / METADATA_FILE, index=False)
    return metadata


def read_study_png(path: str | Path) -> np.ndarray:
    """A PNG written by :func:`run_study_loop` as ``(3, 33, 96)`` uint8 (quakeshap's layout)."""
    rgba = mpimg.imread(path)  # float32 k/255
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8).transpose(2, 0, 1)
