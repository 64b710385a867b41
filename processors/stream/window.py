"""Per-topic window aggregation: what goes into a window and what comes out."""

from __future__ import annotations

import heapq
import math
import pickle
from bisect import bisect_left, insort
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import attrgetter

import msgspec

from processors.envelope.labels import SENTIMENT_VALUE
from processors.envelope.message import Evidence, Message, TopicWindow
from processors.stream.dedupe import normalised_text
from processors.stream.frontier import EARLIEST, Frontier
from processors.stream.stories import StoryIndex

EVIDENCE_SIZE = 5
UNCLASSIFIED = "unclassified"
MARKET = "all"  # the key of the whole stream, beside one key per topic
ENTITY_PREFIX = "$"  # an entity's key is its ticker as a cashtag: "$BA"
MAX_ENTITIES = 8  # entity keys one message may feed: a list of every index member is not news


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
    key: str = ""  # the window key, where it is not `topic` (the market-wide key)


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
    """Counts of items and of stories, score sum and the most negative stories of one
    key's window."""

    __slots__ = ("by_topic", "counts", "evidence", "n", "score_sum", "stories")

    def __init__(self) -> None:
        self.n = 0
        self.counts = {"negative": 0, "neutral": 0, "positive": 0}
        self.score_sum = 0.0
        # (negative, id, item, story), a min-heap on negative
        self.evidence: list[tuple[float, str, Observation, str]] = []
        # topic -> [stories with sentiment, negative stories], by each story's first copy
        self.by_topic: dict[str, list[int]] = {}
        # story -> [copies, whether its first copy here is negative]
        self.stories: dict[str, list[int]] = {}

    def add(self, item: Observation, story_key: str | None = None) -> WindowAccumulator:
        """Fold in `item`, of story `story_key` (by default, its own text's story)."""
        self.n += 1
        negative = item.sentiment == "negative"
        story_key = story_key or _story(item)
        story = self.stories.get(story_key)
        if story is None:
            self.stories[story_key] = [1, int(negative)]
            if item.sentiment is not None:
                tally = self.by_topic.get(item.topic)
                if tally is None:
                    tally = self.by_topic[item.topic] = [0, 0]
                tally[0] += 1
                tally[1] += negative
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
        for entry in other.evidence:
            self._offer(entry)
        return self

    def close(self, topic: str, start: datetime, end: datetime) -> TopicWindow:
        with_sentiment = sum(self.counts.values())
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
        )


def _event_order(item: Observation) -> tuple[datetime, str]:
    return item.published_at, item.id


def _story(item: Observation) -> str:
    """An item's story without story clustering: its text, as a reader compares texts,
    so repeats that reach a window (de-duplication keeps them an hour) are one story."""
    return normalised_text(item.text)


class TopicWindows:
    """One topic's open event-time windows, tumbling (`step == length`) or sliding.

    The watermark is `lateness` behind the topic's lagged `Frontier`: an item behind
    it is late (returned, to be dead-lettered once), and a window whose end it passes
    closes. Adding is commutative, so items fold in as they come; only closing waits.
    Picklable: it is Bytewax state.

    >>> from datetime import UTC, timedelta
    >>> t0, now = datetime(2024, 3, 14, 14, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    >>> w = TopicWindows(t0, timedelta(minutes=5), timedelta(minutes=5), timedelta(0),
    ...                  grace=timedelta(0))
    >>> item = lambda minute: Observation(str(minute), t0 + timedelta(minutes=minute),
    ...                                   "energy_oil", "negative", 0.9, "Oil slumps")
    >>> closed, late = w.add([item(1), item(2), item(6)], now)
    >>> [(window.start.minute, window.n) for window in closed], late
    ([(0, 2)], [])
    >>> closed, late = w.add([item(3)], now)
    >>> closed, [o.id for o in late]
    ([], ['3'])
    """

    def __init__(
        self,
        align_to: datetime,
        length: timedelta,
        step: timedelta,
        lateness: timedelta,
        grace: timedelta,
        stories: StoryIndex | None = None,
    ) -> None:
        self.align_to = align_to
        self.stories = stories
        self.length = length
        self.step = step
        self.lateness = lateness
        self.frontier = Frontier(grace)
        self.open: dict[int, WindowAccumulator] = {}
        self.topic = UNCLASSIFIED
        self._newest = EARLIEST
        # Not late, not yet passed by the watermark: sorted by (event time, id); those
        # before `_first_pending` are folded already.
        self._pending: list[Observation] = []
        self._first_pending = 0

    def add(
        self, items: Sequence[Observation], now: datetime
    ) -> tuple[list[TopicWindow], list[Observation]]:
        """Fold in items seen at system time `now`: (windows now closed, late items)."""
        watermark = self._watermark(now)
        if items:
            newest = max(item.published_at for item in items)
            if newest > self._newest:
                self._newest = newest
                self.frontier.observe(newest, now)
            self.topic = items[0].key or items[0].topic  # the same for every item of a key
        # With a grace, the watermark is the frontier of `grace` ago, which this batch
        # cannot move; without one, each item moves it on before the next is judged.
        moves = not self.frontier.grace
        late: list[Observation] = []
        segment_start = segment_end = EARLIEST
        for item in items:
            at = item.published_at
            if moves and at - self.lateness > watermark:
                watermark = at - self.lateness
            if at < watermark:
                late.append(item)
                continue
            if not segment_start <= at < segment_end:
                # Items between two window starts fall in the same windows (opened now,
                # so that `due` sees them; filled when the watermark passes the items).
                segment_start, segment_end, _ = self._windows_at(at)
            insort(self._pending, item, lo=self._first_pending, key=_event_order)
        return self.close_upto(self._watermark(now)), late

    def _fold_upto(self, watermark: datetime | None) -> None:
        """Fold the held items the watermark has passed into their windows, in event
        order (ties by id): stories depend on the order copies come in, and this order
        is the same however parallel paths interleaved them."""
        pending, first = self._pending, self._first_pending
        cut = len(pending)
        if watermark is not None:
            cut = bisect_left(pending, watermark, lo=first, key=attrgetter("published_at"))
        if cut == first:
            return
        ready = pending[first:cut]
        if 2 * cut > len(pending):  # drop the folded head once it is the larger part
            del pending[:cut]
            cut = 0
        self._first_pending = cut
        segment_start = segment_end = EARLIEST
        windows: list[WindowAccumulator] = []
        for item in ready:
            at = item.published_at
            if not segment_start <= at < segment_end:
                segment_start, segment_end, windows = self._windows_at(at)
            story = (
                _story(item)
                if self.stories is None
                else self.stories.assign(item.id, item.text, at)[0]
            )
            for window in windows:
                window.add(item, story)

    def _windows_at(self, at: datetime) -> tuple[datetime, datetime, list[WindowAccumulator]]:
        """(lo, hi, the windows that hold `at`): every event time in lo..hi falls in
        just these windows, so the items that follow mostly reuse them."""
        last = (at - self.align_to) // self.step
        lo = self._start(last)
        hi = lo + self.step
        windows = []
        for window_id in range(last - math.ceil(self.length / self.step) + 1, last + 1):
            end = self._end(window_id)
            if end <= at:
                lo = max(lo, end)
                continue
            hi = min(hi, end)
            window = self.open.get(window_id)
            if window is None:
                window = self.open[window_id] = WindowAccumulator()
            windows.append(window)
        return lo, hi, windows

    def advance(self, now: datetime) -> list[TopicWindow]:
        """The windows that system time alone has closed (a quiet stream moves on)."""
        return self.close_upto(self._watermark(now))

    def close_upto(self, watermark: datetime | None) -> list[TopicWindow]:
        """Close the windows that end at or before `watermark` (all of them if None)."""
        self._fold_upto(watermark)
        closing = sorted(
            window_id
            for window_id in self.open
            if watermark is None or self._end(window_id) <= watermark
        )
        return [self._close(window_id) for window_id in closing]

    def due(self) -> datetime | None:
        """The system time at which the next window closes; None with none open."""
        if not self.open:
            return None
        return self.frontier.due(self._end(min(self.open)) + self.lateness)

    def resumed(self, now: datetime) -> TopicWindows:
        """These windows restored from a snapshot: the downtime is taken out."""
        self.frontier.resumed(now)
        return self

    def copy(self) -> TopicWindows:
        """A snapshot that later changes do not touch (held items are immutable, so
        their list is copied, not each of them)."""
        pending, self._pending = self._pending, []
        try:  # a pickle round trip: several times faster than deepcopy on story indexes
            twin: TopicWindows = pickle.loads(pickle.dumps(self, pickle.HIGHEST_PROTOCOL))
        finally:
            self._pending = pending
        twin._pending, twin._first_pending = pending[self._first_pending :], 0
        return twin

    def _close(self, window_id: int) -> TopicWindow:
        window = self.open.pop(window_id)
        return window.close(self.topic, self._start(window_id), self._end(window_id))

    def _start(self, window_id: int) -> datetime:
        return self.align_to + self.step * window_id

    def _end(self, window_id: int) -> datetime:
        return self._start(window_id) + self.length

    def _watermark(self, now: datetime) -> datetime:
        frontier = self.frontier.at(now)
        return frontier if frontier == EARLIEST else frontier - self.lateness
