"""The file tail over a real spool on disk: rotation both ways, the renamed file read until
quiet, restarts from saved positions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from ingest.agent.intake import Intake
from ingest.agent.spool import Spool
from ingest.agent.tail import ROTATED, FileTail, Positions


class Tailing:
    """A FileTail running in the background over its own spool; ``lines()`` is what it took."""

    def __init__(self, tmp: Path, log: Path, rotate_wait_s: float = 60.0) -> None:
        self.spool = Spool(tmp / "spool", max_bytes=1 << 24)
        self.positions = Positions(tmp / "state")
        intake = Intake(self.spool, tmp / "rejected.jsonl", max_alert_bytes=100_000)
        self.tail = FileTail(log, intake, self.positions, rotate_wait_s=rotate_wait_s)
        self.tail.poll_s = 0.02
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tailing:
        self.task = asyncio.create_task(self.tail.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task
        self.spool.close()

    def lines(self) -> list[bytes]:
        return [e.value for e in self.spool.read(1_000_000, 1 << 30)]

    async def until(self, ok: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert time.monotonic() < deadline, f"timed out; took {self.lines()!r}"
            await asyncio.sleep(0.02)


def write(fh, *lines: bytes) -> None:
    fh.write(b"".join(ln + b"\n" for ln in lines))
    fh.flush()


async def test_lines_falco_writes_to_the_renamed_file_are_read(tmp_path):
    log = tmp_path / "falco.json"
    old = log.open("ab")
    async with Tailing(tmp_path, log) as t:
        write(old, b"a1", b"a2")
        await t.until(lambda: len(t.lines()) == 2)
        log.rename(tmp_path / "falco.json.1")  # logrotate "create"
        new = log.open("ab")
        write(new, b"b1")
        await t.until(lambda: b"b1" in t.lines())
        write(old, b"a3")  # Falco has not reopened its output yet
        await asyncio.sleep(0.3)
        write(old, b"a4", b"a5")
        write(new, b"b2")
        old.close()
        await t.until(lambda: len(t.lines()) == 7)
        await asyncio.sleep(0.2)
        new.close()
    assert sorted(t.lines()) == [b"a1", b"a2", b"a3", b"a4", b"a5", b"b1", b"b2"]


async def test_renamed_file_is_closed_after_quiet_period_and_forgotten(tmp_path):
    log = tmp_path / "falco.json"
    with log.open("ab") as fh:
        write(fh, b"a1")
    async with Tailing(tmp_path, log, rotate_wait_s=0.3) as t:
        await t.until(lambda: t.lines() == [b"a1"])
        log.rename(tmp_path / "falco.json.1")
        log.touch()
        await t.until(lambda: len(t.tail.rotated) == 1)
        assert ROTATED.join([str(log), ""]) in t.positions.data
        assert REGISTRY.get_sample_value("ingest_agent_rotated_files_open") == 1
        await t.until(lambda: not t.tail.rotated, timeout=3)
        assert REGISTRY.get_sample_value("ingest_agent_rotated_files_open") == 0
        t.positions.save()
        saved = orjson.loads(t.positions.file.read_bytes())
        assert set(saved) == {str(log)}
        assert saved[str(log)]["ino"] == log.stat().st_ino


async def test_cut_off_last_line_of_a_renamed_file_is_shipped_not_dropped(tmp_path):
    log = tmp_path / "falco.json"
    with log.open("ab") as fh:
        fh.write(b'a1\n{"cut')
    async with Tailing(tmp_path, log, rotate_wait_s=0.2) as t:
        await t.until(lambda: t.lines() == [b"a1"])
        log.rename(tmp_path / "falco.json.1")
        log.touch()
        await t.until(lambda: len(t.lines()) == 2)
        await t.until(lambda: not t.tail.rotated)
    assert t.lines() == [b"a1", b'{"cut']


async def test_restart_finishes_the_renamed_file_and_the_new_one_without_repeats(tmp_path):
    log = tmp_path / "falco.json"
    old = log.open("ab")
    write(old, b"a1")
    async with Tailing(tmp_path, log) as t:
        await t.until(lambda: t.lines() == [b"a1"])
        log.rename(tmp_path / "falco.json.1")
        new = log.open("ab")
        write(new, b"b1")
        await t.until(lambda: len(t.lines()) == 2)
    taken = t.lines()
    # While the agent is down, Falco writes to both (it reopens its output late).
    write(old, b"a2")
    write(new, b"b2")
    old.close()
    new.close()
    again = Tailing(tmp_path, log)  # the same state directory and spool
    again.spool.ack(again.spool.read(1_000_000, 1 << 30)[-1])  # as if run 1 had shipped them
    async with again:
        await again.until(lambda: len(again.lines()) == 2)
        await asyncio.sleep(0.2)
    assert sorted(taken) == [b"a1", b"b1"]
    assert sorted(again.lines()) == [b"a2", b"b2"]


async def test_copytruncate_reads_the_file_again_from_its_start(tmp_path):
    log = tmp_path / "falco.json"
    fh = log.open("ab")
    write(fh, b"a1", b"a2")
    async with Tailing(tmp_path, log) as t:
        await t.until(lambda: len(t.lines()) == 2)
        (tmp_path / "falco.json.1").write_bytes(log.read_bytes())
        fh.truncate(0)
        fh.seek(0)
        write(fh, b"b1")
        await t.until(lambda: len(t.lines()) == 3)
        fh.close()
        assert not t.tail.rotated
    assert t.lines() == [b"a1", b"a2", b"b1"]


async def test_positions_are_saved_only_once_the_spool_has_the_lines_on_disk(tmp_path, monkeypatch):
    """After a machine crash the file is read again from a position the spool's fsynced
    records cover, never past alerts the crash took from the page cache."""
    log = tmp_path / "falco.json"
    log.write_bytes(b'{"n":1}\n{"n":2}\n')
    events: list[str] = []
    real_fsync, real_write = os.fsync, Positions.write

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
            events.append("spool fsync")
        real_fsync(fd)

    def write(self: Positions, version: int, blob: bytes) -> None:
        if version > self._written:
            events.append("positions")
        real_write(self, version, blob)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Positions, "write", write)
    async with Tailing(tmp_path, log) as t:
        await t.until(lambda: len(t.lines()) == 2)
        await t.until(lambda: "positions" in events)
        with log.open("ab") as fh:
            fh.write(b'{"n":3}\n')
        await t.until(lambda: events.count("positions") == 2)
    assert events[:4] == ["spool fsync", "positions", "spool fsync", "positions"]


async def test_positions_stay_where_they_were_when_the_spool_fsync_fails(tmp_path, monkeypatch):
    log = tmp_path / "falco.json"
    log.write_bytes(b'{"n":1}\n')
    async with Tailing(tmp_path, log) as t:
        await t.until(lambda: (tmp_path / "state" / "positions.json").exists())
        await t.until(lambda: str(log) in orjson.loads(t.positions.file.read_bytes()))

        def failing(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", failing)
        with log.open("ab") as fh:
            fh.write(b'{"n":2}\n')
        await t.until(lambda: len(t.lines()) == 2)
        await asyncio.sleep(0.3)  # several rounds of the tail's loop
        saved = orjson.loads(t.positions.file.read_bytes())[str(log)]["offset"]
        assert saved == len(b'{"n":1}\n')  # not past the alert the disk may not have
        monkeypatch.undo()


async def test_a_position_another_input_moves_during_the_fsync_waits_for_the_next_save(
    tmp_path, monkeypatch
):
    """Inputs share the positions: one moved while another's fsync runs is not covered by
    that fsync, so it is not written with it."""
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    positions = Positions(tmp_path / "state")
    tail = FileTail(tmp_path / "a.json", Intake(spool, tmp_path / "rejected", 1024), positions)
    positions.data["a"] = {"offset": 8}
    positions.changed()
    real_sync = spool.sync

    async def sync() -> None:
        positions.data["b"] = {"offset": 9}  # the other input, meanwhile
        positions.changed()
        await real_sync()

    monkeypatch.setattr(spool, "sync", sync)
    await tail._save()
    assert orjson.loads(positions.file.read_bytes()) == {"a": {"offset": 8}}
    assert positions.dirty  # "b" goes with the next save, after its own fsync
    spool.close()


async def test_a_line_past_the_limit_is_noted_not_held_and_the_lines_after_it_are_read(
    tmp_path,
):
    """A 5 MB line without a newline yet is never held whole (memory stays bounded) and,
    once it ends, is noted in the reject file; the alerts after it are read."""
    log = tmp_path / "falco.json"
    long = b'{"rule":"long","output":"' + b"z" * 5_000_000
    with log.open("ab") as fh:
        write(fh, b'{"n":1}')
        fh.write(long)
        fh.flush()
        async with Tailing(tmp_path, log) as t:
            await t.until(lambda: t.tail.current is not None and t.tail.current.long is not None)
            f = t.tail.current
            assert len(f.buf) <= 100_000 and f.long.size > 100_000
            await t.until(lambda: f.long.size == len(long))
            fh.write(b'"}\n')
            write(fh, b'{"n":2}')
            fh.flush()
            await t.until(lambda: len(t.lines()) == 2)
    assert t.lines() == [b'{"n":1}', b'{"n":2}']
    [noted] = [orjson.loads(x) for x in (tmp_path / "rejected.jsonl").read_bytes().splitlines()]
    assert noted["bytes"] == len(long) + 2 and noted["offset"] == len(b'{"n":1}\n')
    assert noted["head"].startswith('{"rule":"long"') and noted["input"] == f"file:{log}"
    saved = orjson.loads(t.positions.file.read_bytes())[str(log)]["offset"]
    assert saved == log.stat().st_size  # past the long line and the alert after it


async def test_once_stops_at_a_partial_last_line_and_says_so(tmp_path):
    log = tmp_path / "falco.json"
    log.write_bytes(b'{"n":1}\n{"n":2')
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    positions = Positions(tmp_path / "state")
    intake = Intake(spool, tmp_path / "rejected.jsonl", max_alert_bytes=1000)
    tail = FileTail(log, intake, positions, once=True)
    await tail.run(asyncio.Event())
    assert [e.value for e in spool.read(10, 1 << 20)] == [b'{"n":1}']
    assert tail.partial_lines == [(8, 6)]
    assert orjson.loads(positions.file.read_bytes())[str(log)]["offset"] == 8
    spool.close()


def test_unreadable_positions_are_said_at_error_counted_and_kept(tmp_path, caplog):
    state = tmp_path / "state"
    state.mkdir()
    (state / "positions.json").write_bytes(b'{"/var/log/falco.json": {"offs')
    before = (
        REGISTRY.get_sample_value("ingest_agent_state_unreadable_total", {"file": "positions"}) or 0
    )
    with caplog.at_level("ERROR"):
        positions = Positions(state)
    assert positions.data == {}
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "positions unreadable; every file is read again from its start (the consumer stores "
        "the repeats once); the file is kept for inspection"
    ]
    assert (state / "positions.unreadable").read_bytes().startswith(b'{"/var/log')
    after = REGISTRY.get_sample_value("ingest_agent_state_unreadable_total", {"file": "positions"})
    assert after == before + 1


async def test_a_saved_position_of_another_shape_reads_that_file_from_its_start(tmp_path, caplog):
    log = tmp_path / "falco.json"
    log.write_bytes(b'{"n":1}\n')
    state = tmp_path / "state"
    state.mkdir()
    (state / "positions.json").write_bytes(orjson.dumps({str(log): {"offset": "8"}}))
    with caplog.at_level("ERROR"):
        async with Tailing(tmp_path, log) as t:
            await t.until(lambda: t.lines() == [b'{"n":1}'])
    assert any("saved position is unreadable" in r.getMessage() for r in caplog.records)
