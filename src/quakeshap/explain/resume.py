"""Per-trace results kept on disk while a selection is explained, so that a run stopped
part-way (Ctrl+C, SIGTERM, a batch system's wall-time limit, a lost node) and started again
explains only the traces it had not finished (``shap.resume_dir``, ``docs/cluster.md``).

A :class:`ResultStore` is a folder ``<resume_dir>/<run key>/`` with one ``.npz`` file per
finished trace, written to a temporary name and renamed, so a file is whole or absent. The
run key is a SHA-256 over everything a trace's maps depend on besides the trace itself: the
model's weights, the background images, every ``shap`` setting that changes values (not
``workers``, ``scheduler``, ``scheduler_timeout_s``, ``resume_dir`` nor
``additivity_tolerance``: where and how fast the work runs, and a check made after it), the
device type, the versions of the numerical libraries, and the source of the installed
quakeshap package, so that a code change never reuses maps computed by other code. A
trace's file name is a SHA-256 of its job: name, image bytes, classes, seed and whether it
goes through the randomisation cascade.

A job's maps depend only on the job and these settings (``docs/method.md`` §5), so the maps
of a resumed run equal, bit for bit, those of a run that was never stopped. A file that
cannot be read back as a whole result (cut short, hand-edited) is reported, removed and
explained again. The store is removed once every trace of the run has its result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quakeshap.config import ShapConfig
from quakeshap.explain.explainers import ExplainJob, JobResult
from quakeshap.explain.faithfulness import Faithfulness

log = logging.getLogger(__name__)

#: ``shap`` settings that decide where and how fast the traces run, or what is checked
#: after, not the values
NON_VALUE_SETTINGS = (
    "workers",
    "scheduler",
    "scheduler_timeout_s",
    "resume_dir",
    "additivity_tolerance",
)
#: the numerical libraries (distribution names) whose versions enter the run key
LIBRARIES = (
    "numpy",
    "torch",
    "shap",
    "opencv-python-headless",
    "opencv-python",
    "scipy",
    "captum",
)
#: the :class:`Faithfulness` arrays, stored under ``faithfulness.<name>``
_FAITHFULNESS_ARRAYS = (
    "deletion_auc",
    "insertion_auc",
    "random_deletion_auc",
    "random_insertion_auc",
    "spearman",
    "randomised",
)
_SUFFIX = ".npz"


def _library_versions() -> dict[str, str]:
    """The installed versions of :data:`LIBRARIES`, from their metadata (nothing imported)."""
    from importlib import metadata

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _package_digest() -> str:
    """SHA-256 over the installed quakeshap package's Python sources (paths and bytes)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _update_arrays(digest: Any, arrays: Iterable[np.ndarray]) -> None:
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())


def run_key(
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    background: np.ndarray | None,
    device: torch.device | str | None,
) -> str:
    """The SHA-256 (hex) that names a run's store: see the module's description.

    ``device`` is the device the maps are computed on (None: a Dask cluster, whose workers
    resolve ``cfg.device`` themselves; the setting itself is in the key).
    """
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NON_VALUE_SETTINGS}
    head = {
        "settings": settings,
        "device": None if device is None else torch.device(device).type,
        "libraries": _library_versions(),
        "package": _package_digest(),
        "checkpoint": {k: repr(v) for k, v in sorted(ckpt.items()) if k != "state_dict"},
    }
    digest = hashlib.sha256(json.dumps(head, sort_keys=True, default=repr).encode())
    state = ckpt.get("state_dict", {})
    for name in sorted(state):
        digest.update(name.encode())
        _update_arrays(digest, [state[name].detach().cpu().numpy()])
    if background is not None:
        _update_arrays(digest, [background])
    return digest.hexdigest()


def job_key(job: ExplainJob) -> str:
    """The SHA-256 (hex) of one job: name, image, classes, seed and cascade flag."""
    head = json.dumps([job.trace_name, list(job.classes), job.seed, job.randomise])
    digest = hashlib.sha256(head.encode())
    _update_arrays(digest, [job.image])
    return digest.hexdigest()


def _to_arrays(result: JobResult) -> dict[str, np.ndarray]:
    arrays = {
        "trace_name": np.array(result.trace_name),
        "classes": np.asarray(result.classes, dtype=np.int64),
        "values": result.values,
        "base_values": result.base_values,
        "logits": result.logits,
    }
    f = result.faithfulness
    if f is not None:
        arrays["faithfulness.layers"] = np.array(list(f.layers), dtype=str)
        for name in _FAITHFULNESS_ARRAYS:
            arrays[f"faithfulness.{name}"] = getattr(f, name)
    return arrays


def _from_arrays(arrays: Any, job: ExplainJob) -> JobResult:
    if str(arrays["trace_name"]) != job.trace_name:
        raise ValueError(f"it holds trace {arrays['trace_name']}, not {job.trace_name}")
    classes = tuple(int(c) for c in arrays["classes"])
    if classes != tuple(job.classes):
        raise ValueError(f"it holds classes {classes}, not {job.classes}")
    faithfulness = None
    if "faithfulness.layers" in arrays:
        faithfulness = Faithfulness(
            **{name: arrays[f"faithfulness.{name}"] for name in _FAITHFULNESS_ARRAYS},
            layers=tuple(str(layer) for layer in arrays["faithfulness.layers"]),
        )
    return JobResult(
        job.trace_name,
        classes,
        arrays["values"],
        arrays["base_values"],
        arrays["logits"],
        faithfulness,
    )


class ResultStore:
    """The finished traces of one run, a file each, in ``root/<key>/``."""

    def __init__(self, root: Path | str, key: str) -> None:
        self.folder = Path(root) / key[:32]

    def _path(self, job: ExplainJob) -> Path:
        return self.folder / f"{job_key(job)[:32]}{_SUFFIX}"

    def load(self, job: ExplainJob) -> JobResult | None:
        """``job``'s stored result, or None (none stored, or unreadable: then removed)."""
        path = self._path(job)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return _from_arrays({k: arrays[k] for k in arrays.files}, job)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("%s: not a whole result of trace %s (%s); explaining it again",
                        path, job.trace_name, exc)  # fmt: skip
            path.unlink(missing_ok=True)
            return None

    def load_all(self, jobs: Iterable[ExplainJob]) -> dict[int, JobResult]:
        """The stored results of ``jobs``, by position."""
        found = {}
        for i, job in enumerate(jobs):
            result = self.load(job)
            if result is not None:
                found[i] = result
        return found

    def save(self, job: ExplainJob, result: JobResult) -> None:
        """Keep ``result`` (atomically: a temporary file renamed into place)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(job)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{_SUFFIX}")
        try:
            with open(partial, "wb") as handle:
                np.savez(handle, allow_pickle=False, **_to_arrays(result))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the run's folder (and its parent when that is left empty)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()
        except OSError:  # other runs' folders, or already gone
            pass


def anchored(cfg: ShapConfig, params_file: Path | str) -> ShapConfig:
    """``cfg`` with a relative ``resume_dir`` made relative to the folder of
    ``params_file`` (under DVC: the project's root, where stages run) rather than to the
    current directory."""
    if cfg.resume_dir is None or Path(cfg.resume_dir).is_absolute():
        return cfg
    folder = Path(params_file).resolve().parent / cfg.resume_dir
    return dataclasses.replace(cfg, resume_dir=str(folder))
