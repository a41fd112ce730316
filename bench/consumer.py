"""Consumer speed, side by side on one topic and one OpenSearch node:

1. the raw _bulk ceiling: pre-encoded bulk bodies of the same documents, 3 in flight;
2. falco-ingest consume;
3. the naive baseline (bench/baseline_consumer.py).

Prints alerts/s (wall, until every document is stored) and alerts per CPU-second of the
consumer process, with ratios. Needs the stack: ./dev stack up.
    .venv/bin/python bench/consumer.py [N]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

from common import PY, ROOT, alerts, load_env
from opensearchpy import AsyncOpenSearch

from ingest.config import OpsSettings, load
from ingest.normalize.document import Document, normalize
from ingest.ops.setup import run_setup


async def produce(topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    from ingest.config import KafkaSettings
    from ingest.consumer.topics import ensure_topics

    kafka = KafkaSettings(bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"])
    await ensure_topics(kafka, topic)
    p = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, linger_ms=20, max_batch_size=512 * 1024
    )
    await p.start()
    futs = [await p.send(topic, v, key=str(i % 6).encode()) for i, v in enumerate(values)]
    await asyncio.gather(*futs)
    await p.stop()


async def setup_prefix(prefix: str) -> None:
    base = load(OpsSettings)
    ops = base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "kafka": base.kafka.model_copy(update={"create_topics": False}),
        }
    )
    await run_setup(ops)


async def count(client: AsyncOpenSearch, prefix: str) -> int:
    """Documents indexed so far, from indexing stats: no refresh, so polling it does not
    slow the node down (a refresh per poll would)."""
    r = await client.transport.perform_request(
        "GET",
        f"/{prefix}-*/_stats/indexing",
        params={"filter_path": "_all.primaries.indexing.index_total"},
    )
    return int(r.get("_all", {}).get("primaries", {}).get("indexing", {}).get("index_total", 0))


async def raw_bulk_ceiling(client: AsyncOpenSearch, prefix: str, values: list[bytes]) -> float:
    now = time.time_ns()
    docs = [normalize(v, None, now) for v in values]
    bodies = []
    for i in range(0, len(docs), 2000):
        parts = []
        for d in docs[i : i + 2000]:
            assert isinstance(d, Document)
            parts.append(
                b'{"create":{"_index":"%s-%s","_id":"%s"}}\n'
                % (prefix.encode(), d.day.encode(), d.doc_id.encode())
            )
            parts.append(d.body)  # newline-ended
        bodies.append(b"".join(parts))
    sem = asyncio.Semaphore(3)

    async def send(body: bytes) -> None:
        async with sem:
            await client.transport.perform_request(
                "POST",
                "/_bulk",
                body=body,
                params={"filter_path": "errors"},
                headers={"content-type": "application/x-ndjson"},
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(send(b) for b in bodies))
    while await count(client, prefix) < len(values):
        await asyncio.sleep(0.1)
    return len(values) / (time.perf_counter() - t0)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_process(
    cmd: list[str], env: dict[str, str], client: AsyncOpenSearch, prefix: str, n: int
) -> tuple[float, float]:
    """Steady state, from the first stored document to the last (start-up and group join
    left out for both consumers alike): (alerts/s, alerts per CPU-second of the process)."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    while (first := await count(client, prefix)) == 0:
        await asyncio.sleep(0.05)
    t0, cpu0 = time.perf_counter(), _cpu_seconds(proc.pid)
    while await count(client, prefix) < n:
        await asyncio.sleep(0.1)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds(proc.pid) - cpu0
    proc.terminate()
    await proc.wait()
    return (n - first) / wall, (n - first) / cpu


async def main() -> None:
    load_env()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-{tag}"
    values = alerts(n, tag)
    await produce(topic, values)
    client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=120)
    prefixes = {k: f"bench-{k}-{tag}" for k in ("warmup", "raw", "ours", "naive")}
    for p in prefixes.values():
        await setup_prefix(p)
    try:
        # a cold node (fresh JVM) would make the ceiling look low: warm it up first
        await raw_bulk_ceiling(client, prefixes["warmup"], values[: max(1, n // 4)])
        ceiling = await raw_bulk_ceiling(client, prefixes["raw"], values)
        env = dict(
            os.environ,
            INGEST_KAFKA__TOPIC=topic,
            INGEST_KAFKA__GROUP_ID=f"ours-{tag}",
            INGEST_OPENSEARCH__INDEX_PREFIX=prefixes["ours"],
            INGEST_METRICS_PORT="0",
            INGEST_LOG_LEVEL="WARNING",
            INGEST_KAFKA__CREATE_TOPICS="false",
        )
        ours = await timed_process(
            [PY, "-m", "ingest.cli", "consume"], env, client, prefixes["ours"], n
        )
        naive = await timed_process(
            [
                PY,
                str(ROOT / "bench" / "baseline_consumer.py"),
                topic,
                f"naive-{tag}",
                prefixes["naive"],
                str(n),
            ],
            dict(os.environ),
            client,
            prefixes["naive"],
            n,
        )
    finally:
        for p in prefixes.values():
            await client.indices.delete(index=f"{p}-*", ignore_unavailable=True)
        await client.close()
    print(f"\n{n} alerts, one topic (6 partitions), one OpenSearch node, side by side")
    print(f"raw _bulk ceiling (pre-encoded)  {ceiling:>10,.0f} alerts/s")
    print(
        f"falco-ingest consume             {ours[0]:>10,.0f} alerts/s  "
        f"{ours[1]:>10,.0f} alerts/CPU-s"
    )
    print(
        f"naive baseline                   {naive[0]:>10,.0f} alerts/s  "
        f"{naive[1]:>10,.0f} alerts/CPU-s"
    )
    print(f"ours / raw ceiling (goal >= 0.90):          {ours[0] / ceiling:.2f}")
    print(f"ours / naive, alerts per CPU-s (goal >= 3): {ours[1] / naive[1]:.2f}")
    print(f"ours / naive, wall (goal >= 1):             {ours[0] / naive[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
