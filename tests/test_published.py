"""The study's published numbers, and the run's measures they are set beside."""

from __future__ import annotations

import numpy as np
import pytest

from quakeshap import published
from quakeshap.explain.maps import BANDS_HZ
from quakeshap.explain.metrics import fixed_window_fractions, mean_map_peak


@pytest.mark.parametrize("table", [published.BAND_FRACTION, published.TIME_FRACTION])
def test_published_fractions_are_fractions_of_one_map(table):
    for per_class in table.values():
        # the study's numbers are rounded to 2-3 digits: they sum to 1 within that
        assert sum(per_class.values()) == pytest.approx(1.0, abs=0.011)


def test_published_keys_match_the_runs_keys():
    bands = [f"{lo:g}_{hi:g}hz" for lo, hi in BANDS_HZ]
    assert list(published.BAND_SHARE) == bands
    for per_class in published.BAND_FRACTION.values():
        assert list(per_class) == bands
    windows = [name for name, _, _ in published.TIME_WINDOWS_S]
    for per_class in published.TIME_FRACTION.values():
        assert list(per_class) == windows


def test_published_numbers_cannot_be_changed_by_a_caller():
    with pytest.raises(TypeError):
        published.BAND_FRACTION["pre"]["0_10hz"] = 1.0  # type: ignore[index]


def test_fixed_windows_split_at_5_and_6_5_seconds():
    time_s = np.array([1.0, 4.9, 5.0, 6.4, 6.5, 12.0])
    maps = np.zeros((2, 4, 6, 3))
    maps[0, :, 0, 0] = 1.0  # all before 5 s
    maps[1, 0, 1, :] = -1.0  # 3 units before 5 s (sign does not matter)
    maps[1, 0, 3, 1] = 2.0  # 2 units in 5-6.5 s
    maps[1, 0, 4, 2] = 5.0  # 5 units from 6.5 s on
    got = fixed_window_fractions(maps, time_s)
    np.testing.assert_allclose(got, [[1, 0, 0], [0.3, 0.2, 0.5]])


def test_mean_map_peak_is_the_largest_pixel_of_the_mean_absolute_map():
    frequency_hz = np.array([0.0, 10.0, 20.0])
    time_s = np.array([1.0, 2.0, 3.0, 4.0])
    maps = np.zeros((2, 3, 4, 3))
    maps[0, 2, 1, 0] = 3.0  # mean |.| at (20 Hz, 2 s): 1.5
    maps[1, 1, 3, :] = -0.8  # mean |.| at (10 Hz, 4 s): 1.2 (summed over channels)
    assert mean_map_peak(maps, frequency_hz, time_s) == (20.0, 2.0)
    maps[1, 1, 3, :] = -1.2  # now 1.8
    assert mean_map_peak(maps, frequency_hz, time_s) == (10.0, 4.0)
