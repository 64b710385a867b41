"""Per-topic window aggregation: what goes into a window and what comes out."""

from __future__ import annotations

import heapq
from datetime import datetime

import msgspec

from processors.labels import SENTIMENT_VALUE
from processors.message import Evidence, Message, TopicWindow

EVIDENCE_SIZE = 5
UNCLASSIFIED = "unclassified"


class Observation(msgspec.Struct, frozen=True, array_like=True, order=True):
    """The slice of a scored message that a window needs; small, since it is state."""

    id: str
    published_at: datetime
    topic: str
    sentiment: str | None
    negative: float
    text: str


def observe(message: Message, evidence_chars: int = 200) -> Observation:
    """The window's view of a scored message."""
    topic = message.result("topic")
    sentiment = message.result("sentiment")
    return Observation(
        id=message.header.id,
        published_at=message.header.published_at,
        topic=topic.label if topic else UNCLASSIFIED,
        sentiment=sentiment.label if sentiment else None,
        negative=sentiment.scores.get("negative", 0.0) if sentiment else 0.0,
        text=message.body.text[:evidence_chars],
    )


class WindowAccumulator:
    """Counts, score sum and the most negative items of one topic's window."""

    __slots__ = ("counts", "evidence", "n", "score_sum")

    def __init__(self) -> None:
        self.n = 0
        self.counts = {"negative": 0, "neutral": 0, "positive": 0}
        self.score_sum = 0.0
        self.evidence: list[tuple[float, str, Observation]] = []  # min-heap on negative

    def add(self, item: Observation) -> WindowAccumulator:
        self.n += 1
        if item.sentiment is not None:
            self.counts[item.sentiment] += 1
            self.score_sum += SENTIMENT_VALUE[item.sentiment]
            if item.sentiment == "negative":
                entry = (item.negative, item.id, item)
                if len(self.evidence) < EVIDENCE_SIZE:
                    heapq.heappush(self.evidence, entry)
                elif entry > self.evidence[0]:
                    heapq.heapreplace(self.evidence, entry)
        return self

    def merge(self, other: WindowAccumulator) -> WindowAccumulator:
        self.n += other.n
        for label, count in other.counts.items():
            self.counts[label] += count
        self.score_sum += other.score_sum
        for entry in other.evidence:
            heapq.heappush(self.evidence, entry)
        self.evidence = heapq.nlargest(EVIDENCE_SIZE, self.evidence)
        heapq.heapify(self.evidence)
        return self

    def close(self, topic: str, start: datetime, end: datetime) -> TopicWindow:
        with_sentiment = sum(self.counts.values())
        evidence = tuple(
            Evidence(o.id, o.text, round(o.negative, 4), o.published_at)
            for _, _, o in sorted(self.evidence, reverse=True)
        )
        return TopicWindow(
            topic=topic,
            start=start,
            end=end,
            n=self.n,
            n_negative=self.counts["negative"],
            n_neutral=self.counts["neutral"],
            n_positive=self.counts["positive"],
            negative_share=self.counts["negative"] / with_sentiment if with_sentiment else 0.0,
            mean_score=self.score_sum / with_sentiment if with_sentiment else 0.0,
            evidence=evidence,
        )
