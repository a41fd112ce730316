"""A batch from Kafka records: lineage from the agent's headers, rejections to dead letters."""

import time

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ingest import contract
from ingest.consumer.batch import Batch
from ingest.normalize.document import Limits
from ingest.normalize.timestamps import format_ns

TP = TopicPartition("falco.events", 3)
NOW = time.time_ns()
ALERT = orjson.dumps({"rule": "r", "priority": "Debug", "time": format_ns(NOW)[0], "output": "x"})
AGENT = (
    (contract.HOST, b"node-a"),
    (contract.VERSION, b"0.1.0"),
    (contract.INPUT, b"file:/var/log/falco.json"),
    (contract.RECEIVED, b"2026-11-26T10:00:00.000000000Z"),
    ("traceparent", b"00-abc-01"),
)


def record(offset: int, value: bytes | None, headers=()) -> ConsumerRecord:
    size = len(value) if value is not None else -1
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, None, value, None, -1, size, headers
    )


def ingest_of(batch: Batch, i: int) -> dict:
    return orjson.loads(batch.docs[i].body)["@ingest"]


def test_lineage_from_kafka_and_the_agent_headers():
    batch = Batch()
    batch.add(TP, [record(7, ALERT, AGENT), record(8, ALERT)], NOW, Limits())
    first, second = ingest_of(batch, 0), ingest_of(batch, 1)
    assert (first["topic"], first["partition"], first["offset"]) == ("falco.events", 3, 7)
    assert first["agent"] == {
        "host": "node-a",
        "version": "0.1.0",
        "input": "file:/var/log/falco.json",
        "received": "2026-11-26T10:00:00.000000000Z",
    }
    assert second["offset"] == 8 and "agent" not in second
    assert batch.ends == {TP: 9} and batch.size == 2


def test_each_record_gets_the_lineage_of_its_own_headers_when_they_change():
    """Consecutive records with equal headers share their lineage; any change is seen."""
    other = tuple((k, b"node-b" if k == contract.HOST else v) for k, v in AGENT)
    heads = [AGENT, AGENT, other, (), AGENT, other, other]
    batch = Batch()
    batch.add(TP, [record(i, ALERT, h) for i, h in enumerate(heads)], NOW, Limits())
    hosts = [ingest_of(batch, i).get("agent", {}).get("host") for i in range(len(heads))]
    assert hosts == ["node-a", "node-a", "node-b", None, "node-a", "node-b", "node-b"]


def test_headers_of_other_producers_are_not_lineage():
    odd = [("traceparent", b"x"), (contract.HOST, None), ("list", [1])]  # not hashable
    batch = Batch()
    batch.add(TP, [record(0, ALERT, odd), record(1, ALERT, (("k", b"v"),))], NOW, Limits())
    assert "agent" not in ingest_of(batch, 0)
    assert "agent" not in ingest_of(batch, 1)


def test_rejections_become_dead_letters_with_their_record():
    batch = Batch()
    batch.add(TP, [record(0, b"{"), record(1, None), record(2, ALERT)], NOW, Limits())
    assert len(batch.docs) == 1 and batch.sources[0].offset == 2
    assert [(d.offset, d.reason, d.stage, d.value) for d in batch.letters] == [
        (0, "invalid_json", "normalize", b"{"),
        (1, "invalid_json", "normalize", b""),
    ]
    assert batch.size == 3 and batch.ends == {TP: 3}
