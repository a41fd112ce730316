"""A finished batch's ledger entry (ingest/sink/ledger.py says what the ledger holds and
why it is exact under at-least-once delivery)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from ingest import metrics
from ingest.consumer.batch import Batch
from ingest.sink.bulk import BulkOutcome
from ingest.sink.dlq import DeadLetter
from ingest.sink.ledger import Entry, Ledger


async def account(
    ledger: Ledger,
    batch: Batch,
    outcome: BulkOutcome | None,
    letters: list[DeadLetter],
    today: dt.date,
) -> Entry:
    """The entry of ``batch``: alerts created per day, dead letters per day and reason,
    less what an earlier entry counted already. Not written here."""
    topic = next(iter(batch.ends)).topic
    ranges = {tp.partition: (batch.firsts[tp], end - 1) for tp, end in batch.ends.items()}
    entry = Entry(topic, ranges)
    stored = Counter(doc.day for doc in batch.docs)
    rejected_day: dict[tuple[int, int], str] = {}
    duplicates: list[tuple[str, str, tuple[str, int, int]]] = []
    if outcome is not None and (outcome.rejected or outcome.duplicate_docs):
        where = {id(doc): i for i, doc in enumerate(batch.docs)}
        for doc, _, _ in outcome.rejected:
            stored[doc.day] -= 1
            i = where[id(doc)]
            rejected_day[(batch.partition_of(i).partition, batch.sources[i].offset)] = doc.day
        for doc in outcome.duplicate_docs:
            stored[doc.day] -= 1
            i = where[id(doc)]
            tp = batch.partition_of(i)
            duplicates.append(
                (doc.day, doc.doc_id, (tp.topic, tp.partition, batch.sources[i].offset))
            )
    # Records that were not simply created may have been counted before this reading.
    doubtful = [(p, o) for _, _, (_, p, o) in duplicates] + [
        (x.partition, x.offset) for x in letters
    ]
    seen = await ledger.covered(topic, doubtful) if doubtful else set()
    fresh = [d for d in duplicates if (d[2][1], d[2][2]) not in seen]
    if fresh:
        for (day, _, _), ours in zip(fresh, await ledger.stored_by(fresh), strict=True):
            if ours:  # stored by this record before a crash, its entry never written
                stored[day] += 1
                metrics.LEDGER_RECOUNTED.inc()
    entry.stored = +stored
    received = f"{today:%Y.%m.%d}"
    for letter in letters:
        position = (letter.partition, letter.offset)
        if position not in seen:
            entry.dead[(rejected_day.get(position, received), letter.reason)] += 1
    return entry
