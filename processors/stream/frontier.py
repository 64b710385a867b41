"""How far a stream has got in event time, as it stood a grace period of processing ago.

Items of one stream reach a keyed step through parallel paths (Kafka partitions read
side by side, workers exchanging items), so they arrive out of event order by as much
as the slowest path lags the fastest. In a backfill that lag is a fraction of a second
of processing but hours of event time. Judging order against the frontier as it was
`grace` seconds ago, instead of now, puts such items back in order and keeps them from
being late, as long as the paths differ by less than `grace`. `Frontier` is that
judgement; `ReorderBuffer` holds items until it has passed them (de-duplication), and
windows take their watermark from it.
"""

from __future__ import annotations

import copy
from bisect import bisect_right
from collections import deque
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Generic, TypeVar

EARLIEST = datetime.min.replace(tzinfo=UTC)
E = TypeVar("E", bound=tuple[Any, ...])  # (event time, ...)


class Frontier:
    """The largest event time seen, as of `grace` seconds ago (system time).

    Like Bytewax's `EventClock` it also advances with system time while nothing newer
    arrives, so a quiet live stream still moves on. Time that passes while the job is
    down does not count (see `resumed`): a restarted job reads its backlog in order
    instead of finding it behind. Picklable, so it can live in Bytewax state.

    >>> t0, now = datetime(2024, 3, 14, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    >>> f = Frontier(timedelta(seconds=5))
    >>> f.observe(t0, now)
    >>> f.at(now + timedelta(seconds=4)) == EARLIEST
    True
    >>> f.at(now + timedelta(seconds=6)) - t0
    datetime.timedelta(seconds=1)
    """

    def __init__(self, grace: timedelta) -> None:
        self.grace = grace
        # (system time, frontier at that time), both rising; coarsened to ticks so the
        # history stays short however fast items come.
        self._steps: deque[tuple[datetime, datetime]] = deque()
        self._tick = grace / 64
        self._now = EARLIEST

    def observe(self, at: datetime, now: datetime) -> None:
        """Note an item with event time `at`, seen at system time `now`."""
        now = self._advance(now)
        if self._steps:
            since, latest = self._steps[-1]
            if at <= latest + (now - since):
                return
            if now - since < self._tick:
                # Not yet visible (tick < grace), so moving it up keeps `at` monotonic.
                self._steps[-1] = (since, at)
                return
        self._steps.append((now, at))

    def at(self, now: datetime) -> datetime:
        """The frontier as it stood `grace` before `now`; EARLIEST before anything."""
        when = self._advance(now) - self.grace
        while len(self._steps) > 1 and self._steps[1][0] <= when:
            self._steps.popleft()
        if not self._steps or self._steps[0][0] > when:
            return EARLIEST
        since, frontier = self._steps[0]
        return frontier + (when - since)

    def due(self, at: datetime) -> datetime | None:
        """The system time at which `self.at(...)` reaches `at`; None before any item."""
        steps = list(self._steps)
        for i, (since, frontier) in enumerate(steps):
            if frontier >= at:
                return since + self.grace
            reached = since + (at - frontier)
            if i + 1 == len(steps) or reached < steps[i + 1][0]:
                return reached + self.grace
        return None

    def resumed(self, now: datetime) -> Frontier:
        """This frontier restored from a snapshot: the downtime is taken out."""
        down = now - self._now
        if down > timedelta(0):
            self._steps = deque((since + down, frontier) for since, frontier in self._steps)
            self._now = now
        return self

    def _advance(self, now: datetime) -> datetime:
        """System time never goes back here, even when the clock does."""
        self._now = max(self._now, now)
        return self._now


class ReorderBuffer(Generic[E]):
    """Holds timed entries (tuples whose first field is the event time) until the
    lagged frontier has passed them, then lets them go in event order; ties keep
    their arrival order.

    Entries mostly arrive nearly in order, so holding them is an append (or a merge
    into the tail) and letting them go moves a start index: no step rescans the
    whole backlog, which at tens of thousands of items a second is large.

    >>> t0, now = datetime(2024, 3, 14, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    >>> b = ReorderBuffer(timedelta(seconds=5))
    >>> b.add([(t0 + timedelta(minutes=1), "b"), (t0, "a")], now)
    >>> b.release(now), [name for _, name in b.release(now + timedelta(seconds=5))]
    ([], ['a', 'b'])
    """

    def __init__(self, grace: timedelta) -> None:
        self.frontier = Frontier(grace)
        self._held: list[E] = []  # sorted by event time; those before `_first` are gone
        self._first = 0

    def __len__(self) -> int:
        return len(self._held) - self._first

    def add(self, entries: list[E], now: datetime) -> None:
        """Hold entries seen at system time `now`."""
        if not entries:
            return
        entries = sorted(entries, key=_event_time)  # stable: ties stay in arrival order
        self.frontier.observe(entries[-1][0], now)
        held = self._held
        at = bisect_right(held, entries[0][0], lo=self._first, key=_event_time)
        if at == len(held):
            held += entries
        else:  # some overtook held entries: merge them into the tail they belong in
            held[at:] = sorted(held[at:] + entries, key=_event_time)

    def release(self, now: datetime) -> list[E]:
        """The entries the frontier at `now` has passed, in event order."""
        return self._release_upto(self.frontier.at(now))

    def release_all(self) -> list[E]:
        """Every held entry, in event order: the stream has ended."""
        return self._release_upto(None)

    def due(self) -> datetime | None:
        """The system time at which the oldest held entry is let go; None when empty."""
        return self.frontier.due(self._held[self._first][0]) if len(self) else None

    def resumed(self, now: datetime) -> ReorderBuffer[E]:
        """This buffer restored from a snapshot: the downtime is taken out."""
        self.frontier.resumed(now)
        return self

    def copy(self) -> ReorderBuffer[E]:
        """A snapshot that later changes do not touch (entries are immutable)."""
        twin: ReorderBuffer[E] = ReorderBuffer(self.frontier.grace)
        twin.frontier = copy.deepcopy(self.frontier)
        twin._held = self._held[self._first :]
        return twin

    def _release_upto(self, upto: datetime | None) -> list[E]:
        held, first = self._held, self._first
        cut = len(held) if upto is None else bisect_right(held, upto, lo=first, key=_event_time)
        out = held[first:cut]
        if 2 * cut > len(held):
            # Drop the released head once it is the larger part: amortised O(1) an item,
            # and released entries never keep more messages alive than are held.
            del held[:cut]
            cut = 0
        self._first = cut
        return out


_event_time = itemgetter(0)
