"""The dead-letter topic: original bytes and headers unchanged, the reason and the source in
headers of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest import metrics
from ingest.config import KafkaSettings
from ingest.errors import DeadLetterError
from ingest.retry import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    value: bytes
    key: bytes | None
    reason: str
    stage: str  # normalize | index
    detail: str
    topic: str
    partition: int
    offset: int
    source_headers: tuple[tuple[str, bytes | None], ...] = ()

    def headers(self) -> list[tuple[str, bytes | None]]:
        """The record's own headers (the agent's lineage among them, so a replay keeps it),
        then the dead letter's. The ``dlq.*`` ones of an earlier dead letter of the same alert
        (replayed, and refused again) are left out: each dead letter says why this time, and
        an alert that goes round does not gather headers."""
        kept = [(k, v) for k, v in self.source_headers if not k.startswith("dlq.")]
        return kept + [
            ("dlq.reason", self.reason.encode()),
            ("dlq.stage", self.stage.encode()),
            ("dlq.detail", self.detail.encode()[:1000]),
            ("dlq.source.topic", self.topic.encode()),
            ("dlq.source.partition", str(self.partition).encode()),
            ("dlq.source.offset", str(self.offset).encode()),
        ]


def make_producer(kafka: KafkaSettings, **extra: object) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **kafka.client_kwargs(),
        acks="all",
        enable_idempotence=True,
        compression_type=None if kafka.compression == "none" else kafka.compression,
        linger_ms=5,
        **extra,
    )


class DeadLetterQueue:
    def __init__(self, producer: AIOKafkaProducer, topic: str, retry_max_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self._retry_max = retry_max_s

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Return only when Kafka acknowledged every letter; retries until then."""
        if not letters:
            return
        async for attempt in retrying(0.2, self._retry_max, log, logging.ERROR):
            with attempt:
                await self._send_once(letters)
        for letter in letters:
            metrics.DEAD_LETTERED.labels(letter.reason).inc()

    async def _send_once(self, letters: Sequence[DeadLetter]) -> None:
        try:
            futures = [
                await self.producer.send(
                    self.topic, value=dl.value, key=dl.key, headers=dl.headers()
                )
                for dl in letters
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise DeadLetterError(f"dead-letter topic {self.topic}: {exc}") from exc
