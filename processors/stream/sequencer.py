"""One event order for the whole stream, decided by the data, never by a race.

Items of one job reach it through parallel paths: Kafka partitions read side by side,
by several workers, in several processes, each path scoring at its own speed. What the
job concludes (which copy of a repeat survives, which item is late, what a window
holds) must not depend on which path happened to be faster. So every path ends in one
place, the `Sequencer`, which knows the job's source partitions from the start and
merges their items by event-time progress:

- A partition's **frontier** is the newest event time it has delivered (items of one
  partition arrive in the order it read them: one path, first in first out). A
  partition that has caught up with its broker says so (`PartitionProgress` with a
  `clock`: nothing more is there as of that time, less the producers' delay), and one
  whose input has ended says that (`ended`); its frontier moves on to match.
- An item's **order time** is its event time, or its partition's frontier if that is
  later (an item that came out of order within its partition is placed where it came).
- The **watermark** is the least frontier over all partitions: no item to come can be
  placed before it. Items are let go once the watermark has passed their order time,
  sorted by (order time, partition, arrival), with their order time.

So the items come out in one order that is a function of each partition's contents
alone, whatever the processing speeds: a cluster, one process of several workers and
one process of one worker give the same sequence. Only a caught-up partition's `clock`
is read off a clock, and it matters only once every partition has caught up (a live
stream) or for records written later than the delay allowed for.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
T = TypeVar("T")


class PartitionProgress(msgspec.Struct, frozen=True, gc=False):
    """What a source partition says of itself between records: it has caught up (no
    record at the broker as of `clock`, already less the producers' delay), or its
    input has ended (`ended`)."""

    origin: str
    clock: datetime | None = None
    ended: bool = False


class Sequencer(Generic[T]):
    """Merges the items of the given source partitions (by origin) into one order.

    Picklable, so it lives in Bytewax state; `copy` is its snapshot.

    >>> t = lambda minute: datetime(2024, 3, 14, 14, minute, tzinfo=UTC)
    >>> s = Sequencer(["a", "b"])
    >>> s.add([("a", t(1), "a1"), ("a", t(5), "a5")])  # b has said nothing: wait
    ([], None)
    >>> out, watermark = s.add([("b", t(3), "b3")])
    >>> [item for _, item in out], watermark.minute
    (['a1'], 3)
    >>> out, _ = s.add([PartitionProgress("b", ended=True)])  # a may still send more at 5
    >>> [item for _, item in out], [item for _, item in s.finish()]
    (['b3'], ['a5'])
    """

    def __init__(self, partitions: Iterable[str]) -> None:
        self.frontiers: dict[str, datetime] = dict.fromkeys(partitions, EARLIEST)
        if not self.frontiers:
            raise ValueError("a sequencer needs the source's partitions")
        self.rank = {origin: i for i, origin in enumerate(sorted(self.frontiers))}
        self.watermark = EARLIEST
        # (order time, partition rank, arrival, item): a heap on the first three
        self._held: list[tuple[datetime, int, int, T]] = []
        self._arrivals = 0

    def add(
        self, entries: Iterable[tuple[str, datetime, T] | PartitionProgress]
    ) -> tuple[list[tuple[datetime, T]], datetime | None]:
        """Take (origin, event time, item) entries and progress, in arrival order:
        (the items now let go, each with its order time; the new watermark, if it
        moved)."""
        frontiers = self.frontiers
        for entry in entries:
            if isinstance(entry, PartitionProgress):
                self._progress(entry)
                continue
            origin, at, item = entry
            frontier = frontiers.get(origin)
            if frontier is None:
                raise ValueError(f"an item from {origin!r}, not one of the source's partitions")
            if at > frontier:
                frontiers[origin] = frontier = at
            self._arrivals += 1
            heapq.heappush(self._held, (frontier, self.rank[origin], self._arrivals, item))
        watermark = min(frontiers.values())
        if watermark <= self.watermark:
            return [], None
        self.watermark = watermark
        return list(self._release(watermark)), watermark

    def finish(self) -> list[tuple[datetime, T]]:
        """Every item still held, in order: the input has ended."""
        return list(self._release(None))

    def copy(self) -> Sequencer[T]:
        """A snapshot that later changes do not touch (items are immutable)."""
        twin: Sequencer[T] = Sequencer(self.frontiers)
        twin.frontiers = dict(self.frontiers)
        twin.watermark = self.watermark
        twin._held = list(self._held)
        twin._arrivals = self._arrivals
        return twin

    def _progress(self, progress: PartitionProgress) -> None:
        frontier = self.frontiers.get(progress.origin)
        if frontier is None:
            raise ValueError(f"progress of {progress.origin!r}, not one of the partitions")
        if progress.ended:
            self.frontiers[progress.origin] = LATEST
        elif progress.clock is not None and progress.clock > frontier:
            self.frontiers[progress.origin] = progress.clock

    def _release(self, upto: datetime | None) -> Iterator[tuple[datetime, T]]:
        """Items whose order time is before `upto` (all, if None), in order. An item at
        the watermark itself waits: its partition may still deliver more at that time."""
        held = self._held
        while held and (upto is None or held[0][0] < upto):
            at, _, _, item = heapq.heappop(held)
            yield at, item
