"""The "Falco Overview" objects against the real OpenSearch: every visualization's and saved
search's request, as Dashboards would send it, run on the sample alerts, gives the buckets
and rows the alerts call for; the index pattern's field list is what Dashboards would read
from the node. (No Dashboards server runs here: the import itself is tested against the
API's recorded answers, tests/unit/test_dashboards_api.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.demo import landed
from ingest.normalize.document import Document, normalize
from ingest.ops.dashboards import load_objects
from tests.integration.conftest import os_client
from tests.integration.dashboards_requests import rows, search_request, visualization_request

pytestmark = pytest.mark.integration

# The sample alerts' day, as a time picker's "that whole day" would ask for it.
START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=1)
BUCKET_MS = 30 * 60 * 1000  # Dashboards' auto interval for one day: 30 minutes


def _documents(sample_lines: list[bytes]) -> list[tuple[Document, dict[str, Any]]]:
    out = []
    for line in sample_lines:
        doc = normalize(line, None, time.time_ns())
        assert isinstance(doc, Document), doc
        out.append((doc, json.loads(doc.body)))
    return out


async def _index(prefix: str, docs: list[tuple[Document, dict[str, Any]]]) -> None:
    lines = []
    for doc, _ in docs:
        lines.append(json.dumps({"create": {"_index": f"{prefix}-{doc.day}", "_id": doc.doc_id}}))
        lines.append(doc.body.decode().rstrip("\n"))
    async with os_client() as client:
        resp = await client.bulk(body="\n".join(lines) + "\n", refresh="true")
        assert not resp["errors"], resp


def _expected(bodies: list[dict[str, Any]], objects: dict[str, dict]) -> dict[str, Counter]:
    """What each visualization must show, counted from the documents themselves."""
    prefix = next(
        o["attributes"]["title"] for o in objects.values() if o["type"] == "index-pattern"
    )
    over_time: Counter = Counter()
    mitre: Counter = Counter()
    cf: Counter = Counter()
    for b in bodies:
        stamp = datetime.fromisoformat(b["@timestamp"][:26].rstrip("Z") + "+00:00")
        ms = int(stamp.timestamp() * 1000)
        over_time[(ms - ms % BUCKET_MS, b["falco_priority"])] += 1
        for tactic in set(b.get("falco_mitre_tactics", [])):
            for technique in set(b.get("falco_mitre_techniques", [])):
                mitre[(tactic, technique)] += 1
        place = b.get("@cf", {})
        if {"org", "space", "app"} <= set(place):
            cf[(place["org"], place["space"], place["app"])] += 1
    return {
        f"{prefix}-alerts-over-time": over_time,
        f"{prefix}-priorities": Counter((b["falco_priority"],) for b in bodies),
        f"{prefix}-top-rules": Counter((b["falco_rule"],) for b in bodies),
        f"{prefix}-top-hosts": Counter((b["falco_hostname"],) for b in bodies),
        f"{prefix}-mitre": mitre,
        f"{prefix}-cloud-foundry": cf,
    }


async def test_every_visualization_shows_what_the_alerts_hold(prefix, sample_lines):
    docs = _documents(sample_lines)
    await _index(prefix, docs)
    objects = {o["id"]: o for o in load_objects(prefix)}
    expected = _expected([body for _, body in docs], objects)
    visualizations = [o for o in objects.values() if o["type"] == "visualization"]
    assert {v["id"] for v in visualizations} == set(expected)  # a new one needs its check
    async with os_client() as client:
        for vis in visualizations:
            index, body = visualization_request(vis, objects, START, END)
            resp = await client.search(index=index, body=body)
            got = rows(resp["aggregations"])
            assert got == expected[vis["id"]], vis["id"]
            assert resp["hits"]["total"]["value"] == len(docs), vis["id"]
        # the two tables the demo prints are the dashboard's, bucket for bucket
        total, priorities, rules = await landed(client, prefix)
    assert total == len(docs)
    assert expected[f"{prefix}-priorities"] == Counter({(k,): v for k, v in priorities.items()})
    assert expected[f"{prefix}-top-rules"] == Counter({(k,): v for k, v in rules.items()})
    assert len(expected[f"{prefix}-cloud-foundry"]) >= 1  # the samples hold a CF app
    assert len(expected[f"{prefix}-mitre"]) >= 5


async def test_the_saved_searches_list_the_alerts_newest_first(prefix, sample_lines):
    docs = _documents(sample_lines)
    await _index(prefix, docs)
    objects = {o["id"]: o for o in load_objects(prefix)}
    newest_first = sorted(docs, key=lambda d: d[1]["@timestamp"], reverse=True)
    wanted = {
        f"{prefix}-events": [d.doc_id for d, _ in newest_first],
        f"{prefix}-critical": [d.doc_id for d, b in newest_first if b["falco_priority"] <= 2],
    }
    searches = [o for o in objects.values() if o["type"] == "search"]
    assert {s["id"] for s in searches} == set(wanted)
    async with os_client() as client:
        for search in searches:
            index, body = search_request(search, objects, START, END)
            resp = await client.search(index=index, body=body)
            assert [h["_id"] for h in resp["hits"]["hits"]] == wanted[search["id"]]
            # the columns the search shows are in every one of its documents
            for hit in resp["hits"]["hits"]:
                for column in search["attributes"]["columns"]:
                    assert column in hit["_source"], (search["id"], column)
    assert 0 < len(wanted[f"{prefix}-critical"]) < len(docs)


_OSD_TYPES = {
    "keyword": "string",
    "text": "string",
    "date": "date",
    "date_nanos": "date",
    "byte": "number",
    "short": "number",
    "integer": "number",
    "long": "number",
    "flat_object": "unknown",  # Dashboards 2.19 knows no flat_object (3.5 reads it as string)
    "_id": "string",
    "_index": "string",
}


async def test_the_index_patterns_fields_are_what_dashboards_reads_from_the_node(prefix):
    """Dashboards lists an index pattern's fields from _field_caps: objects left out, meta
    fields only those it shows (_id, _index, _source; _score and _type it adds itself)."""
    pattern = next(o for o in load_objects(prefix) if o["type"] == "index-pattern")
    async with os_client() as client:
        await client.indices.create(index=f"{prefix}-2026.11.20")
        caps = await client.field_caps(index=prefix, fields="*")
    from_node = {}
    for name, by_type in caps["fields"].items():
        ((es_type, cap),) = by_type.items()
        if es_type == "object" or (name.startswith("_") and name not in ("_id", "_index")):
            continue
        if name.endswith("."):
            # OpenSearch 2.19 also lists a flat_object's root as `name.` (3.x does not);
            # Dashboards would add it as a second field, unknown; the objects leave it out
            # (and setup's plan does not count it as drift)
            assert es_type == "flat_object", name
            continue
        from_node[name] = (_OSD_TYPES[es_type], [es_type], cap["searchable"], cap["aggregatable"])
    listed = {
        f["name"]: (f["type"], f["esTypes"], f["searchable"], f["aggregatable"])
        for f in json.loads(pattern["attributes"]["fields"])
        if f["name"] not in ("_source", "_score", "_type")
    }
    assert listed == from_node


async def test_setup_plans_and_imports_the_objects_beside_the_templates(
    prefix, capsys, monkeypatch
):
    """The real OpenSearch, and Dashboards' API in its recorded shapes (tests/unit)."""
    from ingest.config import OpsSettings, load
    from ingest.ops.setup import DRIFT_EXIT, run_setup
    from tests.unit.dashboards_fake import FakeDashboards

    monkeypatch.setenv("INGEST_OPENSEARCH__INDEX_PREFIX", prefix)
    monkeypatch.setenv("INGEST_KAFKA__CREATE_TOPICS", "false")
    async with FakeDashboards() as fake:
        monkeypatch.setenv("INGEST_DASHBOARDS__URL", fake.url)
        settings = load(OpsSettings)
        capsys.readouterr()
        assert await run_setup(settings, plan_only=True) == DRIFT_EXIT
        planned = capsys.readouterr().out
        assert f"create  saved_object dashboard {prefix}-overview: missing" in planned
        assert f"none    index_template {prefix}: in sync" in planned
        assert await run_setup(settings) == 0
        assert len(fake.objects) == len(load_objects(prefix))
        assert await run_setup(settings, plan_only=True) == 0
        assert capsys.readouterr().out.rstrip().endswith("no drift")
    # Dashboards gone: setup says so in one line, exit 3 (a service that did not answer)
    from ingest.cli import main

    assert await asyncio.to_thread(main, ["setup"]) == 3
    err = capsys.readouterr().err
    assert "Dashboards did not answer" in err and "INGEST_DASHBOARDS__URL" in err
