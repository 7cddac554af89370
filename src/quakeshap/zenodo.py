"""Fetch the study's data from Zenodo: list, download, verify, unpack, inventory.

With ``data.source: zenodo`` the ``download`` stage calls :func:`fetch_record`, which

1. reads the record's file listing from the Zenodo REST API,
   ``GET {base_url}/api/records/{record_id}`` (:func:`read_record`);
2. keeps the files whose key matches ``data.zenodo.archive_glob``
   (:func:`select_files`, :func:`fnmatch.fnmatchcase`); when none does, the error lists
   what the record holds, because the archive names inside the record are not known for
   sure;
3. downloads each selected file into a cache folder with ``zenodo_get``'s own per-file
   routine (:func:`download_files`): a cached file whose MD5 already matches the record is
   not fetched again, a failed transfer is retried, a file whose MD5 differs from the
   record's is deleted and reported;
4. unpacks each archive (zip, or tar with any compression) into the target folder,
   keeping the record's layout, ``dset/data/catalogs/<STATION>/...``
   (:func:`quakeshap.archives.extract_archive`); an entry that could land outside the
   target (absolute path, ``..``, symbolic or hard link, device) is refused before anything
   is written;
5. checks that the result holds the station folders later stages read
   (:func:`check_layout`).

The stage then inventories the folder with :func:`quakeshap.manifest.write_manifest` (also
used for the demo data). The target folder is expected to be a temporary one
(:func:`quakeshap.files.atomic_dir`), so that any failure leaves no half-filled
``data/raw/`` behind.

Why not simply ``zenodo_get.download()``: zenodo-get 3.1.0 hard-wires the API root to
https://zenodo.org, changes the working directory and offers no way to tell a failed
transfer from a bad checksum. We read the listing through zenodo_get's configured HTTP
client (same retry and proxy handling) so that the API root is a parameter that tests can
point at a local server, and hand each file to zenodo_get's
``handle_single_file_download``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import logging
import re
import signal
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from loguru import logger as loguru_logger

from quakeshap.archives import ArchiveError, copy_file, extract_archive, is_archive
from quakeshap.config import ZenodoConfig
from quakeshap.manifest import human_size
from quakeshap.record import CATALOG_DIR

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class ZenodoError(RuntimeError):
    """The record could not be listed or fetched, or holds nothing usable."""


class ChecksumError(ZenodoError):
    """A downloaded file's MD5 differs from the one the record lists."""


# --------------------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordFile:
    """One file of a Zenodo record, as the records API lists it."""

    key: str  # file name inside the record, e.g. "dset.zip"
    size: int  # bytes
    md5: str  # lower-case hex digest
    url: str  # download link


@dataclass(frozen=True)
class Record:
    """The parts of a Zenodo record that the download needs."""

    record_id: str
    title: str
    doi: str | None
    files: tuple[RecordFile, ...]


def record_url(cfg: ZenodoConfig) -> str:
    """API address of the record, ``{base_url}/api/records/{record_id}``."""
    return f"{cfg.base_url.rstrip('/')}/api/records/{cfg.record_id}"


def parse_record(data: Any, cfg: ZenodoConfig) -> Record:
    """Validate a records-API answer and keep what the download needs.

    Accepts both file-entry spellings Zenodo has used (``key``/``size`` and the older
    ``filename``/``filesize``); a missing download link is rebuilt from the API root.

    Raises
    ------
    ZenodoError
        The answer is not a record, lists no files, or a file entry lacks its name, size or
        MD5 checksum, or is named like a path.
    """
    where = f"record {cfg.record_id} ({record_url(cfg)})"
    if not isinstance(data, Mapping):
        raise ZenodoError(f"{where}: expected a JSON object, got {type(data).__name__}")
    entries = data.get("files")
    if isinstance(entries, Mapping):  # some API versions nest the list under "entries"
        entries = entries.get("entries")
    if not entries or not isinstance(entries, list):
        raise ZenodoError(
            f"{where} lists no files: it may be restricted or embargoed; open "
            f"{cfg.base_url.rstrip('/')}/records/{cfg.record_id} in a browser to check"
        )
    files = [_parse_file(entry, cfg, where) for entry in entries]
    metadata = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    doi = data.get("doi") or metadata.get("doi")
    return Record(
        record_id=cfg.record_id,
        title=str(metadata.get("title", "")),
        doi=str(doi) if doi else None,
        files=tuple(files),
    )


def _parse_file(entry: Any, cfg: ZenodoConfig, where: str) -> RecordFile:
    if not isinstance(entry, Mapping):
        raise ZenodoError(f"{where}: file entry {entry!r} is not a JSON object")
    key = entry.get("key") or entry.get("filename")
    if not isinstance(key, str) or not key:
        raise ZenodoError(f"{where}: a file entry has no name (key): {dict(entry)!r}")
    if "/" in key or "\\" in key or "\0" in key or key in (".", ".."):
        raise ZenodoError(f"{where}: file name {key!r} is not a plain file name; refusing it")
    size = entry.get("size", entry.get("filesize"))
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ZenodoError(f"{where}: file {key!r} has no valid size ({size!r})")
    checksum = entry.get("checksum")
    algorithm, _, digest = str(checksum).partition(":")
    digest = digest.strip().lower()
    if algorithm.lower() != "md5" or not _MD5_HEX.fullmatch(digest):
        raise ZenodoError(
            f"{where}: file {key!r} has checksum {checksum!r}, expected 'md5:<32 hex digits>'; "
            "without it the download cannot be verified"
        )
    links = entry.get("links") if isinstance(entry.get("links"), Mapping) else {}
    url = (
        links.get("self") or links.get("content") or f"{record_url(cfg)}/files/{quote(key)}/content"
    )
    return RecordFile(key=key, size=size, md5=digest, url=str(url))


def read_record(cfg: ZenodoConfig, *, backoff_s: float = 1.0) -> Record:
    """Fetch and validate the record's listing from the records API.

    Parameters
    ----------
    cfg
        ``data.zenodo``: record id, API root, timeout (s) and retries.
    backoff_s
        Base of the exponential back-off between HTTP retries, in seconds.

    Raises
    ------
    ZenodoError
        The API cannot be reached, answers with an HTTP error (404: no such record), or
        does not answer with a record.
    """
    downloader, _ = _zenodo_get()
    _configure_client(cfg, backoff_s, verbosity=1)
    url = record_url(cfg)
    try:
        response = downloader.get_client().get(
            url, timeout=cfg.timeout_s, headers={"Accept": "application/json"}
        )
        response.raise_for_status()
        data = response.json()
    except httpx2.HTTPStatusError as exc:
        status = exc.response.status_code
        hint = (
            "check data.zenodo.record_id"
            if status in (404, 410)
            else "try again later, or check data.zenodo.base_url"
        )
        raise ZenodoError(
            f"record {cfg.record_id}: HTTP {status} {exc.response.reason_phrase} from {url}; {hint}"
        ) from None
    except httpx2.TimeoutException:
        raise ZenodoError(
            f"record {cfg.record_id}: no answer from {url} within {cfg.timeout_s} s; "
            "try again later or raise data.zenodo.timeout_s"
        ) from None
    except httpx2.RequestError as exc:
        raise ZenodoError(
            f"cannot reach {url}: {exc}. Check the network (or data.zenodo.base_url); "
            "the demo data need none: data.source=demo"
        ) from None
    except ValueError:
        raise ZenodoError(
            f"{url} did not answer with JSON: is data.zenodo.base_url a Zenodo server?"
        ) from None
    record = parse_record(data, cfg)
    log.info(
        "record %s%s: %r, %d file(s)",
        record.record_id,
        f" (doi:{record.doi})" if record.doi else "",
        record.title,
        len(record.files),
    )
    return record


def select_files(record: Record, pattern: str) -> list[RecordFile]:
    """The record's files whose key matches the glob ``pattern``, sorted by key.

    Matching is case-sensitive on every platform (:func:`fnmatch.fnmatchcase`).

    Raises
    ------
    ZenodoError
        Nothing matches; the message lists the record's files and their sizes.
    """
    chosen = sorted(
        (f for f in record.files if fnmatch.fnmatchcase(f.key, pattern)), key=lambda f: f.key
    )
    if not chosen:
        listing = ", ".join(f"{f.key} ({human_size(f.size)})" for f in record.files)
        raise ZenodoError(
            f"data.zenodo.archive_glob {pattern!r} matches none of the {len(record.files)} "
            f"file(s) of record {record.record_id}: {listing}. Set data.zenodo.archive_glob "
            "to one of these names (or a glob such as '*.zip')."
        )
    return chosen


# --------------------------------------------------------------------------------------
# downloading through zenodo_get
# --------------------------------------------------------------------------------------


@functools.cache
def _zenodo_get() -> tuple[types.ModuleType, types.ModuleType]:
    """Import zenodo_get without letting it take over Ctrl+C.

    zenodo-get 3.1.0 installs a SIGINT handler for its command line when the package is
    imported: Ctrl+C would then only set a flag in zenodo_get instead of interrupting the
    stage. The previous handler is put back.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        from zenodo_get import downloader, file_download
    except ValueError as exc:  # signal.signal() outside the main thread
        raise ZenodoError(f"zenodo_get must be imported from the main thread: {exc}") from None
    finally:
        if previous is not None and signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous)
    return downloader, file_download


def _configure_client(cfg: ZenodoConfig, backoff_s: float, verbosity: int) -> None:
    """(Re)build zenodo_get's module-level client: HTTP retries, back-off, proxies from env."""
    downloader, _ = _zenodo_get()
    with _zenodo_get_logs():  # it reports the proxies it found
        downloader.configure_client(
            retry_total=cfg.retries, backoff_factor=backoff_s, verbosity=verbosity
        )


@contextlib.contextmanager
def _zenodo_get_logs() -> Iterator[None]:
    """Forward zenodo_get's loguru messages to :mod:`logging` (``zenodo_get`` logger).

    Its errors arrive as warnings: the error worth showing is the one this module raises.
    """
    target = logging.getLogger("zenodo_get")

    def sink(message: Any) -> None:
        level_no = message.record["level"].no
        level = (
            logging.WARNING
            if level_no >= logging.WARNING
            else logging.INFO
            if level_no >= logging.INFO
            else logging.DEBUG
        )
        target.log(level, "%s", message.record["message"])

    handler = loguru_logger.add(sink, level="DEBUG", filter="zenodo_get", format="{message}")
    try:
        yield
    finally:
        loguru_logger.remove(handler)


class _Transfer:
    """Wraps zenodo_get's download and hash functions to see what happened to one file.

    ``handle_single_file_download`` raises the same bare ``RuntimeError`` for a transfer
    that kept failing and for a bad checksum; this tells them apart and keeps the cause.
    """

    def __init__(self, download_file: Any, check_hash: Any) -> None:
        self._download_file = download_file
        self._check_hash = check_hash
        self.completed = 0
        self.last_error: BaseException | None = None
        self.last_md5: str | None = None

    def download(self, url: str, **kwargs: Any) -> str:
        try:
            name = self._download_file(url, **kwargs)
        except Exception as exc:
            self.last_error = exc
            raise
        self.completed += 1
        return name

    def check(self, filename: str, checksum: str) -> tuple[str, str]:
        expected, actual = self._check_hash(filename, checksum)
        self.last_md5 = actual
        return expected, actual


def download_files(
    cfg: ZenodoConfig,
    files: Sequence[RecordFile],
    cache_dir: Path,
    *,
    verbosity: int = 2,
    backoff_s: float = 1.0,
) -> list[Path]:
    """Download ``files`` into ``cache_dir`` and verify each against the record's MD5.

    A file already in ``cache_dir`` with the right MD5 is kept, not fetched again; one
    with another MD5 (an interrupted download) is fetched again from the start.

    Parameters
    ----------
    cfg
        ``data.zenodo``: timeout (s) and retries (both per HTTP request and per file).
    files
        From :func:`select_files`.
    cache_dir
        Download folder kept between runs, e.g. ``data/.zenodo-cache/<record_id>/``.
    verbosity
        zenodo_get's verbosity: 3 and above draws a progress bar per file.
    backoff_s
        Pause before retrying a failed file, and base of the HTTP retry back-off, in s.

    Returns
    -------
    list of Path
        The verified files, in the order of ``files``.

    Raises
    ------
    ChecksumError
        A completed download has another MD5 than the record lists (the file is deleted).
    ZenodoError
        A transfer still failed after ``cfg.retries`` retries.
    """
    downloader, file_download = _zenodo_get()
    _configure_client(cfg, backoff_s, verbosity)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in files:
        path = cache_dir / item.key
        transfer = _Transfer(downloader.download_file, file_download.check_hash)
        try:
            with _zenodo_get_logs():
                result = _download_one(cfg, item, path, transfer, verbosity, backoff_s)
        except RuntimeError:
            raise _failure(cfg, item, cache_dir, transfer) from None
        if result is not True:  # only reachable if zenodo_get's policies change
            raise ZenodoError(f"{item.key}: zenodo_get did not download it ({result!r})")
        if transfer.completed:
            log.info("%s: downloaded %s, MD5 verified", item.key, human_size(item.size))
        else:
            log.info("%s: cached copy in %s matches the record's MD5", item.key, cache_dir)
        paths.append(path)
    return paths


def _download_one(
    cfg: ZenodoConfig,
    item: RecordFile,
    path: Path,
    transfer: _Transfer,
    verbosity: int,
    backoff_s: float,
) -> object:
    """zenodo_get's own download of one file to ``path``, checked against the record's MD5.

    Returns what ``handle_single_file_download`` returns (True when the file is there and
    verified); raises its ``RuntimeError`` when it is not.
    """
    _, file_download = _zenodo_get()
    file_info = {
        "filename": str(path),  # where zenodo_get writes it
        "key": item.key,
        "size": item.size,
        "checksum": f"md5:{item.md5}",
        "links": {"self": item.url},
    }
    return file_download.handle_single_file_download(
        file_info=file_info,
        record_id=cfg.record_id,
        download_url_base=f"{cfg.base_url.rstrip('/')}/api/records/",
        access_token=None,
        cont_download=True,  # keep a cached file whose MD5 matches
        retry_limit=cfg.retries,
        pause_duration=backoff_s,
        timeout_val=cfg.timeout_s,
        keep_invalid=False,
        error_continues=False,
        verbosity=verbosity,
        exceptions_on_failure=True,
        existing_file_mode=file_download.EXISTING_FILE_OVERWRITE,
        abort_requested=lambda: False,
        download_file_func=transfer.download,
        check_hash_func=transfer.check,
        sleep_func=time.sleep,
    )


def _failure(
    cfg: ZenodoConfig, item: RecordFile, cache_dir: Path, transfer: _Transfer
) -> Exception:
    if transfer.completed:
        return ChecksumError(
            f"{item.key}: MD5 {transfer.last_md5} does not match the record's {item.md5} "
            f"(record {cfg.record_id}, {item.url}); the download was deleted. Re-run to fetch "
            "it again; if it keeps happening, something between you and the server alters it."
        )
    return ZenodoError(
        f"{item.key}: download from {item.url} failed after {cfg.retries + 1} attempt(s): "
        f"{transfer.last_error}. Check the network, or raise data.zenodo.retries / "
        f"timeout_s, and re-run: verified files in {cache_dir} are kept."
    )


def check_layout(root: Path) -> list[str]:
    """The station folders under ``root/dset/data/catalogs/``, sorted.

    Raises
    ------
    ArchiveError
        There are none; the message lists what ``root`` holds instead.
    """
    catalogs = root / CATALOG_DIR
    stations = sorted(p.name for p in catalogs.iterdir() if p.is_dir()) if catalogs.is_dir() else []
    if not stations:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
        raise ArchiveError(
            f"the selected file(s) hold no {CATALOG_DIR.as_posix()}/<STATION>/ folder (the study's "
            f"layout); unpacked top level: {found[:20] or 'nothing'}. Does "
            "data.zenodo.archive_glob select the waveform archive?"
        )
    return stations


def fetch_record(
    cfg: ZenodoConfig,
    target: Path,
    cache_dir: Path,
    *,
    verbosity: int = 2,
    backoff_s: float = 1.0,
) -> list[RecordFile]:
    """List, download, verify and unpack the selected files of the record into ``target``.

    Parameters
    ----------
    cfg
        ``data.zenodo``.
    target
        An empty folder, normally the temporary one of
        :func:`quakeshap.files.atomic_dir` for ``data/raw/``. Archives are unpacked into it;
        any other selected file is copied to its top level.
    cache_dir
        Download folder kept between runs (``data/.zenodo-cache/<record_id>/``).
    verbosity, backoff_s
        See :func:`download_files`.

    Returns
    -------
    list of RecordFile
        The files fetched.
    """
    record = read_record(cfg, backoff_s=backoff_s)
    chosen = select_files(record, cfg.archive_glob)
    paths = download_files(cfg, chosen, cache_dir, verbosity=verbosity, backoff_s=backoff_s)
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if is_archive(path):
            count = extract_archive(path, target)
            log.info("%s: unpacked %d file(s)", path.name, count)
        else:
            copy_file(path, target)
            log.info("%s: not an archive, copied as it is", path.name)
    stations = check_layout(target)
    log.info("station(s) in the record: %s", ", ".join(stations))
    return chosen
