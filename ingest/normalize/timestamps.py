"""RFC 3339 times with any fraction length, kept to the nanosecond. Pure functions."""

from __future__ import annotations

import calendar
import re
import time
from functools import lru_cache

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)
NS = 1_000_000_000
# date_nanos holds 1970-01-01 .. 2262-04-11.
MAX_NS = 9_223_372_036_854_775_807


@lru_cache(maxsize=4096)
def _day_seconds(date: str) -> int | None:
    """Epoch seconds of ``YYYY-MM-DD`` at midnight UTC (None if not a real date)."""
    try:
        year, mon, day = int(date[0:4]), int(date[5:7]), int(date[8:10])
        if not (1 <= mon <= 12 and 1 <= day <= calendar.monthrange(year, mon)[1]):
            return None
        return calendar.timegm((year, mon, day, 0, 0, 0, 0, 0, 0))
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=4096)
def _second(prefix: str) -> tuple[int, str] | None:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` and the index day ``YYYY.MM.DD`` (alerts of
    one second share the work)."""
    if (
        prefix[4] != "-"
        or prefix[7] != "-"
        or prefix[10] != "T"
        or prefix[13] != ":"
        or (prefix[16] != ":")
    ):
        return None
    hms = prefix[11:13] + prefix[14:16] + prefix[17:19]
    if not (hms.isascii() and hms.isdigit() and prefix[0:4].isdigit()):
        return None
    hh, mm, ss = int(hms[0:2]), int(hms[2:4]), int(hms[4:6])
    if hh > 23 or mm > 59 or ss > 60:
        return None
    day = _day_seconds(prefix[0:10])
    if day is None:
        return None
    return day + hh * 3600 + mm * 60 + min(ss, 59), prefix[0:10].replace("-", ".")


def canonical_ns(text: str) -> int | None:
    """Nanoseconds of a time already in the form ``format_ns`` writes (Falco's own,
    ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``), else None. Such a time is kept as it is; any other
    goes through ``parse_rfc3339`` and is written anew."""
    if len(text) != 30 or text[29] != "Z" or text[19] != "." or not text.isascii():
        return None
    second = _second(text[:19])
    nanos = text[20:29]
    if second is None or not nanos.isdigit():
        return None
    return second[0] * NS + int(nanos)


@lru_cache(maxsize=4096)
def json_second(head: bytes) -> tuple[int, str, bytes] | None:
    """The head ``"YYYY-MM-DDTHH:MM:SS.`` of a time's JSON string in the form ``format_ns``
    writes: its epoch seconds, index day and the decimal digits of the seconds (to which
    the nine digits of the fraction add those of the epoch nanoseconds), else None."""
    if head[:1] != b'"' or head[20:] != b"." or not head.isascii():
        return None
    second = _second(head[1:20].decode())
    return None if second is None else (second[0], second[1], b"%d" % second[0])


@lru_cache(maxsize=16)
def seconds_window(now_ns: int, max_age_ns: int, max_future_ns: int) -> tuple[int, int]:
    """Epoch seconds ``lo``, ``hi``: a time whose second is in ``lo <= s < hi`` is within
    ``now - max_age .. now + max_future`` to the nanosecond, whatever its fraction (times
    outside need the exact check)."""
    return -((max_age_ns - now_ns) // NS), (now_ns + max_future_ns) // NS


def _fast_utc(text: str) -> int | None:
    """``YYYY-MM-DDTHH:MM:SS[.fraction]Z``, what Falco and Sidekick write: no regex."""
    if len(text) < 20 or text[-1] != "Z":
        return None
    second = _second(text[:19])
    if second is None:
        return None
    secs = second[0]
    frac = text[19:-1]
    if frac:
        digits = frac[1:]
        if frac[0] != "." or not digits or not (digits.isascii() and digits.isdigit()):
            return None
        nanos = int(digits) if len(digits) == 9 else int((digits + "000000000")[:9])
    else:
        nanos = 0
    return secs * NS + nanos


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch, or None when ``text`` is not an RFC 3339 time."""
    fast = _fast_utc(text)
    if fast is not None:
        return fast
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


def from_epoch_json(value: bytes) -> int | None:
    """Falco's ``evt.time`` / ``evt.time.iso8601`` as JSON: integer nanoseconds, maybe in a
    string. Only ASCII digits, and no more than a time in nanoseconds can have."""
    digits = value[1:-1] if value[:1] == b'"' and value[-1:] == b'"' else value
    if 0 < len(digits) <= 20 and digits.isdigit():  # bytes.isdigit: ASCII digits only
        return int(digits)
    return None


@lru_cache(maxsize=4096)
def _day_names(days: int) -> tuple[str, str]:
    tm = time.gmtime(days * 86_400)
    return (
        f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T",
        f"{tm.tm_year:04d}.{tm.tm_mon:02d}.{tm.tm_mday:02d}",
    )


def format_ns(ns: int) -> tuple[str, str]:
    """(``2026-11-20T09:00:01.408091526Z``, ``2026.11.20``) for a UTC time in nanoseconds."""
    secs, nanos = divmod(ns, NS)
    days, rest = divmod(secs, 86_400)
    date, index_day = _day_names(days)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    return f"{date}{hh:02d}:{mm:02d}:{ss:02d}.{nanos:09d}Z", index_day
