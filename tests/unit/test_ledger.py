"""The ledger's entries: one per batch, its id from the records it covers, counting what was
created (not 409s) and dead-lettered per day, and nothing an earlier entry counted."""

from __future__ import annotations

import datetime as dt
import time

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ingest.consumer.account import account
from ingest.consumer.batch import Batch
from ingest.normalize.document import Limits
from ingest.normalize.timestamps import format_ns
from ingest.sink.bulk import BulkOutcome
from ingest.sink.ledger import Entry, index_body

TOPIC = "falco.events"
DAY_NS = 86_400 * 10**9
NOW = time.time_ns()
TODAY = dt.datetime.fromtimestamp(NOW / 10**9, dt.UTC).date()


def alert(n: int, ns: int) -> bytes:
    stamp = format_ns(ns)[0]
    return orjson.dumps({"rule": f"r{n}", "priority": "Debug", "time": stamp, "output": f"#{n}"})


def batch_of(partition: int, first: int, values: list[bytes]) -> Batch:
    tp = TopicPartition(TOPIC, partition)
    records = [
        ConsumerRecord(TOPIC, partition, first + i, 0, 0, None, v, None, -1, len(v), ())
        for i, v in enumerate(values)
    ]
    batch = Batch()
    batch.add(tp, records, NOW, Limits())
    return batch


class FakeLedger:
    """Answers as the ledger index would: ``counted`` positions were counted by an entry;
    ``ours`` ids were stored by the very record now answered 409."""

    def __init__(self, counted=(), ours=()) -> None:
        self.counted = set(counted)
        self.ours = set(ours)
        self.asked: list[str] = []

    async def covered(self, topic, positions):
        self.asked.append("covered")
        return {p for p in positions if p in self.counted}

    async def stored_by(self, docs):
        self.asked.append("stored_by")
        return [doc_id in self.ours for _, doc_id, _ in docs]


def test_an_entrys_id_is_the_records_it_covers_and_nothing_else():
    a = Entry(TOPIC, {0: (10, 19), 3: (5, 7)})
    b = Entry(TOPIC, {3: (5, 7), 0: (10, 19)})
    b.stored["2026.11.20"] = 99
    assert a.doc_id == b.doc_id  # a retried write of the same batch: the same id
    assert Entry(TOPIC, {0: (10, 20), 3: (5, 7)}).doc_id != a.doc_id
    assert Entry("other", {0: (10, 19), 3: (5, 7)}).doc_id != a.doc_id
    assert Entry(TOPIC, {0: (1, 2)}).empty()


def test_an_entrys_body_sums_each_day():
    e = Entry(TOPIC, {2: (100, 160)})
    e.stored.update({"2026.11.20": 40, "2026.11.21": 15})
    e.dead.update({("2026.11.21", "bad_priority"): 2, ("2026.11.22", "invalid_json"): 4})
    body = e.body(dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC), "consumer-0")
    assert body["days"] == [
        {"day": "2026-11-20", "stored": 40, "dead_lettered": 0},
        {"day": "2026-11-21", "stored": 15, "dead_lettered": 2},
        {"day": "2026-11-22", "stored": 0, "dead_lettered": 4},
    ]
    assert body["last_day"] == "2026-11-22"
    assert body["ranges"] == [{"partition": 2, "first": 100, "last": 160}]
    assert set(body) <= set(index_body(0)["mappings"]["properties"])


async def test_a_batch_stored_whole_is_counted_per_day_without_asking_anything():
    values = [alert(i, NOW - (i % 2) * DAY_NS) for i in range(6)]
    batch = batch_of(1, 500, values)
    ledger = FakeLedger()
    entry = await account(ledger, batch, BulkOutcome(stored=6), [], TODAY)
    days = {d.day for d in batch.docs}
    assert len(days) == 2 and sum(entry.stored.values()) == 6
    assert set(entry.stored.values()) == {3}
    assert entry.ranges == {1: (500, 505)}
    assert ledger.asked == []  # a clean batch costs no lookup


async def test_409s_count_only_when_this_record_stored_them_and_no_entry_counted_them():
    batch = batch_of(0, 10, [alert(i, NOW) for i in range(5)])
    docs = batch.docs
    # 11, 12, 13 answered 409: 11 is a replay of an alert stored from another record; 12
    # was stored by this record before a crash and counted by an entry; 13 was stored by
    # this record before a crash that came before its entry
    outcome = BulkOutcome(stored=2, duplicates=3, duplicate_docs=[docs[1], docs[2], docs[3]])
    ledger = FakeLedger(counted={(0, 12)}, ours={docs[2].doc_id, docs[3].doc_id})
    entry = await account(ledger, batch, outcome, [], TODAY)
    assert sum(entry.stored.values()) == 2 + 1  # 10, 14 created; 13 stored by itself
    assert ledger.asked == ["covered", "stored_by"]


async def test_dead_letters_count_per_day_and_reason_unless_counted_before():
    good = alert(1, NOW - 2 * DAY_NS)
    batch = batch_of(4, 0, [b"not json", good, b"[1]", b"{"])
    assert len(batch.letters) == 3 and len(batch.docs) == 1
    refused = batch.docs[0]
    letter = batch.letter(0, "opensearch_mapper_parsing_exception", "index", "bad field")
    outcome = BulkOutcome(rejected=[(refused, "opensearch_mapper_parsing_exception", "x")])
    ledger = FakeLedger(counted={(4, 3)})  # the last one was counted by an earlier entry
    entry = await account(ledger, batch, outcome, [*batch.letters, letter], TODAY)
    assert +entry.stored == {}
    today = f"{TODAY:%Y.%m.%d}"
    assert entry.dead == {
        (today, "invalid_json"): 1,  # offset 0; offset 3 was counted before
        (today, "not_an_object"): 1,
        (refused.day, "opensearch_mapper_parsing_exception"): 1,  # the alert's own day
    }


class _Indices:
    async def refresh(self, index):
        return {}


class FakeClient:
    """A node holding ledger entries of the given ranges (partition, first, last)."""

    def __init__(self, ranges) -> None:
        self.indices = _Indices()
        self.hits = [
            {"_source": {"ranges": [{"partition": p, "first": a, "last": b} for p, a, b in r]}}
            for r in ranges
        ]

    async def search(self, index, body):
        return {"hits": {"hits": self.hits}}


async def test_covered_positions_are_those_inside_some_entrys_ranges():
    from ingest.sink.ledger import Ledger

    client = FakeClient([[(0, 10, 19), (1, 0, 100)], [(0, 15, 30)], [(0, 40, 49)]])
    ledger = Ledger(client, "falco", "c")  # type: ignore[arg-type]
    asked = {(0, 9), (0, 10), (0, 25), (0, 30), (0, 31), (0, 40), (0, 50), (1, 5), (2, 5)}
    got = await ledger.covered(TOPIC, asked)
    assert got == {(0, 10), (0, 25), (0, 30), (0, 40), (1, 5)}
    assert await ledger.covered(TOPIC, []) == set()
