"""`falco-ingest archive list | prune | restore`: the archive's daily snapshots.

A snapshot is ours when it holds exactly one daily index ``<prefix>-YYYY.MM.DD`` and is
named after it: either just the index name (taken by hand) or the index name followed by
the time it was taken, ``-uuuu.MM.dd-HH:mm:ss.SSS`` (the name ISM's snapshot action gives,
which always appends that suffix). Its age is the age of the day it holds; it is kept
``archive_retention_months`` (30) after that day. A retried snapshot action can leave more
than one snapshot of a day: all are listed and pruned, the newest successful one restored.

A restored day is an investigation's copy (``restored-<index>``, stamped with the day it
was restored); `prune` deletes it ``restored_retention_days`` (30) later.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError

from ingest.config import OpsSettings
from ingest.sink.client import make_client
from ingest.sink.ledger import ledger_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchivedDay:
    snapshot: str
    day: dt.date
    state: str

    def expires(self, months: int) -> dt.date:
        return add_months(self.day, months)


def add_months(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise ValueError(day)  # pragma: no cover


_DAY = re.compile(r"\d{4}\.\d{2}\.\d{2}")
_ISM_TAKEN = re.compile(r"-\d{4}\.\d{2}\.\d{2}-\d{2}:\d{2}:\d{2}\.\d{3}")


def day_of(index: str, prefix: str) -> dt.date | None:
    """The day of a daily index named ``<prefix>-YYYY.MM.DD``; None for any other name."""
    day = index[len(prefix) + 1 :]
    if not (index.startswith(prefix + "-") and _DAY.fullmatch(day)):
        return None
    try:
        return dt.date(int(day[:4]), int(day[5:7]), int(day[8:]))
    except ValueError:
        return None  # named like a day that does not exist


def _named_after(snapshot: str, index: str) -> bool:
    """Named by hand (the index's name) or by ISM (the index's name and when it was taken)."""
    rest = snapshot[len(index) :]
    return snapshot.startswith(index) and (rest == "" or _ISM_TAKEN.fullmatch(rest) is not None)


async def archived_days(client: AsyncOpenSearch, repository: str, prefix: str) -> list[ArchivedDay]:
    resp = await client.snapshot.get(repository=repository, snapshot="_all")
    out = []
    for snap in resp.get("snapshots", []):
        name, indices = snap["snapshot"], snap.get("indices") or []
        if len(indices) != 1 or not _named_after(name, indices[0]):
            continue  # not ours: never listed, never pruned
        day = day_of(indices[0], prefix)
        if day is not None:
            out.append(ArchivedDay(name, day, snap.get("state", "?")))
    return sorted(out, key=lambda a: (a.day, a.snapshot))


async def prune(
    client: AsyncOpenSearch, settings: OpsSettings, today: dt.date, dry_run: bool = False
) -> list[ArchivedDay]:
    months = settings.archive_retention_months
    expired = [
        a
        for a in await archived_days(
            client, settings.archive_repository, settings.opensearch.index_prefix
        )
        if a.expires(months) <= today
    ]
    for a in expired:
        if not dry_run:
            await client.snapshot.delete(
                repository=settings.archive_repository, snapshot=a.snapshot
            )
        log.warning(
            "archive snapshot past retention %s",
            "would be deleted" if dry_run else "deleted",
            extra={"snapshot": a.snapshot, "day": a.day.isoformat(), "months": months},
        )
    return expired


RESTORED_AT = "falco_ingest_restored_at"  # in the restored index's mapping _meta


@dataclass(frozen=True)
class RestoredIndex:
    index: str
    restored_on: dt.date | None  # None: restored by other means than `archive restore`

    def expires(self, days: int) -> dt.date | None:
        return self.restored_on + dt.timedelta(days=days) if self.restored_on else None


async def restored_indices(client: AsyncOpenSearch, prefix: str) -> list[RestoredIndex]:
    got = await client.indices.get_mapping(index=f"restored-{prefix}-*")
    out = []
    for index, body in sorted(got.items()):
        stamp = (body.get("mappings", {}).get("_meta") or {}).get(RESTORED_AT)
        try:
            day = dt.date.fromisoformat(str(stamp)[:10]) if stamp else None
        except ValueError:
            day = None
        out.append(RestoredIndex(index, day))
    return out


async def prune_restored(
    client: AsyncOpenSearch, settings: OpsSettings, today: dt.date, dry_run: bool = False
) -> list[RestoredIndex]:
    """Delete ``restored-*`` indices that `archive restore` made more than
    ``restored_retention_days`` ago: an investigation's copy, not a second archive."""
    days = settings.restored_retention_days
    expired = [
        r
        for r in await restored_indices(client, settings.opensearch.index_prefix)
        if (end := r.expires(days)) is not None and end <= today
    ]
    for r in expired:
        if not dry_run:
            await client.indices.delete(index=r.index)
        log.warning(
            "restored index past retention %s",
            "would be deleted" if dry_run else "deleted",
            extra={"index": r.index, "restored_on": str(r.restored_on), "days": days},
        )
    return expired


async def restore(
    client: AsyncOpenSearch, settings: OpsSettings, first: dt.date, last: dt.date
) -> list[str]:
    """Restore archived days ``first..last`` as ``restored-<index>`` (no alias, so they never
    mix with the live indices); returns the restored index names. A day restored before
    (its ``restored-*`` index is there) is left as it is."""
    newest: dict[dt.date, ArchivedDay] = {}
    for a in await archived_days(
        client, settings.archive_repository, settings.opensearch.index_prefix
    ):
        if first <= a.day <= last and a.state == "SUCCESS":
            newest[a.day] = a  # sorted by name within a day: ISM's suffix sorts by time
    restored = []
    for n, a in enumerate(newest.values(), 1):
        index = f"{settings.opensearch.index_prefix}-{a.day:%Y.%m.%d}"
        if await client.indices.exists(index=f"restored-{index}"):
            log.info("already restored", extra={"index": f"restored-{index}"})
            continue
        body: dict[str, Any] = {
            "indices": index,
            "rename_pattern": "(.+)",
            "rename_replacement": "restored-$1",
            "include_aliases": False,
        }
        await client.snapshot.restore(
            repository=settings.archive_repository,
            snapshot=a.snapshot,
            body=body,
            wait_for_completion=True,
        )
        await client.indices.put_mapping(
            index=f"restored-{index}",
            body={"_meta": {RESTORED_AT: dt.datetime.now(dt.UTC).isoformat()}},
        )
        restored.append(f"restored-{index}")
        log.info("restored", extra={"index": f"restored-{index}", "done": n, "of": len(newest)})
    return restored


# The ledger outlives what it accounts for: a day's entries are kept for the hot retention,
# the archive's months and this many more, so the last audit of a day still finds them.
LEDGER_MARGIN_MONTHS = 6


async def prune_ledger(
    client: AsyncOpenSearch, settings: OpsSettings, today: dt.date, dry_run: bool = False
) -> int:
    """Delete ledger entries whose latest day is past hot retention + archive retention +
    LEDGER_MARGIN_MONTHS; how many there were."""
    months = settings.archive_retention_months + LEDGER_MARGIN_MONTHS
    cutoff = add_months(today - dt.timedelta(days=settings.hot_retention_days), -months)
    index = ledger_index(settings.opensearch.index_prefix)
    query = {"range": {"last_day": {"lt": cutoff.isoformat()}}}
    if not await client.indices.exists(index=index):
        return 0
    await client.indices.refresh(index=index)
    if dry_run:
        return int((await client.count(index=index, body={"query": query}))["count"])
    # By id, a page at a time (_delete_by_query lives in the reindex module, which not every
    # distribution has: the test zip does not)
    gone = 0
    while True:
        found = await client.search(
            index=index, body={"query": query, "size": 1000, "_source": False}
        )
        hits = found["hits"]["hits"]
        if not hits:
            break
        lines = "".join(
            orjson.dumps({"delete": {"_index": index, "_id": h["_id"]}}).decode() + "\n"
            for h in hits
        )
        resp = await client.bulk(body=lines, refresh="true")
        # An entry the node would not delete would be found again, page after page: stop
        # with its answer (as a refused snapshot deletion stops `prune`). 404: gone already.
        failed = [
            item["delete"]
            for item in resp.get("items", [])
            if item["delete"].get("status", 200) >= 300 and item["delete"].get("status") != 404
        ]
        if failed:
            raise TransportError(
                failed[0].get("status", 500), "ledger entry not deleted", failed[0]
            )
        gone += len(hits)
    if gone:
        log.warning(
            "ledger entries past retention deleted", extra={"entries": gone, "before": str(cutoff)}
        )
    return gone


async def run_archive(settings: OpsSettings, action: str, **kw: Any) -> int:
    today = dt.datetime.now(dt.UTC).date()
    months = settings.archive_retention_months
    async with make_client(settings.opensearch) as client:
        if action == "list":
            days = await archived_days(
                client, settings.archive_repository, settings.opensearch.index_prefix
            )
            print(f"{'snapshot':<44} {'day':<10} {'state':<8} keep until")
            for a in days:
                print(f"{a.snapshot:<44} {a.day} {a.state:<8} {a.expires(months)}")
            if days:
                n = len({a.day for a in days})
                print(f"archive spans {days[0].day} .. {days[-1].day} ({n} days)")
            else:
                print("archive is empty")
        elif action == "prune":
            dry_run = kw.get("dry_run", False)
            gone = await prune(client, settings, today, dry_run=dry_run)
            copies = await prune_restored(client, settings, today, dry_run=dry_run)
            entries = await prune_ledger(client, settings, today, dry_run=dry_run)
            verb = "would delete" if dry_run else "deleted"
            print(f"{verb} {len(gone)} snapshot(s) older than {months} months")
            print(
                f"{verb} {len(copies)} restored-* index(es) restored more than "
                f"{settings.restored_retention_days} days ago"
            )
            print(f"{verb} {entries} ledger entr(y/ies) past their retention")
        else:
            names = await restore(client, settings, kw["first"], kw["last"])
            print("restored: " + (", ".join(names) if names else "nothing (new) in that range"))
    return 0
