"""A tiny, synthetic project tree holding every input of the ``plots`` stage.

Built in code to the COMMON data contracts (data/raw HDF5 layout, data/spectrograms,
data/selection.csv, data/shap, reports/*), so the plots and report tests do not depend on
the other stages. Waveforms carry a P and an S wavelet; the spectrograms are computed from
them as SPEC §2 says, so the example-trace figure shows real structure.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pandas as pd
import yaml
from scipy import signal

from quakeshap import files
from quakeshap.dataset import ATTRIBUTE_COLUMNS, CLASS_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
FS = 100.0
N_SAMPLES = 2500
SPEC_SAMPLES = 1300


def _waveform(rng: np.random.Generator, ps_diff: float, post: bool) -> np.ndarray:
    t = np.arange(N_SAMPLES) / FS
    wave = rng.normal(0.0, 1.0, (3, N_SAMPLES))
    for onset, amp, freq in ((5.0, 30.0, 18.0), (5.0 + ps_diff, 80.0, 9.0 if post else 14.0)):
        after = t >= onset
        envelope = np.where(after, np.exp(-(t - onset) * 2.0), 0.0)
        for k in range(3):
            wave[k] += amp * envelope * np.sin(2 * np.pi * freq * (t - onset) + rng.uniform(0, 6))
    return wave


def _spectrogram_images(waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    freq, time, power = signal.spectrogram(
        waveforms[:, :, :SPEC_SAMPLES], fs=FS, nperseg=64, noverlap=51, axis=-1
    )
    logp = np.log10(power + 1e-10)
    lo = logp.min(axis=(1, 2, 3), keepdims=True)
    hi = logp.max(axis=(1, 2, 3), keepdims=True)
    images = np.floor(255 * (logp - lo) / (hi - lo)).clip(0, 255).astype(np.uint8)
    return images, freq, time


def write_plot_inputs(
    root: Path, rng: np.random.Generator, n_per_class: int = 10, dpi: int = 40
) -> dict[str, object]:
    """Write the inputs under ``root``; return a few facts the tests check against.

    Returns
    -------
    ``{"example": name, "misclassified": [names], "examples": [names], "weeks": [...],
    "n_maps": int}``
    """
    n = 2 * n_per_class
    labels = np.array(["pre"] * n_per_class + ["post"] * n_per_class)
    names = [f"NRCA.IV.{100000000 + 7 * i}_EV" for i in range(n)]
    start_pre, start_post = dt.datetime(2016, 8, 24, 3), dt.datetime(2016, 10, 31, 2)
    origin = [
        (start_pre if lab == "pre" else start_post) + dt.timedelta(days=float(d))
        for lab, d in zip(labels, rng.uniform(0, 55, n), strict=True)
    ]
    p_travel = rng.uniform(1.5, 3.5, n)
    ps_diff = 0.75 * p_travel
    trace_start = [
        o + dt.timedelta(seconds=float(p - 5.0)) for o, p in zip(origin, p_travel, strict=True)
    ]
    meta = pd.DataFrame(
        {
            "trace_name": names,
            "trace_start_time": [f"{t:%Y-%m-%d %H:%M:%S.%f}+00:00" for t in trace_start],
            "network_code": "IV",
            "receiver_name": "NRCA",
            "receiver_type": "HH",
            "receiver_elevation_m": 927.0,
            "receiver_latitude": 42.83355,
            "receiver_longitude": 13.11427,
            "source_id": [str(100000000 + 7 * i) for i in range(n)],
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
    assert tuple(meta.columns) == ATTRIBUTE_COLUMNS
    meta["label"] = labels
    meta["split"] = np.where(np.arange(n) % 2 == 0, "test", "train")
    meta["associato"] = 0
    meta["week"] = [t.isocalendar()[1] for t in trace_start]
    meta["filename"] = [f"{name}.png" for name in names]
    meta["station_code"] = "NRCA"
    meta["trace_p_arrival_sample"] = 500
    meta["trace_s_arrival_sample"] = np.round(500 + ps_diff * FS).astype(int)
    meta["trace_p_arrival_s"] = 5.0
    meta["trace_s_arrival_s"] = 5.0 + ps_diff

    # data/raw: the Zenodo layout
    waveforms = np.stack(
        [_waveform(rng, d, lab == "post") for d, lab in zip(ps_diff, labels, strict=True)]
    )
    station_dir = root / "data/raw/dset/data/catalogs/NRCA"
    station_dir.mkdir(parents=True)
    for label in CLASS_NAMES:
        with h5py.File(station_dir / f"NRCA_{label}.hdf5", "w") as h5:
            for i in np.flatnonzero(labels == label):
                h5.create_dataset(names[i], data=waveforms[i], track_times=False)

    # data/spectrograms
    images, freq, time = _spectrogram_images(waveforms)
    spec_dir = root / "data/spectrograms"
    spec_dir.mkdir(parents=True)
    files.save_npy(spec_dir / "images.npy", images)
    files.write_csv(spec_dir / "metadata.csv", meta)
    files.write_json(
        spec_dir / "axes.json",
        {"frequency_hz": freq, "time_s": time, "quantization": "uint8", "nperseg": 64},
    )

    # reports/evaluate/predictions.csv: the test split, two of them misclassified
    test = meta[meta["split"] == "test"].reset_index(drop=True)
    y = test["label"].map({"pre": 0, "post": 1}).to_numpy()
    margin = rng.uniform(1.0, 4.0, len(test))
    wrong = np.array([1, len(test) - 2])  # one pre, one post
    predicted = y.copy()
    predicted[wrong] = 1 - y[wrong]
    logit_post = np.where(predicted == 1, margin, -margin) / 2
    logit_pre = -logit_post
    p_post = 1 / (1 + np.exp(logit_pre - logit_post))
    predictions = pd.DataFrame(
        {
            "trace_name": test["trace_name"],
            "label": test["label"],
            "logit_pre": logit_pre,
            "logit_post": logit_post,
            "probability": np.where(predicted == 1, p_post, 1 - p_post),
            "predicted": [CLASS_NAMES[k] for k in predicted],
            "correct": predicted == y,
            "week": test["week"],
        }
    )
    files.write_csv(root / "reports/evaluate/predictions.csv", predictions)
    files.write_csv(root / "reports/evaluate/confusion.csv", predictions[["label", "predicted"]])

    # data/selection.csv
    sel_rows = []
    correct = predictions[predictions["correct"]]
    for _, r in correct.iterrows():
        sel_rows.append(
            (r.trace_name, "class", "random correct", r.label, r.predicted, r.week, False)
        )
    for _, r in predictions[~predictions["correct"]].iterrows():
        sel_rows.append(
            (r.trace_name, "misclassified", "misclassified", r.label, r.predicted, r.week, True)
        )
    examples = [correct[correct["label"] == c].iloc[0] for c in CLASS_NAMES]
    for r in examples:
        sel_rows.append(
            (r.trace_name, "example", "most confident", r.label, r.predicted, r.week, True)
        )
    for week, part in correct.groupby("week"):
        r = part.iloc[0]
        sel_rows.append((r.trace_name, "week", f"week {week}", r.label, r.predicted, r.week, False))
    selection = pd.DataFrame(
        sel_rows,
        columns=["trace_name", "group", "reason", "label", "predicted", "week", "explain_both"],
    )
    files.write_csv(root / "data/selection.csv", selection)

    # data/shap
    pred_by_name = predictions.set_index("trace_name")
    meta_by_name = meta.set_index("trace_name")
    idx_rows, maps = [], []
    for name, part in selection.groupby("trace_name", sort=False):
        both = bool(part["explain_both"].any())
        pred = pred_by_name.loc[name, "predicted"]
        classes = [0, 1] if both else [CLASS_NAMES.index(pred)]
        for c in classes:
            value = rng.normal(0, 1e-3, (33, 96, 3)).astype(np.float32)
            value[20:28, 36:50] += np.float32(5e-3 if c == 1 else -5e-3)
            maps.append(value)
            idx_rows.append(
                {
                    "trace_name": name,
                    "class_index": c,
                    "class_name": CLASS_NAMES[c],
                    "groups": ";".join(dict.fromkeys(part["group"])),
                    "label": pred_by_name.loc[name, "label"],
                    "predicted": pred,
                    "week": int(meta_by_name.loc[name, "week"]),
                    "p_s_diff_sec": float(meta_by_name.loc[name, "p_s_diff_sec"]),
                    "base_value": 0.0,
                    "f_x": float(value.sum()),
                    "shap_sum": float(value.sum()),
                    "additivity_error": 0.0,
                }
            )
    values = np.stack(maps)
    index = pd.DataFrame(idx_rows)
    shap_dir = root / "data/shap"
    shap_dir.mkdir(parents=True)
    files.save_npy(shap_dir / "values.npy", values)
    files.write_csv(shap_dir / "index.csv", index)
    files.save_npy(
        shap_dir / "mean_p_aligned.npy",
        np.stack([values[index["class_index"] == c].mean(0) for c in (0, 1)]),
    )
    files.save_npy(
        shap_dir / "mean_s_aligned.npy",
        np.stack([values[index["class_index"] == c, :, 10:69].mean(0) for c in (0, 1)]),
    )
    weeks = sorted(index["week"].unique())
    files.save_npy(
        shap_dir / "weekly_mean.npy", np.stack([values[index["week"] == w].mean(0) for w in weeks])
    )
    files.write_csv(
        shap_dir / "weekly.csv",
        pd.DataFrame({"week": weeks, "n_maps": [int((index["week"] == w).sum()) for w in weeks]}),
    )

    # reports: training history, rejected traces, metrics
    history = pd.DataFrame(
        [
            (fold, epoch, 0.7 / epoch + 0.01 * fold, 0.75 / epoch, 0.6 + 0.1 * epoch - 0.01 * fold)
            for fold in range(2)
            for epoch in range(1, 4)
        ],
        columns=["fold", "epoch", "train_loss", "val_loss", "val_accuracy"],
    )
    files.write_csv(root / "reports/train/history.csv", history)
    files.write_csv(
        root / "reports/data/rejected.csv",
        pd.DataFrame(
            {
                "trace_name": ["NRCA.IV.999_EV", "NRCA.IV.998_EV"],
                "file": ["NRCA_pre.hdf5", "NRCA_post.hdf5"],
                "reason": ["fewer than 3 channels (2)", "not in HDF5"],
            }
        ),
    )
    accuracy = float(predictions["correct"].mean())
    files.write_json(root / "reports/metrics/train.json", {"chosen_fold": 1, "best_val_accuracy": 0.9})
    files.write_json(
        root / "reports/metrics/evaluate.json",
        {"accuracy": accuracy, "f1": 0.8123, "n_test": len(predictions)},
    )
    files.write_json(
        root / "reports/metrics/explain.json",
        {
            "n_maps": len(index),
            "additivity_error_max": 1.5e-6,
            "band_fraction": {
                c: {f"{lo}_{lo + 10}hz": 0.2 for lo in range(0, 50, 10)} for c in CLASS_NAMES
            },
            "band_share": {f"{lo}_{lo + 10}hz": 0.2 for lo in range(0, 50, 10)},
            "window_fraction": {
                c: {"before_p": 0.2, "p_to_s": 0.5, "after_s": 0.3} for c in CLASS_NAMES
            },
        },
    )

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["plots"]["dpi"] = dpi
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return {
        "example": examples[0].trace_name,
        "examples": [r.trace_name for r in examples],
        "misclassified": predictions.loc[~predictions["correct"], "trace_name"].tolist(),
        "weeks": weeks,
        "n_maps": len(index),
        "accuracy": accuracy,
    }


def load_stage(name: str) -> ModuleType:
    """Import ``stages/<name>.py`` (a script, not a package module) to call its ``main``."""
    path = REPO_ROOT / "stages" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stage_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_plots_stage(root: Path) -> int:
    """Run the ``plots`` stage on the project under ``root``; return its exit status."""
    stage = load_stage("plots")
    return stage.main(["--root", str(root), "--params", str(root / "params.yaml")])
