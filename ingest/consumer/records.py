"""The consumer's Kafka client, and the records it hands over as aiokafka decodes them.

aiokafka makes a ``ConsumerRecord`` of every record it reads: a dataclass of eleven fields
filled from the decoded record, two ``len`` calls and a tuple of its headers: a large
share of all the consumer does per alert (bench/README.md has the count), to copy values
the decoded record holds already. The consumer reads
``offset``, ``key``, ``value`` and ``headers``, which aiokafka's decoded records have too
(topic and partition come with the fetched partition), so its client gets those.

The shortcut is aiokafka's ``PartitionRecords._consumer_record``, wrapped: for a client
made with ``value_deserializer=raw_value`` it returns the decoded record, for any other
client in the process (the DLQ replay, tests) it does what it did. It is installed only
where that method and the attribute it reads are as this expects; with any other aiokafka
nothing is changed, and ``raw_value`` is a deserializer that returns the value as it is,
so the consumer gets ConsumerRecords and works the same, only slower.
``tests/unit/test_records.py`` fails when the installed aiokafka no longer takes it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer import fetcher

from ingest.config import ConsumerSettings

log = logging.getLogger(__name__)


class Record(Protocol):
    """What the consumer reads of a record; ConsumerRecord has it, and so has the
    decoded record of aiokafka's ``record`` package."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def raw_value(value: bytes | None) -> bytes | None:
    """The consumer's value deserializer: marks its client for the shortcut, and without
    the shortcut leaves the value as it is."""
    return value


def install() -> bool:
    """Wrap ``PartitionRecords._consumer_record`` once; False when aiokafka's is not in
    the form this expects (nothing is changed then)."""
    records = fetcher.PartitionRecords
    original = records.__dict__.get("_consumer_record")
    if getattr(original, "_ingest_raw", False):
        return True
    if not _expected(records, original):
        log.info("aiokafka records are made into ConsumerRecords (shortcut not installed)")
        return False

    @functools.wraps(original)
    def _consumer_record(self: Any, tp: Any, record: Any) -> Any:
        if self._value_deserializer is raw_value:
            return record
        return original(self, tp, record)

    _consumer_record._ingest_raw = True  # type: ignore[attr-defined]
    records._consumer_record = _consumer_record
    return True


def _expected(records: type, original: object) -> bool:
    """The method takes (self, tp, record) and the deserializer is where it reads it."""
    if not inspect.isfunction(original):
        return False
    params = list(inspect.signature(original).parameters)
    init = records.__dict__.get("__init__")
    return (
        params == ["self", "tp", "record"]
        and "_value_deserializer" in original.__code__.co_names
        and inspect.isfunction(init)
        and "_value_deserializer" in init.__code__.co_names
    )


def make_consumer(settings: ConsumerSettings) -> AIOKafkaConsumer:
    """The consumer's Kafka client: manual commits, from the earliest offset of a new group,
    records as aiokafka decodes them."""
    install()
    k = settings.kafka
    return AIOKafkaConsumer(
        **k.client_kwargs(),
        group_id=k.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.consumer.session_timeout_ms,
        heartbeat_interval_ms=min(3000, settings.consumer.session_timeout_ms // 3),
        # The coordinator holds a JoinGroup until every member has rejoined, up to the
        # rebalance timeout; a client that gives up first (aiokafka's 40 s default against
        # a 45 s rebalance) misses the new generation and must join again. The chaos run
        # (bench/chaos.py) logged such JoinGroup timeouts with SIGKILLed members in the
        # group. The Java client waits the rebalance timeout and 5 s more.
        rebalance_timeout_ms=settings.consumer.session_timeout_ms,
        request_timeout_ms=settings.consumer.session_timeout_ms + 5000,
        max_partition_fetch_bytes=1024 * 1024,
        value_deserializer=raw_value,
    )
