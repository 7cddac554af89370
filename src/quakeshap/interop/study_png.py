"""The study's preprocessed archive as the spectrogram set (``spectrogram.source: png``).

The Zenodo record offers ``dset_preprocessed.zip`` beside the waveforms (``docs/method.md``
§1). What it holds is *unverified*; it is inferred to be the study's own images and table:

``spectrograms/<trace_name>.png``
    One 96 × 33 RGBA image per trace, written by ``matplotlib.pyplot.imsave`` from the
    (33, 96, 3) image in [0, 1]: 8-bit values ``floor(255 x)``, opaque, row 0 (0 Hz) on top
    (imsave's default ``origin="upper"``; :func:`quakeshap.spectrogram.save_png` writes the
    same files).
``metadata.csv``
    The study's table (``docs/method.md`` §2): the 17 attribute columns, ``label``,
    ``split``, ``filename``, ``associato``, ``week``.
``f_t_range.npy``
    ``[0, 50, 0.32, 12.67]``: the first and last frequency (Hz) and column time (s).
``stats.json``
    Statistics of the images (their exact content is not known; it is only checked to be
    JSON and logged).

:func:`read_archive` discovers this content wherever it sits in the archive (or in the
unpacked folder), checks it, and returns the images exactly as the PNG files hold them,
``(n, 3, 33, 96)`` uint8, with the spectrogram set's metadata made from the archive's table
(its labels, its split, its co-located groups). :func:`build_png_set` is the
``spectrograms`` stage's work for ``spectrogram.source: png``; where the raw waveforms of
the same traces are in ``data/raw`` too, :func:`waveform_agreement` sets the images beside
those computed from the waveforms and the stage logs how far they agree.

Anything unexpected is a :class:`~quakeshap.interop.study_release.StudyReleaseError` whose
message names the file: no ``metadata.csv``, a row without its PNG, a PNG of another size or
mode, two PNG files of one name, a ``f_t_range.npy`` that contradicts the spectrogram
parameters.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
from PIL import Image

from quakeshap import waveforms as wf
from quakeshap.artifacts import metrics
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.raw import ATTRIBUTE_COLUMNS, WaveformError
from quakeshap.config import MAINSHOCK_ISO, ConfigError, Params, SpectrogramConfig
from quakeshap.files import remove_outputs
from quakeshap.interop.study_release import Release, StudyReleaseError
from quakeshap.record import CLASS_NAMES, iso_week
from quakeshap.spectrogram import SpectrogramError, spectrogram_axes, stream_images
from quakeshap.task import task_record

log = logging.getLogger(__name__)

PNG_SUFFIX = ".png"
#: the archive's axis ranges: first and last frequency (Hz), first and last time (s)
AXES_RANGE_FILE = "f_t_range.npy"
#: the archive's image statistics (content unknown: read as JSON and logged)
STATS_FILE = "stats.json"
#: ``f_t_range.npy`` may differ from the computed axes by rounding: the study printed 12.67
AXES_RANGE_TOLERANCE = 0.01
#: columns the archive's table needs beyond the 17 attributes
ARCHIVE_COLUMNS: tuple[str, ...] = ("label", "split")
SPLITS = ("train", "test")
#: what an opaque pixel's alpha holds in the study's PNG files
OPAQUE = 255
#: the bit depth's byte in a PNG file: signature (8), IHDR length and type (8), size (8)
PNG_BIT_DEPTH_BYTE = 24


@dataclass(frozen=True)
class PngArchive:
    """The archive's content, checked.

    Attributes
    ----------
    images
        ``(n, 3, n_freq, n_time)`` uint8: each PNG's R, G, B (E, N, Z), row 0 = 0 Hz.
    table
        The archive's ``metadata.csv`` rows of those images (index 0..n-1), with
        ``station_code``, ``week`` and ``associato`` filled in where it lacks them.
    entries
        ``(n,)`` where each image was read from (``archive.zip:member``), for messages.
    """

    images: np.ndarray
    table: pd.DataFrame
    entries: tuple[str, ...]


def check_source(params: Params) -> None:
    """The parameters the png source cannot honour, as a :class:`ConfigError` in one line.

    The archive fixes the images, their labels and their split: the task must be the
    study's pre/post at its boundary and the classes unmatched (the spectrogram section's own
    constraints are checked by :class:`~quakeshap.config.SpectrogramConfig`).
    """
    if params.task.kind != "prepost":
        raise ConfigError(
            f"parameter task.kind: {params.task.kind!r} needs the waveforms; "
            "spectrogram.source png holds the study's pre/post images only"
        )
    if params.task.boundary_time != MAINSHOCK_ISO:
        raise ConfigError(
            "parameter task.boundary_time: spectrogram.source png keeps the archive's labels "
            f"(the study's, split at {MAINSHOCK_ISO}); another boundary needs the waveforms"
        )
    if params.split.match != "none":
        raise ConfigError(
            "parameter split.match: spectrogram.source png keeps the archive's split; "
            "matching classes needs the waveforms"
        )


def read_png(data: bytes, where: str, image_hw: tuple[int, int]) -> np.ndarray:
    """One of the study's PNG files as its stored values, ``(3, height, width)`` uint8.

    The file must be an 8-bit RGB or RGBA PNG of ``image_hw`` (rows, columns) = 33 × 96,
    i.e. 96 pixels wide and 33 tall, and opaque; row 0 of the result is the top row.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format, mode, size = image.format, image.mode, image.size
                if image_format == "PNG" and size == (image_hw[1], image_hw[0]):
                    pixels = np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombWarning) as exc:
        raise StudyReleaseError(f"{where}: not a readable PNG image ({exc})") from None
    if image_format != "PNG":
        raise StudyReleaseError(f"{where}: a {image_format} image, expected PNG")
    if data[PNG_BIT_DEPTH_BYTE] != 8:  # Pillow would read 16-bit colour as 8-bit silently
        raise StudyReleaseError(
            f"{where}: {data[PNG_BIT_DEPTH_BYTE]}-bit PNG, expected 8-bit (imsave's)"
        )
    if size != (image_hw[1], image_hw[0]):
        raise StudyReleaseError(
            f"{where}: {size[0]} × {size[1]} pixels (width × height), expected "
            f"{image_hw[1]} × {image_hw[0]}: the spectrogram parameters make "
            f"{image_hw[0]} frequencies × {image_hw[1]} times"
        )
    if mode not in ("RGB", "RGBA"):
        raise StudyReleaseError(f"{where}: PNG mode {mode}, expected 8-bit RGBA (or RGB)")
    if mode == "RGBA" and not (pixels[..., 3] == OPAQUE).all():
        raise StudyReleaseError(
            f"{where}: transparent pixels; the study's imsave wrote opaque images"
        )
    return np.ascontiguousarray(np.moveaxis(pixels[..., :3], -1, 0))


def _entry_name(filename: str) -> str:
    """The file name of a ``filename`` cell, which may be a path (``/`` or ``\\``)."""
    return PureWindowsPath(PurePosixPath(filename).name).name


def read_image_table(release: Release, name: str) -> pd.DataFrame:
    """The archive's ``metadata.csv``, checked for the columns the set needs."""
    where = release.where(name)
    try:
        table = pd.read_csv(
            io.BytesIO(release.read(name)), dtype={"trace_name": str, "source_id": str}
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StudyReleaseError(f"{where}: not a readable CSV table ({exc})") from None
    absent = [c for c in (*ATTRIBUTE_COLUMNS, *ARCHIVE_COLUMNS) if c not in table.columns]
    if absent:
        raise StudyReleaseError(f"{where} lacks column(s) {absent} (has {list(table.columns)})")
    duplicated = table["trace_name"].duplicated()
    if duplicated.any():
        raise StudyReleaseError(
            f"{where}: trace(s) listed twice, e.g. {table.loc[duplicated, 'trace_name'].iloc[0]}"
        )
    for column, allowed in (("label", CLASS_NAMES), ("split", SPLITS)):
        bad = ~table[column].isin(allowed)
        if bad.any():
            row = table.loc[bad].iloc[0]
            raise StudyReleaseError(
                f"{where}: {column} {row[column]!r} of {row['trace_name']} is not one of "
                f"{list(allowed)}"
            )
    if "week" not in table.columns:
        table["week"] = iso_week(table["trace_start_time"])
    if "associato" not in table.columns:
        log.warning("%s has no associato column: no co-located groups", where)
        table["associato"] = 0
    table["associato"] = pd.to_numeric(table["associato"], errors="coerce").fillna(0)
    table["associato"] = table["associato"].astype(np.int64)
    table["station_code"] = table["receiver_name"].astype(str)
    return table


def _check_axes(release: Release, cfg: SpectrogramConfig) -> None:
    """``f_t_range.npy`` against the axes the spectrogram parameters give, when present."""
    found = release.find(AXES_RANGE_FILE)
    if not found:
        log.warning("%s: no %s; the axes are taken from the spectrogram parameters",
                    release.path, AXES_RANGE_FILE)  # fmt: skip
        return
    where = release.where(found[0])
    try:
        ranges = np.load(io.BytesIO(release.read(found[0])), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise StudyReleaseError(f"{where}: not a readable .npy array ({exc})") from None
    frequency_hz, time_s = spectrogram_axes(cfg)
    expected = np.array([frequency_hz[0], frequency_hz[-1], time_s[0], time_s[-1]])
    if ranges.shape != (4,) or not np.issubdtype(ranges.dtype, np.number):
        raise StudyReleaseError(f"{where}: shape {ranges.shape}, expected 4 numbers")
    if not np.allclose(ranges, expected, rtol=0, atol=AXES_RANGE_TOLERANCE):
        raise StudyReleaseError(
            f"{where}: axes {ranges.tolist()} (Hz, Hz, s, s) but the spectrogram parameters "
            f"give {np.round(expected, 2).tolist()}: the archive was made with other settings"
        )


def _log_stats(release: Release) -> None:
    for name in release.find(STATS_FILE):
        try:
            stats = json.loads(release.read(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyReleaseError(f"{release.where(name)}: not a JSON file ({exc})") from None
        keys = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
        log.info("%s: %s", release.where(name), keys)


def read_archive(path: str | Path, cfg: SpectrogramConfig) -> PngArchive:
    """Discover, check and read the study's preprocessed archive (zip, or unpacked folder).

    Every row of ``metadata.csv`` of the stations in ``cfg.stations`` needs its PNG (found
    by the file name of its ``filename`` cell, else ``<trace_name>.png``, in any folder of
    the archive); a PNG no row names is logged and left out.
    """
    frequency_hz, time_s = spectrogram_axes(cfg)
    image_hw = (len(frequency_hz), len(time_s))
    with Release(path) as release:
        table = read_image_table(
            release, release.find_one(spectrogram_set.METADATA_FILE, "the image table")
        )
        _check_axes(release, cfg)
        _log_stats(release)
        stations = table["station_code"].isin(cfg.stations)
        if not stations.any():
            raise StudyReleaseError(
                f"{release.path}: no image of station(s) {list(cfg.stations)} (parameter "
                f"spectrogram.stations); it holds {sorted(set(table['station_code']))}"
            )
        table = table.loc[stations].reset_index(drop=True)
        pngs: dict[str, str] = {}
        for name in release.names:
            if name.lower().endswith(PNG_SUFFIX):
                file_name = PurePosixPath(name).name
                if file_name in pngs:
                    raise StudyReleaseError(
                        f"{release.path}: two images called {file_name} ({pngs[file_name]} "
                        f"and {name}); expected one per trace"
                    )
                pngs[file_name] = name
        if "filename" in table.columns:
            wanted = [_entry_name(str(f)) for f in table["filename"]]
        else:
            wanted = [f"{t}{PNG_SUFFIX}" for t in table["trace_name"]]
        missing = [
            (t, w) for t, w in zip(table["trace_name"], wanted, strict=True) if w not in pngs
        ]
        if missing:
            where = release.where(release.find_one(spectrogram_set.METADATA_FILE, "the table"))
            raise StudyReleaseError(
                f"{where}: {len(missing)} row(s) without their PNG in {release.path}, e.g. "
                f"{missing[0][0]} ({missing[0][1]})"
            )
        unused = len(pngs) - len(set(wanted))
        if unused:
            log.warning("%s: %d PNG file(s) no row of the table names, left out",
                        release.path, unused)  # fmt: skip
        images = np.empty((len(table), 3, *image_hw), dtype=np.uint8)
        entries = []
        for i, name in enumerate(wanted):
            entries.append(release.where(pngs[name]))
            images[i] = read_png(release.read(pngs[name]), entries[-1], image_hw)
    return PngArchive(images, table, tuple(entries))


def waveform_agreement(
    archive: PngArchive, raw: str | Path, cfg: SpectrogramConfig
) -> pd.DataFrame | None:
    """The archive's images beside those the waveforms in ``raw`` give, trace by trace.

    Returns None when ``raw`` holds no waveforms of ``cfg.stations``; else one row per
    trace found in both (``trace_name``, ``max_abs_diff`` in 8-bit levels,
    ``n_pixels_differing``, and ``flipped_max_abs_diff``: the same with the PNG's rows
    upside down, which tells a file written with 0 Hz at the bottom).
    """
    try:
        catalog = wf.read_catalog(raw, cfg.stations)
    except WaveformError as exc:
        log.info("no waveforms to check the PNG images against (%s)", exc)
        return None
    position = pd.Series(np.arange(len(archive.table)), index=archive.table["trace_name"])
    catalog = catalog.loc[catalog["trace_name"].isin(position.index)].reset_index(drop=True)
    rows: list[tuple[str, int, int, int]] = []
    try:
        chunks = list(stream_images(catalog, raw, cfg))
    except (WaveformError, SpectrogramError, OSError) as exc:  # the PNG set does not need them
        log.warning("the PNG images could not be checked against the waveforms (%s)", exc)
        return None
    for chunk in chunks:
        computed = chunk.images.astype(np.int16)
        stored = archive.images[position[catalog["trace_name"].to_numpy()[chunk.rows]]]
        stored = stored.astype(np.int16)
        diff = np.abs(stored - computed)
        flipped = np.abs(stored[:, :, ::-1, :] - computed).max(axis=(1, 2, 3))
        for k, row in enumerate(chunk.rows):
            rows.append(
                (catalog.at[row, "trace_name"], int(diff[k].max()),
                 int((diff[k] > 0).any(axis=0).sum()), int(flipped[k]))
            )  # fmt: skip
    columns = ["trace_name", "max_abs_diff", "n_pixels_differing", "flipped_max_abs_diff"]
    return pd.DataFrame(rows, columns=columns)


def log_agreement(agreement: pd.DataFrame) -> None:
    """One line on how far the archive's images and the waveforms' agree (a warning when
    they differ)."""
    if agreement.empty:
        log.info("no trace of the archive is in the raw waveforms: nothing to compare")
        return
    differ = agreement["max_abs_diff"] > 0
    if not differ.any():
        log.info("%d PNG images equal the images of their waveforms, value for value",
                 len(agreement))  # fmt: skip
        return
    worst = agreement.loc[agreement["max_abs_diff"].idxmax()]
    hint = ""
    if (agreement["flipped_max_abs_diff"] < agreement["max_abs_diff"]).all():
        hint = "; upside down they agree better: was 0 Hz written at the bottom of the PNGs?"
    log.warning(
        "%d of %d PNG images differ from the images of their waveforms (largest: %s, %d "
        "levels of 255 on %d pixels)%s",
        int(differ.sum()), len(agreement), worst["trace_name"], worst["max_abs_diff"],
        worst["n_pixels_differing"], hint,
    )  # fmt: skip


def build_png_set(
    params: Params, raw: Path, out: Path, rejected_csv: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``spectrograms`` stage's work for ``spectrogram.source: png``.

    Reads ``spectrogram.png_archive`` (relative to ``raw``), writes its images and the
    spectrogram set's metadata made from its table, and the rows left out with their reason
    in ``rejected_csv`` (a row whose start time or S − P time is unusable, as for the
    waveforms); fails when more than ``spectrogram.max_rejected_fraction`` are. Nothing is
    left half-written.
    """
    cfg = params.spectrogram
    remove_outputs(out, rejected_csv)
    check_source(params)
    archive = read_archive(Path(raw) / str(cfg.png_archive), cfg)
    table = archive.table.assign(hdf5_file=list(archive.entries))
    reasons = wf.row_rejections(table)
    rejected = {int(i): str(r) for i, r in reasons.items() if r is not None}
    rejections = wf.rejection_table(table, rejected)
    wf.check_rejections(rejections, len(table), cfg.max_rejected_fraction, raw)
    kept = reasons.isna().to_numpy()
    agreement = waveform_agreement(archive, raw, cfg)
    if agreement is not None:
        log_agreement(agreement)
    frequency_hz, time_s = spectrogram_axes(cfg)
    metadata = wf.metadata_table(table.loc[kept], cfg.sampling_rate_hz)
    axes = spectrogram_set.axes_record(cfg, frequency_hz, time_s, task_record(params.task))
    # where the images came from (a set computed from waveforms records neither key)
    axes.update(source=cfg.source, png_archive=cfg.png_archive)
    spectrogram_set.write(out, archive.images[kept], metadata, axes)
    metrics.write_rejected(rejected_csv, rejections)
    return metadata, rejections
