"""dvc.yaml shows the whole DAG: every stage lists its script and every library module it imports.

The imports are found statically (AST, including imports inside functions) and followed
through the library transitively, so a module that a stage reaches only indirectly is still a
dependency: editing it must re-run the stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGE = "quakeshap"
SRC = REPO_ROOT / "src" / PACKAGE


def _stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


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


def _imports(path: Path) -> set[str]:
    """Names of quakeshap modules a file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found.add(node.module)
            # `from quakeshap import io` imports the module quakeshap.io
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if _module_file(f"{node.module}.{a.name}") is not None
            )
    return found


def library_closure(script: Path) -> set[str]:
    """Repo-relative paths of every library file a script reaches through imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for name in _imports(todo.pop()):
            file = _module_file(name)
            if file is not None and file not in seen:
                seen.add(file)
                todo.append(file)
    # the package __init__ runs on every import but holds no logic: not a dependency
    seen.discard(SRC / "__init__.py")
    return {str(p.relative_to(REPO_ROOT)) for p in seen}


STAGES = _stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_script_and_every_imported_module(name):
    stage = STAGES[name]
    script = stage["cmd"].split()[1]
    assert stage["cmd"].split()[0] == "python", f"{name}: stage commands run `python <script>`"
    deps = set(stage["deps"])
    assert script in deps, f"{name}: its script {script} is not in its deps"
    needed = library_closure(REPO_ROOT / script)
    listed = {d for d in deps if d.startswith(f"src/{PACKAGE}/")}
    assert needed - listed == set(), (
        f"{name}: imports {sorted(needed - listed)} but does not list them"
    )
    assert listed - needed == set(), (
        f"{name}: lists {sorted(listed - needed)} but never imports them"
    )


def test_dag_order():
    """The stages the issues name, in the order of the data flow."""
    assert list(STAGES) == [
        "download",
        "spectrograms",
        "train",
        "evaluate",
        "select",
        "explain",
        "plots",
    ]


def test_every_script_in_stages_is_a_stage():
    scripts = {s["cmd"].split()[1] for s in STAGES.values()}
    on_disk = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "stages").glob("*.py")}
    assert on_disk == scripts


def test_closure_follows_indirect_imports(tmp_path):
    """The checker itself: an import inside a function is found."""
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from quakeshap.model import CNN2D\n")
    closure = library_closure(script)
    assert "src/quakeshap/model.py" in closure
