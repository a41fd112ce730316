"""Archive snapshots on the real node: list, prune only our old ones, restore a day; the
retention audit over real indices and snapshots."""

from __future__ import annotations

import datetime as dt

import orjson

from ingest.config import OpsSettings, load
from ingest.ops.archive import (
    RestoredIndex,
    add_months,
    archived_days,
    prune,
    prune_restored,
    restore,
    restored_indices,
)
from ingest.ops.audit import run_audit
from ingest.ops.setup import _repository
from tests.integration.conftest import count_docs, os_client


def ops_for(prefix: str, repo: str) -> OpsSettings:
    base = load(OpsSettings)
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "archive_repository": repo,
        }
    )


def snapshot_objects(settings: OpsSettings, repo: str) -> list[str]:
    """The snapshot files (``snap-*.dat``) of an S3 archive, as S3 lists them (boto3)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=settings.s3.endpoint_url, region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3.bucket, Prefix=repo)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return sorted(k for k in keys if k.rsplit("/", 1)[-1].startswith("snap-"))


async def test_prune_removes_only_our_old_snapshots_and_restore_brings_a_day_back(prefix, uid):
    """In the repository ``setup`` makes on this node: S3 in the stack's bucket on
    OpenSearch 3 (with repository-s3), a shared directory on 2.19."""
    repo = f"archive-{uid}"
    settings = ops_for(prefix, repo)
    days = {"2023.01.15": 2, "2026.11.20": 3}  # one past 30 months, one recent
    async with os_client() as client:
        await client.snapshot.create_repository(repository=repo, body=_repository(settings))
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
            in_s3 = settings.archive_type == "s3"
            if in_s3:  # each snapshot is in the bucket, under the repository's base path
                assert len(snapshot_objects(settings, repo)) == 5
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
            if in_s3:
                assert len(snapshot_objects(settings, repo)) == 3

            await client.indices.delete(index=f"{prefix}-2026.11.20")  # ISM's delete, by hand
            names = await restore(client, settings, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
            assert names == [f"restored-{prefix}-2026.11.20"]
            assert await count_docs(f"restored-{prefix}") == 3
            again = await restore(client, settings, dt.date(2026, 11, 1), dt.date(2026, 11, 30))
            assert again == []  # already there: left as it is, no error

            aliases = await client.indices.get_alias(index=names[0])
            assert aliases[names[0]]["aliases"] == {}  # never mixed into the live alias
            # an investigation's copy: stamped, and pruned 30 days after it was restored
            on = dt.datetime.now(dt.UTC).date()
            assert await restored_indices(client, prefix) == [RestoredIndex(names[0], on)]
            later = on + dt.timedelta(days=settings.restored_retention_days)
            assert await prune_restored(client, settings, later - dt.timedelta(days=1)) == []
            assert len(await prune_restored(client, settings, later, dry_run=True)) == 1
            assert await client.indices.exists(index=names[0])
            assert [r.index for r in await prune_restored(client, settings, later)] == names
            assert not await client.indices.exists(index=names[0])
        finally:
            await client.indices.delete(index=f"restored-{prefix}-*", ignore_unavailable=True)
            for s in (await client.snapshot.get(repository=repo, snapshot="_all"))["snapshots"]:
                await client.snapshot.delete(repository=repo, snapshot=s["snapshot"])
            await client.snapshot.delete_repository(repository=repo)


async def test_audit_retention_reports_what_is_there_and_flags_each_planted_violation(
    prefix, uid, capsys
):
    repo = f"archive-{uid}"
    settings = ops_for(prefix, repo)
    today = dt.datetime.now(dt.UTC).date()

    def name(days_ago: int) -> str:
        return f"{prefix}-{today - dt.timedelta(days=days_ago):%Y.%m.%d}"

    async def make_index(days_ago: int) -> None:
        await client.index(index=name(days_ago), body={"@type": "falco"}, refresh=True)

    async with os_client() as client:
        # The rules for days stored before the consumers kept a ledger (such a ledger
        # accounts from a later day on, as setup makes it on a cluster holding alerts);
        # tests/integration/test_ledger.py has the days a ledger accounts for.
        tomorrow = today + dt.timedelta(days=1)
        await client.indices.put_mapping(
            index=f"ledger-{prefix}", body={"_meta": {"reconciled_from": str(tomorrow)}}
        )
        await client.snapshot.create_repository(repository=repo, body=_repository(settings))
        try:
            for days_ago in (2, 1, 0):
                await make_index(days_ago)
            assert await run_audit(settings, "json", today) == 1
            clean = orjson.loads(capsys.readouterr().out)
            # This node has no ISM (see README): that alone is reported, nothing else.
            assert [v["kind"] for v in clean["violations"]] == ["ism_missing"]
            assert [i["index"] for i in clean["indices"]] == [name(2), name(1), name(0)]
            assert [i["age_days"] for i in clean["indices"]] == [2, 1, 0]

            await make_index(400)  # kept past the hot year
            await make_index(450)  # archived, then deleted as ISM would
            await client.snapshot.create(
                repository=repo,
                snapshot=f"{name(450)}-2026.01.02-03:04:05.678",
                body={"indices": name(450)},
                wait_for_completion=True,
            )
            await client.indices.delete(index=name(450))
            await make_index(1000)  # an archived day kept past 30 months
            await client.snapshot.create(
                repository=repo,
                snapshot=name(1000),
                body={"indices": name(1000)},
                wait_for_completion=True,
            )
            await client.indices.delete(index=name(1000))
            await client.indices.delete(index=name(1))  # a recent day deleted, not archived

            assert await run_audit(settings, "json", today) == 1
            got = orjson.loads(capsys.readouterr().out)
            found = {(v["kind"], v["subject"]) for v in got["violations"]}
            assert ("past_hot_retention", name(400)) in found
            assert ("archive_past_retention", name(1000)) in found
            assert ("day_missing", str(today - dt.timedelta(days=1))) in found
            first_kept = add_months(today, -30) + dt.timedelta(days=1)
            assert ("day_missing", f"{first_kept} .. {today - dt.timedelta(days=451)}") in found
            assert {k for k, _ in found} == {
                "ism_missing",
                "past_hot_retention",
                "archive_past_retention",
                "day_missing",
            }
            assert got["archive_span"]["days"] == 2

            assert await run_audit(settings, "md", today) == 1
            text = capsys.readouterr().out
            assert f"| {name(400)} |" in text and "**past_hot_retention**" in text
        finally:
            for s in (await client.snapshot.get(repository=repo, snapshot="_all"))["snapshots"]:
                await client.snapshot.delete(repository=repo, snapshot=s["snapshot"])
            await client.snapshot.delete_repository(repository=repo)
