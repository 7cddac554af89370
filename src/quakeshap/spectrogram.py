"""The study's RGB spectrograms (``docs/method.md`` §2), vectorised over blocks of traces.

For each trace, each of the three channels (E, N, Z) gets
``scipy.signal.spectrogram(x[:n_samples], fs, nperseg=64, noverlap=51)`` with scipy's
defaults otherwise (Tukey 0.25 window, constant detrend, density scaling): 33 frequencies
(0-50 Hz) × 96 windows (centres 0.32-12.67 s) for the study's 1300 samples. Then
``log10(S + 1e-10)`` and ONE min-max normalisation over the three channels together, so
that the channels keep their relative levels. The study stored the result with
``matplotlib.pyplot.imsave`` as 8-bit PNG, i.e. ``floor(255 x)``; :func:`quantize` does the
same (``uint8``) or keeps ``x`` (``float32``).

How it is fast and still bit for bit scipy's
--------------------------------------------
:func:`spectrogram_images` repeats, operation for operation and on the same dtypes, what
``scipy.signal.spectrogram`` does (segments as a strided view, ``numpy.mean`` detrend, the
window product, ``scipy.fft.rfft``, ``conj(z) * z``, density scale), so every value is
the one scipy's per-trace call gives; ``tests/test_spectrogram.py`` checks this trace by
trace. What changes is the schedule: a few traces at a time (:data:`BLOCK_TRACES`), in
preallocated buffers that stay in the CPU cache, instead of one pass per operation over
the whole batch. On a chunk of 512 traces this is 2-3 times faster than one
``scipy.signal.spectrogram`` call over the chunk (memory traffic, not arithmetic, was the
cost), and it writes the quantised image straight into the caller's array.

Above :func:`spectrogram_images` (pure array functions), :func:`stream_images` drives the
whole step over a raw data set: read and validate a chunk of traces
(:class:`quakeshap.waveforms.WaveformReader`), preprocess, compute, quantise, chunk after
chunk in catalogue order, in a few threads (numpy and scipy.fft release the GIL; h5py
does not, so reading is serial). The ``spectrograms`` stage writes what it yields.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft
from scipy import signal

from quakeshap import waveforms as wf
from quakeshap.artifacts import metrics
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.catalog import prepare_catalog
from quakeshap.config import Params, SpectrogramConfig, resolve_workers
from quakeshap.files import remove_outputs
from quakeshap.magnitude_baseline import FEATURE_NAMES, waveform_features
from quakeshap.masking import fill_outside_columns
from quakeshap.record import P_ARRIVAL_S, to_uint8
from quakeshap.task import task_record

log = logging.getLogger(__name__)

#: traces per block of :func:`spectrogram_images`: about 0.4 MB of intermediates per
#: trace at the study's settings, so a block stays within a core's cache
BLOCK_TRACES = 8

#: the stored image dtype for each ``spectrogram.quantization``
QUANTIZED_DTYPES: dict[str, type[np.generic]] = {"uint8": np.uint8, "float32": np.float32}

#: why a trace whose log-spectrogram is constant is left out (``reports/data/rejected.csv``)
FLAT_REASON = "constant spectrogram: no signal on any channel"


class SpectrogramError(ValueError):
    """Waveforms that cannot be turned into spectrograms (wrong shape, NaN, inf)."""


@dataclass(frozen=True)
class Spectrograms:
    """Normalised spectrogram images of a batch of traces.

    Attributes
    ----------
    images
        ``(n, 3, n_freq, n_time)`` float64 in [0, 1]; channel order E, N, Z; frequency
        index 0 = 0 Hz. All zeros where ``flat``.
    frequency_hz
        ``(n_freq,)`` bin frequencies, 0 to fs/2.
    time_s
        ``(n_time,)`` window centres in seconds from the start of the trace.
    flat
        ``(n,)`` bool: the log-spectrogram is constant over all three channels (e.g. a
        dead or constant trace) and cannot be min-max normalised.
    """

    images: np.ndarray
    frequency_hz: np.ndarray
    time_s: np.ndarray
    flat: np.ndarray


@dataclass(frozen=True)
class _Plan:
    """What ``scipy.signal.spectrogram`` derives from its arguments, computed once."""

    n_samples: int
    nperseg: int
    step: int
    log_floor: float
    #: ``(nperseg,)`` scipy's default window (periodic Tukey 0.25)
    window: np.ndarray
    #: ``(n_freq,)`` density scaling, doubled except at 0 Hz (and Nyquist): one-sided PSD
    scale: np.ndarray
    frequency_hz: np.ndarray
    time_s: np.ndarray


@functools.lru_cache(maxsize=8)
def _plan(
    sampling_rate_hz: float, n_samples: int, nperseg: int, noverlap: int, log_floor: float
) -> _Plan:
    window_spec = inspect.signature(signal.spectrogram).parameters["window"].default
    window = signal.get_window(window_spec, nperseg)
    scale = 1.0 / (sampling_rate_hz * (window * window).sum())  # scipy's expression
    n_freq = nperseg // 2 + 1
    scales = np.full(n_freq, scale)
    # scipy doubles every bin but 0 Hz and (even nperseg) Nyquist after scaling; doubling
    # the scale instead gives the same floats (a power of two commutes with rounding; only
    # subnormal powers could differ, and log_floor swamps those)
    scales[1 : n_freq - 1 if nperseg % 2 == 0 else n_freq] *= 2.0
    frequency_hz = sp_fft.rfftfreq(nperseg, 1 / sampling_rate_hz)
    step = nperseg - noverlap
    time_s = np.arange(nperseg / 2, n_samples - nperseg / 2 + 1, step) / float(sampling_rate_hz)
    for array in (window, scales, frequency_hz, time_s):
        array.flags.writeable = False
    return _Plan(n_samples, nperseg, step, log_floor, window, scales, frequency_hz, time_s)


def _plan_of(cfg: SpectrogramConfig) -> _Plan:
    return _plan(
        float(cfg.sampling_rate_hz), cfg.n_samples, cfg.nperseg, cfg.noverlap, cfg.log_floor
    )


def _check_waveforms(waveforms: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    waveforms = np.asarray(waveforms)
    if waveforms.ndim != 3 or waveforms.shape[1] != 3:
        raise SpectrogramError(f"waveforms must be (n, 3, samples), got shape {waveforms.shape}")
    if waveforms.shape[2] < cfg.n_samples:
        raise SpectrogramError(
            f"waveforms hold {waveforms.shape[2]} samples, fewer than spectrogram.n_samples = "
            f"{cfg.n_samples}"
        )
    return waveforms


def spectrogram_images(
    waveforms: np.ndarray,
    cfg: SpectrogramConfig,
    dtype: type[np.generic] | np.dtype = np.float64,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The study's normalised 3-channel spectrograms, written straight as stored.

    Parameters
    ----------
    waveforms
        ``(n, 3, n_total)`` with ``n_total >= cfg.n_samples``, in counts, sampled at
        ``cfg.sampling_rate_hz``; only the first ``cfg.n_samples`` samples are used.
    cfg
        ``sampling_rate_hz``, ``n_samples``, ``nperseg``, ``noverlap`` and ``log_floor``
        are read.
    dtype
        ``uint8``: ``floor(255 x)`` (what the study's PNGs held, :func:`quantize`);
        ``float32`` or ``float64``: ``x``. Ignored when ``out`` is given.
    out
        ``(n, 3, n_freq, n_time)`` array to fill (e.g. a slice of a larger one); None =
        allocate one.

    Returns
    -------
    images
        ``(n, 3, 33, 96)`` for the study's parameters; zeros where ``flat``.
    flat
        ``(n,)`` bool, see :class:`Spectrograms`.
    """
    waveforms = _check_waveforms(waveforms, cfg)
    plan = _plan_of(cfg)
    n = len(waveforms)
    n_time, n_freq = len(plan.time_s), len(plan.frequency_hz)
    if out is None:
        out = np.empty((n, 3, n_freq, n_time), dtype=dtype)
    elif out.shape != (n, 3, n_freq, n_time):
        raise SpectrogramError(f"out must have shape {(n, 3, n_freq, n_time)}, got {out.shape}")
    flat = np.zeros(n, dtype=bool)
    workspace = _Workspace.allocate(min(BLOCK_TRACES, max(n, 1)), plan)
    # NaN/inf inputs are refused once they have propagated to the min-max: no warnings
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, BLOCK_TRACES):
            stop = min(start + BLOCK_TRACES, n)
            flat[start:stop] = _block_images(
                waveforms[start:stop, :, : plan.n_samples], plan, workspace, out[start:stop]
            )
    return out, flat


@dataclass(frozen=True)
class _Workspace:
    """Working arrays for a block of traces, in scipy's (..., time, frequency) order."""

    detrended: np.ndarray  # (block, 3, n_time, nperseg)
    means: np.ndarray  # (block, 3, n_time, 1)
    product: np.ndarray  # (block, 3, n_time, n_freq) complex128
    level: np.ndarray  # (block, 3, n_time, n_freq)

    @classmethod
    def allocate(cls, block: int, plan: _Plan) -> _Workspace:
        n_time, n_freq = len(plan.time_s), len(plan.frequency_hz)
        return cls(
            np.empty((block, 3, n_time, plan.nperseg)),
            np.empty((block, 3, n_time, 1)),
            np.empty((block, 3, n_time, n_freq), dtype=np.complex128),
            np.empty((block, 3, n_time, n_freq)),
        )


def _block_images(x: np.ndarray, plan: _Plan, ws: _Workspace, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` ``(k, 3, n_freq, n_time)`` with the images of ``x`` ``(k, 3, n_samples)``.

    Returns the ``(k,)`` flat flags. The steps are scipy's, on the same dtypes, in place.
    """
    k = len(x)
    if x.dtype != np.float64:
        x = x.astype(np.float64)
    # scipy's _fft_helper: strided segments, constant detrend, window, rfft
    segments = sliding_window_view(x, plan.nperseg, axis=-1)[..., :: plan.step, :]
    detrended, means = ws.detrended[:k], ws.means[:k]
    np.mean(segments, axis=-1, keepdims=True, out=means)
    np.subtract(segments, means, out=detrended)
    np.multiply(detrended, plan.window, out=detrended)
    spectrum = sp_fft.rfft(detrended, n=plan.nperseg, axis=-1, overwrite_x=True)
    # scipy's _spectral_helper: conj(z) * z (its real part), density scale, one-sided
    product = ws.product[:k]
    np.conjugate(spectrum, out=product)
    np.multiply(product, spectrum, out=product)
    level = ws.level[:k]
    np.multiply(product.real, plan.scale, out=level)
    # the study: log10(S + floor), then one min-max over the three channels
    level += plan.log_floor
    np.log10(level, out=level)
    low = level.min(axis=(1, 2, 3))
    span = level.max(axis=(1, 2, 3)) - low
    if not np.isfinite(span).all():  # NaN and inf have propagated to here: one cheap check
        raise SpectrogramError(
            "waveforms hold NaN or inf (or overflow the power spectrum); reject such traces "
            "before this step"
        )
    flat = span <= 0
    level -= low[:, None, None, None]
    level /= np.where(flat, 1.0, span)[:, None, None, None]
    if flat.any():
        level[flat] = 0.0
    if out.dtype == np.uint8:
        level *= 255.0  # in [0, 255] (rounding is monotonic): the cast truncates = floor
    np.copyto(out, level.transpose(0, 1, 3, 2), casting="unsafe")
    return flat


def compute_spectrograms(waveforms: np.ndarray, cfg: SpectrogramConfig) -> Spectrograms:
    """The study's normalised 3-channel spectrograms of a batch of traces, as float64.

    Parameters
    ----------
    waveforms
        ``(n, 3, n_total)`` with ``n_total >= cfg.n_samples``, in counts, sampled at
        ``cfg.sampling_rate_hz``; only the first ``cfg.n_samples`` samples are used.
    cfg
        ``sampling_rate_hz``, ``n_samples``, ``nperseg``, ``noverlap`` and ``log_floor``
        are read.

    Returns
    -------
    Spectrograms
        Images ``(n, 3, 33, 96)`` float64 in [0, 1] for the study's parameters.
    """
    images, flat = spectrogram_images(waveforms, cfg, np.float64)
    frequency_hz, time_s = spectrogram_axes(cfg)
    return Spectrograms(images, frequency_hz, time_s, flat)


def spectrogram_axes(cfg: SpectrogramConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and window centres (s) of :func:`compute_spectrograms`' images."""
    plan = _plan_of(cfg)
    return plan.frequency_hz.copy(), plan.time_s.copy()


def quantize(images: np.ndarray, quantization: str) -> np.ndarray:
    """Images in [0, 1] as stored: ``uint8`` = ``floor(255 x)`` (what ``imsave`` wrote), or
    ``float32`` = ``x``. Same shape as ``images``."""
    if quantization == "uint8":
        return to_uint8(images)
    if quantization == "float32":
        return images.astype(np.float32)
    raise SpectrogramError(
        f"spectrogram.quantization must be uint8 or float32, got {quantization!r}"
    )


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write one image as the study's RGBA PNG, without any metadata (stable bytes).

    Parameters
    ----------
    image
        ``(3, n_freq, n_time)`` uint8, or float in [0, 1] (stored as ``floor(255 x)``);
        row 0 (0 Hz) becomes the top row of the PNG, as in the study.
    path
        Target file; written as it is (the caller writes inside a temporary folder).
    """
    from matplotlib import image as mpimg  # imported on use: PNG export is optional

    mpimg.imsave(path, np.moveaxis(image, 0, -1), format="png", metadata={"Software": None})


# --------------------------------------------------------------------------------------
# a raw data set, chunk by chunk
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageChunk:
    """The stored images of consecutive catalogue rows.

    Attributes
    ----------
    rows
        ``(k,)`` int64 catalogue positions of the images, ascending.
    images
        ``(k, 3, n_freq, n_time)`` in the stored dtype (``spectrogram.quantization``).
    rejected
        ``{catalogue position: reason}`` for the chunk's rows left out: unusable
        waveforms (:func:`quakeshap.waveforms.iter_waveforms`) and constant spectrograms.
    features
        With ``features=True``: the waveform features of the same rows
        (:func:`quakeshap.magnitude_baseline.waveform_features`), else None.
    """

    rows: np.ndarray
    images: np.ndarray
    rejected: dict[int, str]
    features: pd.DataFrame | None = None


def stream_images(
    catalog: pd.DataFrame,
    raw_root: str | Path,
    cfg: SpectrogramConfig,
    skip: pd.Series | None = None,
    workers: int = 1,
    features: bool = False,
) -> Iterator[ImageChunk]:
    """The stored images of every usable catalogue row, ``cfg.chunk_size`` rows at a time.

    Chunks come in catalogue order and each is computed on its own, so the result does
    not depend on ``chunk_size`` or ``workers``. At most ``2 * workers`` chunks are in
    memory at once.

    Parameters
    ----------
    catalog
        From :func:`quakeshap.waveforms.read_catalog` (``trace_name``, ``hdf5_file``).
    raw_root
        The folder ``hdf5_file`` is relative to.
    cfg
        The spectrogram, its quantisation, ``chunk_size`` and ``preprocess``.
    skip
        Rows already rejected (a reason, or ``None``): not read, reported with that reason.
    workers
        Threads computing chunks; 1 = this thread only.
    features
        Also compute the waveform features of every image's trace (the magnitude task's
        gradient-boosting baseline), from the same ``n_samples`` the image is made of.
    """
    names = catalog["trace_name"].to_numpy()
    if features:
        s_delay = pd.to_numeric(catalog["p_s_diff_sec"], errors="coerce").to_numpy(np.float64)
        s_samples = np.round((P_ARRIVAL_S + s_delay) * cfg.sampling_rate_hz)
    hdf5_files = catalog["hdf5_file"].to_numpy()
    reasons = None if skip is None else skip.to_numpy()
    transform = _preprocessing(cfg)
    dtype = QUANTIZED_DTYPES[cfg.quantization]
    starts = range(0, len(catalog), cfg.chunk_size)

    # each thread reads its chunks into one buffer, used up before the next chunk: the
    # allocator does not fragment over thousands of chunks, so memory stays flat
    buffers = threading.local()

    with wf.WaveformReader(raw_root, hdf5_files) as reader:

        def images_of(start: int) -> ImageChunk:
            stop = min(start + cfg.chunk_size, len(catalog))
            if not hasattr(buffers, "data"):
                buffers.data = np.empty((cfg.chunk_size, 3, cfg.n_samples))
            chunk = reader.read_chunk(
                start,
                names[start:stop],
                hdf5_files[start:stop],
                cfg.n_samples,
                None if reasons is None else reasons[start:stop],
                transform,
                out=buffers.data,
            )
            images, flat = spectrogram_images(chunk.data, cfg, dtype)
            table = None
            if features:
                p = np.full(len(chunk.rows), round(P_ARRIVAL_S * cfg.sampling_rate_hz))
                s = np.clip(np.nan_to_num(s_samples[chunk.rows], nan=p[0]), p, None)
                table = waveform_features(chunk.data, p, s.astype(np.int64), cfg.sampling_rate_hz)
            if not flat.any():
                return ImageChunk(chunk.rows, images, chunk.rejected, table)
            rejected = dict(chunk.rejected)
            rejected.update(dict.fromkeys(chunk.rows[flat].tolist(), FLAT_REASON))
            kept = None if table is None else table[~flat].reset_index(drop=True)
            return ImageChunk(chunk.rows[~flat], images[~flat], rejected, kept)

        if workers <= 1 or len(starts) <= 1:
            yield from map(images_of, starts)
            return
        pool = ThreadPoolExecutor(workers, thread_name_prefix="spectrograms")
        pending: collections.deque[Future[ImageChunk]] = collections.deque()
        try:
            for start in starts:
                pending.append(pool.submit(images_of, start))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _preprocessing(cfg: SpectrogramConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """The optional ObsPy preprocessing of one whole trace; None when all steps are off."""
    if not cfg.preprocess.active:
        return None
    return functools.partial(
        wf.preprocess_waveforms, sampling_rate_hz=cfg.sampling_rate_hz, cfg=cfg.preprocess
    )


def feature_table(metadata: pd.DataFrame, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """``features.csv``: ``trace_name`` and the waveform features of every image, rounded
    to 6 decimals (their last bits follow the CPU's FFT; rounded, the file is the same
    on any machine but for a value within 1e-12 of a rounding edge)."""
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FEATURE_NAMES)
    table = table.round(6)
    table.insert(0, "trace_name", metadata["trace_name"].to_numpy())
    return table


def build_spectrogram_set(
    params: Params, raw: Path, out: Path, rejected_csv: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``spectrograms`` stage's work: ``data/raw/`` → the spectrogram set in ``out``.

    Reads the catalogue of the stations in ``spectrogram.stations`` and prepares it
    (:func:`quakeshap.catalog.prepare_catalog`: classes, matched classes, the train/test
    split, the co-located groups, the time window), streams the waveforms chunk by chunk
    through the optional preprocessing and the study's spectrogram, fills the columns
    outside the time window (``spectrogram.window``), and writes the set
    (:mod:`quakeshap.artifacts.spectrograms`) and the rejected traces (``rejected_csv``).
    Fails (:class:`~quakeshap.artifacts.raw.WaveformError`) when more than
    ``spectrogram.max_rejected_fraction`` of the listed traces are rejected for defects of
    the data (rows a control leaves out do not count); nothing is left half-written.
    With ``spectrogram.source: png`` the images are the study's own PNG files instead
    (:func:`quakeshap.interop.study_png.build_png_set`).

    Returns
    -------
    The metadata written and the rejections.
    """
    cfg = params.spectrogram
    if cfg.source == "png":  # the study's own images, read from its preprocessed archive
        from quakeshap.interop.study_png import build_png_set

        return build_png_set(params, raw, out, rejected_csv)
    remove_outputs(out, rejected_csv)  # a failed run leaves nothing stale behind
    frequency_hz, time_s = spectrogram_axes(cfg)
    prepared = prepare_catalog(params, raw, time_s)
    catalog = prepared.catalog
    workers = resolve_workers(cfg.workers)
    log.info(
        "%d traces listed for %s; %d worker thread(s)",
        len(catalog),
        ", ".join(cfg.stations),
        workers,
    )
    image_shape = (3, len(frequency_hz), len(time_s))
    names = catalog["trace_name"].to_numpy()
    kept: list[np.ndarray] = []
    tables: list[pd.DataFrame] = []
    with_features = params.task.kind == "magnitude"
    rejected: dict[int, str] = {}
    # images stream to disk chunk by chunk: memory is bounded by the chunk size
    with spectrogram_set.writing(
        out, image_shape, QUANTIZED_DTYPES[cfg.quantization], len(catalog)
    ) as writer:
        chunks = stream_images(
            catalog, raw, cfg, skip=prepared.skip, workers=workers, features=with_features
        )
        for chunk in chunks:
            rejected.update(chunk.rejected)
            if chunk.features is not None:
                tables.append(chunk.features)
            images = chunk.images
            if prepared.keep_columns is not None:
                columns = prepared.keep_columns[chunk.rows]
                images = fill_outside_columns(images, columns, prepared.window_fill)
            writer.append(images)
            kept.append(chunk.rows)
            if cfg.export_png:
                for row, image in zip(chunk.rows, images, strict=True):
                    save_png(image, writer.png_dir / f"{names[row]}.png")
        rows = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
        rejections = wf.rejection_table(catalog, rejected)
        for row in rejections.itertuples():
            log.debug("rejected %s (%s): %s", row.trace_name, row.file, row.reason)
        defects = {p: r for p, r in rejected.items() if p not in prepared.controls}
        wf.check_rejections(
            wf.rejection_table(catalog, defects), len(catalog), cfg.max_rejected_fraction, raw
        )
        metadata = wf.metadata_table(catalog.iloc[rows], cfg.sampling_rate_hz)
        axes = spectrogram_set.axes_record(cfg, frequency_hz, time_s, task_record(params.task))
        if with_features:  # the magnitude baseline's inputs, beside the images
            writer.write_features(feature_table(metadata, tables))
        writer.finish(metadata, axes)
        metrics.write_rejected(rejected_csv, rejections)
    return metadata, rejections
