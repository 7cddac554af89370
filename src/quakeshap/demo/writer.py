"""Writing the demo data set in the record's layout.

The paths are :mod:`quakeshap.record`'s, the formats those of the raw artefact's owner,
:mod:`quakeshap.artifacts.raw`: one HDF5 file and one attribute table per class, and the
similar-traces pickle. The defects of :func:`quakeshap.demo.demo_catalog` are applied here
(a NaN gap, channels dropped, a trace left out of its HDF5 file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from quakeshap.artifacts.raw import write_attributes, write_similar_traces, write_waveforms
from quakeshap.config import DemoConfig
from quakeshap.demo.catalog import MISSING_IN_HDF5, NAN_GAP, DemoError, demo_catalog
from quakeshap.demo.physics import synthesize_waveforms
from quakeshap.demo.stations import DEMO_STATIONS, station_catalog, station_config
from quakeshap.record import (
    CLASS_NAMES,
    SAMPLING_RATE_HZ,
    attributes_path,
    hdf5_path,
    similar_traces_path,
)

log = logging.getLogger(__name__)

#: the planted NaN gap: 1 s from sample 1000 (10 s into the trace, in the S coda)
NAN_GAP_SAMPLES = slice(1000, 1000 + int(SAMPLING_RATE_HZ))


def write_demo_dataset(cfg: DemoConfig, root: str | Path) -> None:
    """Write the demo data set under ``root`` (``data/raw``) in the record's layout.

    Parameters
    ----------
    cfg
        ``data.demo`` of ``params.yaml``.
    root
        Target folder; the record's files of every station in ``cfg.stations``
        (:mod:`quakeshap.demo.stations`) are (over)written atomically, one by one. The same
        ``cfg`` gives byte-identical files, on any machine, and a station's files do not
        depend on which other stations are listed.
    """
    unknown = [code for code in cfg.stations if code not in DEMO_STATIONS]
    if unknown:
        raise DemoError(
            f"parameter data.demo.stations: unknown station(s) {unknown}; the demo knows "
            f"{sorted(DEMO_STATIONS)}"
        )
    nrca = demo_catalog(cfg)
    for code in cfg.stations:
        _write_station(station_config(cfg, code), station_catalog(cfg, code, nrca), code, root)


def _write_station(cfg: DemoConfig, catalog: pd.DataFrame, code: str, root: str | Path) -> None:
    """One station's HDF5 files, attribute tables and similar-traces table."""
    log.info("demo: synthesising %d traces at %s (seed %d)", len(catalog), code, cfg.seed)
    waveforms = synthesize_waveforms(catalog, cfg)
    waveforms[(catalog["defect"] == NAN_GAP).to_numpy(), :, NAN_GAP_SAMPLES] = np.nan
    for cls in CLASS_NAMES:
        rows = catalog.index[catalog["label"] == cls]
        stored = [i for i in rows if catalog.at[i, "defect"] != MISSING_IN_HDF5]
        write_waveforms(
            hdf5_path(root, code, cls),
            [catalog.at[i, "trace_name"] for i in stored],
            [waveforms[i, : catalog.at[i, "n_channels"]] for i in stored],
        )
        write_attributes(attributes_path(root, code, cls), catalog.loc[rows])
    write_similar_traces(similar_traces_path(root, code), catalog[catalog["associato_ev"] >= 0])
    log.info("demo: wrote the record's files for %s under %s", code, root)
