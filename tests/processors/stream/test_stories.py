"""Story ids with plain lists: rewordings in, unrelated stories with shared words out."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta

import pytest

from processors.stream.stories import StoryIndex

T0 = datetime(2023, 3, 10, 14)

# Copies a reader sees as one story (the last two pairs are real, from two outlets).
SAME = [
    (
        "Silicon Valley Bank is shut down by regulators, FDIC to protect insured deposits",
        "BREAKING: Silicon Valley Bank shut down by regulators; FDIC to protect deposits",
    ),
    (
        "Boeing shares plunge after FAA grounds 737 MAX fleet",
        "UPDATE 2-Boeing shares plunge after FAA grounds 737 MAX fleet, airlines scramble",
    ),
    (
        "UK to Introduce Climate Levy on Steel Imports From 2027",
        "UK to introduce carbon levy on imports by 2027",
    ),
    (
        "Russia Blames Ukraine Over Fresh Drone Attack on Moscow",
        "Russia Blames Ukraine for Fresh Drone Strikes on Central Moscow, Crimea",
    ),
]
# Different news that shares words.
APART = [
    (
        "Oil prices fall as OPEC+ meets to discuss output",
        "Oil prices rise after OPEC+ agrees deep output cut",
    ),
    ("Apple shares fall after earnings miss", "Apple shares rise on record iPhone sales in China"),
    ("Fed raises rates by a quarter point", "ECB raises rates by half a point"),
    ("Tesla recalls 2 million cars over Autopilot", "Tesla cuts prices in China again"),
    (
        "WTI crude crashes below $74 as demand outlook darkens",
        "WTI crude crashes below $72 as demand outlook darkens",
    ),
]


@pytest.mark.parametrize(("first", "copy"), SAME)
def test_rewordings_share_a_story(first: str, copy: str) -> None:
    index = StoryIndex()
    assert index.assign("a", first, T0) == ("a", 0)
    assert index.assign("b", copy, T0 + timedelta(minutes=20)) == ("a", 1)


@pytest.mark.parametrize(("first", "other"), APART)
def test_unrelated_stories_with_shared_words_stay_apart(first: str, other: str) -> None:
    index = StoryIndex()
    index.assign("a", first, T0)
    assert index.assign("b", other, T0 + timedelta(minutes=20)) == ("b", 0)


def test_echo_counts_and_the_horizon() -> None:
    index = StoryIndex(horizon=timedelta(hours=6))
    text = "Crude collapse wipes out refining margins at Valero"
    echoes = [index.assign(f"m{i}", text.upper() if i % 2 else text, T0)[1] for i in range(60)]
    assert echoes == list(range(60))
    later = T0 + timedelta(hours=7)
    assert index.assign("n", text, later) == ("n", 0)  # a day's old story is news again


def test_the_index_is_bounded_and_picklable() -> None:
    index = StoryIndex(max_stories=100)
    for i in range(1000):
        index.assign(f"s{i}", f"Firm{i} opens plant{i} in town{i}, hiring {i} staff", T0)
    assert len(index) <= 100
    twin = pickle.loads(pickle.dumps(index))
    assert twin.assign("x", "UPDATE 1-Firm999 opens plant999 in town999", T0) == ("s999", 1)
    assert twin.assign("y", "Firm3 opens plant3 in town3", T0) == ("y", 0)  # forgotten
