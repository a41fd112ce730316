"""OpenSearch bulk writer: `create` with content ids, item-level retries, typed outcomes."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError

from ingest import metrics
from ingest.errors import AccessRefused, SinkUnavailable
from ingest.normalize.document import Document
from ingest.retry import retrying
from ingest.sink.client import OrjsonSerializer, refusal

log = logging.getLogger(__name__)
_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_ALL_STORED = '{"errors":false,'  # how an answer so filtered starts when no item failed


class BulkAnswers(OrjsonSerializer):
    """The sink's client: a bulk answer filtered by ``_FILTER`` in which no item failed
    holds thousands of items that only say "201", so it is not parsed item by item."""

    def loads(self, s: str | bytes) -> Any:
        text = s if isinstance(s, str) else s[:16].decode(errors="replace")
        if text.startswith(_ALL_STORED):
            return {"errors": False}
        return super().loads(s)


@dataclass
class BulkOutcome:
    stored: int = 0
    duplicates: int = 0
    duplicate_docs: list[Document] = field(default_factory=list)  # answered 409
    rejected: list[tuple[Document, str, str]] = field(default_factory=list)
    retries: int = 0


class OpenSearchSink:
    """Writes documents with `create`: a 409 means the alert is stored already."""

    def __init__(
        self,
        client: AsyncOpenSearch,
        prefix: str,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 30.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self.healthy = True
        self._heads: dict[str, bytes] = {}  # index day -> start of its action line

    def encode(self, docs: Sequence[Document]) -> bytes:
        """The NDJSON bulk body: a ``create`` line, then the document, for each."""
        heads = self._heads
        parts: list[bytes] = []
        for doc in docs:
            head = heads.get(doc.day)
            if head is None:
                head = heads[doc.day] = b'{"create":{"_index":"%s-%s","_id":"' % (
                    self.prefix.encode(),
                    doc.day.encode(),
                )
            parts += (head, doc.doc_id.encode(), b'"}}\n', doc.body)
        return b"".join(parts)

    async def write(self, docs: Sequence[Document]) -> BulkOutcome:
        """Index ``docs``; return once each is stored, a duplicate or rejected for good.

        What can succeed later (no answer, 429, 5xx; whole request or single items) is
        retried with exponential backoff and jitter, forever: the caller cancels on shutdown
        and then commits nothing for these records. A whole request the node refuses with
        another 4xx (a body it cannot parse, 413) is split until the documents it refuses
        are found; they are rejected with the node's reason, the rest is stored. 401/403
        raise ``AccessRefused``: no retry can help, the consumer stops.
        """
        outcome = BulkOutcome()
        pending = list(docs)
        async for attempt in retrying(
            self._retry_initial, self._retry_max, log, logging.WARNING, "bulk"
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    outcome.retries += 1
                    metrics.SINK_RETRIES.inc()
                total = len(pending)
                pending = await self._send(pending, outcome)
                if pending:
                    self.healthy = False
                    # Keep what succeeded; tenacity backs off and resends only these.
                    raise SinkUnavailable(f"{len(pending)} of {total} items were refused for now")
        self.healthy = True
        return outcome

    async def _send(self, docs: list[Document], outcome: BulkOutcome) -> list[Document]:
        """Send ``docs`` once (split on a refused body); return those to send again."""
        try:
            resp = await self._post(docs)
        except _BodyRefused as refused:
            if len(docs) == 1:
                outcome.rejected.append((docs[0], refused.reason, refused.detail))
                return []
            mid = len(docs) // 2
            log.warning(
                "bulk request refused, splitting it to find the documents",
                extra={"documents": len(docs), "status": refused.status, "detail": refused.detail},
            )
            first = await self._send(docs[:mid], outcome)
            return first + await self._send(docs[mid:], outcome)
        if not resp.get("errors"):
            outcome.stored += len(docs)
            return []
        retry: list[Document] = []
        too_large: list[Document] = []
        for doc, item in zip(docs, resp["items"], strict=True):
            result = next(iter(item.values()))
            status = int(result.get("status", 500))
            err = result.get("error") or {}
            kind = str(err.get("type", status)) if isinstance(err, dict) else str(status)
            if status < 300:
                outcome.stored += 1
            elif status == 409:
                outcome.duplicates += 1
                outcome.duplicate_docs.append(doc)
            elif status == 429 and _alone_over_limit(result):
                too_large.append(doc)
                why = str(err.get("reason"))[:500]
            elif status == 429 or status >= 500 or kind == "cluster_block_exception":
                retry.append(doc)
            elif status in (401, 403):
                raise AccessRefused(f"OpenSearch refused to index ({status} {kind})")
            else:
                reason = err.get("reason") if isinstance(err, dict) else err
                outcome.rejected.append((doc, f"opensearch_{kind}", str(reason)[:500]))
        if len(too_large) == 1:  # a document alone over the node's limit never fits
            outcome.rejected.append((too_large[0], "opensearch_rejected_execution_exception", why))
        elif too_large:
            mid = len(too_large) // 2
            retry += await self._send(too_large[:mid], outcome)
            retry += await self._send(too_large[mid:], outcome)
        return retry

    async def _post(self, docs: list[Document]) -> dict[str, Any]:
        """One ``_bulk`` request; its answer, or the error class of its failure."""
        start = time.perf_counter()
        try:
            resp = await self.client.transport.perform_request(
                "POST",
                "/_bulk",
                body=self.encode(docs),
                params={"filter_path": _FILTER},
                headers={"content-type": "application/x-ndjson"},
            )
        except TransportError as exc:  # OSConnectionError among them
            refused = refusal(exc)  # 401/403, or a certificate we do not trust
            if refused is not None:
                raise AccessRefused(refused) from exc
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if 400 <= status < 500 and (status != 429 or _alone_over_limit(exc.info)):
                raise _BodyRefused(status, exc) from exc
            self.healthy = False
            raise SinkUnavailable(f"bulk of {len(docs)} failed: {_describe(exc)}") from exc
        finally:
            metrics.BULK_LATENCY.observe(time.perf_counter() - start)
        return _as_dict(resp)


class _BodyRefused(Exception):
    """The node refused a whole bulk request with a 4xx that says its body is the cause."""

    def __init__(self, status: int, exc: TransportError) -> None:
        super().__init__(status)
        self.status = status
        error = exc.info.get("error") if isinstance(exc.info, dict) else None
        if isinstance(error, dict):
            self.reason = f"opensearch_{error.get('type', status)}"
            self.detail = str(error.get("reason"))[:500]
        else:
            self.reason = f"opensearch_http_{status}"
            self.detail = str(error or exc.error)[:500]


# OpenSearch's indexing-pressure refusal names the operation's bytes and the node's
# limit, e.g. "rejected execution of coordinating operation [..., coordinating_operation_
# bytes=2524954, max_coordinating_and_primary_bytes=2097152]" (primary and replica
# operations alike).
_PRESSURE = re.compile(r"_operation_bytes=(\d+),\s*max_\w+_bytes=(\d+)")


def _alone_over_limit(info: object) -> bool:
    """A 429 (of the request, or of items) that the request alone causes: its bytes are
    over the node's indexing-pressure limit, so sending it again can never succeed and
    it is split instead (a node with a small heap and a large batch; the chaos run met it
    with the limit lowered)."""
    error = info.get("error") if isinstance(info, dict) else None
    reason = error.get("reason") if isinstance(error, dict) else None
    found = _PRESSURE.search(reason) if isinstance(reason, str) else None
    return found is not None and int(found.group(1)) > int(found.group(2))


def _as_dict(resp: Any) -> dict[str, Any]:
    if isinstance(resp, bytes | str):
        loaded: dict[str, Any] = orjson.loads(resp)
        return loaded
    return dict(resp)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    return f"{type(exc).__name__}: {getattr(exc, 'info', None) or exc}"[:300]
