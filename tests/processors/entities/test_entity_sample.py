"""Precision and recall of the matcher on 200 real headlines and tweets labelled by hand.

`data/headlines.jsonl` (see its README): news headlines as text, tweets by their row in
the shared Twitter Financial News validation file (whose README forbids copies), each
with the tickers of the catalog's companies it names, as a person reads it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from processors.entities import EntityMatcher
from tests.helpers import ROOT

SAMPLE = Path(__file__).parent / "data" / "headlines.jsonl"
TWEETS = ROOT.parent / "shared/data/twitter-financial-news/topic_valid.csv"


def headlines() -> list[tuple[str, set[str]]]:
    """(text, tickers) of the news headlines, stored as text."""
    return [(item["text"], set(item["tickers"])) for item in _items() if "text" in item]


def tweets() -> list[tuple[str, set[str]]]:
    """(text, tickers) of the tweets, read from the shared file by row."""
    with TWEETS.open(newline="") as f:
        rows = [row["text"] for row in csv.DictReader(f)]
    out = []
    for item in _items():
        if "tweet" in item:
            text = rows[item["tweet"]]
            assert hashlib.sha256(text.encode()).hexdigest().startswith(item["sha256"])
            out.append((text, set(item["tickers"])))
    return out


def _items() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def scores(matcher: EntityMatcher, sample: list[tuple[str, set[str]]]) -> tuple[float, float]:
    found = [(matcher.find(text), gold) for text, gold in sample]
    hits = sum(len(got & gold) for got, gold in found)
    return hits / sum(len(got) for got, _ in found), hits / sum(len(gold) for _, gold in found)


@pytest.mark.skipif(not TWEETS.is_file(), reason=f"the tweets are not at {TWEETS}")
def test_precision_and_recall_on_the_labelled_sample(matcher: EntityMatcher) -> None:
    sample = headlines() + tweets()
    assert len(sample) == 200
    assert 90 <= sum(bool(gold) for _, gold in sample) <= 120  # about half name a company
    precision, recall = scores(matcher, sample)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)


def test_precision_and_recall_on_the_headlines_alone(matcher: EntityMatcher) -> None:
    precision, recall = scores(matcher, headlines())
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)
