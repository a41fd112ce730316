"""OpenSearch over TLS with credentials, through a real TLS-terminating proxy with basic auth
(nginx, tests/integration/tls.py) in front of the stack's node: every tool connects with
the CA and a password from a file; wrong credentials and an unknown CA stop each one with
exit code 3 and one line; no password reaches any log line, even at DEBUG."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import count_docs, make_alerts, produce, run_cli
from tests.integration.tls import PASSWORD, USER, Proxy, start_proxy

KAFKA_SECRET = "kafka-Secret-never-logged"  # noqa: S105


@pytest.fixture(scope="module")
def proxy(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    running = start_proxy(tmp_path_factory.mktemp("tls"), os.environ["INGEST_OPENSEARCH__URL"])
    yield running
    running.process.terminate()
    running.process.wait(timeout=20)


def secured(proxy: Proxy, prefix: str, tmp: Path, **over: str) -> dict[str, str]:
    """The environment of a tool that talks to OpenSearch through the proxy, its password
    in a file as a mounted Kubernetes Secret would give it."""
    secret = tmp / "opensearch-password"
    secret.write_text(PASSWORD + "\n")
    env = dict(
        os.environ,
        INGEST_OPENSEARCH__URL=proxy.url,
        INGEST_OPENSEARCH__USERNAME=USER,
        INGEST_OPENSEARCH__PASSWORD_FILE=str(secret),
        INGEST_OPENSEARCH__CA_CERTS=str(proxy.ca),
        INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
        INGEST_KAFKA__TOPIC=f"sec-{prefix}",
        INGEST_KAFKA__DLQ_TOPIC=f"sec-{prefix}.dlq",
        INGEST_KAFKA__GROUP_ID=f"sec-{prefix}",
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="WARNING",
    )
    env.update(over)
    return env


TOOLS = [
    ["setup"],
    ["consume", "--stop-when-idle", "3"],
    ["archive", "list"],
    ["audit", "retention"],
]


async def test_every_tool_works_over_https_with_the_ca_and_a_password_file(proxy, prefix, tmp_path):
    env = secured(proxy, prefix, tmp_path)
    done = run_cli(["setup"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    alerts = make_alerts(20, tag=prefix)
    await produce(env["INGEST_KAFKA__TOPIC"], alerts)
    done = run_cli(["consume", "--stop-when-idle", "3"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 20" in done.stdout
    assert await count_docs(prefix) == 20
    done = run_cli(["archive", "list"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli(["audit", "retention", "--format", "json"], env)
    assert done.returncode == 1  # this node has no ISM: that violation, and a report
    assert '"ism_missing"' in done.stdout and f'"{prefix}-' in done.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "OpenSearch refused our credentials (HTTP 401)"),
        ("unknown CA", "OpenSearch's TLS certificate is not trusted"),
    ],
)
async def test_a_refusal_stops_each_tool_with_exit_3_and_one_line(
    proxy, prefix, tmp_path, case, expected
):
    over = (
        {"INGEST_OPENSEARCH__PASSWORD_FILE": "", "INGEST_OPENSEARCH__PASSWORD": "wrong"}
        if case == "wrong password"
        else {"INGEST_OPENSEARCH__CA_CERTS": str(proxy.other_ca)}
    )
    env = secured(proxy, prefix, tmp_path, **over)
    if not env["INGEST_OPENSEARCH__PASSWORD_FILE"]:
        del env["INGEST_OPENSEARCH__PASSWORD_FILE"]
    await produce(env["INGEST_KAFKA__TOPIC"], make_alerts(3, tag=prefix))
    for args in TOOLS:
        done = run_cli(args, env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 3, (args, done.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("falco-ingest: " + expected), (args, lines)
        assert "INGEST_OPENSEARCH__" in lines[0]  # it names the setting to check
    assert await count_docs(prefix) == 0  # nothing stored, and nothing committed:
    env = secured(proxy, prefix, tmp_path)
    done = run_cli(["consume", "--stop-when-idle", "3"], env)
    assert done.returncode == 0 and await count_docs(prefix) == 3  # read again once right


async def test_unverified_tls_is_said_with_a_warning(proxy, prefix, tmp_path):
    env = secured(
        proxy,
        prefix,
        tmp_path,
        INGEST_OPENSEARCH__CA_CERTS=str(proxy.other_ca),
        INGEST_OPENSEARCH__VERIFY_CERTS="false",
    )
    done = run_cli(["archive", "list"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "certificate is not verified (INGEST_OPENSEARCH__VERIFY_CERTS=false)" in done.stderr


async def test_no_secret_in_any_line_at_debug(proxy, prefix, tmp_path):
    """Every tool, at DEBUG, with known secrets: neither the passwords nor the
    Authorization header's value appear in anything printed."""
    env = secured(
        proxy,
        prefix,
        tmp_path,
        INGEST_LOG_LEVEL="DEBUG",
        INGEST_KAFKA__SASL_PASSWORD=KAFKA_SECRET,
    )
    await produce(env["INGEST_KAFKA__TOPIC"], [*make_alerts(5, tag=prefix), b"not json"])
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join(make_alerts(3, tag=prefix + "a")) + b"\n")
    agent = dict(env, INGEST_AGENT__STATE_DIR=str(tmp_path / "state"))
    runs = [run_cli(args, env) for args in TOOLS]
    runs.append(run_cli(["dlq", "replay", "--idle", "2"], env))
    runs.append(run_cli(["agent", "--once", "--input", f"file:{log}"], agent))
    runs += [run_cli([*args, "--help"], env) for args in TOOLS]
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    printed = "".join(r.stdout + r.stderr for r in runs)
    assert len(printed.splitlines()) > 50  # DEBUG said a lot
    for secret in (PASSWORD, KAFKA_SECRET, basic):
        assert secret not in printed
    assert "Authorization" not in printed and "authorization" not in printed
