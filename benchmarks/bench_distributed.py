"""Benchmark 7: beyond one machine: SHAP maps on Dask, training under torchrun.

The same demo spectrograms and the same briefly trained CNN2D as ``bench_shap``:

reference
    :func:`quakeshap.explain.explain_selection` with ``shap.scheduler`` the address of a
    Dask ``LocalCluster`` of 1 worker process (one thread).
quakeshap
    The same with 2 worker processes. Throughput is traces per second, steady (from each
    worker's first result on, :func:`benchmarks.bench_shap.steady_throughput`) after an
    untimed warm-up on each cluster; scaling efficiency = throughput with 2 workers / (2 x
    throughput with 1). The maps are compared with those of the local path (in this
    process), value for value.

The training side compares test accuracy, not speed: the demo's recipe (``train`` of
``params.yaml``, on the CPU) in one process, and under ``torchrun --nproc-per-node 2``
(gloo, one thread per rank) with ``train.batch_size`` 32 per rank (64 per optimiser step)
and 16 per rank (32 per step, the one-process batch); each model is scored on the same
held-out test rows (``docs/cluster.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import _common as common
from benchmarks._data import demo_images, in_memory_set, selection_frame, trained_checkpoint
from benchmarks.bench_shap import per_trace_seconds, steady_throughput
from quakeshap.artifacts.spectrograms import SpectrogramSet
from quakeshap.config import FaithfulnessConfig, ShapConfig, TrainConfig
from quakeshap.explain import explain_selection
from quakeshap.model import model_from_checkpoint

log = logging.getLogger("benchmarks.distributed")

NAME = "distributed"
TARGET = (
    "Dask explain scaling efficiency 1 -> 2 workers >= 0.8 with the local path's maps bit for "
    "bit; 2 DDP gloo ranks within 0.05 test accuracy of one process"
)


@dataclass(frozen=True)
class Plan:
    n_traces: int  # explained on each cluster
    max_evals: int
    n_images: int  # distinct demo images: training set and SHAP traces
    n_folds: int
    max_epochs: int
    batch_size: int  # one process's; DDP runs it per rank and halved per rank


FULL = Plan(n_traces=8, max_evals=1000, n_images=400, n_folds=4, max_epochs=10, batch_size=32)
SMOKE = Plan(n_traces=2, max_evals=120, n_images=80, n_folds=2, max_epochs=1, batch_size=8)
#: evaluations per trace of the untimed warm-up (imports, numba's compiling in each worker)
WARMUP_EVALS = 60


def demo_set(n_images: int) -> SpectrogramSet:
    """``n_images`` distinct demo spectrograms in a seeded order (the test split, the last
    20 %, then holds both classes)."""
    images, labels = demo_images(n_images, n_pool=n_images)
    order = np.random.default_rng(0).permutation(n_images)
    return in_memory_set(images[order], labels[order])


def train_cfg(plan: Plan, batch_size: int, num_threads: int | None) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), device="cpu", n_folds=plan.n_folds,
                               max_epochs=plan.max_epochs, batch_size=batch_size,
                               num_threads=num_threads)  # fmt: skip


def test_accuracy(sset: SpectrogramSet, ckpt: dict[str, Any]) -> float:
    """Accuracy of the checkpoint's model on the set's test split."""
    from quakeshap.evaluation import predict_logits

    test = sset.metadata["split"].to_numpy() == "test"
    model = model_from_checkpoint(ckpt, input_shape=sset.image_shape)
    predicted = predict_logits(model, sset.images[test], torch.device("cpu")).argmax(axis=1)
    return float((predicted == sset.labels()[test]).mean())


# --------------------------------------------------------------------------------------
# training: one process, and one rank of a torchrun job
# --------------------------------------------------------------------------------------


def rank_worker(args: argparse.Namespace) -> int:
    """One rank of ``torchrun ... -m benchmarks.bench_distributed --rank-worker OUT``:
    trains data-parallel; rank 0 writes the test accuracy and the wall time to OUT."""
    from quakeshap import distributed
    from quakeshap.training import train_model

    plan = SMOKE if args.smoke else FULL
    world = distributed.world_from_env()
    if world is None:
        raise common.BenchmarkError("--rank-worker runs under torchrun only")
    sset = demo_set(plan.n_images)
    cfg = train_cfg(plan, args.batch_size, num_threads=1)
    with distributed.process_group(world, cfg.device) as device:
        started = time.perf_counter()
        trained = train_model(sset, cfg, device=device, world=world)
        seconds = time.perf_counter() - started
    if world.is_main:
        result = {"test_accuracy": test_accuracy(sset, trained.model), "seconds": seconds,
                  "epochs_run": trained.metrics["epochs_run"],
                  "world_size": world.size}  # fmt: skip
        Path(args.rank_worker).write_text(json.dumps(result))
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_training(plan_args: list[str], batch_size: int, out: Path) -> dict[str, Any]:
    """Train under ``torchrun --nproc-per-node 2`` (gloo); what rank 0 reported."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "benchmarks.bench_distributed", "--rank-worker", str(out),
        "--batch-size", str(batch_size), *plan_args,
    ]  # fmt: skip
    env = common.python_env({"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    common.check_process(common.run_process(command, cwd=common.REPO_ROOT, env=env),
                         f"torchrun training (batch {batch_size} per rank)")  # fmt: skip
    return json.loads(out.read_text())


def training_accuracy(plan: Plan, smoke: bool, workdir: Path) -> dict[str, Any]:
    """Test accuracy of one process and of 2 gloo ranks (two batch sizes per rank)."""
    from quakeshap.training import train_model

    sset = demo_set(plan.n_images)
    started = time.perf_counter()
    trained = train_model(sset, train_cfg(plan, plan.batch_size, num_threads=None))
    one = {"test_accuracy": test_accuracy(sset, trained.model),
           "seconds": time.perf_counter() - started,
           "epochs_run": trained.metrics["epochs_run"], "world_size": 1}  # fmt: skip
    plan_args = ["--smoke"] if smoke else []
    per_rank = {}
    for batch in (plan.batch_size, plan.batch_size // 2):
        per_rank[batch] = torchrun_training(plan_args, batch, workdir / f"ddp_{batch}.json")
    return {"one_process": one, "ddp_2_ranks_by_batch_per_rank": per_rank,
            "n_test": int((sset.metadata["split"] == "test").sum())}  # fmt: skip


# --------------------------------------------------------------------------------------
# SHAP maps on Dask
# --------------------------------------------------------------------------------------


def dask_throughput(n_workers: int, explain: Any) -> tuple[dict[str, Any], Any]:
    """Steady throughput of ``explain(shap_changes, progress, n_first_traces)`` on a
    LocalCluster of ``n_workers`` processes, after a warm-up on as many traces as workers;
    and the timed run's maps."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    try:
        address = cluster.scheduler_address
        explain({"scheduler": address, "max_evals": WARMUP_EVALS}, None, n_workers)
        stamps, maps = per_trace_seconds(lambda p: explain({"scheduler": address}, p, None))
    finally:
        cluster.close()
    throughput, startup = steady_throughput(stamps, n_workers)
    return {"throughput": throughput, "first_results_s": startup, "stamps": stamps}, maps


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = SMOKE if args.smoke else FULL
    sset = demo_set(plan.n_images)
    ckpt = trained_checkpoint(sset, epochs=1 if args.smoke else 2)
    model = model_from_checkpoint(ckpt)
    test = np.flatnonzero(sset.metadata["split"].to_numpy() == "test")[: plan.n_traces]
    with torch.no_grad():
        predicted = model(torch.from_numpy(sset.as_float(test))).numpy().argmax(axis=1)
    selection = selection_frame(sset, test, predicted)
    cfg = dataclasses.replace(ShapConfig(), max_evals=plan.max_evals, device="cpu",
                              faithfulness=FaithfulnessConfig(enabled=False))  # fmt: skip

    def explain(changes: dict[str, Any], progress: Any, n_first: int | None) -> Any:
        rows = selection if n_first is None else selection.iloc[:n_first]
        return explain_selection(sset, rows, ckpt, dataclasses.replace(cfg, **changes),
                                 workers=1, progress=progress)  # fmt: skip

    local = explain({}, None, None)
    one, one_maps = dask_throughput(1, explain)
    two, two_maps = dask_throughput(2, explain)
    difference = max(
        float(np.abs(maps.values - local.values).max()) for maps in (one_maps, two_maps)
    )
    reference = common.summarize([one["throughput"]], "traces/s", "higher", workers=1)
    quakeshap = common.summarize([two["throughput"]], "traces/s", "higher", workers=2)
    efficiency = two["throughput"] / (2 * one["throughput"])

    with common.scratch_dir(args.workdir, NAME) as workdir:
        training = training_accuracy(plan, args.smoke, workdir)
    single = training["one_process"]["test_accuracy"]
    ddp = training["ddp_2_ranks_by_batch_per_rank"]
    checks = [
        common.Check("dask_scaling_efficiency", efficiency, ">=", 0.8,
                     "Dask explain: throughput with 2 workers / (2 x throughput with 1)"),
        common.Check("dask_max_abs_difference_vs_local", difference, "<=", 0.0,
                     "largest difference between the Dask workers' maps and the local path's"),
        common.Check("ddp_test_accuracy_drop", single - ddp[plan.batch_size]["test_accuracy"],
                     "<=", 0.05,
                     f"test accuracy: one process - 2 gloo ranks ({plan.batch_size} per rank)"),
    ]  # fmt: skip
    details = {
        "n_traces": len(test),
        "max_evals": plan.max_evals,
        "dask_1_worker": one,
        "dask_2_workers": two,
        "training": training,
        "train_settings": {"n_images": plan.n_images, "n_folds": plan.n_folds,
                           "max_epochs": plan.max_epochs, "batch_size": plan.batch_size},
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "notes": (
            "Dask workers: LocalCluster processes with one thread each, on this machine's "
            "cores, next to the benchmark's own process; the local maps come from this "
            "process with one thread. DDP ranks: one thread each (OMP_NUM_THREADS=1); the "
            "one-process training uses torch's default threads; their times are not "
            "compared."
        ),
    }  # fmt: skip
    return common.make_result(NAME, args, reference, quakeshap, TARGET, checks, details)


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument("--rank-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main() -> int:
    parser = build_parser()
    if "--rank-worker" in sys.argv:
        common.configure_logging()
        return rank_worker(parser.parse_args())
    return common.main_wrapper(run, parser)


if __name__ == "__main__":
    sys.exit(main())
