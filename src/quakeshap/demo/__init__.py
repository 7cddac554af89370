"""A synthetic NRCA data set in the layout of Zenodo record 15683047.

:func:`write_demo_dataset` writes, deterministically from ``data.demo.seed``, exactly the
files the real record unpacks to (``docs/method.md`` §1; the paths of
:mod:`quakeshap.record`, the formats of :mod:`quakeshap.artifacts.raw`), so that every
later stage runs on it unchanged. ``docs/demo-data.md`` describes the data set; the
modules hold its physics in full, with every formula:

- :mod:`quakeshap.demo.catalog`: the events (origin times, magnitudes, locations,
  co-located groups, travel times) and the defects planted as in the real record;
- :mod:`quakeshap.demo.physics`: source, path and site spectra, noise, envelopes and the
  synthesis of three-component waveforms;
- :mod:`quakeshap.demo.truth`: the band where pre and post differ, the ground truth for
  the explanations;
- :mod:`quakeshap.demo.writer`: the record's files.

The same seed gives byte-identical files on any machine: every exponential, logarithm,
power and trigonometric function of the generator is :mod:`quakeshap.detmath`'s
(IEEE-exact arithmetic only), never NumPy's or ``libm``'s, whose last bit depends on the
CPU (AVX-512 or not, FMA or not); ``tests/test_determinism.py`` checks it.
"""

from quakeshap.demo.catalog import DemoDefects, DemoError, demo_catalog, demo_defects
from quakeshap.demo.physics import synthesize_waveforms
from quakeshap.demo.truth import discriminative_band_hz
from quakeshap.demo.writer import write_demo_dataset

__all__ = [
    "DemoDefects",
    "DemoError",
    "demo_catalog",
    "demo_defects",
    "discriminative_band_hz",
    "synthesize_waveforms",
    "write_demo_dataset",
]
