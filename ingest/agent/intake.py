"""Where every input hands its alerts: size check, reject file, spool, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path

import orjson

from ingest import metrics
from ingest.agent.spool import Spool
from ingest.normalize.timestamps import format_ns

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, spool: Spool, reject_file: Path, max_alert_bytes: int) -> None:
        self.spool = spool
        self.reject_file = reject_file
        self.max_alert_bytes = max_alert_bytes
        self._full_since: float | None = None
        self.reject_failing = False  # the last reject-file write failed (logged)

    def _reject(
        self,
        name: str,
        lines: list[bytes],
        durable: bool = False,
        longs: Sequence[LongLine] = (),
    ) -> bool:
        """Note alerts larger than ``max_alert_bytes`` in the reject file, all or none
        (fsynced when ``durable``): those held (``lines``) and those read piece by piece,
        never held whole (``longs``). False if the disk refused: the caller holds them back,
        as it does when the spool is full."""
        records = [
            reject_record(name, len(line), line[:REJECT_HEAD_BYTES], sha256(line).hexdigest())
            for line in lines
        ] + [reject_record(name, x.size, x.head, x.digest.hexdigest()) for x in longs]
        sizes = [len(line) for line in lines] + [x.size for x in longs]
        return self._write_rejects(name, records, sizes, durable)

    def reject(self, name: str, alert: bytes) -> bool:
        """Note an alert Kafka refuses in the reject file; False if the disk refused."""
        return self._reject(name, [alert], durable=True)

    def reject_long(self, name: str, long: LongLine, offset: int) -> bool:
        """Note the alert of a file at ``offset`` that was read piece by piece."""
        record = reject_record(name, long.size, long.head, long.digest.hexdigest(), offset)
        return self._write_rejects(name, [record], [long.size], False)

    def _write_rejects(
        self, name: str, records: list[bytes], sizes: list[int], durable: bool
    ) -> bool:
        try:
            _append_whole(self.reject_file, b"".join(records), durable)
        except OSError as exc:
            if not self.reject_failing:
                self.reject_failing = True
                log.error(
                    "reject file write failed; the input is held back",
                    extra={"input": name, "file": str(self.reject_file), "error": str(exc)},
                )
            return False
        self.reject_failing = False
        metrics.AGENT_REJECTED.labels("too_large").inc(len(sizes))
        for size in sizes:
            log.warning(
                "alert too large to ship noted in the reject file",
                extra={"input": name, "bytes": size, "file": str(self.reject_file)},
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

    def try_put(
        self,
        name: str,
        lines: list[bytes],
        durable: bool = False,
        longs: Sequence[LongLine] = (),
    ) -> bool:
        """Spool all of ``lines`` now, or none and return False (the spool is full, or the
        disk refused a write). ``durable``: the caller acknowledges them once it has synced
        the spool, so alerts noted in the reject file (those of ``lines`` that are too
        large, and ``longs``) are fsynced there first."""
        keep = [line for line in lines if len(line) <= self.max_alert_bytes]
        large = [line for line in lines if len(line) > self.max_alert_bytes]
        # Room is checked before the reject file is written: a retry after a full spool
        # does not write the large ones there again.
        if sum(self.spool.record_size(name, ln) for ln in keep) > self.spool.room:
            self._full(name)
            return False
        if (large or longs) and not self._reject(name, large, durable, longs):
            return False
        if not keep:
            return True
        now = time.time_ns()
        if not self.spool.append([(name, now, ln) for ln in keep]):
            self._full(name)
            return False
        self._accepted(name, len(keep))
        return True

    async def reject_held_back(
        self, name: str, longs: Sequence[LongLine], stop: asyncio.Event
    ) -> bool:
        """Note ``longs`` in the reject file, waiting while the disk refuses. False if
        stopped meanwhile."""
        while not self._reject(name, [], longs=longs):
            if stop.is_set():
                return False
            await asyncio.sleep(0.2)
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


# How much of a too-large alert the reject file keeps: enough to see its rule and time.
REJECT_HEAD_BYTES = 4096


class LongLine:
    """An alert too long to hold, read piece by piece: its first bytes, size and sha256."""

    def __init__(self) -> None:
        self.head = b""
        self.size = 0
        self.digest = sha256()

    def add(self, data: bytes) -> None:
        if len(self.head) < REJECT_HEAD_BYTES:
            self.head += data[: REJECT_HEAD_BYTES - len(self.head)]
        self.size += len(data)
        self.digest.update(data)


def reject_record(
    name: str, size: int, head: bytes, digest: str, offset: int | None = None
) -> bytes:
    """One line of the reject file: when, from which input (and where in a file), how
    large, the sha256 and the first bytes of an alert that was not shipped."""
    record: dict[str, object] = {
        "time": format_ns(time.time_ns())[0],
        "reason": "too_large",
        "input": name,
        "bytes": size,
        "sha256": digest,
        "head": head.decode("utf-8", errors="replace"),
    }
    if offset is not None:
        record["offset"] = offset
    return orjson.dumps(record) + b"\n"


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
