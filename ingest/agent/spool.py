"""A bounded on-disk spool: every accepted alert is appended here before it goes to Kafka.

Segments of length-prefixed records; a cursor file says how far Kafka has acknowledged.
Each record carries a marker and a CRC (``records.py``): a record damaged on disk (a lost
writeback, a bad sector) is skipped, logged and counted, and reading resumes at the next
record that checks out; it is never sent as garbage, nor read with wrong framing (which
could stall the sender for good).
The writer appends and flushes (so a killed process loses nothing the OS has), ``sync``
fsyncs for callers that promise durability (the HTTP receiver). Order is kept: the
sender reads records in the order they were appended.

An fsync that fails is not tried again: Linux reports a failed writeback once and may drop
the pages it could not write, so a second fsync can succeed over a hole in the segment, and
every record acknowledged after it would sit behind that hole (PostgreSQL's "fsyncgate").
The spool takes nothing more until the agent is restarted (``failed``; /healthz says so).
"""

from __future__ import annotations

import asyncio
import io
import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import metrics
from ingest.agent import records
from ingest.agent.records import SEGMENT_MAGIC

log = logging.getLogger(__name__)
SEGMENT_BYTES = 64 * 1024 * 1024
CURSOR_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Entry:
    input: str
    received_ns: int
    value: bytes
    segment: int
    end: int  # offset just past this record in its segment


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES):
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self._cursor_file = self.dir / "cursor"
        segs = sorted(int(p.stem) for p in self.dir.glob("*.seg"))
        self._read_seg, self._read_off = self._load_cursor(segs)
        self._new_format: dict[int, bool] = {}  # segment -> written in the current format
        self._write_seg = segs[-1] if segs else max(self._read_seg, 1)
        if segs:
            self._cut_torn_tail(self._write_seg)
            last = self._write_seg
            if self._path(last).stat().st_size and not self._is_new_format(last):
                self._write_seg += 1  # a segment of the first format is only read
        self._writer = self._open_segment(self._write_seg)
        self._pending = sum(self._path(s).stat().st_size for s in segs if s >= self._read_seg)
        self._pending -= self._read_off if self._read_seg in segs else 0
        self._pending += self._writer.tell() if self._write_seg not in segs else 0
        self._damage_seen: set[tuple[int, int]] = set()
        self.new_data = asyncio.Event()
        self._cursor_saved = 0.0
        self._sync_lock = asyncio.Lock()
        self._appended = self._synced = 0  # appends made, and covered by an fsync
        self.failed: OSError | None = None  # the fsync that failed; nothing appended since
        self.refusing = False  # the last append failed (its error logged)
        metrics.AGENT_SPOOL_BYTES.set(self._pending)

    def _cut_torn_tail(self, seg: int) -> None:
        """Drop what follows the last whole record of the last segment: a record cut short
        (the machine stopped, or the disk filled, during its write; it was never accepted)
        or damage. Left there, the records appended after it would follow unreadable bytes."""
        path = self._path(seg)
        size = path.stat().st_size
        if size == 0:
            return
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            new_format = data[: len(SEGMENT_MAGIC)] == SEGMENT_MAGIC
            good = records.good_end(data, new_format)
        if good < size:
            log.warning("torn record at the end of the spool cut off", extra={"bytes": size - good})
            os.truncate(path, good)

    def _is_new_format(self, seg: int) -> bool:
        known = self._new_format.get(seg)
        if known is None:
            with self._path(seg).open("rb") as fh:
                known = fh.read(len(SEGMENT_MAGIC)) == SEGMENT_MAGIC
            self._new_format[seg] = known
        return known

    def _open_segment(self, seg: int) -> io.BufferedWriter:
        """The writer of ``seg``, which starts with the magic (written when it is empty)."""
        writer = self._path(seg).open("ab")
        if writer.tell() == 0:
            try:
                writer.write(SEGMENT_MAGIC)
                writer.flush()
            except OSError:
                writer.close()
                os.truncate(self._path(seg), 0)
                raise
        self._new_format[seg] = True
        return writer

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.seg"

    def _load_cursor(self, segs: list[int]) -> tuple[int, int]:
        oldest = segs[0] if segs else 1
        try:
            seg, off = (int(x) for x in self._cursor_file.read_text().split())
        except FileNotFoundError:
            return oldest, 0  # a new spool
        except (OSError, ValueError) as exc:
            log.error(
                "spool cursor unreadable; the spool is sent again from its oldest segment "
                "(the consumer stores the repeats once)",
                extra={"file": str(self._cursor_file), "error": str(exc)[:200]},
            )
            metrics.AGENT_STATE_UNREADABLE.labels("spool_cursor").inc()
            return oldest, 0
        if segs and seg < segs[0]:
            return segs[0], 0
        return seg, off

    @property
    def pending_bytes(self) -> int:
        return self._pending

    @property
    def room(self) -> int:
        """Bytes the spool takes now: none once it failed."""
        return 0 if self.failed is not None else max(0, self.max_bytes - self._pending)

    @staticmethod
    def record_size(name: str, value: bytes) -> int:
        return records.HEAD.size + len(name.encode()) + len(value)

    def append(self, items: list[tuple[str, int, bytes]]) -> bool:
        """Append all of ``items`` or none (False when the spool is full or has failed)."""
        if self.failed is not None:
            metrics.AGENT_SPOOL_FULL.inc()
            return False
        blobs = [
            records.pack(name.encode(), received_ns, value) for name, received_ns, value in items
        ]
        size = sum(len(b) for b in blobs)
        if self._pending + size > self.max_bytes:
            metrics.AGENT_SPOOL_FULL.inc()
            return False
        try:
            if self._writer.tell() > self.segment_bytes:
                self._roll()
        except OSError as exc:  # nothing changed: the full segment is still the one written
            return self._refuse(exc)
        start = self._writer.tell()
        try:
            self._writer.write(b"".join(blobs))
            self._writer.flush()
        except OSError as exc:
            self._writer = self._reopen_at(start)
            return self._refuse(exc)
        if self.refusing:
            self.refusing = False
            log.warning("spool writes work again")
        self._appended += 1
        self._pending += size
        metrics.AGENT_SPOOL_BYTES.set(self._pending)
        metrics.AGENT_SPOOLED.inc(len(items))
        self.new_data.set()
        return True

    def _refuse(self, exc: OSError) -> bool:
        """A write the disk did not take (full, failing) is as good as a full spool. Inputs
        try again every 0.2 s: logged once until a write works again."""
        metrics.AGENT_SPOOL_FULL.inc()
        if not self.refusing:
            self.refusing = True
            log.error("spool write failed; inputs are held back", extra={"error": str(exc)})
        return False

    def _roll(self) -> None:
        """Start the next segment. The full one is fsynced first, and the directory after
        the new file is made: a caller's ``sync`` covers only the segment being written.
        The writer moves to the new segment only when all of that succeeded."""
        self._fsync(self._writer.fileno())  # once per segment (64 MiB): a short block is fine
        new = self._open_segment(self._write_seg + 1)
        try:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                self._fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            new.close()
            raise
        self._writer.close()
        self._writer = new
        self._write_seg += 1
        self._pending += len(SEGMENT_MAGIC)

    def _fsync(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: OSError) -> None:
        if self.failed is None:
            self.failed = exc
            metrics.AGENT_SPOOL_FAILED.set(1)
            log.critical(
                "spool fsync failed: it takes no more alerts until the agent is restarted "
                "(check the disk)",
                extra={"error": str(exc), "segment": str(self._path(self._write_seg))},
            )

    def _reopen_at(self, size: int) -> io.BufferedWriter:
        """The writer again, with what a failed write left past ``size`` cut off."""
        path = self._path(self._write_seg)
        try:
            self._writer.close()  # flushing what is buffered may fail again
        except OSError:
            pass
        os.truncate(path, size)
        return path.open("ab")

    async def sync(self) -> None:
        """fsync what was appended so far. Callers waiting at the same time share one fsync:
        one that started after a caller's append covers it."""
        wanted = self._appended
        async with self._sync_lock:
            if self._synced >= wanted:
                return
            if self.failed is not None:
                raise self.failed
            upto = self._appended
            fd = os.dup(self._writer.fileno())  # a segment roll may close the writer meanwhile
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                self._fail(exc)
                raise
            finally:
                os.close(fd)
            self._synced = upto

    def read(self, max_records: int, max_bytes: int) -> list[Entry]:
        """Records after the cursor, oldest first, without moving the cursor. Damaged
        records are skipped (logged and counted once); the cursor moves past them with the
        next record acknowledged."""
        out: list[Entry] = []
        seg, off = self._read_seg, self._read_off
        while len(out) < max_records and max_bytes > 0:
            path = self._path(seg)
            if not path.exists():
                if seg < self._write_seg:
                    seg, off = seg + 1, 0
                    continue
                break
            new_format = self._is_new_format(seg)
            if new_format:
                off = max(off, len(SEGMENT_MAGIC))
            finished = seg < self._write_seg
            with path.open("rb") as fh:
                fh.seek(off)
                data = fh.read(max_bytes + 65536)
                complete = finished and off + len(data) >= os.fstat(fh.fileno()).st_size
            found = records.scan(data, new_format, complete, max_records - len(out), max_bytes)
            self._damaged(seg, off, found.damaged)
            for received, name_at, value_at, end in found.records:
                name = data[name_at:value_at].decode(errors="replace")
                out.append(Entry(name, received, data[value_at:end], seg, off + end))
            max_bytes -= found.used
            if found.records or not (found.damaged or complete):
                break
            if complete:
                seg, off = seg + 1, 0  # this segment is finished
            else:
                off += found.stop  # only damage in what was read: read on
        return out

    def _damaged(self, seg: int, off: int, spans: list[tuple[int, int]]) -> None:
        for start, end in spans:
            if (seg, off + start) in self._damage_seen:
                continue
            self._damage_seen.add((seg, off + start))
            metrics.AGENT_SPOOL_DAMAGED.inc(end - start)
            log.error(
                "damaged spool records skipped; the alerts in them are lost",
                extra={
                    "segment": str(self._path(seg)),
                    "offset": off + start,
                    "bytes": end - start,
                },
            )

    def ack(self, entry: Entry) -> None:
        """Kafka has everything up to and including ``entry``: move the cursor past it."""
        freed = 0
        if entry.segment != self._read_seg:
            freed += self._path(self._read_seg).stat().st_size - self._read_off
            for seg in range(self._read_seg + 1, entry.segment):
                if self._path(seg).exists():
                    freed += self._path(seg).stat().st_size
            freed += entry.end
        else:
            freed += entry.end - self._read_off
        moved_segment = entry.segment != self._read_seg
        self._read_seg, self._read_off = entry.segment, entry.end
        now = time.monotonic()
        # The cursor file is rewritten at most every CURSOR_EVERY_S (and on close): after a
        # crash the few alerts past it are sent again, and the consumer stores them once.
        if moved_segment or now - self._cursor_saved >= CURSOR_EVERY_S:
            self._save_cursor()
        if moved_segment:
            for old in self.dir.glob("*.seg"):
                if int(old.stem) < entry.segment:
                    old.unlink(missing_ok=True)
                    self._new_format.pop(int(old.stem), None)
            # Damage already logged in deleted segments is never read again.
            self._damage_seen = {d for d in self._damage_seen if d[0] >= entry.segment}
        self._pending = max(0, self._pending - freed)
        metrics.AGENT_SPOOL_BYTES.set(self._pending)

    def _save_cursor(self) -> None:
        tmp = self._cursor_file.with_suffix(".tmp")
        tmp.write_text(f"{self._read_seg} {self._read_off}")
        os.replace(tmp, self._cursor_file)
        self._cursor_saved = time.monotonic()

    def close(self) -> None:
        self._save_cursor()
        self._writer.flush()
        if self.failed is None:  # after a failed fsync another proves nothing
            self._fsync(self._writer.fileno())
        self._writer.close()
