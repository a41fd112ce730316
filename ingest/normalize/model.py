"""What both normalisers share: the result types, the priority names, tags and the id."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b

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
# costs several times more to make.
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
    fields: bytes | None = None,
) -> str:
    """The alert's identity from its content, never from Kafka coordinates or Sidekick's
    uuid. Falco's ``output`` already renders the fields, and re-serialisers (Falcosidekick)
    may change number precision in ``output_fields``, so those are hashed (``fields``: their
    JSON, keys sorted) only when there is no rendered text to stand for them."""
    material = text.encode()
    if fields is not None:
        material += b"\x1f" + fields
    return content_id(b"%d" % ns, id_middle(hostname, rule, priority, source), material)


def id_middle(hostname: object, rule: str, priority: int, source: object) -> bytes:
    """The part of an id's material a rule on a host fixes (the fast path caches it):
    the fields between separators. A missing host or source is spelled ``None``, as in
    every release so far; a value that could be read as another (the string "None", one
    holding a separator, not a string) is spelled as ``_MARK`` and its JSON, so that no two
    alerts that differ there share an id."""
    host, name, src = _id_part(hostname), _id_part(rule, False), _id_part(source)
    return f"\x1f{host}\x1f{name}\x1f{priority}\x1f{src}\x1f".encode()


_MARK = "\x1e"


def _id_part(value: object, nullable: bool = True) -> str:
    if value is None:
        return "None"
    if (
        type(value) is str
        and not (nullable and value == "None")
        and "\x1f" not in value
        and _MARK not in value
    ):
        return value
    if type(value) is bytes:  # a value's JSON as it came (the general path's non-strings)
        return _MARK + value.decode()
    return _MARK + orjson.dumps(value).decode()


def content_id(ns_digits: bytes, middle: bytes, text: bytes) -> str:
    """blake2b-128 of the event time's epoch nanoseconds in decimal, the middle and the
    alert's text: the ids of every release so far, so that an alert replayed after an
    upgrade is still stored once."""
    h = _ID_HASH.copy()  # a copy skips parsing ``digest_size`` again
    h.update(ns_digits)  # three updates cost less than joining the three first
    h.update(middle)
    h.update(text)
    return h.hexdigest()


_ID_HASH = blake2b(digest_size=16)  # never updated itself
_format = msgspec.json.format
_decode_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_str = msgspec.json.Decoder(str).decode


def compact(raw: bytes | msgspec.Raw) -> bytes:
    """A JSON value without the white space between its tokens; every number, escape and
    key (repeated ones too) as written. Documents are NDJSON lines, so a pretty-printed
    value must not be copied into one as it came. (Always formatted: looking for white
    space first costs more than msgspec's pass over the bytes.)"""
    return _format(raw, indent=-1)


def text_of(raw: bytes) -> str:
    """What a tag or another value stands for as text: a JSON string's text, any other
    value's compact JSON (``1e400`` stays ``1e400``)."""
    return _decode_str(raw) if raw[:1] == b'"' else compact(raw).decode()


def tags_of(raw: bytes) -> tuple[str, ...] | None:
    """The tags of a JSON ``tags`` value as text, None if it is not a list. Raises
    ``msgspec.DecodeError`` for JSON that msgspec does not read (too deep, bad escapes)."""
    if raw[:1] != b"[":
        return None
    return tuple(text_of(bytes(item)) for item in _decode_list(raw))


@lru_cache(maxsize=1024)
def tag_members(tags: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The document's members for a list of tags: ``falco_tags``, and the MITRE technique
    ids and tactics among them when there are any. A rule's tags repeat, so this is cached;
    shared: copy, never change."""
    members = {"falco_tags": tags}
    techniques = tuple(t for t in tags if t[:1] == "T" and _TECHNIQUE.fullmatch(t))
    if techniques:
        members["falco_mitre_techniques"] = techniques
    tactics = tuple(t[6:] for t in tags if t[:6] == "mitre_")
    if tactics:
        members["falco_mitre_tactics"] = tactics
    return members


@lru_cache(maxsize=8)
def ingest_time(now_ns: int) -> str:
    return format_ns(now_ns)[0]
