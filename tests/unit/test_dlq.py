"""The dead-letter producer: a letter the DLQ topic refuses as too large is kept shortened."""

import asyncio
import hashlib

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from ingest.sink.dlq import SHORT_VALUE_BYTES, DeadLetter, DeadLetterQueue, DeadLetterTooLarge


class SizedProducer:
    """Refuses a record whose value is over ``limit`` the way the broker does (its future
    fails with MESSAGE_TOO_LARGE); records what it accepted."""

    def __init__(self, limit):
        self.limit = limit
        self.accepted = []

    async def send(self, topic, value=None, key=None, headers=None):
        future = asyncio.get_running_loop().create_future()
        if len(value) > self.limit:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.accepted.append((value, dict(headers)))
            future.set_result(None)
        return future


def letter(value: bytes, offset: int) -> DeadLetter:
    return DeadLetter(
        value=value,
        key=b"h",
        reason="invalid_json",
        stage="normalize",
        detail="d",
        topic="falco.events",
        partition=0,
        offset=offset,
        source_headers=(("falco-ingest.agent", b"{}"), ("big", b"x" * 5000)),
    )


async def test_a_letter_too_large_is_kept_as_a_prefix_with_its_size_and_sha256():
    producer = SizedProducer(limit=100_000)
    big = b"{" + b"a" * 300_000
    await DeadLetterQueue(producer, "dlq").send([letter(b"small", 1), letter(big, 2)])
    (small, small_headers), (kept, headers) = producer.accepted
    assert small == b"small" and "dlq.original.size" not in small_headers
    assert kept == big[:SHORT_VALUE_BYTES]
    assert headers["dlq.original.size"] == str(len(big)).encode()
    assert headers["dlq.original.sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert headers["falco-ingest.agent"] == b"{}" and "big" not in headers
    assert headers["dlq.source.offset"] == b"2"


async def test_a_topic_that_takes_almost_nothing_gets_the_last_resort_then_stops():
    producer = SizedProducer(limit=2000)
    await DeadLetterQueue(producer, "dlq").send([letter(b"x" * 300_000, 3)])
    [(kept, headers)] = producer.accepted
    assert len(kept) == 1024 and headers["dlq.original.size"] == b"300000"
    with pytest.raises(DeadLetterTooLarge):
        await DeadLetterQueue(SizedProducer(limit=10), "dlq").send([letter(b"y" * 5000, 4)])


async def test_a_topic_our_credentials_may_not_write_stops_instead_of_retrying():
    from aiokafka.errors import TopicAuthorizationFailedError

    from ingest.errors import AccessRefused

    class Refusing(SizedProducer):
        async def send(self, topic, value=None, key=None, headers=None):
            self.accepted.append(value)
            raise TopicAuthorizationFailedError()

    producer = Refusing(limit=10)
    with pytest.raises(AccessRefused, match="dead-letter topic dlq"):
        await DeadLetterQueue(producer, "dlq").send([letter(b"x", 1)])
    assert len(producer.accepted) == 1  # tried once, not retried
