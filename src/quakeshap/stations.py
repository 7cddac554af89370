"""Many stations through the same DAG (``docs/stations.md``, ``docs/method.md`` §12).

The study used one station; its sibling study trained on nine. Here every station listed
in ``stations.codes`` gets its own stage set (``dvc.yaml``'s ``foreach``: spectrograms,
train, evaluate, explain), each network split in ``stations.network_splits`` a model
trained on all of them, and a transfer matrix puts every model on every station's test set.

- :func:`check_layout`: the listed stations, their files and their trace names, checked
  before any work (an unknown station, a missing file, a trace name two stations share).
- :func:`station_params`: the parameters a station's stages run with: its own catalogue,
  split by event with :func:`quakeshap.splits.event_hash_test` so that an event sits on
  the same side at every station and a station added later moves no event.
- :func:`network_set`: every station's set streamed into one memory-mapped set.
- :func:`resplit_by_trace` and :func:`split_leak`: the per-image split of the sibling
  study, and how many test images share their event with a train image.
- :func:`transfer_table`: every model's score on every station's test set.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quakeshap import files
from quakeshap.artifacts import ArtifactError
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.raw import list_stations, read_attributes
from quakeshap.config import Params, SplitConfig
from quakeshap.record import CLASS_NAMES, attributes_path, hdf5_path
from quakeshap.splits import assign_split

if TYPE_CHECKING:  # the transfer matrix's imports load torch: on use only, so that a
    import torch  # station's spectrograms stage starts without it

log = logging.getLogger(__name__)


class StationsError(ArtifactError):
    """The stations' files or sets cannot be used as configured."""


# --------------------------------------------------------------------------------------
# the layout, checked before any work
# --------------------------------------------------------------------------------------


def station_files(raw: str | Path, code: str) -> list[Path]:
    """The four files a station folder must hold: per class its HDF5 and attribute table."""
    return [f(raw, code, cls) for cls in CLASS_NAMES for f in (hdf5_path, attributes_path)]


def check_layout(raw: str | Path, codes: Sequence[str]) -> None:
    """Fail (:class:`StationsError`) unless every station of ``codes`` can be read.

    Checked in this order, each naming the station and the file: every code is a folder
    under ``<raw>/dset/data/catalogs/`` (else the folders present are listed); every
    folder holds its four files (:func:`station_files`); no trace name is listed at two
    stations (the sets of all stations are joined by trace name).
    """
    present = list_stations(raw)
    unknown = [code for code in codes if code not in present]
    if unknown:
        raise StationsError(
            f"parameter stations.codes: unknown station(s) {unknown}; {Path(raw)} holds "
            f"{present or 'no station folder'}: fix stations.codes or data.demo.stations"
        )
    for code in codes:
        missing = [str(p) for p in station_files(raw, code) if not p.is_file()]
        if missing:
            raise StationsError(
                f"station {code}: file(s) missing: {missing}; every station folder needs "
                "the HDF5 file and the attribute table of each class (pre and post)"
            )
    owner: dict[str, tuple[str, Path]] = {}
    for code in codes:
        for cls in CLASS_NAMES:
            path = attributes_path(raw, code, cls)
            for name in read_attributes(path)["trace_name"]:
                if name in owner and owner[name][0] != code:
                    other, other_path = owner[name]
                    raise StationsError(
                        f"trace name {name!r} is listed at two stations: {other} "
                        f"({other_path}) and {code} ({path}); trace names must be unique "
                        "across stations (the record's <STA>.<NET>.<id>_EV names are)"
                    )
                owner.setdefault(name, (code, path))


# --------------------------------------------------------------------------------------
# parameters and sets
# --------------------------------------------------------------------------------------


def station_params(params: Params, code: str) -> Params:
    """``params`` as station ``code``'s stages use them: its catalogue alone, split by
    event with a per-event hash (``split.by: event_hash``; ``test_fraction`` and ``seed``
    as set)."""
    return replace(
        params,
        spectrogram=replace(params.spectrogram, stations=(code,)),
        split=replace(params.split, by="event_hash"),
    )


def _check_compatible(sets: Mapping[str, spectrogram_set.SpectrogramSet]) -> None:
    first_code, first = next(iter(sets.items()))
    for code, data in sets.items():
        for what, a, b in (
            ("image shape", data.image_shape, first.image_shape),
            ("dtype", data.images.dtype, first.images.dtype),
            ("task", (data.task_kind, data.class_names), (first.task_kind, first.class_names)),
        ):
            if a != b:
                raise StationsError(
                    f"the spectrogram sets of {first_code} and {code} differ in {what} "
                    f"({b} vs {a}); re-run `dvc repro` so that every station's set is made "
                    "with the same parameters"
                )


def load_station_sets(
    folder: str | Path, codes: Sequence[str]
) -> dict[str, spectrogram_set.SpectrogramSet]:
    """The spectrogram set of each station under ``folder``, memory-mapped, in order."""
    sets = {}
    for code in codes:
        path = Path(folder) / code
        if not path.is_dir():
            raise StationsError(
                f"{path} not found: station {code} has no spectrogram set; run "
                f"`dvc repro station_spectrograms@{code}`"
            )
        sets[code] = spectrogram_set.load(path, mmap=True)
    _check_compatible(sets)
    return sets


@contextlib.contextmanager
def network_set(
    sets: Mapping[str, spectrogram_set.SpectrogramSet], scratch: str | Path | None = None
) -> Iterator[spectrogram_set.SpectrogramSet]:
    """Every station's set joined into one, the stations in the given order.

    The images are streamed station by station (:data:`CHUNK` images at a time) into a
    ``.npy`` file in a temporary folder under ``scratch`` (None: the system's temporary
    folder, ``TMPDIR``) and memory-mapped back, so
    memory stays flat in the number of traces; the folder is removed when the block ends.
    The axes are the first station's, with every station listed.
    """
    first = next(iter(sets.values()))
    n = sum(len(s) for s in sets.values())
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".network-set-") as tmp:
        path = Path(tmp) / spectrogram_set.IMAGES_FILE
        with files.NpyRowWriter(path, first.image_shape, first.images.dtype.type, n) as out:
            for data in sets.values():
                for start in range(0, len(data), CHUNK):
                    out.append(np.asarray(data.images[start : start + CHUNK]))
        metadata = pd.concat([s.metadata for s in sets.values()], ignore_index=True)
        axes = {**first.axes, "stations": list(sets)}
        images = np.load(path, mmap_mode="r")
        yield spectrogram_set.SpectrogramSet(
            images, metadata, first.frequency_hz, first.time_s, axes
        )
        del images


#: images per chunk when sets are streamed
CHUNK = 2048


def resplit_by_trace(metadata: pd.DataFrame, split: SplitConfig) -> pd.DataFrame:
    """``metadata`` with its ``split`` column drawn again image by image (the sibling
    study's random per-image split: ``split.by: trace`` over the joined set), so that the
    recordings of one event at different stations can fall on both sides."""
    out = metadata.copy()
    out["split"] = assign_split(out, replace(split, by="trace"))
    return out


def split_leak(metadata: pd.DataFrame) -> dict[str, Any]:
    """How much of the test split shares its event with the train split.

    Returns ``n_test``, ``test_images_with_train_event`` (test images whose ``source_id``
    also has a train image), their ``share``, and ``events_on_both_sides``.
    """
    source = metadata["source_id"].astype(str)
    is_test = metadata["split"].to_numpy() == "test"
    train_events = set(source[~is_test])
    test_events = set(source[is_test])
    leaked = source[is_test].isin(train_events)
    n_test = int(is_test.sum())
    return {
        "n_test": n_test,
        "test_images_with_train_event": int(leaked.sum()),
        "share": float(leaked.mean()) if n_test else 0.0,
        "events_on_both_sides": len(train_events & test_events),
    }


# --------------------------------------------------------------------------------------
# the transfer matrix
# --------------------------------------------------------------------------------------


def score(
    data: spectrogram_set.SpectrogramSet,
    rows: np.ndarray,
    ckpt: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """A model's score on ``rows`` of ``data``: ``n``, and ``accuracy`` (classes) or
    ``mae`` (the magnitude)."""
    from quakeshap import evaluation
    from quakeshap.model import model_from_checkpoint

    model = model_from_checkpoint(
        ckpt, input_shape=data.image_shape, task=(data.task_kind, data.class_names)
    )
    images = np.asarray(data.images[np.sort(rows)])
    outputs = evaluation.predict_logits(model, images, device, n_outputs=len(data.class_names))
    meta = data.metadata.iloc[np.sort(rows)]
    if data.is_regression:
        table = evaluation.regression_table(meta, outputs)
        return {"n": len(rows), "mae": float(np.abs(table["residual"]).mean())}
    table = evaluation.predictions_table(meta, outputs, data.class_names)
    return {"n": len(rows), "accuracy": float(table["correct"].mean()) if len(rows) else np.nan}


def test_rows_at(data: spectrogram_set.SpectrogramSet, ckpt: dict[str, Any]) -> np.ndarray:
    """Rows of one station's set in a model's test set.

    A model that lists its test traces (every quakeshap checkpoint) is tested on those of
    the station's traces it lists; for a station model trained on another station and a
    network model under ``split.by: event_hash`` these are the station's own test split,
    events the model never trained on.
    """
    if "test_traces" not in ckpt:
        return np.flatnonzero(data.metadata["split"].to_numpy() == "test")
    listed = pd.Index(ckpt["test_traces"])
    return np.flatnonzero(data.metadata["trace_name"].isin(listed).to_numpy())


def transfer_table(
    models: Mapping[str, str | Path],
    sets: Mapping[str, spectrogram_set.SpectrogramSet],
    device: torch.device,
) -> pd.DataFrame:
    """Every model on every station's test set: ``model``, ``station``, ``n`` and the
    score (:func:`score`), one row per pair, models and stations in the given order.

    A station model is tested on a station's test split (``split == "test"``: events none
    of the station models trained on, since every station's split is by the same event
    hash); a network model on the station's traces in its own test set (for the per-image
    split, images whose event it may have seen through another station).
    """
    from quakeshap.artifacts import checkpoint

    rows = []
    for name, path in models.items():
        ckpt = checkpoint.load(path)
        for code, data in sets.items():
            if name in sets:  # a station model: the station's own (event) test split
                test = np.flatnonzero(data.metadata["split"].to_numpy() == "test")
            else:
                test = test_rows_at(data, ckpt)
            rows.append({"model": name, "station": code, **score(data, test, ckpt, device)})
            log.info("transfer: %s on %s: %s", name, code, rows[-1])
    return pd.DataFrame(rows)


def transfer_summary(table: pd.DataFrame, stations: Sequence[str]) -> dict[str, Any]:
    """The transfer matrix as metrics: the matrix, the mean of its diagonal (each station
    model on its own station) and off the diagonal (on the others), and each network
    model per station and overall (weighted by test images)."""
    column = "accuracy" if "accuracy" in table.columns else "mae"
    matrix = table.pivot(index="model", columns="station", values=column)
    own = table[table["model"] == table["station"]]
    others = table[table["model"].isin(stations) & (table["model"] != table["station"])]
    network = table[~table["model"].isin(stations)]
    out: dict[str, Any] = {
        "score": column,
        "matrix": {m: {s: float(v) for s, v in row.items()} for m, row in matrix.iterrows()},
        "station_models": {
            "own_station_mean": float(own[column].mean()),
            "other_stations_mean": float(others[column].mean()) if len(others) else None,
        },
    }
    for name, part in network.groupby("model", sort=False):
        weights = part["n"].to_numpy(dtype=np.float64)
        out[str(name)] = {
            "overall": float(np.average(part[column], weights=weights)) if weights.sum() else None,
            "n_test": int(weights.sum()),
        }
    return out
