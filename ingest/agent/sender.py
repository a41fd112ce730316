"""Spool -> Kafka, in order, advancing the spool cursor only after Kafka acknowledged."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from ingest import __version__, contract, metrics
from ingest.agent.spool import Entry, Spool
from ingest.normalize.timestamps import format_ns

log = logging.getLogger(__name__)
LINGER_S = 0.05


def agent_header(host: str, input_name: str, received_ns: int) -> tuple[str, bytes]:
    """The ``contract.AGENT`` header of the alerts one input accepted together."""
    received = format_ns(received_ns)[0]
    lineage = {"host": host, "version": __version__, "input": input_name, "received": received}
    return contract.AGENT, orjson.dumps(lineage)


class KafkaShipper:
    def __init__(
        self,
        make_producer: Callable[[], AIOKafkaProducer],
        spool: Spool,
        topic: str,
        host: str,
        batch_bytes: int,
        set_aside: Callable[[Entry], bool],
        retry_max_s: float = 30.0,
    ) -> None:
        self.make_producer = make_producer
        self.producer: AIOKafkaProducer | None = None
        self.spool = spool
        self.topic = topic
        self.host = host
        self.key = host.encode()
        self.batch_bytes = batch_bytes
        self.set_aside = set_aside  # notes an alert Kafka refuses; False if it could not
        self._refused = False
        self.retry_max_s = retry_max_s
        self.connected = False
        self._partitioner = DefaultPartitioner()

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until ``stop`` is set and the spool is empty (or ``stop`` alone if Kafka is down
        then: what is spooled stays for the next start)."""
        delay = 0.2
        while True:
            entries = self.spool.read(max_records=20_000, max_bytes=4 * self.batch_bytes)
            if not entries:
                if stop.is_set():
                    return
                self.spool.new_data.clear()
                try:
                    await asyncio.wait_for(self.spool.new_data.wait(), timeout=0.5)
                    await asyncio.sleep(LINGER_S)  # let a trickle of alerts share a request
                except TimeoutError:
                    pass
                continue
            try:
                if self.producer is None:
                    self.producer = await self._start_producer()
                await self._ship_or_set_aside(self.producer, entries)
            except (KafkaError, OSError) as exc:
                self.connected = False
                # A new producer for the next try: an idempotent one whose batch failed may
                # be out of sequence (every later send fails OutOfOrderSequenceNumber).
                await self.close()
                if stop.is_set():
                    log.warning("stopping with alerts still spooled", extra={"error": str(exc)})
                    return
                log.warning(
                    "Kafka unavailable; alerts stay in the spool",
                    extra={"error": str(exc), "spooled_bytes": self.spool.pending_bytes},
                )
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = 0.2
            self.connected = True
            self.spool.ack(entries[-1])
            metrics.AGENT_SENT.inc(len(entries))

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = self.make_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _fresh_producer(self) -> AIOKafkaProducer:
        """A producer in sequence: the current one, unless its last batch was refused."""
        if self._refused:
            await self.close()
        if self.producer is None:
            self.producer = await self._start_producer()
        self._refused = False
        return self.producer

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def _ship_or_set_aside(self, producer: AIOKafkaProducer, entries: list[Entry]) -> None:
        """Ship ``entries``; if the broker refuses a batch as too large (the topic's
        ``max.message.bytes`` below ours), ship them one by one and note in the reject file
        those it refuses alone, so that the spool moves on past them."""
        try:
            await self._ship(producer, entries)
        except MessageSizeTooLargeError:
            for entry in entries:
                try:
                    await self._ship(await self._fresh_producer(), [entry])
                except MessageSizeTooLargeError as exc:
                    log.error(
                        "Kafka refuses an alert as too large; noted in the reject file",
                        extra={"bytes": len(entry.value), "topic": self.topic, "error": str(exc)},
                    )
                    if not self.set_aside(entry):
                        raise OSError("the reject file is not writable") from exc

    async def _ship(self, producer: AIOKafkaProducer, entries: list[Entry]) -> None:
        partitions = await producer.partitions_for(self.topic)
        ordered = sorted(partitions)
        partition = self._partitioner(self.key, ordered, ordered)
        futures = []
        batch = producer.create_batch()
        headers: list[tuple[str, bytes]] = []
        shared: tuple[str, int] | None = None
        for e in entries:
            # Alerts accepted together share input and time: build their header once.
            if (e.input, e.received_ns) != shared:
                shared = (e.input, e.received_ns)
                headers = [agent_header(self.host, e.input, e.received_ns)]
            ts = e.received_ns // 1_000_000
            if batch.append(key=self.key, value=e.value, timestamp=ts, headers=headers) is None:
                futures.append(await producer.send_batch(batch, self.topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=self.key, value=e.value, timestamp=ts, headers=headers) is None:
                    raise MessageSizeTooLargeError(
                        f"an alert of {len(e.value)} bytes does not fit a batch"
                    )
        if batch.record_count():
            futures.append(await producer.send_batch(batch, self.topic, partition=partition))
        try:
            await asyncio.gather(*futures)
        except MessageSizeTooLargeError:
            self._refused = True  # by the broker: this producer is out of sequence now
            raise
