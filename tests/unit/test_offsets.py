from aiokafka import TopicPartition

from ingest.consumer.offsets import OffsetTracker

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_commits_only_the_contiguous_done_prefix():
    tr = OffsetTracker()
    a, b, c = tr.add(P0, 10), tr.add(P0, 20), tr.add(P0, 30)
    b.done = True
    assert tr.committable() == {}  # 0..9 not done yet
    a.done = True
    assert tr.committable() == {P0: 20}
    tr.committed({P0: 20})
    assert tr.committable() == {}
    c.done = True
    assert tr.committable() == {P0: 30}


def test_partitions_are_independent_and_failed_commits_are_offered_again():
    tr = OffsetTracker()
    a0, a1 = tr.add(P0, 5), tr.add(P1, 7)
    a1.done = True
    assert tr.committable() == {P1: 7}
    # the commit failed: nothing recorded, so the same offset is offered again
    assert tr.committable() == {P1: 7}
    a0.done = True
    assert tr.committable() == {P0: 5, P1: 7}


def test_forget_revoked_partitions():
    tr = OffsetTracker()
    m = tr.add(P0, 5)
    tr.forget([P0])
    m.done = True
    assert tr.committable() == {}
    assert tr.pending() == 0
