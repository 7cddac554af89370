"""A selection's SHAP maps: one job per trace, run in worker processes, additivity checked.

:func:`plan_jobs` turns ``data/selection.csv`` into one :class:`ExplainJob` per trace (seeded
by :func:`trace_seed`), :func:`run_jobs` explains them in this process, in ``spawn``-ed
workers or on the workers of a Dask scheduler (``shap.scheduler``), and
:func:`explain_selection` does both and checks every map's additivity (``docs/method.md``
§5). :func:`draw_background` draws the gradient explainers' background images.

A job's maps depend only on the job (its trace's own seed) and the settings, never on where
it runs: every worker, local or Dask, explains one trace at a time with one torch and one
OpenCV thread, so the three paths give the same values bit for bit. Local workers leave with
the stage: they ignore Ctrl+C (the stage stops them), and exit at once when the stage
process is gone, even killed with SIGKILL (:func:`_follow_parent`).
"""

from __future__ import annotations

import ctypes
import io
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from quakeshap import record
from quakeshap.artifacts.selection import PATH as SELECTION_PATH
from quakeshap.artifacts.selection import SELECTION_COLUMNS
from quakeshap.artifacts.shap_set import INDEX_COLUMNS, class_mean_mask, join_groups
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import ShapConfig, resolve_workers
from quakeshap.explain.explainers import (
    BACKGROUND_EXPLAINERS,
    ExplainError,
    ExplainJob,
    JobResult,
    TraceExplainer,
    check_config,
    single_threaded,
)
from quakeshap.explain.faithfulness import concatenate
from quakeshap.explain.maps import ShapMaps
from quakeshap.explain.resume import ResultStore, run_key
from quakeshap.model import model_from_checkpoint, resolve_device
from quakeshap.record import CLASS_NAMES

log = logging.getLogger(__name__)


def trace_seed(seed: int, trace_name: str) -> int:
    """A 32-bit seed for one trace, from ``shap.seed`` and the trace name (order-free)."""
    state = np.random.SeedSequence([seed, zlib.crc32(trace_name.encode("utf-8"))])
    return int(state.generate_state(1, dtype=np.uint32)[0])


# --------------------------------------------------------------------------------------
# many traces, in worker processes
# --------------------------------------------------------------------------------------

_WORKER: TraceExplainer | None = None
#: seconds between a worker's checks that the stage process is still there
PARENT_POLL_S = 0.5


def _checkpoint_bytes(ckpt: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def _follow_parent(parent_pid: int) -> None:
    """End this worker process as soon as process ``parent_pid`` (the stage) is gone.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a daemon
    thread also checks ``os.getppid()`` every :data:`PARENT_POLL_S` seconds, which covers
    other systems and a parent that died before the ``prctl`` call.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl: the thread below does it
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="quakeshap-follow-parent", daemon=True).start()


def _worker_init(
    ckpt_bytes: bytes,
    cfg: ShapConfig,
    device: str,
    background: np.ndarray | None,
    parent_pid: int | None = None,
) -> None:
    """Build the process's :class:`TraceExplainer` once (spawned worker initializer).

    Ctrl+C is the stage's to handle (it terminates the pool); with ``parent_pid`` the
    worker exits when that process is gone (:func:`_follow_parent`).
    """
    global _WORKER
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _follow_parent(parent_pid)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ckpt = torch.load(io.BytesIO(ckpt_bytes), map_location="cpu", weights_only=True)
    _WORKER = TraceExplainer(ckpt, cfg, torch.device(device), background)


def _worker_explain_at(item: tuple[int, ExplainJob]) -> tuple[int, JobResult]:
    assert _WORKER is not None, "worker used before its initializer ran"
    i, job = item
    return i, _WORKER.explain(job)


def run_jobs(
    jobs: Sequence[ExplainJob],
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    background: np.ndarray | None = None,
    workers: int = 1,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[int, JobResult], None] | None = None,
) -> list[JobResult]:
    """Explain ``jobs``, in ``workers`` spawned processes or (``workers=1``) in this one, or
    (``cfg.scheduler`` an address) on the workers of that Dask scheduler.

    Every path runs the same per-trace computation with one torch/OpenCV thread, so they
    give identical values. Results come back in the order of ``jobs``; as each trace
    finishes, ``on_result`` gets its position and result (:mod:`~quakeshap.explain.resume`
    keeps it) and ``progress`` the number of traces done and the total. ``workers`` and
    ``device`` are this machine's: Dask workers use ``cfg.device`` on their own machines.
    """
    if cfg.scheduler != "local":
        return _run_on_dask(jobs, ckpt, cfg, background, progress, on_result)
    device = device if device is not None else resolve_device(cfg.device)
    results: list[JobResult | None] = [None] * len(jobs)

    def finished(done: int, i: int, result: JobResult) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)
        if progress is not None:
            progress(done, len(jobs))

    if workers <= 1 or len(jobs) <= 1:
        with single_threaded():
            explainer = TraceExplainer(ckpt, cfg, device, background)
            for i, job in enumerate(jobs):
                finished(i + 1, i, explainer.explain(job))
        return [r for r in results if r is not None]

    workers = min(workers, len(jobs))
    context = multiprocessing.get_context("spawn")
    initargs = (_checkpoint_bytes(ckpt), cfg, str(device), background, os.getpid())
    # one trace per task (seconds of work against milliseconds of IPC): a trace's result
    # arrives, and can be kept, as soon as it is done
    with context.Pool(workers, initializer=_worker_init, initargs=initargs) as pool:
        arrivals = pool.imap_unordered(_worker_explain_at, enumerate(jobs), chunksize=1)
        for done, (i, result) in enumerate(arrivals, start=1):
            finished(done, i, result)
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------------------
# many traces, on a Dask cluster
# --------------------------------------------------------------------------------------

#: the explainer of a Dask worker process: (run token, explainer), built at its first job
_DASK_EXPLAINER: tuple[str, TraceExplainer] | None = None
_DASK_LOCK = threading.Lock()


def _dask_explain(
    job: ExplainJob,
    ckpt_bytes: bytes,
    cfg: ShapConfig,
    background: np.ndarray | None,
    token: str,
) -> JobResult:
    """One job on a Dask worker: as a local worker does it (one trace at a time, one torch
    and one OpenCV thread, the model on ``cfg.device`` of the worker's machine). The
    explainer is built once per worker process and run (``token``)."""
    global _DASK_EXPLAINER
    with _DASK_LOCK, single_threaded():
        if _DASK_EXPLAINER is None or _DASK_EXPLAINER[0] != token:
            _DASK_EXPLAINER = None  # free the last run's model first
            ckpt = torch.load(io.BytesIO(ckpt_bytes), map_location="cpu", weights_only=True)
            device = resolve_device(cfg.device)
            _DASK_EXPLAINER = (token, TraceExplainer(ckpt, cfg, device, background))
        return _DASK_EXPLAINER[1].explain(job)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run_on_dask(
    jobs: Sequence[ExplainJob],
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    background: np.ndarray | None,
    progress: Callable[[int, int], None] | None,
    on_result: Callable[[int, JobResult], None] | None = None,
) -> list[JobResult]:
    """:func:`run_jobs` on the workers of the Dask scheduler at ``cfg.scheduler``.

    The model and the background go to every worker once; each trace is one task.
    Unreachable, without workers within ``cfg.scheduler_timeout_s``, or a worker lost
    mid-trace (beyond the scheduler's ``allowed-failures`` retries: Dask's
    ``KilledWorker``) is an :class:`ExplainError` in one line naming the address.
    """
    from distributed import Client, KilledWorker, as_completed

    address, timeout = cfg.scheduler, cfg.scheduler_timeout_s
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ExplainError(
            f"cannot reach the Dask scheduler at {address} within shap.scheduler_timeout_s = "
            f"{timeout:g} s ({_one_line(exc)}); start it, correct shap.scheduler, or set "
            "shap.scheduler: local"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ExplainError(
                f"the Dask scheduler at {address} has no worker after {timeout:g} s; start "
                f"some (`dask worker {address}`) or set shap.scheduler: local"
            ) from None
        token = uuid.uuid4().hex
        shared = client.scatter(_checkpoint_bytes(ckpt), broadcast=True, hash=False)
        bg = None if background is None else client.scatter(background, broadcast=True,
                                                              hash=False)  # fmt: skip
        futures = []
        for i, job in enumerate(jobs):
            key = f"quakeshap-explain-{token[:8]}-{i}"
            futures.append(client.submit(_dask_explain, job, shared, cfg, bg, token, key=key))
        position = {future.key: i for i, future in enumerate(futures)}
        results: list[JobResult | None] = [None] * len(jobs)
        for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
            i = position[future.key]
            try:
                result = future.result()
            except KilledWorker as exc:
                raise ExplainError(
                    f"a Dask worker of {address} died while explaining trace "
                    f"{jobs[i].trace_name} ({_one_line(exc)}); nothing is written: check the "
                    "workers' memory and logs, then run the stage again"
                ) from None
            results[i] = result
            if on_result is not None:
                on_result(i, result)
            if progress is not None:
                progress(done, len(jobs))
        return [r for r in results if r is not None]
    finally:
        client.close()


# --------------------------------------------------------------------------------------
# the selection → jobs
# --------------------------------------------------------------------------------------


def class_index(value: Any, class_names: tuple[str, ...] = CLASS_NAMES) -> int:
    """A class given as a name (``pre``/``post``, or one of ``class_names``) or an index →
    its index."""
    if class_names == CLASS_NAMES:
        try:
            return record.class_index(value)
        except record.UnknownClassError as exc:
            raise ExplainError(str(exc)) from None
    if str(value) in class_names:
        return class_names.index(str(value))
    raise ExplainError(f"unknown class {value!r}; expected one of {list(class_names)}")


def mean_groups(selection: pd.DataFrame, sset: SpectrogramSet) -> tuple[str, ...]:
    """The groups of the mean maps: the classes, or a regression's magnitude bins (the
    selection's labels, ascending)."""
    if sset.is_regression:
        return tuple(sorted(selection["label"].astype(str).unique()))
    return sset.class_names


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", ""):
            return False
        raise ExplainError(f"selection column explain_both: {value!r} is not a boolean")
    return bool(value)


@dataclass(frozen=True)
class Plan:
    """What to explain: one job per trace, and one index row per (trace, class)."""

    jobs: list[ExplainJob]
    index: pd.DataFrame  # INDEX_COLUMNS without the value columns, row i = map i
    outputs: tuple[str, ...] = CLASS_NAMES  # the model's outputs, by index
    groups: tuple[str, ...] = CLASS_NAMES  # the mean maps' groups (mean_groups)


def plan_jobs(
    selection: pd.DataFrame, sset: SpectrogramSet, seed: int, randomise_per_class: int = 0
) -> Plan:
    """Deduplicate the selection into one job per trace.

    A trace is explained for its predicted class, or for both classes when any of its
    selection rows says ``explain_both``. Traces keep the order of their first appearance
    in the selection; maps of a trace are ordered by class index. The first
    ``randomise_per_class`` traces of each class whose maps enter the class means
    (:func:`~quakeshap.artifacts.shap_set.class_mean_mask`) also go through the
    model-randomisation cascade (``shap.faithfulness``).
    """
    absent = [c for c in SELECTION_COLUMNS if c not in selection.columns]
    if absent:
        raise ExplainError(f"{SELECTION_PATH} lacks column(s) {absent}; re-run `dvc repro select`")
    if selection.empty:
        raise ExplainError(f"{SELECTION_PATH} selects no trace; nothing to explain")
    selection = selection.assign(trace_name=selection["trace_name"].astype(str))
    names = list(dict.fromkeys(selection["trace_name"]))
    rows = sset.rows(names)  # DatasetError naming the missing traces
    meta = sset.metadata.iloc[rows].set_index("trace_name")
    images = sset.as_float(rows)

    outputs = sset.class_names
    jobs, records = [], []
    for name, image in zip(names, images, strict=True):
        mine = selection[selection["trace_name"] == name]
        if len(set(mine["predicted"].astype(str))) != 1:
            raise ExplainError(f"{SELECTION_PATH} gives trace {name} two predicted classes")
        if sset.is_regression:  # one output: the magnitude
            classes: tuple[int, ...] = (0,)
        else:
            pred = class_index(mine["predicted"].iloc[0], outputs)
            both = any(_as_bool(v) for v in mine["explain_both"])
            classes = tuple(range(len(outputs))) if both else (pred,)
        jobs.append(ExplainJob(name, image, classes, trace_seed(seed, name)))
        groups = join_groups(mine["group"])
        first = mine.iloc[0]
        for c in classes:
            records.append(
                {
                    "trace_name": name,
                    "class_index": c,
                    "class_name": outputs[c],
                    "groups": groups,
                    "label": first["label"],
                    "predicted": first["predicted"],
                    "week": int(meta.loc[name, "week"]),
                    "p_s_diff_sec": float(meta.loc[name, "p_s_diff_sec"]),
                }
            )
    index = pd.DataFrame.from_records(records)
    randomised: set[str] = set()
    groups = mean_groups(selection, sset)
    for c in range(len(groups)):
        names = index.loc[class_mean_mask(index, c, groups), "trace_name"]
        randomised.update(list(dict.fromkeys(names))[:randomise_per_class])
    jobs = [replace(job, randomise=job.trace_name in randomised) for job in jobs]
    return Plan(jobs, index, outputs, groups)


def draw_background(
    sset: SpectrogramSet, n: int, seed: int, train_traces: Sequence[str] | None = None
) -> np.ndarray:
    """``n`` training images (seeded draw without replacement), ``(n, 3, 33, 96)`` float32.

    ``train_traces`` (the checkpoint's record of what the model was trained on) wins over
    the ``split`` column, which differs from it under ``train.exclude_colocated``.
    """
    if train_traces is not None:
        train = np.sort(sset.rows(list(train_traces)))
    else:
        train = np.flatnonzero(sset.metadata["split"].to_numpy() == "train")
    if len(train) == 0:
        raise ExplainError("no train-split spectrograms to draw the background images from")
    if n > len(train):
        log.warning("shap.background = %d but the train split has %d images", n, len(train))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(train, size=min(n, len(train)), replace=False))
    return sset.as_float(chosen)


# --------------------------------------------------------------------------------------
# the selection → maps
# --------------------------------------------------------------------------------------


def _collect(plan: Plan, results: list[JobResult], cfg: ShapConfig, seconds: float) -> ShapMaps:
    """The jobs' maps in one array, their index completed with the additivity check.

    Warns where the model's prediction differs from the selection's; raises
    :class:`ExplainError` when a partition map's additivity error exceeds
    ``cfg.additivity_tolerance``.
    """
    values = np.concatenate([r.values for r in results], axis=0)
    base = np.concatenate([r.base_values for r in results])
    f_x = np.concatenate([r.logits[list(r.classes)] for r in results])
    names = plan.outputs
    for result, job in zip(results, plan.jobs, strict=True):
        top = int(np.argmax(result.logits))
        pred = plan.index.loc[plan.index["trace_name"] == job.trace_name, "predicted"].iloc[0]
        if len(names) > 1 and names[top] != str(pred):
            log.warning(
                "trace %s: the model predicts %s but the selection says %s",
                job.trace_name,
                names[top],
                pred,
            )
    shap_sum = values.astype(np.float64).sum(axis=(1, 2, 3))
    error = np.abs(shap_sum - (f_x - base))
    index = plan.index.assign(base_value=base, f_x=f_x, shap_sum=shap_sum, additivity_error=error)
    worst = int(np.argmax(error))
    if cfg.explainer == "partition" and error[worst] > cfg.additivity_tolerance:
        raise ExplainError(
            f"additivity violated: |sum(SHAP) - (f(x) - base)| = {error[worst]:.3g} logits for "
            f"trace {index['trace_name'].iloc[worst]} (class {index['class_name'].iloc[worst]}) "
            f"exceeds shap.additivity_tolerance = {cfg.additivity_tolerance:g}"
        )
    parts = [r.faithfulness for r in results]
    faithfulness = None
    if parts and all(part is not None for part in parts):
        faithfulness = concatenate(parts)  # type: ignore[arg-type]
    return ShapMaps(values, index[list(INDEX_COLUMNS)], seconds, faithfulness, plan.groups)


def explain_selection(
    sset: SpectrogramSet,
    selection: pd.DataFrame,
    ckpt: dict[str, Any],
    cfg: ShapConfig,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ShapMaps:
    """Explain every selected trace (``docs/method.md`` §5) and check additivity.

    Parameters
    ----------
    sset
        The spectrogram set the selection refers to.
    selection
        The ``select`` stage's table (:mod:`quakeshap.artifacts.selection`): one row per
        (trace, group).
    ckpt
        The trained model's checkpoint; a model for other image shapes is an error.
    cfg
        ``shap`` parameters.
    workers
        Worker processes; None = ``cfg.workers`` (``auto`` = all cores).
    progress
        Called with the number of traces done and the total after each trace.

    Raises
    ------
    ExplainError
        Bad parameters, NaN logits, or (partition explainer) an additivity error above
        ``cfg.additivity_tolerance``.
    """
    check_config(cfg, (sset.image_shape[1], sset.image_shape[2], sset.image_shape[0]))
    # this machine's device; Dask workers resolve shap.device on their own machines
    device = resolve_device(cfg.device) if cfg.scheduler == "local" else None
    # CheckpointError on another image shape or another task
    model_from_checkpoint(ckpt, input_shape=sset.image_shape,
                          task=(sset.task_kind, sset.class_names))  # fmt: skip
    fc = cfg.faithfulness
    plan = plan_jobs(selection, sset, cfg.seed, fc.randomisation_per_class if fc.enabled else 0)
    background = None
    if cfg.explainer in BACKGROUND_EXPLAINERS:
        background = draw_background(sset, cfg.background, cfg.seed, ckpt.get("train_traces"))
    store, kept = None, {}
    if cfg.resume_dir is not None:
        store = ResultStore(cfg.resume_dir, run_key(ckpt, cfg, background, device))
        kept = store.load_all(plan.jobs)
        if kept:
            log.info("resuming: %d of %d trace(s) already explained, read from %s",
                     len(kept), len(plan.jobs), store.folder)  # fmt: skip
    todo = [i for i in range(len(plan.jobs)) if i not in kept]
    n_workers = resolve_workers(cfg.workers) if workers is None else workers
    n_workers = max(1, min(n_workers, len(todo)))
    where = f"{n_workers} worker(s) on {device}"
    if cfg.scheduler != "local":
        where = f"the workers of the Dask scheduler at {cfg.scheduler}"
    log.info(
        "explaining %d trace(s) → %d map(s) with %s (max_evals %d, batch %d), %s",
        len(todo),
        len(plan.index),
        cfg.explainer,
        cfg.max_evals,
        cfg.batch_size,
        where,
    )

    def keep(k: int, result: JobResult) -> None:
        if store is not None:
            store.save(plan.jobs[todo[k]], result)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(len(kept) + done, len(kept) + total)

    start = time.perf_counter()
    jobs = [plan.jobs[i] for i in todo]
    fresh = run_jobs(jobs, ckpt, cfg, background, n_workers, device, report, keep) if jobs else []
    seconds = time.perf_counter() - start
    results = dict(kept) | dict(zip(todo, fresh, strict=True))
    maps = _collect(plan, [results[i] for i in range(len(plan.jobs))], cfg, seconds)
    if store is not None:
        store.remove()  # every trace has its maps: nothing left to resume
    return replace(maps, n_resumed=len(kept))
