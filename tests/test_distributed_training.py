"""Training under torchrun (DistributedDataParallel, gloo on the CPU): the ranks' shares of
an epoch, the refusal of too many ranks, and the train stage run by a real
``torchrun --nproc-per-node 2``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from quakeshap.artifacts import checkpoint, metrics
from quakeshap.distributed import World, check_world_fits, max_ranks, world_from_env
from quakeshap.evaluation import predict_logits
from quakeshap.model import model_from_checkpoint
from quakeshap.training_data import TrainingError
from tests.fixtures import make_spectrogram_set, write_params, write_spectrogram_set

# --------------------------------------------------------------------------------------
# the pieces, in this process
# --------------------------------------------------------------------------------------


def test_the_world_comes_from_torchruns_variables():
    assert world_from_env({}) is None  # not under torchrun: one process, as ever
    assert world_from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    assert world_from_env(env) == World(rank=3, local_rank=1, size=4)
    with pytest.raises(TrainingError, match="not integers"):
        world_from_env({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"})
    with pytest.raises(TrainingError, match="RANK=2"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


@pytest.mark.parametrize(("n", "size"), [(10, 2), (11, 2), (7, 3), (5, 4)])
def test_each_rank_takes_what_distributed_sampler_gives_it(n, size):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n)) + 100
    shards = [World(rank=r, local_rank=r, size=size).shard(order) for r in range(size)]
    for rank, shard in enumerate(shards):
        sampler = DistributedSampler(range(n), num_replicas=size, rank=rank, shuffle=False)
        assert shard.tolist() == [int(order[i]) for i in sampler]
    # equal shares (every rank takes the same number of steps) that cover the epoch
    assert {len(s) for s in shards} == {-(-n // size)}
    assert set(torch.cat(shards).tolist()) == set(order.tolist())
    # validation: each row exactly once
    parts = [World(rank=r, local_rank=r, size=size).split(order) for r in range(size)]
    assert sorted(torch.cat(parts).tolist()) == sorted(order.tolist())


def test_too_many_ranks_for_the_folds_are_refused_naming_the_most_allowed():
    sizes, batch = [45, 44, 44], 8  # fold 2 is the smallest
    most = max_ranks(44, batch)
    assert most == 5
    check_world_fits(World(0, 0, most), sizes, batch)  # 44 // 5 = 8 rows: one batch each
    with pytest.raises(TrainingError) as refused:
        check_world_fits(World(0, 0, most + 1), sizes, batch)
    message = str(refused.value)
    assert "\n" not in message
    assert "6 ranks are too many" in message and "fold 2 trains on 44 traces, 7 per rank" in message
    assert "--nproc-per-node 5" in message


# --------------------------------------------------------------------------------------
# the stage under a real torchrun
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: where the stage writes, under a project's root: the metrics and history files by name
OUT = Path("out")
TRAIN_JSON, HISTORY_CSV = metrics.PATHS["train"].name, metrics.HISTORY_PATH.name


def _torchrun(root: Path, nproc: int, out: Path = OUT) -> subprocess.CompletedProcess:
    out = root / out
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "quakeshap.stages.train",
        "--params", str(root / "params.yaml"), "--spectrograms", str(root / "spectrograms"),
        "--models", str(out / "models"), "--metrics", str(out / TRAIN_JSON),
        "--history", str(out / HISTORY_CSV),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def project(tmp_path, rng):
    """A separable toy set (60 pre, 60 post; 2 folds of ~44 balanced train traces)."""
    sset = make_spectrogram_set(rng, 60, 60)
    write_spectrogram_set(tmp_path / "spectrograms", sset)
    return tmp_path, sset


def _params(root: Path, **train) -> None:
    base = dict(num_threads=1, n_folds=2, max_epochs=3, patience=2, batch_size=8, device="cpu")
    write_params(root, train={**base, **train})


def test_two_gloo_ranks_train_one_model_that_rank_0_writes(project):
    root, sset = project
    _params(root)
    done = _torchrun(root, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    out = root / OUT
    folds = sorted(p.name for p in (out / "models" / checkpoint.FOLDS_DIR.name).iterdir())
    assert folds == [checkpoint.fold_file(1), checkpoint.fold_file(2)]
    # nothing beside the outputs: no temporary file of a second writer
    assert sorted(p.name for p in out.iterdir()) == sorted([HISTORY_CSV, "models", TRAIN_JSON])
    ckpt = checkpoint.load(out / "models" / checkpoint.PATH.name)
    assert set(checkpoint.KEYS) <= set(ckpt) and "world_size" not in ckpt  # format unchanged
    model = model_from_checkpoint(ckpt, input_shape=sset.image_shape)
    test = np.isin(sset.metadata["trace_name"], ckpt["test_traces"])
    assert test.sum() >= 15
    predicted = predict_logits(model, sset.images[test], torch.device("cpu")).argmax(axis=1)
    accuracy = float((predicted == sset.labels()[test]).mean())
    assert accuracy >= 0.9, accuracy  # the set is separable; one process scores 1.0
    scores = metrics.load(out / TRAIN_JSON, "train")
    assert scores["world_size"] == 2
    assert scores["folds"]["1"]["n_train"] + scores["folds"]["1"]["n_val"] == scores["n_balanced"]
    history = metrics.load_history(out / HISTORY_CSV)
    assert set(history["fold"]) == {1, 2} and (history["train_loss"] > 0).all()
    # one rank logs: the chosen model is announced once
    assert done.stderr.count("model = fold") == 1
    # the same job again gives the same bytes (gloo on one machine)
    again = _torchrun(root, 2, out=Path("again"))
    assert again.returncode == 0, again.stderr[-3000:]
    for name in (checkpoint.PATH.name, f"{checkpoint.FOLDS_DIR.name}/{checkpoint.fold_file(2)}"):
        first, second = out / "models" / name, root / "again" / "models" / name
        assert second.read_bytes() == first.read_bytes(), name


def test_too_many_ranks_fail_on_every_rank_in_one_line_and_write_nothing(project):
    root, _ = project
    _params(root, batch_size=32)  # ~44 train traces per fold: 22 per rank, less than a batch
    done = _torchrun(root, 2)
    assert done.returncode == 1
    refusals = [line for line in done.stderr.splitlines() if "2 ranks are too many" in line]
    assert len(refusals) == 2, done.stderr[-3000:]  # once per rank
    assert all(line.startswith("ERROR quakeshap.stages.train:") for line in refusals)
    assert "run at most 1 rank(s)" in refusals[0]
    assert "fold 1/2:" not in done.stderr  # refused before any fold trained
    assert not (root / OUT).exists()
