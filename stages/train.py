"""Stage ``train``: cross-validated CNN2D on the spectrograms (SPEC §3).

Reads ``data/spectrograms/`` and ``params.yaml:train``; writes ``models/model.pt`` (the
chosen fold, with the traces it was trained and tested on), ``models/folds/fold_<k>.pt``,
``reports/metrics/train.json`` and ``reports/train/history.csv``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from quakeshap.config import ConfigError, load_params
from quakeshap.dataset import DatasetError, load_spectrogram_set
from quakeshap.io import atomic_dir, write_csv, write_json
from quakeshap.model import DeviceError, save_checkpoint
from quakeshap.training import TrainingError, train_model

log = logging.getLogger("quakeshap.stages.train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--spectrograms", default="data/spectrograms", type=Path)
    parser.add_argument("--models", default="models", type=Path)
    parser.add_argument("--metrics", default="reports/metrics/train.json", type=Path)
    parser.add_argument("--history", default="reports/train/history.csv", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    # cuBLAS reads this at its first use: deterministic matrix products on CUDA
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        cfg = load_params(args.params).train
        data = load_spectrogram_set(args.spectrograms)
        run = train_model(data, cfg, progress=progress)
    except (ConfigError, DatasetError, DeviceError, TrainingError) as exc:
        log.error("%s", exc)
        return 1
    with atomic_dir(args.models / "folds") as folds:
        for k, ckpt in run.folds.items():
            save_checkpoint(ckpt, folds / f"fold_{k}.pt")
    save_checkpoint(run.model, args.models / "model.pt")
    write_json(args.metrics, run.metrics)
    write_csv(args.history, run.history)
    log.info(
        "model = fold %d (val accuracy %.4f) → %s",
        run.metrics["chosen_fold"], run.metrics["best_val_accuracy"], args.models / "model.pt",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
