"""One owner per artefact (:mod:`quakeshap.artifacts`).

1. Nothing outside an owner spells out what the owner knows: its file names, its paths in
   the project, its column lists, and the record's layout (:mod:`quakeshap.record`). Every
   ``.py`` file under ``src/``, ``tests/`` and ``benchmarks/`` is read (string constants of
   its syntax tree; docstrings are documentation and are skipped), and what the owners
   define is collected from the owners themselves, so a new constant is checked at once.
2. Each owner's ``write`` and ``load`` are inverse, and a missing or inconsistent artefact
   is an :class:`~quakeshap.artifacts.ArtifactError` that names the file and the stage to
   re-run.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quakeshap import artifacts, record
from quakeshap.artifacts import (
    ArtifactError,
    checkpoint,
    metrics,
    predictions,
    raw,
    selection,
    shap_set,
)
from quakeshap.artifacts import spectrograms as spectrogram_set
from quakeshap.record import CLASS_NAMES
from tests.conftest import REPO_ROOT

SCANNED = ("src", "tests", "benchmarks")
#: what may spell out the record's layout: its one definition
LAYOUT_OWNER = record.__name__


# ======================================================================================
# 1. what the owners know, and where else it is spelled out
# ======================================================================================


def owner_modules() -> list[ModuleType]:
    """The modules of :mod:`quakeshap.artifacts`, one per artefact."""
    return [
        importlib.import_module(f"{artifacts.__name__}.{m.name}")
        for m in pkgutil.iter_modules(artifacts.__path__)
    ]


def defined_constants(module: ModuleType) -> dict[str, Any]:
    """The upper-case names a module assigns at its top level (not those it imports)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            names += [e.id for e in elements if isinstance(e, ast.Name) and e.id.isupper()]
    return {name: getattr(module, name) for name in names}


@dataclass(frozen=True)
class Owned:
    """Something an owner defines: ``text`` is ``owner.name``'s value (or one of them)."""

    text: str
    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


def _paths_of(value: Any) -> list[Path]:
    if isinstance(value, Path):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, Path)]
    return []


def owned_names() -> tuple[dict[str, Owned], dict[str, Owned], list[Owned]]:
    """What the owners define, as spelled: ``(file names, project paths, column lists)``.

    File names: every ``*_FILE`` constant, and the name of every path constant that names a
    file (``selection.csv``, ``train.json``). Project paths: every path constant, e.g.
    ``data/spectrograms``. Column lists: every ``*_COLUMNS`` tuple and the checkpoint's
    ``KEYS`` (``text`` joins them with commas).
    """
    file_names: dict[str, Owned] = {}
    paths: dict[str, Owned] = {}
    columns: list[Owned] = []
    for module in owner_modules():
        for name, value in defined_constants(module).items():
            if name.endswith("_FILE") and isinstance(value, str):
                file_names.setdefault(value, Owned(value, module.__name__, name))
            for path in _paths_of(value):
                paths.setdefault(path.as_posix(), Owned(path.as_posix(), module.__name__, name))
                if path.suffix:
                    file_names.setdefault(path.name, Owned(path.name, module.__name__, name))
            if (name.endswith("_COLUMNS") or name == "KEYS") and len(value) >= 3:
                columns.append(Owned(",".join(value), module.__name__, name))
    return file_names, paths, columns


def file_name_patterns() -> list[tuple[re.Pattern[str], Owned]]:
    """Owners' file names made by functions (``fold_file(k)``), as patterns that match the
    name spelled with a number or in an f-string (``{k}`` reads as ``\\x00`` here)."""
    patterns = []
    for module in owner_modules():
        for name, function in vars(module).items():
            if (
                name.endswith("_file")
                and callable(function)
                and function.__module__ == module.__name__
            ):
                prefix, suffix = function(987654).split("987654")
                pattern = re.compile(rf"{re.escape(prefix)}(\d+|\x00){re.escape(suffix)}")
                patterns.append((pattern, Owned(function(0), module.__name__, f"{name}()")))
    return patterns


def layout_fragments() -> list[Owned]:
    """The pieces of the record's file names and folders, from its path helpers: a station
    and a label stand in as markers, and the text around them is what no one else may type
    (``_attributes.csv``, ``.hdf5``, ``SelectedSimilarTraces``, ``dset/data/catalogs``)."""
    station, label = "QQSTATIONQQ", "QQLABELQQ"
    names = {
        "hdf5_path": record.hdf5_path("", station, label).name,
        "attributes_path": record.attributes_path("", station, label).name,
        "similar_traces_path": record.similar_traces_path("", station).name,
    }
    fragments = []
    for helper, name in names.items():
        for piece in re.split(f"{station}|{label}", name):
            if len(piece.strip("_")) >= 4:
                fragments.append(Owned(piece.strip("_"), LAYOUT_OWNER, f"{helper}()"))
    for name, value in defined_constants(record).items():
        if isinstance(value, Path) and len(value.parts) > 1:
            fragments.append(Owned(value.as_posix(), LAYOUT_OWNER, name))
    return fragments


FILE_NAMES, PATHS, COLUMNS = owned_names()
PATTERNS = file_name_patterns()
FRAGMENTS = layout_fragments()


def _module_name(path: Path) -> str:
    """``src/quakeshap/artifacts/raw.py`` → ``quakeshap.artifacts.raw``; others by path."""
    rel = path.relative_to(REPO_ROOT)
    parts = rel.with_suffix("").parts
    if parts[0] == "src":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that document: bare string statements."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _div_chain(node: ast.BinOp) -> list[ast.expr]:
    """The operands of ``a / b / c`` in order."""
    left = node.left
    head = (
        _div_chain(left) if isinstance(left, ast.BinOp) and isinstance(left.op, ast.Div) else [left]
    )
    return [*head, node.right]


def _str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _fstring_text(node: ast.JoinedStr) -> str:
    return "".join(_str(v) if _str(v) is not None else "\x00" for v in node.values)


@dataclass(frozen=True)
class Offence:
    file: str
    line: int
    spelled: str
    owned: Owned
    what: str

    def __str__(self) -> str:
        if self.owned.owner == LAYOUT_OWNER:
            use = f"build the path with {self.owned}"
        else:
            use = f"use {self.owned} or the write / load of {self.owned.owner}"
        return f"{self.file}:{self.line}: {self.spelled!r} spells out {self.what} ({use})"


def _text_offences(text: str, owner_of_file: str) -> Iterator[tuple[Owned, str]]:
    """What a string (``\x00`` for an f-string's fields) spells out that others own: the
    longest owner's path it holds, else the file name it ends in; and the longest piece of
    the record's layout."""
    last = text.rsplit("/", 1)[-1]
    paths = [
        owned
        for path, owned in PATHS.items()
        if "/" in path
        and (text == path or text.startswith(f"{path}/") or text.endswith(f"/{path}"))
    ]
    names = [owned for pattern, owned in PATTERNS if pattern.fullmatch(last)]
    if paths:
        yield max(paths, key=lambda owned: len(owned.text)), "the path"
    elif last in FILE_NAMES:
        yield FILE_NAMES[last], "the file name"
    elif names:
        yield names[0], "the file name"
    if owner_of_file != LAYOUT_OWNER:
        pieces = [owned for owned in FRAGMENTS if owned.text in text]
        if pieces:
            # a file's helper says more than its folder's constant
            best = max(pieces, key=lambda owned: (owned.name.endswith("()"), len(owned.text)))
            yield best, "the record's layout"


def _column_offence(node: ast.Tuple | ast.List | ast.Set) -> Owned | None:
    """The owner's column list a literal of >= 3 strings is (part of), or None."""
    elements = [e for e in node.elts if not isinstance(e, ast.Starred)]
    strings = [_str(e) for e in elements]
    if len(strings) < 3 or None in strings:
        return None
    matches = [c for c in COLUMNS if set(strings) <= set(c.text.split(","))]
    exact = [c for c in matches if c.text == ",".join(strings)]
    if exact or matches:
        return (exact or sorted(matches, key=lambda c: len(c.text)))[0]
    return None


def offences_in(path: Path) -> list[Offence]:
    """Everything ``path`` spells out that an owner other than itself defines."""
    module = _module_name(path)
    rel = path.relative_to(REPO_ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    skip = _docstrings(tree)
    inner_chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inner_chains.add(id(node.left))
    found: dict[tuple[int, str], Offence] = {}

    def add(node: ast.AST, spelled: str, owned: Owned, what: str) -> None:
        # one line, one report per owner's constant (a path and its file name are one)
        if owned.owner != module:
            found.setdefault(
                (node.lineno, str(owned)), Offence(rel, node.lineno, spelled, owned, what)
            )

    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.JoinedStr):
            text = _fstring_text(node)
        elif _str(node) is not None and id(node) not in skip:
            text = _str(node)
        if text is not None:
            for owned, what in _text_offences(text, module):
                add(node, text.replace("\x00", "{…}"), owned, what)
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and id(node) not in inner_chains
        ):
            parts = [_str(p) for p in _div_chain(node)]
            # the trailing run of string operands: root / "data" / "spectrograms"
            run: list[str] = []
            for part in reversed(parts):
                if part is None:
                    break
                run.insert(0, part)
            joined = "/".join(run)
            if len(run) > 1 and joined in PATHS:
                add(node, " / ".join(map(repr, run)), PATHS[joined], "the path")
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            owned = _column_offence(node)
            if owned is not None:
                spelled = ", ".join(_str(e) or "*" for e in node.elts)
                add(node, spelled, owned, "a column list")
    return [found[key] for key in sorted(found)]


def scanned_files() -> list[Path]:
    files = []
    for folder in SCANNED:
        files += sorted((REPO_ROOT / folder).rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts and f.is_file()]


def test_the_owners_define_what_is_checked():
    """The checker itself: it finds the owners' names, paths, columns and layout."""
    assert FILE_NAMES[shap_set.VALUES_FILE].owner == shap_set.__name__
    assert FILE_NAMES[raw.MANIFEST_FILE].owner == raw.__name__
    assert FILE_NAMES[selection.PATH.name].name == "PATH"
    assert FILE_NAMES[metrics.HISTORY_PATH.name].owner == metrics.__name__
    assert FILE_NAMES[metrics.PATHS["train"].name].owner == metrics.__name__
    assert PATHS[spectrogram_set.PATH.as_posix()].owner == spectrogram_set.__name__
    assert record.CATALOG_DIR.as_posix() not in PATHS  # record is no artefact owner ...
    assert record.CATALOG_DIR.as_posix() in {f.text for f in FRAGMENTS}  # ... but the layout's
    assert {c.name for c in COLUMNS if c.owner == predictions.__name__} >= {"PREDICTION_COLUMNS"}
    fragments = {f.text for f in FRAGMENTS}
    assert record.attributes_path("", "S", "pre").name.split("pre", 1)[1].strip("_") in fragments
    assert Path(record.hdf5_path("", "S", "pre")).suffix in fragments
    assert any(p.fullmatch(checkpoint.fold_file(3)) for p, _ in PATTERNS)


def test_the_checker_finds_each_kind_of_spelling(tmp_path, monkeypatch):
    module = REPO_ROOT / "tests" / "_spelling_probe.py"
    values, index = shap_set.VALUES_FILE, shap_set.INDEX_FILE
    data, spectrograms = spectrogram_set.PATH.parts
    columns = ", ".join(repr(c) for c in selection.SELECTION_COLUMNS[:3])
    fragment = record.attributes_path("", "S", "pre").name.split("pre", 1)[1]
    source = "\n".join(
        [
            '"""A docstring may name ' + values + '."""',
            f"A = {values!r}",
            f"B = root / {data!r} / {spectrograms!r}",
            f"C = [{columns}]",
            f"D = f'{{station}}_{{label}}{fragment}'",
            f"E = f'{{folder}}/{index}'",
            f"F = {checkpoint.fold_file(2)!r}",
            "G = ['trace_name', 'nothing', 'else']",
        ]
    )
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    found = offences_in(module)
    assert [o.line for o in found] == [2, 3, 4, 5, 6, 7]
    assert "_spelling_probe.py:2" in str(found[0]) and shap_set.__name__ in str(found[0])


def test_no_file_name_path_column_list_or_layout_is_spelled_out_outside_its_owner():
    offences = [o for path in scanned_files() for o in offences_in(path)]
    assert offences == [], f"{len(offences)} spelling(s) of what an owner defines:\n" + "\n".join(
        map(str, offences)
    )


# ======================================================================================
# 2. write → load, and what a bad artefact says
# ======================================================================================


def _table(columns: tuple[str, ...], n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows of made-up values of several kinds: text, integers, floats, booleans."""
    kinds = [
        lambda c: [f"{c}{i}" for i in range(n)],
        lambda c: rng.integers(-5, 50, n),
        lambda c: rng.integers(0, 8, n) / 8,
        lambda c: rng.random(n) < 0.5,
    ]
    return pd.DataFrame({c: kinds[j % len(kinds)](c) for j, c in enumerate(columns)})


def _assert_names_path_and_stage(err: pytest.ExceptionInfo, path: Path, stage: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, ArtifactError)
    assert str(path) in message, message
    assert f"dvc repro {stage}" in message, message


# --------------------------------------------------------------------- raw


def test_raw_round_trip(tmp_path, rng):
    from tests.raw_fixtures import attribute_table, synthetic_waveform

    table = attribute_table(rng, "NRCA", "pre", 3, 100)
    path = record.attributes_path(tmp_path, "NRCA", "pre")
    raw.write_attributes(path, table.assign(extra=1))
    loaded = raw.read_attributes(path)
    assert list(loaded.columns) == list(raw.ATTRIBUTE_COLUMNS)
    pd.testing.assert_frame_equal(loaded, table.astype({"source_id": str}), check_dtype=False)

    waves = [synthetic_waveform(rng, 2.0) for _ in range(3)]
    h5 = record.hdf5_path(tmp_path, "NRCA", "pre")
    raw.write_waveforms(h5, list(table["trace_name"]), waves)
    first = h5.read_bytes()
    raw.write_waveforms(h5, list(table["trace_name"]), waves)
    assert h5.read_bytes() == first, "the HDF5 file holds no time stamps"
    metadata = table.assign(label="pre")
    names = list(table["trace_name"][::-1])
    read = raw.read_traces(tmp_path, metadata, names)
    assert list(read) == names
    for name, wave in zip(table["trace_name"], waves, strict=True):
        np.testing.assert_array_equal(read[name], wave)
    assert raw.list_stations(tmp_path) == ["NRCA"]


def test_raw_missing_and_inconsistent(tmp_path, rng):
    from tests.raw_fixtures import attribute_table

    missing = record.attributes_path(tmp_path, "NRCA", "pre")
    with pytest.raises(raw.WaveformError) as err:
        raw.read_attributes(missing)
    _assert_names_path_and_stage(err, missing, "download")
    h5 = record.hdf5_path(tmp_path, "NRCA", "pre")
    with pytest.raises(raw.WaveformError) as err, raw.open_hdf5(h5):
        pass
    _assert_names_path_and_stage(err, h5, "download")
    with pytest.raises(raw.WaveformError) as err:
        raw.list_stations(tmp_path / "empty")
    _assert_names_path_and_stage(err, tmp_path / "empty" / record.CATALOG_DIR, "download")
    # a trace the spectrogram set lists but the raw files lack: the two are from two runs
    table = attribute_table(rng, "NRCA", "pre", 2, 100)
    raw.write_waveforms(h5, list(table["trace_name"][:1]), [np.zeros((3, 10))])
    with pytest.raises(raw.WaveformError, match="different runs") as err:
        raw.read_traces(tmp_path, table.assign(label="pre"), list(table["trace_name"]))
    assert str(h5) in str(err.value)


# --------------------------------------------------------------------- spectrograms


def test_spectrograms_round_trip_and_errors(tmp_path, rng):
    from tests.fixtures import make_spectrogram_set, write_spectrogram_set

    sset = make_spectrogram_set(rng, 4, 3, shape=(3, 5, 7))
    folder = write_spectrogram_set(tmp_path / "s", sset)
    loaded = spectrogram_set.load(folder)
    np.testing.assert_array_equal(loaded.images, sset.images)
    pd.testing.assert_frame_equal(loaded.metadata, sset.metadata, check_dtype=False)
    np.testing.assert_allclose(loaded.frequency_hz, sset.frequency_hz)
    np.testing.assert_allclose(loaded.time_s, sset.time_s)
    with pytest.raises(ArtifactError) as err:
        spectrogram_set.load(tmp_path / "absent")
    _assert_names_path_and_stage(err, tmp_path / "absent", "spectrograms")
    np.save(folder / spectrogram_set.IMAGES_FILE, sset.images[:2])
    with pytest.raises(ArtifactError) as err:
        spectrogram_set.load(folder)
    _assert_names_path_and_stage(err, folder / spectrogram_set.IMAGES_FILE, "spectrograms")


# --------------------------------------------------------------------- checkpoint


@pytest.fixture(scope="module")
def small_checkpoint() -> dict[str, Any]:
    import torch

    from quakeshap.model import CNN2D, ModelConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = CNN2D(ModelConfig(height=9, width=12))
    return checkpoint.make(net, list(CLASS_NAMES), [0.5] * 3, [0.25] * 3, {"fold": 1})


def test_checkpoint_round_trip(tmp_path, small_checkpoint):
    import torch

    path = tmp_path / checkpoint.PATH
    checkpoint.save(small_checkpoint, path)
    loaded = checkpoint.load(path)
    assert set(loaded) == set(small_checkpoint) >= set(checkpoint.KEYS)
    for key, tensor in small_checkpoint["state_dict"].items():
        assert torch.equal(loaded["state_dict"][key], tensor), key
    assert {k: v for k, v in loaded.items() if k != "state_dict"} == {
        k: v for k, v in small_checkpoint.items() if k != "state_dict"
    }
    first = path.read_bytes()
    checkpoint.save(small_checkpoint, path)
    assert path.read_bytes() == first, "the same checkpoint gives the same bytes"

    folds = tmp_path / checkpoint.FOLDS_DIR
    checkpoint.save_folds({1: small_checkpoint, 2: small_checkpoint}, folds)
    assert sorted(p.name for p in folds.iterdir()) == [checkpoint.fold_file(k) for k in (1, 2)]
    assert checkpoint.load(folds / checkpoint.fold_file(2))["fold"] == 1


def test_checkpoint_missing_and_inconsistent(tmp_path, small_checkpoint):
    path = tmp_path / checkpoint.PATH
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    _assert_names_path_and_stage(err, path, "train")
    incomplete = {k: v for k, v in small_checkpoint.items() if k != checkpoint.KEYS[-1]}
    checkpoint.save(incomplete, path)
    with pytest.raises(checkpoint.CheckpointError, match=checkpoint.KEYS[-1]) as err:
        checkpoint.load(path)
    _assert_names_path_and_stage(err, path, "train")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(path)
    _assert_names_path_and_stage(err, path, "train")


# --------------------------------------------------------------------- tables


def test_predictions_round_trip(tmp_path, rng):
    table = _table(predictions.PREDICTION_COLUMNS, 6, rng)
    confusion = _table(predictions.CONFUSION_COLUMNS, 6, rng)
    weekly = _table(predictions.WEEKLY_COLUMNS, 3, rng)
    folder = tmp_path / predictions.FOLDER
    predictions.write(folder, table.assign(extra=0), confusion, weekly)
    pd.testing.assert_frame_equal(predictions.load(folder / predictions.PREDICTIONS_FILE), table)
    for name, frame in ((predictions.CONFUSION_FILE, confusion), (predictions.WEEKLY_FILE, weekly)):
        pd.testing.assert_frame_equal(pd.read_csv(folder / name), frame)


def test_selection_round_trip(tmp_path, rng):
    table = _table(selection.SELECTION_COLUMNS, 5, rng)
    path = tmp_path / selection.PATH
    selection.write(path, table)
    pd.testing.assert_frame_equal(selection.load(path), table)


def test_metrics_round_trip(tmp_path, rng):
    for stage, rel in metrics.PATHS.items():
        values = {"n": 3, "accuracy": 0.75, "per_class": {"pre": 1, "post": 2}, "stage": stage}
        metrics.write(tmp_path / rel, values)
        assert metrics.load(tmp_path / rel, stage) == values
    history = _table(metrics.HISTORY_COLUMNS, 4, rng)
    metrics.write_history(tmp_path / metrics.HISTORY_PATH, history)
    pd.testing.assert_frame_equal(metrics.load_history(tmp_path / metrics.HISTORY_PATH), history)
    rejected = _table(metrics.REJECTED_COLUMNS, 2, rng)
    metrics.write_rejected(tmp_path / metrics.REJECTED_PATH, rejected)
    pd.testing.assert_frame_equal(metrics.load_rejected(tmp_path / metrics.REJECTED_PATH), rejected)


TABLES = [
    (
        "evaluate",
        lambda path: predictions.load(path),
        predictions.PATH,
        predictions.PREDICTION_COLUMNS,
    ),
    ("select", lambda path: selection.load(path), selection.PATH, selection.SELECTION_COLUMNS),
    (
        "train",
        lambda path: metrics.load_history(path),
        metrics.HISTORY_PATH,
        metrics.HISTORY_COLUMNS,
    ),
    (
        "spectrograms",
        lambda path: metrics.load_rejected(path),
        metrics.REJECTED_PATH,
        metrics.REJECTED_COLUMNS,
    ),
]


@pytest.mark.parametrize(("stage", "load", "rel", "columns"), TABLES, ids=[t[0] for t in TABLES])
def test_tables_missing_or_lacking_a_column(tmp_path, rng, stage, load, rel, columns):
    path = tmp_path / rel
    with pytest.raises(ArtifactError) as err:
        load(path)
    _assert_names_path_and_stage(err, path, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    _table(columns, 2, rng).drop(columns=columns[-1]).to_csv(path, index=False)
    with pytest.raises(ArtifactError, match=columns[-1]) as err:
        load(path)
    _assert_names_path_and_stage(err, path, stage)


@pytest.mark.parametrize("stage", metrics.STAGES)
def test_metrics_missing_or_unreadable(tmp_path, stage):
    path = tmp_path / metrics.PATHS[stage]
    with pytest.raises(ArtifactError) as err:
        metrics.load(path, stage)
    _assert_names_path_and_stage(err, path, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="JSON object") as err:
        metrics.load(path, stage)
    _assert_names_path_and_stage(err, path, stage)


# --------------------------------------------------------------------- SHAP set


def _shap_set(
    rng: np.random.Generator, n: int = 4, hw: tuple[int, int] = (5, 7)
) -> shap_set.ShapSet:
    _, width = record.s_window_columns(hw[1])
    index = _table(shap_set.INDEX_COLUMNS, n, rng)
    weekly = _table(shap_set.WEEKLY_COLUMNS, 2, rng)
    maps = rng.normal(size=(n, *hw, 3)).astype(np.float32)
    mean_p = rng.normal(size=(len(CLASS_NAMES), *hw, 3)).astype(np.float32)
    mean_s = rng.normal(size=(len(CLASS_NAMES), hw[0], max(width, 1), 3)).astype(np.float32)
    weekly_mean = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    return shap_set.ShapSet(maps, index, mean_p, mean_s, weekly_mean, weekly)


def test_shap_set_round_trip(tmp_path, rng):
    written = _shap_set(rng)
    folder = tmp_path / shap_set.PATH
    shap_set.write(folder, written)
    loaded = shap_set.load(folder, image_hw=(5, 7))
    for name in ("values", "mean_p_aligned", "mean_s_aligned", "weekly_mean"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(written, name), err_msg=name)
    pd.testing.assert_frame_equal(loaded.index, written.index)
    pd.testing.assert_frame_equal(loaded.weekly, written.weekly)


def test_shap_set_missing_and_inconsistent(tmp_path, rng):
    folder = tmp_path / shap_set.PATH
    with pytest.raises(ArtifactError) as err:
        shap_set.load(folder)
    _assert_names_path_and_stage(err, folder / shap_set.VALUES_FILE, "explain")
    shap_set.write(folder, _shap_set(rng))
    np.save(folder / shap_set.VALUES_FILE, np.zeros((3, 5, 7, 3), np.float32))
    with pytest.raises(ArtifactError, match=shap_set.INDEX_FILE) as err:
        shap_set.load(folder)
    _assert_names_path_and_stage(err, folder, "explain")
    shap_set.write(folder, _shap_set(rng))
    with pytest.raises(ArtifactError) as err:
        shap_set.load(folder, image_hw=(33, 96))
    _assert_names_path_and_stage(err, folder, "explain")


def test_a_traces_groups_join_and_split_through_the_shap_set_owner():
    index = pd.DataFrame({"groups": [shap_set.join_groups(["class", "week", "class"]), "week"]})
    assert index["groups"][0].count(shap_set.GROUP_SEPARATOR) == 1
    np.testing.assert_array_equal(shap_set.in_group(index, "class"), [True, False])
    np.testing.assert_array_equal(shap_set.in_group(index, "week"), [True, True])
