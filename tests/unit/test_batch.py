"""A batch from Kafka records: lineage from the agent's headers, rejections to dead letters."""

import time

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.record.default_records import DefaultRecord
from aiokafka.structs import ConsumerRecord

from ingest import __version__, contract
from ingest.agent.sender import agent_header
from ingest.consumer.batch import Batch
from ingest.normalize.document import Limits
from ingest.normalize.timestamps import format_ns

TP = TopicPartition("falco.events", 3)
NOW = time.time_ns()
ALERT = orjson.dumps({"rule": "r", "priority": "Debug", "time": format_ns(NOW)[0], "output": "x"})
RECEIVED = "2026-11-26T10:00:00.000000000Z"
LINEAGE = {"host": "node-a", "version": "0.1.0", "input": "file:/var/log/falco.json"}


def agent(host: str = "node-a", received: str = RECEIVED) -> tuple:
    """The agent's headers: its lineage as one JSON header, and another producer's."""
    lineage = orjson.dumps({**LINEAGE, "host": host, "received": received})
    return ((contract.AGENT, lineage), ("traceparent", b"00-abc-01"))


AGENT = agent()
OLD_AGENT = (  # earlier agents: the lineage in four headers
    (contract.HOST, b"node-a"),
    (contract.VERSION, b"0.1.0"),
    (contract.INPUT, b"file:/var/log/falco.json"),
    (contract.RECEIVED, RECEIVED.encode()),
    ("traceparent", b"00-abc-01"),
)


def record(offset: int, value: bytes | None, headers=()) -> ConsumerRecord:
    size = len(value) if value is not None else -1
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, None, value, None, -1, size, headers
    )


def ingest_of(batch: Batch, i: int) -> dict:
    return orjson.loads(batch.docs[i].body)["@ingest"]


@pytest.mark.parametrize("headers", [AGENT, OLD_AGENT], ids=["one header", "four headers"])
def test_lineage_from_kafka_and_the_agent_headers(headers):
    batch = Batch()
    batch.add(TP, [record(7, ALERT, headers), record(8, ALERT)], NOW, Limits())
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


def test_an_older_agents_four_headers_make_the_same_document():
    """A fleet mid-upgrade: both forms of lineage give byte-equal documents."""
    new, old = Batch(), Batch()
    new.add(TP, [record(7, ALERT, AGENT)], NOW, Limits())
    old.add(TP, [record(7, ALERT, OLD_AGENT)], NOW, Limits())
    assert new.docs[0].body == old.docs[0].body


def test_the_header_the_agent_writes_is_the_lineage_the_document_carries():
    name, value = agent_header("node-z", "stdin", NOW)
    batch = Batch()
    batch.add(TP, [record(0, ALERT, [(name, value)])], NOW, Limits())
    assert ingest_of(batch, 0)["agent"] == {
        "host": "node-z",
        "version": __version__,
        "input": "stdin",
        "received": format_ns(NOW)[0],
    }


@pytest.mark.parametrize(
    "value",
    [b"{", b"[1]", b'"node-a"', b"null", b'{"host": 7, "input": ["x"]}', b"\xff\xfe"],
)
def test_an_agent_header_that_is_not_a_lineage_object_is_not_lineage(value):
    batch = Batch()
    batch.add(TP, [record(0, ALERT, [(contract.AGENT, value)])], NOW, Limits())
    assert len(batch.docs) == 1 and "agent" not in ingest_of(batch, 0)


def test_only_the_lineage_fields_of_the_agent_header_are_copied():
    """The header's bytes never go into a document as they came: what is not a lineage
    field (or not a string) stays out, and the rest is encoded again."""
    value = b'{"host": "h", "received": 5, "x": "y", "input": "in\\u0000"}'
    batch = Batch()
    batch.add(TP, [record(0, ALERT, [(contract.AGENT, value)])], NOW, Limits())
    assert ingest_of(batch, 0)["agent"] == {"host": "h", "input": "in\x00"}


def test_each_record_gets_the_lineage_of_its_own_headers_when_they_change():
    """Consecutive records with equal headers share their lineage; any change is seen."""
    other = agent(host="node-b")
    heads = [AGENT, AGENT, other, (), OLD_AGENT, other, other]
    batch = Batch()
    batch.add(TP, [record(i, ALERT, h) for i, h in enumerate(heads)], NOW, Limits())
    hosts = [ingest_of(batch, i).get("agent", {}).get("host") for i in range(len(heads))]
    assert hosts == ["node-a", "node-a", "node-b", None, "node-a", "node-b", "node-b"]


def test_interleaved_hosts_each_get_the_lineage_of_their_own_headers():
    """Hosts' records interleave in a partition; a host's next read (a new ``received``)
    gets its own lineage, and a host's earlier headers their own again."""
    a1, a2 = agent("a", "2026-11-26T10:00:01Z"), agent("a", "2026-11-26T10:00:02Z")
    b1 = agent("b", "2026-11-26T10:00:01Z")
    heads = [a1, b1, a2, b1, a1, [], a2]
    batch = Batch()
    batch.add(TP, [record(i, ALERT, h) for i, h in enumerate(heads)], NOW, Limits())
    got = [ingest_of(batch, i).get("agent", {}) for i in range(len(heads))]
    assert [(g.get("host"), g.get("received")) for g in got] == [
        ("a", "2026-11-26T10:00:01Z"),
        ("b", "2026-11-26T10:00:01Z"),
        ("a", "2026-11-26T10:00:02Z"),
        ("b", "2026-11-26T10:00:01Z"),
        ("a", "2026-11-26T10:00:01Z"),
        (None, None),
        ("a", "2026-11-26T10:00:02Z"),
    ]


def test_headers_of_other_producers_are_not_lineage():
    odd = [("traceparent", b"x"), (contract.HOST, None), (contract.AGENT, None), ("l", [1])]
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


def test_a_dead_letter_keeps_its_records_headers_but_not_an_earlier_dead_letters():
    """The agent's header stays with the alert into the DLQ (a replay keeps its lineage);
    the reason of an earlier round does not (each dead letter says why this time)."""
    earlier = [("dlq.reason", b"bad_priority"), ("dlq.replayed.stage", b"normalize")]
    batch = Batch()
    batch.add(TP, [record(5, b"{", [*AGENT, *earlier])], NOW, Limits())
    headers = batch.letters[0].headers()
    assert headers[: len(AGENT)] == list(AGENT)
    assert [v for k, v in headers if k == "dlq.reason"] == [b"invalid_json"]
    assert [k for k, _ in headers if k.startswith("dlq.")] == [
        "dlq.reason",
        "dlq.stage",
        "dlq.detail",
        "dlq.source.topic",
        "dlq.source.partition",
        "dlq.source.offset",
    ]


def test_aiokafka_decoded_records_make_the_batch_consumer_records_make():
    """The consumer's client hands over aiokafka's decoded records (headers a list, no
    topic or partition); the batch is the same as from ConsumerRecords."""
    other = agent(host="node-b")
    rows = [
        (0, ALERT, AGENT),
        (1, b"{", ()),
        (2, ALERT, OLD_AGENT),
        (3, ALERT, other),
        (4, None, ()),
    ]

    def batch_of(records: list) -> Batch:
        batch = Batch()
        batch.add(TP, records, NOW, Limits())
        return batch

    made = batch_of([record(o, v, h) for o, v, h in rows])
    decoded = batch_of([DefaultRecord(o, 0, 0, None, v, list(h)) for o, v, h in rows])
    assert [(d.doc_id, d.day, d.body) for d in decoded.docs] == [
        (d.doc_id, d.day, d.body) for d in made.docs
    ]
    assert decoded.letters == made.letters and len(made.letters) == 2
    assert [r.offset for r in decoded.sources] == [0, 2, 3]
    assert (decoded.size, decoded.nbytes, decoded.ends) == (made.size, made.nbytes, made.ends)


def test_a_document_refused_at_index_time_is_dead_lettered_with_its_own_partition():
    """Records of several partitions in one batch, one fetch all refused: each document's
    dead letter names the topic, partition and offset of its own record."""
    a, b, c = (TopicPartition("falco.events", p) for p in (0, 4, 5))
    batch = Batch()
    batch.add(a, [record(10, ALERT), record(11, ALERT)], NOW, Limits())
    batch.add(b, [record(20, b"{")], NOW, Limits())  # no document from this one
    batch.add(c, [record(30, ALERT), record(31, ALERT)], NOW, Limits())
    batch.add(a, [record(12, ALERT)], NOW, Limits())
    where = [
        (x.topic, x.partition, x.offset)
        for x in (
            batch.letter(i, "opensearch_mapper_parsing_exception", "index", "d")
            for i in range(len(batch.docs))
        )
    ]
    assert where == [
        ("falco.events", 0, 10),
        ("falco.events", 0, 11),
        ("falco.events", 5, 30),
        ("falco.events", 5, 31),
        ("falco.events", 0, 12),
    ]
    assert [(x.partition, x.offset) for x in batch.letters] == [(4, 20)]


def test_a_record_on_which_normalising_raises_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch,
):
    """A bug in the normalisers meets one record: that record is dead-lettered with the
    exception, the records around it are stored, nothing raises."""
    from ingest import metrics
    from ingest.consumer import batch as batch_module

    real = batch_module.general

    def general(value, *args):
        if value == b'{"boom":1}':
            raise KeyError("boom")
        return real(value, *args)

    monkeypatch.setattr(batch_module, "general", general)
    before = metrics.NORMALIZE_ERRORS._value.get()
    batch = Batch()
    batch.add(TP, [record(0, ALERT), record(1, b'{"boom":1}'), record(2, ALERT)], NOW, Limits())
    assert [s.offset for s in batch.sources] == [0, 2]
    assert [(d.offset, d.reason, d.detail) for d in batch.letters] == [
        (1, "internal_error", "KeyError: 'boom'")
    ]
    assert metrics.NORMALIZE_ERRORS._value.get() == before + 1
