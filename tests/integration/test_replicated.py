"""A replicated local stack (three KRaft brokers, two OpenSearch nodes), started by the
stack's own code beside the default one: `setup` makes the topics with three copies and
`min.insync.replicas` 2 and the indices with a replica, and alerts still reach OpenSearch
through the agent and the consumer while one broker is killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from ingest.config import KafkaSettings
from ingest.consumer.topics import topic_settings
from ingest.stack import process
from ingest.stack.kafka import Kafka
from tests.integration.conftest import make_alerts, run_cli


def env_for(replicated: dict, prefix: str, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(replicated["env"])
    env.update(
        INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
        INGEST_KAFKA__TOPIC=f"rep-{prefix}",
        INGEST_KAFKA__DLQ_TOPIC=f"rep-{prefix}.dlq",
        INGEST_KAFKA__GROUP_ID=f"rep-{prefix}",
        INGEST_AGENT__STATE_DIR=str(tmp / "agent"),
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="ERROR",
        # A SIGKILLed leader is replaced once the controller misses its heartbeats
        # (broker.session.timeout.ms, 9 s) and the clients refresh their metadata: the
        # agent's default 10 s to drain at exit is about that (CI once ran out of it).
        INGEST_AGENT__DRAIN_TIMEOUT_S="60",
    )
    return env


async def test_setup_makes_three_copies_and_alerts_flow_with_a_broker_killed(
    replicated, uid, tmp_path
):
    import aiohttp

    prefix = f"rep-{uid}"
    env = env_for(replicated, prefix, tmp_path)
    done = run_cli(["setup"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    servers = env["INGEST_KAFKA__BOOTSTRAP_SERVERS"]
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_topics([env["INGEST_KAFKA__TOPIC"]])
        partitions = described[0]["partitions"]
        assert partitions and all(len(p["replicas"]) == 3 for p in partitions)
        settings = await topic_settings(
            KafkaSettings(bootstrap_servers=servers), env["INGEST_KAFKA__TOPIC"]
        )
        assert settings["min.insync.replicas"] == "2"
    finally:
        await admin.close()

    # One broker killed: acks=all still has two in-sync copies of every partition.
    victim = Kafka(replicated["layout"], 3)
    pid = process.read_pid(victim.pid_file)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        alerts = make_alerts(200, tag=prefix)
        log = tmp_path / "falco.json"
        log.write_bytes(b"\n".join(alerts) + b"\n")
        done = run_cli(["agent", "--once", "--input", f"file:{log}"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        done = run_cli(["consume", "--stop-when-idle", "5"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "indexed 200" in done.stdout
    finally:
        victim.start()
        victim.wait(120)
    url = env["INGEST_OPENSEARCH__URL"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/{prefix}-*/_settings/index.number_of_replicas") as r:
            settings = await r.json()
        async with http.get(
            f"{url}/_cluster/health/{prefix}-*?wait_for_status=green&timeout=60s"
        ) as r:
            health = await r.json()
        async with http.post(f"{url}/{prefix}-*/_refresh") as r:
            assert r.status == 200
        async with http.get(f"{url}/{prefix}-*/_count") as r:
            count = (await r.json())["count"]
        async with http.delete(f"{url}/{prefix}-*") as r:
            assert r.status == 200
    assert {s["settings"]["index"]["number_of_replicas"] for s in settings.values()} == {"1"}
    assert health["status"] == "green" and health["number_of_nodes"] == 2
    assert count == 200
