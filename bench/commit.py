"""What one offset commit costs: CPU of the committing process and of the Kafka broker.

The consumer commits the offsets of finished batches at most every
``INGEST_CONSUMER__COMMIT_INTERVAL_MS``; this prints what each commit it saves is worth,
and what committing after every batch would cost per 1000 alerts at a given rate and
batch size. Needs the stack: ./dev stack up.
    .venv/bin/python bench/commit.py [COMMITS] [--rate ALERTS_PER_S] [--batch DOCS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer
from common import alerts, load_env
from consumer import _cpu_seconds, produce, stack_pids


async def measure(commits: int) -> tuple[float, float, float]:
    """(consumer CPU-s, broker CPU-s, wall s) per commit of six partitions' offsets."""
    topic = f"bench-commit-{uuid.uuid4().hex[:8]}"
    await produce(topic, alerts(600, topic))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
        group_id=topic,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        partitions = sorted(consumer.assignment())
        _, broker = stack_pids()
        assert broker, "needs the project's own Kafka (./dev stack up) to read its CPU"
        broker0, own0, wall0 = _cpu_seconds(broker), time.process_time(), time.perf_counter()
        for i in range(commits):
            await consumer.commit({tp: i + 1 for tp in partitions})
        return (
            (time.process_time() - own0) / commits,
            (_cpu_seconds(broker) - broker0) / commits,
            (time.perf_counter() - wall0) / commits,
        )
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("commits", nargs="?", type=int, default=500)
    parser.add_argument("--rate", type=float, default=16_000, help="alerts per second")
    parser.add_argument("--batch", type=int, default=2000, help="documents per bulk batch")
    args = parser.parse_args()
    load_env()
    own, broker, wall = asyncio.run(measure(args.commits))
    print(f"{args.commits} commits of 6 partitions' offsets, one after the other")
    print(
        f"per commit: consumer {own * 1e6:,.0f} µs CPU, broker {broker * 1e6:,.0f} µs CPU, ", end=""
    )
    print(f"{wall * 1e3:.2f} ms wall")
    per_s = args.rate / args.batch
    print(
        f"a commit per {args.batch}-document batch at {args.rate:,.0f} alerts/s: {per_s:.1f}"
        f" commits/s, {(own + broker) * per_s * 1e6 / args.rate:.2f} ms CPU per 1000 alerts"
        f" ({(own + broker) * per_s:.3f} cores); every 5 s: "
        f"{(own + broker) / 5 * 1e6 / args.rate:.3f} ms per 1000 alerts"
    )


if __name__ == "__main__":
    main()
