"""`falco-ingest demo`: the whole path on this machine, ending with what landed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from opensearchpy import AsyncOpenSearch

from ingest import logs
from ingest.agent.runner import run_agent
from ingest.config import AgentSettings, ConsumerSettings, OpsSettings, load
from ingest.consumer.runner import run_consumer
from ingest.normalize.document import PRIORITIES
from ingest.ops.dashboards import overview_url
from ingest.ops.resources import ROOT
from ingest.ops.setup import run_setup
from ingest.sink.client import make_client
from ingest.stack import manager
from ingest.stack.layout import Layout

SAMPLES = ROOT / "examples" / "sample-alerts.jsonl"
NAMES = {n: name for n, name in PRIORITIES.values()}


def run_demo(alerts: Path | None = None) -> int:
    alerts = alerts or SAMPLES
    layout = Layout.default()
    print("== 1. stack up")
    env = manager.up(layout)
    os.environ.update(env)
    os.environ.setdefault("INGEST_AGENT__STATE_DIR", str(layout.root / "demo-agent"))
    os.environ.setdefault("INGEST_METRICS_PORT", "0")
    logs.setup("WARNING")
    print("\n== 2. setup (index templates, mappings, the ledger, archive repository)")
    if asyncio.run(run_setup(load(OpsSettings))) != 0:
        return 1
    print(f"\n== 3. agent: {alerts} -> Kafka")
    left = asyncio.run(run_agent(load(AgentSettings), [f"file:{alerts}"], once=True))
    print(f"agent done, {left.spooled_bytes} bytes left in its spool")
    for line in left.partial_lines:
        print(f"  {line}: not shipped")
    print("\n== 4. consumer: Kafka -> OpenSearch")
    consumer = load(ConsumerSettings)
    stats = asyncio.run(run_consumer(consumer, stop_when_idle=3.0))
    print(stats.summary())
    print("\n== 5. what is searchable in OpenSearch")
    asyncio.run(_summary(consumer))
    ops = load(OpsSettings)
    url = overview_url(ops)
    if url:
        print(f'\nThe "Falco Overview" dashboard: {url}')
    else:
        print(
            '\nNo Dashboards configured (INGEST_DASHBOARDS__URL): setup imports the "Falco '
            'Overview" dashboard when it is set; dashboards/ holds it for a manual import'
        )
    return 0


async def _summary(settings: ConsumerSettings) -> None:
    alias = settings.opensearch.index_prefix
    async with make_client(settings.opensearch) as client:
        total, priorities, rules = await landed(client, alias)
    print(f"{total} Falco alerts searchable under alias '{alias}' (@type: falco)")
    print("\nby falco_priority:")
    for number, count in priorities.items():
        print(f"  {number} {NAMES.get(number, '?'):<14} {count:>6}")
    print("\nby falco_rule:")
    for rule, count in rules.items():
        print(f"  {count:>6}  {rule}")


async def landed(client: AsyncOpenSearch, alias: str) -> tuple[int, dict[int, int], dict[str, int]]:
    """What the demo's summary shows: the Falco alerts under ``alias``, their count by
    priority number and by rule (the 50 most frequent)."""
    await client.indices.refresh(index=alias)
    resp = await client.search(
        index=alias,
        body={
            "size": 0,
            "query": {"term": {"@type": "falco"}},
            "aggs": {
                "prio": {
                    "terms": {"field": "falco_priority", "size": 10, "order": {"_key": "asc"}}
                },
                "rule": {"terms": {"field": "falco_rule", "size": 50}},
            },
        },
    )
    aggs = resp["aggregations"]
    return (
        resp["hits"]["total"]["value"],
        {b["key"]: b["doc_count"] for b in aggs["prio"]["buckets"]},
        {b["key"]: b["doc_count"] for b in aggs["rule"]["buckets"]},
    )
