"""The intake over a spool whose disk refuses writes or whose fsync failed."""

from __future__ import annotations

import logging
import os

import orjson
import pytest

from ingest.agent.intake import Intake
from ingest.agent.records import SEGMENT_MAGIC
from ingest.agent.spool import Spool
from tests.unit.disks import FullDisk


def rejected_sizes(path, skip=0):
    """The sizes the reject file notes, one JSON record a line (after ``skip`` lines)."""
    return [orjson.loads(line)["bytes"] for line in path.read_bytes().splitlines()[skip:]]


def test_a_reject_record_says_what_where_how_large_and_its_first_bytes(tmp_path):
    import hashlib

    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=10)
    line = b'{"rule":"r",' + b"x" * 9000 + b"}"
    assert intake.take("file:/var/log/falco.json", [line]) == 1
    [record] = [orjson.loads(x) for x in (tmp_path / "rejected").read_bytes().splitlines()]
    assert record["input"] == "file:/var/log/falco.json" and record["reason"] == "too_large"
    assert record["bytes"] == len(line)
    assert record["sha256"] == hashlib.sha256(line).hexdigest()
    assert record["head"] == line[:4096].decode()
    spool.close()


def test_a_refused_write_keeps_the_lines_and_writes_a_rejected_one_once(tmp_path, caplog):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=10)
    lines = [b"x" * 50, b'{"a":1}', b'{"b":2}']  # too large, then two alerts
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the tail tries again every 0.2 s
            spool._writer = FullDisk(spool._writer)
            taken = intake.take("file:a", lines)
            lines = lines[taken:]
    assert lines == [b'{"a":1}', b'{"b":2}']  # nothing of them taken, nothing lost
    assert rejected_sizes(tmp_path / "rejected") == [50]  # once, not thrice
    failed = [r for r in caplog.records if r.getMessage().startswith("spool write failed")]
    assert len(failed) == 1  # one error for the whole episode
    # and not a second one blaming Kafka: the spool has room, the disk refused
    assert not [r for r in caplog.records if r.getMessage().startswith("spool full")]
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


def test_a_refused_reject_file_write_holds_the_input_back(tmp_path, monkeypatch, caplog):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    reject = tmp_path / "rejected"
    reject.write_bytes(b"earlier\n")
    intake = Intake(spool, reject, max_alert_bytes=10)
    lines = [b"x" * 50, b'{"a":1}']
    real_write = os.write

    def half_written(fd, data):  # a disk that fills up during the write: half lands
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_written)
    with caplog.at_level(logging.WARNING):
        assert intake.take("file:a", lines) == 0  # the agent goes on; nothing taken
        assert intake.take("file:a", lines) == 0
    assert reject.read_bytes() == b"earlier\n"  # no half line left
    assert spool.read(10, 1 << 20) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["reject file write failed; the input is held back"]  # not "spool full"
    monkeypatch.undo()
    assert intake.take("file:a", lines) == 2
    assert reject.read_bytes().startswith(b"earlier\n")
    assert rejected_sizes(reject, skip=1) == [50]
    assert [e.value for e in spool.read(10, 1 << 20)] == [b'{"a":1}']
    spool.close()


def test_a_large_line_after_alerts_waits_for_them_to_be_spooled(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=10)
    lines = [b'{"a":1}', b"x" * 50, b'{"b":2}']
    assert intake.take("file:a", lines) == 1
    assert intake.take("file:a", lines[1:]) == 2
    assert rejected_sizes(tmp_path / "rejected") == [50]
    assert [e.value for e in spool.read(10, 1 << 20)] == [b'{"a":1}', b'{"b":2}']
    spool.close()


def test_try_put_on_a_full_spool_writes_no_reject_until_it_takes_the_batch(tmp_path):
    record = Spool.record_size("http", b'{"a":1}')
    spool = Spool(tmp_path / "spool", max_bytes=2 * record + len(SEGMENT_MAGIC) + record // 2)
    intake = Intake(spool, tmp_path / "rejected", max_alert_bytes=10)
    assert intake.try_put("http", [b'{"a":1}', b'{"b":2}'])
    batch = [b"x" * 50, b'{"c":3}']
    assert not intake.try_put("http", batch)  # full: answered 503, retried
    assert not (tmp_path / "rejected").exists()
    spool.ack(spool.read(10, 1 << 20)[-1])
    assert intake.try_put("http", batch)
    assert rejected_sizes(tmp_path / "rejected") == [50]
    spool.close()
