"""The pipeline's stages, one module each, run by DVC as ``python -m quakeshap.stages.<name>``.

Every stage reads its parameters and inputs, calls the library, and writes its outputs
through their owners in :mod:`quakeshap.artifacts`. :func:`run_stage` is what they share:
logging set up once, and an expected error (bad parameters, a missing or inconsistent
input, ...) logged as one line and turned into exit code 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from quakeshap.artifacts import ArtifactError
from quakeshap.config import PARAMS_FILE, ConfigError


def stage_parser(doc: str, **paths: Path) -> argparse.ArgumentParser:
    """A stage's command line: ``--params`` and one ``--<name>`` option per path it reads
    or writes, each defaulting to the project path its owner names (as in ``dvc.yaml``).

    ``doc`` is the stage module's docstring; its first line describes the command.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    for name, default in paths.items():
        parser.add_argument(f"--{name}", type=Path, default=Path(default))
    return parser


#: errors every stage reports as one line: bad parameters, unusable inputs
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ConfigError, ArtifactError)


def run_stage(
    name: str,
    work: Callable[[], object],
    errors: tuple[type[Exception], ...] = (),
    verbose: bool = False,
) -> int:
    """Run one stage's ``work`` and return its exit code.

    Parameters
    ----------
    name
        The stage's name; its log lines come from ``quakeshap.stages.<name>``.
    work
        Does everything; raises one of :data:`EXPECTED_ERRORS` or ``errors`` when it
        cannot (nothing half-written is left: outputs are written atomically).
    errors
        The stage's own expected error types.
    verbose
        Log the library's debug messages too.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("quakeshap").setLevel(logging.DEBUG)
    try:
        work()
    except (*EXPECTED_ERRORS, *errors) as exc:
        logging.getLogger(f"quakeshap.stages.{name}").error("%s", exc)
        return 1
    return 0
