"""Where every input hands its alerts: size check, reject file, spool, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import os
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
        self.reject_failing = False  # the last reject-file write failed (logged)

    def _reject(self, name: str, lines: list[bytes], durable: bool = False) -> bool:
        """Keep alerts larger than Kafka accepts in the reject file, all or none (fsynced
        when ``durable``). False if the disk refused: the caller holds them back, as it
        does when the spool is full."""
        try:
            _append_whole(self.reject_file, b"".join(line + b"\n" for line in lines), durable)
        except OSError as exc:
            if not self.reject_failing:
                self.reject_failing = True
                log.error(
                    "reject file write failed; the input is held back",
                    extra={"input": name, "file": str(self.reject_file), "error": str(exc)},
                )
            return False
        self.reject_failing = False
        metrics.AGENT_REJECTED.labels("too_large").inc(len(lines))
        for line in lines:
            log.warning(
                "alert larger than Kafka accepts kept in the reject file",
                extra={"input": name, "bytes": len(line), "file": str(self.reject_file)},
            )
        return True

    def _full(self, name: str) -> None:
        """The spool took nothing: logged once, unless the spool logged why itself."""
        if self._full_since is not None or self.spool.refusing:
            return  # logged already, or a write the disk refused (the spool said so)
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

    def try_put(self, name: str, lines: list[bytes], durable: bool = False) -> bool:
        """Spool all of ``lines`` now, or none and return False (the spool is full, or the
        disk refused a write). ``durable``: the caller acknowledges them once it has synced
        the spool, so alerts put in the reject file are fsynced there first."""
        keep = [line for line in lines if len(line) <= self.max_alert_bytes]
        large = [line for line in lines if len(line) > self.max_alert_bytes]
        # Room is checked before the reject file is written: a retry after a full spool
        # does not write the large ones there again.
        if sum(self.spool.record_size(name, ln) for ln in keep) > self.spool.room:
            self._full(name)
            return False
        if large and not self._reject(name, large, durable):
            return False
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
        (blank lines and rejected ones count as used). 0 means the spool is full, or the
        disk refused a write."""
        room = self.spool.room
        taken, now = 0, time.time_ns()
        items: list[tuple[str, int, bytes]] = []
        before_items = 0  # lines used before the first alert to spool (rejected, blank)
        refused = False
        for line in lines:
            alert = line.strip()
            if alert and len(alert) > self.max_alert_bytes:
                # Only before the first alert: were the spool write after it refused, the
                # rejected line would be written again on the next try.
                if items:
                    break
                if not self._reject(name, [alert]):
                    refused = True
                    break
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
            taken, items = before_items, []
        if items:
            self._accepted(name, len(items))
        elif taken == 0 and not refused:
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


def _append_whole(path: Path, data: bytes, durable: bool) -> None:
    """Append ``data`` to ``path``, or leave the file as it was (a full disk takes part).
    ``durable``: fsync it (and the directory, for a file it made), on the event loop: a
    batch with an alert too large for Kafka is rare."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            os.ftruncate(fd, start)
            raise
        if durable:
            os.fsync(fd)
            if start == 0:
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
    finally:
        os.close(fd)
