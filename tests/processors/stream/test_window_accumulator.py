"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processors.envelope.message import to_json
from processors.stream.window import WindowAccumulator, observe
from tests.helpers import T0, message


def _scored(text: str, id: str, sentiment: str, negative: float, topic: str = "energy_oil"):
    from processors.envelope.message import Result

    return message(
        text,
        id,
        trailer=(
            Result("topic", "topic", topic, {topic: 0.9}, "m", 0.0),
            Result("sentiment", "sentiment", sentiment, {"negative": negative}, "m", 0.0),
        ),
    )


def test_window_accumulator_counts_and_keeps_the_most_negative_evidence() -> None:
    left, right = WindowAccumulator(), WindowAccumulator()
    for i in range(8):
        left.add(observe(_scored(f"bad {i}", f"l{i}", "negative", 0.5 + i / 100)))
    right.add(observe(_scored("fine", "r1", "neutral", 0.1)))
    right.add(observe(_scored("great", "r2", "positive", 0.01)))
    right.add(observe(_scored("worst", "r3", "negative", 0.99)))
    w = left.merge(right).close("energy_oil", T0, T0 + timedelta(minutes=5))
    assert (w.n, w.n_negative, w.n_neutral, w.n_positive) == (11, 9, 1, 1)
    assert w.negative_share == pytest.approx(9 / 11)
    assert w.mean_score == pytest.approx((-9 + 1) / 11)
    assert [e.id for e in w.evidence] == ["r3", "l7", "l6", "l5", "l4"]
    assert b'"negative_share"' in to_json(w)


def test_window_evidence_lists_each_text_once_by_its_most_negative_copy() -> None:
    left, right = WindowAccumulator(), WindowAccumulator()
    echoes = [
        "WTI crude crashes below $74",
        "WTI CRUDE CRASHES BELOW $74!",
        "wti crude crashes below $74",
    ]
    for i, text in enumerate(echoes):
        left.add(observe(_scored(text, f"e{i}", "negative", 0.90 + i / 100)))
    left.add(observe(_scored("Refiners slump", "r0", "negative", 0.80)))
    right.add(observe(_scored("WTI crude crashes below $74 ", "e9", "negative", 0.99)))
    for i in range(4):
        right.add(observe(_scored(f"Other bad news {i}", f"o{i}", "negative", 0.5 + i / 100)))
    w = left.merge(right).close("energy_oil", T0, T0 + timedelta(minutes=5))
    assert w.n_negative == 9  # every copy counts; the evidence shows each text once
    assert [e.id for e in w.evidence] == ["e9", "r0", "o3", "o2", "o1"]
