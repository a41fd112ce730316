"""Integration fixtures: the real Kafka, OpenSearch and S3, started by the project's own
stack code unless INGEST_KAFKA__BOOTSTRAP_SERVERS and INGEST_OPENSEARCH__URL point at
services the user runs. Every test gets its own topic and index prefix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError

from ingest.config import ConsumerSettings, OpsSettings, load
from ingest.ops.setup import run_setup
from ingest.stack import manager
from ingest.stack.layout import Layout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    if os.environ.get("INGEST_KAFKA__BOOTSTRAP_SERVERS") and os.environ.get(
        "INGEST_OPENSEARCH__URL"
    ):
        return dict(os.environ)
    env = manager.up(Layout.default(), say=lambda line: print(line))
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def replicated(stack: dict[str, str]) -> Iterator[dict]:
    """Three brokers and two OpenSearch nodes (Layout.replicated: beside the default stack,
    on ports of their own, with a lowered indexing-pressure limit), started by the stack's
    own code; stopped at the end if they were not running before."""
    layout = Layout.replicated()
    running = all(ok for _, ok, _ in manager.status(layout))
    env = manager.up(layout, say=print, timeout=300)
    yield {"layout": layout, "env": env}
    if not running:
        manager.down(layout, say=print)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


def consumer_settings(topic: str, prefix: str, **tuning: object) -> ConsumerSettings:
    base = load(ConsumerSettings)
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"topic": topic, "dlq_topic": f"{topic}.dlq", "group_id": f"g-{topic}"}
            ),
            "opensearch": base.opensearch.model_copy(
                update={"index_prefix": prefix, "request_timeout_s": 5.0}
            ),
            "consumer": base.consumer.model_copy(update={"linger_ms": 50, **tuning}),
            "metrics_port": 0,
        }
    )


@pytest.fixture
async def prefix(stack: dict[str, str], uid: str) -> AsyncIterator[str]:
    """An index prefix with the project's templates applied; cleaned up afterwards."""
    name = f"it-{uid}"
    base = load(OpsSettings)
    ops = base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": name}),
            "kafka": base.kafka.model_copy(update={"create_topics": False}),
        }
    )
    assert await run_setup(ops) == 0
    yield name
    async with os_client() as client:
        await client.indices.delete(index=f"{name}-*", ignore_unavailable=True)
        await client.indices.delete(index=f"ledger-{name}", ignore_unavailable=True)
        await client.indices.delete_index_template(name=name, ignore=[404])
        for comp in ("settings", "mappings"):
            await client.cluster.delete_component_template(name=f"{name}-{comp}", ignore=[404])


class os_client:  # noqa: N801 - used like a function: `async with os_client() as c`
    async def __aenter__(self) -> AsyncOpenSearch:
        self.client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=30)
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


def make_alerts(n: int, tag: str = "", start_ns: int | None = None) -> list[bytes]:
    """``n`` distinct Falco alerts (raw bytes, as Falco writes them), recent event times."""
    base = start_ns or (time.time_ns() - 3600 * 10**9)
    prios = [
        "Emergency",
        "Alert",
        "Critical",
        "Error",
        "Warning",
        "Notice",
        "Informational",
        "Debug",
    ]
    out = []
    for i in range(n):
        ns = base + i * 1_000_003
        secs, frac = divmod(ns, 10**9)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
        out.append(
            orjson.dumps(
                {
                    "hostname": f"host-{i % 3}",
                    "output": f"{stamp}: {prios[i % 8]} test alert {tag} #{i} | proc.pid={i}",
                    "priority": prios[i % 8],
                    "rule": f"Rule {i % 5}",
                    "source": "syscall",
                    "time": stamp,
                    "output_fields": {"proc.pid": i, "proc.pid.ts": ns, "evt.time": ns},
                    "tags": ["T1059", "mitre_execution"],
                }
            )
        )
    return out


async def produce(
    topic: str,
    values: list[bytes],
    key: bytes = b"h",
    compression: str | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
        acks="all",
        linger_ms=5,
        compression_type=compression,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=key, headers=headers) for v in values]
        for fut in futures:
            await fut
    finally:
        await producer.stop()


async def read_topic(topic: str, expect: int | None = None, idle_s: float = 3.0) -> list:
    """Every record of ``topic`` from the beginning (stops after ``idle_s`` with nothing new,
    or as soon as ``expect`` records are in)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            got = await consumer.getmany(timeout_ms=300)
            for msgs in got.values():
                out.extend(msgs)
                last = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
    finally:
        await consumer.stop()
    return out


async def count_docs(prefix: str, query: dict | None = None) -> int:
    """Documents under ``prefix``. An index the consumer has just created answers 503 (all
    shards failed) until its shard has started: asked again then, for up to 30 s."""
    deadline = time.monotonic() + 30
    async with os_client() as client:
        while True:
            try:
                await client.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True)
                resp = await client.count(
                    index=f"{prefix}-*",
                    body={"query": query or {"match_all": {}}},
                    ignore_unavailable=True,
                )
                return int(resp["count"])
            except TransportError as exc:
                if exc.status_code != 503 or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess:
    """``falco-ingest ARGS`` in a process of its own with ``env``; what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
