"""What the ledger costs: `falco-ingest consume` with the ledger and without it, side by
side on the same alerts and the same node, in rounds (which goes first alternates; the
machine's pace drifts, so each pair is compared and the medians printed).

Each run stores the N alerts into a fresh prefix (steady state, first to last stored
document: alerts/s, CPU-milliseconds per 1000 alerts of the consumer and of the OpenSearch
node), then a second group reads them all again into the same indices (a replay: every
alert a 409, which with the ledger costs a lookup of the ledger and a get of the 409s'
sources a batch; consumer and node CPU per 1000 alerts, start-up and the idle stop
included). Also the ledger's entries and their JSON size. Needs the stack: ./dev stack up.
    .venv/bin/python bench/ledger.py [N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from dataclasses import dataclass
from statistics import median

import orjson
from common import alerts, load_env, run_measured
from consumer import (
    Run,
    _cpu_seconds,
    commands,
    produce,
    settle,
    setup_prefix,
    stack_pids,
    timed_process,
)
from opensearchpy import AsyncOpenSearch

from ingest.sink.ledger import ledger_index


@dataclass
class Result:
    store: Run
    entries: int
    entry_bytes: float
    replay_own: float  # ms of consumer CPU per 1000 alerts read again (all 409s)
    replay_node: float  # ms of node CPU per 1000 alerts, over the same run


async def one(client: AsyncOpenSearch, topic: str, n: int, ledger: bool) -> Result:
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-ledger-{tag}"
    await setup_prefix(prefix)
    cmd, env = commands(topic, tag, prefix, n, "ours")
    env["INGEST_CONSUMER__LEDGER"] = "true" if ledger else "false"
    store = await timed_process(cmd, env, client, prefix, n)
    node_pid = stack_pids()[0]
    node0 = _cpu_seconds(node_pid)
    again = dict(env, INGEST_KAFKA__GROUP_ID=f"replay-{tag}")
    _, cpu, code = await asyncio.to_thread(run_measured, [*cmd, "--stop-when-idle", "2"], again)
    assert code == 0, f"the replay's consumer exited {code}"
    node = _cpu_seconds(node_pid) - node0
    entries, size = 0, 0
    if ledger:
        index = ledger_index(prefix)
        await client.indices.refresh(index=index)
        hits = (await client.search(index=index, body={"size": 10_000}))["hits"]["hits"]
        entries = len(hits)
        size = sum(len(orjson.dumps(h["_source"])) for h in hits)
    await client.indices.delete(index=f"{prefix}-*,{ledger_index(prefix)}")
    await settle(client)
    return Result(store, entries, size / max(entries, 1), 1e6 * cpu / n, 1e6 * node / n)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    load_env()
    topic = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    await produce(topic, alerts(args.n, "ledger"))
    client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=120)
    rows: dict[bool, list[Result]] = {False: [], True: []}
    try:
        for r in range(args.rounds):
            for ledger in [False, True] if r % 2 == 0 else [True, False]:
                got = await one(client, topic, args.n, ledger)
                rows[ledger].append(got)
                s = got.store
                print(
                    f"round {r + 1} ledger {'on ' if ledger else 'off'}: {s.rate:6.0f} alerts/s, "
                    f"consumer {s.own:5.1f} ms, node {s.node:5.1f} ms /1000 alerts; replay: "
                    f"consumer {got.replay_own:5.1f} ms, node {got.replay_node:5.1f} ms; "
                    f"entries {got.entries} ({got.entry_bytes:.0f} bytes of JSON each)"
                )
    finally:
        await client.close()
    print(f"\nmedians over {args.rounds} rounds of {args.n} alerts, ms per 1000 alerts:")
    for ledger in (False, True):
        got = rows[ledger]
        print(
            f"  ledger {'on ' if ledger else 'off'}: "
            f"{median(g.store.rate for g in got):6.0f} alerts/s, "
            f"consumer {median(g.store.own for g in got):5.2f}, "
            f"node {median(g.store.node for g in got):5.1f}; replay: consumer "
            f"{median(g.replay_own for g in got):5.2f}, node "
            f"{median(g.replay_node for g in got):5.1f}"
        )
    print(f"  entries written: {median(g.entries for g in rows[True]):.0f}")
    pairs = list(zip(rows[True], rows[False], strict=True))
    for what, key in (
        ("consumer CPU", lambda g: g.store.own),
        ("node CPU", lambda g: g.store.node),
        ("replay consumer CPU", lambda g: g.replay_own),
        ("replay node CPU", lambda g: g.replay_node),
    ):
        ratios = ", ".join(f"{key(a) / key(b):.2f}" for a, b in pairs)
        print(f"  on / off round by round, {what}: {ratios}")


if __name__ == "__main__":
    asyncio.run(main())
