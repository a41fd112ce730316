"""The alert and dead-letter topics: made when missing, with their retention; their
settings compared with ours and set again (``setup``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from ingest.config import KafkaSettings
from ingest.retry import retrying

log = logging.getLogger(__name__)

TOPIC_CONFIG = 1  # DescribeConfigs config_source: set on the topic itself


@asynccontextmanager
async def _admin(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(kafka: KafkaSettings, *topics: str) -> list[str]:
    """Create the missing ``topics``; return the ones that were missing. A broker that is
    down or a leader being elected is waited for, as the clients wait: a consumer started
    while a broker is dead must not exit (found by the chaos run, bench/chaos.py)."""
    async for attempt in retrying(0.5, 10.0, log, logging.WARNING, "making the topics"):
        with attempt:
            return await _ensure(kafka, topics)
    raise AssertionError("unreachable: retrying re-raises or returns")


async def _ensure(kafka: KafkaSettings, topics: tuple[str, ...]) -> list[str]:
    async with _admin(kafka) as admin:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        kafka.topic_partitions,
                        kafka.replication_factor,
                        topic_configs=kafka.topic_configs(t),
                    )
                    for t in missing
                ]
            )
        except TopicAlreadyExistsError:
            pass  # another consumer of the fleet made it first
        return missing


async def topic_drift(kafka: KafkaSettings, *topics: str) -> dict[str, dict[str, str] | None]:
    """For each topic: None if it is missing, else ``{setting: "have -> want"}`` for each of
    our settings it holds another value of (empty when in sync)."""
    async with _admin(kafka) as admin:
        existing = set(await admin.list_topics())
        out: dict[str, dict[str, str] | None] = {t: None for t in topics if t not in existing}
        present = [t for t in topics if t in existing]
        for topic, entries in (await _describe(admin, present)).items():
            have = {name: value for name, value, _ in entries}
            out[topic] = {
                key: f"{have.get(key)} -> {want}"
                for key, want in kafka.topic_configs(topic).items()
                if have.get(key) != want
            }
        return out


async def set_topic_configs(kafka: KafkaSettings, topic: str) -> None:
    """Put our settings on ``topic``, keeping the other settings made on it (AlterConfigs
    replaces a topic's whole set)."""
    async with _admin(kafka) as admin:
        entries = (await _describe(admin, [topic]))[topic]
        configs = {name: value for name, value, source in entries if source == TOPIC_CONFIG}
        configs.update(kafka.topic_configs(topic))
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])


async def topic_settings(kafka: KafkaSettings, topic: str) -> dict[str, str]:
    """Every setting ``topic`` has now, defaults included."""
    async with _admin(kafka) as admin:
        return {name: value for name, value, _ in (await _describe(admin, [topic]))[topic]}


async def _describe(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, list[tuple[str, str, int]]]:
    """``{topic: [(setting, value, config_source), ...]}``."""
    if not topics:
        return {}
    answers = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )
    return {
        resource[3]: [(e[0], e[1], e[3]) for e in resource[4]]
        for answer in answers
        for resource in answer.resources
    }
