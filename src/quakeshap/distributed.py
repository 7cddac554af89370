"""Training on several processes under ``torchrun``: DistributedDataParallel within a fold.

``python -m quakeshap.stages.train`` is one process. Under ``torchrun --nproc-per-node N -m
quakeshap.stages.train`` every process (rank) runs the same stage; :func:`world_from_env`
reads the variables torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) into a
:class:`World`, and :func:`process_group` joins the ranks (gloo on the CPU, NCCL on CUDA with
one GPU per local rank).

How the work is shared (``docs/cluster.md`` says why): the folds run one after another, as
in one process, and each fold is data-parallel across the ranks. Every rank draws the same
folds, the same initial weights and the same epoch order (all from ``train.seed``), takes
its share of each epoch's order as ``torch.utils.data.DistributedSampler`` does
(:meth:`World.shard`) and trains on it in batches of ``train.batch_size``; the gradients
are averaged across ranks, so one optimiser step sees ``N x batch_size`` traces. The
validation fold is shared out the same way and its sums added up, so every rank takes the
same early-stopping decision and chooses the same fold. Only rank 0 writes.

:func:`check_world_fits` refuses, before any training, more ranks than the training set
allows: a rank whose share of a fold would hold less than one batch.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from quakeshap.model import DeviceError, resolve_device
from quakeshap.training_data import TrainingError

#: the variables torchrun sets for every process it starts
ENV_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` ranks of a torchrun job."""

    rank: int
    local_rank: int
    size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, draws progress bars and writes the outputs."""
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's share of an epoch's ``order`` (``(n,)`` row indices), as
        ``DistributedSampler(drop_last=False)`` takes it: the order is padded at its end
        with its own first entries to a multiple of ``size``, and rank ``r`` takes every
        ``size``-th entry from position ``r``. Every rank gets ``ceil(n / size)`` rows."""
        total = shard_length(len(order), self.size) * self.size
        padded = torch.cat([order, order[: total - len(order)]]) if total > len(order) else order
        return padded[self.rank :: self.size]

    def split(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of ``index`` without padding (validation: each row once)."""
        return index[self.rank :: self.size]

    def all_sum(self, values: Sequence[float | torch.Tensor]) -> list[float]:
        """``values`` summed over the ranks (in float64), the same numbers on every rank."""
        import torch.distributed as dist

        device = _collective_device()
        totals = torch.stack(
            [
                torch.as_tensor(v, dtype=torch.float64).detach().reshape(()).to(device)
                for v in values
            ]
        )
        dist.all_reduce(totals)
        # rank 0's numbers, bit for bit, whatever the reduction order was elsewhere
        dist.broadcast(totals, src=0)
        return [float(t) for t in totals.cpu()]

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm running statistics): DDP sends them
        before each forward pass, so after an epoch's last step they differ by one update."""
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged across the ranks)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_from_env(environ: Mapping[str, str] | None = None) -> World | None:
    """The torchrun job this process belongs to; None when it runs alone (no
    ``WORLD_SIZE``, or ``WORLD_SIZE=1``: the single-process training, unchanged)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        size, rank, local = (int(env.get(key, "0")) for key in ENV_KEYS)
    except ValueError:
        found = {key: env.get(key) for key in ENV_KEYS}
        raise TrainingError(
            f"torchrun's variables {found} are not integers; start the stage with "
            "`torchrun --nproc-per-node N -m quakeshap.stages.train` or without them"
        ) from None
    if not (size >= 1 and 0 <= rank < size and local >= 0):
        raise TrainingError(
            f"WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local} do not describe a torchrun "
            "job (0 <= RANK < WORLD_SIZE); start the stage with torchrun or without them"
        )
    return None if size == 1 else World(rank=rank, local_rank=local, size=size)


def shard_length(n: int, size: int) -> int:
    """Rows per rank when ``n`` rows are shared out over ``size`` ranks (with padding)."""
    return math.ceil(n / size)


def max_ranks(n_train: int, batch_size: int) -> int:
    """The most ranks among which ``n_train`` rows leave every rank a whole batch."""
    return max(1, n_train // batch_size)


def check_world_fits(world: World, fold_train_sizes: Sequence[int], batch_size: int) -> None:
    """Refuse ``world`` when a rank's share of some fold's train rows would be empty or
    hold less than one batch of ``batch_size``.

    Raises
    ------
    TrainingError
        One line naming the fold, the share and the most ranks the data allow.
    """
    smallest = int(min(fold_train_sizes))
    fold = int(np.argmin(fold_train_sizes)) + 1
    share = smallest // world.size  # the unpadded share of the last rank
    if share < batch_size:
        most = max_ranks(smallest, batch_size)
        raise TrainingError(
            f"{world.size} ranks are too many for this training set: fold {fold} trains on "
            f"{smallest} traces, {share} per rank, less than one batch of "
            f"train.batch_size = {batch_size}; run at most {most} rank(s) "
            f"(torchrun --nproc-per-node {most}) or lower train.batch_size"
        )


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's dropout masks, from a fold's seed (rank 0 keeps ``seed``)."""
    if rank == 0:
        return seed
    state = np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> 1)


def training_device(world: World, device: str) -> torch.device:
    """The device of ``world``'s rank for the ``train.device`` parameter ``device``: CUDA
    device ``LOCAL_RANK`` (one GPU per rank on a node) or the CPU."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return resolved
    visible = torch.cuda.device_count()
    if world.local_rank >= visible:
        raise DeviceError(
            f"rank {world.rank} has LOCAL_RANK {world.local_rank} but this node shows "
            f"{visible} GPU(s): start at most {visible} process(es) per node "
            "(torchrun --nproc-per-node), or set train.device: cpu"
        )
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(world: World | None, device: str) -> Iterator[torch.device | None]:
    """Join ``world``'s ranks for the block and yield this rank's training device (None,
    and nothing done, when ``world`` is None). gloo on the CPU, NCCL on CUDA; the group is
    left again however the block ends."""
    if world is None:
        yield None
        return
    import torch.distributed as dist

    where = training_device(world, device)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(
        backend="nccl" if where.type == "cuda" else "gloo",
        rank=world.rank,
        world_size=world.size,
        device_id=where if where.type == "cuda" else None,
    )
    try:
        yield where
    finally:
        dist.destroy_process_group()
