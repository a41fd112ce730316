"""Raw Falco alert bytes -> the OpenSearch document of FORMAT.md, or a typed rejection.

Pure: no I/O, no clock (the caller passes ``now_ns``), no exceptions escape for any input.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from ingest.normalize.timestamps import MAX_NS, NS, format_ns, from_epoch_ns, parse_rfc3339

PRIORITIES: dict[str, tuple[int, str]] = {
    "emergency": (0, "Emergency"),
    "alert": (1, "Alert"),
    "critical": (2, "Critical"),
    "error": (3, "Error"),
    "warning": (4, "Warning"),
    "notice": (5, "Notice"),
    "informational": (6, "Informational"),
    "info": (6, "Informational"),
    "debug": (7, "Debug"),
}
PRIORITIES.update({name: value for value in list(PRIORITIES.values()) for name in [value[1]]})
CF_KEYS = frozenset(
    "app app_id app_instance org org_id space space_id process_id process_instance_id "
    "process_type".split()
)
_KNOWN = frozenset(
    "time rule priority output output_fields source tags hostname message uuid".split()
)
_TECHNIQUE = re.compile(r"T\d{4}(?:\.\d{3})?")
# A flat_object stores "path=value" as one keyword term, capped by Lucene at 32766 bytes.
MAX_VALUE_BYTES = 16_384
MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a record came from: Kafka coordinates and the agent's headers, if any."""

    topic: str
    partition: int
    offset: int
    agent_host: str | None = None
    agent_version: str | None = None
    agent_input: str | None = None
    agent_received: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    day: str
    body: bytes
    priority: int
    rule: str


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Limits:
    max_age_ns: int = 365 * 86_400 * NS
    max_future_ns: int = 86_400 * NS


DEFAULT_LIMITS = Limits()


def normalize(
    raw: bytes, lineage: Lineage | None, now_ns: int, limits: Limits = DEFAULT_LIMITS
) -> Document | Rejection:
    try:
        alert = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", str(exc)[:200])
    if not isinstance(alert, dict):
        return Rejection("not_an_object", f"top level is {type(alert).__name__}")
    try:
        return _from_alert(alert, lineage, now_ns, limits, len(raw) > MAX_VALUE_BYTES)
    except orjson.JSONEncodeError as exc:  # nesting deeper than orjson writes
        return Rejection("unencodable", str(exc)[:200])


def _from_alert(
    alert: dict[str, Any], lineage: Lineage | None, now_ns: int, limits: Limits, large: bool
) -> Document | Rejection:
    rule = alert.get("rule")
    if not isinstance(rule, str) or not rule.strip():
        return Rejection("missing_rule", "no non-empty string 'rule'")
    prio = alert.get("priority")
    if not isinstance(prio, str):
        return Rejection("bad_priority", f"priority is {type(prio).__name__}, not a name")
    known = PRIORITIES.get(prio) or PRIORITIES.get(prio.strip().lower())
    if known is None:
        return Rejection("bad_priority", f"unknown priority {prio[:40]!r}")
    fields = alert.get("output_fields")
    if fields is not None and not isinstance(fields, dict):
        return Rejection("bad_output_fields", "output_fields is not an object")
    time_text = alert.get("time")
    ns, from_time = _event_ns(time_text, fields)
    if ns is None:
        return Rejection("no_timestamp", "no RFC 3339 'time' and no evt.time in output_fields")
    if not 0 <= ns <= MAX_NS:
        return Rejection("time_out_of_range", f"{ns} ns is outside 1970..2262")
    if ns < now_ns - limits.max_age_ns:
        return Rejection("too_old", f"event time {format_ns(ns)[0]} is past hot retention")
    if ns > now_ns + limits.max_future_ns:
        return Rejection("too_far_in_future", f"event time {format_ns(ns)[0]} is in the future")
    canonical = (
        from_time
        and isinstance(time_text, str)
        and len(time_text) == 30
        and time_text[-1] == "Z"
        and time_text[19] == "."
    )
    return _document(
        alert,
        rule,
        known,
        fields or {},
        ns,
        time_text if canonical else None,
        lineage,
        now_ns,
        large,
    )


def _event_ns(time_value: object, fields: dict[str, Any] | None) -> tuple[int | None, bool]:
    """(nanoseconds, whether they came from ``time``)."""
    if isinstance(time_value, str):
        ns = parse_rfc3339(time_value)
        if ns is not None:
            return ns, True
    if fields:
        for key in ("evt.time", "evt.time.iso8601"):
            ns = from_epoch_ns(fields.get(key))
            if ns is not None:
                return ns, False
    return None, False


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
        day = f"{time_text[0:4]}.{time_text[5:7]}.{time_text[8:10]}"
    else:
        timestamp, day = format_ns(ns)
    output = alert.get("output")
    message = alert.get("message")
    hostname = alert.get("hostname")
    source = alert.get("source")
    text = output if isinstance(output, str) else message if isinstance(message, str) else None
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
    if isinstance(hostname, str):
        doc["falco_hostname"] = hostname
    if isinstance(source, str):
        doc["falco_source"] = source
    tags = alert.get("tags")
    if isinstance(tags, list):
        if all(type(t) is str for t in tags):
            tag_list, techniques, tactics = tags, *_mitre(tuple(tags))
        else:
            tag_list = [t if isinstance(t, str) else orjson.dumps(t).decode() for t in tags]
            techniques, tactics = _mitre(tuple(tag_list))
        doc["falco_tags"] = tag_list
        if techniques:
            doc["falco_mitre_techniques"] = list(techniques)
        if tactics:
            doc["falco_mitre_tactics"] = list(tactics)
    if isinstance(message, str) and isinstance(output, str):
        doc["falco_message"] = message
    if isinstance(alert.get("uuid"), str):
        doc["falco_sidekick_uuid"] = alert["uuid"]
    if not CF_KEYS.isdisjoint(fields):
        doc["@cf"] = {k: fields[k] for k in CF_KEYS.intersection(fields)}
    if not alert.keys() <= _KNOWN:
        extra = {k: v for k, v in alert.items() if k not in _KNOWN}
        doc["falco_extra"], extra_trunc = _safe_fields(extra) if large else (extra, [])
        truncated += ["falco_extra." + k for k in extra_trunc]
    if truncated:
        doc["falco_truncated_fields"] = truncated
    doc["@ingest"] = _lineage(lineage, now_ns)
    doc_id = _doc_id(ns, hostname, rule, priority[0], source, text, fields, output, message)
    return Document(doc_id, day, orjson.dumps(doc), priority[0], rule)


@lru_cache(maxsize=1024)
def _mitre(tags: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """MITRE technique ids and tactic names among a rule's tags (a rule's tags repeat)."""
    techniques = tuple(t for t in tags if t[:1] == "T" and _TECHNIQUE.fullmatch(t))
    tactics = tuple(t[6:] for t in tags if t[:6] == "mitre_")
    return techniques, tactics


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


@lru_cache(maxsize=8)
def _ingest_time(now_ns: int) -> str:
    return format_ns(now_ns)[0]


def _lineage(lineage: Lineage | None, now_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"time": _ingest_time(now_ns)}
    if lineage is None:
        return out
    out["topic"] = lineage.topic
    out["partition"] = lineage.partition
    out["offset"] = lineage.offset
    if lineage.agent_host is not None or lineage.agent_input is not None:
        agent = {
            "host": lineage.agent_host,
            "version": lineage.agent_version,
            "input": lineage.agent_input,
            "received": lineage.agent_received,
        }
        out["agent"] = {k: v for k, v in agent.items() if v is not None}
    return out


def _doc_id(
    ns: int,
    hostname: object,
    rule: str,
    priority: int,
    source: object,
    text: str,
    fields: dict[str, Any],
    output: object,
    message: object,
) -> str:
    """The alert's identity from its content, never from Kafka coordinates or Sidekick's uuid.

    Falco's ``output`` already renders the fields, and re-serialisers (Falcosidekick) may
    change number precision in ``output_fields``, so those are hashed only when there is no
    rendered text to stand for them.
    """
    material = f"{ns}\x1f{hostname}\x1f{rule}\x1f{priority}\x1f{source}\x1f{text}"
    if not isinstance(output, str) and not isinstance(message, str):
        material += "\x1f" + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    return hashlib.blake2b(material.encode(), digest_size=16).hexdigest()
