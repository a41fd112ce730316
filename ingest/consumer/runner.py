"""The consumer: Kafka -> batches -> OpenSearch (and the DLQ) -> offset commits.

One task fetches and batches; up to ``max_inflight_bulks`` tasks write batches; offsets
are committed only up to the highest contiguous batch that is fully stored or
dead-lettered, at most every ``commit_interval_ms`` and at once on a rebalance or a stop.
When every write slot is busy the fetch task stops reading (aiokafka holds at most one
prefetched fetch per partition); after ``pause_after_s`` of that (OpenSearch slow or
down) it pauses its partitions and keeps polling, so the group membership stays alive
and nothing is read that cannot be held.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ingest import metrics
from ingest.config import ConsumerSettings
from ingest.consumer.account import account
from ingest.consumer.batch import Batch
from ingest.consumer.offsets import Mark, OffsetTracker
from ingest.consumer.records import make_consumer
from ingest.consumer.topics import ensure_topics
from ingest.kafka_access import check_access
from ingest.normalize.document import Limits
from ingest.normalize.timestamps import NS
from ingest.sink.bulk import BulkAnswers, OpenSearchSink
from ingest.sink.client import make_client, require_template
from ingest.sink.dlq import DeadLetterQueue, make_producer
from ingest.sink.ledger import Ledger, require_ledger

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    consumed: int = 0
    indexed: int = 0
    duplicates: int = 0
    bulk_retries: int = 0  # bulk requests sent again after a 429, 5xx or no answer
    dead_lettered: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        dlq = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_lettered.items())) or "none"
        return (
            f"consumed {self.consumed}, indexed {self.indexed}, "
            f"already stored {self.duplicates}, dead-lettered {sum(self.dead_lettered.values())}"
            f" ({dlq}), bulk retries {self.bulk_retries}"
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: FalcoConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.drain(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})
        self.owner.first_assignment = self.owner.first_assignment or time.monotonic()


class FalcoConsumer:
    # Seconds with every write slot busy before fetching is paused (well below aiokafka's
    # max_poll_interval_ms, 300 s, after which a member that does not poll is dropped).
    pause_after_s = 10.0
    # A progress line this often while records flow (backfills and replays run for hours).
    progress_every_s = 30.0

    def __init__(
        self,
        settings: ConsumerSettings,
        consumer: AIOKafkaConsumer,
        sink: OpenSearchSink,
        dlq: DeadLetterQueue,
        ledger: Ledger | None = None,
    ) -> None:
        self.s = settings.consumer
        self.kafka = consumer
        self.sink = sink
        self.dlq = dlq
        self.ledger = ledger
        self.limits = Limits(
            max_age_ns=self.s.max_event_age_days * 86_400 * NS,
            max_future_ns=self.s.max_future_s * NS,
        )
        self.tracker = OffsetTracker()
        self.stats = RunStats()
        self.stopping = asyncio.Event()
        self.batch = Batch()
        self.tasks: set[asyncio.Task[None]] = set()
        self.first_assignment: float | None = None
        self._commit_lock = asyncio.Lock()
        self._paused = False
        self._slot_free = asyncio.Event()
        self._failure: BaseException | None = None
        self._progress_at = time.monotonic()
        self._progress_consumed = 0
        self._committed_at = float("-inf")  # monotonic time of the last commit

    def ready(self) -> bool:
        return bool(self.kafka.assignment()) and self.sink.healthy

    # -- fetch side ---------------------------------------------------------------------
    async def fetch_loop(self, stop_when_idle: float | None) -> None:
        s = self.s
        linger = s.linger_ms / 1000
        last_activity = time.monotonic()
        started = time.monotonic()
        full_since: float | None = None
        while not self.stopping.is_set():
            if self.batch.due(s.batch_max_docs, s.batch_max_bytes, linger) and (
                len(self.tasks) < s.max_inflight_bulks
            ):
                self.dispatch()
            if self.batch.full(s.batch_max_docs, s.batch_max_bytes):
                # Every write slot is busy: wait for one to free, without polling. aiokafka
                # holds one prefetched fetch per partition (memory stays bounded), and a
                # poll of paused partitions would throw that away to fetch it again.
                full_since = full_since or time.monotonic()
                self._slot_free.clear()
                try:
                    await asyncio.wait_for(self._slot_free.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                if time.monotonic() - full_since < self.pause_after_s:
                    continue
                # OpenSearch slow or down for a while: pause and poll, so that this member
                # stays in the group (max.poll.interval); what a poll returns is kept.
                self._set_paused(True)
                records = await self.kafka.getmany(timeout_ms=0, max_records=1)
            else:
                full_since = None
                self._set_paused(False)
                room = max(1, min(s.fetch_max_records, s.batch_max_docs - self.batch.size))
                wait_ms = max(10, min(s.linger_ms, 500)) if self.batch.size else 500
                records = await self.kafka.getmany(timeout_ms=wait_ms, max_records=room)
            now_ns = time.time_ns()
            for tp, msgs in records.items():
                self.batch.add(tp, msgs, now_ns, self.limits)
                self.stats.consumed += len(msgs)
                metrics.CONSUMED.inc(len(msgs))
                hw = self.kafka.highwater(tp)
                if hw is not None:
                    metrics.LAG.labels(str(tp.partition)).set(max(0, hw - msgs[-1].offset - 1))
            await self.commit_due()  # finished batches, when no later write commits them
            if records or self.tasks or self.batch.size:
                last_activity = time.monotonic()
                if last_activity - self._progress_at >= self.progress_every_s:
                    self._progress()
            if stop_when_idle is not None and self._idle(last_activity, started, stop_when_idle):
                return

    def _progress(self) -> None:
        st, now = self.stats, time.monotonic()
        rate = (st.consumed - self._progress_consumed) / max(now - self._progress_at, 1e-9)
        log.info(
            "progress",
            extra={
                "consumed": st.consumed,
                "indexed": st.indexed,
                "already_stored": st.duplicates,
                "dead_lettered": sum(st.dead_lettered.values()),
                "per_s": round(rate),
            },
        )
        self._progress_at, self._progress_consumed = now, st.consumed

    def raise_failure(self) -> None:
        """A batch that could not be written stops the consumer with its error (after
        ``drain`` has committed the finished batches); its records stay uncommitted, never
        skipped."""
        if self._failure is not None:
            raise self._failure

    def _idle(self, last_activity: float, started: float, idle_s: float) -> bool:
        """Idle time counts from the first partition assignment: joining a group can take
        a while, and nothing has been read before it."""
        now = time.monotonic()
        if self.first_assignment is None:
            if now - started >= max(60.0, idle_s):
                log.warning("no partitions assigned; stopping", extra={"waited_s": now - started})
                return True
            return False
        if now - max(last_activity, self.first_assignment) >= idle_s:
            log.info("idle, stopping", extra={"idle_s": idle_s})
            return True
        return False

    def _set_paused(self, pause: bool) -> None:
        assigned = self.kafka.assignment()
        if pause and assigned:
            self.kafka.pause(*assigned)
        elif not pause and self._paused:
            self.kafka.resume(*assigned)
        self._paused = pause

    def dispatch(self) -> None:
        batch, self.batch = self.batch, Batch()
        if batch.size == 0:
            return
        marks = [self.tracker.add(tp, end) for tp, end in batch.ends.items()]
        task = asyncio.create_task(self._write(batch, marks))
        self.tasks.add(task)
        metrics.INFLIGHT.set(len(self.tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._slot_free.set()
        metrics.INFLIGHT.set(len(self.tasks))
        if not task.cancelled() and task.exception() is not None:
            # Nothing of that batch is committed; stop rather than skip past it.
            self._failure = task.exception()
            self.stopping.set()

    # -- write side ---------------------------------------------------------------------
    async def _write(self, batch: Batch, marks: list[Mark]) -> None:
        outcome = await self.sink.write(batch.docs) if batch.docs else None
        letters = list(batch.letters)
        if outcome is not None and outcome.rejected:
            where = {id(d): i for i, d in enumerate(batch.docs)}
            letters += [
                batch.letter(where[id(doc)], reason, "index", detail)
                for doc, reason, detail in outcome.rejected
            ]
        await self.dlq.send(letters)
        if self.ledger is not None:  # before the offsets may be committed
            today = dt.datetime.now(dt.UTC).date()
            await self.ledger.write(await account(self.ledger, batch, outcome, letters, today))
        st = self.stats
        if outcome is not None:
            st.indexed += outcome.stored
            st.duplicates += outcome.duplicates
            st.bulk_retries += outcome.retries
            metrics.INDEXED.inc(outcome.stored)
            metrics.DUPLICATES.inc(outcome.duplicates)
        for letter in letters:
            st.dead_lettered[letter.reason] += 1
        for mark in marks:
            mark.done = True
        await self.commit_due()

    async def commit_due(self) -> None:
        """Commit what is finished if ``commit_interval_ms`` has passed since the last
        commit. Fewer commits cost a crash only re-reads, which are stored as 409s."""
        if time.monotonic() - self._committed_at >= self.s.commit_interval_ms / 1000:
            await self.commit()

    async def commit(self) -> None:
        async with self._commit_lock:
            assigned = self.kafka.assignment()
            offsets = {tp: o for tp, o in self.tracker.committable().items() if tp in assigned}
            if not offsets:
                return
            self._committed_at = time.monotonic()  # a failed commit is not retried at once
            try:
                await self.kafka.commit(offsets)
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                # The records stay uncommitted: they are read again and stored as 409s.
                log.warning("commit failed, will be redelivered", extra={"error": str(exc)})
                return
            self.tracker.committed(offsets)
            metrics.COMMITS.inc()

    async def close(self) -> None:
        """Cancel the writes still running (their records stay uncommitted) and commit the
        batches that finished, also when the fetch loop ended with an error: a restart
        would read them again. Bounded, so that a broken Kafka does not hold the exit."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.commit(), timeout=self.s.drain_timeout_s)
        except TimeoutError:
            log.warning("last commit timed out; uncommitted records will be read again")

    async def drain(self, revoked: set[TopicPartition] | None = None) -> None:
        """Write what is batched, wait (bounded) for in-flight writes, commit."""
        if self._failure is None:  # after a failed batch, nothing more is written
            self.dispatch()
        if self.tasks:
            done, pending = await asyncio.wait(set(self.tasks), timeout=self.s.drain_timeout_s)
            if pending:
                log.warning(
                    "drain deadline passed; uncommitted records will be read again",
                    extra={"pending_batches": len(pending)},
                )
        await self.commit()
        if revoked:
            self.tracker.forget(revoked)


async def run_consumer(settings: ConsumerSettings, stop_when_idle: float | None = None) -> RunStats:
    """Consume until SIGTERM/SIGINT (or idle). The signals are taken from the first instant:
    start-up can wait long for a broker or for the group to assign partitions (aiokafka's
    start() waits for the assignment; during a rebalance after a crash, up to the session
    timeout and more), and a SIGTERM then ends the process cleanly, having read nothing."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        return await _run(settings, stop_when_idle, stopping)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _until_stopped(stopping: asyncio.Event, step: Awaitable[object]) -> bool:
    """Run a start-up step; False, the step cancelled, if a stop signal came first."""
    task = asyncio.ensure_future(step)
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if task.done():
        task.result()  # its error, if it failed
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("stopped during start-up; nothing was read")
    return False


async def _run(
    settings: ConsumerSettings, stop_when_idle: float | None, stopping: asyncio.Event
) -> RunStats:
    k = settings.kafka
    if not await _until_stopped(stopping, check_access(k)):
        return RunStats()
    if k.create_topics and not await _until_stopped(
        stopping, ensure_topics(k, k.topic, k.dlq_topic)
    ):
        return RunStats()
    async with make_client(settings.opensearch, BulkAnswers()) as client:
        prefix = settings.opensearch.index_prefix
        if settings.opensearch.require_template:  # before any Kafka client is made
            await require_template(client, prefix)
        ledger = None
        if settings.consumer.ledger:
            await require_ledger(client, prefix)
            ledger = Ledger(
                client,
                prefix,
                socket.gethostname(),
                settings.consumer.retry_initial_s,
                settings.consumer.retry_max_s,
            )
        consumer = make_consumer(settings)
        producer = make_producer(k)
        sink = OpenSearchSink(
            client,
            settings.opensearch.index_prefix,
            settings.consumer.retry_initial_s,
            settings.consumer.retry_max_s,
        )
        dlq = DeadLetterQueue(
            producer, k.dlq_topic, settings.consumer.retry_max_s, lambda: make_producer(k)
        )
        app = FalcoConsumer(settings, consumer, sink, dlq, ledger)
        app.stopping = stopping
        consumer.subscribe([k.topic], listener=_Rebalance(app))
        runner = None
        try:
            await producer.start()
            if not await _until_stopped(stopping, consumer.start()):
                return app.stats
            runner = await metrics.serve(settings.metrics_port, app.ready)
            # Start-up objects (modules, classes, settings) live as long as the process: keep
            # the garbage collector from walking them again on every full collection.
            gc.collect()
            gc.freeze()
            # A young collection every 700 container objects (the default) walks the records
            # of the batches in flight again and again (bench/README.md measures what it
            # cost). Records live for a batch and are freed by reference counting; at 50,000
            # none is needed.
            gc.set_threshold(50_000)
            await app.fetch_loop(stop_when_idle)
            await app.drain()
            app.raise_failure()
        finally:
            await app.close()
            await consumer.stop()
            await dlq.producer.stop()
            if runner is not None:
                await runner.cleanup()
    log.info("consumer stopped", extra={"summary": app.stats.summary()})
    return app.stats
