"""Prometheus metrics (``ingest_<component>_<name>_<unit>``) and the /metrics, /healthz,
/readyz endpoints."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

CONSUMED = Counter("ingest_consumer_records_consumed_total", "Kafka records read")
INDEXED = Counter("ingest_consumer_documents_indexed_total", "Documents newly stored")
DUPLICATES = Counter(
    "ingest_consumer_documents_duplicate_total", "Documents OpenSearch already had (409)"
)
DEAD_LETTERED = Counter(
    "ingest_consumer_dead_lettered_total", "Records sent to the dead-letter topic", ["reason"]
)
NORMALIZE_ERRORS = Counter(
    "ingest_consumer_normalize_errors_total",
    "Records on which normalising raised (dead-lettered as internal_error: a bug to report)",
)
DEAD_LETTERS_SHORTENED = Counter(
    "ingest_consumer_dead_letters_shortened_total",
    "Dead letters too large for the DLQ topic, kept as a prefix with size and sha256",
)
COMMITS = Counter("ingest_consumer_commits_total", "Offset commits")
LEDGER_ENTRIES = Counter(
    "ingest_consumer_ledger_entries_total", "Ledger entries written (one a finished batch)"
)
LEDGER_RECOUNTED = Counter(
    "ingest_consumer_ledger_recounted_total",
    "409s counted as stored: alerts stored by their own record before a crash lost the entry",
)
LAG = Gauge("ingest_consumer_lag_records", "Records behind the high watermark", ["partition"])
INFLIGHT = Gauge("ingest_consumer_inflight_bulks", "Bulk requests in flight")
SINK_RETRIES = Counter("ingest_sink_retries_total", "Bulk attempts that were retried")
BULK_LATENCY = Histogram(
    "ingest_sink_bulk_latency_seconds",
    "Latency of one _bulk request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

AGENT_ACCEPTED = Counter("ingest_agent_alerts_accepted_total", "Alerts read from inputs", ["input"])
AGENT_SENT = Counter("ingest_agent_alerts_sent_total", "Alerts acknowledged by Kafka")
AGENT_SPOOLED = Counter("ingest_agent_alerts_spooled_total", "Alerts written to the disk spool")
AGENT_SPOOL_BYTES = Gauge("ingest_agent_spool_bytes", "Bytes waiting in the disk spool")
AGENT_ROTATED_OPEN = Gauge(
    "ingest_agent_rotated_files_open", "Files renamed away by rotation, still being read"
)
AGENT_SPOOL_FAILED = Gauge(
    "ingest_agent_spool_failed", "1 once an fsync of the spool failed (restart the agent)"
)
AGENT_SPOOL_FULL = Counter("ingest_agent_spool_full_total", "Times the spool refused an alert")
AGENT_SPOOL_DAMAGED = Counter(
    "ingest_agent_spool_damaged_bytes_total",
    "Bytes of damaged spool records skipped (their alerts are lost; the log says where)",
)
AGENT_STATE_UNREADABLE = Counter(
    "ingest_agent_state_unreadable_total",
    "State files found unreadable at start (positions, spool cursor): read again from the start",
    ["file"],
)
AGENT_REJECTED = Counter(
    "ingest_agent_alerts_rejected_total", "Alerts kept in the local reject file", ["reason"]
)


async def serve(
    port: int, ready: Callable[[], bool], alive: Callable[[], str | None] = lambda: None
) -> web.AppRunner | None:
    """Serve /metrics, /healthz and /readyz on ``port`` (0 turns the server off). ``alive``
    returns why the process should be restarted, or None."""
    if port == 0:
        return None

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        why = alive()
        return web.Response(text="ok\n") if why is None else web.Response(status=503, text=why)

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        return web.Response(text="ready\n" if ok else "not ready\n", status=200 if ok else 503)

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
