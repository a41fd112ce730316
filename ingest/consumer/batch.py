"""A batch: normalised documents, dead letters and the offsets they cover."""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import orjson
from aiokafka import TopicPartition

from ingest import contract, metrics
from ingest.consumer.records import Record
from ingest.normalize.document import Document, Limits, general, internal_error
from ingest.normalize.fast import FastPath
from ingest.sink.dlq import DeadLetter

log = logging.getLogger(__name__)


def agent_of(headers: Sequence[tuple[str, bytes | None]]) -> bytes | None:
    """The agent's lineage of a record, as a JSON object (None without any)."""
    if not headers:
        return None
    try:
        return _agent(tuple(headers))
    except TypeError:  # headers of another producer, in a form not hashable
        return _agent.__wrapped__(tuple(headers))


@lru_cache(maxsize=256)
def _agent(headers: tuple[tuple[str, bytes | None], ...]) -> bytes | None:
    """The agent's lineage, encoded again from the fields it has: what goes into a
    document is never a producer's bytes as they came. One read's records share their
    headers, so this runs once for them."""
    agent: dict[str, str] = {}
    for key, value in headers:
        if not isinstance(value, bytes):
            continue
        if key == contract.AGENT:
            agent.update(_lineage(value))
        elif (name := _OLD_KEYS.get(key)) is not None:
            agent[name] = value.decode(errors="replace")
    return orjson.dumps(agent) if agent else None


def _lineage(value: bytes) -> dict[str, str]:
    """The lineage fields of the agent's header; none if it is not a JSON object."""
    try:
        got = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(got, dict):
        return {}
    return {k: v for k in contract.LINEAGE if isinstance(v := got.get(k), str)}


_OLD_KEYS = {
    contract.HOST: "host",
    contract.VERSION: "version",
    contract.INPUT: "input",
    contract.RECEIVED: "received",
}


@dataclass
class Batch:
    docs: list[Document] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)  # the record of each document
    starts: list[int] = field(default_factory=list)  # the first document of each add()
    partitions: list[TopicPartition] = field(default_factory=list)  # ... and its partition
    letters: list[DeadLetter] = field(default_factory=list)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    firsts: dict[TopicPartition, int] = field(default_factory=dict)  # first offset read
    size: int = 0
    nbytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(
        self, tp: TopicPartition, records: Sequence[Record], now_ns: int, limits: Limits
    ) -> None:
        """Normalise one partition's fetched ``records`` into this batch."""
        if not records:
            return
        if self.size == 0:
            self.started = time.monotonic()
        self.size += len(records)
        self.ends[tp] = records[-1].offset + 1
        self.firsts.setdefault(tp, records[0].offset)
        topic, partition = tp.topic, tp.partition
        fast = FastPath(now_ns, limits, topic, partition).document
        docs, sources = self.docs, self.sources
        self.starts.append(len(docs))
        self.partitions.append(tp)
        nbytes = 0
        # The agent ships each host's alerts as record batches of their own, their headers
        # equal within a read: one compare, not a lookup that hashes the headers' fresh
        # keys and values on every record.
        last_headers: object = None
        agent = None
        for record in records:
            headers = record.headers
            if headers != last_headers:
                last_headers, agent = headers, agent_of(headers)
            value = record.value or b""
            # normalize() without its own call: the fast path, else the general one
            try:
                result = fast(value, record.offset, agent) or general(
                    value, (topic, partition, record.offset, agent), now_ns, limits
                )
            except Exception as exc:  # noqa: BLE001 - a record never stops the consumer
                result = internal_error(exc)
                log.error(
                    "normalising raised; the record is dead-lettered (a bug to report)",
                    extra={"partition": str(tp), "offset": record.offset, "error": result.detail},
                )
                metrics.NORMALIZE_ERRORS.inc()
            if isinstance(result, Document):
                docs.append(result)
                sources.append(record)
                nbytes += len(result.body)
            else:
                self.letters.append(
                    dead_letter(record, tp, result.reason, "normalize", result.detail)
                )
        self.nbytes += nbytes + 100 * len(records)

    def letter(self, i: int, reason: str, stage: str, detail: str) -> DeadLetter:
        """The dead letter of the record of ``docs[i]``."""
        return dead_letter(self.sources[i], self.partition_of(i), reason, stage, detail)

    def partition_of(self, i: int) -> TopicPartition:
        """The partition of the record of ``docs[i]``."""
        return self.partitions[bisect_right(self.starts, i) - 1]

    def full(self, max_docs: int, max_bytes: int) -> bool:
        return self.size >= max_docs or self.nbytes >= max_bytes

    def due(self, max_docs: int, max_bytes: int, linger_s: float) -> bool:
        if self.size == 0:
            return False
        return self.full(max_docs, max_bytes) or time.monotonic() - self.started >= linger_s


def dead_letter(
    record: Record, tp: TopicPartition, reason: str, stage: str, detail: str
) -> DeadLetter:
    return DeadLetter(
        value=record.value if record.value is not None else b"",
        key=record.key,
        reason=reason,
        stage=stage,
        detail=detail,
        topic=tp.topic,
        partition=tp.partition,
        offset=record.offset,
        source_headers=tuple(record.headers or ()),
    )
