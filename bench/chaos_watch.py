"""What the chaos run measures: a sample a second of the alerts stored and the consumer
group's lag, the figures of each fault drawn from them, and the final count of every alert."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ASK_S = 3.0  # a service that does not answer within this is a gap in the samples


@dataclass
class Sample:
    t: float  # seconds since the run started
    sent: int  # alerts Falco had emitted (written to the file, or POSTed and acknowledged)
    stored: int | None  # documents searchable in the prefix's indices
    lag: int | None  # records the consumer group has not committed


@dataclass
class Phase:
    name: str
    start: float  # when its first fault was injected
    restored: float  # when its last fault ended (restart, SIGCONT, scale back)
    end: float  # when the next phase started
    rejections: int = 0  # OpenSearch's indexing-pressure rejections (429) during it
    actions: list[str] = field(default_factory=list)


class Watch:
    def __init__(self, url: str, servers: str, topic: str, group: str, prefix: str) -> None:
        self.url, self.servers, self.topic, self.group = url, servers, topic, group
        self.prefix = prefix
        self.samples: list[Sample] = []

    async def run(self, t0: float, sent: Callable[[], int], stop: asyncio.Event) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers, request_timeout_ms=3000)
        reader = AIOKafkaConsumer(bootstrap_servers=self.servers, request_timeout_ms=3000)
        await admin.start()
        await reader.start()
        try:
            async with aiohttp.ClientSession() as http:
                while not stop.is_set():
                    tick = time.monotonic()
                    stored, lag = await asyncio.gather(self.stored(http), self.lag(admin, reader))
                    self.samples.append(Sample(tick - t0, sent(), stored, lag))
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), max(0.0, 1 - (time.monotonic() - tick)))
        finally:
            await reader.stop()
            await admin.close()

    async def stored(self, http: aiohttp.ClientSession) -> int | None:
        # preference=_local: node 1 holds a copy of every shard, so the count does not wait
        # on a node that is stopped
        try:
            async with http.get(
                f"{self.url}/{self.prefix}-*/_count?preference=_local",
                timeout=aiohttp.ClientTimeout(ASK_S),
            ) as r:
                return int((await r.json())["count"]) if r.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, KeyError):
            return None

    async def lag(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> int | None:
        try:
            return await asyncio.wait_for(self._lag(admin, reader), ASK_S)
        except Exception:  # noqa: BLE001 - a broker down or electing: a gap, not an end
            return None

    async def _lag(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> int:
        parts = await self.partitions(reader, self.topic)
        ends = await reader.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(self.group, partitions=parts)
        done = {
            tp: (om.offset if om is not None and om.offset >= 0 else 0)
            for tp, om in committed.items()
        }
        return sum(end - done.get(tp, 0) for tp, end in ends.items())

    @staticmethod
    async def partitions(reader: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
        found = reader.partitions_for_topic(topic)
        if not found:
            await reader._client.force_metadata_update()  # noqa: SLF001 - no public way
            found = reader.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(found)]

    async def rejections(self) -> int:
        """Indexing-pressure rejections (429) the nodes have answered so far, all stages."""
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{self.url}/_nodes/stats/indexing_pressure", timeout=aiohttp.ClientTimeout(60)
            ) as r:
                nodes = (await r.json())["nodes"].values()
        seen = [n["indexing_pressure"]["memory"]["total"] for n in nodes]
        return sum(v for stage in seen for k, v in stage.items() if k.endswith("_rejections"))

    def baseline(self, phase: Phase) -> int:
        """The largest lag with no fault: what batching and the commit interval hold back."""
        lags = [s.lag for s in self.samples if phase.start <= s.t < phase.end and s.lag is not None]
        return max(lags, default=0)

    def figures(self, phase: Phase, steady_lag: int) -> dict[str, float | int | None]:
        """The longest stall that began in the phase (no new alert stored while some were
        waiting, however long it lasted), the largest lag in the phase, and how long after
        the injection the lag was back at its fault-free level, once past that peak and the
        phase's last action."""
        stall, rise, prev = 0.0, 0.0, None
        for s in self.samples:
            if s.stored is None:
                continue
            if prev is None or s.stored > prev:
                rise = s.t
            elif s.sent > s.stored and phase.start <= rise < phase.end:
                stall = max(stall, s.t - rise)
            prev = s.stored
        lagged = [s for s in self.samples if phase.start <= s.t < phase.end and s.lag is not None]
        peak = max(lagged, key=lambda s: s.lag or 0, default=None)
        since = max(phase.restored, peak.t if peak else phase.start)
        back = next(
            (
                s.t - phase.start
                for s in self.samples
                if s.t >= since and s.lag is not None and s.lag <= steady_lag
            ),
            None,
        )
        return {"stall_s": stall, "max_lag": peak.lag if peak else None, "recovered_s": back}


async def stored_ids(url: str, prefix: str) -> list[str]:
    """Every document id in the prefix's indices (a scroll; ids repeat if stored twice)."""
    ids: list[str] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/{prefix}-*/_search?scroll=2m",
            json={"size": 5000, "_source": False, "sort": ["_doc"]},
        ) as r:
            page = await r.json()
        while page["hits"]["hits"]:
            ids += [h["_id"] for h in page["hits"]["hits"]]
            async with http.post(
                f"{url}/_search/scroll", json={"scroll": "2m", "scroll_id": page["_scroll_id"]}
            ) as r:
                page = await r.json()
        async with http.delete(f"{url}/_search/scroll", json={"scroll_id": page["_scroll_id"]}):
            pass
    return ids


async def dead_letters(servers: str, topic: str) -> list[str]:
    """Each record of the dead-letter topic, as its reason and a start of its value."""
    reader = AIOKafkaConsumer(bootstrap_servers=servers, auto_offset_reset="earliest")
    await reader.start()
    try:
        parts = await Watch.partitions(reader, topic)
        if not parts:
            return []
        ends = await reader.end_offsets(parts)
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        out: list[str] = []

        async def behind() -> bool:
            return any([await reader.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for records in (await reader.getmany(timeout_ms=1000)).values():
                for rec in records:
                    reason = dict(rec.headers).get("dlq.reason", b"?").decode()
                    out.append(f"{reason}: {(rec.value or b'')[:200]!r}")
        return out
    finally:
        await reader.stop()


def verdict(sent: list[str], stored: list[str], letters: list[str]) -> tuple[dict, list[str]]:
    """The totals of a run and what is wrong with it: ``sent`` holds the id of alert i at
    i (even i went through the file, odd by HTTP), ``stored`` every id the indices hold
    (an id stored twice appears twice), ``letters`` the dead-letter topic's records (every
    alert sent was valid, so each one is a failure)."""
    seen = Counter(stored)
    twice = sorted(i for i, k in seen.items() if k > 1)
    lost = [(k, i) for k, i in enumerate(sent) if i not in seen]
    strangers = set(seen) - set(sent)
    counts = {
        "stored": len(stored),
        "duplicates": len(stored) - len(seen),
        "dead_lettered": len(letters),
        "lost": len(lost),
        "unknown_ids": len(strangers),
    }
    failures = []
    if lost:
        named = ", ".join(
            f"#{k} ({'file' if k % 2 == 0 else 'http'}, id {i})" for k, i in lost[:20]
        )
        failures.append(f"{len(lost)} alerts lost, e.g. {named}")
    if twice:
        failures.append(f"{len(twice)} ids stored more than once, e.g. {twice[:20]}")
    if strangers:
        failures.append(f"{len(strangers)} documents that are none of the alerts sent")
    if letters:
        failures.append(f"{len(letters)} valid alerts dead-lettered, e.g. {letters[:5]}")
    return counts, failures


def report_line(phase: Phase, fig: dict) -> str:
    recovered = f"{fig['recovered_s']:.0f} s" if fig["recovered_s"] is not None else "never"
    lag = "-" if fig["max_lag"] is None else f"{fig['max_lag']:,}"
    return (
        f"{phase.name:<10} at {phase.start:6.1f} s  longest stall {fig['stall_s']:5.1f} s  "
        f"largest lag {lag:>8}  back to steady lag after {recovered:>7}  "
        f"429s {phase.rejections:,}"
    )


def as_json(phases: list[Phase], figures: list[dict], totals: dict, samples: list[Sample]) -> bytes:
    return orjson.dumps(
        {
            "phases": [dict(vars(p), **f) for p, f in zip(phases, figures, strict=True)],
            "totals": totals,
            "samples": [vars(s) for s in samples],
        },
        option=orjson.OPT_INDENT_2,
    )
