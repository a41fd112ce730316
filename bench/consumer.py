"""Consumer speed, side by side on one topic and one OpenSearch node:

1. the raw _bulk ceiling: pre-encoded bulk bodies of the same documents, 3 in flight;
2. falco-ingest consume;
3. the naive baseline (bench/baseline_consumer.py).

Prints alerts/s (wall, until every document is stored) and alerts per CPU-second of the
consumer process, with ratios. Needs the stack: ./dev stack up.
    .venv/bin/python bench/consumer.py [N] [--rounds R]

The machine's speed varies from minute to minute (a shared 2-core VM), so the three run in
rounds, one after the other, the order turning from round to round, and the medians and
each round's ratios are printed. Each run starts on a quiet node: the one before it has its
indices deleted and its merges finished (a run right after the fast ceiling otherwise pays
for the ceiling's merges).

With --split-cores OpenSearch runs on CPU 0 and everything else (this script, the consumers,
Kafka) on CPU 1, for all three alike: the topology of a deployment, where the consumer fleet
does not take its CPU from the OpenSearch nodes. Without it they share both cores, and
whatever a consumer burns is taken from the node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from statistics import median

from common import PY, ROOT, alerts, load_env
from opensearchpy import AsyncOpenSearch

from ingest.config import OpsSettings, load
from ingest.normalize.document import Document, normalize
from ingest.ops.setup import run_setup
from ingest.sink.bulk import OpenSearchSink
from ingest.stack import process
from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout
from ingest.stack.opensearch import OpenSearch


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
    with contextlib.redirect_stdout(io.StringIO()):  # its plan is not the bench's output
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


async def raw_bulk_ceiling(
    client: AsyncOpenSearch, prefix: str, topic: str, values: list[bytes]
) -> float:
    now = time.time_ns()
    # The documents the consumers write, lineage too (produce() keys alert i to i % 6).
    lineages = [(topic, i % 6, i // 6, None) for i in range(len(values))]
    docs = [
        d
        for v, lineage in zip(values, lineages, strict=True)
        if isinstance(d := normalize(v, lineage, now), Document)
    ]
    assert len(docs) == len(values)
    encode = OpenSearchSink(client, prefix).encode  # the very bodies ours would send
    bodies = [encode(docs[i : i + 2000]) for i in range(0, len(docs), 2000)]
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


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def split_cores() -> Iterator[None]:
    """OpenSearch on CPU 0; Kafka, this process and its children on CPU 1."""
    layout = Layout.default()
    node = process.read_pid(OpenSearch(layout).pid_file)
    kafka = process.read_pid(Kafka(layout).pid_file)
    assert node and kafka, "--split-cores needs the project's own stack (./dev stack up)"
    every = set(range(os.cpu_count() or 1))
    assert len(every) >= 2, "--split-cores needs two CPUs"
    pin(node, {0})
    pin(kafka, {1})
    pin(os.getpid(), {1})
    try:
        yield
    finally:
        for pid in (node, kafka, os.getpid()):
            pin(pid, every)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_process(
    cmd: list[str], env: dict[str, str], client: AsyncOpenSearch, prefix: str, n: int
) -> tuple[float, float]:
    """Steady state, from the first stored document to the last (start-up and group join
    left out for both consumers alike): (alerts/s, alerts per CPU-second of the process)."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL)
    while (first := await count(client, prefix)) == 0:
        await asyncio.sleep(0.05)
    t0, cpu0 = time.perf_counter(), _cpu_seconds(proc.pid)
    while await count(client, prefix) < n:
        await asyncio.sleep(0.1)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds(proc.pid) - cpu0
    proc.terminate()
    await proc.wait()
    return (n - first) / wall, (n - first) / cpu


def commands(
    topic: str, tag: str, prefix: str, n: int, who: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one consumer over ``topic`` into ``prefix``."""
    if who == "ours":
        env = dict(
            os.environ,
            INGEST_KAFKA__TOPIC=topic,
            INGEST_KAFKA__GROUP_ID=f"ours-{tag}",
            INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
            INGEST_METRICS_PORT="0",
            INGEST_LOG_LEVEL="WARNING",
            INGEST_KAFKA__CREATE_TOPICS="false",
        )
        return [PY, "-m", "ingest.cli", "consume"], env
    baseline = str(ROOT / "bench" / "baseline_consumer.py")
    return [PY, baseline, topic, f"naive-{tag}", prefix, str(n)], dict(os.environ)


async def one_round(
    client: AsyncOpenSearch, topic: str, values: list[bytes], tag: str, first: int
) -> dict[str, tuple[float, float]]:
    """The ceiling, ours and the baseline, one after the other on the same node, starting
    with the ``first``-th of them (the order turns from round to round). Each run's indices
    are deleted once it is measured and the node left to finish its merges, so no run pays
    for the one before it."""
    n = len(values)
    order = ["raw", "ours", "naive"]
    order = order[first % 3 :] + order[: first % 3]
    out: dict[str, tuple[float, float]] = {}
    for who in order:
        prefix = f"bench-{who}-{tag}"
        await setup_prefix(prefix)
        try:
            if who == "raw":
                out[who] = (await raw_bulk_ceiling(client, prefix, topic, values), 0.0)
            else:
                cmd, env = commands(topic, tag, prefix, n, who)
                out[who] = await timed_process(cmd, env, client, prefix, n)
        finally:
            await client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        await settle(client)
    return out


async def settle(client: AsyncOpenSearch, limit_s: float = 60.0) -> None:
    """Wait until the node runs no merge (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        r = await client.transport.perform_request(
            "GET", "/_nodes/stats/indices/merge", params={"filter_path": "nodes.*.indices"}
        )
        if all(n["indices"]["merges"]["current"] == 0 for n in r["nodes"].values()):
            return
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="alerts per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument(
        "--split-cores", action="store_true", help="OpenSearch on CPU 0, the rest on CPU 1"
    )
    args = parser.parse_args()
    load_env()
    n, tag = args.n, uuid.uuid4().hex[:8]
    topic = f"bench-{tag}"
    values = alerts(n, tag)
    await produce(topic, values)
    client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=120)
    rounds = []
    cores = split_cores() if args.split_cores else contextlib.nullcontext()
    try:
        with cores:
            # a cold node (fresh JVM) would make the first figures look low: warm it up first
            await setup_prefix(f"bench-warmup-{tag}")
            await raw_bulk_ceiling(client, f"bench-warmup-{tag}", topic, values[: max(1, n // 4)])
            await client.indices.delete(index=f"bench-warmup-{tag}-*", ignore_unavailable=True)
            for i in range(args.rounds):
                rounds.append(await one_round(client, topic, values, f"{tag}{i}", i))
                r = rounds[-1]
                print(
                    f"round {i + 1}: ceiling {r['raw'][0]:,.0f}/s, ours {r['ours'][0]:,.0f}/s "
                    f"{r['ours'][1]:,.0f}/CPU-s, naive {r['naive'][0]:,.0f}/s "
                    f"{r['naive'][1]:,.0f}/CPU-s",
                    flush=True,
                )
    finally:
        await client.close()
    med = {
        "raw": median(r["raw"][0] for r in rounds),
        "ours": median(r["ours"][0] for r in rounds),
        "ours-cpu": median(r["ours"][1] for r in rounds),
        "naive": median(r["naive"][0] for r in rounds),
        "naive-cpu": median(r["naive"][1] for r in rounds),
    }
    per_round = {
        "ceiling": [r["ours"][0] / r["raw"][0] for r in rounds],
        "cpu": [r["ours"][1] / r["naive"][1] for r in rounds],
        "wall": [r["ours"][0] / r["naive"][0] for r in rounds],
    }
    where = "OpenSearch on CPU 0, the rest on CPU 1" if args.split_cores else "sharing 2 CPUs"
    print(f"\n{n} alerts, one topic (6 partitions), one OpenSearch node ({where})")
    print(f"medians of {len(rounds)} rounds")
    print(f"raw _bulk ceiling (pre-encoded)  {med['raw']:>10,.0f} alerts/s")
    print(
        f"falco-ingest consume             {med['ours']:>10,.0f} alerts/s  "
        f"{med['ours-cpu']:>10,.0f} alerts/CPU-s"
    )
    print(
        f"naive baseline                   {med['naive']:>10,.0f} alerts/s  "
        f"{med['naive-cpu']:>10,.0f} alerts/CPU-s"
    )
    for label, key in (
        ("ours / raw ceiling (goal >= 0.90):         ", "ceiling"),
        ("ours / naive, alerts per CPU-s (goal >= 3):", "cpu"),
        ("ours / naive, wall (goal >= 1):            ", "wall"),
    ):
        values_ = per_round[key]
        rounds_text = " ".join(f"{v:.2f}" for v in values_)
        print(f"{label} {median(values_):.2f}  (rounds: {rounds_text})")


if __name__ == "__main__":
    asyncio.run(main())
