"""Shared fixtures. Module-specific fixtures live in their own test modules; the builders
of artefacts (each through its owner's writer) live in :mod:`tests.fixtures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.browser import find_chromium
from tests.raw_fixtures import RawSet, write_raw

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng() -> np.random.Generator:
    """A local, seeded generator: tests never touch global random state."""
    return np.random.default_rng(12345)


@pytest.fixture
def raw(tmp_path: Path, rng: np.random.Generator) -> RawSet:
    """A tiny valid raw folder in the record's layout (:func:`tests.raw_fixtures.write_raw`)."""
    return write_raw(tmp_path / "raw", rng)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def plots_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A synthetic project holding every input of the ``plots`` stage, run once.

    Shared by test_plots.py and test_report.py (the browser test opens its report); tests
    that change files work on a copy. Returns the folder and facts about its contents.
    """
    from tests.fixtures import run_plots_stage, write_plot_inputs

    root = tmp_path_factory.mktemp("plots_project")
    facts = write_plot_inputs(root, np.random.default_rng(20161030))
    assert run_plots_stage(root) == 0
    return root, facts


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Headless Chromium and its driver (tests/browser.py); skips, or fails in CI, without."""
    return find_chromium()


def pytest_collection_modifyitems(config, items):
    """Files with slow (end-to-end) tests first, the others after, each file's tests in
    their own order: ``make test``'s two pytest-xdist workers take whole files in this
    order (``--dist loadfile``), so the long files start early and the short ones fill in at
    the end instead of one worker finishing a long file alone."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
