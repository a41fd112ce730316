"""The chaos run (issue 21): distinct alerts through two agents (a tailed file that is
rotated, an HTTP receiver) and three consumers on the replicated stack (three brokers, two
OpenSearch nodes), while, phase after phase:

  broker     the broker leading the most partitions SIGKILLed; a consumer too, 10 s later
  consumers  a consumer SIGKILLed every 20 s, each restarted 5 s later
  node       OpenSearch node 2 SIGSTOPped for 30 s
  agents     the file agent SIGKILLed and restarted, then the HTTP agent
  storm      a fifth of the alerts at once, against nodes whose indexing-pressure limit is
             lowered (Layout.replicated, 2 MB): real 429s
  scale      the fleet scaled 3 -> 1 (SIGTERM) and back to 3

At the end every alert must be stored once: documents = distinct alerts sent, no id twice,
nothing in the dead-letter topic, lag 0, agent spools empty. Per phase it prints the
longest stall of stored alerts, the largest lag, when the lag was back at its fault-free
level and the 429s the nodes answered; then the totals. Exit 0 if nothing was lost or
duplicated, 1 naming the alerts otherwise, 2 if the run could not be made.

    .venv/bin/python bench/chaos.py [--alerts 200000] [--pace 1.0] [--keep-stack]

It starts the replicated stack (.stack-replicated, ports 29160 / 29250 / 29040) if it is
not running, and stops it after a passing run if it started it; a failing run keeps the
stack, the indices and the processes' logs for inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from chaos_fleet import Feeder, Proc, free_port
from chaos_watch import Phase, Watch, as_json, dead_letters, report_line, stored_ids, verdict
from common import PY, alerts

from ingest.normalize.document import normalize
from ingest.normalize.model import Document
from ingest.stack import manager, process
from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout
from ingest.stack.opensearch import OpenSearch

CONSUMERS = 3


@dataclass
class Fleet:
    agents: dict[str, Proc]  # "file", "http"
    consumers: list[Proc]
    layout: Layout
    topic: str
    servers: str
    crashes: list[str] = field(default_factory=list)  # processes that ended on their own

    @property
    def procs(self) -> list[Proc]:
        return [*self.agents.values(), *self.consumers]

    def check(self, at: float) -> None:
        """A process that ended without being told to is a finding: noted, restarted."""
        for p in self.procs:
            if p.popen is not None and p.popen.poll() is not None:
                self.crashes.append(f"{p.name} exited with {p.popen.returncode} at {at:.0f} s")
                p.start()


Action = Callable[[], Awaitable[str]]


async def leader_broker(servers: str, topic: str) -> int:
    """The broker that leads the most partitions of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return Counter(p["leader"] for p in described[0]["partitions"]).most_common(1)[0][0]
    finally:
        await admin.close()


def plan(fleet: Fleet) -> list[tuple[str, float, list[tuple[float, Action]]]]:
    """The phases: (name, seconds, [(second within it, action)]), before ``--pace``."""
    c, a = fleet.consumers, fleet.agents
    node2 = OpenSearch(fleet.layout, 2)
    down: list[Kafka] = []

    async def kill_leader() -> str:
        broker = Kafka(fleet.layout, await leader_broker(fleet.servers, fleet.topic))
        os.kill(process.read_pid(broker.pid_file) or 0, signal.SIGKILL)
        down.append(broker)
        return f"SIGKILL {broker.name} (leads the most partitions)"

    async def restart_broker() -> str:
        broker = down.pop()
        await asyncio.to_thread(broker.start)
        return f"restart {broker.name}"

    def kill(p: Proc) -> Action:
        async def act() -> str:
            p.kill()
            return f"SIGKILL {p.name}"

        return act

    def start(p: Proc) -> Action:
        async def act() -> str:
            p.start()
            return f"start {p.name}"

        return act

    def stop(p: Proc) -> Action:
        async def act() -> str:
            await asyncio.to_thread(p.stop)
            return f"SIGTERM {p.name} (exit {p.exits[-1]})"

        return act

    def pause(sig: signal.Signals) -> Action:
        async def act() -> str:
            os.kill(process.read_pid(node2.pid_file) or 0, sig)
            return f"{sig.name} {node2.name}"

        return act

    async def storm() -> str:
        return "a fifth of the alerts at once"

    return [
        ("steady", 20, []),
        (
            "broker",
            40,
            [(0, kill_leader), (10, kill(c[0])), (15, start(c[0])), (20, restart_broker)],
        ),
        (
            "consumers",
            60,
            [(0, kill(c[1])), (5, start(c[1])), (20, kill(c[2])), (25, start(c[2]))]
            + [(40, kill(c[0])), (45, start(c[0]))],
        ),
        ("node", 50, [(0, pause(signal.SIGSTOP)), (30, pause(signal.SIGCONT))]),
        (
            "agents",
            30,
            [(0, kill(a["file"])), (5, start(a["file"])), (10, kill(a["http"]))]
            + [(13, start(a["http"]))],
        ),
        ("storm", 40, [(0, storm)]),
        ("scale", 50, [(0, stop(c[1])), (0, stop(c[2])), (30, start(c[1])), (30, start(c[2]))]),
    ]


async def run_phases(
    fleet: Fleet, watch: Watch, phases: list, pace: float, t0: float
) -> list[Phase]:
    done: list[Phase] = []
    at = 0.0
    for name, seconds, actions in phases:
        phase = Phase(name, at, at, at + seconds * pace)
        phase.rejections = -await watch.rejections()
        for offset, act in actions:
            await asyncio.sleep(max(0.0, t0 + at + offset * pace - time.monotonic()))
            phase.actions.append(f"{time.monotonic() - t0:6.1f} s  {await act()}")
            phase.restored = time.monotonic() - t0
        await asyncio.sleep(max(0.0, t0 + phase.end - time.monotonic()))
        fleet.check(phase.end)
        phase.rejections += await watch.rejections()
        done.append(phase)
        at = phase.end
    return done


def feed_plan(
    n: int, phases: list[tuple[str, float, list]], pace: float
) -> list[tuple[float, int]]:
    """Alerts at an even pace over the run, but a fifth of them at the storm's start."""
    total = sum(seconds for _, seconds, _ in phases) * pace
    storm_at = pace * sum(s for _, s, _ in phases[: [p[0] for p in phases].index("storm")])
    storm = n // 5
    before = round((n - storm) * storm_at / total)
    return [(0.0, before), (storm_at, storm), (storm_at, n - storm - before), (total, 0)]


def stack(keep: bool) -> tuple[Layout, dict[str, str], bool]:
    """The replicated stack (its nodes with a lowered indexing-pressure limit), started
    unless it runs already."""
    layout = Layout.replicated()
    running = all(ok for _, ok, _ in manager.status(layout))
    env = manager.up(layout, say=print, timeout=300)
    return layout, env, not running and not keep


async def limit_lowered(url: str) -> bool:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/_nodes/stats/indexing_pressure") as r:
            nodes = (await r.json())["nodes"].values()
    return all(n["indexing_pressure"]["memory"]["limit_in_bytes"] <= 64 << 20 for n in nodes)


def fleet_env(stack_env: dict[str, str], uid: str) -> dict[str, str]:
    env = dict(os.environ, **stack_env)
    env.update(
        INGEST_OPENSEARCH__INDEX_PREFIX=f"chaos-{uid}",
        INGEST_KAFKA__TOPIC=f"chaos-{uid}",
        INGEST_KAFKA__DLQ_TOPIC=f"chaos-{uid}.dlq",
        INGEST_KAFKA__GROUP_ID=f"chaos-{uid}",
        INGEST_INDEX_REFRESH_INTERVAL="1s",  # the stored count a second behind, not five
        INGEST_CONSUMER__BATCH_MAX_BYTES=str(1 << 20),  # under the lowered limit
        INGEST_LOG_LEVEL="WARNING",
    )
    return env


def make_fleet(env: dict[str, str], work: Path, layout: Layout, http_port: int) -> Fleet:
    def proc(name: str, args: list[str], **extra: str) -> Proc:
        penv = dict(env, INGEST_METRICS_PORT=str(free_port()), **extra)
        return Proc(name, args, penv, work / f"{name}.log")

    agents = {
        "file": proc(
            "agent-file",
            ["agent", "--input", f"file:{work / 'falco.json'}"],
            INGEST_AGENT__STATE_DIR=str(work / "agent-file"),
            INGEST_AGENT__HOSTNAME="host-a",  # two hosts: their alerts are keyed apart
        ),
        "http": proc(
            "agent-http",
            ["agent", "--input", f"http://127.0.0.1:{http_port}"],
            INGEST_AGENT__STATE_DIR=str(work / "agent-http"),
            INGEST_AGENT__HOSTNAME="host-b",
        ),
    }
    consumers = [proc(f"consumer-{k}", ["consume"]) for k in range(1, CONSUMERS + 1)]
    return Fleet(
        agents,
        consumers,
        layout,
        env["INGEST_KAFKA__TOPIC"],
        env["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
    )


async def drained(watch: Watch, n: int, timeout: float) -> bool:
    """Wait until every alert is stored and the group has committed everything."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        last = watch.samples[-1] if watch.samples else None
        if last and last.lag == 0 and last.stored is not None and last.stored >= n:
            await asyncio.sleep(3)  # a late duplicate would show now
            return True
        await asyncio.sleep(1)
    return False


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=200_000, help="distinct alerts to send")
    parser.add_argument("--pace", type=float, default=1.0, help="scale every phase's seconds")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        help="the consumers' INGEST_CONSUMER__SESSION_TIMEOUT_MS (default: the product's)",
    )
    args = parser.parse_args()
    # the watcher's Kafka clients retry a broker that is down, and say so at length
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    layout, stack_env, stop_stack = stack(args.keep_stack)
    url = stack_env["INGEST_OPENSEARCH__URL"]
    if not await limit_lowered(url):
        print(
            f"the replicated stack runs without a lowered indexing-pressure limit: stop it "
            f"(INGEST_STACK_DIR={layout.root} falco-ingest stack down) and run again",
            file=sys.stderr,
        )
        return 2
    uid = uuid.uuid4().hex[:8]
    env = fleet_env(stack_env, uid)
    if args.session_timeout_ms:
        env["INGEST_CONSUMER__SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
        # a rebalance waits for the drain, which must end within the session
        drain = min(20.0, args.session_timeout_ms / 2000)
        env["INGEST_CONSUMER__DRAIN_TIMEOUT_S"] = str(drain)
    work = Path(tempfile.mkdtemp(prefix=f"chaos-{uid}-"))
    print(f"run chaos-{uid}: {args.alerts:,} alerts, pace {args.pace}, logs in {work}")
    setup = await asyncio.to_thread(
        subprocess.run, [PY, "-m", "ingest.cli", "setup"], env=env, capture_output=True, text=True
    )
    if setup.returncode != 0:
        print("setup failed:\n" + setup.stderr[-2000:], file=sys.stderr)
        return 2

    values = alerts(args.alerts, f"chaos-{uid}")
    now = time.time_ns()
    ids = []
    for v in values:
        doc = normalize(v, None, now)
        assert isinstance(doc, Document), doc
        ids.append(doc.doc_id)
    assert len(set(ids)) == len(ids), "the alerts are not distinct"

    http_port = free_port()
    fleet = make_fleet(env, work, layout, http_port)
    for p in fleet.procs:
        p.start()
    phases = plan(fleet)
    feeder = Feeder(values, work / "falco.json", f"http://127.0.0.1:{http_port}/", args.alerts // 8)
    watch = Watch(url, fleet.servers, fleet.topic, env["INGEST_KAFKA__GROUP_ID"], f"chaos-{uid}")
    stop = asyncio.Event()
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as session:
        watching = asyncio.create_task(watch.run(t0, lambda: feeder.sent, stop))
        feeding = asyncio.create_task(
            feeder.run(feed_plan(args.alerts, phases, args.pace), session)
        )
        done = await run_phases(fleet, watch, phases, args.pace, t0)
        await feeding
        finished = await drained(watch, args.alerts, timeout=300)
        stop.set()
        await watching
    tail = time.monotonic() - t0 - done[-1].end
    spools = {k: a.metric("ingest_agent_spool_bytes") for k, a in fleet.agents.items()}
    for p in fleet.procs:
        p.stop()
    unclean = [
        f"{p.name} exited {code} on SIGTERM" for p in fleet.procs for code in p.exits if code != 0
    ]

    stored = await stored_ids(url, f"chaos-{uid}")
    letters = await dead_letters(fleet.servers, env["INGEST_KAFKA__DLQ_TOPIC"])
    counts, failures = verdict(ids, stored, letters)
    last = watch.samples[-1]

    steady = watch.baseline(done[0])
    print(f"\nper phase (steady lag with no fault: {steady:,} records)")
    figures = []
    for phase in done:
        fig = watch.figures(phase, steady)
        figures.append(fig)
        print(report_line(phase, fig))
        for line in phase.actions:
            print(f"    {line}")
    totals = {
        "sent": feeder.sent,
        "distinct": len(ids),
        **counts,
        "final_lag": last.lag,
        "spool_bytes": spools,
        "http_retries": feeder.http_retries,
        "rotations": feeder.rotations,
        "drain_s": round(tail, 1),
        "crashes": fleet.crashes,
        "unclean_exits": unclean,
    }
    print("\ntotals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    (work / "chaos.json").write_bytes(as_json(done, figures, totals, watch.samples))
    if args.json:
        args.json.write_bytes(as_json(done, figures, totals, watch.samples))

    if not finished or last.lag != 0:
        failures.append(f"not drained within 300 s: lag {last.lag}")
    if any(v != 0 for v in spools.values()):
        failures.append(f"agent spools not empty: {spools}")
    failures += fleet.crashes + unclean
    if failures:
        print("\nFAILED\n" + "\n".join(failures), file=sys.stderr)
        print(f"kept for inspection: indices chaos-{uid}-*, logs {work}", file=sys.stderr)
        return 1
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{url}/chaos-{uid}-*"):
            pass
    if stop_stack:
        manager.down(layout, say=print)
    print("\nOK: every alert stored once")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
