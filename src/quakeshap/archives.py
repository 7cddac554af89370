"""Unpack a downloaded archive (zip, or tar with any compression) safely.

Every entry of an archive is checked before anything is written: an entry that could land
outside the target folder (absolute path, ``..``, symbolic or hard link, device) is refused,
as is one that would overwrite a file already unpacked. The ``download`` stage unpacks the
Zenodo record's files with it (:func:`quakeshap.zenodo.fetch_record`).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_COPY_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive is corrupt, unsafe to unpack, or lacks the expected layout."""


def is_archive(path: Path) -> bool:
    """Whether :func:`extract_archive` unpacks ``path`` (by its name: zip or tar)."""
    name = path.name.lower()
    return name.endswith(".zip") or name.endswith(_TAR_SUFFIXES)


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The safe relative path of archive entry ``name``, or None for the archive root.

    Backslashes count as separators (archives zipped on Windows use them).

    Raises
    ------
    ArchiveError
        ``name`` is absolute (``/x``, ``C:/x``, ``\\\\server\\x``), climbs out with ``..``,
        or holds a NUL byte.
    """
    text = name.replace("\\", "/")
    if "\0" in text:
        raise ArchiveError(f"{archive}: entry {name!r} holds a NUL byte; refusing the archive")
    if text.startswith("/") or PureWindowsPath(text).drive:
        raise ArchiveError(
            f"{archive}: entry {name!r} is an absolute path; refusing to unpack the archive"
        )
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(
            f"{archive}: entry {name!r} would land outside the target folder ('..'); "
            "refusing to unpack the archive"
        )
    return PurePosixPath(*parts) if parts else None


def extract_archive(archive: Path, target: Path) -> int:
    """Unpack a zip or tar archive into ``target``, keeping its layout.

    Every entry is checked before anything is written: absolute paths, ``..``, symbolic
    and hard links and special files are refused, as is an entry that would overwrite a
    file already unpacked (from this or an earlier archive). Files are written with the
    process's default permissions; owners, modes and times in the archive are ignored.

    Returns
    -------
    int
        Number of files written.

    Raises
    ------
    ArchiveError
        The archive is corrupt, encrypted, or holds an unsafe entry.
    """
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            return _extract_zip(archive, target)
        if name.endswith(_TAR_SUFFIXES):
            return _extract_tar(archive, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(
            f"{archive.name}: corrupt archive ({exc}); delete {archive} and re-run"
        ) from None
    raise ArchiveError(f"{archive.name}: not a zip or tar archive (by its name)")


def _extract_zip(archive: Path, target: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        plan: list[tuple[PurePosixPath, zipfile.ZipInfo | None]] = []
        for info in zf.infolist():
            rel = member_path(info.filename, archive.name)
            if rel is None:
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when zipped on Windows
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(
                    f"{archive.name}: entry {info.filename!r} is a "
                    f"{'symbolic link' if kind == stat.S_IFLNK else 'special file'}; "
                    "refusing to unpack the archive"
                )
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{archive.name}: entry {info.filename!r} is encrypted")
            plan.append((rel, None if info.is_dir() else info))
        count = 0
        for rel, info in plan:
            dest = _destination(target, rel, archive.name)
            if info is None:
                dest.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:  # zipfile checks each entry's CRC-32 as it reads
                _write_new(src, dest, archive.name, rel)
            count += 1
    return count


def _extract_tar(archive: Path, target: Path) -> int:
    with tarfile.open(archive, mode="r:*") as tf:
        plan: list[tuple[PurePosixPath, tarfile.TarInfo]] = []
        for member in tf.getmembers():
            rel = member_path(member.name, archive.name)
            if rel is None:
                continue
            if not (member.isfile() or member.isdir()):
                what = (
                    "symbolic link"
                    if member.issym()
                    else "hard link"
                    if member.islnk()
                    else "special file"
                )
                raise ArchiveError(
                    f"{archive.name}: entry {member.name!r} is a {what}; "
                    "refusing to unpack the archive"
                )
            plan.append((rel, member))
        count = 0
        for rel, member in plan:
            dest = _destination(target, rel, archive.name)
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - isfile() members always have data
                raise ArchiveError(f"{archive.name}: entry {member.name!r} has no data")
            with src:
                _write_new(src, dest, archive.name, rel)
            count += 1
    return count


def _destination(target: Path, rel: PurePosixPath, archive: str) -> Path:
    dest = target.joinpath(*rel.parts)
    # belt and braces: nothing in target may redirect the path elsewhere
    if not dest.resolve().is_relative_to(target.resolve()):
        raise ArchiveError(f"{archive}: entry {rel} would land outside {target}")
    return dest


def _write_new(src: BinaryIO, dest: Path, archive: str, rel: PurePosixPath) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "xb") as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
    except FileExistsError:
        raise ArchiveError(
            f"{archive}: entry {rel} is already there (listed twice, or also in another "
            "selected file); narrow data.zenodo.archive_glob"
        ) from None
    except (NotADirectoryError, IsADirectoryError):
        raise ArchiveError(f"{archive}: entry {rel} clashes with a file or folder") from None


def copy_file(path: Path, target: Path) -> None:
    """Copy a file that is not an archive to the top level of ``target``, as it is.

    Raises
    ------
    ArchiveError
        ``target`` already holds a file of that name.
    """
    with open(path, "rb") as src:
        _write_new(src, target / path.name, path.name, PurePosixPath(path.name))
