"""Shared fixtures. Module-specific fixtures live in their own test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng() -> np.random.Generator:
    """A local, seeded generator: tests never touch global random state."""
    return np.random.default_rng(12345)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def plots_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A synthetic project holding every input of the ``plots`` stage, run once.

    Shared by test_plots.py and test_report.py (the browser test opens its report); tests
    that change files work on a copy. Returns the folder and facts about its contents.
    """
    from tests.plot_inputs import run_plots_stage, write_plot_inputs

    root = tmp_path_factory.mktemp("plots_project")
    facts = write_plot_inputs(root, np.random.default_rng(20161030))
    assert run_plots_stage(root) == 0
    return root, facts


# --- synthetic spectrogram sets (train / evaluate / select tests) ---------------------


def make_spectrogram_set(
    rng: np.random.Generator,
    n_pre: int = 36,
    n_post: int = 24,
    shape: tuple[int, int, int] = (3, 8, 16),
    test_fraction: float = 0.25,
    separation: float = 0.25,
):
    """A tiny :class:`~quakeshap.dataset.SpectrogramSet`: noisy uint8 images whose upper
    half (high frequencies) is darker for ``post`` by ``separation`` (attenuation, as in
    the real data), so a CNN separates the classes in an epoch or two. Rows: all pre, then
    all post; weeks 34–43 pre, 44–51 post; a random ``test_fraction`` in the test split;
    ``associato`` 0 (tests set groups themselves)."""
    import pandas as pd

    from quakeshap.dataset import REQUIRED_COLUMNS, SpectrogramSet

    n = n_pre + n_post
    label = np.array(["pre"] * n_pre + ["post"] * n_post)
    x = rng.normal(0.6, 0.08, size=(n, *shape))
    x[label == "post", :, shape[1] // 2 :, :] -= separation
    images = np.floor(255 * np.clip(x, 0, 1)).astype(np.uint8)
    meta = pd.DataFrame({c: [f"{c}{i}" for i in range(n)] for c in REQUIRED_COLUMNS})
    meta["trace_name"] = [f"NRCA.IV.{100000 + i}_EV" for i in range(n)]
    meta["label"] = label
    meta["split"] = np.where(rng.random(n) < test_fraction, "test", "train")
    meta["associato"] = 0
    meta["week"] = np.where(label == "pre", rng.integers(34, 44, n), rng.integers(44, 52, n))
    frequency = np.linspace(0, 50, shape[1])
    time = np.linspace(0.32, 12.67, shape[2])
    return SpectrogramSet(images, meta, frequency, time, {"quantization": "uint8"})


def write_spectrogram_set(folder: Path, sset) -> Path:
    """Write a SpectrogramSet in the ``data/spectrograms/`` layout; returns ``folder``."""
    import json

    from quakeshap import dataset, files

    folder.mkdir(parents=True, exist_ok=True)
    files.save_npy(folder / dataset.IMAGES_FILE, sset.images)
    files.write_csv(folder / dataset.METADATA_FILE, sset.metadata)
    axes = {"frequency_hz": sset.frequency_hz.tolist(), "time_s": sset.time_s.tolist()}
    (folder / dataset.AXES_FILE).write_text(json.dumps({**sset.axes, **axes}))
    return folder


@pytest.fixture
def spectrogram_set_factory():
    """``make_spectrogram_set`` as a fixture: call it with a Generator and sizes."""
    return make_spectrogram_set
