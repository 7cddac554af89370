"""The synthetic project of ``tests/fixtures.py``: every artefact reads back through its
owner, and the artefacts agree with each other as a pipeline run's would."""

from __future__ import annotations

import numpy as np
import torch

from quakeshap import record
from quakeshap.artifacts import checkpoint, metrics, predictions, raw, selection, shap_set
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import load_params
from quakeshap.model import model_from_checkpoint
from quakeshap.spectrogram import compute_spectrograms, quantize
from quakeshap.unpickle import load_similar_traces
from quakeshap.waveforms import read_catalog
from tests.fixtures import (
    PARAMS_FILE,
    STATION,
    make_checkpoint,
    make_spectrogram_set,
    write_checkpoint,
    write_spectrogram_set,
)


def test_every_artefact_loads_through_its_owner(plots_project):
    root, facts = plots_project
    sset = spectrogram_set.load(root / spectrogram_set.PATH)
    shaps = shap_set.load(root / shap_set.PATH, sset.image_shape[1:])
    chosen = selection.load(root / selection.PATH)
    scored = predictions.load(root / predictions.PATH)
    assert len(metrics.load_history(root / metrics.HISTORY_PATH)) > 0
    assert len(metrics.load_rejected(root / metrics.REJECTED_PATH)) == 2
    for stage in ("train", "evaluate", "explain"):
        assert metrics.load(root / metrics.PATHS[stage], stage)
    assert len(shaps.index) == facts["n_maps"]
    assert shaps.weekly["week"].tolist() == facts["weeks"]
    test_names = set(sset.metadata.loc[sset.metadata["split"] == "test", "trace_name"])
    assert set(chosen["trace_name"]) <= set(scored["trace_name"]) == test_names
    wrong = scored.loc[~scored["correct"], ["trace_name", "label"]]
    assert wrong["trace_name"].tolist() == facts["misclassified"]
    assert sorted(wrong["label"]) == sorted(record.CLASS_NAMES)  # one of each class


def test_raw_folder_is_the_records_layout_and_the_spectrograms_are_its(plots_project):
    root, _ = plots_project
    folder = root / raw.PATH
    sset = spectrogram_set.load(root / spectrogram_set.PATH)
    names = sset.metadata["trace_name"].tolist()
    assert read_catalog(folder, [STATION])["trace_name"].tolist() == names
    similar = load_similar_traces(record.similar_traces_path(folder, STATION))
    assert sorted(similar["trace_name"]) == sorted(names)
    waves = raw.read_traces(folder, sset.metadata, names)
    cfg = load_params(root / PARAMS_FILE).spectrogram
    spectra = compute_spectrograms(np.stack([waves[n] for n in names]), cfg)
    np.testing.assert_array_equal(quantize(spectra.images, cfg.quantization), sset.images)
    np.testing.assert_allclose(sset.frequency_hz, spectra.frequency_hz)
    np.testing.assert_allclose(sset.time_s, spectra.time_s)


def test_shap_maps_add_up_and_the_means_follow_the_class_mean_rule(plots_project):
    root, _ = plots_project
    shaps = shap_set.load(root / shap_set.PATH)
    index = shaps.index
    np.testing.assert_allclose(index["shap_sum"], index["f_x"] - index["base_value"])
    np.testing.assert_allclose(
        shaps.values.astype(np.float64).sum(axis=(1, 2, 3)), index["shap_sum"], rtol=1e-6
    )
    for c in range(len(record.CLASS_NAMES)):
        members = shaps.values[shap_set.class_mean_mask(index, c)]
        assert len(members) > 0
        np.testing.assert_allclose(shaps.mean_p_aligned[c], members.mean(axis=0), atol=1e-7)


def test_small_spectrogram_set_round_trips(tmp_path, rng):
    sset = make_spectrogram_set(rng, n_pre=5, n_post=3)
    back = spectrogram_set.load(write_spectrogram_set(tmp_path / "set", sset))
    np.testing.assert_array_equal(back.images, sset.images)
    assert back.metadata["trace_name"].tolist() == sset.metadata["trace_name"].tolist()
    assert back.labels().tolist() == [0] * 5 + [1] * 3
    np.testing.assert_allclose(back.time_s, sset.time_s)


def test_checkpoint_rebuilds_the_same_model(tmp_path):
    path = write_checkpoint(tmp_path, make_checkpoint(seed=1, height=8, width=16))
    assert path == tmp_path / checkpoint.PATH
    net = model_from_checkpoint(checkpoint.load(path), input_shape=(3, 8, 16))
    again = model_from_checkpoint(make_checkpoint(seed=1, height=8, width=16))
    x = torch.rand(2, 3, 8, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert net(x).shape == (2, 2)
        torch.testing.assert_close(net(x), again(x))
