"""How a training run uses torch: mixed precision, deterministic kernels, per-fold seeds.

:func:`choose_precision` decides whether the forward pass autocasts (CUDA only);
:func:`deterministic_torch` seeds torch and asks for deterministic kernels inside a block,
leaving the caller's random state as it was; :func:`fold_seed` gives each cross-validation
fold its own seed (``docs/method.md`` §3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast on or off, its dtype, and whether losses are
    scaled (float16 needs a GradScaler, bfloat16 does not)."""

    autocast: bool
    dtype: torch.dtype | None
    grad_scaler: bool


def choose_precision(
    device: torch.device, mixed_precision: bool, bf16_supported: bool | None = None
) -> Precision:
    """Mixed precision on CUDA only: bfloat16 where the GPU has it, else float16 with
    loss scaling. On the CPU training stays in float32 (autocast there is slower on most
    CPUs and changes the numbers)."""
    if device.type != "cuda" or not mixed_precision:
        return Precision(autocast=False, dtype=None, grad_scaler=False)
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    if bf16_supported:
        return Precision(autocast=True, dtype=torch.bfloat16, grad_scaler=False)
    return Precision(autocast=True, dtype=torch.float16, grad_scaler=True)


@contextlib.contextmanager
def deterministic_torch(seed: int, device: torch.device, num_threads: int | None) -> Iterator[None]:
    """Seed torch and make its kernels deterministic inside the block, then restore.

    The global RNG state is forked (``torch.random.fork_rng``) so that training leaves the
    caller's random state as it found it. On CUDA, cuDNN autotuning is off and
    deterministic kernels are requested (cuBLAS additionally needs
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment, which the train stage sets).
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            torch.manual_seed(seed)
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            if num_threads is not None:
                torch.set_num_threads(num_threads)
            yield
        finally:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
            torch.backends.cudnn.deterministic = saved[2]
            torch.backends.cudnn.benchmark = saved[3]
            torch.set_num_threads(saved[4])


def fold_seed(seed: int, fold: int) -> int:
    """An independent seed per fold, so that a fold's weights do not depend on the others."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1, dtype=np.uint64)[0] >> 1)
