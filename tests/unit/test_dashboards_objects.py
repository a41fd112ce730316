"""dashboards/*.ndjson: saved objects as OpenSearch Dashboards 2.19 exports them, whole
(every reference resolves), on fields the mapping has with the types it gives them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.normalize.model import PRIORITIES
from ingest.ops.dashboards import load_objects
from ingest.ops.resources import ROOT

# The types Dashboards 2.19 imports, and the migration version its export stamps on each.
MIGRATIONS = {
    "index-pattern": "7.6.0",
    "search": "7.9.3",
    "visualization": "7.10.0",
    "dashboard": "7.9.3",
}
# What Dashboards calls each mapping type (flat_object it does not know before 3.5)
OSD_TYPES = {
    "keyword": "string",
    "text": "string",
    "date_nanos": "date",
    "byte": "number",
    "integer": "number",
    "long": "number",
    "flat_object": "unknown",
}


def _mapping_fields() -> dict[str, dict[str, Any]]:
    props = json.loads((ROOT / "mappings" / "falco-mappings.json").read_text())
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], base: str) -> None:
        for name, spec in node.items():
            if "properties" in spec:
                walk(spec["properties"], f"{base}{name}.")
                continue
            out[base + name] = spec
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{base}{name}.{sub}"] = sub_spec

    walk(props["template"]["mappings"]["properties"], "")
    return out


MAPPING = _mapping_fields()


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load_objects("falco")


def _source(obj: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    return loaded


def test_the_file_is_an_export_every_line_a_known_object_and_a_summary_last():
    files = sorted((ROOT / "dashboards").glob("*.ndjson"))
    assert files
    for file in files:
        lines = [json.loads(line) for line in file.read_text().splitlines()]
        *objs, summary = lines
        assert summary == {
            "exportedCount": len(objs),
            "missingRefCount": 0,
            "missingReferences": [],
        }
        for obj in objs:
            assert set(obj) == {"attributes", "id", "migrationVersion", "references", "type"}
            assert obj["migrationVersion"] == {obj["type"]: MIGRATIONS[obj["type"]]}
            assert obj["id"].startswith("${prefix}-"), obj["id"]
            assert obj["attributes"]["title"], obj["id"]


def test_every_reference_resolves_and_every_ref_name_is_declared(objects):
    by_key = {(o["type"], o["id"]) for o in objects}
    assert len(by_key) == len(objects)  # ids unique per type
    for obj in objects:
        names = {r["name"] for r in obj["references"]}
        assert len(names) == len(obj["references"]), obj["id"]
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, (obj["id"], ref)
        attrs = obj["attributes"]
        used = set()
        if "kibanaSavedObjectMeta" in attrs and "indexRefName" in _source(obj):
            used.add(_source(obj)["indexRefName"])
        if "savedSearchRefName" in attrs:
            used.add(attrs["savedSearchRefName"])
        if obj["type"] == "dashboard":
            used |= {p["panelRefName"] for p in json.loads(attrs["panelsJSON"])}
        assert used == names, obj["id"]


def test_the_index_pattern_is_the_read_alias_its_fields_the_mappings(objects):
    (pattern,) = [o for o in objects if o["type"] == "index-pattern"]
    attrs = pattern["attributes"]
    assert attrs["title"] == "falco"  # the read alias the index template gives every day
    assert attrs["timeFieldName"] == "@timestamp"
    fields = {f["name"]: f for f in json.loads(attrs["fields"])}
    listed = {n: f for n, f in fields.items() if not n.startswith("_")}
    assert set(listed) == set(MAPPING)
    for name, field in listed.items():
        es_type = MAPPING[name]["type"]
        assert field["esTypes"] == [es_type], name
        assert field["type"] == OSD_TYPES[es_type], name
        assert field["aggregatable"] == (es_type not in ("text", "flat_object")), name
        assert field["searchable"] is True
    assert fields["@message.keyword"]["subType"] == {"multi": {"parent": "@message"}}


def test_falco_priority_is_shown_by_name(objects):
    (pattern,) = [o for o in objects if o["type"] == "index-pattern"]
    formats = json.loads(pattern["attributes"]["fieldFormatMap"])
    lookup = formats["falco_priority"]
    assert lookup["id"] == "static_lookup"
    shown = {int(e["key"]): e["value"] for e in lookup["params"]["lookupEntries"]}
    assert shown == {number: name for number, name in set(PRIORITIES.values()) if name != "info"}
    assert shown[0] == "Emergency" and shown[7] == "Debug"


def _aggregated_fields(vis: dict[str, Any]) -> list[str]:
    state = json.loads(vis["attributes"]["visState"])
    assert state["title"] == vis["attributes"]["title"]
    return [a["params"]["field"] for a in state["aggs"] if "field" in a["params"]]


def test_visualizations_aggregate_fields_the_mapping_can_aggregate(objects):
    visualizations = [o for o in objects if o["type"] == "visualization"]
    assert len(visualizations) >= 6
    for vis in visualizations:
        fields = _aggregated_fields(vis)
        assert fields, vis["id"]
        for field in fields:
            assert MAPPING[field]["type"] not in ("text", "flat_object"), (vis["id"], field)


def test_the_saved_searches_filter_falco_and_show_columns_of_the_mapping(objects):
    searches = {o["id"]: o for o in objects if o["type"] == "search"}
    events = searches["falco-events"]
    assert events["attributes"]["title"] == "Falco events"
    assert _source(events)["query"] == {"query": "@type:falco", "language": "kuery"}
    for search in searches.values():
        assert "@type:falco" in _source(search)["query"]["query"]
        assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
        for column in search["attributes"]["columns"]:
            assert column in MAPPING, (search["id"], column)
    assert events["attributes"]["columns"] == [
        "falco_priority",
        "falco_rule",
        "falco_hostname",
        "@message",
    ]


def test_the_dashboard_lays_out_every_visualization_and_says_what_it_is_for(objects):
    (board,) = [o for o in objects if o["type"] == "dashboard"]
    attrs = board["attributes"]
    assert attrs["title"] == "Falco Overview"
    assert board["id"] == "falco-overview"
    for word in ("Falco", "priority", "rules", "hosts", "MITRE", "Cloud Foundry", "Critical"):
        assert word in attrs["description"], word
    shown = {r["id"] for r in board["references"]}
    assert {o["id"] for o in objects if o["type"] == "visualization"} <= shown
    assert "falco-critical" in shown
    cells = set()
    for panel in json.loads(attrs["panelsJSON"]):
        grid = panel["gridData"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 48  # Dashboards' grid is 48 wide
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel  # no two panels overlap
                cells.add((x, y))


def test_two_prefixes_have_objects_of_their_own(objects):
    other = load_objects("team-b")
    assert not {o["id"] for o in objects} & {o["id"] for o in other}
    (pattern,) = [o for o in other if o["type"] == "index-pattern"]
    assert pattern["attributes"]["title"] == "team-b"
    (board,) = [o for o in other if o["type"] == "dashboard"]
    assert board["attributes"]["title"] == "Falco Overview (team-b)"
    assert board["id"] == "team-b-overview"
    for obj in other:
        assert "falco-" not in json.dumps(obj["references"]), obj["id"]
        assert "${" not in json.dumps(obj), obj["id"]


def test_objects_come_from_resources_dir_when_it_is_set(tmp_path: Path):
    (tmp_path / "dashboards").mkdir()
    line = {"type": "index-pattern", "id": "${prefix}-x", "attributes": {"title": "${prefix}"}}
    (tmp_path / "dashboards" / "mine.ndjson").write_text(json.dumps(line) + "\n\n")
    assert load_objects("p", tmp_path) == [
        {"type": "index-pattern", "id": "p-x", "attributes": {"title": "p"}}
    ]
