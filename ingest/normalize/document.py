"""Raw Falco alert bytes -> the OpenSearch document of docs/document.md, or a typed rejection.

Pure: no I/O, no clock (the caller passes ``now_ns``). Falco's own alerts take the fast path
of ``fast.py``; everything else, and every rejection, takes ``general`` here, which makes
the same bytes from the same alert. Both read the alert with msgspec and keep the values
they do not interpret as the alert's own JSON (``msgspec.Raw``), written compact: a number
keeps its spelling whatever its size, and nothing is parsed into objects that a double or
a recursion limit could refuse.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import orjson

from ingest.normalize.fast import common_alert, fixed_members, ingest_member
from ingest.normalize.model import (
    CF_KEYS,
    DEFAULT_LIMITS,
    MAX_KEY_CHARS,
    MAX_VALUE_BYTES,
    PRIORITIES,
    Document,
    Limits,
    Lineage,
    Rejection,
    compact,
    doc_id,
    tags_of,
    text_of,
)
from ingest.normalize.timestamps import (
    MAX_NS,
    canonical_ns,
    format_ns,
    from_epoch_json,
    parse_rfc3339,
)

_KNOWN = frozenset(
    "time rule priority output output_fields source tags hostname message uuid".split()
)
_Members = dict[str, bytes]
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_check_json = msgspec.json.Decoder(msgspec.Raw).decode


def _members(raw: bytes) -> _Members:
    """A JSON object's keys and their values' JSON; raises ``msgspec.ValidationError`` if
    ``raw`` is another JSON value."""
    return {key: bytes(value) for key, value in _decode_object(raw).items()}


__all__ = [
    "DEFAULT_LIMITS",
    "PRIORITIES",
    "Document",
    "Limits",
    "Lineage",
    "Rejection",
    "normalize",
]


def normalize(
    raw: bytes, lineage: Lineage | None, now_ns: int, limits: Limits = DEFAULT_LIMITS
) -> Document | Rejection:
    """The document of ``raw``, or why there is none. Never raises for a record's content:
    what neither path foresaw is the rejection ``internal_error``."""
    try:
        doc = common_alert(raw, lineage, now_ns, limits)
        return doc if doc is not None else general(raw, lineage, now_ns, limits)
    except Exception as exc:  # noqa: BLE001 - a record must never stop the consumer
        return internal_error(exc)


def internal_error(exc: Exception) -> Rejection:
    """The rejection of a record on which normalising raised: a bug to fix, kept in the DLQ."""
    return Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:500])


def general(
    raw: bytes, lineage: Lineage | None, now_ns: int, limits: Limits = DEFAULT_LIMITS
) -> Document | Rejection:
    """Every shape of docs/document.md, and every rejection."""
    try:
        if not raw.isascii():
            raw.decode()  # msgspec does not check the UTF-8 of values it keeps as JSON
        alert = _members(raw)
        return _alert(alert, lineage, now_ns, limits, len(raw) > MAX_VALUE_BYTES)
    except msgspec.ValidationError as exc:  # its first token is no object's
        try:
            _check_json(raw)  # msgspec stopped at that token: is the rest JSON at all?
        except (msgspec.DecodeError, RecursionError) as bad:
            return Rejection("invalid_json", str(bad)[:200])
        return Rejection("not_an_object", str(exc)[:200])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejection("invalid_json", str(exc)[:200])
    except RecursionError:
        return Rejection("invalid_json", "nested deeper than the decoder reads")


def _string(value: bytes | None) -> str | None:
    """The text of a JSON string, None for anything else."""
    return msgspec.json.decode(value, type=str) if value is not None and value[:1] == b'"' else None


def _alert(
    alert: _Members, lineage: Lineage | None, now_ns: int, limits: Limits, large: bool
) -> Document | Rejection:
    get = alert.get
    rule = _string(get("rule"))
    if rule is None or not rule.strip():
        return Rejection("missing_rule", "no non-empty string 'rule'")
    prio_raw = get("priority")
    prio = _string(prio_raw)
    if prio is None:
        what = "missing" if prio_raw is None else f"{bytes(prio_raw)[:40]!r}"
        return Rejection("bad_priority", f"priority is {what}, not a name")
    priority = PRIORITIES.get(prio) or PRIORITIES.get(prio.strip().lower())
    if priority is None:
        return Rejection("bad_priority", f"unknown priority {prio[:40]!r}")
    fields_raw = get("output_fields")
    if fields_raw is None or fields_raw == b"null":
        fields_json, fields = b"{}", {}
    elif fields_raw[:1] != b"{":
        return Rejection("bad_output_fields", "output_fields is not an object")
    else:
        fields_json = compact(fields_raw)
        fields = _members(fields_json)
    time_text = _string(get("time"))
    ns = canonical_ns(time_text) if time_text is not None else None
    if ns is None:  # not Falco's own form: the time is written anew from the nanoseconds
        ns = parse_rfc3339(time_text) if time_text is not None else None
        time_text = None
        if ns is None:
            ns = _evt_time_ns(fields)
        if ns is None:
            return Rejection("no_timestamp", "no RFC 3339 'time' and no evt.time in output_fields")
    if not 0 <= ns <= MAX_NS:
        return Rejection("time_out_of_range", f"{ns} ns is outside 1970..2262")
    if ns < now_ns - limits.max_age_ns:
        return Rejection("too_old", f"event time {format_ns(ns)[0]} is past hot retention")
    if ns > now_ns + limits.max_future_ns:
        return Rejection("too_far_in_future", f"event time {format_ns(ns)[0]} is in the future")
    if time_text is not None:  # Falco's own form is already the canonical one: kept
        stamp, day = orjson.dumps(time_text), time_text[:10].replace("-", ".")
    else:
        timestamp, day = format_ns(ns)
        stamp = b'"%b"' % timestamp.encode()

    output, message = _shown(get("output")), _shown(get("message"))
    truncated: list[str] = []
    if large:
        fields_json = _shortened(fields.items(), truncated, "")
    shown = output or message
    if shown is not None:
        text, message_json = shown
    else:
        text = _synthesised(priority[1], rule, fields)
        message_json = orjson.dumps(text)
    hostname, source, uuid = get("hostname"), get("source"), _string(get("uuid"))
    host_text, source_text = _string(hostname), _string(source)
    tags_raw = get("tags")
    tags = tags_of(tags_raw) if tags_raw is not None else None
    members = fixed_members(rule, priority, host_text, source_text, tags)
    parts: list[bytes] = [
        b'{"@timestamp":',
        stamp,
        b',"@type":"falco","@message":',
        message_json,
        members,
    ]
    if output is not None and message is not None:
        parts += (b',"falco_message":', message[1])
    parts += (b',"output_fields":', fields_json)
    if uuid is not None:
        parts += (b',"falco_sidekick_uuid":', orjson.dumps(uuid))
    cloud_foundry = sorted(CF_KEYS.intersection(fields))
    if cloud_foundry:
        parts += (b',"@cf":', _object([(k, fields[k]) for k in cloud_foundry]))
    extra = [(k, compact(v)) for k, v in alert.items() if k not in _KNOWN]
    if extra:
        extra_json = _shortened(extra, truncated, "falco_extra.") if large else _object(extra)
        parts += (b',"falco_extra":', extra_json)
    if truncated:
        parts += (b',"falco_truncated_fields":', orjson.dumps(truncated))
    parts.append(ingest_member(now_ns, lineage))
    identity = doc_id(
        ns,
        _id_value(hostname, host_text),
        rule,
        priority[0],
        _id_value(source, source_text),
        text,
        _sorted_json(fields_json) if shown is None else None,
    )
    return Document(identity, day, b"".join(parts))


def _shown(value: bytes | None) -> tuple[str, bytes] | None:
    """A JSON string's text and its JSON as written (what ``@message`` shows), or None."""
    text = _string(value)
    return None if text is None or value is None else (text, value)


def _id_value(raw: bytes | None, text: str | None) -> str | bytes | None:
    """A host or source as the id reads it: its text, None when missing or null, else
    its JSON (a value of another type)."""
    if text is not None or raw is None or raw == b"null":
        return text
    return compact(raw)


def _evt_time_ns(fields: _Members) -> int | None:
    for key in ("evt.time", "evt.time.iso8601"):
        value = fields.get(key)
        ns = from_epoch_json(value) if value is not None else None
        if ns is not None:
            return ns
    return None


def _synthesised(priority: str, rule: str, fields: _Members) -> str:
    """``Priority rule | key=value ...`` for an alert without ``output`` or ``message``;
    values as Python's str() of what they parse to, as every release wrote them."""
    pairs = " ".join(f"{k}={_python_text(v)}" for k, v in sorted(fields.items()))
    return f"{priority} {rule}" + (f" | {pairs}" if pairs else "")


def _python_text(value: bytes) -> str:
    try:
        return str(orjson.loads(value))
    except orjson.JSONDecodeError:  # a number beyond a double: as written
        return value.decode()


def _sorted_json(fields_json: bytes) -> bytes:
    """``output_fields`` hashed into the id of an alert without text: keys sorted, as
    orjson writes them (the ids of every release); as written where orjson cannot read it."""
    try:
        return orjson.dumps(orjson.loads(fields_json), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return fields_json


def _object(members: list[tuple[str, bytes]]) -> bytes:
    """A JSON object of keys and their JSON values."""
    return b"{%b}" % b",".join(orjson.dumps(k) + b":" + v for k, v in members)


def _shortened(members: Iterable[tuple[str, bytes]], truncated: list[str], prefix: str) -> bytes:
    """The object again with every key kept; only what OpenSearch would refuse shortened
    (an over-long term, an empty or over-long key), each named in ``truncated``."""
    out: list[tuple[str, bytes]] = []
    for key, value in members:
        name = key if key and len(key) <= MAX_KEY_CHARS else (key[:MAX_KEY_CHARS] or "_empty")
        # A JSON value's text is never longer than the JSON: only a long one can be too long.
        if len(value) > MAX_VALUE_BYTES:
            text = text_of(value).encode()
            if len(text) > MAX_VALUE_BYTES:
                value = orjson.dumps(text[:MAX_VALUE_BYTES].decode(errors="ignore"))
                truncated.append(prefix + name)
        if name != key:
            truncated.append(prefix + name)
        out.append((name, value))
    return _object(out)
