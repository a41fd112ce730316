"""What both normalisers share: the result types, the priority names, tags and the id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import Any

import msgspec
import orjson

from ingest.normalize.timestamps import NS, format_ns

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
_TECHNIQUE = re.compile(r"T\d{4}(?:\.\d{3})?")
# A flat_object stores "path=value" as one keyword term, capped by Lucene at 32766 bytes.
MAX_VALUE_BYTES = 16_384
MAX_KEY_CHARS = 512


# Where a record came from: (Kafka topic, partition, offset, the agent's headers or None),
# the headers as the JSON object {"host": ..., "version": ..., "input": ..., "received": ...},
# encoded once per agent and shared. A plain tuple: one is made per record, and a NamedTuple
# costs ten times more.
Lineage = tuple[str, int, int, bytes | None]


class Document(msgspec.Struct, gc=False):
    """The document's id, its index day (``YYYY.MM.DD``) and its JSON, newline-ended.
    A msgspec struct: one is made per alert, and a dataclass's __init__ costs more."""

    doc_id: str
    day: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Limits:
    max_age_ns: int = 365 * 86_400 * NS
    max_future_ns: int = 86_400 * NS


DEFAULT_LIMITS = Limits()


def doc_id(
    ns: int,
    hostname: object,
    rule: str,
    priority: int,
    source: object,
    text: str,
    fields: dict[str, Any] | None = None,
) -> str:
    """The alert's identity from its content, never from Kafka coordinates or Sidekick's
    uuid. Falco's ``output`` already renders the fields, and re-serialisers (Falcosidekick)
    may change number precision in ``output_fields``, so those are hashed (``fields``) only
    when there is no rendered text to stand for them."""
    material = text.encode()
    if fields is not None:
        material += b"\x1f" + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return content_id(b"%d" % ns, id_middle(hostname, rule, priority, source), material)


def id_middle(hostname: object, rule: str, priority: int, source: object) -> bytes:
    """The part of an id's material a rule on a host fixes (the fast path caches it)."""
    return f"\x1f{hostname}\x1f{rule}\x1f{priority}\x1f{source}\x1f".encode()


def content_id(ns_digits: bytes, middle: bytes, text: bytes) -> str:
    """blake2b-128 of the event time's epoch nanoseconds in decimal, the middle and the
    alert's text: the ids of every release so far, so that an alert replayed after an
    upgrade is still stored once."""
    h = _ID_HASH.copy()  # a copy skips parsing ``digest_size`` again: 15 % of the call
    h.update(ns_digits)  # three updates cost less than joining the three first
    h.update(middle)
    h.update(text)
    return h.hexdigest()


_ID_HASH = blake2b(digest_size=16)  # never updated itself


def tag_members(tags: tuple[Any, ...]) -> dict[str, tuple[str, ...]]:
    """The document's members for a list of tags: ``falco_tags`` (as strings), and the MITRE
    technique ids and tactics among them when there are any. Shared: copy, never change."""
    try:
        return _string_tag_members(tags)
    except TypeError:  # a tag that is not a string: rare, not cached
        return _tag_members(tags)


@lru_cache(maxsize=1024)
def _string_tag_members(tags: tuple[Any, ...]) -> dict[str, tuple[str, ...]]:
    """A rule's tags repeat, so the work for a list of strings is cached."""
    if not all(type(t) is str for t in tags):
        raise TypeError("not all tags are strings")  # not cached: True and 1 are equal keys
    return _tag_members(tags)


def _tag_members(tags: tuple[Any, ...]) -> dict[str, tuple[str, ...]]:
    names = tuple(t if type(t) is str else orjson.dumps(t).decode() for t in tags)
    members = {"falco_tags": names}
    techniques = tuple(t for t in names if t[:1] == "T" and _TECHNIQUE.fullmatch(t))
    if techniques:
        members["falco_mitre_techniques"] = techniques
    tactics = tuple(t[6:] for t in names if t[:6] == "mitre_")
    if tactics:
        members["falco_mitre_tactics"] = tactics
    return members


@lru_cache(maxsize=8)
def ingest_time(now_ns: int) -> str:
    return format_ns(now_ns)[0]
