"""Stage ``spectrograms``: ``data/raw/`` → ``data/spectrograms/`` + ``reports/data/rejected.csv``.

Reads the catalogue of the stations in ``spectrogram.stations``, assigns the train/test
split (``split``), streams the waveforms chunk by chunk through the optional preprocessing
and the study's spectrogram, and writes the images, their metadata and axes (format:
:mod:`quakeshap.dataset`). Unusable traces are listed with their reason in
``reports/data/rejected.csv``; the stage fails when more than
``spectrogram.max_rejected_fraction`` of the listed traces are rejected. Nothing is left
half-written: the output folder is built in a temporary sibling and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from quakeshap import io, waveforms
from quakeshap.config import ConfigError, Params, load_params, resolve_workers, to_dict
from quakeshap.dataset import AXES_FILE, CLASS_NAMES, IMAGES_FILE, METADATA_FILE
from quakeshap.spectrogram import (
    QUANTIZED_DTYPES,
    SpectrogramError,
    save_png,
    spectrogram_axes,
    stream_images,
)

log = logging.getLogger("quakeshap.stages.spectrograms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/spectrograms"))
    parser.add_argument("--rejected", type=Path, default=Path("reports/data/rejected.csv"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every rejection")
    return parser.parse_args(argv)


def build(params: Params, raw: Path, out: Path, rejected_csv: Path) -> pd.DataFrame:
    """Write the spectrogram set and the rejection list; returns the metadata written."""
    cfg = params.spectrogram
    io.remove_outputs(out, rejected_csv)  # a failed run leaves nothing stale behind
    catalog = waveforms.read_catalog(raw, cfg.stations)
    similar = waveforms.read_similar_traces(raw, cfg.stations)
    catalog["split"] = waveforms.assign_split(catalog, params.split)
    catalog["associato"] = waveforms.associato_ids(catalog["trace_name"], similar)
    workers = resolve_workers(cfg.workers)
    log.info(
        "%d traces listed for %s; %d worker thread(s)",
        len(catalog),
        ", ".join(cfg.stations),
        workers,
    )
    frequency_hz, time_s = spectrogram_axes(cfg)
    image_shape = (3, len(frequency_hz), len(time_s))

    with io.atomic_dir(out) as tmp:
        png_dir = tmp / "png" if cfg.export_png else None
        if png_dir is not None:
            png_dir.mkdir()
        kept: list[np.ndarray] = []
        rejected: dict[int, str] = {}
        names = catalog["trace_name"].to_numpy()
        # images stream to disk chunk by chunk: memory is bounded by the chunk size
        with io.NpyRowWriter(
            tmp / IMAGES_FILE, image_shape, QUANTIZED_DTYPES[cfg.quantization], len(catalog)
        ) as images_npy:
            chunks = stream_images(
                catalog, raw, cfg, skip=waveforms.row_rejections(catalog), workers=workers
            )
            for chunk in chunks:
                rejected.update(chunk.rejected)
                images_npy.append(chunk.images)
                kept.append(chunk.rows)
                if png_dir is not None:
                    for row, image in zip(chunk.rows, chunk.images, strict=True):
                        save_png(image, png_dir / f"{names[row]}.png")
        rows = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)

        rejections = waveforms.rejection_table(catalog, rejected)
        for row in rejections.itertuples():
            log.debug("rejected %s (%s): %s", row.trace_name, row.file, row.reason)
        waveforms.check_rejections(rejections, len(catalog), cfg.max_rejected_fraction, raw)

        metadata = waveforms.metadata_table(catalog.iloc[rows], cfg.sampling_rate_hz)
        # straight into the temporary folder, in pieces: io.write_csv's bytes, without
        # the whole text in memory
        metadata.to_csv(tmp / METADATA_FILE, index=False, lineterminator="\n")
        io.write_json(
            tmp / AXES_FILE,
            {
                "frequency_hz": frequency_hz,
                "time_s": time_s,
                "quantization": cfg.quantization,
                "channels": list(waveforms.CHANNELS),
                "stations": list(cfg.stations),
                "sampling_rate_hz": cfg.sampling_rate_hz,
                "n_samples": cfg.n_samples,
                "nperseg": cfg.nperseg,
                "noverlap": cfg.noverlap,
                "window": "tukey(0.25)",
                "log_floor": cfg.log_floor,
                "p_arrival_s": waveforms.P_ARRIVAL_S,
                "preprocess": to_dict(cfg.preprocess),
            },
        )
        io.write_csv(rejected_csv, rejections)
    _log_summary(metadata, rejections)
    return metadata


def _log_summary(metadata: pd.DataFrame, rejections: pd.DataFrame) -> None:
    log.info(
        "%d spectrograms written, %d traces rejected%s",
        len(metadata),
        len(rejections),
        "".join(f"; {n} {kind}" for kind, n in waveforms.rejection_kinds(rejections).most_common()),
    )
    counts = pd.crosstab(metadata["split"], metadata["label"]).reindex(
        index=["train", "test"], columns=list(CLASS_NAMES), fill_value=0
    )
    for split, row in counts.iterrows():
        log.info("%s: %s", split, ", ".join(f"{n} {label}" for label, n in row.items()))
        if (row == 0).any():
            log.warning("the %s split lacks a class: later stages will fail or mislead", split)
    grouped = metadata["associato"] != 0
    log.info(
        "%d traces in %d co-located groups",
        grouped.sum(),
        metadata.loc[grouped, "associato"].nunique(),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("quakeshap").setLevel(logging.DEBUG)
    try:
        params = load_params(args.params)
        build(params, args.raw, args.out, args.rejected)
    except (ConfigError, waveforms.WaveformError, SpectrogramError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
