"""quakeshap: what a CNN learns when it tells foreshocks from aftershocks.

The package holds all the logic of the workflow; :mod:`quakeshap.stages` holds one short
module per DVC stage (``python -m quakeshap.stages.<name>``). Modules, one per concern:

- :mod:`quakeshap.record`       the record's facts: sampling, P arrival, channels, classes,
                                its layout on disk, the uint8 ↔ [0, 1] pixel scaling.
- :mod:`quakeshap.artifacts`    one owner per file passed between stages: paths, file
                                names, columns, ``write`` and ``load``.
- :mod:`quakeshap.config`       params.yaml → frozen dataclasses, checked before any work.
- :mod:`quakeshap.profiles`     named parameter profiles (the study) as DVC experiments.
- :mod:`quakeshap.files`        atomic, deterministic writes (nothing half-written is cached).
- :mod:`quakeshap.zenodo`       download and verify the Zenodo record.
- :mod:`quakeshap.archives`     unpack a downloaded archive safely.
- :mod:`quakeshap.manifest`     the inventory of ``data/raw/`` (path, size, sha256).
- :mod:`quakeshap.demo`         a physically motivated demo data set in the Zenodo layout.
- :mod:`quakeshap.detmath`      elementary functions that give the same bits everywhere.
- :mod:`quakeshap.waveforms`    the catalogue and the traces of the raw layout, validated.
- :mod:`quakeshap.unpickle`     the record's similar-traces pickle, read without running code.
- :mod:`quakeshap.splits`       the train/test split and the co-located groups.
- :mod:`quakeshap.spectrogram`  the study's RGB spectrograms, vectorised over chunks.
- :mod:`quakeshap.model`        the study's CNN2D.
- :mod:`quakeshap.training`     cross-validated training.
- :mod:`quakeshap.training_data` the training set: balance, normalisation, folds.
- :mod:`quakeshap.torch_runtime` mixed precision, deterministic kernels, per-fold seeds.
- :mod:`quakeshap.evaluation`   the test set's predictions and scores.
- :mod:`quakeshap.selection`    which traces to explain.
- :mod:`quakeshap.explain`      SHAP maps, in parallel, with additivity checks.
- :mod:`quakeshap.plots`        the study's figures (a package: inputs, maps, charts, ...).
- :mod:`quakeshap.report`       the self-contained HTML report.
"""

__version__ = "0.1.0"
