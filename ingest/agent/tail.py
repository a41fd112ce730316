"""Tail Falco's file_output: complete lines only, surviving rename+create and copytruncate,
resuming from a saved position that moves only after the spool has the lines.

After a rename + create the renamed file stays open and is read beside the new one until
it has been quiet for ``rotate_wait_s``: Falco keeps writing to it until it reopens its
output (SIGUSR1 or a restart), and those lines are read too."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ingest import metrics
from ingest.agent.intake import Intake

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
        try:
            self.data: dict[str, Any] = orjson.loads(self.file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            self.data = {}
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
    head: bytes = b""
    seen: tuple[int, int] = (-1, -1)  # size and mtime at the last look
    grew_at: float = field(default_factory=time.monotonic)
    ident: tuple[int, int] = field(init=False)  # (dev, inode): an open file keeps its own

    def __post_init__(self) -> None:
        st = os.fstat(self.fh.fileno())
        self.ident = (st.st_dev, st.st_ino)

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
        saved = [self.positions.data.get(key), *self.positions.data.get(key + ROTATED, [])]
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
                    break
                await asyncio.sleep(self.poll_s)
        finally:
            for f in [*self.rotated, self.current]:
                if f is not None:
                    f.fh.close()
            await self._save()

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
        if seen == f.seen and f.offset + len(f.buf) == st.st_size and len(f.head) >= HEAD:
            return False
        f.seen = seen
        # copytruncate: the file got shorter, or (if it already grew back) starts with other
        # bytes than it did.
        if st.st_size < f.offset or (f.head and _head(f.fh, len(f.head)) != f.head):
            log.info("file truncated, reading again", extra={"path": str(self.path)})
            f.offset, f.buf, f.head = 0, b"", b""
        if len(f.head) < HEAD:
            f.head = _head(f.fh, HEAD)
        f.fh.seek(f.offset + len(f.buf))
        data = f.fh.read(CHUNK)
        if not data:
            return False
        f.grew_at = time.monotonic()
        f.buf += data
        cut = f.buf.rfind(b"\n")
        if cut >= 0:
            await self._take(f, f.buf[:cut].split(b"\n"), stop)
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
            if f.buf:
                # Falco ends every alert with a newline, so this is a cut-off write. It is
                # shipped as it is: the consumer dead-letters it instead of it vanishing.
                log.warning("rotated file ends without a newline", extra={"path": str(self.path)})
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


def _head(fh: BinaryIO, n: int) -> bytes:
    return os.pread(fh.fileno(), n, 0) if n else b""
