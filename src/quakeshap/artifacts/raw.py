"""``data/raw/``: the record's layout, as the Zenodo record unpacks (``docs/method.md`` §1).

Per station (paths from :mod:`quakeshap.record`)::

    dset/data/catalogs/<STA>/<STA>_pre.hdf5            one root dataset per trace,
    dset/data/catalogs/<STA>/<STA>_post.hdf5           (3, 2500) float, E, N, Z
    dset/data/catalogs/<STA>/<STA>_pre_attributes.csv  the study's 17 columns
    dset/data/catalogs/<STA>/<STA>_post_attributes.csv
    dset/dataframe_<STA>_SelectedSimilarTraces.csv     a pandas *pickle* (sic)

plus ``MANIFEST.json`` (path, size and sha256 of every file) at the top. The ``download``
stage writes it (the demo generator through the writers here); the ``spectrograms`` stage
reads the catalogue and the waveforms (:mod:`quakeshap.waveforms`), the ``plots`` stage a
few traces (:func:`read_traces`). The similar-traces pickle is read by
:mod:`quakeshap.unpickle`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from quakeshap.artifacts import ArtifactError
from quakeshap.files import atomic_path, write_csv
from quakeshap.record import CATALOG_DIR, hdf5_path

log = logging.getLogger(__name__)

#: where the ``download`` stage puts the record
PATH = Path("data/raw")
#: the inventory of every file under the raw folder
MANIFEST_FILE = "MANIFEST.json"

#: the study's attribute columns, in the study's order
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "trace_start_time",
    "network_code",
    "receiver_name",
    "receiver_type",
    "receiver_elevation_m",
    "receiver_latitude",
    "receiver_longitude",
    "source_id",
    "source_depth_km",
    "source_latitude",
    "source_longitude",
    "source_magnitude",
    "source_origin_time",
    "p_travel_sec",
    "s_travel_sec",
    "p_s_diff_sec",
)
#: the columns of the similar-traces table that quakeshap reads
SIMILAR_COLUMNS: tuple[str, str] = ("trace_name", "associato_ev")
#: HDF5 metadata cache per open file while reading waveforms
METADATA_CACHE_BYTES = 1 << 20


class WaveformError(ArtifactError):
    """The raw data cannot be used as they are (missing file, bad table, unknown station)."""


# --------------------------------------------------------------------------------------
# writing (the demo generator; a download is unpacked as it comes)
# --------------------------------------------------------------------------------------


def write_waveforms(path: Path, names: Sequence[str], waveforms: Sequence[np.ndarray]) -> None:
    """One root dataset per trace, float64, written without timestamps (stable bytes)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as fh:
            for name, data in zip(names, waveforms, strict=True):
                fh.create_dataset(name, data=data, dtype="<f8", track_times=False)


def write_attributes(path: Path, table: pd.DataFrame) -> None:
    """One attribute table: the study's 17 columns in its order."""
    write_csv(path, table.loc[:, list(ATTRIBUTE_COLUMNS)].reset_index(drop=True))


def write_similar_traces(path: Path, table: pd.DataFrame) -> None:
    """The similar-traces table as the record has it: a pandas pickle named ``.csv``."""
    similar = pd.DataFrame(
        {
            "trace_name": table["trace_name"].astype(object).to_numpy(),
            "associato_ev": table["associato_ev"].to_numpy(dtype=np.int64),
        }
    )
    similar["trace_name"] = similar["trace_name"].astype(object)
    # plain object labels too: with pyarrow installed, pandas 3 would pickle the column labels
    # as an ArrowStringArray, which neither the study's pandas nor our restricted loader reads
    similar.columns = pd.Index(list(similar.columns), dtype=object)
    with atomic_path(path) as tmp:
        similar.to_pickle(tmp, compression=None, protocol=4)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def list_stations(raw_root: str | Path) -> list[str]:
    """Stations present under ``<raw_root>/dset/data/catalogs/``, sorted."""
    folder = Path(raw_root) / CATALOG_DIR
    if not folder.is_dir():
        raise WaveformError(
            f"{folder} does not exist: the raw data are missing or not in the Zenodo layout; "
            "run `dvc repro download` first"
        )
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def check_stations(raw_root: str | Path, stations: Sequence[str]) -> None:
    """Fail with the list of stations present when one of ``stations`` is not there."""
    present = list_stations(raw_root)
    unknown = [s for s in stations if s not in present]
    if unknown:
        raise WaveformError(
            f"unknown station(s) {unknown} in parameter spectrogram.stations: "
            f"{Path(raw_root) / CATALOG_DIR} holds {present or 'no station folder'}"
        )


def read_attributes(path: str | Path) -> pd.DataFrame:
    """Read one ``<STA>_<label>_attributes.csv`` and check it has the study's columns.

    Returns the 17 attribute columns in the study's order (other columns are ignored),
    ``trace_name`` and ``source_id`` as text, the rest as pandas infers them; times stay
    text exactly as written.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"trace_name": str, "source_id": str})
    except FileNotFoundError:
        raise WaveformError(
            f"{path}: attribute table missing; run `dvc repro download` "
            "(or check parameter spectrogram.stations)"
        ) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise WaveformError(
            f"{path}: not a readable CSV attribute table ({exc}); "
            "the file is damaged: delete data/raw and run `dvc repro download` again"
        ) from None
    missing = [c for c in ATTRIBUTE_COLUMNS if c not in table.columns]
    if missing:
        raise WaveformError(
            f"{path}: missing column(s) {missing}; an attribute table needs the study's "
            f"17 columns {list(ATTRIBUTE_COLUMNS)}"
        )
    extra = [c for c in table.columns if c not in ATTRIBUTE_COLUMNS]
    if extra:
        log.info("%s: ignoring column(s) %s", path, extra)
    table = table.loc[:, list(ATTRIBUTE_COLUMNS)]
    if table.empty:
        raise WaveformError(f"{path}: lists no trace; a data set needs traces of both classes")
    unnamed = np.flatnonzero(table["trace_name"].isna().to_numpy())
    if len(unnamed):
        raise WaveformError(
            f"{path}: empty trace_name on line(s) {[int(i) + 2 for i in unnamed[:5]]}"
        )
    non_numeric = (
        table["p_s_diff_sec"].notna() & pd.to_numeric(table["p_s_diff_sec"], errors="coerce").isna()
    )
    if non_numeric.any():
        first = table.loc[non_numeric, "trace_name"].iloc[0]
        raise WaveformError(
            f"{path}: column p_s_diff_sec is not numeric (e.g. trace {first}: "
            f"{table.loc[non_numeric, 'p_s_diff_sec'].iloc[0]!r})"
        )
    table["p_s_diff_sec"] = pd.to_numeric(table["p_s_diff_sec"])
    return table


@contextlib.contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    """Open one waveform file for reading, with a small metadata cache."""
    if not path.is_file():
        raise WaveformError(
            f"{path}: HDF5 waveform file missing; run `dvc repro download` "
            "(or check parameter spectrogram.stations)"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WaveformError(
            f"{path}: not a readable HDF5 file ({exc}); the file is damaged: "
            "delete data/raw and run `dvc repro download` again"
        ) from None
    with handle:
        # every trace's object header passes through HDF5's metadata cache once and is not
        # needed again; the default cache holds ~20 MB of them after a few thousand traces
        cache = handle.id.get_mdc_config()
        cache.set_initial_size = True
        cache.initial_size = cache.min_size = cache.max_size = METADATA_CACHE_BYTES
        handle.id.set_mdc_config(cache)
        yield handle


def read_traces(
    raw: str | Path, metadata: pd.DataFrame, trace_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Raw waveforms ``(3, n_samples)`` float64 (E, N, Z) of a few traces, by name.

    The file of each trace follows from its ``receiver_name`` and ``label`` columns of
    ``metadata`` (the spectrogram set's).
    """
    rows = metadata.set_index("trace_name").loc[list(dict.fromkeys(trace_names))]
    out: dict[str, np.ndarray] = {}
    for (station, label), group in rows.groupby(["receiver_name", "label"], sort=True):
        path = hdf5_path(raw, str(station), str(label))
        with open_hdf5(path) as h5:
            for name in group.index:
                if name not in h5:
                    raise WaveformError(
                        f"{path} has no trace {name!r}: data/raw and data/spectrograms are "
                        "from different runs; run `dvc repro`"
                    )
                wave = np.asarray(h5[name][()], dtype=np.float64)
                if wave.ndim != 2 or wave.shape[0] != 3:
                    raise WaveformError(f"{path}:{name} has shape {wave.shape}, expected (3, n)")
                out[name] = wave
    return {name: out[name] for name in trace_names}
