"""The async OpenSearch client, built from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import TransportError
from opensearchpy.serializer import JSONSerializer

from ingest.config import OpenSearchSettings
from ingest.errors import AccessRefused, ConfigError

log = logging.getLogger(__name__)


class OrjsonSerializer(JSONSerializer):
    """OpenSearch answers parsed with orjson."""

    def loads(self, s: str | bytes) -> Any:
        return orjson.loads(s)


@asynccontextmanager
async def make_client(
    settings: OpenSearchSettings, serializer: JSONSerializer | None = None
) -> AsyncIterator[AsyncOpenSearch]:
    auth = None
    if settings.username and settings.password:
        auth = (settings.username, settings.password.get_secret_value())
    client = AsyncOpenSearch(
        hosts=[settings.url],
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ca_certs=str(settings.ca_certs) if settings.ca_certs else None,
        timeout=settings.request_timeout_s,
        # Retries are ours (item-level, with backoff); the client must not resend blindly.
        max_retries=0,
        retry_on_timeout=False,
        http_compress=False,
        serializer=serializer or OrjsonSerializer(),
    )
    try:
        yield client
    finally:
        await client.close()


async def require_template(client: AsyncOpenSearch, prefix: str) -> None:
    """Refuse to start when ``falco-ingest setup`` has not made the index template of
    ``prefix``: OpenSearch would map the documents by guess and refuse many of them. An
    OpenSearch that does not answer is not a reason to stop (the sink waits for it)."""
    try:
        found = await client.indices.exists_index_template(name=prefix)
    except TransportError as exc:
        if exc.status_code in (401, 403):
            raise AccessRefused(
                f"OpenSearch refused our credentials ({exc.status_code}): check "
                "INGEST_OPENSEARCH__USERNAME / __PASSWORD and the user's privileges"
            ) from exc
        log.warning(
            "index template not checked: OpenSearch did not answer", extra={"error": str(exc)}
        )
        return
    if not found:
        raise ConfigError(
            f"OpenSearch has no index template {prefix!r} (INGEST_OPENSEARCH__INDEX_PREFIX): "
            "run `falco-ingest setup` first, or set INGEST_OPENSEARCH__REQUIRE_TEMPLATE=false"
        )
