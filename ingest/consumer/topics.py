"""Create the alert and dead-letter topics when they are missing, with their retention."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ingest.config import KafkaSettings


async def ensure_topics(kafka: KafkaSettings, *topics: str) -> list[str]:
    """Create the missing ``topics``; return the ones that were missing."""
    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
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
    finally:
        await admin.close()
