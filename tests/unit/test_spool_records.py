"""The spool's records on a disk that damages them: skipped, never sent as garbage."""

import logging

from ingest import metrics
from ingest.agent import records
from ingest.agent.records import OLD_HEAD, SEGMENT_MAGIC
from ingest.agent.spool import Spool


def values(spool: Spool) -> list[bytes]:
    return [e.value for e in spool.read(100, 1 << 20)]


def damaged_bytes() -> float:
    return metrics.AGENT_SPOOL_DAMAGED._value.get()


def test_every_flipped_byte_of_a_record_is_caught():
    blob = records.pack(b"file:a", 7, b'{"rule":"r"}')
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        found = records.scan(bytes(bad), new_format=True, complete=True)
        assert found.records == [], i
        assert found.damaged and found.stop == len(bad), i


def test_a_damaged_record_is_skipped_and_those_after_it_are_read(tmp_path, caplog):
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", i, b'{"n":%d}' % i) for i in range(3)])
    sp.close()
    seg = next(tmp_path.glob("*.seg"))
    data = bytearray(seg.read_bytes())
    second = data.index(b'{"n":1}')
    data[second + 2] = ord("X")  # a bit gone bad on disk, inside the second alert
    seg.write_bytes(bytes(data))
    before = damaged_bytes()
    again = Spool(tmp_path, max_bytes=1 << 20)
    with caplog.at_level(logging.ERROR):
        assert values(again) == [b'{"n":0}', b'{"n":2}']
        assert values(again) == [b'{"n":0}', b'{"n":2}']  # read again: logged once
    assert damaged_bytes() - before == records.HEAD.size + 1 + 7
    logged = [r for r in caplog.records if r.getMessage().startswith("damaged spool records")]
    assert len(logged) == 1
    again.ack(again.read(100, 1 << 20)[-1])
    assert values(again) == [] and again.pending_bytes == 0
    again.close()


def test_zeros_and_a_huge_length_in_a_finished_segment_do_not_stall_the_reader(tmp_path):
    sp = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    for i in range(6):
        sp.append([("f", i, b'{"n":%d}' % i + b" " * 60)])
    sp.close()
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    # After a power cut: a page of zeros where the first record was, and a header whose
    # length runs past the end of the file (read as the old format, the reader waited).
    data[len(SEGMENT_MAGIC) : len(SEGMENT_MAGIC) + 40] = bytes(40)
    data[len(SEGMENT_MAGIC) + 40 : len(SEGMENT_MAGIC) + 48] = (
        records.MARKER + b"\x7f\xff\xff\xff\x00\x01"
    )
    first.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    got = []
    while batch := again.read(2, 1 << 20):
        got += [e.value[:7] for e in batch]
        again.ack(batch[-1])
    assert got == [b'{"n":%d}' % i for i in range(6) if i != 0]
    assert again.pending_bytes == 0
    assert again._damage_seen == set()  # the damaged segment is gone, and its marks with it
    again.close()


def test_a_segment_whose_magic_was_cut_short_starts_again(tmp_path):
    (tmp_path / "000000000001.seg").write_bytes(SEGMENT_MAGIC[:3])
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", 1, b"one")])
    assert values(sp) == [b"one"]
    sp.close()
    assert (tmp_path / "000000000001.seg").read_bytes().startswith(SEGMENT_MAGIC)


def test_a_spool_of_the_first_format_is_read_after_an_upgrade(tmp_path):
    old = b"".join(
        OLD_HEAD.pack(len(v), 1, i) + b"f" + v for i, v in enumerate([b"old-0", b"old-1"])
    )
    (tmp_path / "000000000001.seg").write_bytes(old + OLD_HEAD.pack(99, 1, 5) + b"f-torn")
    (tmp_path / "cursor").write_text("1 0")
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.append([("f", 9, b"new-0")])  # into a new segment, of the new format
    assert (tmp_path / "000000000001.seg").read_bytes() == old  # the torn record cut
    assert (tmp_path / "000000000002.seg").read_bytes().startswith(SEGMENT_MAGIC)
    got = []
    while batch := sp.read(100, 1 << 20):
        got += [e.value for e in batch]
        sp.ack(batch[-1])
    assert got == [b"old-0", b"old-1", b"new-0"]
    assert not (tmp_path / "000000000001.seg").exists()
    assert sp.pending_bytes == 0
    sp.close()
