"""The documentation tells the truth: every parameter, the test command, links that resolve.

The README is the first screen (short); the parameter table lives in docs/parameters.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
PARAMETERS = (REPO_ROOT / "docs" / "parameters.md").read_text()
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 12_000

#: references to notes outside the repository, which a reader cannot follow: the
#: specification's and the shared notes' names (as words, with or without a section number)
#: and numbered issues. Spelled in pieces, so that this file does not hold them.
STALE_REFERENCES = re.compile(r"\b(?:{}|{})\b|\b[Ii]ssues? #?\d".format("SP" + "EC", "COM" + "MON"))
#: files that may hold any text: dvc.lock records hashes of what the stages ran
UNCHECKED = {"dvc.lock"}


def _leaves(mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _repository_files() -> list[str]:
    """Files a clone plus local work holds: tracked and untracked, not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({p for p in out.split("\0") if p and (REPO_ROOT / p).is_file()})


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def test_every_parameter_is_in_the_parameter_table():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    rows = set(re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|", PARAMETERS, flags=re.MULTILINE))
    keys = set(_leaves(params))
    assert keys - rows == set(), f"docs/parameters.md lacks parameters: {sorted(keys - rows)}"
    assert rows - keys == set(), (
        f"docs/parameters.md documents parameters that do not exist: {sorted(rows - keys)}"
    )


def test_ci_runs_the_readme_test_command():
    assert "make test" in README.split("## ")[0], "the first screen names the test command"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make")]
    assert commands == ["make test"]


def test_no_placeholder_left():
    assert re.search(r"@[A-Z_]+@", README) is None


def test_readme_is_short():
    size = len(README.encode())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (at most {README_MAX_BYTES}): move details to docs/"
    )


def test_no_file_cites_notes_outside_the_repository():
    found = []
    for rel in _repository_files():
        if rel in UNCHECKED:
            continue
        text = _text(REPO_ROOT / rel)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            found += [f"{rel}:{number}: {m.group()!r}" for m in STALE_REFERENCES.finditer(line)]
    assert found == [], "cite docs/method.md §n instead:\n" + "\n".join(found)


_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)


def _relative_links(text: str) -> list[str]:
    # code spans and fenced blocks hold examples, not links
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, flags=re.I)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_point_at_files(doc: Path):
    broken = []
    for target in _relative_links(doc.read_text()):
        path = target.split("#", 1)[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{doc.relative_to(REPO_ROOT)}: links to missing files {broken}"


def test_stale_reference_pattern():
    for text in ("as " + "SP" + "EC" + " §2 says", "SP" + "EC" + ".md", "(" + "COM" + "MON §3)"):
        assert STALE_REFERENCES.search(text), text
    assert STALE_REFERENCES.search("the workflow (" + "issue" + " 5)")
    for text in ("SPECTRUM", "spec", "a common issue", "scope=session"):
        assert not STALE_REFERENCES.search(text), text


def test_link_finder_sees_inline_reference_and_image_links():
    text = '[a](docs/x.md#part) ![i](img.png "t") [w](https://x.org) [s](#top)\n[r]: ../y.md\n'
    assert _relative_links(text) == ["docs/x.md#part", "img.png", "../y.md"]
