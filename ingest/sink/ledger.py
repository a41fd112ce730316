"""The ledger: for every batch the consumers finish, how many alerts of each UTC day they
stored (created; not the 409s of alerts stored before) and dead-lettered, by reason.

One document a batch in ``ledger-<prefix>``, written before the batch's offsets may be
committed, with ``create`` under an id made from the Kafka records the batch covers (topic,
and per partition the first and last offset). The index's name matches none of our index
templates or ISM patterns (``<prefix>-*``): it outlives the alerts' indices and their
archive, so ``audit retention`` can show every day accounted for, from ingest to archive.

Exact under at-least-once delivery:
- a retried write has the same id: created once (a 409 answer means it is there);
- records read again after a crash or a rebalance are counted by the entry whose ranges
  hold their offset, if there is one, and not again;
- a record whose document was stored before a crash that came before its entry was
  written comes back as a 409: if the stored document carries this very record's topic,
  partition and offset, this record stored it, and it is counted now.
The two last checks cost a search (and a get of the 409s' sources) only for batches with
409s or dead letters; a batch stored whole costs one small write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConflictError, TransportError

from ingest import metrics
from ingest.errors import AccessRefused, SinkUnavailable
from ingest.retry import retrying
from ingest.sink.client import refusal, require

log = logging.getLogger(__name__)

# The ledger's mapping: strict, so that nothing but entries goes in.
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "topic": {"type": "keyword"},
        "consumer": {"type": "keyword"},
        "last_day": {"type": "date"},
        "ranges": {
            "type": "nested",
            "properties": {
                "partition": {"type": "integer"},
                "first": {"type": "long"},
                "last": {"type": "long"},
            },
        },
        "days": {
            "type": "nested",
            "properties": {
                "day": {"type": "date"},
                "stored": {"type": "long"},
                "dead_lettered": {"type": "long"},
            },
        },
        "dead_letters": {
            "type": "nested",
            "properties": {
                "day": {"type": "date"},
                "reason": {"type": "keyword"},
                "count": {"type": "long"},
            },
        },
    },
}


def ledger_index(prefix: str) -> str:
    return f"ledger-{prefix}"


async def require_ledger(client: AsyncOpenSearch, prefix: str) -> None:
    """Refuse to start without the ledger index `setup` makes: written by a first entry,
    OpenSearch would map it by guess and the audit could not sum it."""
    index = ledger_index(prefix)
    await require(
        client.indices.exists(index=index),
        "ledger index",
        f"OpenSearch has no ledger index {index!r}: run `falco-ingest setup` first, or set "
        "INGEST_CONSUMER__LEDGER=false (the audit then cannot reconcile the days)",
    )


def index_body(replicas: int, reconciled_from: dt.date | None = None) -> dict[str, Any]:
    """What `setup` creates: one shard (a few thousand small entries a day). A ledger made
    where daily indices exist already says from which day on it accounts for whole days
    (``_meta.reconciled_from``, which a person may move); without it, every day."""
    mappings = dict(MAPPING)
    if reconciled_from is not None:
        mappings["_meta"] = {RECONCILED_FROM: reconciled_from.isoformat()}
    return {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": replicas}},
        "mappings": mappings,
    }


RECONCILED_FROM = "reconciled_from"


def iso_day(day: str) -> str:
    """``2026.11.20`` (an index's day) as ``2026-11-20``."""
    return day.replace(".", "-")


@dataclass
class Entry:
    """One batch's account: ``ranges`` {partition: (first, last)} of ``topic``."""

    topic: str
    ranges: dict[int, tuple[int, int]]
    stored: Counter[str] = field(default_factory=Counter)  # index day -> alerts created
    dead: Counter[tuple[str, str]] = field(default_factory=Counter)  # (day, reason) -> n

    @property
    def doc_id(self) -> str:
        key = self.topic + "".join(f"\x1f{p}:{a}-{b}" for p, (a, b) in sorted(self.ranges.items()))
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def empty(self) -> bool:
        return not (+self.stored) and not (+self.dead)

    def body(self, now: dt.datetime, consumer: str) -> dict[str, Any]:
        days = sorted({d for d in +self.stored} | {d for d, _ in +self.dead})
        dead_by_day = Counter[str]()
        for (day, _), n in self.dead.items():
            dead_by_day[day] += n
        return {
            "@timestamp": now.isoformat(),
            "topic": self.topic,
            "consumer": consumer,
            "last_day": iso_day(days[-1]) if days else None,
            "ranges": [
                {"partition": p, "first": a, "last": b} for p, (a, b) in sorted(self.ranges.items())
            ],
            "days": [
                {"day": iso_day(d), "stored": self.stored[d], "dead_lettered": dead_by_day[d]}
                for d in days
            ],
            "dead_letters": [
                {"day": iso_day(d), "reason": r, "count": n}
                for (d, r), n in sorted(self.dead.items())
                if n
            ],
        }


def _merged(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Offset ranges as disjoint sorted ones (starts, ends): a batch read again covers
    offsets a lookup then finds by bisection, not by a pass over every range."""
    starts: list[int] = []
    ends: list[int] = []
    for a, b in sorted(spans):
        if ends and a <= ends[-1] + 1:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return starts, ends


class Ledger:
    def __init__(
        self,
        client: AsyncOpenSearch,
        prefix: str,
        consumer: str,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
    ) -> None:
        self.client = client
        self.index = ledger_index(prefix)
        self.prefix = prefix
        self.consumer = consumer
        self._retry = (retry_initial_s, retry_max_s)

    async def covered(
        self, topic: str, positions: Iterable[tuple[int, int]]
    ) -> set[tuple[int, int]]:
        """Of ``positions`` (partition, offset), those an existing entry has counted."""
        by_partition: dict[int, list[int]] = {}
        for p, o in positions:
            by_partition.setdefault(p, []).append(o)
        if not by_partition:
            return set()
        should = [
            {
                "nested": {
                    "path": "ranges",
                    "query": {
                        "bool": {
                            "filter": [
                                {"term": {"ranges.partition": p}},
                                {"range": {"ranges.first": {"lte": max(offsets)}}},
                                {"range": {"ranges.last": {"gte": min(offsets)}}},
                            ]
                        }
                    },
                }
            }
            for p, offsets in by_partition.items()
        ]
        query = {
            "bool": {
                "filter": [{"term": {"topic": topic}}],
                "should": should,
                "minimum_should_match": 1,
            }
        }
        # Entries written a moment ago (the batch before a crash) must be seen.
        resp = await self._call(
            "ledger lookup",
            self._refreshed_search,
            {"query": query, "_source": ["ranges"], "size": 10_000},
        )
        spans: dict[int, list[tuple[int, int]]] = {}
        for hit in resp["hits"]["hits"]:
            for r in hit["_source"]["ranges"]:
                spans.setdefault(r["partition"], []).append((r["first"], r["last"]))
        out = set()
        for p, offsets in by_partition.items():
            starts, ends = _merged(spans.get(p, []))
            for o in offsets:
                i = bisect_right(starts, o) - 1
                if i >= 0 and o <= ends[i]:
                    out.add((p, o))
        return out

    async def _refreshed_search(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.client.indices.refresh(index=self.index)
        resp: dict[str, Any] = await self.client.search(index=self.index, body=body)
        return resp

    async def stored_by(self, docs: list[tuple[str, str, tuple[str, int, int]]]) -> list[bool]:
        """For each (index day, id, the record's topic/partition/offset) answered 409:
        whether the stored document came from that very record."""
        body = {
            "docs": [
                {
                    "_index": f"{self.prefix}-{day}",
                    "_id": doc_id,
                    "_source": ["@ingest.topic", "@ingest.partition", "@ingest.offset"],
                }
                for day, doc_id, _ in docs
            ]
        }
        resp = await self._call("ledger source check", self._mget, body)
        out = []
        for (_, _, where), got in zip(docs, resp["docs"], strict=True):
            ingest = (got.get("_source") or {}).get("@ingest") or {}
            out.append(
                (ingest.get("topic"), ingest.get("partition"), ingest.get("offset")) == where
            )
        return out

    async def write(self, entry: Entry) -> bool:
        """Create ``entry``; False when it was there already (a retry, a re-read)."""
        if entry.empty():
            return False
        body = entry.body(dt.datetime.now(dt.UTC), self.consumer)
        try:
            await self._call("ledger write", self._create, entry.doc_id, body)
        except ConflictError:
            return False
        metrics.LEDGER_ENTRIES.inc()
        return True

    async def _mget(self, body: dict[str, Any]) -> dict[str, Any]:
        resp: dict[str, Any] = await self.client.mget(body=body)
        return resp

    async def _create(self, doc_id: str, body: dict[str, Any]) -> None:
        await self.client.create(index=self.index, id=doc_id, body=body)

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, retried like a bulk while OpenSearch cannot answer."""
        async for attempt in retrying(*self._retry, log, logging.WARNING, what):
            with attempt:
                try:
                    return await fn(*args)
                except ConflictError:
                    raise
                except TransportError as exc:
                    refused = refusal(exc)
                    if refused is not None:
                        raise AccessRefused(refused) from exc
                    status = exc.status_code if isinstance(exc.status_code, int) else 0
                    if status in (0, 429) or status >= 500:  # 0: no answer at all
                        raise SinkUnavailable(f"{what}: {exc}") from exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
