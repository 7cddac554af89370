"""A local stand-in for the Zenodo records API, for tests that fetch over real HTTP.

It answers the two requests :mod:`quakeshap.zenodo` (through zenodo_get) makes:

- ``GET /api/records/<id>``: the record as JSON, in the shape of zenodo.org's answer
  (``metadata.title``, ``doi``, ``files[].key/size/checksum="md5:…"/links.self``);
- ``GET /api/records/<id>/files/<key>/content``: the file's bytes.

It can misbehave on purpose: advertise a wrong checksum, or drop the connection part-way
through a file a given number of times. Every request is recorded::

    with ZenodoServer() as server:
        server.add_record("123", {"dset.zip": zip_folder(raw_root)})
        cfg = ZenodoConfig(record_id="123", base_url=server.base_url, ...)
        ...
        assert server.downloads("123", "dset.zip") == 1

The helpers at the bottom build deterministic archives, among them one of a tiny demo data
set in the raw layout of the real record (``dset/data/catalogs/NRCA/...``).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

#: a fixed time stamp for zip entries, so that the same files give the same archive
ZIP_DATE_TIME = (2016, 10, 30, 6, 40, 16)

_RECORD = re.compile(r"^/api/records/(?P<id>[^/]+)$")
_CONTENT = re.compile(r"^/api/records/(?P<id>[^/]+)/files/(?P<key>[^/]+)/content$")


@dataclass
class _File:
    content: bytes
    checksum: str  # as advertised: "md5:<hex>"
    drops_left: int = 0  # connections still to drop part-way
    drop_after_bytes: int = 0


@dataclass
class _Record:
    title: str
    files: dict[str, _File] = field(default_factory=dict)


class ZenodoServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving fake Zenodo records."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()
        self.requests: list[str] = []  # request paths, in order
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.zenodo = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # ---- life cycle -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ZenodoServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ZenodoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- content ----------------------------------------------------------------------

    def add_record(
        self, record_id: str, files: Mapping[str, bytes], title: str = "test record"
    ) -> None:
        """Serve a record whose files are ``{key: content}``, with their true MD5s."""
        with self._lock:
            self._records[str(record_id)] = _Record(
                title=title,
                files={
                    key: _File(content, "md5:" + hashlib.md5(content).hexdigest())
                    for key, content in files.items()
                },
            )

    def advertise_checksum(self, record_id: str, key: str, checksum: str) -> None:
        """List ``checksum`` for the file instead of its true MD5 (a corrupted transfer)."""
        with self._lock:
            self._records[record_id].files[key].checksum = checksum

    def drop_connection(self, record_id: str, key: str, after_bytes: int, times: int = 1) -> None:
        """Cut the next ``times`` downloads of the file after ``after_bytes`` bytes."""
        with self._lock:
            served = self._records[record_id].files[key]
            served.drops_left = times
            served.drop_after_bytes = after_bytes

    def downloads(self, record_id: str, key: str) -> int:
        """How many times the file's content was requested (completed or not)."""
        path = f"/api/records/{record_id}/files/{quote(key)}/content"
        with self._lock:
            return sum(1 for p in self.requests if p == path)

    def record_json(self, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(record_id)
            if record is None:
                return None
            files = [
                {
                    "id": hashlib.sha1(f"{record_id}/{key}".encode()).hexdigest(),
                    "key": key,
                    "size": len(served.content),
                    "checksum": served.checksum,
                    "links": {
                        "self": f"{self.base_url}/api/records/{record_id}/files/"
                        f"{quote(key)}/content"
                    },
                }
                for key, served in record.files.items()
            ]
        return {
            "id": int(record_id) if record_id.isdigit() else record_id,
            "recid": record_id,
            "doi": f"10.5281/zenodo.{record_id}",
            "metadata": {
                "title": record.title,
                "doi": f"10.5281/zenodo.{record_id}",
                "publication_date": "2025-06-18",
                "keywords": [],
            },
            "files": files,
            "links": {"self": f"{self.base_url}/api/records/{record_id}"},
        }

    def _take_file(self, record_id: str, key: str) -> tuple[bytes, int | None] | None:
        """The file's content and, if this transfer is to be cut, after how many bytes."""
        with self._lock:
            record = self._records.get(record_id)
            served = record.files.get(key) if record else None
            if served is None:
                return None
            cut = None
            if served.drops_left > 0:
                served.drops_left -= 1
                cut = served.drop_after_bytes
            return served.content, cut


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "FakeZenodo/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logs
        pass

    def do_GET(self) -> None:
        zenodo: ZenodoServer = self.server.zenodo  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        with zenodo._lock:
            zenodo.requests.append(urlsplit(self.path).path)
        if match := _RECORD.match(path):
            record = zenodo.record_json(match["id"])
            if record is None:
                self._json(
                    404, {"status": 404, "message": "The persistent identifier does not exist."}
                )
            else:
                self._json(200, record)
            return
        if match := _CONTENT.match(path):
            taken = zenodo._take_file(match["id"], match["key"])
            if taken is None:
                self._json(404, {"status": 404, "message": "File not found."})
                return
            content, cut = taken
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Content-Disposition", f'attachment; filename="{match["key"]}"')
            self.end_headers()
            if cut is None:
                self.wfile.write(content)
                return
            self.wfile.write(content[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a short body
            self.close_connection = True
            return
        self._json(404, {"status": 404, "message": "Not found."})

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --------------------------------------------------------------------------------------
# archives and a tiny raw data set
# --------------------------------------------------------------------------------------


def zip_entries(entries: Mapping[str, bytes]) -> bytes:
    """A zip archive of ``{name: content}`` (names used as given), byte-for-byte stable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buffer.getvalue()


def zip_folder(root: Path) -> bytes:
    """A zip of every file under ``root``, named relative to it, in sorted order."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return zip_entries({p.relative_to(root).as_posix(): p.read_bytes() for p in files})


#: a demo data set just large enough for the demo generator's own checks (~2.4 MB raw)
TINY_DEMO = {"n_pre": 20, "n_post": 20, "n_colocated_groups": 1, "n_missing_channels": 1}


def demo_record_archive(workdir: Path, **demo_overrides: Any) -> bytes:
    """A zip of the demo data set in the record's layout, as the real ``dset.zip`` holds it.

    The data set (:func:`quakeshap.demo.write_demo_dataset`, ``TINY_DEMO`` unless
    overridden) is written under ``workdir/dset/...`` and zipped with its ``dset/`` prefix.
    """
    from quakeshap.config import DemoConfig
    from quakeshap.demo import write_demo_dataset

    write_demo_dataset(DemoConfig(**{**TINY_DEMO, **demo_overrides}), workdir)
    return zip_folder(workdir)
