"""quakeshap: what a CNN learns when it tells foreshocks from aftershocks.

The package holds all the logic of the workflow; ``stages/`` holds one thin command-line
script per DVC stage. Modules, one per concern:

- :mod:`quakeshap.config`       params.yaml → frozen dataclasses, checked before any work.
- :mod:`quakeshap.files`        atomic, deterministic writes (nothing half-written is cached).
- :mod:`quakeshap.zenodo`       download and verify the Zenodo record.
- :mod:`quakeshap.demo`         a physically motivated demo data set in the Zenodo layout.
- :mod:`quakeshap.waveforms`    read and validate the raw layout (HDF5, CSV, similar-traces pickle).
- :mod:`quakeshap.spectrogram`  the study's RGB spectrograms, vectorised over chunks.
- :mod:`quakeshap.model`        the study's CNN2D and self-describing checkpoints.
- :mod:`quakeshap.training`     cross-validated training and test-split evaluation.
- :mod:`quakeshap.selection`    which traces to explain.
- :mod:`quakeshap.explain`      SHAP maps, in parallel, with additivity checks.
- :mod:`quakeshap.plots`        the study's figures.
- :mod:`quakeshap.report`       the self-contained HTML report.
"""

__version__ = "0.1.0"
