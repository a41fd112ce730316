"""The agent against the real Kafka: rotation, SIGKILL, Kafka down, HTTP, spool full or
damaged."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson

from ingest import __version__
from ingest.agent import records
from ingest.agent.spool import Spool
from ingest.consumer.runner import run_consumer
from ingest.normalize.timestamps import parse_rfc3339
from ingest.stack import process
from ingest.stack.layout import Layout
from tests.integration.conftest import consumer_settings, make_alerts, os_client, read_topic


def start_agent(tmp: Path, topic: str, *inputs: str, **env_over: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        INGEST_KAFKA__TOPIC=topic,
        INGEST_AGENT__STATE_DIR=str(tmp / "state"),
        INGEST_AGENT__HOSTNAME="test-host",
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="WARNING",
        **env_over,
    )
    cmd = [sys.executable, "-m", "ingest.cli", "agent"]
    for spec in inputs:
        cmd += ["--input", spec]
    return subprocess.Popen(cmd, env=env)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


async def wait_tailing(tmp: Path) -> None:
    """The agent saves its positions once it has opened its files."""
    for _ in range(300):
        if (tmp / "state" / "positions.json").exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent did not start tailing")


async def wait_in_kafka(topic: str, expected: set[bytes], timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while True:
        got = await read_topic(topic, idle_s=2)
        if expected <= {m.value for m in got} or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


async def test_file_rotation_both_ways_every_alert_once_byte_identical(stack, tmp_path, uid):
    topic = f"a-{uid}"
    log = tmp_path / "falco.json"
    lines = make_alerts(6000, tag=uid)
    log.touch()
    agent = start_agent(tmp_path, topic, f"file:{log}")
    await wait_tailing(tmp_path)
    try:
        fh = log.open("ab")
        for round_, start in enumerate(range(0, 6000, 1000)):
            chunk = lines[start : start + 1000]
            create = round_ % 2 == 0
            for i in range(0, 900 if create else 1000, 100):  # Falco appends as it goes
                fh.write(b"".join(ln + b"\n" for ln in chunk[i : i + 100]))
                fh.flush()
                await asyncio.sleep(0.01)
            if create:  # logrotate "create": rename, then a new file
                log.rename(tmp_path / f"falco.json.{round_}")
                new = log.open("ab")
                await asyncio.sleep(0.5)  # the agent has seen the new file
                # Falco writes to the renamed file until it reopens its output.
                fh.write(b"".join(ln + b"\n" for ln in chunk[900:]))
                fh.close()
                fh = new
            else:  # logrotate "copytruncate"
                await asyncio.sleep(0.5)  # logrotate runs when the tail has caught up
                shutil.copy(log, tmp_path / f"falco.json.{round_}")
                fh.truncate(0)
                fh.seek(0)
        fh.close()
        got = await wait_in_kafka(topic, set(lines))
    finally:
        assert stop(agent) == 0
    values = [m.value for m in got]
    counts = Counter(values)
    missing = [i for i, ln in enumerate(lines) if ln not in counts]
    doubled = [i for i, ln in enumerate(lines) if counts[ln] > 1]
    assert (missing[:20], doubled[:20]) == ([], [])
    assert sorted(values) == sorted(lines)  # every alert, once, byte for byte
    first = got[0]
    assert first.key == b"test-host"
    assert [name for name, _ in first.headers] == ["falco-ingest.agent"]
    lineage = orjson.loads(first.headers[0][1])
    assert (lineage["host"], lineage["version"]) == ("test-host", __version__)
    assert lineage["input"].startswith(f"file:{tmp_path}")
    assert set(lineage) == {"host", "version", "input", "received"}


async def test_agent_sigkill_mid_file_then_restart_loses_nothing(stack, tmp_path, uid):
    topic = f"a-{uid}"
    log = tmp_path / "falco.json"
    lines = make_alerts(30_000, tag=uid)
    log.write_bytes(b"".join(ln + b"\n" for ln in lines))
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        deadline = time.monotonic() + 60
        while len(await read_topic(topic, idle_s=0.3)) < 2000:
            assert time.monotonic() < deadline
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        got = await wait_in_kafka(topic, set(lines))
    finally:
        assert stop(agent) == 0
    assert {m.value for m in got} == set(lines)


async def test_kafka_stopped_while_10000_alerts_arrive(stack, tmp_path, uid):
    pid = process.read_pid(Layout.default().root / "kafka" / "kafka.pid")
    assert pid, "needs the project's local Kafka (falco-ingest stack up)"
    topic = f"a-{uid}"
    log = tmp_path / "falco.json"
    log.touch()
    lines = make_alerts(10_000, tag=uid)
    agent = start_agent(tmp_path, topic, f"file:{log}")
    await wait_tailing(tmp_path)
    os.kill(pid, signal.SIGSTOP)
    try:
        with log.open("ab") as fh:
            for i in range(0, 10_000, 500):
                fh.write(b"".join(ln + b"\n" for ln in lines[i : i + 500]))
                fh.flush()
                await asyncio.sleep(0.05)
        await asyncio.sleep(5)
        assert agent.poll() is None
        spool = sum(p.stat().st_size for p in (tmp_path / "state" / "spool").glob("*.seg"))
        assert spool > 10_000 * 200  # the alerts wait on disk
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        got = await wait_in_kafka(topic, set(lines), timeout=180)
    finally:
        assert stop(agent) == 0
    assert {m.value for m in got} == set(lines)


async def test_concurrent_http_posts_all_reach_kafka(stack, tmp_path, uid):
    topic = f"a-{uid}"
    port = 29800 + int(uid[:4], 16) % 100
    agent = start_agent(tmp_path, topic, f"http://127.0.0.1:{port}")
    alerts = make_alerts(2000, tag=uid)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/ping") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def post(chunk: list[bytes]) -> list[int]:
                out = []
                for a in chunk:
                    async with session.post(
                        f"http://127.0.0.1:{port}/",
                        data=a,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        out.append(r.status)
                return out

            statuses = await asyncio.gather(*(post(alerts[i::40]) for i in range(40)))
            ndjson = make_alerts(10, tag=uid + "nd")
            async with session.post(f"http://127.0.0.1:{port}/", data=b"\n".join(ndjson)) as r:
                assert r.status == 200
            gzipped = make_alerts(3, tag=uid + "gz")  # http_output with compress_uploads
            async with session.post(
                f"http://127.0.0.1:{port}/",
                data=gzip.compress(b"\n".join(gzipped)),
                headers={"Content-Encoding": "gzip"},
            ) as r:
                assert r.status == 200
            # One line past MAX_ALERT_BYTES: noted in the reject file, not held, answered 200.
            async with session.post(
                f"http://127.0.0.1:{port}/", data=b"x" * (5 * 1024 * 1024)
            ) as r:
                assert r.status == 200
            # More alerts in one body than HTTP_MAX_BODY_BYTES (4 MiB): refused whole.
            many = b"\n".join([b'{"rule":"r","output":"' + b"y" * 1000 + b'"}'] * 5000)
            async with session.post(f"http://127.0.0.1:{port}/", data=many) as r:
                assert r.status == 413
        assert {s for chunk in statuses for s in chunk} == {200}
        got = await wait_in_kafka(topic, set(alerts) | set(ndjson) | set(gzipped))
    finally:
        assert stop(agent) == 0
    values = [m.value for m in got]
    assert sorted(values) == sorted(alerts + ndjson + gzipped)
    [noted] = (tmp_path / "state" / "rejected.jsonl").read_bytes().splitlines()
    assert orjson.loads(noted)["bytes"] == 5 * 1024 * 1024


async def test_spool_full_holds_inputs_back_and_loses_nothing(stack, tmp_path, uid):
    topic = f"a-{uid}"
    port = 29900 + int(uid[:4], 16) % 90
    log = tmp_path / "falco.json"
    file_lines = make_alerts(400, tag=uid + "f")
    log.write_bytes(b"".join(ln + b"\n" for ln in file_lines))
    dead_kafka = {
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "INGEST_AGENT__SPOOL_MAX_BYTES": "60000",
    }
    agent = start_agent(tmp_path, topic, f"file:{log}", f"http://127.0.0.1:{port}", **dead_kafka)
    accepted, refused = [], 0
    try:
        await asyncio.sleep(3)
        async with aiohttp.ClientSession() as session:
            for a in make_alerts(50, tag=uid + "h"):
                async with session.post(f"http://127.0.0.1:{port}/", data=a) as r:
                    if r.status == 200:
                        accepted.append(a)
                    else:
                        assert r.status == 503
                        refused += 1
    finally:
        assert stop(agent) == 0
    assert refused > 0, "a full spool must answer 503"
    pos = orjson.loads((tmp_path / "state" / "positions.json").read_bytes())
    assert pos[str(log)]["offset"] < log.stat().st_size  # the file keeps what did not fit
    # Kafka back: everything the agent accepted, and the rest of the file, arrives.
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        got = await wait_in_kafka(topic, set(file_lines) | set(accepted))
    finally:
        assert stop(agent) == 0
    assert set(file_lines) | set(accepted) <= {m.value for m in got}


async def test_oversized_alert_is_kept_in_the_reject_file(stack, tmp_path, uid):
    topic = f"a-{uid}"
    log = tmp_path / "falco.json"
    big = b'{"rule":"r","output":"' + b"x" * 950_000 + b'"}'
    small = make_alerts(3, tag=uid)
    log.write_bytes(b"\n".join([small[0], big, *small[1:]]) + b"\n")
    agent = start_agent(tmp_path, topic, f"file:{log}")
    try:
        got = await wait_in_kafka(topic, set(small))
    finally:
        assert stop(agent) == 0
    assert sorted(m.value for m in got) == sorted(small)
    [noted] = (tmp_path / "state" / "rejected.jsonl").read_bytes().splitlines()
    assert orjson.loads(noted)["bytes"] == len(big)
    assert orjson.loads(noted)["head"] == big[:4096].decode()


def agent_over_stdin(tmp: Path, topic: str, alerts: list[bytes], **env_over: str) -> int:
    """``falco-ingest agent --input stdin`` fed ``alerts`` as Falco's program_output would;
    its exit code once it has read them all and shipped them."""
    env = dict(
        os.environ,
        INGEST_KAFKA__TOPIC=topic,
        INGEST_AGENT__STATE_DIR=str(tmp / "s"),
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="WARNING",
        **env_over,
    )
    cmd = [sys.executable, "-m", "ingest.cli", "agent", "--input", "stdin"]
    stdin = b"\n".join(alerts) + b"\n"
    return subprocess.run(cmd, input=stdin, env=env, timeout=120).returncode


async def test_stdin_program_output_reaches_kafka_and_exits_at_eof(stack, tmp_path, uid):
    topic = f"a-{uid}"
    alerts = make_alerts(300, tag=uid)
    assert agent_over_stdin(tmp_path, topic, alerts) == 0
    got = await wait_in_kafka(topic, set(alerts))
    assert sorted(m.value for m in got) == sorted(alerts)
    assert {orjson.loads(dict(m.headers)["falco-ingest.agent"])["input"] for m in got} == {"stdin"}


async def test_the_agents_lineage_reaches_the_documents(prefix, tmp_path, uid):
    """Agent -> Kafka -> consumer: each document says which host, agent version and input
    read its alert, and when."""
    topic = f"a-{uid}"
    alerts = make_alerts(50, tag=uid)
    before = time.time_ns()
    assert agent_over_stdin(tmp_path, topic, alerts, INGEST_AGENT__HOSTNAME="lineage-host") == 0
    stats = await run_consumer(consumer_settings(topic, prefix), stop_when_idle=3)
    assert stats.indexed == 50
    async with os_client() as client:
        await client.indices.refresh(index=prefix)
        resp = await client.search(index=prefix, body={"size": 100})
    lineages = [h["_source"]["@ingest"]["agent"] for h in resp["hits"]["hits"]]
    assert len(lineages) == 50
    assert {(a["host"], a["version"], a["input"]) for a in lineages} == {
        ("lineage-host", __version__, "stdin")
    }
    received = {parse_rfc3339(a["received"]) for a in lineages}
    assert all(before <= ns <= time.time_ns() for ns in received)


def _certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        run(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


async def test_https_receiver_requires_a_client_certificate(stack, tmp_path, uid):
    import ssl

    certs = _certs(tmp_path)
    topic = f"a-{uid}"
    port = 29700 + int(uid[:4], 16) % 90
    agent = start_agent(
        tmp_path,
        topic,
        f"https://127.0.0.1:{port}",
        INGEST_AGENT__TLS_CERT=str(certs["server.pem"]),
        INGEST_AGENT__TLS_KEY=str(certs["server.key"]),
        INGEST_AGENT__TLS_CLIENT_CA=str(certs["ca.pem"]),
    )
    alert = make_alerts(1, tag=uid)[0]
    with_cert = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    with_cert.load_cert_chain(certs["client.pem"], certs["client.key"])
    without_cert = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.post(
                        f"https://127.0.0.1:{port}/", data=alert, ssl=with_cert
                    ) as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
            refused = False
            try:
                async with session.post(
                    f"https://127.0.0.1:{port}/", data=alert, ssl=without_cert
                ) as r:
                    refused = r.status >= 400
            except (aiohttp.ClientError, ssl.SSLError):
                refused = True
            assert refused, "a client without a certificate must be refused"
        got = await wait_in_kafka(topic, {alert})
    finally:
        assert stop(agent) == 0
    assert [m.value for m in got] == [alert]


async def test_damaged_spool_records_are_skipped_and_the_rest_reach_kafka(stack, tmp_path, uid):
    """A spool the disk damaged while the agent was down (a flipped byte in one alert, a
    zeroed header of another): the agent sends every other alert, byte for byte, and no
    garbage in their place, then exits with its spool empty."""
    topic = f"a-{uid}"
    alerts = make_alerts(300, tag=uid)
    spool = Spool(tmp_path / "state" / "spool", max_bytes=1 << 26)
    for i in range(0, 300, 100):
        assert spool.append([("file:/var/log/falco.json", 1, a) for a in alerts[i : i + 100]])
    spool.close()
    seg = next((tmp_path / "state" / "spool").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    flipped = data.index(alerts[100])
    data[flipped + 5] ^= 0x20
    zeroed = data.index(alerts[200]) - len("file:/var/log/falco.json") - records.HEAD.size
    data[zeroed : zeroed + records.HEAD.size] = bytes(records.HEAD.size)
    seg.write_bytes(bytes(data))
    empty = tmp_path / "falco.json"
    empty.touch()
    env = dict(
        os.environ,
        INGEST_KAFKA__TOPIC=topic,
        INGEST_AGENT__STATE_DIR=str(tmp_path / "state"),
        INGEST_METRICS_PORT="0",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "agent", "--once", "--input", f"file:{empty}"],
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # 0: nothing left in the spool
    assert done.stderr.count("damaged spool records skipped") == 2
    got = await read_topic(topic)  # all of it: nothing more than these
    assert sorted(m.value for m in got) == sorted(alerts[:100] + alerts[101:200] + alerts[201:])
