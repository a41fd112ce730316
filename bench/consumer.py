"""Consumer speed, side by side on one topic and one OpenSearch node:

1. the raw _bulk ceiling: pre-encoded bulk bodies of the same documents, 3 in flight;
2. falco-ingest consume;
3. the naive baseline (bench/baseline_consumer.py).

Prints alerts/s (wall, until every document is stored) and alerts per CPU-second of the
consumer process, with ratios, and where the CPU went: milliseconds per 1000 alerts of the
loader or consumer, the OpenSearch node and the Kafka broker, the share of the machine
left idle, and how many cores the node was kept busy (the rate times its CPU per document:
a figure the node's drifting pace does not move). Needs the stack: ./dev stack up.
    .venv/bin/python bench/consumer.py [N] [--rounds R]

The machine's speed varies from minute to minute (a shared 2-core VM), so they run in
rounds, one after the other: the ceiling, ours, the ceiling again (ours is compared with
the geometric mean of the two, which cancels a drift that only rose or fell meanwhile), and
the baseline first in odd rounds, last in even ones; the medians and each round's ratios
are printed. Each run starts on a quiet node: the one before it has its
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
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from common import PY, ROOT, alerts, load_env
from opensearchpy import AsyncOpenSearch

from ingest.agent.sender import agent_header
from ingest.config import OpsSettings, load
from ingest.consumer.batch import agent_of
from ingest.normalize.document import Document, normalize
from ingest.ops.setup import run_setup
from ingest.sink.bulk import OpenSearchSink
from ingest.stack import process
from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout
from ingest.stack.opensearch import OpenSearch

AGENT_READ_NS = time.time_ns()
HOSTS, READ = 6, 100  # six hosts; each reads (and ships) its alerts 100 at a time


def agent_headers(i: int) -> list[tuple[str, bytes]]:
    """The headers the agent writes on alert ``i``: its lineage (host, the record's key
    too; version; input; the time it read the alert, shared by the alerts of that read)."""
    received = AGENT_READ_NS + (i // (HOSTS * READ)) * 10**7
    return [agent_header(f"node-{i % HOSTS}", "file:/var/log/falco/events.json", received)]


async def produce(topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from ingest.config import AgentTuning, KafkaSettings
    from ingest.consumer.topics import ensure_topics

    kafka = KafkaSettings(bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"])
    await ensure_topics(kafka, topic)
    # Records as the agent ships them (ingest/agent/sender.py): alert i is host i % HOSTS's,
    # each host's read of 100 goes out as record batches of its own, keyed by the host,
    # with the agent's headers, in its default codec (the consumers decompress them).
    p = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        max_batch_size=AgentTuning().batch_bytes,
        compression_type=None if kafka.compression == "none" else kafka.compression,
    )
    await p.start()
    ordered = sorted(await p.partitions_for(topic))
    pick = DefaultPartitioner()
    futs = []
    for start in range(0, len(values), HOSTS * READ):
        for host in range(HOSTS):
            key = b"node-%d" % host
            partition = pick(key, ordered, ordered)
            headers = agent_headers(start + host)  # one read's: the same for all of it
            batch = p.create_batch()
            for i in range(start + host, min(start + HOSTS * READ, len(values)), HOSTS):
                while (
                    batch.append(key=key, value=values[i], timestamp=None, headers=headers) is None
                ):
                    futs.append(await p.send_batch(batch, topic, partition=partition))
                    batch = p.create_batch()
            if batch.record_count():
                futs.append(await p.send_batch(batch, topic, partition=partition))
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


@dataclass
class Run:
    """One run's alerts/s, and CPU-milliseconds per 1000 alerts of the loader or consumer
    process (``own``), the OpenSearch node and the Kafka broker over the same window, and
    the share of the machine's CPU time left idle in it (a run that leaves CPU idle is
    bound by latency, not by the node's CPU) and taken by the hypervisor (steal)."""

    rate: float
    own: float
    node: float
    broker: float
    idle: float
    steal: float
    merges: float  # ms of the node's merge threads per 1000 alerts (merges finished)
    gc: float  # ms of the node's JVM garbage collection per 1000 alerts

    @property
    def node_cores(self) -> float:
        """How many cores the node kept busy: the same documents cost the node the same
        work, so this says how well a loader keeps it fed, whatever the machine's pace."""
        return self.rate * self.node / 1e6


async def node_work(client: AsyncOpenSearch) -> tuple[float, float]:
    """(merge, GC) milliseconds of the node since it started: where its CPU per document
    goes besides indexing, to tell a slow half hour from a loader's doing."""
    r = await client.transport.perform_request(
        "GET",
        "/_nodes/stats/indices,jvm",
        params={
            "filter_path": "nodes.*.indices.merges.total_time_in_millis,"
            "nodes.*.jvm.gc.collectors.*.collection_time_in_millis"
        },
    )
    merges = gc = 0.0
    for node in r["nodes"].values():
        merges += node["indices"]["merges"]["total_time_in_millis"]
        gc += sum(c["collection_time_in_millis"] for c in node["jvm"]["gc"]["collectors"].values())
    return merges, gc


class Meter:
    """CPU seconds of a process, the node and the broker, from a start to a stop; the
    node's merge and GC time over the same window (``work``: ``node_work()`` at each end)."""

    def __init__(self, pid: int, work: tuple[float, float]) -> None:
        self.work0 = work
        self.pids = (pid, *stack_pids())
        self.t0, self.cpu0 = time.perf_counter(), [_cpu_seconds(p) for p in self.pids]
        self.idle0, self.steal0, self.total0 = _machine()

    async def stop(self, alerts: int, client: AsyncOpenSearch) -> Run:
        """The run's figures over ``alerts``: the CPU times first, then the node's merge and
        GC time (one more request, so after the CPU is read)."""
        wall = time.perf_counter() - self.t0
        cpu = [_cpu_seconds(p) - c for p, c in zip(self.pids, self.cpu0, strict=True)]
        own, node, broker = (1e6 * c / alerts for c in cpu)
        idle, steal, total = _machine()
        ticks = max(1, total - self.total0)
        merges, gc = await node_work(client)
        return Run(
            alerts / wall,
            own,
            node,
            broker,
            (idle - self.idle0) / ticks,
            (steal - self.steal0) / ticks,
            1000 * (merges - self.work0[0]) / alerts,
            1000 * (gc - self.work0[1]) / alerts,
        )


def stack_pids() -> tuple[int, int]:
    """(OpenSearch, Kafka) process ids of the project's own stack; 0 for one it did not start."""
    layout = Layout.default()
    node = process.read_pid(OpenSearch(layout).pid_file)
    kafka = process.read_pid(Kafka(layout).pid_file)
    return node or 0, kafka or 0


def _machine() -> tuple[int, int, int]:
    """(idle, steal, total) CPU ticks of the machine since boot (idle includes waiting for
    I/O; steal is time the hypervisor gave another guest)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], ticks[7], sum(ticks[:8])


async def raw_bulk_ceiling(
    client: AsyncOpenSearch, prefix: str, topic: str, values: list[bytes]
) -> Run:
    now = time.time_ns()
    # The documents the consumers write, lineage too (the agent's headers included; the
    # partition and offset numbers are of the same size as the real ones).
    lineages = [(topic, i % 6, i // 6, agent_of(agent_headers(i))) for i in range(len(values))]
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

    meter = Meter(os.getpid(), await node_work(client))
    await asyncio.gather(*(send(b) for b in bodies))
    while await count(client, prefix) < len(values):
        await asyncio.sleep(0.1)
    return await meter.stop(len(values), client)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def split_cores() -> Iterator[None]:
    """OpenSearch on CPU 0; Kafka, this process and its children on CPU 1."""
    node, kafka = stack_pids()
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
    if not pid:  # a stack not started by this project: its CPU is not ours to read
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed_process(
    cmd: list[str], env: dict[str, str], client: AsyncOpenSearch, prefix: str, n: int
) -> Run:
    """Steady state, from the first stored document to the last (start-up and group join
    left out for both consumers alike).

    A ``Popen`` child, not asyncio's: asyncio reaps a child the moment it exits, and the
    baseline exits by itself once its last bulk is in, which could be before its CPU time
    was read from ``/proc``. A child nobody has waited for stays there, CPU times and all,
    until ``wait()``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        while (first := await count(client, prefix)) == 0:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[1:3]} exited ({proc.returncode}) before storing anything")
            await asyncio.sleep(0.05)
        meter = Meter(proc.pid, await node_work(client))
        while await count(client, prefix) < n:
            await asyncio.sleep(0.1)
        return await meter.stop(n - first, client)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait)


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
) -> dict[str, Run]:
    """Ours between two runs of the ceiling (``raw``, ``raw2``), and the baseline before
    them in odd rounds and after them in even ones, one after the other on the same node.
    The node's pace drifts from minute to minute: ours is compared with the ceiling's runs
    on either side of it, so a drift that only rose or fell over the three runs cancels.
    Each run's indices are deleted once it is measured and the node left to finish its
    merges, so no run pays for the one before it."""
    n = len(values)
    order = ["raw", "ours", "raw2", "naive"]
    if first % 2:
        order = ["naive", *order[:3]]
    out: dict[str, Run] = {}
    for who in order:
        prefix = f"bench-{who}-{tag}"
        await setup_prefix(prefix)
        try:
            if who.startswith("raw"):
                out[who] = await raw_bulk_ceiling(client, prefix, topic, values)
            else:
                cmd, env = commands(topic, tag, prefix, n, who)
                out[who] = await timed_process(cmd, env, client, prefix, n)
        finally:
            await client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        await settle(client)
    return out


def bracketed(r: dict[str, Run], what: str) -> float:
    """Ours over the ceiling runs either side of it (their geometric mean), by ``what``."""
    ours, before, after = (getattr(r[w], what) for w in ("ours", "raw", "raw2"))
    return ours / (before * after) ** 0.5


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
    # Runs of 500,000 (30-40 s each): a short run ends before the merges its documents cause,
    # the fastest (the ceiling) most of all, and its node CPU per document then varied by 40 %
    # from round to round (94-136 ms per 1000 at 100,000; 122-125 ms at 500,000).
    parser.add_argument("n", nargs="?", type=int, default=500_000, help="alerts per run")
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
                    f"round {i + 1}: "
                    + ", ".join(
                        f"{who} {r[who].rate:,.0f}/s {1e6 / r[who].own:,.0f}/CPU-s "
                        f"(node {r[who].node:.0f} ms: merges {r[who].merges:.0f}, "
                        f"gc {r[who].gc:.0f}; {r[who].node_cores:.2f} cores)"
                        for who in ("raw", "ours", "raw2", "naive")
                    ),
                    flush=True,
                )
    finally:
        await client.close()
    report(rounds, n, args.split_cores)


def report(rounds: list[dict[str, Run]], n: int, split: bool) -> None:
    def med(who: str, what: str) -> float:
        whose = ("raw", "raw2") if who == "raw" else (who,)
        return median(getattr(r[w], what) for r in rounds for w in whose)

    where = "OpenSearch on CPU 0, the rest on CPU 1" if split else "sharing 2 CPUs"
    print(f"\n{n} alerts, one topic (6 partitions), one OpenSearch node ({where})")
    print(f"medians of {len(rounds)} rounds; CPU in milliseconds per 1000 alerts")
    print(
        f"{'':32} {'alerts/s':>9} {'alerts/CPU-s':>13} {'CPU own':>8} {'node':>6} {'kafka':>6}"
        f" {'idle':>5} {'steal':>5} {'node cores':>10}"
    )
    for who, label in (
        ("raw", "raw _bulk ceiling (pre-encoded)"),
        ("ours", "falco-ingest consume"),
        ("naive", "naive baseline"),
    ):
        own = med(who, "own")
        print(
            f"{label:32} {med(who, 'rate'):>9,.0f} {1e6 / own:>13,.0f} {own:>8.1f} "
            f"{med(who, 'node'):>6.1f} {med(who, 'broker'):>6.1f} {med(who, 'idle'):>5.0%}"
            f" {med(who, 'steal'):>5.0%} {med(who, 'node_cores'):>10.2f}"
        )
    for label, ratios in (
        (
            "ours / raw ceiling (goal >= 0.90):         ",
            [bracketed(r, "rate") for r in rounds],
        ),
        (
            "ours / raw, node cores kept busy:          ",
            [bracketed(r, "node_cores") for r in rounds],
        ),
        (
            "ours / naive, alerts per CPU-s (goal >= 3):",
            [r["naive"].own / r["ours"].own for r in rounds],
        ),
        (
            "ours / naive, wall (goal >= 1):            ",
            [r["ours"].rate / r["naive"].rate for r in rounds],
        ),
    ):
        rounds_text = " ".join(f"{v:.2f}" for v in ratios)
        print(f"{label} {median(ratios):.2f}  (rounds: {rounds_text})")


if __name__ == "__main__":
    asyncio.run(main())
