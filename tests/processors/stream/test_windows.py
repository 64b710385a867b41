"""Every key's event-time windows: which items each window holds, lateness, closing."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from processors.envelope.message import Message, Result
from processors.stream.stories import StoryIndex
from processors.stream.window import (
    MARKET,
    MAX_SOURCES,
    OTHER_SOURCES,
    StreamWindows,
    bounded_sources,
)
from tests.helpers import T0, message

ALIGN = datetime(2000, 1, 1, tzinfo=UTC)


def scored(
    seconds: float,
    id: str | None = None,
    topic: str = "energy_oil",
    text: str = "Oil slumps",
    tickers: str = "",
) -> tuple[datetime, Message]:
    """A scored message at T0 + `seconds`, placed at its own event time."""
    at = T0 + timedelta(seconds=seconds)
    trailer = (
        Result("t", "topic", topic, {topic: 1.0}, "m", 0.0),
        Result("s", "sentiment", "negative", {"negative": 0.9}, "m", 0.0),
        Result("e", "entities", tickers, {t: 1.0 for t in tickers.split(",") if t}, "m", 0.0),
    )
    return at, message(text, id=id or f"{seconds:g}", at=at, trailer=trailer)


def windows(length: int, step: int, lateness: int = 0, **kwargs: object) -> StreamWindows:
    s = timedelta(seconds=1)
    return StreamWindows(ALIGN, length * s, step * s, lateness * s, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("length", "step"), [(300, 300), (300, 60), (300, 120), (100, 70)])
def test_each_window_holds_exactly_the_items_in_its_span(length: int, step: int) -> None:
    rng = random.Random(length + step)
    items = sorted((scored(rng.uniform(0, 3000)) for _ in range(1500)), key=lambda p: p[0])
    w = windows(length, step)
    closed, late = w.add(items)
    closed += w.advance(None)
    topic = [window for window in closed if window.topic == "energy_oil"]
    assert late == [] and topic
    for window in topic:
        expected = sum(1 for at, _ in items if window.start <= at < window.end)
        assert window.n == expected
        assert (window.start - ALIGN) % timedelta(seconds=step) == timedelta(0)
        assert window.end - window.start == timedelta(seconds=length)
    if length % step == 0:  # then each item is in length / step windows
        assert sum(window.n for window in topic) == len(items) * length // step
    # The market-wide key holds the same items, window for window.
    market = sorted((w.start, w.n) for w in closed if w.topic == MARKET)
    assert market == sorted((w.start, w.n) for w in topic)


def test_an_item_behind_the_watermark_is_late_once_for_all_its_keys() -> None:
    w = windows(300, 60, lateness=30)
    w.add([scored(0), scored(400)])  # the watermark is now 400 s - 30 s
    placed_at = T0 + timedelta(seconds=400)
    _, item = scored(100, "late", tickers="BA")
    closed, late = w.add([(placed_at, item)])
    assert [o.id for o in late] == ["late"] and closed == []
    every = w.advance(None)
    assert not any(window.topic == "$BA" for window in every)  # counted nowhere


def test_each_item_moves_the_watermark_before_the_next_is_judged() -> None:
    w = windows(300, 300, lateness=30)
    closed, late = w.add([scored(0), scored(400)])
    assert late == []
    assert sorted((c.topic, c.start - T0, c.n) for c in closed) == [
        ("all", timedelta(0), 1),
        ("energy_oil", timedelta(0), 1),
    ]
    # An item out of order within its partition is placed at its partition's frontier:
    # within the lateness it still counts, beyond it it is late.
    placed = T0 + timedelta(seconds=1000)
    _, kept = scored(980, "kept")
    _, behind = scored(900, "behind")
    _, late = w.add([scored(1000), (placed, kept), (placed, behind)])
    assert [o.id for o in late] == ["behind"]


def test_the_watermark_alone_closes_the_windows_of_every_key_quiet_ones_too() -> None:
    w = windows(300, 300)
    w.add([scored(10, topic="energy_oil"), scored(20, topic="earnings", tickers="BA,PFE")])
    closed = w.advance(T0 + timedelta(seconds=300))
    assert sorted(c.topic for c in closed) == ["$BA", "$PFE", "all", "earnings", "energy_oil"]
    assert {c.n for c in closed if c.topic == MARKET} == {2}
    assert w.advance(T0 + timedelta(seconds=200)) == []  # the watermark never goes back


def test_a_story_is_found_once_per_item_and_shared_by_its_keys() -> None:
    w = windows(300, 300, stories=StoryIndex(timedelta(hours=1)))
    w.add(
        [
            scored(
                1, "a", text="Boeing shares plunge after regulators ground its fleet", tickers="BA"
            ),
            scored(
                2,
                "b",
                text="UPDATE 1-Boeing shares plunge after regulators ground fleet",
                tickers="BA",
            ),
        ]
    )
    closed = {c.topic: c for c in w.advance(None)}
    assert {key: (c.n, c.n_stories) for key, c in closed.items()} == {
        "$BA": (2, 1),
        "all": (2, 1),
        "energy_oil": (2, 1),
    }
    assert closed["$BA"].evidence[0].echoes == 1


def test_windows_survive_a_snapshot_and_a_restart() -> None:
    rng = random.Random(3)
    items = sorted((scored(rng.uniform(0, 1800)) for _ in range(300)), key=lambda p: p[0])
    whole = windows(300, 60)
    expected = whole.add(items)[0] + whole.advance(None)
    first = windows(300, 60)
    got = first.add(items[:120])[0]
    restored = pickle.loads(pickle.dumps(first.copy()))
    first.add(items[120:200])  # the snapshot does not see later items
    got += restored.add(items[120:])[0] + restored.advance(None)
    assert got == expected


def test_the_market_window_counts_the_words_of_its_negative_stories_by_topic() -> None:
    w = windows(300, 300)
    items = [
        scored(1, "a", topic="macro", text="SVB collapse hits global markets"),
        scored(2, "b", topic="politics", text="Biden says SVB mess will be fixed"),
        scored(3, "c", topic="politics", text="SVB failure sparks blame game"),
        scored(4, "d", topic="politics", text="SVB FAILURE SPARKS BLAME GAME!"),  # a copy
    ]
    neutral = message("SVB buyer found", id="e", at=T0 + timedelta(seconds=5), trailer=(
        Result("t", "topic", "company_news", {"company_news": 1.0}, "m", 0.0),
        Result("s", "sentiment", "neutral", {"negative": 0.1}, "m", 0.0),
    ))  # fmt: skip
    closed, _ = w.add([*items, (T0 + timedelta(seconds=5), neutral)])
    closed += w.advance(None)
    by_key = {window.topic: window for window in closed}
    market = by_key[MARKET]
    # Three negative stories say "svb", two of them in politics: one outside it.
    assert market.negative_words["svb"] == (3, 1)
    assert market.negative_words["blame"] == (1, 0)
    assert "buyer" not in market.negative_words  # not negative
    assert all(not window.negative_words for key, window in by_key.items() if key != MARKET)


def test_each_window_counts_its_stories_by_source_and_knows_the_streams_sources() -> None:
    w = windows(300, 300)

    def sourced(seconds: float, id: str, topic: str, source: str) -> tuple[datetime, Message]:
        at, m = scored(seconds, id, topic=topic, text=f"Story {id}")
        header = msgspec.structs.replace(m.header, source=source)
        return at, msgspec.structs.replace(m, header=header)

    items = [
        sourced(1, "a", "energy_oil", "ft"),
        sourced(2, "b", "energy_oil", "wsj"),
        sourced(3, "c", "macro", "telegraph"),
    ]
    closed, _ = w.add(items)
    closed += w.advance(None)
    by_key = {window.topic: window for window in closed}
    assert by_key["energy_oil"].sources == {"ft": 1, "wsj": 1}
    assert by_key["macro"].sources == {"telegraph": 1}
    assert all(window.stream_sources == ("ft", "telegraph", "wsj") for window in closed)


def test_a_window_of_many_sources_keeps_the_largest_and_pools_the_rest() -> None:
    stories = {f"author{i:03d}": 1 for i in range(200)} | {"wire": 50}
    kept = bounded_sources(stories)
    assert len(kept) == MAX_SOURCES
    assert kept["wire"] == 50
    assert kept[OTHER_SOURCES] == 200 - (MAX_SOURCES - 2)
    assert sum(kept.values()) == sum(stories.values())
