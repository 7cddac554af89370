"""Atomic, deterministic writes.

Every output of a stage is written to a temporary sibling and renamed into place only when
it is complete, so that a failure never leaves a half-written file that DVC could cache as
good. Writers avoid embedded timestamps (JSON is sorted and newline-terminated, PNG files
carry no date, HDF5 datasets are written without times) so that the same inputs and
parameters give byte-identical artefacts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes 0600 files; outputs get the permissions an ordinary write would give
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``path`` only if the block succeeds.

    The temporary file keeps ``path``'s suffix so that libraries which infer a format from
    the name (``numpy.save``, matplotlib) behave the same.
    """
    path = Path(path)
    tmp = _tmp_sibling(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces directory ``path`` only if the block succeeds.

    An existing ``path`` is removed only after the new content is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_outputs(*paths: str | Path) -> None:
    """Delete stale outputs (files or folders) before a stage writes new ones."""
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Sorted-key, indented JSON with a trailing newline (stable bytes for DVC)."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=True, allow_nan=False)
    write_text(path, text + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """CSV without the index, floats in full precision, ``\\n`` line ends."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    write_text(path, buffer.getvalue())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """``numpy.save`` through a temporary file (the .npy header has no timestamp)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


class NpyRowWriter:
    """Append rows to a ``.npy`` file whose final length is known only at the end.

    The file gets the header of ``max_rows`` rows first, then the rows as they come, then
    the header of the rows written: the same bytes as ``numpy.save`` of the whole array
    (numpy pads the header so that the first dimension can grow in place), without
    holding the array in memory or copying the file. Not atomic by itself: write inside
    :func:`atomic_dir` or :func:`atomic_path`, which discard the file when anything fails.
    """

    def __init__(
        self, path: Path, row_shape: tuple[int, ...], dtype: type[np.generic], max_rows: int
    ) -> None:
        self.path, self.row_shape, self.dtype = path, row_shape, np.dtype(dtype)
        self.n_rows = 0
        self._file = open(path, "wb")
        self._header_size = self._file.write(self._header(max_rows))

    def _header(self, n_rows: int) -> bytes:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (n_rows, *self.row_shape),
            },
        )
        return header.getvalue()

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.row_shape or rows.dtype != self.dtype:
            raise ValueError(f"rows {rows.shape} {rows.dtype} do not fit {self.path}")
        self._file.write(np.ascontiguousarray(rows).data)
        self.n_rows += len(rows)

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                header = self._header(self.n_rows)
                if len(header) != self._header_size:  # not with numpy's growth padding
                    raise RuntimeError(f"{self.path}: the .npy header changed size")
                self._file.seek(0)
                self._file.write(header)
        finally:
            self._file.close()


def save_figure(fig: Any, path: str | Path, dpi: int) -> None:
    """Save a matplotlib figure as PNG with no date or software stamp in its metadata."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
