"""Making the topics waits for a broker that is down, as the Kafka clients do, instead of
ending the consumer (the chaos run restarted a consumer while the broker its admin client
asked was dead, and it exited with a traceback)."""

from __future__ import annotations

import contextlib
import logging

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from ingest.config import KafkaSettings
from ingest.consumer import topics


class FlakyAdmin:
    """Answers ``list_topics`` with the errors given, in turn, then with the topics."""

    def __init__(self, errors: list[Exception], existing: list[str]) -> None:
        self.errors, self.existing = errors, existing
        self.created: list[str] = []
        self.asked = 0

    async def list_topics(self) -> list[str]:
        self.asked += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.existing

    async def create_topics(self, new: list) -> None:
        self.created += [t.name for t in new]


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> FlakyAdmin:
    fake = FlakyAdmin([], [])

    @contextlib.asynccontextmanager
    async def made(_: KafkaSettings):
        yield fake

    monkeypatch.setattr(topics, "_admin", made)
    monkeypatch.setattr(topics, "retrying", _quick(topics.retrying))
    return fake


def _quick(retrying):
    return lambda _initial, _max, *rest: retrying(0.001, 0.001, *rest)


async def test_a_broker_down_is_waited_for_and_the_topics_made(admin, caplog):
    admin.errors = [KafkaConnectionError("Connection at 127.0.0.1:29160 closed")] * 3
    admin.existing = ["falco.events"]
    with caplog.at_level(logging.WARNING):
        missing = await topics.ensure_topics(KafkaSettings(), "falco.events", "falco.events.dlq")
    assert missing == ["falco.events.dlq"] and admin.created == ["falco.events.dlq"]
    assert admin.asked == 4
    retried = [r for r in caplog.records if r.getMessage() == "making the topics failed, retrying"]
    assert len(retried) == 3 and "KafkaConnectionError" in retried[0].error


async def test_a_refusal_is_not_retried(admin):
    admin.errors = [TopicAuthorizationFailedError()]
    with pytest.raises(TopicAuthorizationFailedError):
        await topics.ensure_topics(KafkaSettings(), "falco.events")
    assert admin.asked == 1
