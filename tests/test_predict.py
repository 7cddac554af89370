"""A trained model on new waveforms (:mod:`quakeshap.predict`), on ObsPy's example record.

``obspy.read()`` with no argument gives a 30 s three-component record of station RJOB at
100 Hz. The model is a random-weight checkpoint of the right format; the images are made
with the study's spectrogram parameters, written as a spectrogram set's axes record.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import pytest
import torch
import yaml

from quakeshap import predict
from quakeshap.artifacts import checkpoint
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.config import PlotsConfig, PreprocessConfig, ShapConfig, SpectrogramConfig, to_dict
from quakeshap.evaluation import softmax
from quakeshap.files import write_json
from quakeshap.interop.seisbench_dataset import write_dataset
from quakeshap.model import CNN2D, ModelConfig, model_from_checkpoint
from quakeshap.spectrogram import spectrogram_axes, spectrogram_images
from tests.fixtures import make_checkpoint, write_checkpoint

#: P of the example event, 5 s after the record's start: the window is the record's first 25 s
P_TIME = "2009-08-24T00:20:08Z"


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    checkpoint: Path
    spectrograms: Path
    params: Path
    stream: obspy.Stream


def _axes(folder: Path, cfg: SpectrogramConfig) -> Path:
    frequency_hz, time_s = spectrogram_axes(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / spectrogram_set.AXES_FILE, spectrogram_set.axes_record(cfg, frequency_hz, time_s)
    )
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("predict")
    path = write_checkpoint(root, make_checkpoint(seed=3))
    params = root / "params.yaml"
    shap = ShapConfig(max_evals=64, batch_size=32, workers=1, device="cpu")
    plots = PlotsConfig(dpi=30, width_in=6.0, height_in=4.0)
    params.write_text(yaml.safe_dump({"shap": to_dict(shap), "plots": to_dict(plots)}))
    stream = obspy.read()
    stream.write(str(root / "rjob.mseed"), format="MSEED")
    only_z = stream.select(component="Z").copy()
    for trace in only_z:
        trace.stats.station = "ONLYZ"
    only_z.write(str(root / "onlyz.mseed"), format="MSEED")
    fast = stream.copy()
    for trace in fast:
        trace.stats.station = "FAST"
        trace.data = trace.data.astype(np.float64)
        trace.resample(200.0)
        trace.write(str(root / f"fast_{trace.stats.channel}.sac"), format="SAC")
    return Project(root, path, _axes(root / "spectrograms", SpectrogramConfig()), params, stream)


def _picks(folder: Path, rows: list[dict[str, str]]) -> Path:
    path = folder / "picks.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run(project: Project, out: Path, *args: str, spectrograms: Path | None = None) -> int:
    return predict.main(
        ["--checkpoint", str(project.checkpoint), "--spectrograms",
         str(spectrograms or project.spectrograms), "--params", str(project.params),
         "--device", "cpu", "--out", str(out), *args]
    )  # fmt: skip


def _expected(
    project: Project, ckpt: dict, preprocess: PreprocessConfig | None = None
) -> np.ndarray:
    """The model's softmax on the example window, computed here from the raw samples."""
    wave = np.stack([project.stream.select(component=c)[0].data[:2500] for c in "ENZ"])
    wave = wave.astype(np.float64)
    cfg = SpectrogramConfig()
    if preprocess is not None:
        from quakeshap.waveforms import preprocess_waveforms

        wave = preprocess_waveforms(wave, 100.0, preprocess)
    images, _ = spectrogram_images(wave[None, :, :1300], cfg, np.uint8)
    model = model_from_checkpoint(ckpt)
    with torch.inference_mode():
        logits = model(torch.from_numpy(images.astype(np.float32) / 255)).numpy()
    return softmax(logits)[0]


def test_files_and_picks_each_trace_reported(project, tmp_path):
    picks = _picks(
        tmp_path,
        [
            {"network": "BW", "station": "RJOB", "location": "", "p_arrival_time": P_TIME},
            {"network": "BW", "station": "RJOB", "location": "",
             "p_arrival_time": "2009-08-24T00:20:27Z"},
            {"network": "BW", "station": "ONLYZ", "location": "", "p_arrival_time": P_TIME},
            {"network": "BW", "station": "FAST", "location": "", "p_arrival_time": P_TIME},
            {"network": "BW", "station": "NOPE", "location": "", "p_arrival_time": P_TIME},
        ],
    )  # fmt: skip
    out = tmp_path / "out"
    files = [str(project.root / "*.mseed"), str(project.root / "fast_*.sac")]
    assert _run(project, out, "--waveforms", *files, "--picks", str(picks)) == 0
    table = pd.read_csv(out / predict.OUTPUT_FILE).fillna({"error": ""})
    assert table["status"].tolist() == ["ok", "error", "error", "error", "error"]
    errors = table["error"].tolist()
    assert errors[0] == ""
    assert "runs off the record" in errors[1]
    assert "missing component(s) ['E', 'N']" in errors[2]
    assert "sampling rate 200 Hz" in errors[3] and "--resample" in errors[3]
    assert "no waveform of BW.NOPE." in errors[4]
    expected = _expected(project, checkpoint.load(project.checkpoint))
    ok = table.iloc[0]
    assert ok["channel"] == "EH"
    assert ok["trace_name"] == "BW.RJOB._20090824T002008.00"
    np.testing.assert_allclose([ok["probability_pre"], ok["probability_post"]], expected, atol=1e-5)
    assert ok["predicted"] == ("pre", "post")[int(np.argmax(expected))]
    assert not (out / predict.SHAP_DIR).exists() and not (out / predict.FIGURES_DIR).exists()


def test_resample_brings_200_hz_to_the_same_prediction(project, tmp_path):
    rows = [
        {"network": "BW", "station": s, "p_arrival_time": P_TIME, "trace_name": s}
        for s in ("RJOB", "FAST")
    ]
    files = [str(project.root / "rjob.mseed"), str(project.root / "fast_*.sac")]
    out = tmp_path / "out"
    picks = _picks(tmp_path, rows)
    assert _run(project, out, "--waveforms", *files, "--picks", str(picks), "--resample") == 0
    table = pd.read_csv(out / predict.OUTPUT_FILE).set_index("trace_name")
    assert (table["status"] == "ok").all()
    columns = ["probability_pre", "probability_post"]
    np.testing.assert_allclose(table.loc["FAST", columns], table.loc["RJOB", columns], atol=0.02)


def test_none_predicted_exits_1_with_the_table(project, tmp_path):
    picks = _picks(tmp_path, [{"network": "BW", "station": "NOPE", "p_arrival_time": P_TIME}])
    out = tmp_path / "out"
    files = str(project.root / "rjob.mseed")
    assert _run(project, out, "--waveforms", files, "--picks", str(picks)) == 1
    table = pd.read_csv(out / predict.OUTPUT_FILE)
    assert table["status"].tolist() == ["error"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"network": "BW", "station": "RJOB"}], "missing column(s) ['p_arrival_time']"),
        ([{"network": "BW", "station": "RJOB", "p_arrival_time": "soon"}], "line 2"),
    ],
)
def test_unusable_pick_table_writes_nothing(project, tmp_path, caplog, rows, message):
    picks = _picks(tmp_path, rows)
    out = tmp_path / "out"
    files = str(project.root / "rjob.mseed")
    assert _run(project, out, "--waveforms", files, "--picks", str(picks)) == 1
    assert not out.exists()
    assert str(picks) in caplog.text and message in caplog.text


def test_unreadable_waveform_file_is_named(project, tmp_path, caplog):
    bad = tmp_path / "bad.mseed"
    bad.write_text("not a seismogram")
    picks = _picks(tmp_path, [{"network": "BW", "station": "RJOB", "p_arrival_time": P_TIME}])
    assert _run(project, tmp_path / "out", "--waveforms", str(bad), "--picks", str(picks)) == 1
    assert f"{bad}: not a waveform file ObsPy reads" in caplog.text
    assert not (tmp_path / "out").exists()


def test_shap_maps_and_figures(project, tmp_path):
    picks = _picks(tmp_path, [{"network": "BW", "station": "RJOB", "p_arrival_time": P_TIME}])
    out = tmp_path / "out"
    files = str(project.root / "rjob.mseed")
    assert (
        _run(project, out, "--waveforms", files, "--picks", str(picks), "--shap", "--figures") == 0
    )
    row = pd.read_csv(out / predict.OUTPUT_FILE).iloc[0]
    values = np.load(out / predict.SHAP_DIR / f"{predict.safe_name(row['trace_name'])}.npy")
    assert values.shape == (33, 96, 3) and values.dtype == np.float32
    assert row["shap_sum"] == pytest.approx(float(values.sum(dtype=np.float64)), abs=1e-4)
    # partition SHAP values add up to f(x) - f(masked), in logits, for the predicted class
    logit = row[f"logit_{row['predicted']}"]
    assert row["shap_sum"] == pytest.approx(logit - row["shap_base_value"], abs=1e-3)
    figure = out / predict.FIGURES_DIR / f"{predict.safe_name(row['trace_name'])}.png"
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_the_checkpoint_s_preprocessing_is_applied(project, tmp_path):
    """A model trained on high-passed waveforms sees high-passed new waveforms."""
    preprocess = PreprocessConfig(demean=True, highpass_hz=10.0)
    folder = _axes(tmp_path / "spectrograms", SpectrogramConfig(preprocess=preprocess))
    picks = _picks(tmp_path, [{"network": "BW", "station": "RJOB", "p_arrival_time": P_TIME}])
    out = tmp_path / "out"
    files = str(project.root / "rjob.mseed")
    argv = ["--waveforms", files, "--picks", str(picks)]
    assert _run(project, out, *argv, spectrograms=folder) == 0
    row = pd.read_csv(out / predict.OUTPUT_FILE).iloc[0]
    ckpt = checkpoint.load(project.checkpoint)
    expected = _expected(project, ckpt, preprocess)
    np.testing.assert_allclose(
        [row["probability_pre"], row["probability_post"]], expected, atol=1e-5
    )
    plain = _expected(project, ckpt)
    assert np.abs(plain - expected).max() > 1e-3  # the filter changed the answer


def test_seisbench_input_agrees_with_the_file(project, tmp_path):
    """The same window given as a SeisBench data set gets the same probabilities, and a
    magnitude checkpoint writes a magnitude."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    wave = np.stack([project.stream.select(component=c)[0].data for c in "ENZ"])
    second = wave.copy()
    meta = pd.DataFrame(
        {
            "trace_name": ["rjob", "rjob_late"],
            "trace_start_time": ["2009-08-24T00:20:03.000000Z"] * 2,
            "trace_sampling_rate_hz": [100.0, 100.0],
            "trace_p_arrival_sample": [500.0, 2900.0],
            "station_code": ["RJOB", "RJOB"],
        }
    )
    fmt = {"sampling_rate": 100.0, "component_order": "ENZ", "dimension_order": "CW"}
    write_dataset(folder, meta, [wave, second], fmt)
    out = tmp_path / "out"
    assert _run(project, out, "--seisbench", str(folder)) == 0
    table = pd.read_csv(out / predict.OUTPUT_FILE).fillna({"error": ""})
    assert table["status"].tolist() == ["ok", "error"]
    assert "runs off the record" in table.loc[1, "error"]
    assert table.loc[0, "p_arrival_time"] == "2009-08-24T00:20:08.000000Z"
    expected = _expected(project, checkpoint.load(project.checkpoint))
    got = table.loc[0, ["probability_pre", "probability_post"]].to_numpy(dtype=float)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = CNN2D(ModelConfig(n_classes=1))
    extra = {
        "task": {"kind": "magnitude", "classes": ["magnitude"]},
        "target_scale": {"mean": 2.0, "std": 0.5},
    }
    ckpt = checkpoint.make(net, ["magnitude"], [0.5] * 3, [0.25] * 3, extra=extra)
    path = tmp_path / "magnitude.pt"
    checkpoint.save(ckpt, path)
    out = tmp_path / "magnitude"
    argv = ["--checkpoint", str(path), "--spectrograms", str(project.spectrograms)]
    assert predict.main([*argv, "--seisbench", str(folder), "--out", str(out)]) == 0
    table = pd.read_csv(out / predict.OUTPUT_FILE)
    images, _ = spectrogram_images(
        wave[None, :, :1300].astype(np.float64), SpectrogramConfig(), np.uint8
    )
    with torch.inference_mode():
        value = model_from_checkpoint(ckpt)(torch.from_numpy(images.astype(np.float32) / 255))
    assert table.loc[0, "magnitude"] == pytest.approx(float(value[0, 0]), abs=1e-5)
    assert "probability" not in table.columns
