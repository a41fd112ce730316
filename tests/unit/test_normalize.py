import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.normalize.document import (
    Document,
    Limits,
    Rejection,
    general,
    normalize,
)
from ingest.normalize.timestamps import NS, format_ns, parse_rfc3339

NOW = parse_rfc3339("2026-11-26T12:00:00Z")
LINEAGE = (
    "falco.events",
    2,
    41,
    orjson.dumps({"host": "node-a", "version": "0.1.0", "input": "file:/var/log/falco.json"}),
)


def alert(**over):
    base = {
        "time": "2026-11-20T09:00:01.408091526Z",
        "rule": "Read sensitive file untrusted",
        "priority": "Warning",
        "output": "2026-11-20T09:00:01.408091526+0000: Warning Sensitive file opened",
        "output_fields": {"proc.name": "cat", "evt.time.iso8601": 1795165201408091526},
        "source": "syscall",
        "hostname": "diego-cell-11",
        "tags": ["T1555", "container", "mitre_credential_access"],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def doc_of(obj, lineage=LINEAGE, now=NOW):
    out = normalize(orjson.dumps(obj), lineage, now)
    assert isinstance(out, Document), out
    return out, orjson.loads(out.body)


def test_every_sample_becomes_a_document(sample_lines):
    priorities = set()
    for line in sample_lines:
        out = normalize(line, LINEAGE, NOW)
        assert isinstance(out, Document), (line[:80], out)
        body = orjson.loads(out.body)
        raw = orjson.loads(line)
        assert body["@type"] == "falco"
        assert body["falco_rule"] == raw["rule"]
        assert body["@message"] == raw["output"]
        assert body["falco_hostname"] == raw["hostname"]
        assert body["output_fields"] == raw["output_fields"]
        assert out.day == body["@timestamp"][:10].replace("-", ".")
        priorities.add(body["falco_priority"])
    assert priorities == set(range(8))


def test_nanoseconds_kept_and_index_day():
    out, body = doc_of(alert())
    assert body["@timestamp"] == "2026-11-20T09:00:01.408091526Z"
    assert out.day == "2026.11.20"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T09:06:00.5Z", "2026-11-20T09:06:00.500000000Z"),
        ("2026-11-20T09:06:00Z", "2026-11-20T09:06:00.000000000Z"),
        ("2026-11-20T09:06:00.4080915Z", "2026-11-20T09:06:00.408091500Z"),
        ("2026-11-20T10:06:00.000000001+01:00", "2026-11-20T09:06:00.000000001Z"),
        ("2026-11-20T09:06:00.1234567891Z", "2026-11-20T09:06:00.123456789Z"),
        ("2026-11-20 09:06:00.500000000Z", "2026-11-20T09:06:00.500000000Z"),
        ("2026-11-20t09:06:00.500000000z", "2026-11-20T09:06:00.500000000Z"),
    ],
)
def test_any_fraction_length_and_offsets(text, expected):
    _, body = doc_of(alert(time=text))
    assert body["@timestamp"] == expected


def test_sidekick_trimmed_time_and_uuid_give_the_same_id():
    direct, _ = doc_of(alert(time="2026-11-20T09:06:00.500000000Z"))
    via_sidekick, body = doc_of(
        alert(time="2026-11-20T09:06:00.5Z", uuid="3c4f2b9e-8a1d-4b6e-9f0a-1c2d3e4f5a6b")
    )
    other_uuid, _ = doc_of(alert(time="2026-11-20T09:06:00.5Z", uuid="another"))
    assert direct.doc_id == via_sidekick.doc_id == other_uuid.doc_id
    assert body["falco_sidekick_uuid"] == "3c4f2b9e-8a1d-4b6e-9f0a-1c2d3e4f5a6b"


def test_id_ignores_kafka_coordinates_but_not_content():
    a, _ = doc_of(alert(), ("t", 0, 1, None))
    b, _ = doc_of(alert(), ("t", 5, 999, None))
    c, _ = doc_of(alert(rule="Other rule"))
    assert a.doc_id == b.doc_id != c.doc_id


@pytest.mark.parametrize(
    ("name", "number", "canonical"),
    [
        ("Emergency", 0, "Emergency"),
        ("ALERT", 1, "Alert"),
        ("critical", 2, "Critical"),
        ("Error", 3, "Error"),
        ("warning", 4, "Warning"),
        ("Notice", 5, "Notice"),
        ("Informational", 6, "Informational"),
        ("info", 6, "Informational"),
        ("DEBUG", 7, "Debug"),
    ],
)
def test_priorities_any_case(name, number, canonical):
    _, body = doc_of(alert(priority=name))
    assert body["falco_priority"] == number
    assert body["falco_priority_name"] == canonical


def test_time_falls_back_to_evt_time_ns_without_float_loss():
    _, body = doc_of(alert(time=..., output_fields={"evt.time": 1795165207005000123}))
    assert body["@timestamp"] == "2026-11-20T09:00:07.005000123Z"
    _, body = doc_of(alert(time="garbage", output_fields={"evt.time.iso8601": 1795165201408091526}))
    assert body["@timestamp"] == "2026-11-20T09:00:01.408091526Z"


def test_without_output_uses_message_then_synthesises():
    _, body = doc_of(alert(output=..., message="Sensitive file opened (file=/etc/shadow)"))
    assert body["@message"] == "Sensitive file opened (file=/etc/shadow)"
    _, body = doc_of(alert(output=..., output_fields={"fd.name": "/etc/shadow"}))
    assert body["@message"].startswith("Warning Read sensitive file untrusted")
    assert "fd.name=/etc/shadow" in body["@message"]


def test_without_output_fields():
    _, body = doc_of(alert(output_fields=...))
    assert body["output_fields"] == {}


def test_internal_drop_alert():
    raw = {
        "hostname": "h",
        "output": "09:05:00.000000000: Debug Falco internal: syscall event drop.",
        "priority": "Debug",
        "rule": "Falco internal: syscall event drop",
        "source": "internal",
        "time": "2026-11-20T09:05:00.000000000Z",
        "output_fields": {"n_drops": "17", "ebpf_enabled": "1"},
    }
    _, body = doc_of(raw)
    assert body["falco_priority"] == 7
    assert body["falco_source"] == "internal"
    assert "falco_tags" not in body
    assert body["output_fields"]["n_drops"] == "17"


def test_mitre_and_cloud_foundry_fields():
    fields = {"app": "billing-api", "org": "gsa-ops", "space": "prod", "app_instance": 2, "x": 1}
    _, body = doc_of(alert(output_fields=fields, tags=["T1547.006", "T1059", "mitre_persistence"]))
    assert body["falco_mitre_techniques"] == ["T1547.006", "T1059"]
    assert body["falco_mitre_tactics"] == ["persistence"]
    assert body["@cf"] == {
        "app": "billing-api",
        "org": "gsa-ops",
        "space": "prod",
        "app_instance": 2,
    }
    assert body["output_fields"] == fields  # nothing moved out


def test_lineage_recorded():
    _, body = doc_of(alert())
    ing = body["@ingest"]
    assert (ing["topic"], ing["partition"], ing["offset"]) == ("falco.events", 2, 41)
    assert ing["agent"] == {
        "host": "node-a",
        "version": "0.1.0",
        "input": "file:/var/log/falco.json",
    }
    assert ing["time"] == format_ns(NOW)[0]


def test_unknown_top_level_keys_are_kept():
    _, body = doc_of(alert(extra_key={"a": 1}))
    assert body["falco_extra"] == {"extra_key": {"a": 1}}


def test_huge_field_values_are_shortened_and_named():
    _, body = doc_of(alert(output_fields={"proc.cmdline": "a" * 100_000, "ok": "b"}))
    assert len(body["output_fields"]["proc.cmdline"].encode()) <= 16_384
    assert body["falco_truncated_fields"] == ["proc.cmdline"]
    assert body["output_fields"]["ok"] == "b"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"941 not json {", "invalid_json"),  # a number first: still no JSON
        (b'"text" and more', "invalid_json"),
        (b"[1,2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (orjson.dumps(alert(rule=...)), "missing_rule"),
        (orjson.dumps(alert(rule="  ")), "missing_rule"),
        (orjson.dumps(alert(priority="Severe")), "bad_priority"),
        (orjson.dumps(alert(priority=3)), "bad_priority"),
        (orjson.dumps(alert(time=..., output_fields={})), "no_timestamp"),
        (orjson.dumps(alert(output_fields=[1])), "bad_output_fields"),
        (orjson.dumps(alert(time="1969-12-31T23:59:59Z")), "time_out_of_range"),
        (orjson.dumps(alert(time="2024-01-01T00:00:00Z")), "too_old"),
        (orjson.dumps(alert(time="2027-06-01T00:00:00Z")), "too_far_in_future"),
    ],
)
def test_rejections_are_typed(raw, reason):
    out = normalize(raw, LINEAGE, NOW)
    assert isinstance(out, Rejection)
    assert out.reason == reason
    assert out.detail


def test_limits_are_settings():
    raw = orjson.dumps(alert(time="2026-11-01T00:00:00Z"))
    assert isinstance(normalize(raw, None, NOW, Limits(max_age_ns=7 * 86_400 * NS)), Rejection)
    assert isinstance(normalize(raw, None, NOW), Document)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    assert isinstance(normalize(data, LINEAGE, NOW), Document | Rejection)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "time",
                "rule",
                "priority",
                "output",
                "output_fields",
                "tags",
                "message",
                "hostname",
                "source",
                "uuid",
                "x",
            ]
        ),
        json_values,
    )
)
def test_arbitrary_alert_shapes_never_raise(obj):
    out = normalize(orjson.dumps(obj), LINEAGE, NOW)
    assert isinstance(out, Document | Rejection)
    if isinstance(out, Document):
        assert orjson.loads(out.body)["@type"] == "falco"


def test_deep_nesting_is_a_rejection_not_a_crash():
    deep = (
        b'{"rule":"r","priority":"Debug","time":"2026-11-20T09:00:00Z","output_fields":{"a":'
        + b"[" * 300
        + b"]" * 300
        + b"}}"
    )
    assert isinstance(normalize(deep, None, NOW), Document | Rejection)


# The ids falco-ingest 0.1 gave the sample alerts. Stored documents carry them: an alert
# replayed after an upgrade (uncommitted records, a DLQ replay, a backfill) is stored once
# only while every release derives the same id from the same alert.
RELEASED_IDS = [
    "ea1074bf668f1ce54a78455d695cdef1",
    "2fb5f08589b076a21b42e202fdd3a4f3",
    "5d5dc8f5e545f925e6cdae99900adbd9",
    "f1a1895930374b526fd735e3d60062ad",
    "c72abdfdd92098d15d6d06f51f92342a",
    "ccabdd4044461201a6beba91469901f0",
    "fbc350d928c803d270ace5972ffd591c",
    "b0fb5042a9e89b91aef4228e7923678e",
    "dd008368a206d62554ca5fd10b5497f5",
    "105f22cad4aea0795999024f8b072094",
]


def test_ids_are_those_of_earlier_releases(sample_lines):
    assert len(sample_lines) == len(RELEASED_IDS)
    for line, released in zip(sample_lines, RELEASED_IDS, strict=True):
        for lineage in (None, LINEAGE):
            assert normalize(line, lineage, NOW).doc_id == released, line[:60]
            assert general(line, lineage, NOW).doc_id == released, line[:60]
