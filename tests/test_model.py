"""The study's CNN2D (docs/method.md §3), its checkpoints and device resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quakeshap import model as qm
from quakeshap.artifacts import checkpoint
from quakeshap.artifacts.checkpoint import CheckpointError
from quakeshap.model import CNN2D, DeviceError, ModelConfig
from quakeshap.record import CLASS_NAMES


def _macs(net: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply–accumulates per conv / linear layer for one forward pass of one image."""
    counts: dict[str, int] = {}

    def hook(name):
        def count(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                k_h, k_w = module.kernel_size
                per_output = module.in_channels // module.groups * k_h * k_w
                counts[name] = output[0].numel() * per_output
            else:
                counts[name] = module.in_features * module.out_features

        return count

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in net.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        net.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return counts


def test_shapes_and_parameter_count_match_the_study():
    net = CNN2D()
    assert qm.count_parameters(net) == 3_239_810  # docs/method.md §3: 3.24 M
    features = net.features(torch.zeros(2, 3, 33, 96))
    assert features.shape == (2, 128, 8, 24)  # flatten: 128·8·24 = 24576
    assert net(torch.zeros(2, 3, 33, 96)).shape == (2, 2)
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(24576, 128), (128, 2)]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in convs] == [
        (3, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
        (64, 128, (3, 3), (1, 1)),
    ]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.1]


def test_layer_order_is_the_studys():
    kinds = [type(m).__name__ for m in net_layers(CNN2D())]
    assert kinds == [
        "Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU",
        "Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU",
        "Conv2d", "BatchNorm2d", "ReLU",
        "Flatten", "Dropout", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip


def net_layers(net: CNN2D) -> list[nn.Module]:
    return [*net.features, *net.classifier]


def test_no_module_instance_is_used_twice():
    """Explainers that hook modules (DeepExplainer, DeepLift) need one module per use."""
    net = CNN2D()
    layers = net_layers(net)
    assert len({id(m) for m in layers}) == len(layers)
    calls: dict[int, int] = {}

    def count(module, inputs, output):
        calls[id(module)] = calls.get(id(module), 0) + 1

    handles = [m.register_forward_hook(count) for m in layers]
    net.eval()(torch.zeros(1, 3, 33, 96))
    for h in handles:
        h.remove()
    assert set(calls.values()) == {1} and len(calls) == len(layers)


def test_forward_flops():
    """About 68 MFLOP per forward pass (docs/method.md §3), counting 2 FLOP per
    multiply–accumulate of the convolutions and linear layers (batch norm, pooling and ReLU
    add < 1 %)."""
    macs = _macs(CNN2D(), (3, 33, 96))
    assert macs == {
        "features.0": 32 * 33 * 96 * 3 * 9,  # 2,737,152
        "features.4": 64 * 16 * 48 * 32 * 9,  # 14,155,776
        "features.8": 128 * 8 * 24 * 64 * 9,  # 14,155,776
        "classifier.2": 24576 * 128,  # 3,145,728
        "classifier.5": 128 * 2,
    }
    flops = 2 * sum(macs.values())
    assert flops == 68_389_376
    assert flops == pytest.approx(68e6, rel=0.01)


def test_checkpoint_round_trip_and_normalisation(tmp_path):
    torch.manual_seed(0)
    net = CNN2D(ModelConfig(dropout=0.2)).eval()
    mean, std = [0.681, 0.667, 0.649], [0.133, 0.135, 0.133]
    ckpt = checkpoint.make(net, list(CLASS_NAMES), mean, std, extra={"test_traces": ["a", "b"]})
    path = tmp_path / checkpoint.PATH.name
    checkpoint.save(ckpt, path)
    loaded = checkpoint.load(path)
    assert tuple(loaded)[: len(checkpoint.KEYS)] == checkpoint.KEYS
    assert loaded["class_names"] == list(CLASS_NAMES)
    assert loaded["test_traces"] == ["a", "b"] and loaded["model_config"]["dropout"] == 0.2
    rebuilt = qm.model_from_checkpoint(loaded, input_shape=(3, 33, 96))
    x = torch.rand(4, 3, 33, 96, generator=torch.Generator().manual_seed(1))
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(rebuilt(x), expected)
    bare = qm.model_from_checkpoint(loaded, normalized_input=True)
    torch.testing.assert_close(bare(x), net(x))


def test_checkpoint_for_another_image_shape_is_a_clear_error(tmp_path):
    ckpt = checkpoint.make(CNN2D(), list(CLASS_NAMES), [0.5] * 3, [0.1] * 3)
    with pytest.raises(CheckpointError, match=r"trained on images of shape \(3, 33, 96\).*"
                       r"\(3, 65, 96\).*dvc repro train"):  # fmt: skip
        qm.model_from_checkpoint(ckpt, input_shape=(3, 65, 96))


def test_unreadable_or_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        checkpoint.load(tmp_path / "foreign.pt")


def test_checkpoints_are_saved_byte_for_byte_and_folds_together(tmp_path):
    """The same checkpoint gives the same bytes wherever it is saved; the folds go into one
    folder, all or none."""
    torch.manual_seed(0)
    ckpt = checkpoint.make(CNN2D(), list(CLASS_NAMES), [0.5] * 3, [0.1] * 3, extra={"fold": 1})
    checkpoint.save(ckpt, tmp_path / "a" / checkpoint.PATH.name)
    checkpoint.save(ckpt, tmp_path / "b" / checkpoint.PATH.name)
    first, second = ((tmp_path / d / checkpoint.PATH.name).read_bytes() for d in "ab")
    assert first == second
    folds = tmp_path / checkpoint.FOLDS_DIR.name
    checkpoint.save_folds({1: ckpt, 2: ckpt}, folds)
    assert sorted(p.name for p in folds.iterdir()) == [checkpoint.fold_file(k) for k in (1, 2)]
    assert (folds / checkpoint.fold_file(2)).read_bytes() == first


def test_device_resolution(monkeypatch):
    assert qm.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert qm.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="'cuda' was requested but torch sees no CUDA GPU"):
        qm.resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        qm.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert qm.resolve_device("auto") == torch.device("cuda")
    assert qm.resolve_device("cuda") == torch.device("cuda")
