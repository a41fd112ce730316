"""The naive baseline: aiokafka one record at a time, stdlib json, opensearch-py async_bulk.

This is what a first version typically looks like; bench/consumer.py runs it beside ours.
    python bench/baseline_consumer.py TOPIC GROUP INDEX_PREFIX EXPECTED
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys

from aiokafka import AIOKafkaConsumer
from opensearchpy import AsyncOpenSearch
from opensearchpy.helpers import async_bulk

PRIOS = {
    "emergency": 0,
    "alert": 1,
    "critical": 2,
    "error": 3,
    "warning": 4,
    "notice": 5,
    "informational": 6,
    "info": 6,
    "debug": 7,
}


def to_doc(value: bytes, prefix: str) -> dict:
    alert = json.loads(value)
    ident = hashlib.sha256(
        "|".join(
            [alert["time"], alert.get("hostname", ""), alert["rule"], alert.get("output", "")]
        ).encode()
    ).hexdigest()
    return {
        "_op_type": "create",
        "_index": f"{prefix}-{alert['time'][:10].replace('-', '.')}",
        "_id": ident,
        "_source": {
            "@timestamp": alert["time"],
            "@type": "falco",
            "@message": alert.get("output", ""),
            "falco_rule": alert["rule"],
            "falco_priority": PRIOS[alert["priority"].lower()],
            "falco_priority_name": alert["priority"],
            "falco_hostname": alert.get("hostname"),
            "falco_source": alert.get("source"),
            "falco_tags": alert.get("tags", []),
            "output_fields": alert.get("output_fields", {}),
        },
    }


async def main(topic: str, group: str, prefix: str, expected: int) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=os.environ["INGEST_KAFKA__BOOTSTRAP_SERVERS"],
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    client = AsyncOpenSearch(hosts=[os.environ["INGEST_OPENSEARCH__URL"]], timeout=60)
    await consumer.start()
    done, batch = 0, []
    try:
        async for msg in consumer:
            batch.append(to_doc(msg.value, prefix))
            if len(batch) >= 2000 or done + len(batch) >= expected:
                await async_bulk(client, batch, raise_on_error=False, chunk_size=2000)
                await consumer.commit()
                done += len(batch)
                batch = []
                if done >= expected:
                    break
    finally:
        await consumer.stop()
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
