"""What the ledger costs: `falco-ingest consume` with the ledger and without it, side by
side on the same alerts and the same node, in rounds (without, with, with, without, ...;
the machine's pace drifts, so each pair is compared and the medians printed).

Prints per round and as medians: alerts/s (steady state, first to last stored document),
CPU-milliseconds per 1000 alerts of the consumer and of the OpenSearch node, and the
ledger's entries and their bytes per 1000 alerts. Needs the stack: ./dev stack up.
    .venv/bin/python bench/ledger.py [N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from statistics import median

import orjson
from common import alerts, load_env
from consumer import Run, commands, produce, settle, setup_prefix, timed_process
from opensearchpy import AsyncOpenSearch

from ingest.sink.ledger import ledger_index


async def one(client: AsyncOpenSearch, topic: str, n: int, ledger: bool) -> tuple[Run, int, int]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-ledger-{tag}"
    await setup_prefix(prefix)
    cmd, env = commands(topic, tag, prefix, n, "ours")
    env["INGEST_CONSUMER__LEDGER"] = "true" if ledger else "false"
    run = await timed_process(cmd, env, client, prefix, n)
    entries = size = 0
    if ledger:
        index = ledger_index(prefix)
        await client.indices.refresh(index=index)
        hits = (await client.search(index=index, body={"size": 10_000}))["hits"]["hits"]
        entries = len(hits)
        size = sum(len(orjson.dumps(h["_source"])) for h in hits)  # JSON bytes written
    await client.indices.delete(index=f"{prefix}-*,{ledger_index(prefix)}")
    await settle(client)
    return run, entries, size


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    load_env()
    topic = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    await produce(topic, alerts(args.n, "ledger"))
    client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=120)
    rows: dict[bool, list[tuple[Run, int, int]]] = {False: [], True: []}
    try:
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            for ledger in order:
                got = await one(client, topic, args.n, ledger)
                rows[ledger].append(got)
                run, entries, size = got
                print(
                    f"round {r + 1} ledger={'on ' if ledger else 'off'} {run.rate:8.0f} alerts/s  "
                    f"consumer {run.own:6.1f} ms  node {run.node:6.1f} ms /1000 alerts  "
                    f"entries {entries}"
                    + (f", {size / entries:.0f} bytes of JSON each" if entries else "")
                )
    finally:
        await client.close()
    print(f"\nmedians over {args.rounds} rounds of {args.n} alerts:")
    for ledger in (False, True):
        runs = [r for r, _, _ in rows[ledger]]
        rate, own = median(r.rate for r in runs), median(r.own for r in runs)
        node = median(r.node for r in runs)
        print(
            f"  ledger {'on ' if ledger else 'off'}: {rate:8.0f} alerts/s, consumer {own:6.2f} "
            f"ms, node {node:6.1f} ms per 1000 alerts"
        )
    on = [e for _, e, _ in rows[True]]
    print(f"  entries written: {median(on):.0f} ({1000 * median(on) / args.n:.2f} per 1000 alerts)")
    pairs = list(zip(rows[True], rows[False], strict=True))
    own = [a.own / b.own for (a, _, _), (b, _, _) in pairs]
    node = [a.node / b.node for (a, _, _), (b, _, _) in pairs]
    print(
        f"  on / off, round by round: consumer CPU {', '.join(f'{r:.2f}' for r in own)}; "
        f"node CPU {', '.join(f'{r:.2f}' for r in node)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
