"""A tiny synthetic project, built in code: every artefact through its owner's writer.

Each ``make_*`` function returns one artefact in memory and each ``write_*`` function
writes one under a project folder through its owner in :mod:`quakeshap.artifacts`, so the
layout is the pipeline's by construction. :func:`write_plot_inputs` builds a whole project,
everything the ``plots`` stage reads, without running a stage.

Only what a stage would measure is made up: the raw waveforms (noise plus a P and an S
wavelet, so spectrograms and figures show real structure), the model's logits (two test
traces misclassified, one per class), the SHAP values and the training history. Everything
derived from them comes from the library functions the stages use: the spectrograms and
their metadata, the predictions table, the selection, the SHAP index, means and metrics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from quakeshap import explain, record
from quakeshap.artifacts import (
    checkpoint,
    explainer_comparison,
    metrics,
    predictions,
    raw,
    selection,
    shap_set,
)
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.artifacts.selection import EXAMPLE_GROUP
from quakeshap.artifacts.spectrograms import REQUIRED_COLUMNS, SpectrogramSet
from quakeshap.config import DemoConfig, Params, SpectrogramConfig, load_params, load_yaml
from quakeshap.evaluation import (
    classification_metrics,
    confusion_table,
    predictions_table,
    weekly_accuracy,
)
from quakeshap.explain import compare
from quakeshap.model import CNN2D, ModelConfig
from quakeshap.record import CLASS_NAMES, P_ARRIVAL_S, SAMPLING_RATE_HZ, TRACE_SAMPLES
from quakeshap.selection import select_traces
from quakeshap.spectrogram import compute_spectrograms, quantize
from quakeshap.stages import plots as plots_stage
from quakeshap.waveforms import metadata_table

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the station of every synthetic trace
STATION = "NRCA"
#: where the project's parameters go (a copy of the repository's, with changes)
PARAMS_FILE = "params.yaml"


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------


def write_params(root: Path, **changes: Mapping[str, Any]) -> Path:
    """The repository's ``params.yaml`` under ``root``, with sections updated.

    ``write_params(root, plots={"dpi": 40})`` changes ``plots.dpi`` only. Returns the file.
    """
    params = load_yaml(REPO_ROOT / PARAMS_FILE)
    for section, values in changes.items():
        params[section].update(values)
    path = root / PARAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------
# the raw record
# --------------------------------------------------------------------------------------


def synthetic_waveform(rng: np.random.Generator, p_s_diff_sec: float, post: bool) -> np.ndarray:
    """``(3, 2500)`` float64 counts: unit noise plus P at 5 s and S ``p_s_diff_sec`` later.

    The S wavelet rings at 9 Hz for ``post``, 14 Hz for ``pre``: a class difference a
    figure can show.
    """
    t = np.arange(TRACE_SAMPLES) / SAMPLING_RATE_HZ
    wave = rng.normal(0.0, 1.0, (3, TRACE_SAMPLES))
    s_hz = 9.0 if post else 14.0
    for onset, amp, freq in ((P_ARRIVAL_S, 30.0, 18.0), (P_ARRIVAL_S + p_s_diff_sec, 80.0, s_hz)):
        envelope = np.where(t >= onset, np.exp(-(t - onset) * 2.0), 0.0)
        for k in range(3):
            wave[k] += amp * envelope * np.sin(2 * np.pi * freq * (t - onset) + rng.uniform(0, 6))
    return wave


def attribute_table(
    rng: np.random.Generator, n_per_class: int, station: str = STATION
) -> pd.DataFrame:
    """A catalogue: the study's attribute columns for ``n_per_class`` pre then post traces,
    plus ``label``.

    Pre events fall in the 55 days from 2016-08-24, post events in those from 2016-10-31;
    every trace starts 5 s before its P arrival, and S − P is 0.75 × the P travel time.
    """
    n = 2 * n_per_class
    receiver = dataclasses.replace(record.NRCA, code=station)
    labels = np.repeat(CLASS_NAMES, n_per_class)
    start = {"pre": dt.datetime(2016, 8, 24, 3), "post": dt.datetime(2016, 10, 31, 2)}
    origin = [
        start[label] + dt.timedelta(days=float(d))
        for label, d in zip(labels, rng.uniform(0, 55, n), strict=True)
    ]
    p_travel = rng.uniform(1.5, 3.5, n)
    ps_diff = 0.75 * p_travel
    trace_start = [
        o + dt.timedelta(seconds=float(p - P_ARRIVAL_S))
        for o, p in zip(origin, p_travel, strict=True)
    ]
    source_id = [str(100000000 + 7 * i) for i in range(n)]
    table = pd.DataFrame(
        {
            "trace_name": [receiver.trace_name(s) for s in source_id],
            "trace_start_time": [f"{t:%Y-%m-%d %H:%M:%S.%f}+00:00" for t in trace_start],
            **receiver.receiver_columns(),
            "source_id": source_id,
            "source_depth_km": rng.uniform(2, 10, n),
            "source_latitude": 42.8 + rng.normal(0, 0.05, n),
            "source_longitude": 13.1 + rng.normal(0, 0.05, n),
            "source_magnitude": rng.uniform(0.6, 3.3, n),
            "source_origin_time": [f"{o:%Y-%m-%d %H:%M:%S.%f}"[:-3] for o in origin],
            "p_travel_sec": p_travel,
            "s_travel_sec": p_travel + ps_diff,
            "p_s_diff_sec": ps_diff,
        }
    )
    return table.loc[:, list(raw.ATTRIBUTE_COLUMNS)].assign(label=labels)


def write_raw(root: Path, catalogue: pd.DataFrame, waveforms: np.ndarray) -> Path:
    """The raw folder in the record's layout: per station and class an HDF5 file and an
    attribute table, and per station a similar-traces table (no co-located groups).

    ``catalogue`` is :func:`attribute_table`'s; ``waveforms`` ``(n, 3, n_samples)`` holds
    its rows' traces. Returns the raw folder.
    """
    folder = root / raw.PATH
    for (station, label), rows in catalogue.groupby(["receiver_name", "label"], sort=False):
        names = rows["trace_name"].tolist()
        raw.write_waveforms(record.hdf5_path(folder, station, label), names, waveforms[rows.index])
        raw.write_attributes(record.attributes_path(folder, station, label), rows)
    for station, rows in catalogue.groupby("receiver_name"):
        similar = dict(zip(raw.SIMILAR_COLUMNS, (rows["trace_name"], 0), strict=True))
        raw.write_similar_traces(record.similar_traces_path(folder, station), pd.DataFrame(similar))
    return folder


# --------------------------------------------------------------------------------------
# the spectrogram set
# --------------------------------------------------------------------------------------


def spectrogram_set_of(
    catalogue: pd.DataFrame, waveforms: np.ndarray, cfg: SpectrogramConfig, test_every: int = 2
) -> SpectrogramSet:
    """The spectrogram set the ``spectrograms`` stage would make of these traces, with
    every ``test_every``-th trace (the first included) in the test split."""
    n = len(catalogue)
    rows = catalogue.reset_index(drop=True).assign(
        split=np.where(np.arange(n) % test_every == 0, "test", "train"),
        associato=0,
        week=record.iso_week(catalogue["trace_start_time"]),
        station_code=catalogue["receiver_name"].to_numpy(),
    )
    spectra = compute_spectrograms(waveforms, cfg)
    return SpectrogramSet(
        images=quantize(spectra.images, cfg.quantization),
        metadata=metadata_table(rows, cfg.sampling_rate_hz),
        frequency_hz=spectra.frequency_hz,
        time_s=spectra.time_s,
        axes=spectrogram_set.axes_record(cfg, spectra.frequency_hz, spectra.time_s),
    )


def demo_spectrogram_set(
    root: Path, params: Params, **demo_changes: Any
) -> tuple[SpectrogramSet, DemoConfig]:
    """A demo raw set under ``root`` (``params.data.demo`` with ``demo_changes``) and the
    spectrogram set the ``spectrograms`` stage makes of it with ``params``; for the
    ground-truth tests, which train on it."""
    from quakeshap import demo
    from quakeshap.spectrogram import build_spectrogram_set

    demo_cfg = dataclasses.replace(params.data.demo, **demo_changes)
    demo.write_demo_dataset(demo_cfg, root / raw.PATH)
    out = root / spectrogram_set.PATH
    build_spectrogram_set(params, root / raw.PATH, out, root / metrics.REJECTED_PATH)
    return spectrogram_set.load(out), demo_cfg


def make_spectrogram_set(
    rng: np.random.Generator,
    n_pre: int = 36,
    n_post: int = 24,
    shape: tuple[int, int, int] = (3, 8, 16),
    test_fraction: float = 0.25,
    separation: float = 0.25,
) -> SpectrogramSet:
    """A tiny set without waveforms, for training and evaluation tests.

    Noisy uint8 images whose upper half (high frequencies) is darker for ``post`` by
    ``separation`` (attenuation, as in the real data), so a CNN separates the classes in
    an epoch or two. Rows: all pre, then all post; weeks 34–43 pre, 44–51 post; a random
    ``test_fraction`` in the test split; ``associato`` 0; the other required columns are
    placeholders.
    """
    n = n_pre + n_post
    label = np.array(["pre"] * n_pre + ["post"] * n_post)
    x = rng.normal(0.6, 0.08, size=(n, *shape))
    x[label == "post", :, shape[1] // 2 :, :] -= separation
    meta = pd.DataFrame({c: [f"{c}{i}" for i in range(n)] for c in REQUIRED_COLUMNS})
    meta["trace_name"] = [f"{STATION}.IV.{100000 + i}_EV" for i in range(n)]
    meta["label"] = label
    meta["split"] = np.where(rng.random(n) < test_fraction, "test", "train")
    meta["associato"] = 0
    meta["week"] = np.where(label == "pre", rng.integers(34, 44, n), rng.integers(44, 52, n))
    frequency = np.linspace(0, 50, shape[1])
    time = np.linspace(0.32, 12.67, shape[2])
    axes = {"quantization": "uint8"}
    return SpectrogramSet(record.to_uint8(x), meta, frequency, time, axes)


def write_spectrogram_set(folder: Path, sset: SpectrogramSet) -> Path:
    """Write ``sset`` as a spectrogram-set folder at ``folder``; returns ``folder``."""
    axes = {**sset.axes, "frequency_hz": sset.frequency_hz, "time_s": sset.time_s}
    spectrogram_set.write(folder, np.asarray(sset.images), sset.metadata, axes)
    return folder


# --------------------------------------------------------------------------------------
# the model's checkpoint
# --------------------------------------------------------------------------------------


def make_checkpoint(
    seed: int = 0, height: int = 33, width: int = 96, logit_scale: float = 20.0
) -> dict[str, Any]:
    """A random-weight model's checkpoint for images ``(3, height, width)``.

    The last layer is scaled by ``logit_scale`` so that the logits depend clearly on the
    input (a fresh network's are tiny); normalisation mean 0.5, std 0.25 per channel.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = CNN2D(ModelConfig(height=height, width=width))
        net.classifier[-1].weight.data.mul_(logit_scale)
    return checkpoint.make(net, list(CLASS_NAMES), [0.5] * 3, [0.25] * 3)


def write_checkpoint(root: Path, ckpt: dict[str, Any]) -> Path:
    """The model's checkpoint at its project path under ``root``; returns that path."""
    path = root / checkpoint.PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(ckpt, path)
    return path


# --------------------------------------------------------------------------------------
# predictions and selection
# --------------------------------------------------------------------------------------


def make_predictions(
    rng: np.random.Generator, metadata: pd.DataFrame, wrong: Sequence[int] | None = None
) -> pd.DataFrame:
    """The predictions table of the test traces, as the ``evaluate`` stage computes it.

    The logits are ``±margin / 2`` with a random margin in [1, 4), on the right class
    except for the test rows ``wrong`` (default: the second and the second-to-last, one
    pre and one post when the test rows are pre then post).
    """
    test = metadata[metadata["split"] == "test"].reset_index(drop=True)
    truth = test["label"].map(record.class_index).to_numpy()
    flipped = [1, len(test) - 2] if wrong is None else list(wrong)
    predicted = truth.copy()
    predicted[flipped] = 1 - truth[flipped]
    margin = rng.uniform(1.0, 4.0, len(test))
    logit_post = np.where(predicted == 1, margin, -margin) / 2
    return predictions_table(test, np.stack([-logit_post, logit_post], axis=1))


def write_predictions(root: Path, table: pd.DataFrame) -> Path:
    """The ``evaluate`` stage's tables under ``root``: the predictions and the two derived
    from them."""
    folder = root / predictions.FOLDER
    predictions.write(folder, table, confusion_table(table), weekly_accuracy(table))
    return folder


def write_selection(root: Path, table: pd.DataFrame) -> Path:
    """The selection at its project path under ``root``."""
    path = root / selection.PATH
    selection.write(path, table)
    return path


# --------------------------------------------------------------------------------------
# the SHAP set
# --------------------------------------------------------------------------------------


def make_shap_maps(
    rng: np.random.Generator, chosen: pd.DataFrame, sset: SpectrogramSet
) -> explain.ShapMaps:
    """Maps and index as the ``explain`` stage would return them for selection ``chosen``.

    Each map is small noise plus a block (20–27 Hz rows, columns 36–49) that is positive
    for ``post`` and negative for ``pre``; the base value is 0, so ``f_x`` is the map's
    sum and additivity holds exactly.
    """
    plan = explain.plan_jobs(chosen, sset, seed=0)
    _, height, width = sset.image_shape
    maps = []
    for c in plan.index["class_index"]:
        value = rng.normal(0, 1e-3, (height, width, 3)).astype(np.float32)
        value[20:28, 36:50] += np.float32(5e-3 if c == 1 else -5e-3)
        maps.append(value)
    values = np.stack(maps)
    total = values.astype(np.float64).sum(axis=(1, 2, 3))
    index = plan.index.assign(base_value=0.0, f_x=total, shap_sum=total, additivity_error=0.0)
    return explain.ShapMaps(values, index, seconds=0.0)


def make_explainer_comparison(
    rng: np.random.Generator, maps: explain.ShapMaps, sset: SpectrogramSet, params: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ``explainers`` stage's table and metrics, with ``maps`` (:func:`make_shap_maps`)
    read as two configurations: as they are (``partition:inpaint_telea``) and with broad
    noise added (``deep``), scored against a made-up ground truth, the rows of the maps'
    block (31.25-42.1875 Hz)."""
    cfg = dataclasses.replace(params.explainers, configurations=("partition:inpaint_telea", "deep"))
    runs = compare.configurations(cfg, params.shap)
    noise = rng.normal(0, 5e-3, maps.values.shape).astype(np.float32)
    noisy = dataclasses.replace(maps, values=maps.values + noise)
    truth = compare.TruthBand(float(sset.frequency_hz[20]), float(sset.frequency_hz[27]))
    _, p_arrival_s = explain.image_timing(sset.axes)
    table = pd.concat(
        [
            compare.score_maps(m, sset.frequency_hz, sset.time_s, run, truth, p_arrival_s)
            for m, run in zip((maps, noisy), runs, strict=True)
        ],
        ignore_index=True,
    )
    return table, compare.summarize(table, truth)


def write_shap(root: Path, shaps: shap_set.ShapSet) -> Path:
    """The SHAP set at its project path under ``root``."""
    folder = root / shap_set.PATH
    shap_set.write(folder, shaps)
    return folder


# --------------------------------------------------------------------------------------
# reports: history, rejected traces, metrics
# --------------------------------------------------------------------------------------


def make_history(n_folds: int = 2, n_epochs: int = 3) -> pd.DataFrame:
    """A training history: losses falling and accuracy rising with the epoch."""
    rows = [
        (fold, epoch, 0.7 / epoch + 0.01 * fold, 0.75 / epoch, 0.6 + 0.1 * epoch - 0.01 * fold)
        for fold in range(n_folds)
        for epoch in range(1, n_epochs + 1)
    ]
    return pd.DataFrame(rows, columns=list(metrics.HISTORY_COLUMNS))


def make_rejected(station: str = STATION) -> pd.DataFrame:
    """Two rejected traces, one per class, with the reasons the stage gives."""
    rows = [
        (f"{station}.IV.999_EV", "pre", "fewer than 3 channels (2)"),
        (f"{station}.IV.998_EV", "post", "not in HDF5"),
    ]
    rows = [(name, record.hdf5_path("", station, label).name, why) for name, label, why in rows]
    return pd.DataFrame(rows, columns=list(metrics.REJECTED_COLUMNS))


def write_reports(
    root: Path,
    history: pd.DataFrame,
    rejected: pd.DataFrame,
    stage_metrics: Mapping[str, dict[str, Any]],
) -> None:
    """The training history, the rejected traces and each stage's metrics file."""
    metrics.write_history(root / metrics.HISTORY_PATH, history)
    metrics.write_rejected(root / metrics.REJECTED_PATH, rejected)
    for stage, values in stage_metrics.items():
        metrics.write(root / metrics.PATHS[stage], values)


# --------------------------------------------------------------------------------------
# the whole project
# --------------------------------------------------------------------------------------


def write_plot_inputs(
    root: Path, rng: np.random.Generator, n_per_class: int = 10, dpi: int = 40
) -> dict[str, Any]:
    """Write a project holding every input of the ``plots`` stage under ``root``.

    ``params.yaml`` is the repository's with ``plots.dpi = dpi``. Returns facts the tests
    check against: ``example`` (the single-trace figure's trace), ``examples`` and
    ``misclassified`` (trace names), ``weeks`` (of the weekly maps), ``n_maps``,
    ``accuracy`` (of the test split) and ``configurations`` (of the explainers compared).
    """
    params = load_params(write_params(root, plots={"dpi": dpi}))
    catalogue = attribute_table(rng, n_per_class)
    post = (catalogue["label"] == "post").to_numpy()
    waveforms = np.stack(
        [
            synthetic_waveform(rng, d, p)
            for d, p in zip(catalogue["p_s_diff_sec"], post, strict=True)
        ]
    )
    write_raw(root, catalogue, waveforms)
    sset = spectrogram_set_of(catalogue, waveforms, params.spectrogram)
    write_spectrogram_set(root / spectrogram_set.PATH, sset)

    scored = make_predictions(rng, sset.metadata)
    write_predictions(root, scored)
    chosen = select_traces(scored, params.select).table
    write_selection(root, chosen)

    maps = make_shap_maps(rng, chosen, sset)
    duration_s, p_arrival_s = explain.image_timing(sset.axes)
    shaps = explain.aggregate(maps, duration_s, p_arrival_s)
    write_shap(root, shaps)

    comparison, comparison_metrics = make_explainer_comparison(rng, maps, sset, params)
    explainer_comparison.write(root / explainer_comparison.PATH, comparison)

    evaluated = classification_metrics(scored)
    stage_metrics = {
        "train": {"chosen_fold": 1, "best_val_accuracy": 0.9},
        "evaluate": evaluated,
        "explain": explain.summarize(
            maps, sset.frequency_hz, sset.time_s, params.shap, duration_s, p_arrival_s
        ),
        "explainers": comparison_metrics,
    }
    write_reports(root, make_history(), make_rejected(), stage_metrics)
    examples = chosen.loc[chosen["group"] == EXAMPLE_GROUP, "trace_name"].tolist()
    return {
        "example": examples[0],
        "examples": examples,
        "misclassified": scored.loc[~scored["correct"], "trace_name"].tolist(),
        "weeks": shaps.weekly["week"].tolist(),
        "n_maps": len(shaps.index),
        "accuracy": evaluated["accuracy"],
        "configurations": comparison_metrics["configurations"],
    }


def run_plots_stage(root: Path) -> int:
    """Run the ``plots`` stage on the project under ``root``; return its exit status."""
    return plots_stage.main(["--root", str(root), "--params", str(root / PARAMS_FILE)])
