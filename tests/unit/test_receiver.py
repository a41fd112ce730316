"""The HTTP receiver and the agent's /healthz when the spool's disk fails."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import aiohttp
import orjson

from ingest import metrics
from ingest.agent.intake import Intake
from ingest.agent.receivers import HttpReceiver, Lines
from ingest.agent.runner import _spool_failure
from ingest.agent.spool import Spool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_alert_is_refused_once_an_fsync_of_the_spool_failed(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=1 << 16)
    port, health_port = _free_port(), _free_port()
    receiver = HttpReceiver("127.0.0.1", port, intake, max_body_bytes=1 << 20)
    await receiver.start()
    health = await metrics.serve(health_port, lambda: True, lambda: _spool_failure(spool))
    url = f"http://127.0.0.1:{port}/"
    real = os.fsync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b'{"rule":"a"}') as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{health_port}/healthz") as r:
                assert r.status == 200
            monkeypatch.setattr(os, "fsync", failing)
            async with http.post(url, data=b'{"rule":"b"}') as r:
                assert (r.status, await r.text()) == (503, "spool failed, retry later\n")
            monkeypatch.setattr(os, "fsync", real)
            async with http.post(url, data=b'{"rule":"c"}') as r:
                assert (r.status, await r.text()) == (503, "spool failed, retry later\n")
            async with http.get(f"http://127.0.0.1:{health_port}/healthz") as r:
                assert r.status == 503
                assert "restart the agent" in await r.text()
    finally:
        assert health is not None
        await health.cleanup()
        assert receiver._runner is not None
        await receiver._runner.cleanup()
        spool.close()
    # What was acknowledged is there; what was refused after the failure was never written.
    again = Spool(tmp_path / "spool", 1 << 20)
    assert [e.value for e in again.read(10, 1 << 20)] == [b'{"rule":"a"}', b'{"rule":"b"}']
    again.close()


async def test_an_alert_too_large_for_kafka_is_fsynced_in_the_reject_file_before_200(
    tmp_path, monkeypatch
):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    reject = tmp_path / "rejected"
    intake = Intake(spool, reject, max_alert_bytes=1024)
    port = _free_port()
    receiver = HttpReceiver("127.0.0.1", port, intake, max_body_bytes=1 << 20)
    await receiver.start()
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    big = b'{"rule":"r","output":"' + b"x" * 2000 + b'"}'
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/", data=big + b'\n{"rule":"a"}') as r:
                assert r.status == 200
    finally:
        assert receiver._runner is not None
        await receiver._runner.cleanup()
        spool.close()
    [record] = [orjson.loads(line) for line in reject.read_bytes().splitlines()]
    assert (record["bytes"], record["head"]) == (len(big), big[:4096].decode())
    assert str(reject) in synced and str(tmp_path) in synced  # the file, and its new entry


async def post_and_read(tmp_path, body: bytes, max_alert_bytes: int = 1024):
    """POST ``body`` to a receiver; its answer, what the spool took, what the reject file
    noted."""
    spool = Spool(tmp_path / "spool", max_bytes=1 << 24)
    reject = tmp_path / "rejected"
    intake = Intake(spool, reject, max_alert_bytes=max_alert_bytes)
    port = _free_port()
    receiver = HttpReceiver("127.0.0.1", port, intake, max_body_bytes=1 << 20)
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/", data=body) as r:
                answer = (r.status, await r.text())
    finally:
        assert receiver._runner is not None
        await receiver._runner.cleanup()
    spooled = [e.value for e in spool.read(100, 1 << 24)]
    spool.close()
    noted = [orjson.loads(x) for x in reject.read_bytes().splitlines()] if reject.exists() else []
    return answer, spooled, noted


async def test_a_pretty_printed_alert_is_one_alert_and_ndjson_is_one_a_line(tmp_path):
    alert = {"rule": "r", "priority": "Warning", "output_fields": {"a": 1, "b": [1, 2]}}
    pretty = json.dumps(alert, indent=2).encode()
    assert pretty.count(b"\n") > 5
    answer, spooled, _ = await post_and_read(tmp_path / "one", pretty + b"\n")
    assert answer[0] == 200 and spooled == [pretty]
    ndjson = b'{"rule":"a"}\n\n{"rule":"b"}\n'
    _, spooled, _ = await post_and_read(tmp_path / "two", ndjson)
    assert spooled == [b'{"rule":"a"}', b'{"rule":"b"}']


async def test_a_line_past_the_limit_in_a_body_is_noted_not_held_and_the_rest_kept(tmp_path):
    long = b'{"rule":"long","output":"' + b"y" * 3_000_000 + b'"}'
    body = b'{"rule":"a"}\n' + long + b'\n{"rule":"b"}'
    answer, spooled, noted = await post_and_read(tmp_path, body, max_alert_bytes=100_000)
    assert answer[0] == 200
    assert spooled == [b'{"rule":"a"}', b'{"rule":"b"}']
    assert [(n["bytes"], n["head"][:15]) for n in noted] == [(len(long), '{"rule":"long",')]
    assert noted[0]["sha256"] == hashlib.sha256(long).hexdigest()


def test_a_long_line_is_never_held_whole():
    split = Lines(max_alert=1000)
    held = []
    for piece in [b"a" * 700, b"b" * 700, b"c" * 5000, b"d\n", b"e\nf"]:
        lines, longs = split.feed(piece)
        held.append(len(split._buf))
        assert lines == ([b"e"] if piece.startswith(b"e") else [])
        if piece == b"d\n":
            assert [x.size for x in longs] == [700 + 700 + 5000 + 1]
    assert max(held) <= 1000
    assert split.end() == ([b"f"], [])
