"""Archive snapshots on the real node: list, prune only our old ones, restore a day."""

from __future__ import annotations

import datetime as dt
import os

from ingest.config import OpsSettings, load
from ingest.ops.archive import archived_days, prune, restore
from tests.integration.conftest import count_docs, os_client


def ops_for(prefix: str, repo: str) -> OpsSettings:
    base = load(OpsSettings)
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "archive_repository": repo,
        }
    )


async def test_prune_removes_only_our_old_snapshots_and_restore_brings_a_day_back(prefix, uid):
    repo = f"archive-{uid}"
    base = os.environ["INGEST_STACK_SNAPSHOT_DIR"]
    days = {"2023.01.15": 2, "2026.11.20": 3}  # one past 30 months, one recent
    async with os_client() as client:
        await client.snapshot.create_repository(
            repository=repo, body={"type": "fs", "settings": {"location": f"{base}/{repo}"}}
        )
        try:
            for day, n in days.items():
                index = f"{prefix}-{day}"
                for i in range(n):
                    await client.index(
                        index=index, body={"@timestamp": f"{day.replace('.', '-')}T00:00:0{i}Z"}
                    )
                await client.indices.refresh(index=index)
                # by hand (the index name) and as ISM's snapshot action names it (+ its time)
                for name in (index, f"{index}-2027.01.02-03:04:05.678"):
                    await client.snapshot.create(
                        repository=repo,
                        snapshot=name,
                        body={"indices": index},
                        wait_for_completion=True,
                    )
            # not ours: another team's snapshot in the same repository, and an odd name
            await client.snapshot.create(
                repository=repo,
                snapshot="manual-backup",
                body={"indices": f"{prefix}-2023.01.15"},
                wait_for_completion=True,
            )
            settings = ops_for(prefix, repo)
            old, new = f"{prefix}-2023.01.15", f"{prefix}-2026.11.20"
            ism = "-2027.01.02-03:04:05.678"
            listed = await archived_days(client, repo, prefix)
            assert [a.snapshot for a in listed] == [old, old + ism, new, new + ism]
            assert {a.state for a in listed} == {"SUCCESS"}

            today = dt.date(2026, 11, 26)
            assert [a.snapshot for a in await prune(client, settings, today, dry_run=True)] == [
                old,
                old + ism,
            ]
            assert (
                len((await client.snapshot.get(repository=repo, snapshot="_all"))["snapshots"]) == 5
            )
            gone = await prune(client, settings, today)
            assert [a.snapshot for a in gone] == [old, old + ism]
            left = {
                s["snapshot"]
                for s in (await client.snapshot.get(repository=repo, snapshot="_all"))["snapshots"]
            }
            assert left == {"manual-backup", new, new + ism}

            await client.indices.delete(index=f"{prefix}-2026.11.20")  # ISM's delete, by hand
            names = await restore(client, settings, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
            assert names == [f"restored-{prefix}-2026.11.20"]
            assert await count_docs(f"restored-{prefix}") == 3
            aliases = await client.indices.get_alias(index=names[0])
            assert aliases[names[0]]["aliases"] == {}  # never mixed into the live alias
        finally:
            await client.indices.delete(index=f"restored-{prefix}-*", ignore_unavailable=True)
            for s in (await client.snapshot.get(repository=repo, snapshot="_all"))["snapshots"]:
                await client.snapshot.delete(repository=repo, snapshot=s["snapshot"])
            await client.snapshot.delete_repository(repository=repo)
