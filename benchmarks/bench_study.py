"""Benchmark: the study's workload, offline, timed stage by stage (``make bench-study``).

The configuration is ``profiles/study.yaml`` with ``profiles/study_workload.yaml`` on top:
every setting of the study (7 folds, float32 training, 300 traces per class, 10 per ISO
week over weeks 34-51, every misclassified trace, partition SHAP with 5000 evaluations, the
faithfulness checks, the explainers stage as the study profile has it) on the demo data at
the study's size (3636 pre and 2194 post traces), so that it needs no network.

The working tree is copied into a scratch folder as a clone plus local work would hold it
(:func:`benchmarks.bench_workflow.copy_worktree`), its ``params.yaml`` replaced by that
configuration (validated first), committed there, and ``dvc repro`` run once from scratch.
Recorded: the seconds of each stage (from ``dvc``'s ``Running stage`` line to the next:
:func:`benchmarks.bench_workflow.stage_seconds`), the whole run, the traces the ``explain``
stage explained (its metrics) and the stage's seconds per trace, and the machine.

reference
    The budget, 30 min (a target, not a measurement: the study's own code was not run).
quakeshap
    ``dvc repro`` of the whole workload from scratch, seconds; ``ratio`` = budget / that
    (> 1 = within the budget).

Targets, set for **one GPU box**: the whole workload within 30 min, and the ``explain``
stage within 1 s per trace explained (its whole stage time: start-up, reading, SHAP and the
faithfulness checks, over the traces). On a machine without a GPU, or with ``--device cpu``,
the numbers are recorded and the checks are not judged: each check's ``met`` and the
result's ``met`` are null (a report), and ``details.checks_apply`` says why.

``--resume`` (with ``--workdir``) goes on with a run that was stopped from outside (the
machine shut down, Ctrl+C): the stages it finished are kept, ``explain`` reads back the
traces it had done (``shap.resume_dir``), and each stage's seconds are added up over the
attempts, a stopped attempt counting to its last log line or heartbeat. Each attempt's log
is kept in ``<workdir>/attempts/``. It refuses a folder started from other library sources
(``src/quakeshap``), another ``dvc.yaml`` or other settings.

``--smoke`` runs a tiny version of the same configuration (100 traces, 2 folds of 1 epoch,
100 SHAP evaluations, no faithfulness checks) in about a minute: its numbers mean nothing.
Not part of ``make bench`` (:mod:`benchmarks.run_all`): it runs the whole pipeline at the
study's size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks import _common as common
from benchmarks.bench_workflow import dvc_executable, fresh_copy, stage_seconds, workflow_env
from quakeshap.artifacts import metrics
from quakeshap.config import ConfigError, load_yaml, parse_params
from quakeshap.profiles import ProfileError, compose, profile_overrides

NAME = "study_workload"
BUDGET_S = 30 * 60.0
SHAP_S_PER_TRACE = 1.0
TARGET = (
    "on one GPU box: the study's workload (demo data of the study's size) within 30 min, "
    "the explain stage within 1 s per trace; not judged on a machine without a GPU"
)
PROFILE = Path("profiles/study.yaml")
PATCH = Path("profiles/study_workload.yaml")
#: the folder of ``--workdir`` that keeps each attempt's ``dvc repro`` log
ATTEMPTS = "attempts"

#: ``--smoke``: the same configuration, shrunk (patched on top of the workload's)
SMOKE_PATCH: dict[str, Any] = {
    "data": {"demo": {"n_pre": 60, "n_post": 40, "n_colocated_groups": 3, "n_missing_channels": 1}},
    "spectrogram": {"workers": 1},
    "train": {"n_folds": 2, "max_epochs": 1, "patience": 1, "num_threads": 1},
    "select": {
        "per_class": 1,
        "per_week": 1,
        "week_min": 42,
        "week_max": 45,
        "max_misclassified": 1,
    },
    "shap": {"max_evals": 100, "workers": 1, "faithfulness": {"enabled": False}},
    "explainers": {
        "per_class": 1,
        "configurations": ["partition:inpaint_telea", "deep"],
        "max_evals": 100,
        "faithfulness": False,
    },
    "plots": {"dpi": 40},
}

#: the explain stage's own log lines: its workers and device, and the explanation's time
_EXPLAIN_START = re.compile(r"(\d+) worker\(s\) on (\S+)")
_EXPLAIN_END = re.compile(r"map\(s\) of (\d+) trace\(s\) in ([0-9.]+) s")

#: how to read the result (written into it as ``details.notes``)
NOTES = " ".join(
    """
reference = the 30-minute budget (a target, not a measurement); quakeshap = `dvc repro` of
the whole workload from scratch in a fresh copy; ratio = budget / measured (> 1 = within the
budget). stage_seconds: from one `Running stage` line to the next (the last to the end), so
they include DVC's hashing and lock writing; dvc's start-up comes before the first.
explain_seconds_per_trace = the explain stage's seconds / the traces it explained (worker
start-up, reading, SHAP and the faithfulness checks); explain_log is what the stage logged: its
workers, device and its own time for the explanation (from starting the workers to the last
map; reading and writing left out). The targets are set for one
GPU box: without a GPU the checks are recorded with met = null. attempts: one per `dvc
repro` (more than one with --resume: a run stopped from outside and resumed); stage_seconds and
the total add the attempts up, a stopped attempt counting to its last log line or heartbeat
(30 s), and explain's traces done before a stop are read back, not explained again.
""".split()
)


def workload_config(root: Path, smoke: bool, device: str | None) -> dict[str, Any]:
    """The study's configuration with the workload's patch (and the smoke's, and a device)
    on top, validated; a :class:`~benchmarks._common.BenchmarkError` names what is wrong."""
    patches = [load_yaml(root / PATCH)]
    if smoke:
        patches.append(SMOKE_PATCH)
    if device is not None:
        patches.append({"train": {"device": device}, "shap": {"device": device}})
    try:
        config = compose(load_yaml(root / "params.yaml"), load_yaml(root / PROFILE), patches)
        parse_params(config)
    except (ConfigError, ProfileError) as exc:
        raise common.BenchmarkError(f"{PROFILE} + {PATCH}: {exc}") from None
    return config


def stage_output(run: common.ProcessRun, stage: str) -> str:
    """The lines of a ``dvc repro`` from ``Running stage 'stage'`` to the next stage's."""
    lines: list[str] = []
    inside = False
    for _, line in run.line_times:
        if line.startswith("Running stage '"):
            inside = line.startswith(f"Running stage '{stage}'")
        if inside:
            lines.append(line)
    return "\n".join(lines)


def explain_log(output: str) -> dict[str, Any]:
    """What the explain stage logged (``output``: its lines only, :func:`stage_output`): its
    workers and device, and its explanation seconds."""
    start = _EXPLAIN_START.search(output)
    end = _EXPLAIN_END.search(output)
    if start is None or end is None:
        raise common.BenchmarkError(
            "the explain stage's log lines were not found in the `dvc repro` output "
            "(has their wording changed?)"
        )
    return {
        "workers": int(start.group(1)),
        "device": start.group(2),
        "n_traces": int(end.group(1)),
        "seconds": float(end.group(2)),
        "seconds_per_trace": float(end.group(2)) / int(end.group(1)),
    }


def checks_apply(machine: dict[str, Any], device: str | None) -> tuple[bool, str]:
    """Whether the GPU-box targets are judged here, and why (not)."""
    if machine.get("gpu") is None:
        return False, "no GPU on this machine: the targets are set for one GPU box"
    if device == "cpu":
        return False, "--device cpu: the stages did not use the GPU"
    return True, f"judged: GPU {machine['gpu']['name']}"


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="train.device and shap.device (default: the study profile's, auto)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the stopped run in --workdir (same tree and settings): its finished "
        "stages are kept, explain resumes its traces, and the attempts' times are added up",
    )
    return parser


def source_fingerprint(root: Path, config: dict[str, Any]) -> str:
    """SHA-256 of the configuration and of what the pipeline runs (the library's sources and
    ``dvc.yaml``): a run may only be resumed while they are the same, so that its result
    describes the code in the tree (documentation and benchmarks may change meanwhile)."""
    digest = hashlib.sha256(yaml.safe_dump(config, sort_keys=True).encode())
    for path in [*sorted((root / "src" / "quakeshap").rglob("*.py")), root / "dvc.yaml"]:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(root: Path, work: Path, config: dict[str, Any], resume: bool) -> tuple[Path, int]:
    """The scratch repository in ``work/repo``: a fresh copy of ``root`` with ``config`` as
    its ``params.yaml``, committed; with ``resume``, the one a stopped run left, checked to
    come from the same tree and settings. Returns it and the number of files copied."""
    repo, marker = work / "repo", work / "source.json"
    fingerprint = source_fingerprint(root, config)
    if resume:
        if not marker.is_file() or not repo.is_dir():
            raise common.BenchmarkError(
                f"--resume: {work} holds no stopped run of this benchmark; run without --resume"
            )
        kept = json.loads(marker.read_text())
        if kept["fingerprint"] != fingerprint:
            raise common.BenchmarkError(
                f"--resume: the run in {work} was started from other library sources, another "
                "dvc.yaml or other settings; run without --resume to start over"
            )
        return repo, int(kept["files_copied"])
    shutil.rmtree(work / ATTEMPTS, ignore_errors=True)
    marker.unlink(missing_ok=True)
    repo, n_files = fresh_copy(root, work)
    (repo / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = workflow_env(repo, work / "state")
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        common.check_process(common.run_process(command, cwd=repo, env=env), " ".join(command))
    marker.write_text(json.dumps({"fingerprint": fingerprint, "files_copied": n_files}))
    return repo, n_files


def add_up(attempts: list[tuple[common.ProcessRun, bool]]) -> tuple[dict[str, float], float]:
    """Each stage's seconds summed over the attempts (an attempt stopped from outside counts
    to its last line or heartbeat), and their total."""
    stages: dict[str, float] = {}
    for attempt, _ in attempts:
        for stage, seconds in stage_seconds(attempt).items():
            stages[stage] = round(stages.get(stage, 0.0) + seconds, 3)
    return stages, sum(attempt.wall_s for attempt, _ in attempts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = common.REPO_ROOT
    if args.resume and args.workdir is None:
        raise common.BenchmarkError("--resume needs --workdir: the folder of the stopped run")
    config = workload_config(root, args.smoke, args.device)
    overrides = profile_overrides(config, load_yaml(root / "params.yaml"))
    dvc = dvc_executable()
    with common.scratch_dir(args.workdir, NAME) as work:
        repo, n_files = prepare(root, work, config, args.resume)
        logs = work / ATTEMPTS
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{len(list(logs.glob('*.log'))) + 1:02d}.log"
        env = workflow_env(repo, work / "state")
        common.check_process(
            common.run_process(
                [dvc, "repro"], cwd=repo, env=env, timeout_s=12 * 3600.0, log_path=log_path
            ),
            "dvc repro (the study's workload)",
        )
        attempts = [common.read_process_log(path) for path in sorted(logs.glob("*.log"))]
        explained = metrics.load(repo / metrics.PATHS["explain"], "explain")
        trained = metrics.load(repo / metrics.PATHS["train"], "train")

    stages, total_s = add_up(attempts)
    if "explain" not in stages:
        raise common.BenchmarkError(f"`dvc repro` ran no explain stage: {sorted(stages)}")
    n_traces = int(explained["n_traces"])
    shap_per_trace = stages["explain"] / n_traces
    last_explain = next(a for a, _ in reversed(attempts) if "explain" in stage_seconds(a))
    logged = explain_log(stage_output(last_explain, "explain"))
    attempt_details = [
        {"seconds": round(attempt.wall_s, 3), "finished": exited, "stages": stage_seconds(attempt)}
        for attempt, exited in attempts
    ]

    machine = common.machine_info()
    applies, why = checks_apply(machine, args.device)
    checks = [
        common.Check(
            "workload_s",
            total_s,
            "<=",
            BUDGET_S,
            "the study's workload (demo data, study size): `dvc repro` from scratch, seconds"
            + ("" if applies else " (not judged: no GPU)"),
        ),
        common.Check(
            "explain_seconds_per_trace",
            shap_per_trace,
            "<=",
            SHAP_S_PER_TRACE,
            "the explain stage's seconds per trace explained"
            + ("" if applies else " (not judged: no GPU)"),
        ),
    ]
    reference = common.summarize(
        [BUDGET_S], "s", "lower", what="the budget on one GPU box (a target, not a measurement)"
    )
    quakeshap = common.summarize(
        [total_s], "s", "lower", what="dvc repro of the study's workload from scratch"
    )
    details = {
        "checks_apply": applies,
        "checks_apply_reason": why,
        "stage_seconds": stages,
        "stage_seconds_sum": round(sum(stages.values()), 3),
        "attempts": attempt_details,
        "n_traces_explained": n_traces,
        "n_maps": int(explained["n_maps"]),
        "explain_seconds_per_trace": shap_per_trace,
        "explain_log": logged,
        "epochs_run": int(trained["epochs_run"]),
        "profile": [str(PROFILE), str(PATCH)] + (["smoke patch"] if args.smoke else []),
        "device_option": args.device,
        "params_overrides": overrides,
        "files_copied": n_files,
        "command": "dvc repro",
        "notes": NOTES,
    }
    result = common.make_result(
        NAME,
        args,
        reference,
        quakeshap,
        TARGET,
        checks,
        details,
        report_only=not applies,
        machine=machine,
    )
    if not applies:
        for check in result["checks"]:
            check["met"] = None
    return result


if __name__ == "__main__":
    sys.exit(common.main_wrapper(run, build_parser()))
