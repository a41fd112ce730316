"""The async OpenSearch client, built from settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import SSLError, TransportError
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
    if settings.url.startswith("https") and not settings.verify_certs:
        log.warning(
            "OpenSearch's TLS certificate is not verified (INGEST_OPENSEARCH__VERIFY_CERTS="
            "false): anyone on the path can read the alerts and the credentials"
        )
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
    ``prefix``: OpenSearch would map the documents by guess and refuse many of them."""
    await require(
        client.indices.exists_index_template(name=prefix),
        "index template",
        f"OpenSearch has no index template {prefix!r} (INGEST_OPENSEARCH__INDEX_PREFIX): "
        "run `falco-ingest setup` first, or set INGEST_OPENSEARCH__REQUIRE_TEMPLATE=false",
    )


async def require(found: Awaitable[bool], what: str, missing: str) -> None:
    """A start-up check of what ``setup`` makes: ConfigError(``missing``) when ``found``
    says it is not there, AccessRefused on 401/403. An OpenSearch that does not answer is
    not a reason to stop (the sink waits for it): logged, and start-up goes on."""
    try:
        there = await found
    except TransportError as exc:
        refused = refusal(exc)
        if refused is not None:
            raise AccessRefused(refused) from exc
        log.warning(f"{what} not checked: OpenSearch did not answer", extra={"error": str(exc)})
        return
    if not there:
        raise ConfigError(missing)


def refusal(exc: Exception) -> str | None:
    """One line for an OpenSearch that refuses us for good: our credentials or privileges
    (401/403), or a TLS certificate we do not trust; None for anything else."""
    if _untrusted(exc):
        return (
            f"OpenSearch's TLS certificate is not trusted ({_ssl_reason(exc)}): check "
            "INGEST_OPENSEARCH__CA_CERTS and the host name in INGEST_OPENSEARCH__URL"
        )
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        what = "credentials" if status == 401 else "privileges"
        return (
            f"OpenSearch refused our {what} (HTTP {status}): check "
            "INGEST_OPENSEARCH__USERNAME / INGEST_OPENSEARCH__PASSWORD(_FILE) and the user's role"
        )
    return None


def _untrusted(exc: Exception) -> bool:
    """A TLS handshake that failed on the server's certificate (opensearch-py's SSLError,
    or aiohttp's certificate error inside its ConnectionError)."""
    if isinstance(exc, SSLError):
        return True
    info = getattr(exc, "info", None)
    return isinstance(exc, TransportError) and isinstance(info, aiohttp.ClientSSLError)


def _ssl_reason(exc: Exception) -> str:
    """The verification error, short ("unable to get local issuer certificate")."""
    text = str(getattr(exc, "info", None) or exc)
    marker = "certificate verify failed: "
    if marker in text:
        return text.split(marker, 1)[1].split(" (_ssl")[0].strip()
    return text[:160]
