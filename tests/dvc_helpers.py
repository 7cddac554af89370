"""Run the real ``dvc`` and ``git`` CLIs on throw-away copies of this repository.

The end-to-end tests never touch the repository under test: they copy its working tree
(the files git tracks plus untracked, non-ignored ones, so uncommitted work is tested too)
into a temporary folder, ``git init`` and commit it there, and run ``dvc`` in that copy.
Every subprocess gets an environment that

- puts this interpreter's ``bin/`` first on ``PATH`` (stage commands call ``python``);
- puts the copy's ``src/`` first on ``PYTHONPATH``, so stages import the copy's library and
  not the editable install's, and editing a module in the copy is what runs;
- isolates DVC's global config and site cache in a session folder, disables analytics, and
  fixes the git identity.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: the pipeline's stages in data-flow order, as dvc.yaml lists them (tests/test_dag.py pins
#: that order): those of every run; the many-station stages (``foreach`` over lists that are
#: empty by default, docs/stations.md) exist only when a profile lists stations
STAGES: tuple[str, ...] = tuple(
    name
    for name, stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].items()
    if "foreach" not in stage
)

#: The tiniest demo configuration that still exercises every stage and branch:
#: two classes in both splits, two folds, one epoch, a handful of SHAP maps.
TINY_PARAMS: dict[str, Any] = {
    "data.demo.n_pre": 60,
    "data.demo.n_post": 40,
    "data.demo.n_colocated_groups": 3,
    "data.demo.n_missing_channels": 1,  # 3 of 100 traces rejected: below the 5 % limit
    "train.n_folds": 2,
    "train.max_epochs": 1,
    "train.patience": 1,
    "train.num_threads": 1,
    "select.per_class": 1,
    "select.per_week": 1,
    "select.week_min": 42,
    "select.week_max": 45,
    "select.max_misclassified": 1,
    "shap.max_evals": 100,
    "shap.workers": 1,  # in-process: no worker start-up (tests/test_explain.py: parallel)
    "explainers.per_class": 1,
    "explainers.configurations": ["partition:inpaint_telea", "partition:0", "deep"],
    "explainers.max_evals": 100,
    "explainers.faithfulness": False,
    "spectrogram.workers": 1,
    "plots.dpi": 40,
}


def _dvc_exe() -> str:
    candidate = BIN / "dvc"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dvc")
    if found is None:
        raise RuntimeError("the dvc CLI is not installed: install requirements.txt")
    return found


def subprocess_env(repo: Path, state_dir: Path) -> dict[str, str]:
    """Environment for ``dvc``/``git``/stage processes working in ``repo``.

    Parameters
    ----------
    repo
        The temporary copy the commands run in.
    state_dir
        Folder for DVC's global config and site cache (one per test session).
    """
    empty_aws = state_dir / "aws-empty.ini"
    empty_aws.parent.mkdir(parents=True, exist_ok=True)
    empty_aws.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(repo / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(state_dir / "dvc-global"),
        DVC_SITE_CACHE_DIR=str(state_dir / "dvc-site-cache"),
        GIT_AUTHOR_NAME="quakeshap tests",
        GIT_AUTHOR_EMAIL="tests@quakeshap.invalid",
        GIT_COMMITTER_NAME="quakeshap tests",
        GIT_COMMITTER_EMAIL="tests@quakeshap.invalid",
        GIT_CONFIG_NOSYSTEM="1",
        # no cloud credential discovery (instance metadata, ~/.aws) in the S3 tests:
        # botocore wants existing (empty) files, it refuses os.devnull
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(empty_aws),
        AWS_SHARED_CREDENTIALS_FILE=str(empty_aws),
    )
    return env


class Repo:
    """A temporary repository and the commands the tests run in it."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self.root = root
        self.state_dir = state_dir
        self.env = subprocess_env(root, state_dir)

    # -- running commands -------------------------------------------------------------

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in the repository (or ``cwd``); on failure, raise with the output."""
        proc = subprocess.run(
            list(args),
            cwd=self.root if cwd is None else cwd,
            env=dict(env) if env is not None else self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`{' '.join(args)}` failed with exit code {proc.returncode} in {self.root}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    def dvc(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run([_dvc_exe(), *args], **kwargs)

    def git(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["git", *args], **kwargs)

    def repro(self, *args: str) -> list[str]:
        """``dvc repro``; returns the stages that ran (or were restored from the run cache)."""
        return reproduced_stages(self.dvc("repro", *args).stdout)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def is_up_to_date(self) -> bool:
        """``dvc status`` reports nothing changed (pipelines and workspace)."""
        status = self.dvc("status", "--json").stdout
        return yaml.safe_load(status) == {}

    # -- params.yaml, dvc.lock ----------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def set_params(self, updates: Mapping[str, Any]) -> None:
        """Set dotted keys of ``params.yaml`` (each key must already exist)."""
        params = self.params()
        for dotted, value in updates.items():
            *parents, leaf = dotted.split(".")
            section = params
            for name in parents:
                section = section[name]
            if leaf not in section:
                raise KeyError(f"params.yaml has no key {dotted}")
            section[leaf] = value
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def lock(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "dvc.lock").read_text())

    def append_line(self, relpath: str, line: str) -> None:
        """Edit a file the way a developer would (a harmless trailing comment)."""
        path = self.root / relpath
        path.write_text(path.read_text() + line + "\n")


def worktree_files(src: Path) -> list[str]:
    """Files of ``src`` that a fresh clone plus local work would hold (tracked + untracked,
    not ignored), as relative posix paths."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({p for p in out.split("\0") if p and (src / p).is_file()})


def snapshot_repo(src: Path, dst: Path, state_dir: Path) -> Repo:
    """Copy ``src``'s working tree into ``dst`` and commit it in a new git repository."""
    dst.mkdir(parents=True)
    for rel in worktree_files(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    repo = Repo(dst, state_dir)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "commit.gpgsign", "false")
    repo.commit("snapshot of the working tree")
    return repo


def copy_repo(src: Repo, dst: Path) -> Repo:
    """A full copy (git history, DVC cache, workspace) for a test that mutates it."""
    shutil.copytree(src.root, dst, symlinks=True)
    return Repo(dst, src.state_dir)


_RAN = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
_CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.MULTILINE)


def reproduced_stages(output: str) -> list[str]:
    """Stages that ``dvc repro`` output says it ran or restored from the run cache, in order."""
    found = [(m.start(), m.group(1)) for m in _RAN.finditer(output)]
    found += [(m.start(), m.group(1)) for m in _CACHED.finditer(output)]
    return [name for _, name in sorted(found)]


def file_md5s(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """md5 of every file under each of ``paths`` (files or folders), keyed by relative path."""
    digests: dict[str, str] = {}
    for rel in paths:
        base = root / rel
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for path in files:
            digests[path.relative_to(root).as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return digests


def lock_outs(lock: Mapping[str, Any], stages: Iterable[str] | None = None) -> list[str]:
    """Output paths recorded in a parsed ``dvc.lock`` (for ``stages``, default all)."""
    names = list(lock["stages"]) if stages is None else list(stages)
    return [out["path"] for name in names for out in lock["stages"][name].get("outs", [])]


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
