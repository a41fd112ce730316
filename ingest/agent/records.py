"""The spool's on-disk record format: writing records, and reading them back past damage.

A segment starts with ``SEGMENT_MAGIC``; each record with a marker and a CRC-32 of all that
follows it: the value's and the name's lengths, the time it was received, the input's name
and the value. A record whose marker, lengths or CRC do not check out is damage (a lost
writeback, a bad sector, zeros after a power cut): reading skips to the next marker whose
record checks out. The marker's first byte never occurs in UTF-8, so Falco's JSON does not
hold it.

Segments of the first format (no magic, no marker, no CRC) are still read, as they were
written: an upgraded agent sends what its spool held before the upgrade.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass, field

SEGMENT_MAGIC = b"FISPOOL\x02"
MARKER = b"\xfa\x1c"
HEAD = struct.Struct(">2sIIHQ")  # marker, CRC, value length, name length, received (ns)
# Value length, name length, received: the first format's head, and the part of HEAD that
# the CRC covers (with the name and the value after it).
OLD_HEAD = struct.Struct(">IHQ")
_CHECKED_FROM = len(MARKER) + 4
MAX_NAME = 4096
MAX_VALUE = 128 * 1024 * 1024  # above agent.max_alert_bytes' limit: longer is damage


def pack(name: bytes, received_ns: int, value: bytes) -> bytes:
    checked = OLD_HEAD.pack(len(value), len(name), received_ns) + name + value
    return MARKER + zlib.crc32(checked).to_bytes(4, "big") + checked


@dataclass
class Scan:
    """What a scan of a buffer found: records as (received, name start, value start, end),
    damaged spans as (start, end), the bytes of the records, and where it stopped (the
    start of a record not wholly in the buffer, or the buffer's end)."""

    records: list[tuple[int, int, int, int]] = field(default_factory=list)
    damaged: list[tuple[int, int]] = field(default_factory=list)
    used: int = 0
    stop: int = 0


def scan(
    data: bytes | mmap.mmap,
    new_format: bool,
    complete: bool,
    max_records: int = 1 << 62,
    max_bytes: int = 1 << 62,
    start: int = 0,
) -> Scan:
    """Records in ``data`` from ``start``. ``complete``: ``data`` runs to the end of a
    segment no one appends to any more, so a record cut short there is damage too (in the
    segment being written, the rest of it comes with the next read)."""
    out = Scan(stop=start)
    if not new_format:
        return _scan_old(data, out, max_records, max_bytes)
    view = memoryview(data)
    n, size, pos, used = len(data), HEAD.size, start, 0
    while pos + size <= n and len(out.records) < max_records and used < max_bytes:
        marker, crc, vlen, nlen, received = HEAD.unpack_from(data, pos)
        end = pos + size + nlen + vlen
        if marker == MARKER and nlen <= MAX_NAME and vlen <= MAX_VALUE:
            if end > n and not complete:
                break  # the rest of it is not read yet
            if end <= n and crc == zlib.crc32(view[pos + _CHECKED_FROM : end]):
                out.records.append((received, pos + size, pos + size + nlen, end))
                used += end - pos
                pos = end
                continue
        found = data.find(MARKER, pos + 1)
        nxt = found if found >= 0 else (n if complete else max(pos + 1, n - 1))
        out.damaged.append((pos, nxt))
        pos = nxt
    if complete and pos < n and pos + size > n:
        out.damaged.append((pos, n))  # a header cut short at the segment's end
        pos = n
    out.used, out.stop = used, pos
    return out


def _scan_old(data: bytes | mmap.mmap, out: Scan, max_records: int, max_bytes: int) -> Scan:
    n, size, pos, used = len(data), OLD_HEAD.size, out.stop, 0
    while pos + size <= n and len(out.records) < max_records and used < max_bytes:
        vlen, nlen, received = OLD_HEAD.unpack_from(data, pos)
        end = pos + size + nlen + vlen
        if end > n:
            break
        out.records.append((received, pos + size, pos + size + nlen, end))
        used += end - pos
        pos = end
    out.used, out.stop = used, pos
    return out


def good_end(data: bytes | mmap.mmap, new_format: bool) -> int:
    """Where a segment's last whole record ends (past the magic, in the new format):
    what follows it is a record cut short by a crash, or damage, and nothing after it
    checks out."""
    start = len(SEGMENT_MAGIC) if new_format else 0
    found = scan(data, new_format, complete=True, start=start)
    return found.records[-1][3] if found.records else min(start, len(data))
