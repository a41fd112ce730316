"""A batch: normalised documents, dead letters and the offsets they cover."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition

from ingest import contract
from ingest.normalize.document import Document, Limits, Lineage, Rejection, normalize
from ingest.sink.dlq import DeadLetter


def lineage_of(record: ConsumerRecord) -> Lineage:
    headers = record.headers
    if not headers:
        return Lineage(record.topic, record.partition, record.offset)
    agent = {k: v.decode(errors="replace") for k, v in headers if k.startswith("falco-ingest.")}
    return Lineage(
        record.topic,
        record.partition,
        record.offset,
        agent.get(contract.HOST),
        agent.get(contract.VERSION),
        agent.get(contract.INPUT),
        agent.get(contract.RECEIVED),
    )


@dataclass
class Batch:
    docs: list[Document] = field(default_factory=list)
    sources: list[ConsumerRecord] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    size: int = 0
    nbytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(
        self, tp: TopicPartition, records: list[ConsumerRecord], now_ns: int, limits: Limits
    ) -> None:
        """Normalise one partition's fetched ``records`` into this batch."""
        if not records:
            return
        if self.size == 0:
            self.started = time.monotonic()
        self.size += len(records)
        self.ends[tp] = records[-1].offset + 1
        for record in records:
            value = record.value if record.value is not None else b""
            result = normalize(value, lineage_of(record), now_ns, limits)
            if isinstance(result, Rejection):
                self.letters.append(dead_letter(record, result.reason, "normalize", result.detail))
                continue
            self.docs.append(result)
            self.sources.append(record)
            self.nbytes += len(result.body) + 100

    def full(self, max_docs: int, max_bytes: int) -> bool:
        return self.size >= max_docs or self.nbytes >= max_bytes

    def due(self, max_docs: int, max_bytes: int, linger_s: float) -> bool:
        if self.size == 0:
            return False
        return self.full(max_docs, max_bytes) or time.monotonic() - self.started >= linger_s


def dead_letter(record: ConsumerRecord, reason: str, stage: str, detail: str) -> DeadLetter:
    return DeadLetter(
        value=record.value if record.value is not None else b"",
        key=record.key,
        reason=reason,
        stage=stage,
        detail=detail,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
