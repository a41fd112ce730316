"""The dead-letter topic: original bytes and headers unchanged, the reason and the source in
headers of its own."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from ingest import metrics
from ingest.config import KafkaSettings
from ingest.errors import AccessRefused, DeadLetterError
from ingest.retry import retrying

log = logging.getLogger(__name__)
# What Kafka answers to credentials or ACLs that do not allow a write: no retry helps.
KAFKA_REFUSALS = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


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
    original: tuple[int, str] | None = None  # size and sha256 of a value shortened here

    def shortened(self, keep: int) -> DeadLetter:
        """This dead letter with the first ``keep`` bytes of its value, the value's size and
        sha256 in headers, and only the source headers of up to 1 KiB (all of them less
        than what a broker refuses). For a letter the DLQ topic refuses as too large."""
        value = self.value
        if self.original is None:
            original = (len(value), hashlib.sha256(value).hexdigest())
        else:
            original = self.original
        small = tuple((k, v) for k, v in self.source_headers if len(v or b"") <= 1024)
        return replace(self, value=value[:keep], source_headers=small, original=original)

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
            *self._original_headers(),
        ]

    def _original_headers(self) -> list[tuple[str, bytes | None]]:
        if self.original is None:
            return []
        size, sha256 = self.original
        return [
            ("dlq.original.size", str(size).encode()),
            ("dlq.original.sha256", sha256.encode()),
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
    """Sends dead letters with ``producer``. ``renew`` makes a new producer: an idempotent
    one whose batch the broker refused (too large) is out of sequence from then on, and
    every later send of it fails (OutOfOrderSequenceNumber), so it is replaced."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        retry_max_s: float = 30.0,
        renew: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self._retry_max = retry_max_s
        self._renew = renew

    async def _new_producer(self) -> None:
        if self._renew is None:
            return
        old, self.producer = self.producer, self._renew()
        await old.stop()
        await self.producer.start()

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Return only when Kafka acknowledged every letter; retries until then."""
        if not letters:
            return
        async for attempt in retrying(0.2, self._retry_max, log, logging.ERROR, "dead letter"):
            with attempt:
                await self._send_once(letters)
        for letter in letters:
            metrics.DEAD_LETTERED.labels(letter.reason).inc()

    async def _send_once(self, letters: Sequence[DeadLetter]) -> None:
        try:
            futures = [await self._enqueue(dl) for dl in letters]
            results = await asyncio.gather(*futures, return_exceptions=True)
            refused = [r for r in results if isinstance(r, MessageSizeTooLargeError)]
            failed = [r for r in results if isinstance(r, BaseException) and r not in refused]
            if failed:
                raise failed[0]
            if refused:
                await self._new_producer()
                for dl, result in zip(letters, results, strict=True):
                    if isinstance(result, MessageSizeTooLargeError):
                        # The broker refused its batch: alone, shortened if need be.
                        await self._send_alone(dl)
        except KAFKA_REFUSALS as exc:
            raise AccessRefused(f"Kafka refused the dead-letter topic {self.topic}: {exc}") from exc
        except KafkaError as exc:
            await self._new_producer()  # whatever its sequence is now, the next try starts anew
            raise DeadLetterError(f"dead-letter topic {self.topic}: {exc}") from exc

    async def _enqueue(self, dl: DeadLetter) -> asyncio.Future[object]:
        """Hand ``dl`` to the producer; one over its request size goes shortened."""
        try:
            return await self._produce(dl)
        except MessageSizeTooLargeError:
            return await self._produce(self._shorten(dl, SHORT_VALUE_BYTES))

    async def _send_alone(self, dl: DeadLetter) -> None:
        """Send ``dl`` and wait; shortened step by step while the topic refuses its size."""
        for keep in (None, SHORT_VALUE_BYTES, LAST_VALUE_BYTES):
            letter = dl if keep is None else self._shorten(dl, keep)
            try:
                await (await self._produce(letter))
                return
            except MessageSizeTooLargeError:
                await self._new_producer()
                continue
        raise DeadLetterTooLarge(
            f"dead-letter topic {self.topic} refuses even {LAST_VALUE_BYTES} bytes of a record "
            f"(source offset {dl.partition}/{dl.offset}): raise its max.message.bytes"
        )

    async def _produce(self, dl: DeadLetter) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await self.producer.send(
            self.topic, value=dl.value, key=dl.key, headers=dl.headers()
        )
        return future

    def _shorten(self, dl: DeadLetter, keep: int) -> DeadLetter:
        log.warning(
            "dead letter too large for the DLQ topic; kept shortened with its size and sha256",
            extra={
                "topic": self.topic,
                "source_offset": f"{dl.topic}/{dl.partition}/{dl.offset}",
                "bytes": len(dl.value),
                "kept": keep,
            },
        )
        metrics.DEAD_LETTERS_SHORTENED.inc()
        return dl.shortened(keep)


# What a shortened dead letter keeps of its record's value: first a bounded prefix, and a
# last resort under any broker's size limit.
SHORT_VALUE_BYTES = 64 * 1024
LAST_VALUE_BYTES = 1024


class DeadLetterTooLarge(DeadLetterError):
    """Not even a short dead letter fits the DLQ topic: an operator must raise its limit."""

    retriable = False
