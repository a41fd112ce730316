"""setup's side of Dashboards' saved objects API, against answers in the recorded shapes:
what it plans, what it sends, how it reads refusals. No Dashboards server runs here."""

from __future__ import annotations

import base64
import json

import pytest

from ingest.config import OpsSettings, load
from ingest.errors import AccessRefused, DashboardsFailed
from ingest.ops.dashboards import Dashboards, drift, import_errors, load_objects, overview_url
from ingest.ops.setup import apply_dashboards, plan_dashboards
from tests.unit.dashboards_fake import RECORDED, FakeDashboards


def ops(url: str, **dashboards: object) -> OpsSettings:
    base = load(OpsSettings)
    return base.model_copy(
        update={"dashboards": base.dashboards.model_copy(update={"url": url, **dashboards})}
    )


async def test_a_fresh_dashboards_gets_every_object_in_one_import_then_is_in_sync():
    async with FakeDashboards() as fake:
        settings = ops(fake.url)
        plan = await plan_dashboards(settings)
        objects = load_objects("falco")
        assert [c.action for c, _ in plan] == ["create"] * len(objects)
        assert plan[0][0].resource == "saved_object index-pattern falco-alerts"
        assert await apply_dashboards(settings, plan) == []
        (imported,) = [r for r in fake.requests if r["path"].endswith("_import")]
        assert imported["query"] == {"overwrite": "true"}
        assert imported["headers"]["osd-xsrf"] == "true"
        assert "securitytenant" not in imported["headers"]
        assert imported["filename"].endswith(".ndjson")
        assert imported["content_type"] == "application/ndjson"
        assert imported["objects"] == objects
        again = await plan_dashboards(settings)
    assert [c.action for c, _ in again] == ["none"] * len(objects)
    assert await apply_dashboards(settings, again) == []  # nothing differs: no import
    assert len([r for r in fake.requests if r["path"].endswith("_import")]) == 1


async def test_the_plan_names_what_changed_and_ignores_what_dashboards_keeps_itself():
    async with FakeDashboards() as fake:
        settings = ops(fake.url)
        await apply_dashboards(settings, await plan_dashboards(settings))
        vis = fake.objects[("visualization", "falco-top-rules")]
        state = json.loads(vis["attributes"]["visState"])
        state["aggs"][1]["params"]["size"] = 5  # someone edited it in Dashboards
        vis["attributes"]["visState"] = json.dumps(state, indent=2)
        pattern = fake.objects[("index-pattern", "falco-alerts")]["attributes"]
        fields = json.loads(pattern["fields"])
        fields[3]["count"] = 12  # picked 12 times in Discover
        fields.append({"name": "output_fields.", "type": "unknown", "esTypes": ["flat_object"]})
        pattern["fields"] = json.dumps(fields[::-1])  # refreshed: another order, one more
        pattern["typeMeta"] = "{}"  # an attribute Dashboards adds
        plan = {c.resource: c for c, _ in await plan_dashboards(settings)}
    assert plan["saved_object visualization falco-top-rules"].action == "update"
    assert plan["saved_object visualization falco-top-rules"].detail == "differs in visState"
    assert plan["saved_object index-pattern falco-alerts"].action == "none"
    assert [c.action for c in plan.values()].count("none") == len(plan) - 1


def test_a_field_of_ours_missing_or_retyped_is_drift():
    (pattern,) = [o for o in load_objects("falco") if o["type"] == "index-pattern"]
    held = json.loads(json.dumps(pattern))
    fields = json.loads(held["attributes"]["fields"])
    held["attributes"]["fields"] = json.dumps(fields[1:])
    assert drift(pattern, held) == "differs in fields"
    fields[0]["type"] = "number"
    held["attributes"]["fields"] = json.dumps(fields)
    assert drift(pattern, held) == "differs in fields"
    held["references"] = [{"name": "x", "type": "search", "id": "y"}]
    assert drift(pattern, held) == "differs in fields, references"


async def test_the_tenant_and_the_opensearch_credentials_go_with_every_request(monkeypatch):
    monkeypatch.setenv("INGEST_OPENSEARCH__USERNAME", "falco-setup")
    monkeypatch.setenv("INGEST_OPENSEARCH__PASSWORD", "s3cret")
    async with FakeDashboards(password="s3cret") as fake:
        settings = ops(fake.url + "/", tenant="global")
        await apply_dashboards(settings, await plan_dashboards(settings))
    assert {r["path"] for r in fake.requests} == {
        "/api/saved_objects/_bulk_get",
        "/api/saved_objects/_import",
    }
    for request in fake.requests:
        assert request["headers"]["securitytenant"] == "global"
        scheme, token = request["headers"]["Authorization"].split()
        assert scheme == "Basic" and base64.b64decode(token) == b"falco-setup:s3cret"


async def test_refused_credentials_stop_setup_naming_the_settings():
    async with FakeDashboards(password="s3cret") as fake:
        with pytest.raises(AccessRefused, match="HTTP 401.*INGEST_OPENSEARCH__USERNAME"):
            await plan_dashboards(ops(fake.url))


async def test_a_dashboards_that_is_not_there_or_not_dashboards_is_one_line():
    async with FakeDashboards() as fake:
        url = fake.url
    with pytest.raises(DashboardsFailed, match="did not answer at .*INGEST_DASHBOARDS__URL"):
        await plan_dashboards(ops(url))
    async with FakeDashboards() as fake:  # a path Dashboards does not serve: 404 page
        with pytest.raises(DashboardsFailed, match="HTTP 404 while reading the saved objects"):
            await plan_dashboards(ops(fake.url + "/not-dashboards"))


def test_refused_objects_are_named_from_the_imports_answer():
    answer = RECORDED["import"]["answers"]["missing_references"]["body"]
    assert import_errors(answer) == [
        "refused saved_object visualization my-vis: missing_references (index-pattern my-pattern)"
    ]
    assert import_errors(RECORDED["import"]["answers"]["overwritten"]["body"]) == []
    assert import_errors({"success": False, "successCount": 0}) == [
        'refused saved_objects: Dashboards answered {"success": false, "successCount": 0}'
    ]


async def test_an_import_dashboards_refuses_is_reported_object_by_object():
    async with FakeDashboards() as fake:
        settings = ops(fake.url)
        plan = await plan_dashboards(settings)
        without_pattern = [(c, o) for c, o in plan if o["type"] != "index-pattern"]
        lines = await apply_dashboards(settings, without_pattern)
    missing = "missing_references (index-pattern falco-alerts)"
    assert lines == [
        f"refused saved_object search falco-events: {missing}",
        f"refused saved_object search falco-critical: {missing}",
    ]
    assert fake.objects == {}  # Dashboards creates nothing when a reference is missing


async def test_without_the_xsrf_header_dashboards_refuses(monkeypatch):
    async with FakeDashboards() as fake:
        async with Dashboards(ops(fake.url)) as dashboards:
            assert dashboards.session is not None
            dashboards.session.headers.pop("osd-xsrf")
            with pytest.raises(DashboardsFailed, match="HTTP 400.*osd-xsrf"):
                await dashboards.current(load_objects("falco"))


def test_the_dashboards_url_is_checked_and_gives_the_overview_link(monkeypatch):
    monkeypatch.setenv("INGEST_DASHBOARDS__URL", "dashboards:5601")
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dashboards.url \(INGEST_DASHBOARDS__URL\)"):
        load(OpsSettings)
    monkeypatch.setenv("INGEST_DASHBOARDS__URL", "https://osd.example.org/dashboards/")
    monkeypatch.setenv("INGEST_OPENSEARCH__INDEX_PREFIX", "team-b")
    assert overview_url(load(OpsSettings)) == (
        "https://osd.example.org/dashboards/app/dashboards#/view/team-b-overview"
    )
    monkeypatch.delenv("INGEST_DASHBOARDS__URL")
    assert overview_url(load(OpsSettings)) is None
