"""The lagged event-time frontier that de-duplication and windows order items by, and
the buffer that holds items until it has passed them."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from processors.stream.frontier import EARLIEST, Frontier, ReorderBuffer

T = datetime(2024, 3, 14, 14, tzinfo=UTC)  # event time
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # system time
GRACE = timedelta(seconds=5)


def s(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def m(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def test_it_shows_the_newest_event_time_as_it_stood_a_grace_period_ago() -> None:
    f = Frontier(GRACE)
    f.observe(m(0), s(0))
    f.observe(m(30), s(1))  # a fast path runs half an hour of event time ahead
    assert f.at(s(4.9)) == EARLIEST
    assert f.at(s(5)) == m(0)
    assert f.at(s(6)) == m(30)  # a slow path's item at m(10) arriving before s(6) is in order


def test_it_advances_with_system_time_while_nothing_newer_arrives() -> None:
    f = Frontier(GRACE)
    f.observe(m(0), s(0))
    assert f.at(s(65)) == m(1)  # a quiet live stream still closes its windows
    f.observe(m(0.5), s(65))  # behind the advanced frontier: no step back
    assert f.at(s(66)) == m(0) + timedelta(seconds=61)


def test_due_is_when_the_frontier_reaches_an_event_time() -> None:
    f = Frontier(GRACE)
    assert f.due(m(0)) is None
    f.observe(m(0), s(0))
    f.observe(m(30), s(1))
    assert f.due(m(0)) == s(5)
    assert f.due(m(10)) == s(6)
    assert f.due(m(31)) == s(66)  # m(30) seen at s(1), then one event minute per minute
    for when in (s(5), s(6), s(66)):
        assert f.at(when) >= m(0)


def test_a_restart_does_not_count_the_downtime() -> None:
    f = Frontier(GRACE)
    f.observe(m(0), s(0))
    f.observe(m(30), s(1))
    restored = pickle.loads(pickle.dumps(f)).resumed(s(3600))
    assert restored.at(s(3600)) == EARLIEST  # as at s(1) + a moment: m(30) not visible yet
    assert restored.at(s(3605)) == m(30)


def test_many_items_keep_the_history_short() -> None:
    f = Frontier(GRACE)
    for i in range(100_000):
        f.observe(m(i / 1000), s(i / 10_000))  # ten seconds at 10,000 items a second
        f.at(s(i / 10_000))
    assert len(f._steps) <= 70
    assert m(49) < f.at(s(10)) <= m(100)


def test_the_reorder_buffer_lets_items_of_racing_paths_go_in_event_order() -> None:
    rng = random.Random(2)
    # Three paths, each in event order, interleaved at random, with ties across paths.
    paths = [[(m(rng.randrange(600) / 10), f"{p}-{i}") for i in range(200)] for p in range(3)]
    for path in paths:
        path.sort()
    arrivals = []
    while any(paths):
        path = rng.choice([p for p in paths if p])
        arrivals.append(path.pop(0))
    b: ReorderBuffer[tuple[datetime, str]] = ReorderBuffer(GRACE)
    released = []
    for i in range(0, len(arrivals), 7):
        b.add(arrivals[i : i + 7], s(i / 100))
        released += b.release(s(i / 100))
    assert len(b) + len(released) == len(arrivals)
    held, snapshot = len(b), b.copy()
    released += b.release_all()
    assert len(b) == 0 and held > 0 and len(snapshot) == held  # a snapshot stays as it was
    times = [at for at, _ in released]
    assert times == sorted(times)
    # Ties keep their arrival order.
    order = {entry: n for n, entry in enumerate(arrivals)}
    for earlier, later in pairwise(released):
        if earlier[0] == later[0]:
            assert order[earlier] < order[later]


def test_the_reorder_buffer_holds_items_a_grace_period_and_survives_a_snapshot() -> None:
    b: ReorderBuffer[tuple[datetime, str]] = ReorderBuffer(GRACE)
    assert b.due() is None
    b.add([(m(1), "b"), (m(0), "a")], s(0))
    assert b.due() == s(5)
    assert b.release(s(4)) == []
    restored = pickle.loads(pickle.dumps(b.copy())).resumed(s(100))
    assert [name for _, name in b.release(s(5))] == ["a", "b"]
    # Seen 4 s before the snapshot, so due 1 s after the restart: the downtime does not count.
    assert restored.release(s(100.9)) == []
    assert [name for _, name in restored.release(s(101))] == ["a", "b"]
