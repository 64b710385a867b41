"""The story-burst detector with plain lists: a word that many negative stories share."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

from processors.detection.burst import BurstDetector
from processors.detection.lifecycle import BURST_ALERTNAME, TopicMonitor
from processors.envelope.message import TopicWindow

DAY = timedelta(days=1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CALM_WORDS = ("stocks", "oil", "rates", "shares", "profit", "fall", "warns", "cuts")


def _window(day: int, words: dict[str, tuple[int, int]], n: int = 150) -> TopicWindow:
    start = T0 + day * DAY
    negative = 20
    return TopicWindow(
        "all", start, start + DAY, n, negative, n - negative, 0, negative / n, 0.0,
        n_stories=n, n_negative_stories=negative, negative_words=words,
    )  # fmt: skip


def _calm(rng: random.Random) -> dict[str, tuple[int, int]]:
    """A calm day's words: each usual word in a few negative stories, in one or two topics."""
    words = {}
    for word in CALM_WORDS:
        stories = rng.randint(0, 3)
        if stories:
            words[word] = (stories, rng.randint(0, stories - 1))
    return words


def _warm(detector: BurstDetector, days: int = 30, seed: int = 1) -> random.Random:
    rng = random.Random(seed)
    for day in range(days):
        assert not detector.update(_window(day, _calm(rng)), False).abnormal
    return rng


def test_a_word_in_many_negative_stories_across_topics_fires_and_names_itself() -> None:
    d = BurstDetector()
    rng = _warm(d)
    verdict = d.update(_window(30, _calm(rng) | {"svb": (10, 7)}), False)
    assert verdict.abnormal
    assert verdict.subject == "svb"
    assert verdict.run_counts == (7, 150)
    assert verdict.score > 3


def test_a_surge_within_one_topic_is_not_a_burst() -> None:
    # Fifteen negative oil stories, all in energy_oil: that topic's key judges them.
    d = BurstDetector()
    rng = _warm(d)
    assert not d.update(_window(30, _calm(rng) | {"crude": (15, 0)}), False).abnormal


def test_too_few_stories_never_fire_however_new_the_word() -> None:
    d = BurstDetector(min_stories=4)
    rng = _warm(d)
    assert not d.update(_window(30, _calm(rng) | {"zebra": (3, 3)}), False).abnormal


def test_a_usual_word_needs_many_times_its_usual_count() -> None:
    # "stocks" is in about 1.5 negative stories a day: five more is not a burst of it.
    d = BurstDetector()
    rng = _warm(d)
    assert not d.update(_window(30, _calm(rng) | {"stocks": (6, 5)}), False).abnormal


def test_the_budget_is_shared_among_the_words_judged() -> None:
    # The same evidence for one word fires alone and not among a hundred judged words.
    burst = {"svb": (6, 5)}
    alone, crowded = BurstDetector(), BurstDetector()
    rng = _warm(alone)
    _warm(crowded)
    calm = _calm(rng)
    noise = {f"word{i}": (4, 4) for i in range(100)}
    first = alone.update(_window(30, calm | burst), False)
    second = crowded.update(_window(30, calm | burst | noise), False)
    assert first.abnormal and first.subject == "svb"
    assert not second.abnormal


def test_no_alert_before_the_prior_is_outweighed() -> None:
    d = BurstDetector(prior_stories=2000)
    assert not d.update(_window(0, {"svb": (30, 25)}), False).abnormal


def test_the_alert_follows_its_word_until_it_calms() -> None:
    d = BurstDetector()
    rng = _warm(d)
    monitor = TopicMonitor(d, alertname=BURST_ALERTNAME)
    days = [{"svb": (10, 7)}, {"svb": (8, 6), "bank": (9, 6)}, {"svb": (1, 0)}]
    windows = [_window(30 + i, _calm(rng) | words) for i, words in enumerate(days)]
    events = [event for window in windows for event in monitor.update(window)]
    assert [e.status for e in events] == ["firing", "resolved"]
    firing, resolved = events
    assert firing.labels == {"alertname": BURST_ALERTNAME, "topic": "all", "severity": "warning"}
    assert '"svb"' in firing.annotations["summary"]
    assert "7 of the 150 stories" in firing.annotations["description"]
    assert firing.window.negative_words == {"svb": (10, 7)}  # not the whole vocabulary
    assert resolved.ends_at == T0 + 32 * DAY
    assert resolved.fingerprint == firing.fingerprint


def test_a_story_that_builds_up_does_not_teach_itself_as_normal() -> None:
    # Two suspect days before the burst: the word's usual grows, but not to the burst.
    d = BurstDetector()
    rng = _warm(d)
    for day, stories in ((30, (3, 3)), (31, (4, 3))):
        d.update(_window(day, _calm(rng) | {"svb": stories}), False)
    assert d.share("svb") * 150 < 1.0
    assert d.update(_window(32, _calm(rng) | {"svb": (10, 8)}), False).abnormal


def test_a_word_in_the_news_for_good_is_learnt_and_its_alert_resolves() -> None:
    d = BurstDetector()
    rng = _warm(d)
    monitor = TopicMonitor(d, alertname=BURST_ALERTNAME)
    statuses = [
        (day, event.status)
        for day in range(30, 90)
        for event in monitor.update(_window(day, _calm(rng) | {"tariffs": (8, 6)}))
    ]
    assert [status for _, status in statuses] == ["firing", "resolved"]
    assert statuses[1][0] < 30 + 42  # learnt within weeks, at most three times its usual a day
    assert not d.update(_window(90, _calm(rng) | {"tariffs": (8, 6)}), False).abnormal


def test_the_state_stays_bounded_and_picklable() -> None:
    d = BurstDetector(max_words=50, half_life_seconds=86_400.0)
    for day in range(40):
        d.update(_window(day, {f"w{day}-{i}": (1, 0) for i in range(30)}), False)
    assert len(d.words) <= 50
    assert all(not word.startswith("w0-") for word in d.words)  # forgotten long since
    twin = pickle.loads(pickle.dumps(d))
    assert twin.words == d.words and twin.stories == d.stories
