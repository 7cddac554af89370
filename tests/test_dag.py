"""dvc.yaml shows the whole DAG: what each stage runs, imports, reads and writes.

- A stage ``<name>`` runs ``python -m quakeshap.stages.<name>``; its module is its first dep,
  and every module under ``src/quakeshap/stages/`` is a stage.
- Its ``src/`` deps are exactly the library modules the stage module reaches through
  imports. The imports are found statically (AST, including imports inside functions) and
  followed through the library transitively, parent packages included, so a module that a
  stage reaches only indirectly is still a dependency: editing it must re-run the stage.
- Every path the stage's arguments point at by default is an artefact owner's path
  (:mod:`quakeshap.artifacts`) and is in the stage's entry, and every data path of the entry
  is one the stage points at.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import yaml

from quakeshap import artifacts, report
from quakeshap import stages as stages_package
from quakeshap.artifacts import raw
from tests.conftest import REPO_ROOT

PACKAGE = "quakeshap"
SRC = REPO_ROOT / "src" / PACKAGE
STAGES_DIR = SRC / "stages"

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())

#: a ``foreach`` stage (the many-station stages, docs/stations.md) is checked with its
#: ``${item}`` set to this sample: a station code, or a network split
FOREACH_SAMPLE = {"${stations.codes}": "NRCA", "${stations.network_splits}": "event"}


def _expand(stage: dict) -> dict:
    """A stage entry as checked: a ``foreach`` stage's body with ``${item}`` the sample."""
    if "foreach" not in stage:
        return stage
    item = FOREACH_SAMPLE[stage["foreach"]]
    return yaml.safe_load(yaml.safe_dump(stage["do"]).replace("${item}", item))


STAGES = {name: _expand(stage) for name, stage in DVC_YAML["stages"].items()}
FOREACH = {
    name: FOREACH_SAMPLE[stage["foreach"]]
    for name, stage in DVC_YAML["stages"].items()
    if "foreach" in stage
}

#: paths a stage points at outside the DAG, on purpose
OUTSIDE_THE_DAG = {
    # the download stage keeps verified Zenodo downloads between runs (git-ignored): a cache,
    # not an input or output; data/raw is rebuilt from it
    ("download", "cache"),
}


def _module_file(name: str) -> Path | None:
    """``quakeshap.x.y`` → its file under src/, or None if it is not a library module."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = SRC.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _with_parents(name: str) -> set[str]:
    """``a.b.c`` → ``{a.b.c, a.b, a}``: importing a module runs its packages first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _imports(path: Path) -> set[str]:
    """Names of quakeshap modules (and their packages) a file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found |= _with_parents(node.module)
            # `from quakeshap import files` imports the module quakeshap.files
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if _module_file(f"{node.module}.{a.name}") is not None
            )
    return found


def library_closure(script: Path, package: str | None = None) -> set[str]:
    """Repo-relative paths of every library file a module reaches through imports.

    ``package``: the module's own package (run with ``python -m``, it is imported first).
    """
    seen: set[Path] = set()
    todo = [script]
    names = set() if package is None else _with_parents(package)
    while todo:
        for name in _imports(todo.pop()) | names:
            file = _module_file(name)
            if file is not None and file not in seen and file != script:
                seen.add(file)
                todo.append(file)
        names = set()
    # the package __init__ runs on every import but holds no logic: not a dependency
    # (test_package_init_imports_nothing keeps it so)
    seen.discard(SRC / "__init__.py")
    return {p.relative_to(REPO_ROOT).as_posix() for p in seen}


def _stage_module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(STAGES_DIR)]))


def _entries(stage: dict, kind: str) -> list[str]:
    """Paths of ``deps`` / ``outs`` / ``metrics`` / ``plots`` entries (str or {path: opts})."""
    return [e if isinstance(e, str) else next(iter(e)) for e in stage.get(kind, [])]


def _data_paths(stage: dict) -> set[str]:
    """Everything a stage reads or writes besides code, as dvc.yaml lists it."""
    deps = {d for d in _entries(stage, "deps") if not d.startswith("src/")}
    return deps | {p for kind in ("outs", "metrics", "plots") for p in _entries(stage, kind)}


def _owned_paths() -> dict[str, str]:
    """Every project path an owner defines → the owner, e.g. ``data/shap/values.npy``.

    The path constants of the modules of :mod:`quakeshap.artifacts` (and of the figures'
    owner, :mod:`quakeshap.report`), and each folder of a module joined with the module's
    file names (``*_FILE``).
    """
    modules = [
        importlib.import_module(f"{artifacts.__name__}.{m.name}")
        for m in pkgutil.iter_modules(artifacts.__path__)
    ]
    owned: dict[str, str] = {}
    from quakeshap.artifacts import stations

    station = stations.station_paths(FOREACH_SAMPLE["${stations.codes}"])
    network = stations.network_paths(FOREACH_SAMPLE["${stations.network_splits}"])
    per_station = [
        *vars(station).values(),
        station.model,
        station.predictions,
        *vars(network).values(),
        network.model,
    ]
    for path in per_station:
        if isinstance(path, Path):
            owned.setdefault(path.as_posix(), stations.__name__)
    for module in [*modules, report]:
        values = [v for k, v in vars(module).items() if k.isupper()]
        paths = [v for v in values if isinstance(v, Path)]
        paths += [
            p for v in values if isinstance(v, dict) for p in v.values() if isinstance(p, Path)
        ]
        names = [v for k, v in vars(module).items() if k.endswith("_FILE") and isinstance(v, str)]
        folders = [p for p in paths if not p.suffix]
        for path in [*paths, *(folder / name for folder in folders for name in names)]:
            owned.setdefault(path.as_posix(), module.__name__)
    return owned


OWNED = _owned_paths()


def _default_paths(name: str) -> dict[str, str]:
    """``{argument: path}`` of the Path arguments of a stage, at their defaults."""
    module = importlib.import_module(f"{stages_package.__name__}.{name}")
    args = vars(module.parse_args([FOREACH[name]] if name in FOREACH else []))
    paths = {
        key: Path(value).as_posix()
        for key, value in args.items()
        if isinstance(value, Path) and key not in ("params", "root")
    }
    if "root" in args:  # the plots stage reads every input under --root
        from quakeshap.plots import InputPaths

        inputs = InputPaths()
        paths |= {f"input {k}": Path(v).as_posix() for k, v in vars(inputs).items()}
        paths |= {"figures": report.FIGURES_DIR.as_posix(), "report": report.REPORT_FILE.as_posix()}
    return {k: v for k, v in paths.items() if (name, k) not in OUTSIDE_THE_DAG}


# --------------------------------------------------------------------------------------
# commands and code deps
# --------------------------------------------------------------------------------------


def test_dag_order():
    """The stages in the order of the data flow."""
    assert list(STAGES) == [
        "download",
        "spectrograms",
        "train",
        "evaluate",
        "select",
        "explain",
        "explainers",
        "plots",
        "station_spectrograms",
        "station_train",
        "station_evaluate",
        "station_explain",
        "network_train",
        "transfer",
    ]


def test_every_module_in_stages_is_a_stage():
    assert _stage_module_names() == sorted(STAGES), (
        "src/quakeshap/stages/ holds one module per dvc.yaml stage, named after it"
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_runs_its_module(name):
    stage = STAGES[name]
    command = f"python -m {PACKAGE}.stages.{name}"
    if name in FOREACH:  # the station or the split is its one argument
        command += f" {FOREACH[name]}"
    assert stage["cmd"] == command, f"{name}: the command runs the stage's module, `{command}`"
    module = f"src/{PACKAGE}/stages/{name}.py"
    assert (REPO_ROOT / module).is_file()
    assert _entries(stage, "deps")[0] == module, f"{name}: its first dep is its module {module}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_every_imported_module(name):
    stage = STAGES[name]
    module = REPO_ROOT / _entries(stage, "deps")[0]
    needed = library_closure(module, package=f"{PACKAGE}.stages")
    listed = {d for d in _entries(stage, "deps")[1:] if d.startswith("src/")}
    assert needed - listed == set(), (
        f"{name}: imports {sorted(needed - listed)} but does not list them"
    )
    assert listed - needed == set(), (
        f"{name}: lists {sorted(listed - needed)} but never imports them"
    )
    deps = _entries(stage, "deps")
    assert len(deps) == len(set(deps)), f"{name}: a dep is listed twice"


def test_package_init_imports_nothing():
    """quakeshap/__init__.py runs with every stage; it stays out of the deps by holding no
    logic."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_closure_follows_indirect_imports(tmp_path):
    """The checker itself: an import inside a function is found, and so is its package."""
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from quakeshap.artifacts.selection import PATH\n")
    closure = library_closure(script)
    assert "src/quakeshap/artifacts/selection.py" in closure
    assert "src/quakeshap/artifacts/__init__.py" in closure
    assert "src/quakeshap/files.py" in closure  # through the owner


def test_closure_resolves_modules_imported_by_name(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from quakeshap import record\n")
    assert library_closure(script) == {"src/quakeshap/record.py"}


# --------------------------------------------------------------------------------------
# data paths
# --------------------------------------------------------------------------------------


def test_owned_paths_include_the_artefacts():
    """The checker itself: owners' paths and their files are found."""
    from quakeshap.artifacts import selection, shap_set
    from quakeshap.artifacts import spectrograms as spectrogram_set

    assert OWNED[spectrogram_set.PATH.as_posix()] == spectrogram_set.__name__
    assert (spectrogram_set.PATH / spectrogram_set.METADATA_FILE).as_posix() in OWNED
    assert (shap_set.PATH / shap_set.VALUES_FILE).as_posix() in OWNED
    assert OWNED[selection.PATH.as_posix()] == selection.__name__


@pytest.mark.parametrize("name", sorted(STAGES))
def test_default_paths_are_owned_and_in_the_stage_entry(name):
    listed = _data_paths(STAGES[name])
    for argument, path in _default_paths(name).items():
        covered = {p for p in listed if p == path or p.startswith(f"{path}/")}
        assert covered, (
            f"{name}: --{argument} defaults to {path}, which dvc.yaml does not list for the "
            "stage (deps / outs / metrics / plots)"
        )
        assert path in OWNED or covered <= set(OWNED), (
            f"{name}: --{argument} defaults to {path}, no artefact owner's path; use the "
            "owner's constant (quakeshap.artifacts.<owner>.PATH ...)"
        )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_data_path_of_the_stage_is_owned_and_pointed_at(name):
    defaults = set(_default_paths(name).values())
    for path in sorted(_data_paths(STAGES[name])):
        # a station's stages depend on its own files of the raw data set, inside data/raw
        inside_raw = path.startswith(f"{raw.PATH.as_posix()}/") and name in FOREACH
        assert path in OWNED or inside_raw, (
            f"{name}: dvc.yaml lists {path}, which no owner in quakeshap.artifacts defines"
        )
        assert any(path == d or path.startswith(f"{d}/") for d in defaults), (
            f"{name}: dvc.yaml lists {path}, but no argument of the stage points at it"
        )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_outs_are_the_owners_paths(name):
    """e.g. quakeshap.artifacts.spectrograms.PATH is what the spectrograms stage outputs."""
    for out in _entries(STAGES[name], "outs"):
        assert out in OWNED, f"{name}: output {out} is no owner's path"
        owner = OWNED[out]
        assert owner == report.__name__ or owner.startswith(f"{artifacts.__name__}."), owner


def test_every_stage_module_has_main_and_parse_args():
    for name in _stage_module_names():
        module = importlib.import_module(f"{stages_package.__name__}.{name}")
        assert list(inspect.signature(module.main).parameters) == ["argv"], name
        assert callable(module.parse_args), name
