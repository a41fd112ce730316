"""RFC 3339 times with any fraction length, kept to the nanosecond. Pure functions."""

from __future__ import annotations

import calendar
import re
import time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)
NS = 1_000_000_000
# date_nanos holds 1970-01-01 .. 2262-04-11.
MAX_NS = 9_223_372_036_854_775_807


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch, or None when ``text`` is not an RFC 3339 time."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, mon, day, hh, mm, ss = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= mon <= 12 and 1 <= day <= 31 and hh <= 23 and mm <= 59 and ss <= 60):
        return None
    try:
        secs = calendar.timegm((year, mon, day, hh, mm, min(ss, 59), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if day > calendar.monthrange(year, mon)[1]:
        return None
    frac = m.group(7) or ""
    nanos = int((frac + "000000000")[:9]) if frac else 0
    if m.group(9):
        offset = (int(m.group(10)) * 3600 + int(m.group(11)) * 60) * (
            1 if m.group(9) == "+" else -1
        )
        secs -= offset
    return secs * NS + nanos


def from_epoch_ns(value: object) -> int | None:
    """Falco's ``evt.time`` / ``evt.time.iso8601``: integer nanoseconds (maybe as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def format_ns(ns: int) -> tuple[str, str]:
    """(``2026-11-20T09:00:01.408091526Z``, ``2026.11.20``) for a UTC time in nanoseconds."""
    secs, nanos = divmod(ns, NS)
    tm = time.gmtime(secs)
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{nanos:09d}Z",
        f"{tm.tm_year:04d}.{tm.tm_mon:02d}.{tm.tm_mday:02d}",
    )
