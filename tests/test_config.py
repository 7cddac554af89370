"""params.yaml → frozen dataclasses: unknown, missing and mistyped keys fail with their names."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from quakeshap import config
from quakeshap.config import ConfigError


@pytest.fixture
def raw_params(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_params_yaml_loads_and_is_complete(repo_root):
    params = config.load_params(repo_root / "params.yaml")
    assert params.data.source == "demo"
    # the study's spectrogram settings are the default, not a profile
    assert params.spectrogram.nperseg == 64
    assert params.spectrogram.noverlap == 51
    assert params.spectrogram.n_samples == 1300
    assert params.spectrogram.quantization == "uint8"
    assert params.split.seed == 42 and params.split.test_fraction == 0.2
    assert isinstance(params.spectrogram.stations, tuple)


def test_dataclass_defaults_are_params_yaml(repo_root):
    """Two sets of values (params.yaml = the demo, profiles/study.yaml = the study), not a
    third in code: every section built with no arguments equals params.yaml's."""
    params = config.load_params(repo_root / "params.yaml")
    for section in dataclasses.fields(config.Params):
        built = section.default_factory()  # type: ignore[misc]
        assert built == getattr(params, section.name), (
            f"{section.name}: the defaults of {type(built).__name__} differ from params.yaml"
        )
    assert config.to_dict(config.Params()) == config.to_dict(params)


def test_roundtrip_to_dict(repo_root, raw_params):
    params = config.load_params(repo_root / "params.yaml")
    assert config.parse_params(config.to_dict(params)) == params
    assert config.to_dict(params) == config.to_dict(config.parse_params(raw_params))


def test_unknown_key_names_it_and_suggests(raw_params):
    bad = copy.deepcopy(raw_params)
    bad["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        config.parse_params(bad)
    bad = copy.deepcopy(raw_params)
    bad["train"]["max_epoch"] = 3
    with pytest.raises(ConfigError, match=r"did you mean 'max_epochs'"):
        config.parse_params(bad)


def test_missing_key_names_it(raw_params):
    bad = copy.deepcopy(raw_params)
    del bad["shap"]["max_evals"]
    with pytest.raises(ConfigError, match=r"missing parameter\(s\): shap\.max_evals"):
        config.parse_params(bad)


def test_nested_unknown_key(raw_params):
    bad = copy.deepcopy(raw_params)
    bad["spectrogram"]["preprocess"]["lowpass"] = 10
    with pytest.raises(ConfigError, match=r"spectrogram\.preprocess\.lowpass"):
        config.parse_params(bad)


@pytest.mark.parametrize(
    ("section", "key", "value", "pattern"),
    [
        ("train", "n_folds", "seven", r"train\.n_folds"),
        ("train", "n_folds", 1, r"train\.n_folds: must be >= 2"),
        ("train", "device", "gpu", r"train\.device.*'auto', 'cuda', 'cpu'"),
        ("train", "exclude_colocated", "yes", r"train\.exclude_colocated"),
        ("spectrogram", "noverlap", 64, r"spectrogram\.noverlap"),
        ("spectrogram", "quantization", "uint16", r"spectrogram\.quantization"),
        ("split", "test_fraction", 1.5, r"split\.test_fraction"),
        ("shap", "workers", 0, r"shap\.workers"),
        ("shap", "workers", "many", r"shap\.workers"),
        ("data", "source", "s3", r"data\.source"),
    ],
)
def test_mistyped_or_out_of_range(raw_params, section, key, value, pattern):
    bad = copy.deepcopy(raw_params)
    bad[section][key] = value
    with pytest.raises(ConfigError, match=pattern):
        config.parse_params(bad)


def test_int_is_accepted_for_float_and_converted(raw_params):
    good = copy.deepcopy(raw_params)
    good["train"]["lr"] = 1
    params = config.parse_params(good)
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)


def test_bool_is_not_an_int(raw_params):
    bad = copy.deepcopy(raw_params)
    bad["train"]["max_epochs"] = True
    with pytest.raises(ConfigError, match=r"train\.max_epochs"):
        config.parse_params(bad)


def test_dataclasses_are_frozen(repo_root):
    params = config.load_params(repo_root / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lr = 0.5  # type: ignore[misc]


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read parameter file"):
        config.load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_params(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load_params(scalar)


def test_error_carries_file_name(tmp_path, raw_params):
    bad = copy.deepcopy(raw_params)
    bad["select"]["per_klass"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=rf"{path}.*select\.per_klass"):
        config.load_params(path)


def test_resolve_workers():
    assert config.resolve_workers("auto", cpu_count=6) == 6
    assert config.resolve_workers(3) == 3


def test_union_prefers_the_exact_type(raw_params):
    """`shap.workers: 2` is the integer 2, not the text "2"."""
    good = copy.deepcopy(raw_params)
    good["shap"]["workers"] = 2
    assert config.parse_params(good).shap.workers == 2
    good["shap"]["workers"] = "auto"
    assert config.parse_params(good).shap.workers == "auto"


def test_unquoted_record_id_is_text(raw_params):
    good = copy.deepcopy(raw_params)
    good["data"]["zenodo"]["record_id"] = 15683047
    assert config.parse_params(good).data.zenodo.record_id == "15683047"
