"""The real services answer and do what the product needs of them."""

from __future__ import annotations

import os
import uuid

import boto3
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.stack import manager
from ingest.stack.layout import Layout
from tests.integration.conftest import os_client


def test_stack_status_is_healthy(stack):
    rows = manager.status(Layout.default())
    if os.environ.get("INGEST_STACK_SNAPSHOT_DIR"):  # our own stack, not the user's services
        assert {name for name, ok, _ in rows if ok} == {"kafka", "opensearch", "s3"}, rows


async def test_kafka_produce_and_consume_with_headers(stack, uid):
    topic = f"s-{uid}"
    bootstrap = os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    await producer.send_and_wait(topic, b"v1", key=b"k", headers=[("h", b"x")])
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uid}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000)
        msgs = [m for ms in got.values() for m in ms]
        assert [(m.key, m.value, m.headers) for m in msgs] == [(b"k", b"v1", (("h", b"x"),))]
        tp = next(iter(got))
        await consumer.commit({tp: msgs[-1].offset + 1})
        assert await consumer.committed(tp) == msgs[-1].offset + 1
    finally:
        await consumer.stop()


async def test_opensearch_index_and_search(stack, uid):
    index = f"s-{uid}"
    async with os_client() as client:
        await client.indices.create(
            index=index,
            body={
                "mappings": {
                    "properties": {
                        "@timestamp": {"type": "date_nanos"},
                        "f": {"type": "flat_object"},
                    }
                }
            },
        )
        await client.index(
            index=index,
            id="1",
            refresh=True,
            body={"@timestamp": "2026-11-20T09:00:01.408091526Z", "f": {"a.b": "x", "a": "y"}},
        )
        resp = await client.search(index=index, body={"query": {"term": {"f.a.b": "x"}}})
        assert resp["hits"]["total"]["value"] == 1
        assert resp["hits"]["hits"][0]["_source"]["@timestamp"].endswith(".408091526Z")
        await client.indices.delete(index=index)


async def test_snapshot_into_the_archive_repository_is_listed(stack, uid):
    base = os.environ.get("INGEST_STACK_SNAPSHOT_DIR")
    assert base, "the archive repository lives under the stack's path.repo"
    repo, index = f"repo-{uid}", f"snap-{uid}"
    async with os_client() as client:
        await client.snapshot.create_repository(
            repository=repo, body={"type": "fs", "settings": {"location": f"{base}/{repo}"}}
        )
        await client.index(index=index, body={"a": 1}, refresh=True)
        snap = await client.snapshot.create(
            repository=repo,
            snapshot=f"{index}-1",
            body={"indices": index},
            wait_for_completion=True,
        )
        assert snap["snapshot"]["state"] == "SUCCESS"
        listed = await client.snapshot.get(repository=repo, snapshot="_all")
        assert [s["snapshot"] for s in listed["snapshots"]] == [f"{index}-1"]
        await client.indices.delete(index=index)
        await client.snapshot.restore(
            repository=repo, snapshot=f"{index}-1", wait_for_completion=True
        )
        assert (await client.count(index=index))["count"] == 1
        await client.indices.delete(index=index)
        await client.snapshot.delete(repository=repo, snapshot=f"{index}-1")
        await client.snapshot.delete_repository(repository=repo)


def test_s3_bucket_put_and_get(stack):
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["INGEST_S3__ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = f"probe/{uuid.uuid4().hex}"
    bucket = os.environ.get("INGEST_S3__BUCKET", "falco-archive")
    s3.put_object(Bucket=bucket, Key=key, Body=b"archived")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"archived"
    s3.delete_object(Bucket=bucket, Key=key)
