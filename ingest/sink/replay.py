"""`falco-ingest dlq replay`: put dead-lettered alerts back on the main topic, unchanged."""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ingest.config import ConsumerSettings
from ingest.kafka_access import check_access
from ingest.sink.dlq import make_producer

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 10.0


def replay_group(settings: ConsumerSettings, reason: str | None) -> str:
    """The group whose offsets remember what was replayed. A replay of one reason has a group
    of its own, so the records it passes over stay for a replay of everything."""
    base = f"{settings.kafka.group_id}.dlq-replay"
    return f"{base}.{reason}" if reason else base


def replayed_headers(record: ConsumerRecord) -> list[tuple[str, bytes]]:
    """The record's headers with the dead-letter ones renamed ``dlq.replayed.*``."""
    headers = record.headers or ()
    kept = [(h, v) for h, v in headers if not h.startswith("dlq.")]
    return kept + [(f"dlq.replayed.{h[4:]}", v) for h, v in headers if h.startswith("dlq.")]


async def replay_dlq(
    settings: ConsumerSettings, idle_s: float = 5.0, reason: str | None = None
) -> int:
    """Copy the records that are in the DLQ when the replay starts to the main topic
    (original value and key), committing the DLQ offset after each copy is acked. Records
    dead-lettered again while it runs are left for the next replay: a replay never chases
    its own output. Returns how many were replayed."""
    k = settings.kafka
    await check_access(k)
    consumer = AIOKafkaConsumer(
        **k.client_kwargs(),
        group_id=replay_group(settings, reason),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = make_producer(k)
    await producer.start()
    await consumer.start()
    moved = 0
    try:
        partitions = await producer.partitions_for(k.dlq_topic)
        tps = [TopicPartition(k.dlq_topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        left = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        last = shown = time.monotonic()
        while left and time.monotonic() - last < idle_s:
            batches = await consumer.getmany(*left, timeout_ms=500, max_records=500)
            if not batches:
                continue
            last = time.monotonic()
            futures, commit = [], {}
            for tp, msgs in batches.items():
                msgs = [m for m in msgs if m.offset < end[tp]]
                if len(msgs) < len(batches[tp]) or (msgs and msgs[-1].offset + 1 >= end[tp]):
                    left.discard(tp)
                if not msgs:
                    continue
                commit[tp] = msgs[-1].offset + 1
                for m in msgs:
                    if reason and dict(m.headers or ()).get("dlq.reason", b"").decode() != reason:
                        continue
                    headers = replayed_headers(m)
                    futures.append(
                        await producer.send(k.topic, m.value, key=m.key, headers=headers)
                    )
            for fut in futures:
                await fut
            moved += len(futures)
            if commit:
                await consumer.commit(commit)
            if time.monotonic() - shown >= PROGRESS_EVERY_S:
                shown = time.monotonic()
                log.info(
                    "dlq replay progress", extra={"replayed": moved, "partitions_left": len(left)}
                )
    finally:
        await consumer.stop()
        await producer.stop()
    log.info("dlq replay done", extra={"replayed": moved, "reason": reason})
    return moved
