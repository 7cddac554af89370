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
