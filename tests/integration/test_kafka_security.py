"""Kafka with SASL_SSL (SCRAM-SHA-512, a user made with the broker's own kafka-configs) and
with SSL requiring client certificates: a real broker of the stack's code, certificates made
by these tests. Every component works over both with host name verification on; each
refusal stops it at start with exit code 3 and one line; the agent keeps what it accepted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.agent.spool import Spool
from ingest.stack.kafka import TLS_SETTING, Kafka
from ingest.stack.layout import Layout
from tests.integration.conftest import count_docs, make_alerts, run_cli
from tests.integration.tls import make_ca, make_server_cert

USER = "falco-agent"
PASSWORD = "scram-Pa55word-for-tests"  # noqa: S105


@dataclass(frozen=True)
class SecureKafka:
    kafka: Kafka
    certs: Path


def _free_base() -> int:
    """A port with the three after it free too (plaintext, controller, SASL_SSL, SSL)."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base < 60000 and all(_free(base + i) for i in range(1, 4)):
            return base
    raise RuntimeError("no four free ports in a row")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def secure(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("kafka-tls")
    certs = folder / "certs"
    certs.mkdir()
    ca, ca_key, ca_path = make_ca(certs, "test-ca")
    (certs / "ca.pem").write_bytes(ca_path.read_bytes())
    cert, key = make_server_cert(certs, ca, ca_key, "broker")
    (certs / "broker.pem").write_bytes(key.read_bytes() + cert.read_bytes())
    make_server_cert(certs, ca, ca_key, "client")
    make_server_cert(certs, ca, ca_key, "expired", expired=True)
    other, other_key, _ = make_ca(certs, "other-ca")
    make_server_cert(certs, other, other_key, "stranger")
    os.environ[TLS_SETTING] = str(certs)
    try:
        kafka = Kafka(Layout(folder / "stack", _free_base(), 0, 0))
    finally:
        del os.environ[TLS_SETTING]
    kafka.start()
    try:
        kafka.wait(120)
        kafka.add_scram_user(USER, PASSWORD)
        yield SecureKafka(kafka, certs)
    finally:
        kafka.stop()


def env_for(secure: SecureKafka, listener: str, tmp: Path, prefix: str, **case: str) -> dict:
    """A component's environment over ``listener`` (sasl or mtls), its password in a file."""
    c = secure.certs
    env = dict(
        os.environ,
        INGEST_OPENSEARCH__INDEX_PREFIX=prefix,
        INGEST_KAFKA__TOPIC=f"ks-{prefix}",
        INGEST_KAFKA__DLQ_TOPIC=f"ks-{prefix}.dlq",
        INGEST_KAFKA__GROUP_ID=f"ks-{prefix}",
        INGEST_KAFKA__SSL_CAFILE=str(c / "ca.pem"),
        INGEST_AGENT__STATE_DIR=str(tmp / "agent"),
        INGEST_AGENT__HOSTNAME="tls-host",
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="ERROR",
    )
    if listener == "sasl":
        secret = tmp / "kafka-password"
        secret.write_text(case.pop("password", PASSWORD) + "\n")
        env.update(
            INGEST_KAFKA__BOOTSTRAP_SERVERS=secure.kafka.sasl_ssl,
            INGEST_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
            INGEST_KAFKA__SASL_MECHANISM="SCRAM-SHA-512",
            INGEST_KAFKA__SASL_USERNAME=USER,
            INGEST_KAFKA__SASL_PASSWORD_FILE=str(secret),
        )
    else:
        name = case.pop("client", "client")
        env.update(
            INGEST_KAFKA__BOOTSTRAP_SERVERS=secure.kafka.mtls,
            INGEST_KAFKA__SECURITY_PROTOCOL="SSL",
            INGEST_KAFKA__SSL_CERTFILE=str(c / f"{name}.pem"),
            INGEST_KAFKA__SSL_KEYFILE=str(c / f"{name}-key.pem"),
        )
    env.update(case)
    return env


@pytest.mark.parametrize("listener", ["sasl", "mtls"])
async def test_every_component_over_sasl_ssl_and_client_certificates(
    secure, prefix, tmp_path, listener
):
    env = env_for(secure, listener, tmp_path, prefix)
    alerts = make_alerts(5, tag=prefix + listener)
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join([*alerts, b"not json"]) + b"\n")
    steps = [
        (["setup"], 0),  # makes the topics over TLS
        (["agent", "--once", "--input", f"file:{log}"], 0),
        (["consume", "--stop-when-idle", "3"], 0),  # and dead-letters the bad line
        (["dlq", "replay", "--idle", "2"], 0),
    ]
    outputs = []
    for args, code in steps:
        done = run_cli(args, env)
        assert done.returncode == code, (args, done.stderr[-2000:])
        outputs.append(done.stdout)
    assert "indexed 5" in outputs[2] and "invalid_json=1" in outputs[2]
    assert "replayed 1 dead-lettered" in outputs[3]
    assert await count_docs(prefix) == 5


@pytest.mark.parametrize(
    ("listener", "case", "expected"),
    [
        ("sasl", {"password": "wrong"}, "Kafka refused our SASL credentials"),
        (
            "sasl",
            {"INGEST_KAFKA__SSL_CAFILE": "other-ca.pem"},
            "Kafka's TLS certificate is not trusted",
        ),
        ("mtls", {"client": "expired"}, "Kafka refused our TLS client certificate"),
        ("mtls", {"client": "stranger"}, "Kafka refused our TLS client certificate"),
    ],
)
async def test_a_refusal_stops_each_component_with_exit_3_and_one_line(
    secure, prefix, tmp_path, listener, case, expected
):
    if "INGEST_KAFKA__SSL_CAFILE" in case:
        case = {"INGEST_KAFKA__SSL_CAFILE": str(secure.certs / case["INGEST_KAFKA__SSL_CAFILE"])}
    env = env_for(secure, listener, tmp_path, prefix, **case)
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join(make_alerts(2, tag=prefix)) + b"\n")
    for args in (
        ["setup"],
        ["consume", "--stop-when-idle", "3"],
        ["dlq", "replay", "--idle", "2"],
        ["agent", "--once", "--input", f"file:{log}"],
    ):
        done = run_cli(args, env)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 3, (args, done.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("falco-ingest: " + expected), (args, lines)
        assert "INGEST_KAFKA__" in lines[0]


async def test_the_agent_keeps_what_it_accepted_when_kafka_refuses_it(secure, prefix, tmp_path):
    """Alerts the agent took while Kafka was unreachable stay in its spool through a run
    that Kafka refuses, and reach Kafka once the password is right."""
    alerts = make_alerts(4, tag=prefix + "kept")
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join(alerts) + b"\n")
    args = ["agent", "--once", "--input", f"file:{log}"]
    down = env_for(secure, "sasl", tmp_path, prefix, INGEST_AGENT__DRAIN_TIMEOUT_S="2")
    down["INGEST_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{secure.kafka.port + 100}"  # nothing
    assert run_cli(args, down).returncode == 1  # accepted, left in the spool
    spool = tmp_path / "agent" / "spool"

    def pending() -> int:
        s = Spool(spool, 1 << 30)
        try:
            return s.pending_bytes
        finally:
            s.close()

    before = pending()
    assert before > 0
    refused = run_cli(args, env_for(secure, "sasl", tmp_path, prefix, password="wrong"))
    assert refused.returncode == 3
    assert pending() == before  # nothing lost, nothing sent
    done = run_cli(args, env_for(secure, "sasl", tmp_path, prefix))
    assert done.returncode == 0, done.stderr[-2000:]
    assert pending() == 0


async def test_no_kafka_secret_in_any_line_at_debug(secure, prefix, tmp_path):
    """Over SASL_SSL at DEBUG (aiokafka's own DEBUG lines included): the password is in no
    line the agent or the consumer printed."""
    env = env_for(secure, "sasl", tmp_path, prefix, INGEST_LOG_LEVEL="DEBUG")
    log = tmp_path / "falco.json"
    log.write_bytes(b"\n".join(make_alerts(3, tag=prefix + "dbg")) + b"\n")
    runs = [
        run_cli(["setup"], env),
        run_cli(["agent", "--once", "--input", f"file:{log}"], env),
        run_cli(["consume", "--stop-when-idle", "3"], env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0], runs[-1].stderr[-2000:]
    printed = "".join(r.stdout + r.stderr for r in runs)
    assert len(printed.splitlines()) > 10  # all three said what they did
    assert PASSWORD not in printed
