"""The days of the retention window reconciled with the consumers' ledger: what the ledger
says was stored each day against what the daily index holds while the day is hot and the
archive holds once it is past; and restore tests that read archived days back."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import AsyncOpenSearch, NotFoundError

from ingest.ops.archive import ArchivedDay, day_of
from ingest.sink.ledger import RECONCILED_FROM, ledger_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerDay:
    stored: int
    dead_lettered: dict[str, int] = field(default_factory=dict)  # reason -> alerts


@dataclass(frozen=True)
class Ledger:
    index: str
    # The first day it accounts for whole (its `_meta.reconciled_from`: a ledger made where
    # alerts were stored before it); None: every day.
    since: dt.date | None
    days: dict[dt.date, LedgerDay]

    def stored(self, day: dt.date) -> int:
        got = self.days.get(day)
        return got.stored if got else 0

    def accounts_for(self, day: dt.date) -> bool:
        return self.since is None or day >= self.since


@dataclass(frozen=True)
class RestoreCheck:
    day: dt.date
    snapshot: str
    restored_docs: int | None  # None: the restore failed
    ledger_stored: int | None  # None: the day is before the ledger
    result: str  # ok | count_mismatch | restore_failed | not_in_ledger
    detail: str
    seconds: float


def _date(millis: int) -> dt.date:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).date()


async def read_ledger(client: AsyncOpenSearch, prefix: str) -> Ledger | None:
    """Every day's totals in the ledger; None when there is no ledger index."""
    index = ledger_index(prefix)
    daily = {"calendar_interval": "day", "min_doc_count": 1}
    body = {
        "size": 0,
        "aggs": {
            "days": {
                "nested": {"path": "days"},
                "aggs": {
                    "day": {
                        "date_histogram": {"field": "days.day", **daily},
                        "aggs": {"stored": {"sum": {"field": "days.stored"}}},
                    }
                },
            },
            "letters": {
                "nested": {"path": "dead_letters"},
                "aggs": {
                    "day": {
                        "date_histogram": {"field": "dead_letters.day", **daily},
                        "aggs": {
                            "reason": {
                                "terms": {"field": "dead_letters.reason", "size": 1000},
                                "aggs": {"n": {"sum": {"field": "dead_letters.count"}}},
                            }
                        },
                    }
                },
            },
        },
    }
    try:
        await client.indices.refresh(index=index)
        resp = await client.search(index=index, body=body)
        mapping = await client.indices.get_mapping(index=index)
    except NotFoundError:
        return None
    meta = mapping[index]["mappings"].get("_meta") or {}
    since = dt.date.fromisoformat(meta[RECONCILED_FROM]) if meta.get(RECONCILED_FROM) else None
    aggs = resp["aggregations"]
    letters: dict[dt.date, dict[str, int]] = {}
    for bucket in aggs["letters"]["day"]["buckets"]:
        letters[_date(bucket["key"])] = {
            r["key"]: int(r["n"]["value"]) for r in bucket["reason"]["buckets"]
        }
    days = {}
    for bucket in aggs["days"]["day"]["buckets"]:
        day = _date(bucket["key"])
        days[day] = LedgerDay(int(bucket["stored"]["value"]), letters.pop(day, {}))
    for day, reasons in letters.items():
        days[day] = LedgerDay(0, reasons)
    return Ledger(index, since, days)


async def index_counts(client: AsyncOpenSearch, prefix: str) -> dict[str, int]:
    """Documents in each daily index of ``prefix`` (refreshed first: what was stored is
    counted, not only what was searchable)."""
    pattern = f"{prefix}-*"
    await client.indices.refresh(index=pattern, allow_no_indices=True)
    got = await client.cat.indices(index=pattern, format="json", h="index")
    out = {row["index"]: 0 for row in got if day_of(row["index"], prefix) is not None}
    if not out:
        return out
    resp = await client.search(
        index=pattern,
        body={"size": 0, "aggs": {"i": {"terms": {"field": "_index", "size": len(out) + 10}}}},
        params={"track_total_hits": "true"},
    )
    for bucket in resp["aggregations"]["i"]["buckets"]:
        if bucket["key"] in out:
            out[bucket["key"]] = bucket["doc_count"]
    return out


def ledger_findings(
    prefix: str,
    today: dt.date,
    ledger: Ledger,
    counts: dict[str, int],
    archive: list[ArchivedDay],
    hot_days: int,
    first_day: dt.date,
) -> list[tuple[str, str, str]]:
    """(kind, subject, detail) for every day from ``first_day`` (the window's start or the
    ledger's, the later) to yesterday: the index must hold what the ledger says was stored;
    a day the ledger knows must be searchable for ``hot_days`` and archived after. A day
    without alerts is neither. Pure."""
    out = []
    archived = {a.day for a in archive if a.state == "SUCCESS"}
    live = {day_of(index, prefix): n for index, n in counts.items()}
    day = first_day
    while day < today:
        stored = ledger.stored(day)
        name = f"{prefix}-{day:%Y.%m.%d}"
        if day in live:
            held = live[day]
            if held != stored:
                out.append(
                    (
                        "count_mismatch",
                        name,
                        f"holds {held} documents; the ledger says {stored} alerts were stored "
                        f"({'fewer' if held < stored else 'more'} than stored)",
                    )
                )
        elif stored:
            age = (today - day).days
            if age < hot_days + 1:
                out.append(
                    (
                        "deleted_early",
                        name,
                        f"gone {age} days after its day; its {stored} alerts are to be "
                        f"searchable for {hot_days} days",
                    )
                )
            elif day not in archived:
                out.append(
                    (
                        "archive_missing",
                        name,
                        f"past hot retention with {stored} alerts stored and no successful "
                        "snapshot in the archive",
                    )
                )
        day += dt.timedelta(days=1)
    return out


def choose_days(archive: list[ArchivedDay], n: int, rng: random.Random) -> list[ArchivedDay]:
    """``n`` archived days to restore: the oldest and the newest, then others at random;
    for each day its newest successful snapshot."""
    newest: dict[dt.date, ArchivedDay] = {}
    for a in archive:
        if a.state == "SUCCESS":
            newest[a.day] = a  # sorted by name within a day: ISM's suffix sorts by time
    days = sorted(newest)
    if n <= 0 or not days:
        return []
    chosen = [days[0], days[-1]][: min(n, 2)] if len(days) > 1 else days[:1]
    rest = [d for d in days if d not in chosen]
    chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
    return [newest[d] for d in sorted(set(chosen))]


async def verify_archive(
    client: AsyncOpenSearch,
    repository: str,
    prefix: str,
    days: list[ArchivedDay],
    ledger: Ledger | None,
) -> list[RestoreCheck]:
    """Restore each day into a temporary index (``verify-<index>``: no template, alias or
    policy of ours applies to it), count its documents, compare with the ledger, delete it."""
    checks = []
    for n, a in enumerate(days, 1):
        index = f"{prefix}-{a.day:%Y.%m.%d}"
        temporary = f"verify-{index}"
        expected = None
        if ledger is not None and ledger.accounts_for(a.day):
            expected = ledger.stored(a.day)
        started = time.monotonic()
        restored: int | None = None
        try:
            await client.indices.delete(index=temporary, ignore_unavailable=True)
            await client.snapshot.restore(
                repository=repository,
                snapshot=a.snapshot,
                body={
                    "indices": index,
                    "rename_pattern": "(.+)",
                    "rename_replacement": "verify-$1",
                    "include_aliases": False,
                    "index_settings": {"index.number_of_replicas": 0},
                },
                wait_for_completion=True,
            )
            await client.indices.refresh(index=temporary)
            restored = int((await client.count(index=temporary))["count"])
            if expected is None:
                result, detail = "not_in_ledger", f"{restored} documents read back"
            elif restored == expected:
                result, detail = "ok", f"{restored} documents read back, as the ledger says"
            else:
                result = "count_mismatch"
                detail = f"{restored} documents read back; the ledger says {expected} were stored"
        except Exception as exc:  # noqa: BLE001 - a failed restore is the finding itself
            result, detail = "restore_failed", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            try:
                await client.indices.delete(index=temporary, ignore_unavailable=True)
            except Exception as exc:  # noqa: BLE001 - named in the log, the audit goes on
                log.error(
                    "temporary index not deleted", extra={"index": temporary, "error": str(exc)}
                )
        seconds = round(time.monotonic() - started, 1)
        checks.append(RestoreCheck(a.day, a.snapshot, restored, expected, result, detail, seconds))
        log.info(
            "archive day verified",
            extra={"day": str(a.day), "result": result, "done": n, "of": len(days)},
        )
    return checks


def verify_findings(checks: list[RestoreCheck], prefix: str) -> list[tuple[str, str, str]]:
    kinds = {"count_mismatch": "archive_count_mismatch", "restore_failed": "restore_failed"}
    return [
        (kinds[c.result], c.snapshot, f"{prefix}-{c.day:%Y.%m.%d}: {c.detail}")
        for c in checks
        if c.result in kinds
    ]


def as_rows(ledger: Ledger | None) -> list[dict[str, Any]]:
    """The ledger's days for the report."""
    if ledger is None:
        return []
    return [
        {"day": day, "stored": got.stored, "dead_lettered": dict(sorted(got.dead_lettered.items()))}
        for day, got in sorted(ledger.days.items())
    ]
