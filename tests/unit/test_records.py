"""The consumer's client gets aiokafka's decoded records; every other client ConsumerRecords."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord

from ingest.consumer import records
from ingest.consumer.records import install, raw_value

TP = TopicPartition("falco.events", 2)
ROWS = [
    (40, b"k1", b'{"rule":"a"}', [("falco-ingest-host", b"node-a")]),
    (41, None, b'{"rule":"b"}', []),
    (42, b"k3", None, [("x", None)]),
]


def fetched(deserializer: object) -> list:
    """ROWS as one record batch of a fetch, read back the way aiokafka's fetcher does."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, key, value, headers in ROWS:
        builder.append(offset - 40, timestamp=1, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[0:8] = (40).to_bytes(8, "big")  # the batch's base offset, as the broker sets it
    parts = fetcher.PartitionRecords(
        TP, MemoryRecords(bytes(data)), [], 40, None, deserializer, True, 0
    )
    return list(parts)


def test_the_installed_aiokafka_takes_the_shortcut():
    """Fails when an aiokafka upgrade changes the method it wraps: the consumer would then
    get ConsumerRecords again (correct, and ~6,000 instructions a record slower)."""
    assert install() is True
    assert install() is True  # once: a second call does not wrap the wrapper
    method = fetcher.PartitionRecords._consumer_record
    assert method._ingest_raw is True
    assert not getattr(method.__wrapped__, "_ingest_raw", False)


def test_the_consumer_gets_decoded_records_with_what_it_reads():
    install()
    got = fetched(raw_value)
    assert not any(isinstance(r, ConsumerRecord) for r in got)
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in got] == [
        (o, k, v, h) for o, k, v, h in ROWS
    ]


def test_other_clients_still_get_consumer_records():
    install()
    for deserializer in (None, lambda value: value):
        got = fetched(deserializer)
        assert all(isinstance(r, ConsumerRecord) for r in got)
        assert [(r.topic, r.partition, r.offset, r.key) for r in got] == [
            (TP.topic, TP.partition, o, k) for o, k, _, _ in ROWS
        ]


def test_raw_value_leaves_the_value_as_it_is():
    """Without the shortcut aiokafka calls it on each value: the consumer is unchanged."""
    value = b'{"rule":"a"}'
    assert raw_value(value) is value and raw_value(None) is None


def test_a_method_of_another_form_is_left_alone():
    class Other:
        def __init__(self) -> None:
            self._value_deserializer = None

        def _consumer_record(self, record: object) -> object:  # no tp
            return record

    class NoDeserializer:
        def __init__(self) -> None:
            self.deserialize = None

        def _consumer_record(self, tp: object, record: object) -> object:
            return record

    assert not records._expected(Other, Other.__dict__["_consumer_record"])
    assert not records._expected(NoDeserializer, NoDeserializer.__dict__["_consumer_record"])
    assert records._expected(fetcher.PartitionRecords, _original())


def _original() -> object:
    method = fetcher.PartitionRecords._consumer_record
    return getattr(method, "__wrapped__", method)
