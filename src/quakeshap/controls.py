"""The study's controls, each one a named DVC experiment.

The classifier's signal must survive the obvious controls. Each control is a patch of
parameters, ``profiles/controls/<name>.yaml`` (:mod:`quakeshap.profiles`), applied on top
of a base configuration: ``params.yaml`` (the demo) or a complete profile such as
``profiles/study.yaml`` (``--base``). ``run`` checks every name and every resulting
configuration first, queues one experiment ``control-<name>`` per control
(``dvc exp run --queue -n control-<name> -S ...``), starts one queue worker
(``dvc queue start -j 1``: one experiment at a time) and waits until all of them are done.
Every experiment writes the pipeline's metrics (``evaluate.json``, ``explain.json``, ...),
so ``dvc exp show`` compares them side by side.

Command line (``make controls`` runs it)::

    python -m quakeshap.controls run [NAMES ...] [--base PROFILE] [--replace]

Without names every control runs. ``--replace`` removes experiments of the same names
first (DVC refuses to overwrite one). The controls start from the commit's pipeline as
``dvc.lock`` records it, which the ``study`` control reproduces: when ``dvc status`` says
that parameters, code or data no longer match ``dvc.lock`` (missing outputs do not count),
``run`` stops before queueing anything (``dvc repro``, then commit ``dvc.lock``). DVC 3.67
also fails to run a queued experiment without overrides on such a workspace.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from quakeshap.artifacts.metrics import STAGES
from quakeshap.config import PARAMS_FILE, ConfigError, load_yaml, parse_params
from quakeshap.profiles import ProfileError, compose, dvc_set_args, profile_overrides

#: where the controls' patches live, one ``<name>.yaml`` each
CONTROLS_DIR = Path("profiles/controls")
#: experiment name of control ``<name>``: ``control-<name>``
EXPERIMENT_PREFIX = "control-"
#: seconds between two looks at the queue
POLL_S = 5.0
#: what ``dvc queue status`` calls a task not finished yet
_PENDING = re.compile(r"\b(Queued|Running)\b")


class ControlError(ValueError):
    """An unknown control, a configuration that cannot run, or a failed command."""


@dataclass(frozen=True)
class Control:
    """One control as it will run: its experiment name and its ``-S`` overrides."""

    name: str
    experiment: str
    overrides: tuple[str, ...]


def known_controls(folder: Path = CONTROLS_DIR) -> list[str]:
    """Names of the controls in ``folder`` (its ``*.yaml`` files), sorted."""
    return sorted(path.stem for path in Path(folder).glob("*.yaml"))


def check_names(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """``names`` in order without repeats, or all of ``known`` when empty.

    Raises
    ------
    ControlError
        Naming every unknown control and listing the known ones.
    """
    if not known:
        raise ControlError("no control defined: profiles/controls/ holds no <name>.yaml")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ControlError(
            f"unknown control(s) {', '.join(unknown)}; known controls: {', '.join(known)}"
        )
    return list(dict.fromkeys(names)) if names else list(known)


def settings_patch(settings: Sequence[str]) -> dict[str, Any]:
    """``["shap.max_evals=1000", ...]`` (``--set``) as a nested patch; values are YAML.

    Raises
    ------
    ControlError
        A setting without ``=`` or without a dotted key.
    """
    patch: dict[str, Any] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or "." not in key:
            raise ControlError(f"--set {setting!r}: expected section.key=value")
        *sections, leaf = key.split(".")
        node = patch
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(text)
    return patch


def plan_controls(
    names: Sequence[str],
    base: Mapping[str, Any],
    profile: Mapping[str, Any] | None = None,
    folder: Path = CONTROLS_DIR,
    settings: Mapping[str, Any] | None = None,
) -> list[Control]:
    """Every control of ``names`` (all when empty), checked, as it will be queued.

    Parameters
    ----------
    names
        Control names (stems of ``folder``'s files).
    base
        ``params.yaml``, parsed: what the experiments start from.
    profile
        A complete profile the controls apply to instead of ``base`` (e.g. the study's);
        None = ``base`` itself.
    folder
        Where the patches are.
    settings
        A patch applied to every control after its own (:func:`settings_patch`), e.g. a
        smaller SHAP budget for all of them alike.

    Raises
    ------
    ControlError
        An unknown name, or a control whose configuration is invalid (one line, naming the
        control and the parameter).
    """
    plan = []
    for name in check_names(names, known_controls(folder)):
        try:
            patches = [load_yaml(Path(folder) / f"{name}.yaml"), settings or {}]
            config = compose(base, profile, patches)
            parse_params(config)
            overrides = profile_overrides(config, base)
        except (ConfigError, ProfileError) as exc:
            raise ControlError(f"control {name}: {exc}") from None
        plan.append(Control(name, EXPERIMENT_PREFIX + name, tuple(overrides)))
    return plan


def queue_command(control: Control, dvc: str = "dvc", until: str | None = None) -> list[str]:
    """``dvc exp run --queue -n control-<name> -S ... [until]`` for one control; ``until``
    (a stage) runs only the pipeline up to it."""
    return [
        dvc,
        "exp",
        "run",
        "--queue",
        "-n",
        control.experiment,
        *dvc_set_args(control.overrides),
        *([until] if until else []),
    ]


def pending_experiments(queue_status: str, experiments: Sequence[str]) -> set[str]:
    """Which of ``experiments`` ``dvc queue status`` shows queued or running.

    Each task is a row ``<task> <name> <created> <status>``; a name is a whole word of it.
    """
    pending = set()
    for line in queue_status.splitlines():
        words = line.split()
        if _PENDING.search(line):
            pending |= set(experiments) & set(words)
    return pending


def stale_stages(status: Mapping[str, Any]) -> list[str]:
    """Stages whose command, code, data or parameters differ from ``dvc.lock``.

    ``status`` is ``dvc status --json``. Outputs or inputs that are only missing from the
    workspace (``deleted``, ``not in cache``: a fresh clone without ``dvc pull``) do not
    count: the experiments check them out from the cache or run the stage.
    """
    stale = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):
                changed = entry in ("changed command", "changed checksum")
            else:
                deps = entry.get("changed deps", {})
                changed = "changed command" in entry or any(
                    isinstance(v, dict) or v in ("modified", "new") for v in deps.values()
                )
            if changed:
                stale.append(stage)
                break
    return stale


Runner = Callable[[list[str]], str]


def _dvc_command(args: list[str]) -> str:
    """Run one dvc command in the current directory; its stdout, or a ControlError."""
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ControlError(f"`{' '.join(args[:4])} ...` failed: {' '.join(detail)[:500]}")
    return proc.stdout


def run_controls(
    plan: Sequence[Control],
    *,
    replace: bool = False,
    until: str | None = None,
    dvc: str = "dvc",
    run: Runner = _dvc_command,
    poll_s: float = POLL_S,
    log: Callable[[str], None] = print,
) -> dict[str, bool]:
    """Queue every control of ``plan``, run the queue one experiment at a time, wait.

    Parameters
    ----------
    plan
        From :func:`plan_controls`.
    replace
        Remove existing experiments of the same names first; without it, an existing one
        is a :class:`ControlError` before anything is queued.
    until
        Run each experiment's pipeline only up to this stage (e.g. ``explain``: every
        metric the comparison reads, without the figures); None = the whole pipeline.
    dvc, run
        The dvc executable, and how a command is run (tests replace it).
    poll_s
        Seconds between two looks at the queue.
    log
        Where progress lines go.

    Returns
    -------
    ``{control name: whether its experiment exists now}`` (DVC records an experiment only
    when its pipeline succeeded).

    Raises
    ------
    ControlError
        Before anything is queued: the workspace's pipeline differs from ``dvc.lock``
        (:func:`stale_stages`), or an experiment of the same name exists (without
        ``replace``).
    """
    names = [control.experiment for control in plan]
    stale = stale_stages(json.loads(run([dvc, "status", "--json"]) or "{}"))
    if stale:
        raise ControlError(
            f"dvc.lock does not describe this workspace (stage(s) {', '.join(stale)} changed): "
            "run `dvc repro` and commit dvc.lock first, so that the controls start from it"
        )
    existing = set(run([dvc, "exp", "list", "--name-only"]).split()) & set(names)
    if existing and not replace:
        raise ControlError(
            f"experiment(s) {', '.join(sorted(existing))} already exist for this commit; "
            "remove them (dvc exp remove ...) or pass --replace"
        )
    if existing:
        run([dvc, "exp", "remove", *sorted(existing)])
    for control in plan:
        run(queue_command(control, dvc, until))
        log(f"queued {control.experiment} ({len(control.overrides)} override(s))")
    run([dvc, "queue", "start", "-j", "1"])
    pending = set(names)
    while pending:
        time.sleep(poll_s)
        still = pending_experiments(run([dvc, "queue", "status"]), names)
        for done in sorted(pending - still):
            log(f"finished {done}")
        pending = still
    finished = set(run([dvc, "exp", "list", "--name-only"]).split())
    return {control.name: control.experiment in finished for control in plan}


def _dvc_executable() -> str:
    """The dvc next to this interpreter (the project's environment), else on PATH."""
    candidate = Path(sys.executable).parent / "dvc"
    if candidate.exists():
        return str(candidate)
    return shutil.which("dvc") or "dvc"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quakeshap.controls",
        description="Run the study's controls (profiles/controls/) as named DVC experiments.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="queue the controls and run them")
    run_parser.add_argument("names", nargs="*", help="controls to run (default: all)")
    run_parser.add_argument(
        "--base", help="complete profile the controls apply to (default: params.yaml)"
    )
    run_parser.add_argument(
        "--replace", action="store_true", help="remove experiments of the same names first"
    )
    run_parser.add_argument(
        "--until",
        choices=STAGES,
        help="run each control's pipeline only up to this stage (e.g. explain)",
    )
    run_parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set a parameter in every control alike (repeatable), e.g. shap.max_evals=1000",
    )
    commands.add_parser(
        "compare", help="write reports/controls.html from `dvc exp show --json` (no run)"
    )
    args = parser.parse_args(argv)
    from quakeshap import control_report  # it imports this module

    if args.command == "compare":
        return control_report.main([])
    try:
        profile = None if args.base is None else load_yaml(args.base)
        settings = settings_patch(args.set)
        plan = plan_controls(args.names, load_yaml(PARAMS_FILE), profile, settings=settings)
        results = run_controls(plan, replace=args.replace, until=args.until, dvc=_dvc_executable())
    except (ConfigError, ControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = [name for name, ok in results.items() if not ok]
    print(f"{len(results) - len(failed)} of {len(results)} control(s) finished: `dvc exp show`")
    if control_report.main([]) != 0:
        return 1
    if failed:
        print(
            f"error: control(s) failed: {', '.join(failed)}; see `dvc queue logs <task>`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
