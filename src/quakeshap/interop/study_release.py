"""Reading the study's released files (``docs/method.md`` §8), zipped or unpacked.

The study's repository and its Zenodo record ship their files as zip archives
(``model_checkpoints.zip``, ``shap_tensors.zip``, ``dset_preprocessed.zip``); a user may
also have unpacked them. :class:`Release` reads either the same way, without unpacking
anything: its entries are listed by their path inside the archive or folder, found by
their file name wherever they sit (the archives' top folder is not known for sure), and
read into memory one at a time. Every failure is a :class:`StudyReleaseError` whose
message names the file (``archive.zip:member`` for an entry of an archive) and the reason.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import TracebackType

from quakeshap.archives import ArchiveError, member_path
from quakeshap.artifacts import ArtifactError
from quakeshap.config import ConfigError

#: the largest entry read into memory (a shap map is 76 KB, a checkpoint about 39 MB)
MAX_ENTRY_BYTES = 1 << 30


class StudyReleaseError(ArtifactError):
    """A file of the study's release is missing, unreadable or not what the study released."""


class Release:
    """A zip archive or a folder of the study's release, read entry by entry.

    Parameters
    ----------
    path
        A ``.zip`` file, or a folder (an unpacked archive).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self.is_zip = not self.path.is_dir()
        if not self.is_zip:
            self.names = sorted(
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            )
            return
        if not self.path.is_file():
            raise StudyReleaseError(f"{self.path}: no such file or folder")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise StudyReleaseError(f"{self.path}: not a readable zip archive ({exc})") from None
        names = []
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            try:
                safe = member_path(info.filename, str(self.path))
            except ArchiveError as exc:
                raise StudyReleaseError(str(exc)) from None
            if safe is None:
                continue
            names.append(safe.as_posix())
            self._members[safe.as_posix()] = info
        self.names = sorted(names)

    def __enter__(self) -> Release:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def where(self, name: str) -> str:
        """How a message names entry ``name``: ``archive.zip:member`` or ``folder/member``."""
        if self.is_zip:
            return f"{self.path}:{name}"
        return str(self.path / name)

    def find(self, file_name: str) -> list[str]:
        """The entries called ``file_name``, wherever they sit, in path order."""
        return [n for n in self.names if PurePosixPath(n).name == file_name]

    def find_one(self, file_name: str, what: str) -> str:
        """The one entry called ``file_name``; a :class:`StudyReleaseError` when there is
        none or more than one (``what`` says what it is, for the message)."""
        found = self.find(file_name)
        if not found:
            raise StudyReleaseError(
                f"{self.path}: no {file_name} ({what}) in it; is this the study's release? "
                f"It holds {len(self.names)} file(s), e.g. {self.names[:5]}"
            )
        if len(found) > 1:
            raise StudyReleaseError(
                f"{self.path}: {len(found)} files called {file_name} ({found[:5]}); "
                "expected one: unpack or zip one release at a time"
            )
        return found[0]

    def read(self, name: str) -> bytes:
        """The bytes of entry ``name`` (a path as listed in :attr:`names`)."""
        if self._zip is None:
            size = (self.path / name).stat().st_size
        else:
            size = self._members[name].file_size
        if size > MAX_ENTRY_BYTES:
            raise StudyReleaseError(
                f"{self.where(name)}: {size} bytes, more than any file of the study's "
                f"release ({MAX_ENTRY_BYTES} at most); refusing to read it"
            )
        try:
            if self._zip is None:
                return (self.path / name).read_bytes()
            return self._zip.read(self._members[name])
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
            # RuntimeError: an encrypted entry; EOFError / BadZipFile: a truncated archive
            raise StudyReleaseError(f"{self.where(name)}: cannot read it ({exc})") from None


def run_command(name: str, work: Callable[[], object]) -> int:
    """Run one import command's ``work``; an expected error (a bad file, bad parameters)
    is logged as one line and becomes exit code 1 instead of a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        work()
    except (ArtifactError, ConfigError) as exc:
        logging.getLogger(name).error("%s", exc)
        return 1
    return 0
