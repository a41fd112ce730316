"""The ledger on the real stack: what the consumers write, counted once under replays and
re-reads, and `audit retention` reconciling it with the indices and the archive, a restore
test included."""

from __future__ import annotations

import datetime as dt

import orjson

from ingest.config import OpsSettings, load
from ingest.consumer.runner import run_consumer
from ingest.ops.audit import build_report, verify
from ingest.ops.reconcile import read_ledger
from ingest.ops.setup import _repository
from tests.integration.conftest import consumer_settings, make_alerts, os_client, produce

LEDGER_KINDS = {"count_mismatch", "deleted_early", "archive_missing", "day_missing"}
DAY_NS = 86_400 * 10**9


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def at_noon(days_ago: int) -> int:
    day = today() - dt.timedelta(days=days_ago)
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    return int(noon.timestamp()) * 10**9


def ops_for(prefix: str, repo: str, hot_days: int) -> OpsSettings:
    base = load(OpsSettings)
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "archive_repository": repo,
            "hot_retention_days": hot_days,
        }
    )


async def consume(topic: str, prefix: str, group: str, ledger: bool = True):
    settings = consumer_settings(topic, prefix)
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"group_id": group}),
            "consumer": settings.consumer.model_copy(update={"ledger": ledger}),
        }
    )
    return await run_consumer(settings, stop_when_idle=3.0)


async def test_alerts_stored_before_a_lost_entry_replays_and_rereads_are_counted_once(prefix, uid):
    topic = f"ledger-{uid}"
    alerts = make_alerts(30, "once", start_ns=at_noon(1))
    await produce(topic, alerts)
    # Stored without a ledger: as if each batch's entry had been lost in a crash
    stats = await consume(topic, prefix, f"a-{uid}", ledger=False)
    assert stats.indexed == 30
    async with os_client() as client:
        assert await read_ledger(client, prefix) is not None
        assert (await read_ledger(client, prefix)).days == {}  # type: ignore[union-attr]
    # Read again with the ledger (a new group: from the first offset): every record is a
    # 409, stored by that very record, and counted now
    stats = await consume(topic, prefix, f"b-{uid}")
    assert stats.duplicates == 30 and stats.indexed == 0
    # Read a third time, and the same alerts sent again (a replay, other offsets)
    await produce(topic, alerts)
    await consume(topic, prefix, f"c-{uid}")
    await consume(topic, prefix, f"b-{uid}")
    async with os_client() as client:
        ledger = await read_ledger(client, prefix)
    assert ledger is not None
    assert ledger.days[today() - dt.timedelta(days=1)].stored == 30
    assert sum(d.stored for d in ledger.days.values()) == 30


async def test_the_audit_names_each_planted_fault_and_restores_an_archived_day(prefix, uid):
    repo = f"ledger-archive-{uid}"
    topic = f"ledger-{uid}"
    per_day = {12: 8, 7: 6, 3: 5, 2: 7, 1: 9}  # days ago -> alerts; 4, 5, 6 quiet
    alerts = []
    for ago, n in per_day.items():
        alerts += make_alerts(n, f"d{ago}", start_ns=at_noon(ago))
    bad = [b"not json", b'{"rule": "r", "priority": "Loud", "output": "x"}']
    await produce(topic, alerts + bad)
    stats = await consume(topic, prefix, f"g-{uid}")
    assert stats.indexed == len(alerts) and sum(stats.dead_lettered.values()) == 2
    # a replay of a day's alerts: 409s, counted once
    await produce(topic, make_alerts(9, "d1", start_ns=at_noon(1)))
    await consume(topic, prefix, f"g-{uid}")

    settings = ops_for(prefix, repo, hot_days=5)
    day = {ago: today() - dt.timedelta(days=ago) for ago in range(13)}
    index = {ago: f"{prefix}-{d:%Y.%m.%d}" for ago, d in day.items()}
    async with os_client() as client:
        await client.snapshot.create_repository(repository=repo, body=_repository(settings))
        try:
            clean = await build_report(client, settings, today())
            assert not [v for v in clean.violations if v.kind in LEDGER_KINDS], clean.violations
            rows = {r["day"]: r for r in clean.day_rows()}
            assert rows[day[1]]["ledger_stored"] == 9 and rows[day[1]]["index_documents"] == 9
            assert rows[day[4]]["ledger_stored"] == 0  # quiet, and not a violation
            assert rows[day[0]]["dead_lettered"] == 2  # dead letters: the day they came

            # day 12: archived, then deleted, as ISM does past hot retention (5 days here)
            await client.snapshot.create(
                repository=repo,
                snapshot=index[12],
                body={"indices": index[12], "include_global_state": False},
                wait_for_completion=True,
            )
            # day 7: past hot, deleted with no snapshot; day 3: deleted while hot; day 2:
            # two documents deleted by hand
            await client.indices.delete(index=f"{index[12]},{index[7]},{index[3]}")
            hits = (await client.search(index=index[2], body={"size": 2}))["hits"]["hits"]
            for hit in hits:
                await client.delete(index=index[2], id=hit["_id"], refresh="true")
            report = await build_report(client, settings, today(), verify_days=1)
            left = await client.cat.indices(index=f"verify-{prefix}-*", format="json")
        finally:
            await client.indices.delete(index=f"verify-{prefix}-*", ignore_unavailable=True)
            snaps = await client.snapshot.get(repository=repo, snapshot="_all")
            for s in snaps["snapshots"]:
                await client.snapshot.delete(repository=repo, snapshot=s["snapshot"])
            await client.snapshot.delete_repository(repository=repo)
    got = {(v.kind, v.subject) for v in report.violations if v.kind in LEDGER_KINDS}
    assert got == {
        ("archive_missing", index[7]),
        ("deleted_early", index[3]),
        ("count_mismatch", index[2]),
    }
    (check,) = report.restore_checks
    assert (check.day, check.result) == (day[12], "ok")
    assert check.restored_docs == check.ledger_stored == 8
    assert left == []  # the temporary index is gone
    text = report.to_json().decode()
    assert verify(text)[0]
    data = orjson.loads(text)
    assert data["inputs"]["cluster_uuid"] and data["inputs"]["resources"]
    dead = {r["day"]: r["dead_lettered"] for r in data["ledger"]}
    assert dead[str(today())] == {"bad_priority": 1, "invalid_json": 1}


async def test_setup_makes_the_ledger_accounting_from_tomorrow_where_alerts_exist(prefix, capsys):
    """A ledger made on a cluster that already holds alerts accounts for whole days only
    from the day after: the days before were stored without it."""
    from ingest.ops.setup import run_setup
    from ingest.sink.ledger import ledger_index

    base = load(OpsSettings)
    ops = base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "kafka": base.kafka.model_copy(update={"create_topics": False}),
        }
    )
    async with os_client() as client:
        await client.indices.delete(index=ledger_index(prefix))
        await client.index(index=f"{prefix}-2026.01.02", body={"@type": "falco"})
        capsys.readouterr()
        assert await run_setup(ops, plan_only=True) == 2
        tomorrow = today() + dt.timedelta(days=1)
        assert (
            f"create  ledger_index {ledger_index(prefix)}: missing; days from {tomorrow} on"
            in capsys.readouterr().out
        )
        assert await run_setup(ops) == 0
        ledger = await read_ledger(client, prefix)
    assert ledger is not None and ledger.since == tomorrow


async def test_prune_deletes_only_ledger_entries_past_their_retention(prefix):
    from ingest.ops.archive import LEDGER_MARGIN_MONTHS, add_months, prune_ledger
    from ingest.sink.ledger import Entry, Ledger, ledger_index

    settings = ops_for(prefix, "falco-archive", hot_days=365)
    months = settings.archive_retention_months + LEDGER_MARGIN_MONTHS
    cutoff = add_months(today() - dt.timedelta(days=365), -months)
    async with os_client() as client:
        ledger = Ledger(client, prefix, "test")
        for n, day in enumerate([cutoff - dt.timedelta(days=1), cutoff, today()]):
            entry = Entry("t", {0: (n, n)})
            entry.stored[f"{day:%Y.%m.%d}"] = 1
            assert await ledger.write(entry)
        assert await prune_ledger(client, settings, today(), dry_run=True) == 1
        assert await prune_ledger(client, settings, today()) == 1
        await client.indices.refresh(index=ledger_index(prefix))
        left = await client.search(index=ledger_index(prefix), body={"_source": ["last_day"]})
    assert sorted(h["_source"]["last_day"] for h in left["hits"]["hits"]) == [
        str(cutoff),
        str(today()),
    ]


async def test_each_days_report_is_kept_in_the_bucket_and_checked_later(prefix, uid, tmp_path):
    import asyncio

    import boto3

    from ingest.cli import main
    from ingest.ops.audit import run_audit

    settings = ops_for(prefix, "falco-archive", hot_days=365)
    where = f"s3://{settings.s3.bucket}/reports-{uid}"
    await run_audit(settings, "md", save=where)
    s3 = boto3.client("s3", endpoint_url=settings.s3.endpoint_url, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=f"reports-{uid}/")
    stem = f"reports-{uid}/{prefix}-retention-{today()}"
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"{stem}.csv",
        f"{stem}.json",
        f"{stem}.md",
    ]
    kept = s3.get_object(Bucket=settings.s3.bucket, Key=f"{stem}.json")["Body"].read()
    report = tmp_path / "report.json"
    report.write_bytes(kept)
    assert await asyncio.to_thread(main, ["audit", "verify", str(report)]) == 0
    report.write_bytes(kept.replace(b'"ledger_present": true', b'"ledger_present": false'))
    assert await asyncio.to_thread(main, ["audit", "verify", str(report)]) == 1
    md = s3.get_object(Bucket=settings.s3.bucket, Key=f"{stem}.md")["Body"].read().decode()
    assert md.rstrip().endswith(f"`{orjson.loads(kept)['sha256']}`")
    await run_audit(settings, "json", save=str(tmp_path))
    assert (tmp_path / f"{prefix}-retention-{today()}.csv").is_file()
