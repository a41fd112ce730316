import asyncio
import os

import pytest

from ingest.agent.spool import Spool
from tests.unit.disks import FullDisk


def test_append_read_ack_in_order(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    assert sp.append([("file:a", 1, b"one"), ("file:a", 2, b"two")])
    assert sp.append([("http", 3, b"three")])
    got = sp.read(10, 1 << 20)
    assert [e.value for e in got] == [b"one", b"two", b"three"]
    assert [e.input for e in got] == ["file:a", "file:a", "http"]
    sp.ack(got[1])
    assert [e.value for e in sp.read(10, 1 << 20)] == [b"three"]
    sp.ack(sp.read(10, 1 << 20)[-1])
    assert sp.read(10, 1 << 20) == []
    assert sp.pending_bytes == 0
    sp.close()


def test_survives_restart_without_losing_or_repeating(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", i, b"v%d" % i) for i in range(5)])
    sp.ack(sp.read(2, 1 << 20)[-1])
    sp.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert [e.value for e in again.read(10, 1 << 20)] == [b"v2", b"v3", b"v4"]
    assert again.pending_bytes > 0
    again.close()


def test_full_spool_refuses_whole_batches(tmp_path):
    sp = Spool(tmp_path, max_bytes=100)
    assert sp.append([("f", 0, b"x" * 40)])
    assert not sp.append([("f", 0, b"y" * 40), ("f", 0, b"z" * 40)])
    assert [e.value for e in sp.read(10, 1000)] == [b"x" * 40]
    sp.ack(sp.read(10, 1000)[-1])
    assert sp.append([("f", 0, b"y" * 40)])
    sp.close()


def test_segments_roll_and_old_ones_are_deleted(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    for i in range(10):
        sp.append([("f", i, b"%02d" % i + b"-" * 30)])
    assert len(list(tmp_path.glob("*.seg"))) > 3
    seen = []
    while batch := sp.read(3, 1 << 20):
        seen += [e.value[:2] for e in batch]
        sp.ack(batch[-1])
    assert seen == [b"%02d" % i for i in range(10)]
    assert len(list(tmp_path.glob("*.seg"))) == 1
    sp.close()


def _fsynced(monkeypatch) -> list[str]:
    """Record the file each fsync is for."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


async def test_callers_waiting_together_share_one_fsync(tmp_path, monkeypatch):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    seen = _fsynced(monkeypatch)
    sp.append([("http", 0, b"a")])
    await asyncio.gather(*(sp.sync() for _ in range(20)))
    assert len(seen) == 1
    await sp.sync()  # nothing new since
    assert len(seen) == 1
    sp.append([("http", 0, b"b")])
    await sp.sync()
    assert len(seen) == 2
    sp.close()


async def test_a_full_segment_is_fsynced_before_the_next_one_starts(tmp_path, monkeypatch):
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    seen = _fsynced(monkeypatch)
    sp.append([("http", 0, b"x" * 60)])  # fills the first segment
    first = str(sp._path(1))
    sp.append([("http", 0, b"y")])  # goes to the second
    assert seen[:2] == [first, str(tmp_path)]  # the full one, then the directory
    await sp.sync()
    assert seen[-1] == str(sp._path(2))
    sp.close()


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x00\x00\x64\x00\x01" + b"partial",  # the machine stopped during the next write
        bytes(4096),  # the file grew, its last page never reached the disk
    ],
    ids=["record cut short", "page of zeros"],
)
def test_what_follows_the_last_whole_record_is_cut_at_restart(tmp_path, tail):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", 1, b"one"), ("f", 2, b"two")])
    sp.close()
    seg = next(tmp_path.glob("*.seg"))
    whole = seg.stat().st_size
    with seg.open("ab") as fh:
        fh.write(tail)
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert seg.stat().st_size == whole
    again.append([("f", 3, b"three")])
    assert [e.value for e in again.read(10, 1 << 20)] == [b"one", b"two", b"three"]
    again.close()


def test_a_full_disk_refuses_the_batch_and_leaves_no_half_record(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", 1, b"one")])
    before = next(tmp_path.glob("*.seg")).stat().st_size
    sp._writer = FullDisk(sp._writer)
    assert not sp.append([("f", 2, b"two" * 100)])
    assert next(tmp_path.glob("*.seg")).stat().st_size == before
    assert sp.append([("f", 3, b"three")])  # room again
    assert [e.value for e in sp.read(10, 1 << 20)] == [b"one", b"three"]
    sp.close()


def test_a_segment_that_cannot_be_made_refuses_the_batch_and_the_spool_goes_on(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    sp.append([("http", 0, b"x" * 60)])  # fills the first segment
    blocker = tmp_path / "000000000002.seg"
    blocker.mkdir()  # the next segment cannot be opened (as with no inodes or fds left)
    assert not sp.append([("http", 0, b"refused")])  # not accepted: the caller holds it
    assert sp.failed is None
    blocker.rmdir()
    assert sp.append([("http", 0, b"y")])  # the roll is tried again and works
    assert sp._write_seg == 2
    sp.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    seen = []
    while got := again.read(10, 1 << 20):  # a read stops at the end of a segment
        seen += [e.value for e in got]
        again.ack(got[-1])
    assert seen == [b"x" * 60, b"y"]
    again.close()


def _failing_fsync(monkeypatch) -> list[int]:
    """os.fsync fails with EIO; returns the list of calls made to it."""
    calls: list[int] = []

    def failing(fd):
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    return calls


def test_a_failed_fsync_at_a_segment_roll_stops_the_spool_until_a_restart(tmp_path, monkeypatch):
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    sp.append([("f", 0, b"x" * 60)])  # fills the first segment
    real = os.fsync
    calls = _failing_fsync(monkeypatch)
    assert not sp.append([("f", 0, b"refused")])
    monkeypatch.setattr(os, "fsync", real)
    # A second fsync could succeed over pages the kernel dropped: it is not tried.
    assert not sp.append([("f", 0, b"later")])
    assert len(calls) == 1 and isinstance(sp.failed, OSError)
    sp.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=50)
    assert again.failed is None
    assert again.append([("f", 0, b"after restart")])
    seen = []
    while got := again.read(10, 1 << 20):
        seen += [e.value for e in got]
        again.ack(got[-1])
    assert seen == [b"x" * 60, b"after restart"]
    again.close()


async def test_a_failed_sync_is_never_acknowledged_later_by_a_second_fsync(tmp_path, monkeypatch):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    assert sp.append([("http", 0, b"one")])
    real = os.fsync
    calls = _failing_fsync(monkeypatch)
    with pytest.raises(OSError):
        await sp.sync()
    monkeypatch.setattr(os, "fsync", real)
    with pytest.raises(OSError):  # "one" is still not known to be on disk
        await sp.sync()
    assert not sp.append([("http", 0, b"two")])
    assert len(calls) == 1
    sp.close()


def test_an_unreadable_cursor_is_said_at_error_and_the_spool_sent_again(tmp_path, caplog):
    from prometheus_client import REGISTRY

    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([("file:a", 1, b'{"n":1}'), ("file:a", 1, b'{"n":2}')])
    spool.ack(spool.read(10, 1 << 20)[0])
    spool.close()
    (tmp_path / "cursor").write_text("garbage")
    before = (
        REGISTRY.get_sample_value("ingest_agent_state_unreadable_total", {"file": "spool_cursor"})
        or 0
    )
    with caplog.at_level("ERROR"):
        again = Spool(tmp_path, max_bytes=1 << 20)
    assert [e.value for e in again.read(10, 1 << 20)] == [b'{"n":1}', b'{"n":2}']
    assert any(r.getMessage().startswith("spool cursor unreadable") for r in caplog.records)
    after = REGISTRY.get_sample_value(
        "ingest_agent_state_unreadable_total", {"file": "spool_cursor"}
    )
    assert after == before + 1
    again.close()
