"""The fast path makes exactly the document the general path makes, or leaves the alert to it."""

import json

import orjson
from hypothesis import find, given, settings
from hypothesis import strategies as st

from ingest.normalize.document import Document, general, normalize
from ingest.normalize.fast import common_alert
from ingest.normalize.model import CF_KEYS, DEFAULT_LIMITS
from ingest.normalize.timestamps import parse_rfc3339

NOW = parse_rfc3339("2026-11-26T12:00:00Z")
AGENT = orjson.dumps({"host": "node-a", "version": "0.1.0", "input": "file:/var/log/falco.json"})
LINEAGES = [None, ("falco.events", 2, 41, None), ("falco.events", 0, 10**12, AGENT)]


def same(raw, lineage):
    """normalize() (fast path first) and general() agree on ``raw``."""
    out, expected = normalize(raw, lineage, NOW), general(raw, lineage, NOW)
    assert out == expected  # a Document's id, day and body bytes; a Rejection's reason
    if isinstance(expected, Document):
        assert out.body.endswith(b"}\n")


def test_every_sample_takes_the_fast_path_and_matches(sample_lines):
    for line in sample_lines:
        for lineage in LINEAGES:
            assert common_alert(line, lineage, NOW, DEFAULT_LIMITS) is not None, line[:80]
            same(line, lineage)


def test_cloud_foundry_fields_and_sidekick_uuid(sample_lines):
    alert = orjson.loads(sample_lines[0])
    alert["output_fields"] |= {"app": "web", "org_id": "o-1", "space": 5, "process_type": None}
    alert["uuid"] = "0b8a6c1e-6a32-4f5e-9a3e-2f1d6a7b8c9d"
    raw = orjson.dumps(alert)
    doc = common_alert(raw, LINEAGES[2], NOW, DEFAULT_LIMITS)
    assert doc is not None
    body = orjson.loads(doc.body)
    assert body["@cf"] == {"app": "web", "org_id": "o-1", "space": 5, "process_type": None}
    assert body["falco_sidekick_uuid"] == alert["uuid"]
    same(raw, LINEAGES[2])


def test_other_shapes_are_left_to_the_general_path(sample_lines):
    alert = orjson.loads(sample_lines[0])
    others = [
        alert | {"message": "m"},  # a key the fast path does not know
        alert | {"hostname": 7},  # a type it does not take
        alert | {"priority": "WARNING"},  # a spelling only the general path reads
        alert | {"output": "caf\u00e9"},  # non-ASCII: Raw does not check UTF-8
        alert | {"output_fields": None},
        alert | {"time": "2020-01-01T00:00:00.000000000Z"},  # too old: a rejection
        {k: v for k, v in alert.items() if k != "output"},
    ]
    for other in others:
        raw = orjson.dumps(other)
        assert common_alert(raw, None, NOW, DEFAULT_LIMITS) is None, other
        same(raw, None)


def test_escapes_in_output_give_the_id_of_the_text_they_stand_for(sample_lines):
    """The fast path keeps ``output``'s JSON as it came; escapes other encoders write (an
    escaped slash, a \\u escape of a plain letter) still give the id of the decoded text."""
    plain = orjson.loads(sample_lines[0]) | {"output": 'A/"quoted"'}
    escaped = orjson.dumps(plain).replace(b"A/", b"\\u0041\\/")
    assert escaped != orjson.dumps(plain) and orjson.loads(escaped) == plain
    doc = common_alert(escaped, None, NOW, DEFAULT_LIMITS)
    assert doc is not None and b"\\u0041\\/" in doc.body
    assert doc.doc_id == general(orjson.dumps(plain), None, NOW).doc_id
    same(escaped, None)


def test_a_lone_surrogate_in_output_is_rejected_not_raised(sample_lines):
    raw = orjson.dumps(orjson.loads(sample_lines[0]) | {"output": "x"})
    raw = raw.replace(b'"output":"x"', b'"output":"\\ud800"')
    assert common_alert(raw, None, NOW, DEFAULT_LIMITS) is None
    assert normalize(raw, None, NOW).reason == "invalid_json"


# Mostly what Falco writes (ASCII, every key of its own shape), sometimes anything.
text = st.text(max_size=20)
ascii_text = st.text(st.characters(max_codepoint=127), max_size=20)  # quotes, controls too
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ascii_text
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(ascii_text, kids, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(sorted(CF_KEYS) + ["proc.name", "evt.time", "fd.name"]) | ascii_text
times = st.sampled_from(
    [
        "2026-11-20T09:00:01.408091526Z",
        "2026-11-20T09:06:00.5Z",
        "2026-11-20T10:06:00.000000001+01:00",
        "2026-02-30T09:00:00.000000000Z",
        "2026-11-27T13:00:00.000000000Z",
        "2025-01-01T00:00:00.000000000Z",
    ]
)
MISSING = object()


def mostly(good, odd):
    """``good`` nine times in ten (one_of would pick each half the time)."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else good)


alerts = st.fixed_dictionaries(
    {
        "rule": mostly(st.sampled_from(["Terminal shell in container", "r"]), text | st.just(" ")),
        "priority": mostly(st.sampled_from(["Warning", "Debug", "Informational"]), text),
        "time": mostly(times, st.just(MISSING) | text),
        "output": mostly(ascii_text, st.just(MISSING) | text | st.integers(0, 99)),
        "output_fields": mostly(
            st.dictionaries(field_names, values, max_size=6),
            st.just(MISSING) | values | st.dictionaries(text, text, max_size=2),
        ),
        "source": mostly(st.just("syscall"), st.just(MISSING) | st.none() | text),
        "hostname": mostly(ascii_text, st.just(MISSING) | st.none() | st.integers(0, 99)),
        "tags": mostly(
            st.lists(ascii_text | st.sampled_from(["T1059", "mitre_execution"]), max_size=4),
            st.just(MISSING) | st.none() | st.lists(values, max_size=3),
        ),
        "uuid": mostly(st.just(MISSING), ascii_text),
        "extra": mostly(st.just(MISSING), values),
    }
).map(lambda a: {k: v for k, v in a.items() if v is not MISSING})


def test_the_generated_alerts_reach_the_fast_path():
    fast = find(alerts, lambda a: common_alert(orjson.dumps(a), None, NOW, DEFAULT_LIMITS))
    assert common_alert(orjson.dumps(fast), None, NOW, DEFAULT_LIMITS) is not None


@settings(max_examples=600, deadline=None)
@given(alerts, st.sampled_from(LINEAGES), st.booleans())
def test_fast_and_general_paths_agree(alert, lineage, spaced):
    # Falco writes compact JSON, Python's json module spaces and \u-escapes non-ASCII.
    raw = json.dumps(alert).encode() if spaced else orjson.dumps(alert)
    same(raw, lineage)


def test_the_hot_window_is_kept_to_the_nanosecond_at_both_ends(sample_lines):
    """The fast path checks the window on whole seconds and only the times in the border
    seconds exactly: each end is inclusive, one nanosecond past it is refused."""
    from ingest.normalize.timestamps import format_ns

    alert = orjson.loads(sample_lines[0])
    now = NOW + 123_456_789  # ends that fall inside a second
    oldest = now - DEFAULT_LIMITS.max_age_ns
    latest = now + DEFAULT_LIMITS.max_future_ns
    for ns, kept in [(oldest, True), (oldest - 1, False), (latest, True), (latest + 1, False)]:
        raw = orjson.dumps(alert | {"time": format_ns(ns)[0]})
        doc = common_alert(raw, None, now, DEFAULT_LIMITS)
        assert (doc is not None) is kept, format_ns(ns)[0]
        expected = general(raw, None, now)
        assert isinstance(expected, Document) is kept
        if doc is not None:
            assert doc.doc_id == expected.doc_id


def test_alerts_of_one_rule_and_host_that_differ_elsewhere_get_their_own_members(sample_lines):
    """What a rule on a host fixes is remembered by rule and host: an alert of the same
    pair with another priority, source or tags must not get the members of one before."""
    alert = orjson.loads(sample_lines[0])
    others = [
        alert | {"priority": "Critical"},
        alert | {"source": "k8s_audit"},
        alert | {"tags": ["T1059", "mitre_execution"]},
        {k: v for k, v in alert.items() if k != "tags"},
    ]
    for variant in [alert, *(v for other in others for v in (other, alert))]:
        raw = orjson.dumps(variant)
        doc = common_alert(raw, None, NOW, DEFAULT_LIMITS)
        expected = general(raw, None, NOW)
        assert doc is not None and isinstance(expected, Document)
        assert doc == expected


def test_what_is_remembered_stays_within_its_capacity(sample_lines, monkeypatch):
    from ingest.normalize import fast

    seen = fast._Seen(capacity=5)
    monkeypatch.setattr(fast, "_SEEN", seen)
    monkeypatch.setattr(fast, "_BY_RULE", seen.by_rule)
    alert = orjson.loads(sample_lines[0])
    for i in range(12):
        raw = orjson.dumps(alert | {"hostname": f"host-{i}"})
        doc = common_alert(raw, None, NOW, DEFAULT_LIMITS)
        assert doc is not None and doc.doc_id == general(raw, None, NOW).doc_id
        assert seen.size == sum(map(len, seen.by_rule.values())) <= 5
    assert seen.size == 2  # started again at the 6th host and the 11th
