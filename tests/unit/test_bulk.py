import orjson
import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from ingest.errors import AccessRefused
from ingest.normalize.document import Document
from ingest.sink.bulk import BulkAnswers, OpenSearchSink


class FakeTransport:
    """Answers each _bulk with the next scripted reply; records what was sent."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent: list[list[str]] = []

    async def perform_request(self, method, path, body=None, params=None, headers=None):
        lines = body.decode().splitlines()
        ids = [orjson.loads(a)["create"]["_id"] for a in lines[0::2]]
        self.sent.append(ids)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return {
            "errors": any(s >= 300 for s in reply),
            "items": [
                {
                    "create": {
                        "status": s,
                        **(
                            {"error": {"type": "mapper_parsing_exception", "reason": "bad"}}
                            if s == 400
                            else {}
                        ),
                    }
                }
                for s in reply
            ],
        }


class FakeClient:
    def __init__(self, replies):
        self.transport = FakeTransport(replies)


def docs(n):
    return [Document(f"id{i}", "2026.11.20", b'{"a":1}\n') for i in range(n)]


async def test_item_level_outcomes_and_only_failed_items_resent():
    client = FakeClient([[201, 409, 429, 400, 503], [201, 201]])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(5))
    assert (out.stored, out.duplicates, out.retries) == (3, 1, 1)
    assert [(d.doc_id, r) for d, r, _ in out.rejected] == [
        ("id3", "opensearch_mapper_parsing_exception")
    ]
    assert client.transport.sent == [["id0", "id1", "id2", "id3", "id4"], ["id2", "id4"]]


async def test_unreachable_cluster_is_retried_until_it_answers():
    client = FakeClient([OSConnectionError("N/A", "refused", None)] * 3 + [[201, 201]])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(2))
    assert out.stored == 2 and out.retries == 3
    assert sink.healthy


def test_bulk_body_uses_create_into_the_day_index():
    sink = OpenSearchSink(FakeClient([]), "falco")
    body = sink.encode(docs(1)).decode().splitlines()
    assert orjson.loads(body[0]) == {"create": {"_index": "falco-2026.11.20", "_id": "id0"}}
    assert body[1] == '{"a":1}'


def test_bulk_answers_without_errors_are_not_parsed_item_by_item():
    ser = BulkAnswers()
    ok = '{"errors":false,"items":[' + ",".join(['{"create":{"status":201}}'] * 3) + "]}"
    assert ser.loads(ok) == {"errors": False}
    assert ser.loads(ok.encode()) == {"errors": False}
    failed = '{"errors":true,"items":[{"create":{"status":429}}]}'
    assert ser.loads(failed) == orjson.loads(failed)
    other = '{"errors":false}'
    assert ser.loads(other) == {"errors": False}
    assert ser.loads('{"acknowledged":true}') == {"acknowledged": True}


def test_bulk_body_is_ndjson_with_one_create_line_per_document():
    sink = OpenSearchSink(FakeClient([]), "falco")
    body = sink.encode(
        [
            Document("a1", "2026.11.20", b'{"x":1}\n'),
            Document("b2", "2026.11.21", b'{"x":2}\n'),
            Document("c3", "2026.11.20", b'{"x":3}\n'),
        ]
    )
    assert body.endswith(b"\n")
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert lines == [
        {"create": {"_index": "falco-2026.11.20", "_id": "a1"}},
        {"x": 1},
        {"create": {"_index": "falco-2026.11.21", "_id": "b2"}},
        {"x": 2},
        {"create": {"_index": "falco-2026.11.20", "_id": "c3"}},
        {"x": 3},
    ]


class RefusingTransport:
    """Refuses a whole request with ``status`` while it holds a document in ``bad``, as a
    node does with a body it cannot parse (400) or one over http.max_content_length (413);
    stores every other request."""

    def __init__(self, bad, status, error):
        self.bad, self.status, self.error = set(bad), status, error
        self.sent: list[list[str]] = []

    async def perform_request(self, method, path, body=None, params=None, headers=None):
        ids = [orjson.loads(a)["create"]["_id"] for a in body.splitlines()[0::2]]
        self.sent.append(ids)
        if self.bad & set(ids):
            raise TransportError(self.status, "refused", self.error)
        return {"errors": False}


# A node's answer to a bulk body that is not NDJSON (OpenSearch 2.19: HTTP 400)
NOT_NDJSON = {
    "error": {
        "type": "illegal_argument_exception",
        "reason": "Malformed action/metadata line [3], expected START_OBJECT but found "
        "[VALUE_NUMBER]",
    },
    "status": 400,
}


async def test_a_refused_body_is_split_until_the_bad_documents_are_found():
    transport = RefusingTransport({"id5", "id12"}, 400, NOT_NDJSON)
    client = FakeClient([])
    client.transport = transport
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(16))
    assert out.stored == 14 and out.retries == 0
    assert [(d.doc_id, r, detail[:9]) for d, r, detail in out.rejected] == [
        ("id5", "opensearch_illegal_argument_exception", "Malformed"),
        ("id12", "opensearch_illegal_argument_exception", "Malformed"),
    ]
    # halves of halves: no more requests than two per level that holds a bad document
    assert len(transport.sent) <= 1 + 2 * 2 * 4
    stored = [i for ids in transport.sent if not {"id5", "id12"} & set(ids) for i in ids]
    assert sorted(stored) == sorted(f"id{i}" for i in range(16) if i not in (5, 12))


async def test_a_body_too_large_for_the_node_is_split_and_a_single_one_dead_lettered():
    transport = RefusingTransport({"id1"}, 413, "")
    client = FakeClient([])
    client.transport = transport
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(3))
    assert out.stored == 2
    assert [(d.doc_id, r) for d, r, _ in out.rejected] == [("id1", "opensearch_http_413")]


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_stop_the_writer_without_a_retry(status):
    client = FakeClient([TransportError(status, "security_exception", {"error": "no"})])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    with pytest.raises(AccessRefused, match=str(status)):
        await sink.write(docs(2))
    assert len(client.transport.sent) == 1


async def test_an_item_refused_for_permissions_stops_the_writer():
    client = FakeClient([[201, 403]])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    with pytest.raises(AccessRefused):
        await sink.write(docs(2))


async def test_429_and_5xx_of_the_whole_request_are_retried():
    client = FakeClient(
        [TransportError(429, "es_rejected_execution_exception", {}), TransportError(503, "", {})]
        + [[201, 201]]
    )
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(2))
    assert (out.stored, out.retries, len(client.transport.sent)) == (2, 2, 3)


async def test_a_certificate_not_trusted_stops_the_writer_without_a_retry():
    """A TLS failure on the server's certificate mid-run is a setting to fix, not an outage."""
    from opensearchpy.exceptions import SSLError

    client = FakeClient([SSLError("N/A", "certificate verify failed", None)])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    with pytest.raises(AccessRefused, match="not trusted"):
        await sink.write(docs(1))
    assert len(client.transport.sent) == 1


def pressure(op: int, limit: int, held: int = 0) -> dict:
    """OpenSearch's indexing-pressure refusal (as a 3.3.2 node answered the chaos run)."""
    reason = (
        f"rejected execution of coordinating operation [coordinating_and_primary_bytes={held}, "
        f"replica_bytes=0, all_bytes={held}, coordinating_operation_bytes={op}, "
        f"max_coordinating_and_primary_bytes={limit}]"
    )
    return {"error": {"type": "rejected_execution_exception", "reason": reason}, "status": 429}


class PressureTransport:
    """A node whose indexing-pressure limit holds ``fits`` documents: a larger request is
    refused with 429 naming its own bytes over the limit, whole or item by item."""

    def __init__(self, fits: int, per_item: bool = False):
        self.fits, self.per_item = fits, per_item
        self.sent: list[int] = []

    async def perform_request(self, method, path, body=None, params=None, headers=None):
        n = len(body.splitlines()) // 2
        self.sent.append(n)
        if n <= self.fits:
            return {"errors": False}
        refusal = pressure(100 * n, 100 * self.fits)
        if not self.per_item:
            raise TransportError(429, "rejected_execution_exception", refusal)
        item = {"create": {"status": 429, "error": refusal["error"]}}
        return {"errors": True, "items": [item] * n}


def pressured(fits: int, per_item: bool) -> tuple[FakeClient, OpenSearchSink]:
    client = FakeClient([])
    client.transport = PressureTransport(fits=fits, per_item=per_item)
    return client, OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)


@pytest.mark.parametrize("per_item", [False, True])
async def test_a_request_alone_over_the_indexing_pressure_limit_is_split_not_retried(per_item):
    client, sink = pressured(fits=3, per_item=per_item)
    out = await sink.write(docs(10))
    assert out.stored == 10 and not out.rejected and out.retries == 0
    assert client.transport.sent == [10, 5, 2, 3, 5, 2, 3]


@pytest.mark.parametrize("per_item", [False, True])
async def test_a_document_alone_over_the_limit_is_dead_lettered_with_the_reason(per_item):
    _, sink = pressured(fits=0, per_item=per_item)
    out = await sink.write(docs(2))
    assert out.stored == 0 and [d.doc_id for d, _, _ in out.rejected] == ["id0", "id1"]
    assert {r for _, r, _ in out.rejected} == {"opensearch_rejected_execution_exception"}
    assert all("coordinating_operation_bytes=100" in d for _, _, d in out.rejected)


async def test_a_429_for_what_others_hold_in_flight_is_retried_whole():
    client = FakeClient([TransportError(429, "x", pressure(500, 1000, held=900)), [201, 201]])
    sink = OpenSearchSink(client, "falco", retry_initial_s=0.01, retry_max_s=0.02)
    out = await sink.write(docs(2))
    assert (out.stored, out.retries, client.transport.sent) == (
        2,
        1,
        [["id0", "id1"], ["id0", "id1"]],
    )
