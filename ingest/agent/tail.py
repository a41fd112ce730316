"""Tail Falco's file_output: complete lines only, surviving rename+create and copytruncate,
resuming from a saved position that moves only after the spool has the lines."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import BinaryIO

import orjson

from ingest.agent.intake import Intake

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
SAVE_EVERY_S = 1.0  # a crash re-reads at most this much; the consumer dedupes
HEAD = 256  # bytes of the file's start that identify its content (truncation check)


class Positions:
    """``{path: {"dev", "ino", "offset"}}`` in the state directory, replaced atomically."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.file = state_dir / "positions.json"
        try:
            self.data: dict[str, dict[str, int]] = orjson.loads(self.file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            self.data = {}
        self.dirty = not self.file.exists()

    def save(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        tmp = self.file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.data))
        os.replace(tmp, self.file)


class FileTail:
    def __init__(
        self, path: Path, intake: Intake, positions: Positions, once: bool = False
    ) -> None:
        self.path = path
        self.name = f"file:{path}"
        self.intake = intake
        self.positions = positions
        self.once = once
        self.poll_s = 0.2

    def _saved(self) -> tuple[int, int, int, bytes] | None:
        got = self.positions.data.get(str(self.path))
        if not got:
            return None
        return got["dev"], got["ino"], got["offset"], bytes.fromhex(str(got.get("head", "")))

    def _remember(self, st: os.stat_result, offset: int, head: bytes) -> None:
        self.positions.data[str(self.path)] = {
            "dev": st.st_dev,
            "ino": st.st_ino,
            "offset": offset,
            "head": head.hex(),  # type: ignore[dict-item]
        }
        self.positions.dirty = True

    def _resume(self) -> tuple[BinaryIO | None, int]:
        """Open where we left off; a file rotated away while we were down is finished first."""
        saved = self._saved()
        if saved is not None:
            dev, ino, offset, head = saved
            for candidate in [self.path, *sorted(self.path.parent.glob(self.path.name + "*"))]:
                try:
                    st = candidate.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (dev, ino):
                    fh = candidate.open("rb")
                    same = st.st_size >= offset and _head(fh, len(head)) == head
                    return fh, offset if same else 0
        try:
            return self.path.open("rb"), 0
        except FileNotFoundError:
            return None, 0

    async def run(self, stop: asyncio.Event) -> None:
        fh, offset = self._resume()
        buf = b""
        head = _head(fh, HEAD) if fh else b""
        last_save = 0.0
        seen_stat: tuple[int, int] = (-1, -1)
        while not stop.is_set():
            if fh is None:
                try:
                    fh, offset, buf, head = self.path.open("rb"), 0, b"", b""
                except FileNotFoundError:
                    await asyncio.sleep(self.poll_s)
                    continue
            st = os.fstat(fh.fileno())
            seen = (st.st_size, st.st_mtime_ns)
            # A file whose size and mtime did not change since the last look and that is read
            # to its end is quiet; otherwise (a copytruncate can leave the same size behind)
            # check for truncation and read.
            quiet = seen == seen_stat and offset + len(buf) == st.st_size and len(head) >= HEAD
            seen_stat = seen
            if not quiet:
                # copytruncate: the file got shorter, or (if it already grew back) starts
                # with other bytes than it did.
                if st.st_size < offset or (head and _head(fh, len(head)) != head):
                    log.info("file truncated, reading again", extra={"path": str(self.path)})
                    offset, buf, head = 0, b"", b""
                if len(head) < HEAD:
                    head = _head(fh, HEAD)
                fh.seek(offset + len(buf))
                data = fh.read(CHUNK)
                if data:
                    buf += data
                    cut = buf.rfind(b"\n")
                    if cut >= 0:
                        pieces = buf[:cut].split(b"\n")
                        while pieces:
                            taken = await self.intake.take_some(self.name, pieces, stop)
                            if not taken:
                                break  # stopped while the spool was full: the file keeps it
                            used = sum(len(p) + 1 for p in pieces[:taken])
                            pieces = pieces[taken:]
                            offset += used
                            buf = buf[used:]
                            self._remember(st, offset, head)
                        if pieces:
                            break
                        if time.monotonic() - last_save > SAVE_EVERY_S:
                            self.positions.save()
                            last_save = time.monotonic()
                    continue
            # At the end of what is written: rotated (rename + create) or just quiet?
            if self._rotated(st):
                log.info("file rotated, switching to the new one", extra={"path": str(self.path)})
                fh.close()
                fh, offset, buf, head, seen_stat = None, 0, b"", b"", (-1, -1)
                self.positions.data.pop(str(self.path), None)
                self.positions.dirty = True
                continue
            self.positions.save()
            if self.once:
                break
            await asyncio.sleep(self.poll_s)
        if fh is not None:
            fh.close()
        self.positions.save()

    def _rotated(self, st: os.stat_result) -> bool:
        try:
            now = self.path.stat()
        except FileNotFoundError:
            return False  # renamed away, the new file is not there yet: keep the old one
        return (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)


def _head(fh: BinaryIO, n: int) -> bytes:
    return os.pread(fh.fileno(), n, 0) if n else b""
