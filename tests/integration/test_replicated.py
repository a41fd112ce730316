"""A replicated local stack (three KRaft brokers, two OpenSearch nodes), started by the
stack's own code beside the default one: `setup` makes the topics with three copies and
`min.insync.replicas` 2 and the indices with a replica, and alerts still reach OpenSearch
through the agent and the consumer while one broker is killed."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ingest.config import KafkaSettings
from ingest.consumer.topics import topic_settings
from ingest.stack import manager, process
from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout
from tests.integration.conftest import make_alerts, run_cli

PORTS = {"kafka": 39160, "opensearch": 39250, "s3": 39040}  # beside the default stack's


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def replicated(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = Path(os.environ.get("INGEST_STACK_DIR", Path.cwd() / ".stack")).resolve()
    layout = Layout(
        root.with_name(root.name + "-replicated"),
        PORTS["kafka"],
        PORTS["opensearch"],
        PORTS["s3"],
        kafka_brokers=3,
        opensearch_nodes=2,
    )
    wanted = [PORTS["kafka"] + 10 * n for n in range(3)] + [PORTS["opensearch"] + n for n in (0, 1)]
    assert all(_free(p) for p in wanted), "the replicated stack's ports are taken"
    cache = os.environ.get("INGEST_STACK_CACHE")
    if cache is None:  # the default stack's downloads
        os.environ["INGEST_STACK_CACHE"] = str(root / "cache")
    try:
        env = manager.up(layout, say=print, timeout=300)
    finally:
        if cache is None:
            del os.environ["INGEST_STACK_CACHE"]
    yield {"layout": layout, "env": env}
    manager.down(layout, say=print)


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
