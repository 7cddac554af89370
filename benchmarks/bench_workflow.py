"""Benchmark 5: the DVC workflow, from a fresh clone and with nothing to do.

The repository's working tree (tracked and untracked, non-ignored files: what a clone plus
local work holds) is copied into a scratch folder and committed there; then

reference
    ``dvc repro`` from scratch: the whole demo pipeline (``params.yaml`` as committed),
    i.e. what re-running every step costs without DVC's bookkeeping; each stage's share is
    read from when ``dvc`` announced it (``Running stage '...'``);
quakeshap
    ``dvc repro`` again, with nothing to do (median of several calls).

Targets: the fresh pipeline within 5 minutes on 2 cores, a no-op ``dvc repro`` within 3 s.
The environment is installed already (``make`` does that once); its time is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _common as common

NAME = "workflow"
TARGET = "no-op `dvc repro` median <= 3 s; the demo pipeline from a fresh clone <= 5 min"
UP_TO_DATE = "Data and pipelines are up to date."


@dataclass(frozen=True)
class Plan:
    target: str | None  # stage to reproduce up to; None = the whole pipeline
    noop_repeats: int
    #: dotted params.yaml keys changed in the copy (smoke: a tiny demo data set)
    overrides: dict[str, Any] = field(default_factory=dict)


FULL = Plan(target=None, noop_repeats=5)
SMOKE = Plan(
    target="spectrograms",
    noop_repeats=2,
    overrides={
        "data.demo.n_pre": 60,
        "data.demo.n_post": 40,
        "data.demo.n_colocated_groups": 3,
        "data.demo.n_missing_channels": 1,
    },
)


def copy_worktree(src: Path, dst: Path) -> int:
    """Copy the files git would have in a clone plus local work; return how many."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = sorted({p for p in listing.split("\0") if p and (src / p).is_file()})
    for rel in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    return len(files)


def stage_seconds(run: common.ProcessRun) -> dict[str, float]:
    """Seconds from each ``Running stage 'name':`` line of a ``dvc repro`` to the next one
    (the last one: to the end of the run)."""
    starts = [
        (t, line.split("'")[1]) for t, line in run.line_times if line.startswith("Running stage '")
    ]
    if not starts:  # every stage was up to date
        return {}
    ends = [t for t, _ in starts[1:]] + [run.wall_s]
    return {name: round(end - t, 3) for (t, name), end in zip(starts, ends, strict=True)}


def workflow_env(repo: Path, state: Path) -> dict[str, str]:
    """Children find this environment's ``python``/``dvc`` first, import the copy's library,
    and keep DVC's global state in ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(
        PYTHONPATH=str(repo / "src"),
        DVC_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",  # lines arrive when printed: the stage times depend on it
        DVC_GLOBAL_CONFIG_DIR=str(state / "dvc-global"),
        DVC_SITE_CACHE_DIR=str(state / "dvc-site-cache"),
        GIT_AUTHOR_NAME="quakeshap benchmarks",
        GIT_AUTHOR_EMAIL="bench@quakeshap.invalid",
        GIT_COMMITTER_NAME="quakeshap benchmarks",
        GIT_COMMITTER_EMAIL="bench@quakeshap.invalid",
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
ratio = fresh pipeline time / no-op time: what DVC's bookkeeping saves when nothing changed.
stage_seconds: from one `Running stage` line of the fresh run to the next (the last to the
end), so they include DVC's hashing and lock writing; dvc's start-up is before the first.
Wall-clock seconds.
""".split()
)


def build_parser() -> argparse.ArgumentParser:
    return common.make_parser(__doc__.splitlines()[0])


def dvc_executable() -> str:
    """The ``dvc`` of this interpreter's environment (else the one on PATH)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    if not Path(dvc).exists():
        dvc = shutil.which("dvc") or "dvc"
    return dvc


def fresh_copy(root: Path, work: Path) -> tuple[Path, int]:
    """``root``'s working tree copied into an empty ``work/repo``: the folder and the
    number of files copied."""
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    return repo, copy_worktree(root, repo)


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    repeats = args.repeats or plan.noop_repeats
    dvc = dvc_executable()
    with common.scratch_dir(args.workdir, NAME) as work:
        repo, n_files = fresh_copy(common.REPO_ROOT, work)
        if plan.overrides:
            common.write_params(repo / "params.yaml", repo / "params.yaml", plan.overrides)
        env = workflow_env(repo, work / "state")
        for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
            common.check_process(common.run_process(command, cwd=repo, env=env), " ".join(command))
        repro = [dvc, "repro", *([plan.target] if plan.target else [])]
        fresh = common.check_process(
            common.run_process(repro, cwd=repo, env=env), "dvc repro (fresh)"
        )
        stage_s = stage_seconds(fresh)
        noop_samples = []
        for _ in range(repeats):
            again = common.check_process(
                common.run_process(repro, cwd=repo, env=env), "dvc repro (no-op)"
            )
            if UP_TO_DATE not in again.output:
                raise common.BenchmarkError(
                    f"a second `dvc repro` was not a no-op:\n{again.output[-2000:]}"
                )
            noop_samples.append(again.wall_s)

    reference = common.summarize([fresh.wall_s], "s", "lower", what="dvc repro from scratch")
    quakeshap = common.summarize(noop_samples, "s", "lower", what="dvc repro, nothing to do")
    checks = [
        common.Check(
            "noop_repro_s", quakeshap["median"], "<=", 3.0, "median `dvc repro` with nothing to do"
        ),
        common.Check(
            "fresh_pipeline_s",
            fresh.wall_s,
            "<=",
            300.0,
            "`dvc repro` of the "
            + (f"pipeline up to {plan.target}" if plan.target else "whole demo pipeline")
            + " in a fresh copy",
        ),
    ]
    details = {
        "target": plan.target or "all stages",
        "stage_seconds": stage_s,
        "params_overrides": plan.overrides,
        "files_copied": n_files,
        "command": " ".join(["dvc", "repro", *([plan.target] if plan.target else [])]),
        "notes": NOTES,
    }
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
