"""Apply a trained model to new waveforms: ``python -m quakeshap.predict``.

::

    python -m quakeshap.predict --checkpoint models/model.pt \\
        --waveforms 'data/new/*.mseed' --picks picks.csv --out reports/predict [--shap] [--figures]
    python -m quakeshap.predict --seisbench PATH --out reports/predict

Reads any file ObsPy reads (miniSEED, SAC, ...; ``--waveforms`` takes files and globs) with
the P arrivals of a pick table, or a SeisBench data set (``--seisbench``: its
``trace_p_arrival_sample``), cuts the study's window around each P (``docs/method.md`` §1,
§2: 25 s from 5 s before P at 100 Hz, components E, N, Z; the image uses the first
``spectrogram.n_samples``), makes the image exactly as the ``spectrograms`` stage made the
model's training images (the parameters recorded in the set's ``axes.json``, preprocessing
included), and applies the checkpoint with its own normalisation.

The windows and the pick table are :mod:`quakeshap.interop.windows`'s (``network``,
``station``, ``p_arrival_time`` in ISO 8601; optional ``location``, ``channel``,
``s_arrival_time``, ``trace_name``).

Writes ``--out`` atomically: ``predict.csv`` (one row per pick or data-set row, with
``status`` ``ok`` or ``error`` and the reason; the logits and softmax probabilities of each
class and the predicted class, or the ``magnitude`` of a magnitude model), with ``--shap``
one SHAP map per predicted trace (``shap/<trace>.npy``, ``(33, 96, 3)`` float32 logits for
the predicted class, the ``shap`` parameters of ``--params``; the faithfulness checks are
not run), with ``--figures`` one figure per trace (``figures/``, the ``plots`` parameters).

Per-trace problems (no waveform, a missing component, a gap, a window off the record, a
constant spectrogram, a sampling rate other than 100 Hz without ``--resample``) do not
stop the others: each is its row's ``error``. The exit code is 0 when at least one trace
was predicted, 1 when none was (the table is still written) or when an input cannot be
used at all (one line naming the file; nothing written). ``docs/interop.md`` has the
details and the decisions.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quakeshap.artifacts import ArtifactError, checkpoint, read_json
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import (
    PARAMS_FILE,
    ConfigError,
    PlotsConfig,
    PreprocessConfig,
    ShapConfig,
    SpectrogramConfig,
    load_yaml,
    resolve_workers,
)
from quakeshap.evaluation import EvaluationError, predict_logits, softmax
from quakeshap.files import atomic_dir, save_figure, save_npy, write_csv
from quakeshap.interop.windows import (
    Window,
    WindowError,
    read_picks,
    read_streams,
    windows_from_picks,
    windows_from_seisbench,
)
from quakeshap.model import DeviceError, checkpoint_task, model_from_checkpoint, resolve_device
from quakeshap.record import (
    P_ARRIVAL_S,
    SAMPLING_RATE_HZ,
    to_unit,
)
from quakeshap.spectrogram import FLAT_REASON, QUANTIZED_DTYPES, spectrogram_images
from quakeshap.typed_yaml import build
from quakeshap.waveforms import preprocess_waveforms

log = logging.getLogger("quakeshap.predict")

#: the table of predictions, one row per pick
OUTPUT_FILE = "predict.csv"
#: ``--shap``: one ``<trace>.npy`` map per predicted trace
SHAP_DIR = "shap"
#: ``--figures``: one PNG per predicted trace
FIGURES_DIR = "figures"
#: ``status`` of a row
OK, FAILED = "ok", "error"


class PredictError(ValueError):
    """The options or the model's axes record cannot be used."""


# --------------------------------------------------------------------------------------
# the model's images
# --------------------------------------------------------------------------------------


def spectrogram_config(axes: dict[str, Any], path: Path) -> SpectrogramConfig:
    """The spectrogram parameters a set was made with, from its ``axes.json`` record."""
    try:
        cfg = SpectrogramConfig(
            sampling_rate_hz=float(axes["sampling_rate_hz"]),
            n_samples=int(axes["n_samples"]),
            nperseg=int(axes["nperseg"]),
            noverlap=int(axes["noverlap"]),
            log_floor=float(axes["log_floor"]),
            quantization=axes["quantization"],
            preprocess=PreprocessConfig(**axes.get("preprocess", {})),
        )
    except (KeyError, TypeError) as exc:
        raise PredictError(f"{path}: not a spectrogram set's axes record (lacks {exc})") from None
    if axes.get("time_window", "all") != "all":
        raise PredictError(
            f"{path}: the model saw images cut to the time window {axes['time_window']!r} "
            "(spectrogram.window); predict applies models trained on whole images"
        )
    if cfg.sampling_rate_hz != SAMPLING_RATE_HZ:
        raise PredictError(f"{path}: images made at {cfg.sampling_rate_hz} Hz, not 100 Hz")
    return cfg


def images_of(windows: list[Window], cfg: SpectrogramConfig) -> np.ndarray:
    """The stored-dtype images ``(n, 3, 33, 96)`` of windows that have a waveform, as the
    ``spectrograms`` stage makes them (whole window preprocessed, then the first
    ``n_samples``); a window whose spectrogram is constant gets its error instead."""
    dtype = QUANTIZED_DTYPES[cfg.quantization]
    waves = []
    for w in windows:
        assert w.waveform is not None
        wave = preprocess_waveforms(w.waveform, cfg.sampling_rate_hz, cfg.preprocess)
        waves.append(wave[:, : cfg.n_samples])
    images, flat = spectrogram_images(np.stack(waves), cfg, dtype)
    for w, is_flat in zip(windows, flat, strict=True):
        if is_flat:
            w.error = FLAT_REASON
    return images


# --------------------------------------------------------------------------------------
# predictions, maps, figures
# --------------------------------------------------------------------------------------


def predict(
    windows: list[Window], ckpt: dict[str, Any], cfg: SpectrogramConfig, device: Any
) -> tuple[list[Window], np.ndarray]:
    """Fill each usable window's ``outputs``; returns the predicted windows and their
    stored-dtype images."""
    usable = [w for w in windows if w.error is None]
    if not usable:
        return [], np.empty((0,))
    images = images_of(usable, cfg)
    keep = [i for i, w in enumerate(usable) if w.error is None]
    usable, images = [usable[i] for i in keep], images[keep]
    if not usable:
        return [], images
    kind, names = checkpoint_task(ckpt)
    model = model_from_checkpoint(ckpt, input_shape=tuple(images.shape[1:]))
    outputs = predict_logits(model, images, device, n_outputs=len(names))
    if kind == "magnitude" or "target_scale" in ckpt:
        for w, value in zip(usable, outputs[:, 0], strict=True):
            w.outputs = {"magnitude": float(value), "class_index": 0}
        return usable, images
    prob = softmax(outputs)
    for w, logit, p in zip(usable, outputs, prob, strict=True):
        k = int(np.argmax(p))
        w.outputs = {
            **{f"logit_{n}": float(v) for n, v in zip(names, logit, strict=True)},
            **{f"probability_{n}": float(v) for n, v in zip(names, p, strict=True)},
            "predicted": names[k],
            "probability": float(p[k]),
            "class_index": k,
        }
    return usable, images


def output_table(windows: list[Window]) -> pd.DataFrame:
    """``predict.csv``: one row per window, in input order."""
    rows = []
    for w in windows:
        outputs = {k: v for k, v in w.outputs.items() if k != "class_index"}
        status = OK if w.outputs else FAILED
        rows.append(
            {
                "trace_name": w.trace_name,
                "status": status,
                "error": w.error or "",
                **w.info,
                **outputs,
            }
        )
    return pd.DataFrame(rows)


def safe_name(trace_name: str) -> str:
    """A file-system-safe file stem for a trace."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", trace_name)


def explain(
    windows: list[Window],
    images: np.ndarray,
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    spectrograms: Path,
) -> list[np.ndarray]:
    """The SHAP map ``(33, 96, 3)`` of each window for its predicted class (for a
    magnitude model: its output), with :mod:`quakeshap.explain`'s explainers."""
    from quakeshap.explain import BACKGROUND_EXPLAINERS, ExplainJob, check_config
    from quakeshap.explain.pool import draw_background, run_jobs, trace_seed

    cfg = replace(cfg, faithfulness=replace(cfg.faithfulness, enabled=False))
    shape = (*images.shape[2:], images.shape[1])
    check_config(cfg, shape)
    background = None
    if cfg.explainer in BACKGROUND_EXPLAINERS:
        sset = spectrogram_set.load(spectrograms, mmap=True)
        background = draw_background(sset, cfg.background, cfg.seed, ckpt.get("train_traces"))
    jobs = [
        ExplainJob(
            w.trace_name,
            to_unit(image),
            (w.outputs["class_index"],),
            trace_seed(cfg.seed, w.trace_name),
        )
        for w, image in zip(windows, images, strict=True)
    ]
    workers = resolve_workers(cfg.workers)
    results = run_jobs(jobs, ckpt, cfg, background, workers, resolve_device(cfg.device))
    for w, result in zip(windows, results, strict=True):
        w.outputs["shap_base_value"] = float(result.base_values[0])
        w.outputs["shap_sum"] = float(np.sum(result.values[0], dtype=np.float64))
    return [result.values[0] for result in results]


def draw(
    window: Window,
    image: np.ndarray,
    shap_map: np.ndarray | None,
    axes: tuple[np.ndarray, np.ndarray],
    cfg: PlotsConfig,
    class_names: tuple[str, ...],
) -> Any:
    """One trace's figure: waveforms and spectrogram (``docs/method.md`` §6.2), with the
    SHAP map of the predicted class when there is one (§6.5)."""
    import matplotlib
    from matplotlib.figure import Figure

    from quakeshap.plots.figures import resolve_cmap, style
    from quakeshap.plots.maps import plot_explained_trace, plot_trace

    assert window.waveform is not None
    frequency_hz, time_s = axes
    out = window.outputs
    if "magnitude" in out:
        title = f"{window.trace_name}: magnitude {out['magnitude']:.2f}"
    else:
        title = f"{window.trace_name}: {out['predicted']} (p = {out['probability']:.3f})"
    with matplotlib.rc_context(style(cfg)):
        fig = Figure(figsize=(cfg.width_in, cfg.height_in), dpi=cfg.dpi, layout="constrained")
        unit = to_unit(image)
        if shap_map is None:
            plot_trace(
                fig,
                window.waveform,
                unit,
                frequency_hz,
                time_s,
                SAMPLING_RATE_HZ,
                P_ARRIVAL_S,
                window.s_arrival_s,
                title=title,
            )
        else:
            plot_explained_trace(
                fig,
                window.waveform,
                unit,
                {out["class_index"]: shap_map},
                frequency_hz,
                time_s,
                SAMPLING_RATE_HZ,
                P_ARRIVAL_S,
                window.s_arrival_s,
                resolve_cmap(cfg.cmap),
                title,
                class_names,
            )
    return fig


def run(args: argparse.Namespace) -> int:
    """The command's work; returns the number of traces predicted."""
    if (args.seisbench is None) == (not args.waveforms):
        raise PredictError("give either --waveforms (with --picks) or --seisbench")
    if args.waveforms and args.picks is None:
        raise PredictError("--waveforms needs --picks (a CSV of P arrival times)")
    axes_path = args.spectrograms / spectrogram_set.AXES_FILE
    axes = read_json(axes_path, "spectrograms")
    cfg = spectrogram_config(axes, axes_path)
    ckpt = checkpoint.load(args.checkpoint)
    params = load_yaml(args.params) if (args.shap or args.figures) else {}
    shap_cfg = build(ShapConfig, params.get("shap"), "shap") if args.shap else None
    plots_cfg = build(PlotsConfig, params.get("plots"), "plots") if args.figures else None
    device = resolve_device(args.device)
    if args.seisbench is not None:
        windows = windows_from_seisbench(args.seisbench, cfg.n_samples, args.resample)
    else:
        picks = read_picks(args.picks)
        stream, files = read_streams(args.waveforms)
        source = files[0] if len(files) == 1 else f"{len(files)} files"
        windows = windows_from_picks(stream, picks, cfg.n_samples, args.resample, source)
    done, images = predict(windows, ckpt, cfg, device)
    maps = explain(done, images, ckpt, shap_cfg, args.spectrograms) if shap_cfg else None
    with atomic_dir(args.out) as tmp:
        if maps is not None:
            (tmp / SHAP_DIR).mkdir()
            for w, values in zip(done, maps, strict=True):
                save_npy(tmp / SHAP_DIR / f"{safe_name(w.trace_name)}.npy", values)
        if plots_cfg is not None:
            (tmp / FIGURES_DIR).mkdir()
            names = checkpoint_task(ckpt)[1]
            frequency_hz = np.asarray(axes["frequency_hz"], dtype=np.float64)
            time_s = np.asarray(axes["time_s"], dtype=np.float64)
            for k, w in enumerate(done):
                one = None if maps is None else maps[k]
                fig = draw(w, images[k], one, (frequency_hz, time_s), plots_cfg, names)
                save_figure(
                    fig, tmp / FIGURES_DIR / f"{safe_name(w.trace_name)}.png", plots_cfg.dpi
                )
        write_csv(tmp / OUTPUT_FILE, output_table(windows))
    for w in windows:
        if not w.outputs:
            log.warning("%s: %s", w.trace_name, w.error)
    log.info("%s: %d of %d trace(s) predicted", args.out / OUTPUT_FILE, len(done), len(windows))
    return len(done)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=checkpoint.PATH)
    parser.add_argument(
        "--spectrograms",
        type=Path,
        default=spectrogram_set.PATH,
        help="the model's spectrogram set: its axes record gives the image parameters",
    )
    parser.add_argument("--waveforms", nargs="+", default=[], help="files or globs ObsPy reads")
    parser.add_argument("--picks", type=Path, help="CSV: network, station, p_arrival_time, ...")
    parser.add_argument("--seisbench", type=Path, help="a SeisBench data set folder instead")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    parser.add_argument("--shap", action="store_true", help="also a SHAP map per trace")
    parser.add_argument("--figures", action="store_true", help="also a figure per trace")
    parser.add_argument("--resample", action="store_true", help="resample traces to 100 Hz")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="shap and plots")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        n = run(args)
    except (
        PredictError,
        WindowError,
        ArtifactError,
        ConfigError,
        DeviceError,
        EvaluationError,
        OSError,
    ) as exc:
        log.error("%s", exc)
        return 1
    return 0 if n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
