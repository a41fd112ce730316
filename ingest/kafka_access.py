"""Whether Kafka accepts us, checked once at start: a broker that refuses our SASL
credentials or client certificate, or whose certificate we do not trust, is a setting to
fix, not an outage to wait out. aiokafka's clients report each of these only as "Unable to
bootstrap" and retry, so every component connects once itself first, as its clients will.
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed

from ingest.config import KafkaSettings
from ingest.errors import AccessRefused


async def check_access(kafka: KafkaSettings, timeout_s: float = 15.0) -> None:
    """Raise ``AccessRefused`` (one line naming the settings) if a bootstrap server refuses
    us; return when one accepts us, or when none answers (that is waited for elsewhere)."""
    kw = kafka.client_kwargs()
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    client_id=kw["client_id"],
                    ssl_context=kw.get("ssl_context"),
                    security_protocol=kw["security_protocol"],
                    sasl_mechanism=kw.get("sasl_mechanism"),
                    sasl_plain_username=kw.get("sasl_plain_username"),
                    sasl_plain_password=kw.get("sasl_plain_password"),
                ),
                timeout_s,
            )
        except SaslAuthenticationFailed as exc:
            raise AccessRefused(
                f"Kafka refused our SASL credentials ({kafka.sasl_mechanism}, user "
                f"{kafka.sasl_username!r}: {_first_line(exc)}): check "
                "INGEST_KAFKA__SASL_USERNAME / INGEST_KAFKA__SASL_PASSWORD(_FILE)"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise AccessRefused(
                f"Kafka's TLS certificate is not trusted ({exc.verify_message}): check "
                "INGEST_KAFKA__SSL_CAFILE and the host in INGEST_KAFKA__BOOTSTRAP_SERVERS"
            ) from None
        except KafkaConnectionError as exc:
            alert = exc.__cause__ or exc.__context__
            if isinstance(alert, ssl.SSLError) and kafka.security_protocol in ("SSL", "SASL_SSL"):
                raise AccessRefused(
                    f"Kafka refused our TLS client certificate ({alert.reason or alert}): "
                    "check INGEST_KAFKA__SSL_CERTFILE / INGEST_KAFKA__SSL_KEYFILE (missing, "
                    "expired, or not signed by a CA the broker trusts)"
                ) from None
            continue  # down or unreachable: the clients wait for it
        except (KafkaError, OSError, TimeoutError):
            continue
        conn.close()
        return


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
