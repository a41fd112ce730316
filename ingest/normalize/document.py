"""Raw Falco alert bytes -> the OpenSearch document of FORMAT.md, or a typed rejection.

Pure: no I/O, no clock (the caller passes ``now_ns``), no exceptions escape for any input.
Falco's own alerts take the fast path of ``fast.py``; everything else, and every rejection,
takes ``general`` here, which makes the same document from the same alert.
"""

from __future__ import annotations

from typing import Any

import orjson

from ingest.normalize.fast import common_alert
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
    doc_id,
    ingest_time,
    tag_members,
)
from ingest.normalize.timestamps import (
    MAX_NS,
    canonical_ns,
    format_ns,
    from_epoch_ns,
    parse_rfc3339,
)

_KNOWN = frozenset(
    "time rule priority output output_fields source tags hostname message uuid".split()
)
_DOC_KEYS = ("output", "message", "hostname", "source", "tags", "uuid")

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
    """The document of ``raw``, or why there is none."""
    doc = common_alert(raw, lineage, now_ns, limits)
    return doc if doc is not None else general(raw, lineage, now_ns, limits)


def general(
    raw: bytes, lineage: Lineage | None, now_ns: int, limits: Limits = DEFAULT_LIMITS
) -> Document | Rejection:
    """Every shape of FORMAT.md, and every rejection: the alert parsed whole into objects."""
    try:
        alert = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", str(exc)[:200])
    if type(alert) is not dict:
        return Rejection("not_an_object", f"top level is {type(alert).__name__}")
    rule = alert.get("rule")
    if type(rule) is not str or not rule.strip():
        return Rejection("missing_rule", "no non-empty string 'rule'")
    prio = alert.get("priority")
    if type(prio) is not str:
        return Rejection("bad_priority", f"priority is {type(prio).__name__}, not a name")
    priority = PRIORITIES.get(prio) or PRIORITIES.get(prio.strip().lower())
    if priority is None:
        return Rejection("bad_priority", f"unknown priority {prio[:40]!r}")
    fields = alert.get("output_fields")
    if fields is None:
        fields = {}
    elif type(fields) is not dict:
        return Rejection("bad_output_fields", "output_fields is not an object")
    time_value = alert.get("time")
    time_text = time_value if type(time_value) is str else None
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
    try:
        return _document(
            alert,
            rule,
            priority,
            fields,
            ns,
            time_text,
            lineage,
            now_ns,
            len(raw) > MAX_VALUE_BYTES,
        )
    except orjson.JSONEncodeError as exc:  # nesting deeper than orjson writes
        return Rejection("unencodable", str(exc)[:200])


def _evt_time_ns(fields: dict[str, Any]) -> int | None:
    for key in ("evt.time", "evt.time.iso8601"):
        ns = from_epoch_ns(fields.get(key))
        if ns is not None:
            return ns
    return None


def _document(
    alert: dict[str, Any],
    rule: str,
    priority: tuple[int, str],
    fields: dict[str, Any],
    ns: int,
    time_text: str | None,
    lineage: Lineage | None,
    now_ns: int,
    large: bool,
) -> Document:
    if time_text is not None:
        # Falco's own form is already the canonical one: reuse it.
        timestamp = time_text
        day = time_text[:10].replace("-", ".")
    else:
        timestamp, day = format_ns(ns)
    output, message, hostname, source, tags, uuid = map(alert.get, _DOC_KEYS)
    text = output if type(output) is str else message if type(message) is str else None
    # No value of an alert under MAX_VALUE_BYTES can be too long: skip the scan then.
    safe_fields, truncated = _safe_fields(fields) if large else (fields, [])
    if text is None:
        pairs = " ".join(f"{k}={v}" for k, v in sorted(safe_fields.items()))
        text = f"{priority[1]} {rule}" + (f" | {pairs}" if pairs else "")
    doc: dict[str, Any] = {
        "@timestamp": timestamp,
        "@type": "falco",
        "@message": text,
        "falco_rule": rule,
        "falco_priority": priority[0],
        "falco_priority_name": priority[1],
        "output_fields": safe_fields,
    }
    if type(hostname) is str:
        doc["falco_hostname"] = hostname
    if type(source) is str:
        doc["falco_source"] = source
    if type(tags) is list:
        doc.update(tag_members(tuple(tags)))
    if type(message) is str and type(output) is str:
        doc["falco_message"] = message
    if type(uuid) is str:
        doc["falco_sidekick_uuid"] = uuid
    if not CF_KEYS.isdisjoint(fields):
        doc["@cf"] = {k: fields[k] for k in CF_KEYS.intersection(fields)}
    if not alert.keys() <= _KNOWN:
        extra = {k: v for k, v in alert.items() if k not in _KNOWN}
        doc["falco_extra"], extra_trunc = _safe_fields(extra) if large else (extra, [])
        truncated += ["falco_extra." + k for k in extra_trunc]
    if truncated:
        doc["falco_truncated_fields"] = truncated
    if lineage is None:
        doc["@ingest"] = {"time": ingest_time(now_ns)}
    else:
        topic, partition, offset, agent = lineage
        ingest = {
            "time": ingest_time(now_ns),
            "topic": topic,
            "partition": partition,
            "offset": offset,
        }
        if agent is not None:
            ingest["agent"] = orjson.Fragment(agent)
        doc["@ingest"] = ingest
    no_text = type(output) is not str and type(message) is not str
    identity = doc_id(ns, hostname, rule, priority[0], source, text, fields if no_text else None)
    return Document(identity, day, orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))


def _safe_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keep every key; shorten only what OpenSearch would refuse (over-long terms)."""
    limit = MAX_VALUE_BYTES // 4
    for key, value in fields.items():
        if not key or len(key) > MAX_KEY_CHARS:
            break
        if isinstance(value, str):
            if len(value) > limit:
                break
        elif isinstance(value, dict | list):
            break
    else:
        return fields, []  # the common case: nothing to change, no copy
    out: dict[str, Any] = {}
    truncated: list[str] = []
    for key, value in fields.items():
        name = key if key and len(key) <= MAX_KEY_CHARS else (key[:MAX_KEY_CHARS] or "_empty")
        if isinstance(value, str) and len(value) > MAX_VALUE_BYTES // 4:
            encoded = value.encode()
            if len(encoded) > MAX_VALUE_BYTES:
                value = encoded[:MAX_VALUE_BYTES].decode(errors="ignore")
                truncated.append(name)
        elif isinstance(value, dict | list):
            blob = orjson.dumps(value)
            if len(blob) > MAX_VALUE_BYTES:
                value = blob[:MAX_VALUE_BYTES].decode(errors="ignore")
                truncated.append(name)
        if name != key:
            truncated.append(name)
        out[name] = value
    return out, truncated
