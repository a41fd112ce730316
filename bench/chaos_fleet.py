"""The chaos run's moving parts: falco-ingest processes it can kill and restart, and the
feeder that plays Falco (a log file it rotates, and POSTs to the HTTP receiver)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import PY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """One `falco-ingest` process; its output goes to ``log`` (appended across restarts)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None
    exits: list[int] = field(default_factory=list)  # codes of the ends it was not killed for

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [PY, "-m", "ingest.cli", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: what a node failure or an OOM kill does."""
        if self.popen is not None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()
            self.popen = None

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM and wait: what Kubernetes does when it scales down or drains."""
        if self.popen is None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.exits.append(self.popen.wait(timeout))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.exits.append(-9)
        self.popen = None

    def metric(self, name: str) -> float | None:
        """A value from the process's Prometheus endpoint, None if it does not answer."""
        url = f"http://127.0.0.1:{self.env['INGEST_METRICS_PORT']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


async def paced(plan: list[tuple[float, int]], items: list[bytes], send: Callable) -> None:
    """Send ``items`` by ``plan``: (start second, how many) pieces, each at an even pace
    until the next piece starts; a piece whose next one starts with it goes at once."""
    t0, sent = time.monotonic(), 0
    for k, (start, count) in enumerate(plan):
        end = plan[k + 1][0] if k + 1 < len(plan) else start
        await asyncio.sleep(max(0.0, t0 + start - time.monotonic()))
        first = sent
        while sent < first + count:
            elapsed = time.monotonic() - t0 - start
            due = count if end <= start else int(count * elapsed / (end - start)) + 1
            take = min(count, due) - (sent - first)
            if take > 0:
                await send(items[sent : sent + take])
                sent += take
            else:
                await asyncio.sleep(0.1)


@dataclass
class Feeder:
    """Falco on two hosts: one writes its alerts to a file that is rotated (rename, new
    file) every ``rotate_every`` lines, the other POSTs them (``post_batch`` a request) to
    an agent's receiver and, unlike Falco's own http_output, retries until it gets a 200.
    Alert i goes to the file when i is even, by HTTP when it is odd."""

    alerts: list[bytes]
    log_file: Path
    url: str
    rotate_every: int
    post_batch: int = 50
    file_sent: int = 0  # lines written
    http_sent: int = 0  # alerts acknowledged with a 200
    http_retries: int = 0
    rotations: int = 0
    _since_rotation: int = 0

    @property
    def sent(self) -> int:
        return self.file_sent + self.http_sent

    async def run(self, plan: list[tuple[float, int]], session: aiohttp.ClientSession) -> None:
        def half(n: int, odd: int) -> int:
            return (n + 1 - odd) // 2

        def split(odd: int) -> list[tuple[float, int]]:
            # the pieces of one host: its share of each piece of the whole plan
            out, done = [], 0
            for start, count in plan:
                mine = half(done + count, odd) - half(done, odd)
                out.append((start, mine))
                done += count
            return out

        async def post(chunk: list[bytes]) -> None:
            for k in range(0, len(chunk), self.post_batch):
                await self._post(chunk[k : k + self.post_batch], session)

        async def write(chunk: list[bytes]) -> None:
            self._write(chunk)

        await asyncio.gather(
            paced(split(0), self.alerts[0::2], write),
            paced(split(1), self.alerts[1::2], post),
        )

    def _write(self, lines: list[bytes]) -> None:
        while lines:
            if self._since_rotation >= self.rotate_every:
                self.rotations += 1
                os.rename(self.log_file, f"{self.log_file}.{self.rotations}")
                self._since_rotation = 0
            part = lines[: self.rotate_every - self._since_rotation]
            lines = lines[len(part) :]
            with self.log_file.open("ab") as f:
                f.write(b"".join(line + b"\n" for line in part))
            self._since_rotation += len(part)
            self.file_sent += len(part)

    async def _post(self, batch: list[bytes], session: aiohttp.ClientSession) -> None:
        body = b"\n".join(batch) + b"\n"
        while True:
            try:
                async with session.post(
                    self.url, data=body, timeout=aiohttp.ClientTimeout(10)
                ) as r:
                    if r.status == 200:
                        self.http_sent += len(batch)
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            self.http_retries += 1
            await asyncio.sleep(0.5)
