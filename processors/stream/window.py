"""Event-time windows per key (topic, market-wide, entity): what goes in, what comes out."""

from __future__ import annotations

import heapq
import math
import pickle
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from processors.entities import tickers
from processors.envelope.labels import SENTIMENT_VALUE
from processors.envelope.message import Evidence, Message, TopicWindow
from processors.stream.dedupe import normalised_text
from processors.stream.sequencer import EARLIEST
from processors.stream.stories import StoryIndex, story_words

EVIDENCE_SIZE = 5
UNCLASSIFIED = "unclassified"
MARKET = "all"  # the key of the whole stream, beside one key per topic
ENTITY_PREFIX = "$"  # an entity's key is its ticker as a cashtag: "$BA"
MAX_ENTITIES = 8  # entity keys one message may feed: a list of every index member is not news
MAX_SOURCES = 64  # sources a window tells apart: a stream of many authors stays small
OTHER_SOURCES = ""  # where a window's (and a detector's) further sources are pooled


def entity_key(ticker: str) -> str:
    return ENTITY_PREFIX + ticker


def entity_of(key: str) -> str | None:
    """The ticker of an entity key; None for a topic or the market-wide key.

    >>> entity_of("$BA"), entity_of("energy_oil")
    ('BA', None)
    """
    return key[len(ENTITY_PREFIX) :] if key.startswith(ENTITY_PREFIX) else None


class Observation(msgspec.Struct, frozen=True, gc=False, array_like=True, order=True):
    """The slice of a scored message that a window needs; small, since it is state."""

    id: str
    published_at: datetime
    topic: str
    sentiment: str | None
    negative: float
    text: str
    source: str = ""


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
        source=message.header.source,
    )


class WindowAccumulator:
    """Counts of items and of stories (by topic and by source), score sum and the most
    negative stories of one key's window; with `words`, the words of its negative
    stories by topic too (the market-wide key's, for story bursts)."""

    __slots__ = (
        "by_source",
        "by_topic",
        "counts",
        "evidence",
        "n",
        "score_sum",
        "stories",
        "words",
    )

    def __init__(self, words: bool = False) -> None:
        self.n = 0
        self.counts = {"negative": 0, "neutral": 0, "positive": 0}
        self.score_sum = 0.0
        # (negative, id, item, story), a min-heap on negative
        self.evidence: list[tuple[float, str, Observation, str]] = []
        # topic -> [stories with sentiment, negative stories], by each story's first copy
        self.by_topic: dict[str, list[int]] = {}
        self.by_source: dict[str, int] = {}  # source -> stories, by each story's first copy
        # story -> [copies, whether its first copy here is negative]
        self.stories: dict[str, list[int]] = {}
        # word -> topic -> negative stories (by each story's first copy) that say it
        self.words: dict[str, dict[str, int]] | None = {} if words else None

    def add(self, item: Observation, story_key: str | None = None) -> WindowAccumulator:
        """Fold in `item`, of story `story_key` (by default, its own text's story)."""
        self.n += 1
        negative = item.sentiment == "negative"
        story_key = story_key or _story(item)
        story = self.stories.get(story_key)
        if story is None:
            self.stories[story_key] = [1, int(negative)]
            self.by_source[item.source] = self.by_source.get(item.source, 0) + 1
            if item.sentiment is not None:
                tally = self.by_topic.get(item.topic)
                if tally is None:
                    tally = self.by_topic[item.topic] = [0, 0]
                tally[0] += 1
                tally[1] += negative
                if negative and self.words is not None:
                    for word in story_words(item.text):
                        by_topic = self.words.setdefault(word, {})
                        by_topic[item.topic] = by_topic.get(item.topic, 0) + 1
        else:
            story[0] += 1
        if item.sentiment is not None:
            self.counts[item.sentiment] += 1
            self.score_sum += SENTIMENT_VALUE[item.sentiment]
            if negative:
                self._offer((item.negative, item.id, item, story_key))
        return self

    def _offer(self, entry: tuple[float, str, Observation, str]) -> None:
        """Keep `entry` if it is among the most negative, once per story: the same news
        from several outlets is one piece of evidence, shown by its most negative copy
        with its echo count."""
        evidence = self.evidence
        if len(evidence) == EVIDENCE_SIZE and entry <= evidence[0]:
            return
        for i, kept in enumerate(evidence):
            if kept[3] == entry[3]:
                if entry > kept:
                    evidence[i] = entry
                    heapq.heapify(evidence)
                return
        if len(evidence) < EVIDENCE_SIZE:
            heapq.heappush(evidence, entry)
        else:
            heapq.heapreplace(evidence, entry)

    def merge(self, other: WindowAccumulator) -> WindowAccumulator:
        self.n += other.n
        for label, count in other.counts.items():
            self.counts[label] += count
        self.score_sum += other.score_sum
        for topic, (n, negative) in other.by_topic.items():
            tally = self.by_topic.setdefault(topic, [0, 0])
            tally[0] += n
            tally[1] += negative
        for story, (copies, negative) in other.stories.items():
            mine = self.stories.setdefault(story, [0, negative])
            mine[0] += copies
        for source, stories in other.by_source.items():
            self.by_source[source] = self.by_source.get(source, 0) + stories
        if self.words is not None and other.words is not None:
            for word, by_topic in other.words.items():
                mine_by_topic = self.words.setdefault(word, {})
                for topic, count in by_topic.items():
                    mine_by_topic[topic] = mine_by_topic.get(topic, 0) + count
        for entry in other.evidence:
            self._offer(entry)
        return self

    def close(
        self, topic: str, start: datetime, end: datetime, stream_sources: tuple[str, ...] = ()
    ) -> TopicWindow:
        """The closed window of key `topic`; `stream_sources`: the sources that published
        anything in the whole stream in this window (by default, this key's own)."""
        with_sentiment = sum(self.counts.values())
        sources = bounded_sources(self.by_source)
        evidence = tuple(
            Evidence(o.id, o.text, round(o.negative, 4), o.published_at, self.stories[story][0] - 1)
            for _, _, o, story in sorted(self.evidence, reverse=True)
        )
        leading, (leading_n, leading_negative) = max(
            self.by_topic.items(), key=lambda kv: (kv[1][1], kv[1][0], kv[0]), default=("", (0, 0))
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
            leading_topic=leading,
            leading_n=leading_n,
            leading_negative=leading_negative,
            n_stories=len(self.stories),
            n_negative_stories=sum(negative for _, negative in self.stories.values()),
            negative_words=self._negative_words(),
            sources=sources,
            stream_sources=stream_sources or tuple(sources),
        )

    def _negative_words(self) -> dict[str, tuple[int, int]]:
        """word -> (negative stories that say it, those outside its busiest topic)."""
        if not self.words:
            return {}
        spread = {}
        for word in sorted(self.words):
            counts = self.words[word].values()
            total = sum(counts)
            spread[word] = (total, total - max(counts))
        return spread


def bounded_sources(stories: dict[str, int]) -> dict[str, int]:
    """Stories by source, sorted, the `MAX_SOURCES` - 1 largest sources by name and the
    rest pooled under `OTHER_SOURCES`.

    >>> bounded_sources({"wsj": 3, "ft": 5})
    {'ft': 5, 'wsj': 3}
    """
    if len(stories) <= MAX_SOURCES:
        return dict(sorted(stories.items()))
    ranked = sorted(stories, key=lambda source: (-stories[source], source))
    kept = {source: stories[source] for source in ranked[: MAX_SOURCES - 1]}
    kept[OTHER_SOURCES] = sum(stories[source] for source in ranked[MAX_SOURCES - 1 :])
    return dict(sorted(kept.items()))


def _story(item: Observation) -> str:
    """An item's story without story clustering: its text, as a reader compares texts,
    so repeats that reach a window (de-duplication keeps them an hour) are one story."""
    return normalised_text(item.text)


def window_keys(message: Message, item: Observation) -> list[str]:
    """The keys a scored message counts under: its topic, the market-wide key, and each
    entity it names (the first `MAX_ENTITIES` of them)."""
    return [item.topic, MARKET, *(entity_key(t) for t in tickers(message)[:MAX_ENTITIES])]


class StreamWindows:
    """Every key's open event-time windows, tumbling (`step == length`) or sliding,
    under one watermark.

    Items come in the `Sequencer`'s order, each with its order time; the watermark is
    the latest order time less `lateness`. An item behind the watermark is late
    (returned once, for a dead letter), and every window that the watermark passes
    closes, for every key: a quiet topic's windows close as the stream moves on. Each
    item's story is found once, before it is counted under its keys. Picklable: it is
    Bytewax state.

    >>> from datetime import UTC
    >>> from processors.envelope.message import Body, Header
    >>> t0 = datetime(2024, 3, 14, 14, tzinfo=UTC)
    >>> w = StreamWindows(t0, timedelta(minutes=5), timedelta(minutes=5), timedelta(0))
    >>> def at(minute):
    ...     t = t0 + timedelta(minutes=minute)
    ...     return t, Message(Header(str(minute), "scored", "wire", t, t), Body("Oil slumps"))
    >>> closed, late = w.add([at(1), at(2), at(6)])
    >>> sorted((window.topic, window.start.minute, window.n) for window in closed), late
    ([('all', 0, 2), ('unclassified', 0, 2)], [])
    >>> closed, late = w.add([(at(6)[0], at(3)[1])])  # placed at 6, it is behind 6 - 0
    >>> closed, [o.id for o in late]
    ([], ['3'])
    """

    def __init__(
        self,
        align_to: datetime,
        length: timedelta,
        step: timedelta,
        lateness: timedelta,
        stories: StoryIndex | None = None,
    ) -> None:
        self.align_to = align_to
        self.length = length
        self.step = step
        self.lateness = lateness
        self.stories = stories
        self.watermark = EARLIEST
        self.open: dict[str, dict[int, WindowAccumulator]] = {}  # key -> window id -> window
        self._ends: list[tuple[int, str]] = []  # (window id, key) of every open window: a heap

    def add(
        self, items: Sequence[tuple[datetime, Message]]
    ) -> tuple[list[TopicWindow], list[Observation]]:
        """Fold in (order time, scored message) pairs, in order: (windows now closed,
        late items)."""
        closed: list[TopicWindow] = []
        late: list[Observation] = []
        lateness = self.lateness
        span = EARLIEST, EARLIEST
        ids: list[int] = []
        for placed, message in items:
            if placed - lateness > self.watermark:
                closed += self.advance(placed - lateness)
            item = observe(message)
            at = item.published_at
            if at < self.watermark:
                late.append(item)
                continue
            if not span[0] <= at < span[1]:
                # Items between two window starts fall in the same windows.
                span, ids = self._ids_at(at)
            story = (
                _story(item)
                if self.stories is None
                else self.stories.assign(item.id, item.text, at)[0]
            )
            for key in window_keys(message, item):
                windows = self.open.get(key)
                if windows is None:
                    windows = self.open[key] = {}
                for window_id in ids:
                    window = windows.get(window_id)
                    if window is None:
                        window = windows[window_id] = WindowAccumulator(words=key == MARKET)
                        heapq.heappush(self._ends, (window_id, key))
                    window.add(item, story)
        return closed, late

    def advance(self, watermark: datetime | None) -> list[TopicWindow]:
        """Move the watermark on to `watermark` (to the end, if None): the windows it
        passes close, in order of their end (ties by key)."""
        if watermark is not None:
            if watermark <= self.watermark:
                return []
            self.watermark = watermark
        ends, closed = self._ends, []
        stream_sources: dict[int, tuple[str, ...]] = {}  # window id -> the stream's sources
        while ends and (watermark is None or self._end(ends[0][0]) <= watermark):
            window_id, key = heapq.heappop(ends)
            if window_id not in stream_sources:
                # Every item counts under the market key: its window has every source.
                market = self.open[MARKET][window_id]
                stream_sources[window_id] = tuple(bounded_sources(market.by_source))
            window = self.open[key].pop(window_id)
            if not self.open[key]:
                del self.open[key]
            start, end = self._start(window_id), self._end(window_id)
            closed.append(window.close(key, start, end, stream_sources[window_id]))
        return closed

    def _ids_at(self, at: datetime) -> tuple[tuple[datetime, datetime], list[int]]:
        """((lo, hi), the ids of the windows that hold `at`): every event time in lo..hi
        falls in just these windows, so the items that follow mostly reuse them."""
        last = (at - self.align_to) // self.step
        lo = self._start(last)
        hi = lo + self.step
        ids = []
        for window_id in range(last - math.ceil(self.length / self.step) + 1, last + 1):
            end = self._end(window_id)
            if end <= at:
                lo = max(lo, end)
                continue
            hi = min(hi, end)
            ids.append(window_id)
        return (lo, hi), ids

    def copy(self) -> StreamWindows:
        """A snapshot that later changes do not touch: a pickle round trip, several
        times faster than deepcopy on accumulators and story indexes."""
        twin: StreamWindows = pickle.loads(pickle.dumps(self, pickle.HIGHEST_PROTOCOL))
        return twin

    def _start(self, window_id: int) -> datetime:
        return self.align_to + self.step * window_id

    def _end(self, window_id: int) -> datetime:
        return self._start(window_id) + self.length
