"""How far a stream has got in event time, as it stood a grace period of processing ago.

Items of one stream reach a keyed step through parallel paths (Kafka partitions read
side by side, workers exchanging items), so they arrive out of event order by as much
as the slowest path lags the fastest. In a backfill that lag is a fraction of a second
of processing but hours of event time. Judging order against the frontier as it was
`grace` seconds ago, instead of now, puts such items back in order and keeps them from
being late, as long as the paths differ by less than `grace`.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

EARLIEST = datetime.min.replace(tzinfo=UTC)


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
