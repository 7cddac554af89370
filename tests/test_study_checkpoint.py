"""The study's Lightning checkpoints → quakeshap checkpoints: the same function, no code run."""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from quakeshap.artifacts import checkpoint
from quakeshap.interop import study_checkpoint
from quakeshap.interop.study_checkpoint import STUDY_MEAN, STUDY_STD
from quakeshap.interop.study_release import StudyReleaseError
from quakeshap.model import model_from_checkpoint
from quakeshap.record import CLASS_NAMES


class StudyCNN(nn.Module):
    """The study's network as its notebook names the layers (``docs/method.md`` §3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.BatchNorm1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.BatchNorm2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.BatchNorm3 = nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 8 * 24, 128)
        self.fc2 = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool, relu = nn.functional.max_pool2d, nn.functional.relu
        x = relu(pool(self.BatchNorm1(self.conv1(x)), 2))
        x = relu(pool(self.BatchNorm2(self.conv2(x)), 2))
        x = relu(self.BatchNorm3(self.conv3(x)))
        return self.fc2(relu(self.fc1(x.view(x.size(0), -1))))


def study_network(seed: int = 0) -> StudyCNN:
    """A study network with non-trivial weights and batch-norm statistics."""
    torch.manual_seed(seed)
    net = StudyCNN()
    with torch.no_grad():
        for bn in (net.BatchNorm1, net.BatchNorm2, net.BatchNorm3):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
            bn.num_batches_tracked.fill_(570)
    return net.eval()


def lightning_checkpoint(net: nn.Module, prefix: str = "model.") -> dict:
    """What Lightning's ``ModelCheckpoint`` saves, in its layout (no hyperparameters)."""
    state = OrderedDict((prefix + k, v) for k, v in net.state_dict().items())
    params = list(net.parameters())
    return {
        "epoch": 6,
        "global_step": 665,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 7}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {
                "monitor": "val_acc",
                "best_model_score": torch.tensor(0.9971),
                "best_model_path": "checkpoints/best_model_fold_2.ckpt",
                "current_score": torch.tensor(0.9971),
                "dirpath": "checkpoints",
            },
            "EarlyStopping{'monitor': 'val_acc', 'mode': 'max'}": {
                "wait_count": 0, "stopped_epoch": 0, "best_score": torch.tensor(0.9971),
                "patience": 3,
            },
        },
        "optimizer_states": [
            {
                "state": {i: {"step": torch.tensor(665.0), "exp_avg": torch.zeros_like(p)}
                          for i, p in enumerate(params[:2])},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                  "weight_decay": 0, "amsgrad": False,
                                  "params": list(range(len(params)))}],
            }
        ],
        "lr_schedulers": [],
    }  # fmt: skip


def save_ckpt(ckpt: dict, path: Path) -> Path:
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def net() -> StudyCNN:
    return study_network()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Pixel values k/255 as the study's PNG files held them, ``(4, 3, 33, 96)``."""
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.integers(0, 256, (4, 3, 33, 96)).astype(np.float32) / 255)


def study_logits(net: StudyCNN, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(STUDY_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STUDY_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return net((images - mean) / std)


@pytest.mark.parametrize("prefix", ["model.", ""])
def test_converted_model_computes_the_studys_function(tmp_path, net, images, prefix):
    """With or without Lightning's ``model.`` prefix, the converted checkpoint rebuilds a
    model that gives the study's logits from pixel values, normalisation included."""
    path = save_ckpt(lightning_checkpoint(net, prefix), tmp_path / "best_model_fold_2.ckpt")
    out = tmp_path / "converted.pt"
    assert study_checkpoint.main([str(path), str(out)]) == 0
    ckpt = checkpoint.load(out)
    assert ckpt["class_names"] == list(CLASS_NAMES)
    assert ckpt["normalization"] == {"mean": list(STUDY_MEAN), "std": list(STUDY_STD)}
    assert ckpt["study_checkpoint"]["epoch"] == 6
    assert ckpt["study_checkpoint"]["pytorch-lightning_version"] == "2.1.3"
    assert "test_traces" not in ckpt
    model = model_from_checkpoint(ckpt, input_shape=(3, 33, 96))
    with torch.no_grad():
        ours = model(images)
    expected = study_logits(net, images)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert (ours.argmax(1) == expected.argmax(1)).all()
    # the weights themselves, bit for bit (fc1 is 128 × 24576)
    assert torch.equal(ckpt["state_dict"]["classifier.2.weight"], net.fc1.weight)
    assert ckpt["state_dict"]["classifier.2.weight"].shape == (128, 24576)
    assert torch.equal(ckpt["state_dict"]["features.9.running_var"], net.BatchNorm3.running_var)


def test_member_of_the_release_zip_and_recorded_traces(tmp_path, net, images):
    """``model_checkpoints.zip`` holds two checkpoints: one is chosen with --member; the
    metadata table gives the train and test traces (the control's: co-located are test)."""
    model_bytes = tmp_path / "a.ckpt"
    control = study_network(seed=1)
    save_ckpt(lightning_checkpoint(net), model_bytes)
    save_ckpt(lightning_checkpoint(control), tmp_path / "b.ckpt")
    archive = tmp_path / "model_checkpoints.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "a.ckpt", "model_checkpoints/best_model_fold_2.ckpt")
        zf.write(tmp_path / "b.ckpt", "model_checkpoints/best_model_c_fold_2.ckpt")
    metadata = pd.DataFrame(
        {
            "trace_name": ["t0", "t1", "t2", "t3"],
            "split": ["train", "train", "test", "test"],
            "associato": [0, 3, 0, 3],
        }
    )
    metadata.to_csv(tmp_path / "study_metadata.csv", index=False)
    out = tmp_path / "control.pt"
    argv = [str(archive), str(out), "--member", "best_model_c_fold_2.ckpt",
            "--metadata", str(tmp_path / "study_metadata.csv"), "--exclude-colocated"]  # fmt: skip
    assert study_checkpoint.main(argv) == 0
    ckpt = checkpoint.load(out)
    assert ckpt["train_traces"] == ["t0"]
    assert ckpt["test_traces"] == ["t1", "t2", "t3"]
    assert ckpt["exclude_colocated"] is True
    assert (
        "model_checkpoints.zip:model_checkpoints/best_model_c_fold_2.ckpt"
        in (ckpt["study_checkpoint"]["file"])
    )
    with torch.no_grad():
        ours = model_from_checkpoint(ckpt)(images)
    torch.testing.assert_close(ours, study_logits(control, images), rtol=1e-5, atol=1e-5)
    # without --member the archive's two checkpoints are named, nothing is written
    assert study_checkpoint.main([str(archive), str(tmp_path / "x.pt")]) == 1
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(StudyReleaseError, match=r"best_model_c_fold_2\.ckpt"):
        study_checkpoint.read_study_checkpoint(archive)


def _state(net: nn.Module) -> OrderedDict:
    return OrderedDict((k, v.clone()) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"loss_fn.weight": torch.ones(2)}), r"unexpected key\(s\) \['loss_fn"),
        (lambda s: s.pop("BatchNorm2.running_var"), r"missing key\(s\) \['BatchNorm2.running_var"),
        (
            lambda s: s.update({"fc1.weight": torch.zeros(128, 24575)}),
            r"misshapen key\(s\) \['fc1.weight \(128, 24575\), expected \(128, 24576\)",
        ),
        (
            lambda s: s.update({"conv1.weight": torch.full((32, 3, 3, 3), float("nan"))}),
            r"conv1.weight holds NaN",
        ),
    ],
    ids=["extra", "missing", "misshapen", "nan"],
)
def test_bad_state_dict_is_refused_naming_the_key(tmp_path, net, change, message):
    state = _state(net)
    change(state)
    path = save_ckpt({"state_dict": state, "epoch": 1}, tmp_path / "bad.ckpt")
    out = tmp_path / "out" / "converted.pt"
    with pytest.raises(StudyReleaseError, match=message) as err:
        study_checkpoint.convert(*study_checkpoint.read_study_checkpoint(path))
    assert str(path) in str(err.value)
    assert study_checkpoint.main([str(path), str(out)]) == 1
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_mixed_prefixes_are_refused(tmp_path, net):
    state = _state(net)
    state["model.fc2.bias"] = state.pop("fc2.bias")
    path = save_ckpt({"state_dict": state}, tmp_path / "mixed.ckpt")
    with pytest.raises(StudyReleaseError, match="mixes keys with and without"):
        study_checkpoint.convert(*study_checkpoint.read_study_checkpoint(path))


class Payload:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, net):
    marker = tmp_path / "pwned"
    ckpt = lightning_checkpoint(net)
    ckpt["hyper_parameters"] = {"evil": Payload(marker)}
    path = save_ckpt(ckpt, tmp_path / "evil.ckpt")
    out = tmp_path / "converted.pt"
    with pytest.raises(
        StudyReleaseError, match=r"refused to load it: the pickle asks for \S*open"
    ) as err:
        study_checkpoint.read_study_checkpoint(path)
    assert str(path) in str(err.value)
    assert study_checkpoint.main([str(path), str(out)]) == 1
    assert not marker.exists() and not out.exists()
    # the payload is live: a full unpickling would have created the file
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(StudyReleaseError, match=r"junk\.ckpt: not a readable PyTorch checkpoint"):
        study_checkpoint.read_study_checkpoint(junk)
    plain = save_ckpt({"weights": torch.ones(2)}, tmp_path / "plain.ckpt")
    with pytest.raises(StudyReleaseError, match="expected a dict with a 'state_dict'"):
        study_checkpoint.read_study_checkpoint(plain)
    with pytest.raises(StudyReleaseError, match="no such file"):
        study_checkpoint.read_study_checkpoint(tmp_path / "absent.ckpt")
