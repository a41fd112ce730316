"""Falco's own alerts, normalised without parsing ``output_fields`` or serialising it again.

Nearly every alert has one shape: ``rule``, ``priority``, ``time``, ``output`` as strings,
``output_fields``, and maybe ``source``, ``hostname``, ``tags`` and Falcosidekick's ``uuid``.
It is decoded into a typed struct in which ``output_fields`` stays the alert's own JSON bytes
(``msgspec.Raw``: checked, never made into objects), and the document is written as bytes
around them, compact; the fields a rule fixes (its name, priority, host, source, tags) are
encoded once per rule and host. Anything else returns None and takes ``document.general``,
which makes the same bytes; ``tests/unit/test_fast.py`` holds the two to that.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
import orjson

from ingest.normalize.model import (
    CF_KEYS,
    MAX_VALUE_BYTES,
    PRIORITIES,
    Document,
    Limits,
    Lineage,
    compact,
    content_id,
    id_middle,
    ingest_time,
    tag_members,
    tags_of,
)
from ingest.normalize.timestamps import (
    canonical_ns,
    format_ns,
    json_second,
    parse_rfc3339,
    seconds_window,
)


class _Alert(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    rule: str
    priority: str
    time: msgspec.Raw  # its JSON: Falco's form is read and written as these bytes
    output: msgspec.Raw
    output_fields: msgspec.Raw = msgspec.Raw(b"{}")
    source: str | None = None
    hostname: str | None = None
    tags: msgspec.Raw = msgspec.Raw(b"null")
    uuid: str | None = None


# The Cloud Foundry keys of output_fields (docs/document.md), read from its JSON without
# the rest, their values kept as written.
_CloudFoundry = msgspec.defstruct(
    "_CloudFoundry",
    [(key, msgspec.Raw, msgspec.UNSET) for key in sorted(CF_KEYS)],
    omit_defaults=True,
)
_NO_CF = _CloudFoundry()
_decode = msgspec.json.Decoder(_Alert).decode
_decode_cf = msgspec.json.Decoder(_CloudFoundry).decode
_encode = msgspec.json.Encoder().encode


def common_alert(
    raw: bytes, lineage: Lineage | None, now_ns: int, limits: Limits
) -> Document | None:
    """The document of an alert of Falco's own shape, or None for ``document.general``."""
    if lineage is None:
        return FastPath(now_ns, limits, None, 0).document(raw, None, None)
    topic, partition, offset, agent = lineage
    return FastPath(now_ns, limits, topic, partition).document(raw, offset, agent)


class FastPath:
    """``common_alert`` for the records of one partition fetched at one moment: what they
    share (the window of event times kept, the ``@ingest`` head) is worked out once, not
    per alert (two cached lookups by several ints per alert were a measurable share)."""

    __slots__ = ("_now_ns", "_limits", "_lo", "_hi", "_head")

    def __init__(self, now_ns: int, limits: Limits, topic: str | None, partition: int) -> None:
        self._now_ns = now_ns
        self._limits = limits
        self._lo, self._hi = seconds_window(now_ns, limits.max_age_ns, limits.max_future_ns)
        self._head = _lineage_head(now_ns, topic, partition)

    def document(self, raw: bytes, offset: int | None, agent: bytes | None) -> Document | None:
        """The document of the alert at ``offset`` (None: no Kafka lineage), or None."""
        # Non-ASCII bytes (Raw does not check their UTF-8) and long alerts (values to
        # shorten) go the general way.
        if len(raw) > MAX_VALUE_BYTES or not raw.isascii():
            return None
        try:
            alert = _decode(raw)
            fields = compact(alert.output_fields)
            cloud_foundry = _decode_cf(fields)  # and output_fields is an object
        except (msgspec.DecodeError, RecursionError):  # with ValidationError: another shape
            return None
        # What the rule on this host fixes, made for the same priority, source and tags.
        hosts = _BY_RULE.get(alert.rule)
        seen = hosts.get(alert.hostname) if hosts is not None else None
        if (
            seen is not None
            and seen[0] == alert.priority
            and seen[1] == alert.source
            and seen[2] == alert.tags
        ):
            fixed = seen[3]
        else:
            fixed = _SEEN.remember(alert)
        message = bytes(alert.output)  # its JSON, checked by msgspec
        if fixed is None or message[:1] != b'"':
            return None
        # Escapes: the id is made from the text they stand for. (A backslash looked for as
        # the int 92 is a memchr; as b"\\" CPython first fails to read it as an int.)
        if 92 in message:
            try:
                text = orjson.loads(message).encode()
            except orjson.JSONDecodeError:  # a lone surrogate, which Raw lets through
                return None
        else:  # ASCII without escapes: the JSON string's bytes are the text's UTF-8
            text = message[1:-1]
        # Falco's own time, "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", read as bytes with no
        # arithmetic on its nanoseconds: at 19 digits they are a multi-digit int, and
        # parsing, multiplying and printing one cost more than all of this.
        stamp = bytes(alert.time)
        second = json_second(stamp[:21]) if len(stamp) == 32 and stamp[30:] == b'Z"' else None
        nanos = stamp[21:30]
        if second is not None and nanos.isdigit():  # bytes.isdigit: ASCII digits only
            secs, day, digits = second
            digits += nanos  # of the epoch nanoseconds: what the id hashes
            if not self._lo <= secs < self._hi and not self._within(int(digits)):
                return None
        else:  # any other form, or a time that is not a string (left to the general path)
            other = _other_time(stamp)
            if other is None or not self._within(other[0]):
                return None
            ns, stamp, day = other
            digits = b"%d" % ns
        members, middle = fixed
        parts = [
            b'{"@timestamp":',
            stamp,
            b',"@type":"falco","@message":',
            message,
            members,
            b',"output_fields":',
            fields,
        ]
        if alert.uuid is not None:
            parts += (b',"falco_sidekick_uuid":', orjson.dumps(alert.uuid))
        if cloud_foundry != _NO_CF:
            parts += (b',"@cf":', _encode(cloud_foundry))
        parts.append(self._head)
        if offset is not None:
            parts.append(b"%d" % offset)
            if agent is not None:
                parts += (b',"agent":', agent)
        parts.append(b"}}\n")  # as ingest_member() ends it
        return Document(content_id(digits, middle, text), day, b"".join(parts))

    def _within(self, ns: int) -> bool:
        """The exact check, for times in the window's border seconds."""
        limits = self._limits
        return self._now_ns - limits.max_age_ns <= ns <= self._now_ns + limits.max_future_ns


def _other_time(stamp: bytes) -> tuple[int, bytes, str] | None:
    """A JSON string holding an RFC 3339 time not as Falco writes it (trimmed, offset,
    escaped): its nanoseconds, its JSON in the document and its index day."""
    try:
        text = orjson.loads(stamp)
    except orjson.JSONDecodeError:
        return None
    if type(text) is not str:
        return None
    ns = canonical_ns(text)
    if ns is not None:  # Falco's form behind escapes: kept, as the general path keeps it
        return ns, orjson.dumps(text), text[:10].replace("-", ".")
    ns = parse_rfc3339(text)
    if ns is None or not 0 <= ns:
        return None
    timestamp, day = format_ns(ns)
    return ns, b'"%b"' % timestamp.encode(), day


class _Seen:
    """The cache of ``_fixed``, by rule, then host name, with the priority, source and tags
    it was made for: a lookup costs two hashes and three compares. (An ``lru_cache`` keyed
    by all five would hash five strings the decoder has just made, on every alert.) At most
    ``capacity`` entries: when full it starts again."""

    def __init__(self, capacity: int) -> None:
        self.by_rule: dict[str, dict[str | None, _Entry]] = {}
        self.size = 0
        self.capacity = capacity

    def remember(self, alert: _Alert) -> tuple[bytes, bytes] | None:
        """``_fixed`` of ``alert``, kept for the alerts of its rule and host after it."""
        try:
            tags = tags_of(bytes(alert.tags))
        except (msgspec.DecodeError, RecursionError):
            return None  # left to the general path, which says why
        fixed = _fixed(alert.rule, alert.priority, alert.hostname, alert.source, tags)
        if self.size >= self.capacity:
            self.by_rule.clear()  # in place: the fast path holds this dict
            self.size = 0
        hosts = self.by_rule.setdefault(alert.rule, {})
        self.size += alert.hostname not in hosts
        # A copy: the decoded Raw is a view of the alert's bytes, which it would keep.
        hosts[alert.hostname] = (alert.priority, alert.source, alert.tags.copy(), fixed)
        return fixed


_Entry = tuple[str, str | None, msgspec.Raw, tuple[bytes, bytes] | None]
_SEEN = _Seen(8192)
_BY_RULE = _SEEN.by_rule


def _fixed(
    rule: str, priority: str, hostname: str | None, source: str | None, tags: tuple[str, ...] | None
) -> tuple[bytes, bytes] | None:
    """What a rule on a host fixes: its members of the document and its part of the id's
    material. None if the rule or priority is not one."""
    known = PRIORITIES.get(priority)
    if known is None or not rule.strip():
        return None
    members = fixed_members(rule, known, hostname, source, tags)
    return members, id_middle(hostname, rule, known[0], source)


def fixed_members(
    rule: str,
    priority: tuple[int, str],
    hostname: str | None,
    source: str | None,
    tags: tuple[str, ...] | None,
) -> bytes:
    """The document's members of a rule, its priority, host, source and tags, encoded,
    each after a comma."""
    number, name = priority
    part: dict[str, object] = {
        "falco_rule": rule,
        "falco_priority": number,
        "falco_priority_name": name,
    }
    if hostname is not None:
        part["falco_hostname"] = hostname
    if source is not None:
        part["falco_source"] = source
    if tags is not None:
        part.update(tag_members(tags))
    return b"," + orjson.dumps(part)[1:-1]


def ingest_member(now_ns: int, lineage: Lineage | None) -> bytes:
    """The ``@ingest`` member and the document's end."""
    if lineage is None:
        return _lineage_head(now_ns, None, 0) + b"}}\n"
    topic, partition, offset, agent = lineage
    head = _lineage_head(now_ns, topic, partition)
    if agent is None:
        return b"%b%d}}\n" % (head, offset)
    return b'%b%d,"agent":%b}}\n' % (head, offset, agent)


@lru_cache(maxsize=64)
def _lineage_head(now_ns: int, topic: str | None, partition: int) -> bytes:
    """The ``@ingest`` member up to the offset (or whole, without a topic)."""
    head = b',"@ingest":{"time":"%s"' % ingest_time(now_ns).encode()
    if topic is None:
        return head
    return head + b',"topic":%s,"partition":%d,"offset":' % (orjson.dumps(topic), partition)
