"""The consumer loop with a recording fake Kafka and sink (no network)."""

import asyncio
import time

import orjson
import pytest
from aiokafka import TopicPartition
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

    def assignment(self):
        return {TP}

    def pause(self, *tps): ...
    def resume(self, *tps): ...

    def highwater(self, tp):
        return None

    async def getmany(self, timeout_ms=0, max_records=None):
        await asyncio.sleep(0.001)
        if not self.pending:
            return {}
        out, self.pending = self.pending[:max_records], self.pending[max_records:]
        return {TP: out}

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


class Sink:
    healthy = True

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call

    async def write(self, docs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("bulk response made no sense")
        return BulkOutcome(stored=len(docs))


class NoLetters:
    async def send(self, letters):
        assert not letters


def settings() -> ConsumerSettings:
    base = load(ConsumerSettings)
    return base.model_copy(
        update={
            "consumer": base.consumer.model_copy(
                update={"batch_max_docs": 10, "linger_ms": 0, "max_inflight_bulks": 1}
            )
        }
    )


@pytest.mark.parametrize("idle", [0.3])
async def test_commits_every_written_batch(idle):
    kafka = FakeKafka(35)
    app = FalcoConsumer(settings(), kafka, Sink(), NoLetters())
    app.first_assignment = 0.0
    await app.fetch_loop(stop_when_idle=idle)
    await app.drain()
    assert app.stats.indexed == 35
    assert kafka.commits[-1] == {TP: 35}


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
