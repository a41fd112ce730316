"""`falco-ingest setup` against the real OpenSearch: idempotent, drift shown, mapping applied."""

from __future__ import annotations

import asyncio
import os
import time

from ingest.config import OpsSettings, load
from ingest.ops.setup import DRIFT_EXIT, run_setup
from tests.integration.conftest import os_client


def ops_for(prefix: str) -> OpsSettings:
    base = load(OpsSettings)
    return base.model_copy(
        update={
            "opensearch": base.opensearch.model_copy(update={"index_prefix": prefix}),
            "kafka": base.kafka.model_copy(update={"create_topics": False}),
        }
    )


async def test_plan_shows_no_drift_after_setup_and_reports_a_hand_made_change(prefix, capsys):
    ops = ops_for(prefix)
    assert await run_setup(ops, plan_only=True) == 0
    out = capsys.readouterr().out
    assert "no drift" in out
    # this node has no ISM (README): the policy is named as not applied, and is no drift
    assert f"skip    ism_policy {prefix}-retention: the index-management plugin" in out
    async with os_client() as client:  # someone edits the mapping by hand
        tpl = await client.cluster.get_component_template(name=f"{prefix}-mappings")
        body = tpl["component_templates"][0]["component_template"]
        body["template"]["mappings"]["properties"]["falco_rule"] = {"type": "text"}
        await client.cluster.put_component_template(name=f"{prefix}-mappings", body=body)
    assert await run_setup(ops, plan_only=True) == DRIFT_EXIT
    out = capsys.readouterr().out
    assert f"update  component_template {prefix}-mappings" in out
    assert "drift: cluster differs from git" in out
    assert await run_setup(ops) == 0  # setup puts git's version back
    assert await run_setup(ops, plan_only=True) == 0


async def test_a_new_daily_index_gets_the_mapping_settings_and_alias(prefix):
    index = f"{prefix}-2026.11.20"
    async with os_client() as client:
        await client.index(index=index, body={"@timestamp": "2026-11-20T00:00:00.000000001Z"})
        mapping = (await client.indices.get_mapping(index=index))[index]["mappings"]
        assert mapping["properties"]["output_fields"]["type"] == "flat_object"
        assert mapping["properties"]["falco_priority"]["type"] == "byte"
        settings = (await client.indices.get_settings(index=index))[index]["settings"]["index"]
        assert settings["codec"] == "best_compression"
        aliases = await client.indices.get_alias(index=index)
        assert prefix in aliases[index]["aliases"]


async def test_topics_are_planned_made_and_their_settings_put_back(prefix, uid, capsys):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from ingest.consumer.topics import topic_drift, topic_settings

    base = ops_for(prefix)
    kafka = base.kafka.model_copy(
        update={"create_topics": True, "topic": f"s-{uid}", "dlq_topic": f"s-{uid}.dlq"}
    )
    ops = base.model_copy(update={"kafka": kafka})
    assert await run_setup(ops, plan_only=True) == DRIFT_EXIT
    assert f"create  kafka_topic s-{uid}: missing" in capsys.readouterr().out
    assert await run_setup(ops) == 0
    assert await run_setup(ops, plan_only=True) == 0
    # someone changes the DLQ's retention by hand, and sets a setting of their own
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        hand = {"retention.ms": "86400000", "compression.type": "zstd"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, kafka.dlq_topic, hand)])
    finally:
        await admin.close()
    # The broker answers the change before every broker describes it: wait until it does (a
    # clean-clone run planned "no drift" in between).
    deadline = time.monotonic() + 15
    while (await topic_settings(kafka, kafka.dlq_topic)).get("retention.ms") != "86400000":
        assert time.monotonic() < deadline, "the hand change never showed"
        await asyncio.sleep(0.2)
    capsys.readouterr()
    assert await run_setup(ops, plan_only=True) == DRIFT_EXIT
    out = capsys.readouterr().out
    assert f"update  kafka_topic s-{uid}.dlq: differs in retention.ms 86400000 -> -1" in out
    assert await run_setup(ops) == 0
    assert await topic_drift(kafka, kafka.topic, kafka.dlq_topic) == {
        kafka.topic: {},
        kafka.dlq_topic: {},
    }
    assert (await topic_settings(kafka, kafka.dlq_topic))["compression.type"] == "zstd"  # kept


async def test_an_s3_archive_is_made_where_the_node_has_repository_s3_else_refused(
    prefix, uid, monkeypatch, capsys
):
    """OpenSearch 3 (the stack's default) has repository-s3: setup makes the archive in the
    stack's bucket and the node verifies it. 2.19 has none (no registry serves it for 2.x):
    setup says so in one line."""
    from ingest.cli import UNREACHABLE_EXIT, main

    monkeypatch.setenv("INGEST_OPENSEARCH__INDEX_PREFIX", prefix)
    monkeypatch.setenv("INGEST_KAFKA__CREATE_TOPICS", "false")
    monkeypatch.setenv("INGEST_ARCHIVE_TYPE", "s3")
    monkeypatch.setenv("INGEST_ARCHIVE_REPOSITORY", f"s3-{uid}")
    # main() runs its own event loop: run it beside this test's
    code = await asyncio.to_thread(main, ["setup"])
    out, err = capsys.readouterr()
    assert f"create  snapshot_repository s3-{uid}: missing" in out
    if os.environ["INGEST_STACK_OPENSEARCH_VERSION"].startswith("2."):
        assert code == UNREACHABLE_EXIT
        assert "repository type [s3] does not exist" in err  # this node has no repository-s3
        return
    assert code == 0, err
    async with os_client() as client:
        try:
            got = await client.snapshot.get_repository(repository=f"s3-{uid}")
            assert got[f"s3-{uid}"]["type"] == "s3"
            assert got[f"s3-{uid}"]["settings"]["base_path"] == f"s3-{uid}"
            verified = await client.snapshot.verify_repository(repository=f"s3-{uid}")
            assert verified["nodes"]
        finally:
            await client.snapshot.delete_repository(repository=f"s3-{uid}")


async def test_setup_reads_the_json_from_resources_dir(prefix, tmp_path, capsys):
    import json
    import shutil

    from ingest.ops.resources import ROOT

    for folder in ("mappings", "index_templates", "ilm"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    edited = tmp_path / "mappings" / "falco-mappings.json"
    body = json.loads(edited.read_text())
    body["_meta"]["description"] = "edited in the platform team's own copy"
    edited.write_text(json.dumps(body))
    ops = ops_for(prefix).model_copy(update={"resources_dir": tmp_path})
    assert await run_setup(ops, plan_only=True) == DRIFT_EXIT
    assert f"update  component_template {prefix}-mappings" in capsys.readouterr().out
