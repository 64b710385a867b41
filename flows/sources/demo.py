"""The demo source: a synthetic but realistic market day with one negative surge.

Items arrive in event-time order across all topics with a calm sentiment mix, then,
for a while, a burst of negative news on one topic. A few syndicated repeats and a
few malformed records are mixed in, as on a real feed, so the demo shows the
de-duplication and the dead letters at work. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from bytewax.inputs import StatefulSourcePartition

from flows.sources import PartitionedSource, RawRecord
from flows.sources.demo_text import BANKS, COMPANIES, PEOPLE, TEMPLATES
from processors.envelope.labels import TOPICS

# How often each topic comes up on a calm day (relative).
TOPIC_WEIGHTS: dict[str, float] = {topic: 1.0 for topic in TOPICS} | {
    "stock_movement": 3.0,
    "markets": 2.5,
    "stock_commentary": 2.0,
    "company_news": 2.0,
    "earnings": 2.0,
    "macro": 1.5,
    "general_news": 1.5,
    "ipo": 0.5,
    "dividend": 0.5,
    "personnel_change": 0.5,
}
CALM_MIX = {"negative": 0.12, "neutral": 0.58, "positive": 0.30}
SURGE_MIX = {"negative": 0.88, "neutral": 0.10, "positive": 0.02}


@dataclass(frozen=True)
class MarketDay:
    """The shape of the generated day; all rates are items per event-time minute."""

    day: date
    minutes: int = 390  # a US session, 13:30-20:00 UTC
    rate: float = 24.0
    surge_topic: str = "energy_oil"
    surge_start: float = 0.55  # fraction of the day
    surge_minutes: int = 40
    surge_rate: float = 30.0
    duplicate_share: float = 0.01
    malformed_share: float = 0.002
    seed: int = 7
    # Templates repeat, so most generated texts recur within an hour and de-duplication
    # drops them; distinct texts (a serial appended) make a stream like a real feed's.
    distinct_texts: bool = False

    @property
    def opens_at(self) -> datetime:
        return datetime.combine(self.day, time(13, 30), tzinfo=UTC)

    def surge_window(self) -> tuple[datetime, datetime]:
        start = self.opens_at + timedelta(minutes=round(self.minutes * self.surge_start))
        return start, start + timedelta(minutes=self.surge_minutes)


def previous_weekday(today: date | None = None) -> date:
    """The last trading day before today (weekends skipped), as a demo's date."""
    day = (today or datetime.now(UTC).date()) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def generate(day: MarketDay) -> Iterator[bytes]:
    """The day's items as JSON lines (bytes), in event-time order."""
    rng = random.Random(day.seed)
    topics = list(TOPIC_WEIGHTS)
    weights = list(TOPIC_WEIGHTS.values())
    surge_from, surge_to = day.surge_window()
    recent: list[dict[str, object]] = []
    at = day.opens_at
    end = day.opens_at + timedelta(minutes=day.minutes)
    serial = 0
    while at < end:
        in_surge = surge_from <= at < surge_to
        total_rate = day.rate + (day.surge_rate if in_surge else 0.0)
        at += timedelta(seconds=rng.expovariate(total_rate / 60.0))
        if at >= end:
            break
        if in_surge and rng.random() < day.surge_rate / total_rate:
            topic, mix = day.surge_topic, SURGE_MIX
        else:
            topic, mix = rng.choices(topics, weights)[0], CALM_MIX
        sentiment = rng.choices(list(mix), list(mix.values()))[0]
        serial += 1
        roll = rng.random()
        if roll < day.malformed_share:
            yield _malformed(rng, serial, at)
            continue
        if roll < day.malformed_share + day.duplicate_share and recent:
            repeat = dict(rng.choice(recent))  # a syndicated copy: new id, same text
            repeat["id"] = f"demo-{serial}"
            repeat["published_at"] = at.isoformat()
            yield json.dumps(repeat).encode()
            continue
        item = _item(rng, serial, at, topic, sentiment)
        if day.distinct_texts:
            item["text"] = f"{item['text']} (#{serial})"
        recent = [*recent[-50:], item]
        yield json.dumps(item).encode()


def _item(
    rng: random.Random, serial: int, at: datetime, topic: str, sentiment: str
) -> dict[str, object]:
    company, ticker = rng.choice(COMPANIES)
    text = rng.choice(TEMPLATES[topic][sentiment]).format(
        co=company,
        tk=ticker,
        pct=rng.choice((2, 3, 4, 5, 6, 8, 12, 15)),
        px=rng.choice((42, 55, 61, 68, 74, 120, 210)),
        q=rng.choice(("Q1", "Q2", "Q3", "Q4")),
        n=rng.randint(1, 9),
        person=rng.choice(PEOPLE),
        bank=rng.choice(BANKS),
    )
    return {
        "id": f"demo-{serial}",
        "text": text,
        "source": rng.choice(("newswire", "newswire", "social")),
        "published_at": at.isoformat(),
        "tickers": [ticker] if ticker in text or company in text else [],
    }


def _malformed(rng: random.Random, serial: int, at: datetime) -> bytes:
    kinds = (
        b'{"id": "demo-%d", "text": ' % serial,  # cut off mid-record
        json.dumps({"id": f"demo-{serial}", "text": "", "published_at": at.isoformat()}).encode(),
        json.dumps(
            {"id": f"demo-{serial}", "text": "Oil steady", "published_at": "yesterday"}
        ).encode(),
        b'{"id": "demo-%d", "text": "Bad \xff\xfe bytes"}' % serial,
    )
    return rng.choice(kinds)


class _DemoPartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(self, day: MarketDay, batch_size: int, resume: int | None) -> None:
        self._lines = generate(day)
        self._batch_size = batch_size
        self._done = resume or 0
        for _ in range(self._done):
            next(self._lines, None)

    def next_batch(self) -> list[RawRecord]:
        batch = []
        for line in self._lines:
            self._done += 1
            batch.append(RawRecord(line, "demo", str(self._done)))
            if len(batch) >= self._batch_size:
                break
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> int:
        return self._done


class DemoSource(PartitionedSource[int]):
    """Streams a `MarketDay`, then ends, closing all windows."""

    def __init__(self, day: MarketDay, batch_size: int = 256) -> None:
        self.day = day
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["demo"]

    def origin(self, part: str) -> str:
        return "demo"

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _DemoPartition:
        return _DemoPartition(self.day, self.batch_size, resume_state)
