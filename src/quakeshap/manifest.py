"""``MANIFEST.json``: the inventory of ``data/raw/`` (path, size and sha256 of every file).

The ``download`` stage writes it once the folder is complete, for the demo data set and the
Zenodo record alike; the same content always gives the same bytes. The file's name is
:data:`quakeshap.artifacts.raw.MANIFEST_FILE`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from quakeshap.artifacts.raw import MANIFEST_FILE
from quakeshap.files import write_json

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A folder cannot be inventoried (it holds a link or a special file)."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def manifest_entries(root: Path) -> list[dict[str, Any]]:
    """``{path, size, sha256}`` of every file under ``root`` but the manifest itself.

    ``path`` is relative to ``root`` with ``/`` separators; entries are sorted by it and
    ``size`` is in bytes.

    Raises
    ------
    ManifestError
        ``root`` is not a folder, or holds a symbolic link or a special file.
    """
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder, nothing to inventory")
    entries = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ManifestError(f"{path}: raw data must be plain files, not links or special files")
        if path.is_dir() or rel == MANIFEST_FILE:
            continue
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return sorted(entries, key=lambda entry: entry["path"])


def write_manifest(root: Path) -> None:
    """Write ``root``'s manifest (:data:`MANIFEST_FILE`): the sorted :func:`manifest_entries`.

    The same content always gives the same bytes, whatever the file times or the order
    of the directory listing.
    """
    entries = manifest_entries(root)
    write_json(root / MANIFEST_FILE, entries)
    total = sum(entry["size"] for entry in entries)
    log.info("%s: %d file(s), %s", MANIFEST_FILE, len(entries), human_size(total))


def human_size(n_bytes: int) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units, as Zenodo shows sizes)."""
    size, unit = float(n_bytes), "B"
    for larger in ("kB", "MB", "GB", "TB"):
        if round(size, 1) < 1000:
            break
        size, unit = size / 1000, larger
    return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
