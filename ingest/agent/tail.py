"""Tail Falco's file_output: complete lines only, surviving rename+create and copytruncate,
resuming from a saved position that moves only after the spool has the lines.

After a rename + create the renamed file stays open and is read beside the new one until
it has been quiet for ``rotate_wait_s``: Falco keeps writing to it until it reopens its
output (SIGUSR1 or a restart), and those lines are read too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ingest import metrics
from ingest.agent.intake import Intake, LongLine

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
SAVE_EVERY_S = 1.0  # a crash re-reads at most this much; the consumer dedupes
HEAD = 256  # bytes of the file's start that identify its content (truncation check)
ROTATED = " (rotated)"  # positions key suffix of the renamed files still being read


class Positions:
    """``{path: {"dev", "ino", "offset", "head"}}`` and ``{path (rotated): [...]}`` in the
    state directory, replaced atomically. Every change bumps ``version``; a snapshot
    written late never replaces a newer one."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.file = state_dir / "positions.json"
        self.data: dict[str, Any] = {}
        try:
            loaded = orjson.loads(self.file.read_bytes())
            if not isinstance(loaded, dict):
                raise ValueError(f"holds a JSON {type(loaded).__name__}, not an object")
            self.data = loaded
        except FileNotFoundError:
            pass  # a new state directory
        except (OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            kept = self.file.with_suffix(".unreadable")
            log.error(
                "positions unreadable; every file is read again from its start (the "
                "consumer stores the repeats once); the file is kept for inspection",
                extra={"file": str(self.file), "kept_as": str(kept), "error": str(exc)[:200]},
            )
            metrics.AGENT_STATE_UNREADABLE.labels("positions").inc()
            with contextlib.suppress(OSError):
                os.replace(self.file, kept)
        self.version = 0 if self.file.exists() else 1
        self._written = 0

    @property
    def dirty(self) -> bool:
        return self.version > self._written

    def changed(self) -> None:
        self.version += 1

    def snapshot(self) -> tuple[int, bytes]:
        return self.version, orjson.dumps(self.data)

    def write(self, version: int, blob: bytes) -> None:
        if version <= self._written:
            return
        tmp = self.file.with_suffix(".tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, self.file)
        self._written = version

    def save(self) -> None:
        if self.dirty:
            self.write(*self.snapshot())


@dataclass
class Opened:
    """One open file and how far its complete lines are in the spool."""

    fh: BinaryIO
    offset: int = 0
    buf: bytes = b""  # read past ``offset``, not yet a complete line
    long: LongLine | None = None  # a line past max_alert_bytes at ``offset``, read so far
    head: bytes = b""
    seen: tuple[int, int] = (-1, -1)  # size and mtime at the last look
    grew_at: float = field(default_factory=time.monotonic)
    ident: tuple[int, int] = field(init=False)  # (dev, inode): an open file keeps its own

    def __post_init__(self) -> None:
        st = os.fstat(self.fh.fileno())
        self.ident = (st.st_dev, st.st_ino)

    @property
    def read_to(self) -> int:
        """Where the next read starts."""
        return self.offset + (self.long.size if self.long else 0) + len(self.buf)

    @property
    def partial(self) -> int:
        """Bytes of a line whose newline has not been read yet."""
        return (self.long.size if self.long else 0) + len(self.buf)

    def position(self) -> dict[str, Any]:
        dev, ino = self.ident
        return {"dev": dev, "ino": ino, "offset": self.offset, "head": self.head.hex()}


class FileTail:
    def __init__(
        self,
        path: Path,
        intake: Intake,
        positions: Positions,
        once: bool = False,
        rotate_wait_s: float = 60.0,
    ) -> None:
        self.path = path
        self.name = f"file:{path}"
        self.intake = intake
        self.positions = positions
        self.once = once
        self.rotate_wait_s = rotate_wait_s
        self.poll_s = 0.2
        self.current: Opened | None = None
        self.rotated: list[Opened] = []  # renamed away, still read until quiet
        self.partial_lines: list[tuple[int, int]] = []  # --once: (offset, bytes) left at EOF

    def _record(self) -> None:
        key = str(self.path)
        data = self.positions.data
        if self.current is not None:
            data[key] = self.current.position()
        else:
            data.pop(key, None)
        if self.rotated:
            data[key + ROTATED] = [f.position() for f in self.rotated]
        else:
            data.pop(key + ROTATED, None)
        self.positions.changed()
        metrics.AGENT_ROTATED_OPEN.set(sum(len(v) for k, v in data.items() if k.endswith(ROTATED)))

    def _resume(self) -> None:
        """Reopen what we were reading; files rotated away while we were down are finished."""
        key = str(self.path)
        rotated = self.positions.data.get(key + ROTATED)
        saved = [self.positions.data.get(key), *(rotated if isinstance(rotated, list) else [])]
        saved = [s for s in saved if s]
        if saved:
            found: dict[tuple[int, int], Path] = {}
            for candidate in [self.path, *sorted(self.path.parent.glob(self.path.name + "*"))]:
                try:
                    st = candidate.stat()
                except OSError:
                    continue
                found.setdefault((st.st_dev, st.st_ino), candidate)
            for s in saved:
                if not _valid_position(s):
                    log.error(
                        "a saved position is unreadable; that file is read from its start",
                        extra={"path": str(self.path), "position": str(s)[:200]},
                    )
                    metrics.AGENT_STATE_UNREADABLE.labels("positions").inc()
                    continue
                where = found.pop((s["dev"], s["ino"]), None)
                if where is None:
                    continue  # deleted while we were down: nothing left to read
                f = Opened(where.open("rb"))
                head = bytes.fromhex(str(s.get("head", "")))
                same = os.fstat(f.fh.fileno()).st_size >= s["offset"]
                if same and _head(f.fh, len(head)) == head:
                    f.offset, f.head = s["offset"], head
                if where == self.path:
                    self.current = f
                else:
                    self.rotated.append(f)
        if self.current is None:
            self._open()

    def _open(self) -> None:
        try:
            self.current = Opened(self.path.open("rb"))
        except FileNotFoundError:
            self.current = None

    async def run(self, stop: asyncio.Event) -> None:
        self._resume()
        last_save = 0.0
        try:
            while not stop.is_set():
                if self.current is None:
                    self._open()
                read_any = False
                for f in [*self.rotated, self.current]:
                    if f is not None and not stop.is_set():
                        read_any = await self._read(f, stop) or read_any
                if stop.is_set():
                    break
                if self.current is not None and self._renamed(self.current):
                    log.info("file rotated, reading the new one", extra={"path": str(self.path)})
                    self.rotated.append(self.current)
                    self._open()
                    self._record()
                    continue
                await self._forget_quiet(stop)
                if time.monotonic() - last_save > SAVE_EVERY_S:  # idle or not
                    await self._save()
                    last_save = time.monotonic()
                if read_any:
                    continue
                if self.once:
                    self._end_of_once()
                    break
                await asyncio.sleep(self.poll_s)
        finally:
            for f in [*self.rotated, self.current]:
                if f is not None:
                    f.fh.close()
            await self._save()

    def _end_of_once(self) -> None:
        """``--once`` read the file to its end: a line without its newline there is not
        shipped (Falco ends every alert with one, so it is a write still under way or cut
        off); it is said, and the position stays before it for the next run."""
        for f in [*self.rotated, self.current]:
            if f is not None and f.partial:
                self.partial_lines.append((f.offset, f.partial))
                log.warning(
                    "file ends in a partial line, not shipped",
                    extra={"path": str(self.path), "offset": f.offset, "bytes": f.partial},
                )

    async def _save(self) -> None:
        """Save the positions once the spool holds what they claim on disk, not only in the
        page cache: after a machine crash the file is read again from where the spool's
        alerts are durable (the consumer stores the repeats once), never past alerts the
        crash took. A spool whose fsync failed keeps the positions where they were."""
        if not self.positions.dirty:
            return
        # Taken before the fsync: other inputs share the positions and may move theirs
        # past appends this fsync does not cover while it runs.
        version, blob = self.positions.snapshot()
        try:
            await self.intake.spool.sync()
        except OSError:
            return  # the spool logged it and the agent is to be restarted
        self.positions.write(version, blob)

    async def _read(self, f: Opened, stop: asyncio.Event) -> bool:
        """Spool the complete lines written to ``f`` since the last look; True if it grew."""
        st = os.fstat(f.fh.fileno())
        seen = (st.st_size, st.st_mtime_ns)
        # A file whose size and mtime did not change since the last look and that is read to
        # its end is quiet; otherwise (a copytruncate can leave the same size behind) check
        # for truncation and read.
        if seen == f.seen and f.read_to == st.st_size and len(f.head) >= HEAD:
            return False
        f.seen = seen
        # copytruncate: the file got shorter, or (if it already grew back) starts with other
        # bytes than it did.
        if st.st_size < f.offset or (f.head and _head(f.fh, len(f.head)) != f.head):
            log.info("file truncated, reading again", extra={"path": str(self.path)})
            f.offset, f.buf, f.head, f.long = 0, b"", b"", None
        if len(f.head) < HEAD:
            f.head = _head(f.fh, HEAD)
        f.fh.seek(f.read_to)
        data = f.fh.read(CHUNK)
        if not data:
            return False
        f.grew_at = time.monotonic()
        if f.long is not None:  # the rest of a line too long to hold: only counted
            end = data.find(b"\n")
            f.long.add(data if end < 0 else data[:end])
            if end < 0 or not self._reject_long(f):
                return True
            data = data[end + 1 :]
        f.buf += data
        cut = f.buf.rfind(b"\n")
        if cut >= 0:
            await self._take(f, f.buf[:cut].split(b"\n"), stop)
        if len(f.buf) > self.intake.max_alert_bytes and f.buf.find(b"\n") < 0:
            # A line longer than any alert may be: not held, its newline looked for.
            f.long = LongLine()
            f.long.add(f.buf)
            f.buf = b""
        return True

    def _reject_long(self, f: Opened) -> bool:
        """The long line at ``f.offset`` has ended: noted in the reject file, passed over.
        False if the reject file refused it (tried again at the next read)."""
        assert f.long is not None
        if not self.intake.reject_long(self.name, f.long, f.offset):
            return False
        f.offset += f.long.size + 1
        f.long = None
        self._record()
        return True

    async def _take(self, f: Opened, pieces: list[bytes], stop: asyncio.Event) -> None:
        while pieces:
            taken = await self.intake.take_some(self.name, pieces, stop)
            if not taken:
                return  # stopped while the spool was full: the file keeps the rest
            used = sum(len(p) + 1 for p in pieces[:taken])
            pieces = pieces[taken:]
            f.offset += used
            f.buf = f.buf[used:]
            self._record()

    async def _forget_quiet(self, stop: asyncio.Event) -> None:
        """Close rotated files that have not grown for ``rotate_wait_s``."""
        now = time.monotonic()
        for f in [f for f in self.rotated if now - f.grew_at > self.rotate_wait_s]:
            if f.partial:
                # Falco ends every alert with a newline, so this is a cut-off write. It is
                # shipped as it is: the consumer dead-letters it instead of it vanishing.
                log.warning("rotated file ends without a newline", extra={"path": str(self.path)})
                if f.long is not None:
                    if not self._reject_long(f):
                        return
                else:
                    await self._take(f, [f.buf], stop)
                if f.buf:
                    return  # stopped while the spool was full
            log.info(
                "rotated file quiet, closed",
                extra={"path": str(self.path), "read_to": f.offset, "quiet_s": self.rotate_wait_s},
            )
            f.fh.close()
            self.rotated.remove(f)
            self._record()

    def _renamed(self, f: Opened) -> bool:
        try:
            now = self.path.stat()
        except FileNotFoundError:
            return False  # renamed away, the new file is not there yet: keep the old one
        return (now.st_dev, now.st_ino) != f.ident


def _valid_position(saved: object) -> bool:
    """A saved position as ``Opened.position`` writes it."""
    return (
        isinstance(saved, dict)
        and all(type(saved.get(k)) is int for k in ("dev", "ino", "offset"))
        and isinstance(saved.get("head", ""), str)
        and all(c in "0123456789abcdef" for c in saved.get("head", ""))
        and len(saved.get("head", "")) % 2 == 0
    )


def _head(fh: BinaryIO, n: int) -> bytes:
    return os.pread(fh.fileno(), n, 0) if n else b""
