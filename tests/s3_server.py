"""A real S3-compatible object store on 127.0.0.1 for tests: ``moto_server`` in a subprocess.

Usage::

    with MotoServer() as server:
        server.create_bucket("quakeshap")
        ...  # dvc remote modify <name> endpointurl {server.url}

The server listens on a free port, is polled until it answers, and is stopped (terminate,
then kill) when the block exits. Any access key is accepted; :data:`ACCESS_KEY_ID` and
:data:`SECRET_ACCESS_KEY` are the ones the tests configure.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ACCESS_KEY_ID = "quakeshap-test-key"
SECRET_ACCESS_KEY = "quakeshap-test-secret"  # a fake credential for moto
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _moto_exe() -> str:
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: install moto[server] (requirements.txt)")
    return found


class MotoServer:
    """``moto_server`` on 127.0.0.1, started on enter and stopped on exit."""

    def __init__(self, startup_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [_moto_exe(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}:\n{err}")
            if self._answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"moto_server did not answer on {self.url} in {self.startup_timeout_s} s"
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def client(self):  # -> botocore S3 client (boto3 is a test-only import)
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket)
            for obj in page.get("Contents", [])
        ]
