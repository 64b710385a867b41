"""A topic's event-time windows: which items each window holds, lateness, closing."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from processors.stream.window import Observation, TopicWindows
from tests.helpers import T0

ALIGN = datetime(2000, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # system time


def item(seconds: float, id: str | None = None, sentiment: str = "negative") -> Observation:
    at = T0 + timedelta(seconds=seconds)
    return Observation(id or str(seconds), at, "energy_oil", sentiment, 0.9, "Oil slumps")


def windows(length: int, step: int, lateness: int = 0, grace: int = 0) -> TopicWindows:
    return TopicWindows(
        ALIGN,
        timedelta(seconds=length),
        timedelta(seconds=step),
        timedelta(seconds=lateness),
        timedelta(seconds=grace),
    )


@pytest.mark.parametrize(("length", "step"), [(300, 300), (300, 60), (300, 120), (100, 70)])
def test_each_window_holds_exactly_the_items_in_its_span(length: int, step: int) -> None:
    rng = random.Random(length + step)
    items = sorted((item(rng.uniform(0, 3000)) for _ in range(1500)), key=lambda o: o.published_at)
    w = windows(length, step, lateness=10_000)
    closed, late = w.add(items, NOW)
    closed += w.close_upto(None)
    assert late == [] and closed
    for window in closed:
        expected = sum(1 for o in items if window.start <= o.published_at < window.end)
        assert window.n == expected
        assert (window.start - ALIGN) % timedelta(seconds=step) == timedelta(0)
        assert window.end - window.start == timedelta(seconds=length)
    if length % step == 0:  # then each item is in length / step windows
        assert sum(window.n for window in closed) == len(items) * length // step


def test_a_late_item_is_returned_once_even_when_windows_slide() -> None:
    w = windows(300, 60, lateness=30)
    w.add([item(0), item(400)], NOW)  # without a grace, 400 s moves the watermark to 370 s
    closed, late = w.add([item(100, "late")], NOW)
    assert [o.id for o in late] == ["late"]
    assert closed == []


def test_without_a_grace_each_item_moves_the_watermark_for_the_next() -> None:
    w = windows(300, 300, lateness=30)
    # In one batch, in order: nothing is late, though 0 s is behind 400 s - 30 s.
    closed, late = w.add([item(0), item(400)], NOW)
    assert late == []
    assert [(c.start - T0, c.n) for c in closed] == [(timedelta(0), 1)]
    # Out of order within a batch: the item behind the newest by more than 30 s is late.
    _, late = w.add([item(1000), item(900)], NOW)
    assert [o.id for o in late] == ["900"]


def test_with_a_grace_windows_close_only_once_the_lagged_frontier_passes_them() -> None:
    w = windows(300, 300, lateness=0, grace=5)
    closed, _ = w.add([item(0), item(301), item(50)], NOW)
    assert closed == []  # the frontier of 5 s ago has seen nothing yet
    assert w.due() == NOW + timedelta(seconds=5)
    assert [c.n for c in w.advance(NOW + timedelta(seconds=5))] == [2]
    assert [c.n for c in w.close_upto(None)] == [1]


def test_windows_survive_a_snapshot_and_a_restart() -> None:
    w = windows(300, 300, lateness=0, grace=5)
    w.add([item(0), item(10), item(301)], NOW)
    restored = pickle.loads(pickle.dumps(w.copy())).resumed(NOW + timedelta(hours=1))
    w.add([item(20)], NOW)  # the snapshot does not see later items
    assert restored.advance(NOW + timedelta(hours=1, seconds=4)) == []  # downtime not counted
    (closed,) = restored.advance(NOW + timedelta(hours=1, seconds=5))
    assert closed.n == 2 and closed.topic == "energy_oil"
