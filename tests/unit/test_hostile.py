"""What other producers send and what breaks parsers: both normalisers make the same bytes,
never raise, and every document is one NDJSON line.

The alerts are written by a JSON writer of this test (not orjson or json), so that the
bytes can hold what those never write: white space anywhere, numbers beyond a double,
escapes of every kind, keys twice, nesting past any decoder's limit.
"""

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.normalize.document import Document, Rejection, general, normalize
from ingest.normalize.fast import common_alert
from ingest.normalize.model import CF_KEYS, DEFAULT_LIMITS
from ingest.normalize.timestamps import parse_rfc3339
from ingest.sink.bulk import OpenSearchSink

NOW = parse_rfc3339("2026-11-26T12:00:00Z")
AGENT = orjson.dumps({"host": "node-a", "version": "0.1.0", "input": "http://0.0.0.0:2801"})
LINEAGES = [None, ("falco.events", 3, 7, AGENT)]


class Number:
    """A JSON number spelled as given (``1e400``, 30 digits, ``-0``, ``1E5``)."""

    def __init__(self, spelling: str) -> None:
        self.spelling = spelling


class Deep:
    """A value nested ``depth`` lists deep."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


class Pairs:
    """An object written from its pairs: a key may come twice."""

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        self.pairs = pairs


def write(value: object, draw) -> bytes:
    """``value`` as JSON, with white space and escapes that ``draw`` picks."""
    space = draw(WHITE)
    if isinstance(value, Number):
        return value.spelling.encode()
    if isinstance(value, Deep):
        return b"[" * value.depth + b"]" * value.depth
    if value is None or isinstance(value, bool):
        return orjson.dumps(value)
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return string(value, draw)
    if isinstance(value, list):
        items = (space + b"," + draw(WHITE)).join(write(v, draw) for v in value)
        return b"[" + space + items + draw(WHITE) + b"]"
    pairs = value.pairs if isinstance(value, Pairs) else list(value.items())
    members = (draw(WHITE) + b"," + space).join(
        string(k, draw) + draw(WHITE) + b":" + draw(WHITE) + write(v, draw) for k, v in pairs
    )
    return b"{" + space + members + draw(WHITE) + b"}"


def string(text: str, draw) -> bytes:
    """A JSON string of ``text``: escaped as orjson does, or with \\u escapes for every
    non-ASCII character (surrogate pairs), escaped slashes and \\u escapes of letters."""
    style = draw(st.sampled_from(["plain", "ascii", "ascii", "slashes", "letters"]))
    out = orjson.dumps(text)
    if style == "ascii":
        out = "".join(
            c if ord(c) < 128 else "".join(f"\\u{u:04x}" for u in utf16(c)) for c in out.decode()
        ).encode()
    elif style == "slashes":
        out = out.replace(b"/", b"\\/")
    elif style == "letters":
        out = out.replace(b"a", b"\\u0061")
    return out


def utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


WHITE = st.sampled_from([b"", b"", b"", b"", b" ", b"\n  ", b"\t", b"\r\n"])
NUMBERS = st.sampled_from(
    ["1e400", "-1e400", "123456789012345678901234567890", "-0", "1E5", "1.0e+2", "0.1", "7"]
).map(Number)
TEXT = st.text(max_size=12) | st.sampled_from(["\x00", "\U0001f600", "a/b", "None", "\x1f"])
DEEP = st.sampled_from([3, 200, 900, 1200]).map(Deep)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | st.integers(-(2**70), 2**70)
VALUES = st.recursive(
    SCALARS | DEEP,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
    max_leaves=6,
)
FIELD_NAMES = st.sampled_from(sorted(CF_KEYS) + ["proc.name", "evt.time", "fd.name"]) | TEXT


@st.composite
def field_objects(draw):
    pairs = draw(st.lists(st.tuples(FIELD_NAMES, VALUES), max_size=5))
    if pairs and draw(st.booleans()):
        pairs.append((pairs[0][0], draw(VALUES)))  # a key twice
    return Pairs(pairs)


TIMES = st.sampled_from(
    ["2026-11-20T09:00:01.408091526Z", "2026-11-20T09:06:00.5Z", "2026-11-20T10:06:00+01:00"]
)
ASCII = st.text(st.characters(max_codepoint=127), max_size=12)
# What Falco and Falcosidekick write, with the odd spellings a producer may choose.
FALCO = {
    "rule": st.sampled_from(["Terminal shell in container", "None", "r/x"]),
    "priority": st.sampled_from(["Warning", "Debug", "critical"]),
    "time": TIMES,
    "output": ASCII | TEXT,
    "output_fields": field_objects(),
    "source": st.sampled_from(["syscall", "None"]),
    "hostname": st.sampled_from(["node-1", "None", "n\x1fx"]),
    "tags": st.lists(ASCII | st.sampled_from(["T1059", "mitre_execution"]), max_size=3),
    "uuid": ASCII,
}


@st.composite
def hostile_alerts(draw):
    """A Falco alert in which up to three keys are missing or hold anything, maybe with
    keys Falco does not write, maybe with a key twice; written with white space and
    escapes anywhere."""
    alert = {key: draw(values) for key, values in FALCO.items()}
    for key in draw(st.sets(st.sampled_from(sorted(FALCO)), max_size=3)):
        if draw(st.booleans()):
            del alert[key]
        else:
            alert[key] = draw(VALUES)
    if draw(st.integers(0, 4)) == 0:
        alert[draw(st.sampled_from(["message", "extra"]))] = draw(VALUES)
    pairs = list(alert.items())
    if draw(st.integers(0, 9)) == 0:
        pairs.append(pairs[0])  # a top-level key twice
    return write(Pairs(pairs), draw)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_alerts(), st.sampled_from(LINEAGES))
def test_both_paths_make_the_same_bytes_and_one_ndjson_line(raw, lineage):
    out = normalize(raw, lineage, NOW)
    expected = general(raw, lineage, NOW)
    assert out == expected  # Document and Rejection compare by value: bytes, id, day
    fast = common_alert(raw, lineage, NOW, DEFAULT_LIMITS)
    if fast is not None:
        assert fast == expected
    if isinstance(out, Document):
        assert out.body.count(b"\n") == 1 and out.body.endswith(b"}\n")
        assert b"\r" not in out.body
        # Whatever the alert held, the line is one JSON object OpenSearch can read.
        top = msgspec.json.decode(out.body, type=dict[str, msgspec.Raw])
        assert bytes(top["@type"]) == b'"falco"'
    else:
        assert isinstance(out, Rejection) and out.reason != "internal_error", out


def test_the_generator_reaches_the_fast_path_and_every_rejection():
    """The property above is worth something only if both paths make documents from these
    alerts and the general path meets what breaks it."""
    seen_fast, reasons = 0, set()
    for raw in hostile_examples(400):
        if common_alert(raw, None, NOW, DEFAULT_LIMITS) is not None:
            seen_fast += 1
        out = general(raw, None, NOW)
        reasons.add(out.reason if isinstance(out, Rejection) else "document")
    assert seen_fast >= 20
    assert {"document", "invalid_json", "missing_rule", "bad_priority"} <= reasons


def hostile_examples(n):
    found = []

    @settings(max_examples=n, deadline=None, database=None)
    @given(hostile_alerts())
    def collect(raw):
        found.append(raw)

    collect()
    return found


def falco_alert(**fields) -> dict:
    return {
        "time": "2026-11-20T09:00:01.408091526Z",
        "rule": "Terminal shell in container",
        "priority": "Warning",
        "output": "09:00:01.408091526: Warning shell",
        "hostname": "node-1",
        "source": "syscall",
        "tags": ["T1059", "container"],
        "output_fields": {"proc.name": "bash"},
    } | fields


@pytest.mark.parametrize(
    ("replace", "by"),
    [
        (b'"tags":["T1059","container"]', b'"tags":[1e400]'),
        (b'"tags":["T1059","container"]', b'"tags":' + b"[" * 500 + b"]" * 500),
        (b'{"proc.name":"bash"}', b'{"proc.name":1e400,"n":123456789012345678901234567890}'),
        (b'{"proc.name":"bash"}', b'{\n  "proc.name" : "bash",\n  "pid" : 7\n}'),
        (b'{"proc.name":"bash"}', b'{"proc.name":"bash","proc.name":"sh"}'),
        (b'{"proc.name":"bash"}', b'{"a":"\\u0000\\ud83d\\ude00\\/"}'),
    ],
)
def test_what_the_issue_met_is_stored(replace, by):
    """The alerts that stopped the consumer or the bulk (issue 19) make documents."""
    raw = orjson.dumps(falco_alert()).replace(replace, by)
    assert by in raw
    out = normalize(raw, None, NOW)
    assert isinstance(out, Document), out
    assert out.body.count(b"\n") == 1
    assert out == general(raw, None, NOW)


def test_numbers_keep_their_spelling():
    raw = orjson.dumps(falco_alert()).replace(
        b'{"proc.name":"bash"}', b'{"big":123456789012345678901234567890,"inf":1e400}'
    )
    body = normalize(raw, None, NOW).body
    assert b'"output_fields":{"big":123456789012345678901234567890,"inf":1e400}' in body


def test_nesting_past_the_decoders_limit_is_a_rejection():
    raw = orjson.dumps(falco_alert()).replace(
        b'{"proc.name":"bash"}', b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    )
    out = normalize(raw, None, NOW)
    assert isinstance(out, Rejection) and out.reason == "invalid_json", out


def test_a_missing_host_and_the_host_named_none_have_their_own_ids():
    alert = falco_alert()
    missing = {k: v for k, v in alert.items() if k != "hostname"}
    ids = {
        normalize(orjson.dumps(a), None, NOW).doc_id
        for a in (
            missing,
            alert | {"hostname": "None"},
            alert | {"hostname": None},
            alert | {"hostname": 5},
            alert | {"hostname": "5"},
        )
    }
    # null and missing are the same (no host); the other four differ from each other
    assert len(ids) == 4
    no_source = {k: v for k, v in alert.items() if k != "source"}
    assert (
        normalize(orjson.dumps(no_source), None, NOW).doc_id
        != normalize(orjson.dumps(alert | {"source": "None"}), None, NOW).doc_id
    )


def test_a_separator_inside_a_value_cannot_shift_the_fields_of_the_id():
    a = falco_alert(hostname="h\x1fr", rule="x")
    b = falco_alert(hostname="h", rule="r\x1fx")
    assert (
        normalize(orjson.dumps(a), None, NOW).doc_id != normalize(orjson.dumps(b), None, NOW).doc_id
    )


def test_every_bulk_body_is_ndjson():
    """The sink's body: two lines a document, whatever the alerts held."""
    docs = [
        d
        for d in map(lambda r: normalize(r, None, NOW), hostile_examples(300))
        if isinstance(d, Document)
    ]
    assert len(docs) > 50
    body = OpenSearchSink(client=None, prefix="falco").encode(docs)
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2 * len(docs) + 1
    for action, doc in zip(lines[0:-1:2], lines[1:-1:2], strict=True):
        assert msgspec.json.decode(action)["create"]["_index"].startswith("falco-")
        msgspec.json.decode(doc, type=dict[str, msgspec.Raw])


def test_unexpected_exceptions_become_internal_error_rejections(monkeypatch):
    from ingest.normalize import document

    def broken(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(document, "common_alert", broken)
    out = normalize(orjson.dumps(falco_alert()), None, NOW)
    assert out == Rejection("internal_error", "ValueError: a bug")
