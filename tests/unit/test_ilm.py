"""The ISM policy in ilm/ is reviewed JSON: check its shape and the retention it encodes.
(Applying it needs the index-management plugin, which the local stack cannot get: see README.)"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(**values: str) -> dict:
    text = (ROOT / "ilm" / "falco-retention.json").read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text, "every placeholder is filled"
    return json.loads(text)["policy"]


def test_hot_then_snapshot_then_delete_only_after_the_snapshot():
    policy = render(
        hot_age="367d",
        hot_days="365",
        archive_months="30",
        retry_delay="10m",
        repository="falco-archive",
        prefix="falco",
    )
    states = {s["name"]: s for s in policy["states"]}
    assert policy["default_state"] == "hot"
    assert states["hot"]["transitions"] == [
        {"state_name": "archive", "conditions": {"min_index_age": "367d"}}
    ]
    assert "at least 365 days" in policy["description"] and "30 months" in policy["description"]
    snapshot = [a for a in states["archive"]["actions"] if "snapshot" in a]
    assert snapshot and snapshot[0]["snapshot"]["repository"] == "falco-archive"
    assert snapshot[0]["retry"]["count"] >= 1
    # delete is reachable only through archive, whose only action is the snapshot
    into_delete = [
        n for n, s in states.items() for t in s["transitions"] if t["state_name"] == "delete"
    ]
    assert into_delete == ["archive"]
    assert policy["ism_template"][0]["index_patterns"] == ["falco-*"]
    for s in states.values():
        for t in s["transitions"]:
            assert t["state_name"] in states
