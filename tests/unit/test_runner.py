"""The consumer loop with a recording fake Kafka and sink (no network)."""

import asyncio
import time

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from ingest.config import ConsumerSettings, load
from ingest.consumer.runner import FalcoConsumer
from ingest.normalize.timestamps import format_ns
from ingest.sink.bulk import BulkOutcome

TP = TopicPartition("falco.events", 0)
ALERT = orjson.dumps(
    {"rule": "r", "priority": "Debug", "time": format_ns(time.time_ns())[0], "output": "x"}
)


def record(offset: int) -> ConsumerRecord:
    return ConsumerRecord("falco.events", 0, offset, 0, 0, b"h", ALERT, None, 1, len(ALERT), ())


class FakeKafka:
    def __init__(self, n: int) -> None:
        self.pending = [record(i) for i in range(n)]
        self.commits: list[dict] = []
        self.paused = False
        self.pauses = 0
        self.polls_while_paused = 0

    def assignment(self):
        return {TP}

    def pause(self, *tps):
        self.paused, self.pauses = True, self.pauses + 1

    def resume(self, *tps):
        self.paused = False

    def highwater(self, tp):
        return None

    async def getmany(self, timeout_ms=0, max_records=None):
        await asyncio.sleep(0.001)
        # Records come back even while paused, as from a partition assigned meanwhile.
        self.polls_while_paused += self.paused
        if not self.pending:
            return {}
        out, self.pending = self.pending[:max_records], self.pending[max_records:]
        return {TP: out}

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


class Sink:
    healthy = True

    def __init__(self, fail_on_call: int | None = None, gate: asyncio.Event | None = None):
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.gate = gate
        self.written: list[int] = []

    async def write(self, docs):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()  # OpenSearch "down" until the gate opens
        await asyncio.sleep(0.01)
        self.written += [orjson.loads(d.body)["@ingest"]["offset"] for d in docs]
        if self.calls == self.fail_on_call:
            raise RuntimeError("bulk response made no sense")
        return BulkOutcome(stored=len(docs))


class NoLetters:
    async def send(self, letters):
        assert not letters


def settings(commit_interval_ms: int = 5000) -> ConsumerSettings:
    base = load(ConsumerSettings)
    return base.model_copy(
        update={
            "consumer": base.consumer.model_copy(
                update={
                    "batch_max_docs": 10,
                    "linger_ms": 0,
                    "max_inflight_bulks": 1,
                    "commit_interval_ms": commit_interval_ms,
                }
            )
        }
    )


@pytest.mark.parametrize("idle", [0.3])
async def test_drain_commits_what_was_written(idle):
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=idle)
    await app.drain()
    assert app.stats.indexed == 35
    assert kafka.commits[-1] == {TP: 35}


async def test_commits_at_most_once_per_interval():
    """Eight batches in well under the interval: the first is committed when it is
    written, the rest together when the consumer drains (a commit costs the broker ~2 ms)."""
    kafka = FakeKafka(80)
    app = FalcoConsumer(settings(commit_interval_ms=60_000), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=0.2)
    assert kafka.commits == [{TP: 10}]
    await app.drain()
    assert kafka.commits == [{TP: 10}, {TP: 80}]


async def test_close_commits_the_finished_batches_when_the_fetch_loop_fails():
    """Kafka breaks after every batch is stored but before the interval has passed: what
    was stored is still committed on the way out, not left to be read again."""
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(commit_interval_ms=60_000), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    fetch = kafka.getmany

    async def breaks_once_all_is_stored(timeout_ms=0, max_records=None):
        if app.stats.indexed == 35:
            raise KafkaError("broker gone")
        return await fetch(timeout_ms, max_records)

    kafka.getmany = breaks_once_all_is_stored
    with pytest.raises(KafkaError, match="broker gone"):
        await app.fetch_loop(stop_when_idle=5)
    assert kafka.commits == [{TP: 10}]  # the first batch only: the interval has not passed
    await app.close()
    assert kafka.commits[-1] == {TP: 35}


async def test_interval_zero_commits_every_batch():
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(commit_interval_ms=0), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=0.2)
    assert kafka.commits == [{TP: 10}, {TP: 20}, {TP: 30}, {TP: 35}]


async def test_an_idle_consumer_commits_once_the_interval_has_passed():
    """No later write commits the last batches: the fetch loop does, without a drain."""
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(commit_interval_ms=100), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=0.5)
    assert kafka.commits[-1] == {TP: 35}
    assert len(kafka.commits) < 4  # not one per batch


async def test_a_failed_batch_stops_the_consumer_and_is_not_committed_past():
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(), kafka, Sink(fail_on_call=2), NoLetters())
    app.first_assignment = 0.0
    with pytest.raises(RuntimeError, match="made no sense"):
        await app.fetch_loop(stop_when_idle=5)
        await app.drain()
        app.raise_failure()
    # the first batch (offsets 0..9) was committed; nothing at or past the failed one
    assert kafka.commits and max(c[TP] for c in kafka.commits) == 10


async def test_busy_write_slots_hold_fetching_without_pausing():
    """A short wait for a slot must not pause: aiokafka drops what it prefetched for a
    partition polled while paused, and fetches it again."""
    kafka = FakeKafka(200)
    sink = Sink()
    app = FalcoConsumer(settings(), kafka, sink, NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=0.3)
    await app.drain()
    assert kafka.pauses == 0
    assert sorted(sink.written) == list(range(200))
    assert kafka.commits[-1] == {TP: 200}


async def test_a_long_outage_pauses_polls_and_keeps_what_the_poll_returns():
    kafka = FakeKafka(60)
    gate = asyncio.Event()
    sink = Sink(gate=gate)
    app = FalcoConsumer(settings(), kafka, sink, NoLetters())
    app.pause_after_s = 0.05
    app.first_assignment = 0.0

    async def outage_ends():
        while kafka.polls_while_paused < 3:
            await asyncio.sleep(0.01)
        gate.set()

    ender = asyncio.create_task(outage_ends())
    await app.fetch_loop(stop_when_idle=0.5)
    await app.drain()
    await ender
    assert kafka.pauses >= 1 and not kafka.paused  # paused in the outage, resumed after
    assert sorted(sink.written) == list(range(60))  # nothing polled while paused was lost
    assert kafka.commits[-1] == {TP: 60}


async def test_a_progress_line_while_records_flow(caplog):
    kafka = FakeKafka(200)
    app = FalcoConsumer(settings(), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    app.progress_every_s = 0.0
    with caplog.at_level("INFO", logger="ingest.consumer.runner"):
        await app.fetch_loop(stop_when_idle=0.3)
        await app.drain()
    lines = [r for r in caplog.records if r.getMessage() == "progress"]
    assert lines, "no progress line"
    assert [r.consumed for r in lines] == sorted(r.consumed for r in lines)
    assert lines[-1].consumed == 200
