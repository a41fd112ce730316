"""What other producers send, through the real agent, Kafka and OpenSearch: every good alert
stored once, every hostile one stored or dead-lettered with a reason, nothing stalls."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.config import ConsumerSettings, load
from ingest.normalize.document import Document, normalize
from ingest.sink.bulk import BulkAnswers, OpenSearchSink
from ingest.sink.client import make_client
from ingest.sink.dlq import SHORT_VALUE_BYTES, DeadLetter, DeadLetterQueue, make_producer
from tests.integration.conftest import (
    consumer_settings,
    count_docs,
    make_alerts,
    read_topic,
    run_cli,
)
from tests.integration.test_agent import start_agent, stop, wait_in_kafka

MAX_ALERT = 200_000  # the agent's MAX_ALERT_BYTES in these tests


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hostile_lines(uid: str, stamp: str) -> dict[str, bytes]:
    """One line each of what breaks parsers, named; each alert's output names it."""

    def alert(name: str, **over: object) -> dict:
        return {
            "time": stamp,
            "rule": "Hostile",
            "priority": "Warning",
            "output": f"{uid} hostile {name}",
            "hostname": "h",
            "source": "syscall",
            "tags": ["T1059"],
            "output_fields": {"proc.name": "x"},
        } | over

    def raw(name: str, fields: bytes | None = None, tags: bytes | None = None, **over) -> bytes:
        line = orjson.dumps(alert(name, **over))
        if fields is not None:
            line = line.replace(b'{"proc.name":"x"}', fields)
        if tags is not None:
            line = line.replace(b'["T1059"]', tags)
        return line

    return {
        "tags_inf": raw("tags_inf", tags=b"[1e400]"),
        "tags_deep": raw("tags_deep", tags=b"[" * 400 + b"]" * 400),
        "fields_spaced": raw("fields_spaced", fields=b'{ "proc.name" :\t"x" ,  "n" : 1 }'),
        "numbers": raw("numbers", fields=b'{"inf":1e400,"big":123456789012345678901234567890}'),
        "duplicate_key": raw("duplicate_key", fields=b'{"a":1,"a":2}'),
        "escapes": raw("escapes", fields=b'{"a":"\\u0000\\ud83d\\ude00\\/"}'),
        "non_ascii": raw("non_ascii", hostname="h\u00e9", fields='{"a":"\u00fc"}'.encode()),
        "fields_deep": raw("fields_deep", fields=b'{"a":' + b"[" * 300 + b"]" * 300 + b"}"),
        "too_deep": raw("too_deep", fields=b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "not_json": b"%b not json {" % uid.encode(),
        "array": b"[1,2,3]",
        "rule_number": raw("rule_number", rule=5),
        "priority_number": raw("priority_number", priority=3),
        "time_number": raw("time_number", time=7, output_fields={}),
        "fields_string": raw("fields_string", output_fields="x"),
        "hostname_list": raw("hostname_list", hostname=[1]),
        "bad_utf8": raw("bad_utf8").replace(b"hostile", b"host\xffile"),
        "lone_surrogate": raw("lone_surrogate", fields=b'{"a":"\\ud800"}'),
        "null_byte_key": raw("null_byte_key", fields=b'{"\\u0000":1}'),
    }


def pretty_alerts(uid: str, stamp: str) -> list[bytes]:
    """Falcosidekick-style POST bodies written by a script: pretty-printed, one alert each."""
    return [
        json.dumps(
            {
                "time": stamp,
                "rule": "Pretty",
                "priority": "Notice",
                "output": f"{uid} pretty {i}",
                "hostname": "h",
                "output_fields": {"proc.name": "curl", "n": i},
            },
            indent=2,
        ).encode()
        for i in range(3)
    ]


async def committed_lag(settings: ConsumerSettings) -> int:
    """Records of the topic past the group's committed offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
        group_id=settings.kafka.group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.kafka.topic) or set()
        tps = [TopicPartition(settings.kafka.topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            lag += ends[tp] - ((await consumer.committed(tp)) or 0)
        return lag
    finally:
        await consumer.stop()


async def test_ten_thousand_good_alerts_with_every_hostile_shape_interleaved(prefix, tmp_path, uid):
    topic = f"h-{uid}"
    good = make_alerts(10_000, tag=uid)
    stamp = orjson.loads(good[0])["time"]
    hostile = hostile_lines(uid, stamp)
    long = b'{"rule":"long","output":"' + b"L" * (MAX_ALERT * 3) + b'"}'
    lines: list[bytes] = []
    shapes = [*hostile.values(), long]
    every = len(good) // len(shapes)
    for i, alert in enumerate(good):
        lines.append(alert)
        if i % every == every // 2 and shapes:
            lines.append(shapes.pop(0))  # between good alerts of the same file and partition
    assert not shapes
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join(lines) + b"\n")
    port = _free_port()
    agent = start_agent(
        tmp_path,
        topic,
        f"file:{log}",
        f"http://127.0.0.1:{port}",
        INGEST_AGENT__MAX_ALERT_BYTES=str(MAX_ALERT),
    )
    pretty = pretty_alerts(uid, stamp)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the receiver is up once the agent has started
                try:
                    async with http.post(f"http://127.0.0.1:{port}/", data=pretty[0]) as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)
            for body in pretty[1:]:
                async with http.post(f"http://127.0.0.1:{port}/", data=body) as r:
                    assert r.status == 200
        shipped = set(good) | set(hostile.values()) | set(pretty)
        records = await wait_in_kafka(topic, shipped)
    finally:
        assert stop(agent) == 0
    assert sorted(m.value for m in records) == sorted(shipped)  # each once, the long one not
    assert len({m.partition for m in records}) == 1  # one agent: one host key, one partition
    [noted] = (tmp_path / "state" / "rejected.jsonl").read_bytes().splitlines()
    assert orjson.loads(noted)["bytes"] == len(long)

    settings = consumer_settings(topic, prefix)
    env = dict(
        os.environ,
        INGEST_KAFKA__TOPIC=topic,
        INGEST_KAFKA__DLQ_TOPIC=settings.kafka.dlq_topic,
        INGEST_KAFKA__GROUP_ID=settings.kafka.group_id,
        INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
        INGEST_METRICS_PORT="0",
    )
    done = run_cli(["consume", "--stop-when-idle", "5"], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.endswith("bulk retries 0"), summary  # no 429/5xx met, none retried
    assert "internal_error" not in summary

    letters = await read_topic(settings.kafka.dlq_topic, idle_s=3)
    reasons = {m.value: dict(m.headers)["dlq.reason"].decode() for m in letters}
    assert all(reasons.values())
    assert set(good).isdisjoint(reasons)  # no good alert dead-lettered
    assert await count_docs(prefix, {"match_phrase": {"@message": f"test alert {uid}"}}) == 10_000
    for name, line in hostile.items():
        stored = await count_docs(prefix, {"match_phrase": {"@message": f"{uid} hostile {name}"}})
        assert (stored == 1) != (line in reasons), (name, stored, reasons.get(line))
    assert reasons[hostile["duplicate_key"]] == "opensearch_mapper_parsing_exception"
    assert reasons[hostile["too_deep"]] == "invalid_json"
    assert reasons[hostile["not_json"]] == "invalid_json"
    assert reasons[hostile["array"]] == "not_an_object"
    for name in ("tags_inf", "tags_deep", "fields_spaced", "numbers", "escapes", "fields_deep"):
        assert hostile[name] not in reasons, name  # the shapes that stopped the fleet: stored
    assert await count_docs(prefix, {"match_phrase": {"@message": f"{uid} pretty"}}) == 3
    total_docs = await count_docs(prefix)
    assert total_docs + len(letters) == len(records)  # each record stored or dead-lettered
    assert await committed_lag(settings) == 0


async def test_an_agent_fed_a_150_mb_line_stays_small_and_reads_on(stack, tmp_path, uid):
    topic = f"h-{uid}"
    log = tmp_path / "falco.json"
    after = make_alerts(3, tag=uid)
    with log.open("wb") as fh:
        fh.write(after[0] + b"\n")
        chunk = b"x" * (1 << 20)
        for _ in range(150):
            fh.write(chunk)
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        await wait_in_kafka(topic, {after[0]})
        deadline = time.monotonic() + 120
        reject = tmp_path / "state" / "rejected.jsonl"
        with log.open("ab") as fh:
            fh.write(b"\n" + after[1] + b"\n" + after[2] + b"\n")
        got = await wait_in_kafka(topic, set(after))
        while not reject.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        peak_kib = int(
            re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{agent.pid}/status").read_text())[1]
        )
    finally:
        assert stop(agent) == 0
    assert sorted(m.value for m in got) == sorted(after)
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"
    [noted] = [orjson.loads(x) for x in reject.read_bytes().splitlines()]
    assert noted["bytes"] == 150 << 20 and noted["offset"] == len(after[0]) + 1


async def test_once_on_a_file_ending_in_a_partial_line_exits_4_and_says_which(stack, tmp_path, uid):
    topic = f"h-{uid}"
    log = tmp_path / "falco.json"
    alerts = make_alerts(2, tag=uid)
    log.write_bytes(alerts[0] + b"\n" + alerts[1][:40])
    env = dict(
        os.environ,
        INGEST_KAFKA__TOPIC=topic,
        INGEST_AGENT__STATE_DIR=str(tmp_path / "state"),
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="ERROR",
    )
    args = ["agent", "--once", "--input", f"file:{log}"]
    done = run_cli(args, env)
    assert done.returncode == 4, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"falco-ingest: file:{log} ends in a partial line (40 bytes at offset "
        f"{len(alerts[0]) + 1}), not shipped: Falco ends every alert with a newline; run again "
        "once the writer has finished the line (or add the newline)"
    )
    assert [m.value for m in await read_topic(topic)] == [alerts[0]]
    with log.open("ab") as fh:
        fh.write(alerts[1][40:] + b"\n")
    assert run_cli(args, env).returncode == 0
    assert sorted(m.value for m in await read_topic(topic)) == sorted(alerts)


async def test_the_agent_sets_aside_what_the_broker_refuses_as_too_large(stack, tmp_path, uid):
    """A topic whose max.message.bytes is below the agent's batch: the alert it refuses
    is noted in the reject file, the alerts after it reach Kafka."""
    topic = f"h-{uid}"
    await create_topic(topic, {"max.message.bytes": "20000"})
    alerts = make_alerts(3, tag=uid)
    big = b'{"rule":"big","output":"%s"}' % os.urandom(50_000).hex().encode()  # zstd: > 20000
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join([alerts[0], big, *alerts[1:]]) + b"\n")
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        got = await wait_in_kafka(topic, set(alerts), timeout=60)
    finally:
        assert stop(agent) == 0
    assert sorted(m.value for m in got) == sorted(alerts)
    [noted] = [
        orjson.loads(x) for x in (tmp_path / "state" / "rejected.jsonl").read_bytes().splitlines()
    ]
    assert noted["bytes"] == len(big) and noted["head"].startswith('{"rule":"big"')


async def create_topic(topic: str, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=config)]
        )
    finally:
        await admin.close()


async def test_a_dead_letter_too_large_for_the_dlq_topic_is_kept_shortened(stack, uid):
    import hashlib

    dlq_topic = f"h-{uid}.dlq"
    await create_topic(dlq_topic, {"max.message.bytes": "100000"})
    settings = load(ConsumerSettings)
    producer = make_producer(settings.kafka)
    await producer.start()
    big = os.urandom(300_000)  # what no codec shrinks below the topic's limit
    letters = [
        DeadLetter(v, b"h", "invalid_json", "normalize", "d", f"h-{uid}", 0, i)
        for i, v in enumerate([b"small", big])
    ]
    dlq = DeadLetterQueue(producer, dlq_topic, 30.0, lambda: make_producer(settings.kafka))
    try:
        await asyncio.wait_for(dlq.send(letters), 60)
    finally:
        await dlq.producer.stop()
    got = await read_topic(dlq_topic, expect=2)
    by_offset = {int(dict(m.headers)["dlq.source.offset"]): m for m in got}
    assert by_offset[0].value == b"small"
    kept = by_offset[1]
    assert kept.value == big[:SHORT_VALUE_BYTES]
    headers = dict(kept.headers)
    assert headers["dlq.original.size"] == str(len(big)).encode()
    assert headers["dlq.original.sha256"] == hashlib.sha256(big).hexdigest().encode()


async def test_a_body_the_node_refuses_is_split_and_the_rest_stored(prefix):
    """A document line that breaks NDJSON (no path of ours writes one: a bug's stand-in)
    makes the real node refuse the whole request; the sink finds it and stores the rest."""
    now = time.time_ns()
    good = [normalize(a, None, now) for a in make_alerts(20)]
    assert all(isinstance(d, Document) for d in good)
    broken = Document("broken-1", good[0].day, b'{"@type":\n"falco"}\n')
    docs = good[:7] + [broken] + good[7:]
    async with make_client(load(ConsumerSettings).opensearch, BulkAnswers()) as client:
        out = await OpenSearchSink(client, prefix, 0.01, 0.05).write(docs)
    assert out.stored == 20 and out.retries == 0
    [(doc, reason, detail)] = out.rejected
    assert doc is broken and reason.startswith("opensearch_") and detail
    assert await count_docs(prefix) == 20
