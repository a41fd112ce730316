"""`falco-ingest dlq replay`: put dead-lettered alerts back on the main topic, unchanged."""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer

from ingest.config import ConsumerSettings
from ingest.sink.dlq import make_producer

log = logging.getLogger(__name__)


async def replay_dlq(
    settings: ConsumerSettings, idle_s: float = 5.0, reason: str | None = None
) -> int:
    """Copy records from the DLQ to the main topic (original value and key; the dead-letter
    headers become ``dlq.replayed.*``), committing the DLQ offset after each copy is acked.
    Returns how many were replayed."""
    k = settings.kafka
    consumer = AIOKafkaConsumer(
        k.dlq_topic,
        **k.client_kwargs(),
        group_id=f"{k.group_id}.dlq-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = make_producer(k)
    await producer.start()
    await consumer.start()
    moved = 0
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batches:
                continue
            last = time.monotonic()
            futures = []
            for msgs in batches.values():
                for m in msgs:
                    headers = dict(m.headers or ())
                    if reason and headers.get("dlq.reason", b"").decode() != reason:
                        continue
                    kept = [(h, v) for h, v in (m.headers or ()) if not h.startswith("dlq.")]
                    kept += [
                        (f"dlq.replayed.{h[4:]}", v)
                        for h, v in (m.headers or ())
                        if h.startswith("dlq.")
                    ]
                    futures.append(await producer.send(k.topic, m.value, key=m.key, headers=kept))
            for fut in futures:
                await fut
            moved += len(futures)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    log.info("dlq replay done", extra={"replayed": moved})
    return moved
