"""The README tells the truth about what it documents: every parameter, the two commands."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _leaves(mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_parameter_is_in_the_readme_table():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    rows = set(re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|", README, flags=re.MULTILINE))
    keys = set(_leaves(params))
    assert keys - rows == set(), f"undocumented parameters: {sorted(keys - rows)}"
    assert rows - keys == set(), (
        f"README documents parameters that do not exist: {sorted(rows - keys)}"
    )


def test_ci_runs_the_readme_test_command():
    assert "make test" in README.split("## ")[0], "the first screen names the test command"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make")]
    assert commands == ["make test"]


def test_no_placeholder_left():
    assert re.search(r"@[A-Z_]+@", README) is None
