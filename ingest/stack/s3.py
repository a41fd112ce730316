"""S3 for the archive: moto's server from PyPI, with the archive bucket created."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request

from ingest.errors import StackError
from ingest.stack import process
from ingest.stack.layout import Layout

BUCKET = "falco-archive"


class S3:
    name = "s3"

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.root / "s3"
        self.port = layout.s3_port
        self.pid_file = self.dir / "moto.pid"
        self.log = self.dir / "moto.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "INGEST_S3__ENDPOINT_URL": self.url,
            "INGEST_S3__BUCKET": BUCKET,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> None:
        if process.read_pid(self.pid_file):
            return
        if process.port_open("127.0.0.1", self.port):
            raise StackError(self.name, f"port {self.port} is taken by another process")
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        process.spawn(argv, log=self.log, pid_file=self.pid_file, cwd=self.dir)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.read_pid(self.pid_file) is None:
                raise StackError(self.name, "process exited during start", str(self.log))
            if self._answers():
                self._create_bucket()
                return
            time.sleep(0.2)
        raise StackError(self.name, f"not ready after {timeout:.0f}s", str(self.log))

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=1):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def _create_bucket(self) -> None:
        req = urllib.request.Request(f"{self.url}/{BUCKET}", method="PUT")  # noqa: S310
        try:
            urllib.request.urlopen(req, timeout=5).close()  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists already
                raise StackError(self.name, f"creating bucket {BUCKET}: HTTP {exc.code}") from exc

    def health(self) -> tuple[bool, str]:
        pid = process.read_pid(self.pid_file)
        if pid is None:
            return False, "not running"
        if not self._answers():
            return False, f"pid {pid}, not answering on {self.url}"
        return True, f"pid {pid}, {self.url}, moto S3, bucket {BUCKET}"

    def stop(self) -> bool:
        return process.stop(self.pid_file, timeout=10)
