"""Where every input hands its alerts: size check, reject file, spool, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from ingest import metrics
from ingest.agent.spool import Spool

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, spool: Spool, reject_file: Path, max_alert_bytes: int) -> None:
        self.spool = spool
        self.reject_file = reject_file
        self.max_alert_bytes = max_alert_bytes
        self._full_since: float | None = None

    def _reject(self, name: str, line: bytes) -> None:
        with self.reject_file.open("ab") as fh:
            fh.write(line + b"\n")
        metrics.AGENT_REJECTED.labels("too_large").inc()
        log.warning(
            "alert larger than Kafka accepts kept in the reject file",
            extra={"input": name, "bytes": len(line), "file": str(self.reject_file)},
        )

    def _full(self, name: str) -> None:
        if self._full_since is None:
            self._full_since = time.monotonic()
            if self.spool.failed is not None:
                return  # the spool logged why, once
            log.error(
                "spool full: inputs are held back until Kafka takes alerts again",
                extra={"input": name, "spool_bytes": self.spool.pending_bytes},
            )

    def _accepted(self, name: str, count: int) -> None:
        if self._full_since is not None:
            log.warning("spool has room again", extra={"input": name})
            self._full_since = None
        metrics.AGENT_ACCEPTED.labels(name.split(":", 1)[0]).inc(count)

    def try_put(self, name: str, lines: list[bytes]) -> bool:
        """Spool all of ``lines`` now, or none and return False (the spool is full)."""
        keep = []
        for line in lines:
            if len(line) > self.max_alert_bytes:
                self._reject(name, line)
            else:
                keep.append(line)
        if not keep:
            return True
        now = time.time_ns()
        if not self.spool.append([(name, now, ln) for ln in keep]):
            self._full(name)
            return False
        self._accepted(name, len(keep))
        return True

    def take(self, name: str, lines: list[bytes]) -> int:
        """Spool the longest prefix of ``lines`` that fits; return how many lines it used
        (blank lines and rejected ones count as used). 0 means the spool is full."""
        room = self.spool.room
        taken, now = 0, time.time_ns()
        items: list[tuple[str, int, bytes]] = []
        before_items = 0  # lines used before the first alert to spool (rejected, blank)
        for line in lines:
            alert = line.strip()
            if alert and len(alert) > self.max_alert_bytes:
                self._reject(name, alert)
            elif alert:
                size = self.spool.record_size(name, alert)
                if size > room:
                    break
                room -= size
                if not items:
                    before_items = taken
                items.append((name, now, alert))
            taken += 1
        if items and not self.spool.append(items):  # the disk refused the write
            taken, items = before_items, []  # lines rejected before it are not written twice
        if items:
            self._accepted(name, len(items))
        elif taken == 0:
            self._full(name)
        return taken

    async def take_some(self, name: str, lines: list[bytes], stop: asyncio.Event) -> int:
        """Like ``take`` but waits while the spool is full; 0 only if stopped meanwhile."""
        while True:
            taken = self.take(name, lines)
            if taken or stop.is_set():
                return taken
            await asyncio.sleep(0.2)

    async def put(self, name: str, lines: list[bytes], stop: asyncio.Event) -> bool:
        """Spool every line, in order, waiting while the spool is full. False if stopped."""
        while lines:
            taken = await self.take_some(name, lines, stop)
            if not taken:
                return False
            lines = lines[taken:]
        return True
