"""The HTTP receiver and the agent's /healthz when the spool's disk fails."""

from __future__ import annotations

import os
import socket

import aiohttp

from ingest import metrics
from ingest.agent.intake import Intake
from ingest.agent.receivers import HttpReceiver
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
    assert reject.read_bytes() == big + b"\n"
    assert str(reject) in synced and str(tmp_path) in synced  # the file, and its new entry
