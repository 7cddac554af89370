"""profiles/study.yaml holds the study's configuration; `make study` applies it with -S."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quakeshap.config import load_params, load_yaml, parse_params
from quakeshap.profiles import ProfileError, encode_value, profile_overrides

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "profiles" / "study.yaml"
PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def study() -> dict:
    return load_yaml(STUDY)


@pytest.fixture(scope="module")
def base() -> dict:
    return load_yaml(PARAMS)


def _leaf_keys(mapping: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else key
        keys |= _leaf_keys(value, dotted) if isinstance(value, dict) else {dotted}
    return keys


def test_study_profile_has_exactly_the_keys_of_params_yaml(study, base):
    assert _leaf_keys(study) == _leaf_keys(base)


def test_study_profile_is_a_valid_configuration():
    params = load_params(STUDY)
    assert params.data.source == "zenodo"


def test_study_profile_values_are_the_studys(study):
    p = parse_params(study)
    # docs/method.md §1: the real Zenodo record
    assert p.data.source == "zenodo"
    assert p.data.zenodo.record_id == "15683047"
    assert p.data.zenodo.base_url == "https://zenodo.org"
    # docs/method.md §2: spectrograms
    assert p.spectrogram.stations == ("NRCA",)
    assert p.spectrogram.sampling_rate_hz == 100.0
    assert p.spectrogram.n_samples == 1300
    assert p.spectrogram.nperseg == 64
    assert p.spectrogram.noverlap == 51
    assert p.spectrogram.log_floor == 1e-10
    assert p.spectrogram.quantization == "uint8"
    assert not p.spectrogram.preprocess.active
    # docs/method.md §2: random 80/20 split over traces, seed 42
    assert p.split.for_task(p.task.kind).by == "trace"
    assert p.split.test_fraction == 0.2
    assert p.split.seed == 42
    # docs/method.md §3: training
    assert p.train.n_folds == 7
    assert p.train.lr == 1e-3
    assert p.train.batch_size == 32
    assert p.train.max_epochs == 10
    assert p.train.patience == 3
    assert p.train.balance == "undersample"
    assert p.train.exclude_colocated is False
    assert p.train.dropout == 0.1
    assert p.train.mixed_precision is False
    # docs/method.md §4: selection
    assert p.select.per_class == 300
    assert p.select.per_week == 10
    assert (p.select.week_min, p.select.week_max) == (34, 51)
    assert p.select.max_misclassified is None
    # docs/method.md §5: SHAP
    assert p.shap.explainer == "partition"
    assert p.shap.masker == "inpaint_telea"
    assert p.shap.max_evals == 5000
    assert p.shap.batch_size == 50
    # docs/method.md §6: figures in the study's colour map
    assert p.plots.cmap == "coolwarm"


def _apply_like_dvc(params_file: Path, overrides: list[str]) -> None:
    """Apply -S overrides with the very function `dvc exp run -S` uses."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(params_file, overrides)


def test_overrides_turn_params_yaml_into_the_profile(tmp_path, study, base):
    overrides = profile_overrides(study, base)
    assert overrides, "the study must differ from the demo"
    target = tmp_path / "params.yaml"
    shutil.copyfile(PARAMS, target)
    _apply_like_dvc(target, overrides)
    assert yaml.safe_load(target.read_text()) == study
    assert parse_params(load_yaml(target)) == parse_params(study)


def test_overrides_list_only_changed_keys(study, base):
    overrides = profile_overrides(study, base)
    keys = [o.split("=", 1)[0] for o in overrides]
    assert len(keys) == len(set(keys))
    assert "data.source" in keys
    assert "select.per_class" in keys
    assert "spectrogram.nperseg" not in keys  # the demo uses the study's spectrogram
    assert profile_overrides(base, base) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (7, "7"),
        (0.001, "0.001"),
        (1e-10, "1e-10"),
        ("15683047", '"15683047"'),
        ("blur(3,3)", '"blur(3,3)"'),
        ('say "hi"', "'say \"hi\"'"),
        ([], "[]"),
        (["NRCA", "T1212"], '["NRCA","T1212"]'),
    ],
)
def test_encode_value(value, expected):
    assert encode_value(value) == expected


def test_encoded_values_keep_their_types_through_dvc(tmp_path):
    params = {
        "a": {"s": "x", "n": 1, "f": 1.5, "z": None, "l": ["p"], "b": False},
    }
    new = {
        "a": {"s": "15683047", "n": 2, "f": 0.25, "z": 3, "l": ["p", "q,r"], "b": True},
    }
    target = tmp_path / "params.yaml"
    target.write_text(yaml.safe_dump(params))
    _apply_like_dvc(target, profile_overrides(new, params))
    assert yaml.safe_load(target.read_text()) == new


def test_profile_with_other_keys_is_refused(base):
    bad = yaml.safe_load(yaml.safe_dump(base))
    bad["train"]["learning_rate"] = bad["train"].pop("lr")
    with pytest.raises(ProfileError, match=r"not in params.yaml: train.learning_rate") as err:
        profile_overrides(bad, base)
    assert "missing from the profile: train.lr" in str(err.value)


def test_value_that_cannot_travel_is_refused():
    with pytest.raises(ProfileError, match=r"plots\.cmap"):
        encode_value("${oops}", "plots.cmap")
    with pytest.raises(ProfileError, match="dict"):
        encode_value({"a": 1}, "x")


def test_command_line_prints_shell_quoted_set_args(tmp_path, study, base):
    out = subprocess.run(
        [sys.executable, "-m", "quakeshap.profiles", str(STUDY), "--base", str(PARAMS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    words = shlex.split(out)
    assert words[0::2] == ["-S"] * (len(words) // 2)
    assert words[1::2] == profile_overrides(study, base)


def test_command_line_error_is_one_line(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("train: {lr: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "quakeshap.profiles", str(profile), "--base", str(PARAMS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    assert str(profile) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_exponent_floats_written_by_dvc_are_read_as_floats(tmp_path):
    target = tmp_path / "params.yaml"
    shutil.copyfile(PARAMS, target)
    _apply_like_dvc(target, ["train.lr=1e-5", "spectrogram.log_floor=1e-12"])
    params = load_params(target)
    assert params.train.lr == 1e-5
    assert params.spectrogram.log_floor == 1e-12
