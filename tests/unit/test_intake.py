"""The intake over a spool whose disk refuses writes or whose fsync failed."""

from __future__ import annotations

import logging
import os

import pytest

from ingest.agent.intake import Intake
from ingest.agent.spool import Spool


class NoSpace:
    """A segment writer on a full disk: nothing is written."""

    def __init__(self, real):
        self.real = real

    def tell(self):
        return self.real.tell()

    def write(self, data):
        raise OSError(28, "No space left on device")

    def close(self):
        self.real.close()


def test_a_refused_write_keeps_the_lines_and_writes_a_rejected_one_once(tmp_path, caplog):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=10)
    lines = [b"x" * 50, b'{"a":1}', b'{"b":2}']  # too large, then two alerts
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the tail tries again every 0.2 s
            spool._writer = NoSpace(spool._writer)
            taken = intake.take("file:a", lines)
            lines = lines[taken:]
    assert lines == [b'{"a":1}', b'{"b":2}']  # nothing of them taken, nothing lost
    assert (tmp_path / "rejected").read_bytes() == b"x" * 50 + b"\n"  # once, not thrice
    failed = [r for r in caplog.records if r.getMessage().startswith("spool write failed")]
    assert len(failed) == 1  # one error for the whole episode
    assert intake.take("file:a", lines) == 2  # the disk has room again
    assert [e.value for e in spool.read(10, 1 << 20)] == [b'{"a":1}', b'{"b":2}']
    assert any(r.getMessage() == "spool writes work again" for r in caplog.records)
    spool.close()


def test_a_failed_spool_has_no_room_and_holds_every_input_back(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=1 << 16)
    assert intake.take("file:a", [b'{"a":1}']) == 1

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        spool._roll()
    assert spool.failed is not None and spool.room == 0
    assert intake.take("file:a", [b'{"b":2}']) == 0
    assert not intake.try_put("http", [b'{"c":3}'])
    assert [e.value for e in spool.read(10, 1 << 20)] == [b'{"a":1}']
    spool.close()
