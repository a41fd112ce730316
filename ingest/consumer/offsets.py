"""Which offsets may be committed: the highest contiguous done one, per partition."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition


class Mark:
    """One batch's claim on a partition: done once its records are stored or dead-lettered."""

    __slots__ = ("done", "next_offset")

    def __init__(self, next_offset: int) -> None:
        self.next_offset = next_offset
        self.done = False


class OffsetTracker:
    """Batches are handed out in fetch order, so each partition's marks are in offset order;
    a mark can be committed only when it and every mark before it are done."""

    def __init__(self) -> None:
        self._marks: dict[TopicPartition, deque[Mark]] = {}
        self._ready: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def add(self, tp: TopicPartition, next_offset: int) -> Mark:
        mark = Mark(next_offset)
        self._marks.setdefault(tp, deque()).append(mark)
        return mark

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets ready to commit that differ from what was last committed."""
        for tp, marks in self._marks.items():
            while marks and marks[0].done:
                self._ready[tp] = marks.popleft().next_offset
        return {tp: o for tp, o in self._ready.items() if o != self._committed.get(tp)}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def pending(self, tp: TopicPartition | None = None) -> int:
        if tp is not None:
            return len(self._marks.get(tp, ()))
        return sum(len(m) for m in self._marks.values())

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._marks.pop(tp, None)
            self._ready.pop(tp, None)
            self._committed.pop(tp, None)
