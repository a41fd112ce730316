"""The consumer against the real Kafka and OpenSearch: counts, fields, duplicates, faults."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from ingest import contract
from ingest.agent.sender import agent_header
from ingest.config import ConsumerSettings
from ingest.consumer.records import make_consumer
from ingest.consumer.runner import run_consumer
from ingest.consumer.topics import ensure_topics
from ingest.sink.replay import replay_dlq
from ingest.stack import process
from ingest.stack.layout import Layout
from tests.integration.conftest import (
    consumer_settings,
    count_docs,
    make_alerts,
    os_client,
    produce,
    read_topic,
)


async def test_n_alerts_become_n_documents_with_the_contract_fields(prefix, uid):
    topic = f"c-{uid}"
    alerts = make_alerts(500, tag=uid)
    await produce(topic, alerts)
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.indexed == 500 and stats.duplicates == 0
    assert await count_docs(prefix) == 500
    async with os_client() as client:
        resp = await client.search(
            index=prefix,
            body={
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"@type": "falco"}},
                            {"term": {"falco_priority": 0}},
                            {"term": {"falco_rule": "Rule 0"}},
                        ]
                    }
                },
                "size": 100,
            },
        )
        hits = resp["hits"]["hits"]
        raw = orjson.loads(alerts[0])
        first = next(h["_source"] for h in hits if h["_source"]["@message"] == raw["output"])
        assert first["@timestamp"] == raw["time"]  # nanoseconds kept
        assert first["falco_priority_name"] == "Emergency"
        assert first["output_fields"]["proc.pid"] == 0
        assert first["@ingest"]["topic"] == topic
        assert hits[0]["_index"] == f"{prefix}-" + raw["time"][:10].replace("-", ".")
        # output_fields is one flat_object: dotted keys that prefix each other coexist
        q = {"query": {"term": {"output_fields.proc.pid": "8"}}}
        assert (await client.count(index=prefix, body=q))["count"] == 1
        mapping = await client.indices.get_mapping(index=f"{prefix}-*")
        props = next(iter(mapping.values()))["mappings"]["properties"]
        assert props["@timestamp"]["type"] == "date_nanos"
        assert props["output_fields"]["type"] == "flat_object"


async def test_the_same_alert_twice_is_stored_once(prefix, uid):
    topic = f"c-{uid}"
    alerts = make_alerts(50, tag=uid)
    await produce(topic, alerts + alerts[:20])  # an agent retry: same bytes again
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert await count_docs(prefix) == 50
    assert stats.indexed + stats.duplicates == 70
    assert stats.duplicates == 20
    # a replay of the whole topic by another group stores nothing new
    again = consumer_settings(topic, prefix)
    again = again.model_copy(update={"kafka": again.kafka.model_copy(update={"group_id": "other"})})
    stats2 = await run_consumer(again, stop_when_idle=3)
    assert stats2.indexed == 0 and stats2.duplicates == 70
    assert await count_docs(prefix) == 50


async def test_batches_of_every_kafka_codec_are_read(prefix, uid):
    """Other producers write the topic too (Falcosidekick's Kafka output, a Vector or Fluent
    Bit in front): whatever codec their batches have, the alerts are stored."""
    topic = f"c-{uid}"
    codecs = [None, "gzip", "snappy", "lz4", "zstd"]
    alerts = make_alerts(40 * len(codecs), tag=uid)
    for i, codec in enumerate(codecs):
        await produce(topic, alerts[i * 40 : (i + 1) * 40], compression=codec)
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.indexed == len(alerts) and not stats.dead_lettered
    assert await count_docs(prefix) == len(alerts)


async def test_malformed_input_goes_to_the_dead_letter_topic_with_reasons(prefix, uid):
    topic = f"c-{uid}"
    good = make_alerts(100, tag=uid)
    bad = [
        b"not json",
        b"[]",
        orjson.dumps({"rule": "r", "priority": "Severe", "time": "x"}),
        orjson.dumps({"priority": "Debug", "time": "2026-11-20T00:00:00Z"}),
    ]
    mixed = good[:50] + bad + good[50:]
    await produce(topic, mixed)
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.indexed == 100
    assert await count_docs(prefix) == 100
    letters = await read_topic(f"{topic}.dlq", expect=4)
    assert sorted(m.value for m in letters) == sorted(bad)  # original bytes, unchanged
    reasons = sorted(dict(m.headers)["dlq.reason"].decode() for m in letters)
    assert reasons == ["bad_priority", "invalid_json", "missing_rule", "not_an_object"]
    for m in letters:
        h = dict(m.headers)
        assert h["dlq.stage"] == b"normalize"
        assert h["dlq.source.topic"].decode() == topic
        assert mixed[int(h["dlq.source.offset"])] == m.value or h["dlq.source.partition"]


async def test_output_fields_reach_opensearch_as_falco_wrote_them(prefix, uid):
    """The fast path passes output_fields through as their bytes: a number beyond a double
    is stored as written, and a repeated key (which OpenSearch refuses) is dead-lettered with
    the node's reason while the alerts around it are stored."""
    topic = f"c-{uid}"
    good = make_alerts(20, tag=uid)
    template = orjson.loads(good[0])
    big = orjson.dumps(template | {"output": template["output"] + " big"}).replace(
        b'"output_fields":{', b'"output_fields":{"n.big":1e400,"n.long":123456789012345678901234,'
    )
    repeated = orjson.dumps(template | {"output": template["output"] + " twice"}).replace(
        b'"output_fields":{', b'"output_fields":{"k.twice":1,"k.twice":2,'
    )
    await produce(topic, good[:10] + [big, repeated] + good[10:])
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.indexed == 21
    assert await count_docs(prefix) == 21
    [letter] = await read_topic(f"{topic}.dlq", expect=1)
    headers = dict(letter.headers)
    assert letter.value == repeated
    assert headers["dlq.stage"] == b"index"
    assert headers["dlq.reason"] == b"opensearch_mapper_parsing_exception"
    [source] = [r for r in await read_topic(topic, expect=22) if r.value == repeated]
    assert headers["dlq.source.topic"] == topic.encode()
    assert int(headers["dlq.source.partition"]) == source.partition
    assert int(headers["dlq.source.offset"]) == source.offset == 11
    as_written = [
        {"term": {"output_fields.n.big": "1e400"}},
        {"term": {"output_fields.n.long": "123456789012345678901234"}},
    ]
    assert await count_docs(prefix, {"bool": {"filter": as_written}}) == 1


async def test_the_consumers_client_reads_what_a_plain_client_reads(stack, uid):
    """The consumer's client hands over aiokafka's decoded records, not ConsumerRecords:
    the same offsets, keys, values and headers, zstd batches of several partitions."""
    topic = f"c-{uid}"
    settings = consumer_settings(topic, f"unused-{uid}")
    await ensure_topics(settings.kafka, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, compression_type="zstd"
    )
    await producer.start()
    try:
        for i, value in enumerate(make_alerts(300, tag=uid) + [b"", b"{"]):
            headers = [(contract.HOST, b"node-%d" % (i % 3)), ("other", None)][: i % 3]
            await producer.send(topic, value, key=b"k%d" % (i % 7), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    plain = await read_topic(topic, expect=302)
    consumer = make_consumer(settings)
    consumer.subscribe([topic])
    await consumer.start()
    ours: list = []
    try:
        deadline = time.monotonic() + 30
        while len(ours) < 302 and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                ours.extend(msgs)
    finally:
        await consumer.stop()
    assert not any(isinstance(r, ConsumerRecord) for r in ours)

    def rows(records: list, partition_of) -> list:
        return sorted((partition_of(r), r.offset, r.key, r.value, list(r.headers)) for r in records)

    assert len({r.partition for r in plain}) > 1
    by_key = {r.key: r.partition for r in plain}
    assert rows(ours, lambda r: by_key[r.key]) == rows(plain, lambda r: r.partition)


async def dead_lettered(prefix: str, uid: str, values: list[bytes]) -> ConsumerSettings:
    """``values`` through the consumer into its DLQ; the settings of that consumer."""
    topic = f"c-{uid}"
    await produce(topic, values)
    settings = consumer_settings(topic, prefix)
    await run_consumer(settings, stop_when_idle=3)
    assert len(await read_topic(settings.kafka.dlq_topic, expect=len(values))) == len(values)
    return settings


async def test_dlq_replay_refeeds_the_main_topic(prefix, uid):
    settings = await dead_lettered(prefix, uid, [b"garbage-1", b"garbage-2"])
    assert await replay_dlq(settings, idle_s=2) == 2
    main = await read_topic(settings.kafka.topic, expect=4)
    replayed = [m for m in main if any(h.startswith("dlq.replayed.") for h, _ in m.headers)]
    assert sorted(m.value for m in replayed) == [b"garbage-1", b"garbage-2"]


async def test_a_replayed_alert_keeps_the_agents_lineage(prefix, uid):
    """A host's clock ran ahead: its alerts are dead-lettered as too far in the future,
    with the agent's header; the operator allows more and replays them; the documents say
    which agent read them."""
    topic = f"c-{uid}"
    ahead = make_alerts(20, tag=uid, start_ns=time.time_ns() + 2 * 3600 * 10**9)
    header = agent_header("clock-ahead", "file:/var/log/falco.json", time.time_ns())
    await produce(topic, ahead, headers=[header, ("dlq.reason", b"stale")])
    settings = consumer_settings(topic, prefix, max_future_s=60)
    stats = await run_consumer(settings, stop_when_idle=3)
    assert stats.dead_lettered == {"too_far_in_future": 20}
    letters = await read_topic(settings.kafka.dlq_topic, expect=20)
    assert all(m.headers[0] == header for m in letters)
    assert all(
        [v for k, v in m.headers if k == "dlq.reason"] == [b"too_far_in_future"] for m in letters
    )
    assert await replay_dlq(settings, idle_s=2) == 20
    allowed = consumer_settings(topic, prefix, max_future_s=3 * 3600)
    assert (await run_consumer(allowed, stop_when_idle=3)).indexed == 20
    async with os_client() as client:
        await client.indices.refresh(index=prefix)
        hits = (await client.search(index=prefix, body={"size": 50}))["hits"]["hits"]
    assert len(hits) == 20
    assert {h["_source"]["@ingest"]["agent"]["host"] for h in hits} == {"clock-ahead"}


async def test_dlq_replay_of_one_reason_leaves_the_others_for_a_full_replay(prefix, uid):
    settings = await dead_lettered(prefix, uid, [b"garbage-1", b'{"rule":"r","priority":"loud"}'])
    assert await replay_dlq(settings, idle_s=2, reason="bad_priority") == 1
    assert await replay_dlq(settings, idle_s=2, reason="bad_priority") == 0  # remembered
    assert await replay_dlq(settings, idle_s=2) == 2  # the one passed over is still there


async def test_dlq_replay_does_not_chase_alerts_dead_lettered_again(prefix, uid):
    settings = await dead_lettered(prefix, uid, [b"garbage-1", b"garbage-2"])
    # The consumer keeps running: what the replay puts back is dead-lettered again at once.
    consumer = asyncio.create_task(run_consumer(settings, stop_when_idle=8))
    try:
        moved = await asyncio.wait_for(replay_dlq(settings, idle_s=4), timeout=60)
        assert moved == 2
        await asyncio.wait_for(consumer, timeout=120)
    finally:
        consumer.cancel()
    assert len(await read_topic(settings.kafka.dlq_topic, expect=4)) == 4
    assert await replay_dlq(settings, idle_s=2) == 2  # only those dead-lettered since


async def wait_for_docs(prefix: str, n: int, task: asyncio.Task, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while await count_docs(prefix) < n:
        assert not task.done(), f"consumer ended early: {task.result()}"
        assert time.monotonic() < deadline, f"fewer than {n} documents after {timeout}s"
        await asyncio.sleep(0.2)


def _consume_cmd(topic: str, prefix: str, idle: float | None) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.update(
        INGEST_KAFKA__TOPIC=topic,
        INGEST_KAFKA__DLQ_TOPIC=f"{topic}.dlq",
        INGEST_KAFKA__GROUP_ID=f"g-{topic}",
        INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
        INGEST_CONSUMER__BATCH_MAX_DOCS="200",
        INGEST_CONSUMER__LINGER_MS="20",
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="WARNING",
    )
    cmd = [sys.executable, "-m", "ingest.cli", "consume"]
    if idle is not None:
        cmd += ["--stop-when-idle", str(idle)]
    return cmd, env


async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(prefix, uid):
    topic = f"c-{uid}"
    n = 20_000
    alerts = make_alerts(n, tag=uid)
    await produce(topic, alerts)
    cmd, env = _consume_cmd(topic, prefix, None)
    proc = subprocess.Popen(cmd, env=env)
    try:
        deadline = time.monotonic() + 90
        while await count_docs(prefix) < n // 5:
            assert time.monotonic() < deadline, "consumer made no progress"
            assert proc.poll() is None
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stored_at_kill = await count_docs(prefix)
    assert stored_at_kill < n, "killed too late to show anything"
    cmd, env = _consume_cmd(topic, prefix, 4)
    assert subprocess.run(cmd, env=env, timeout=180).returncode == 0
    assert await count_docs(prefix) == n
    async with os_client() as client:
        agg = await client.search(
            index=prefix,
            body={
                "size": 0,
                "aggs": {
                    "u": {
                        "cardinality": {"field": "@message.keyword", "precision_threshold": 40000}
                    }
                },
            },
        )
    assert agg["aggregations"]["u"]["value"] >= n * 0.99  # HLL estimate, count is exact


async def committed_total(topic: str) -> int:
    """The offsets group ``g-<topic>`` has committed in Kafka, summed over partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"g-{topic}")
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def test_commits_wait_for_the_interval_and_a_kill_replays_as_409s(prefix, uid):
    """With a long commit interval the broker holds the offsets of the first commit only,
    while everything is stored; killed then, the restart reads the rest again and OpenSearch
    answers 409 for exactly those: nothing lost, nothing stored twice."""
    topic = f"c-{uid}"
    n = 3000
    await produce(topic, make_alerts(n, tag=uid))
    cmd, env = _consume_cmd(topic, prefix, None)
    env["INGEST_CONSUMER__COMMIT_INTERVAL_MS"] = "60000"
    # so that the group drops the killed member soon and the restart gets its partitions
    env["INGEST_CONSUMER__SESSION_TIMEOUT_MS"] = "6000"
    env["INGEST_CONSUMER__DRAIN_TIMEOUT_S"] = "5"
    proc = subprocess.Popen(cmd, env=env)
    try:
        deadline = time.monotonic() + 90
        while await count_docs(prefix) < n:
            assert time.monotonic() < deadline, "consumer made no progress"
            assert proc.poll() is None
            await asyncio.sleep(0.2)
        committed = await committed_total(topic)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # One commit: when the first batch was written, of the batches finished by then (the
    # writes in flight may end out of order); all stored, far from all committed.
    assert 0 < committed < n
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.consumed == n - committed
    assert stats.duplicates == n - committed and stats.indexed == 0
    assert await count_docs(prefix) == n
    assert await committed_total(topic) == n


async def test_sigterm_drains_and_commits(prefix, uid):
    topic = f"c-{uid}"
    await produce(topic, make_alerts(3000, tag=uid))
    cmd, env = _consume_cmd(topic, prefix, None)
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 90
    while await count_docs(prefix) < 500:
        assert time.monotonic() < deadline
        assert proc.poll() is None
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    # whatever it stored was committed: a restart stores the rest without any 409
    settings = consumer_settings(topic, prefix)
    stats = await run_consumer(settings, stop_when_idle=3)
    assert await count_docs(prefix) == 3000
    assert stats.duplicates == 0


async def test_opensearch_stopped_mid_stream_then_back_nothing_lost(prefix, uid):
    pid = process.read_pid(Layout.default().opensearch_home / "opensearch.pid")
    assert pid, "needs the project's local OpenSearch (falco-ingest stack up)"
    topic = f"c-{uid}"
    first, second = make_alerts(2000, tag=uid + "a"), make_alerts(2000, tag=uid + "b")
    await produce(topic, first)
    settings = consumer_settings(topic, prefix, retry_max_s=1.0, retry_initial_s=0.1)
    task = asyncio.create_task(run_consumer(settings, stop_when_idle=6))
    await wait_for_docs(prefix, 2000, task)
    os.kill(pid, signal.SIGSTOP)  # OpenSearch stops answering
    try:
        await produce(topic, second)
        await asyncio.sleep(10)
        assert not task.done(), "the consumer must wait for OpenSearch, not exit"
    finally:
        os.kill(pid, signal.SIGCONT)
    stats = await asyncio.wait_for(task, timeout=120)
    assert await count_docs(prefix) == 4000
    assert stats.indexed + stats.duplicates >= 4000
    assert not stats.dead_lettered


async def test_two_consumers_rebalance_nothing_lost_or_duplicated(prefix, uid):
    topic = f"c-{uid}"
    n = 30_000
    # small, one-at-a-time bulks keep the first consumer busy long enough to be rebalanced
    settings = consumer_settings(topic, prefix, batch_max_docs=50, max_inflight_bulks=1)
    await ensure_topics(settings.kafka, topic)
    await produce(topic, make_alerts(n, tag=uid), key=None)
    a = asyncio.create_task(run_consumer(settings, stop_when_idle=5))
    await wait_for_docs(prefix, 1000, a)
    b = asyncio.create_task(run_consumer(settings, stop_when_idle=5))
    sa, sb = await asyncio.wait_for(asyncio.gather(a, b), timeout=300)
    assert sb.consumed > 0, "the second consumer never got partitions"
    assert await count_docs(prefix) == n
    assert sa.indexed + sb.indexed == n
    assert not sa.dead_lettered and not sb.dead_lettered


async def test_without_the_index_template_the_consumer_refuses_to_start(stack, uid):
    topic = f"c-{uid}"
    await produce(topic, make_alerts(5, tag=uid))
    cmd, env = _consume_cmd(topic, f"no-setup-{uid}", 3)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"no index template 'no-setup-{uid}'" in done.stderr
    assert "falco-ingest setup" in done.stderr
    async with os_client() as client:  # nothing was written by guesswork
        assert not await client.indices.exists(index=f"no-setup-{uid}-*", allow_no_indices=False)


async def test_topics_are_made_with_their_retention(stack, uid):
    from ingest.consumer.topics import topic_settings

    topic = f"c-{uid}"
    settings = consumer_settings(topic, "unused")
    kafka = settings.kafka.model_copy(update={"topic_retention_ms": 2 * 86_400_000})
    assert sorted(await ensure_topics(kafka, topic, kafka.dlq_topic)) == [topic, kafka.dlq_topic]
    assert await ensure_topics(kafka, topic, kafka.dlq_topic) == []  # already there
    alerts = await topic_settings(kafka, topic)
    letters = await topic_settings(kafka, kafka.dlq_topic)
    assert alerts["retention.ms"] == str(2 * 86_400_000)
    assert letters["retention.ms"] == "-1"  # dead letters wait for a person
    assert alerts["min.insync.replicas"] == "1"  # one replica here
