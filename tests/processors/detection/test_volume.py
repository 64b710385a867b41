"""The volume detector with plain lists: its tail, its week slots, its false alarms."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from processors.detection.volume import VolumeDetector, log_nb_upper_tail, week_slot
from processors.envelope.message import TopicWindow

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _pmf(j: int, mean: float, dispersion: float) -> float:
    if dispersion == 0.0:
        return math.exp(j * math.log(mean) - mean - math.lgamma(j + 1))
    r = 1.0 / dispersion
    return math.exp(
        math.lgamma(j + r)
        - math.lgamma(r)
        - math.lgamma(j + 1)
        + r * math.log(r / (r + mean))
        + j * math.log(mean / (r + mean))
    )


@pytest.mark.parametrize("dispersion", [0.0, 0.05, 0.5, 3.0])
@pytest.mark.parametrize(("k", "mean"), [(1, 0.2), (3, 1.0), (12, 4.0), (40, 30.0), (90, 30.0)])
def test_the_tail_is_one_minus_the_cdf(k: int, mean: float, dispersion: float) -> None:
    expected = 1.0 - sum(_pmf(j, mean, dispersion) for j in range(k))
    got = math.exp(log_nb_upper_tail(k, mean, dispersion))
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-13)


def test_a_far_tail_does_not_underflow() -> None:
    assert log_nb_upper_tail(5000, 10.0, 0.01) < -1000


def test_slots_are_hours_of_the_week_or_days_for_daily_windows() -> None:
    tuesday_3am = MONDAY + timedelta(days=8, hours=3)
    assert week_slot(tuesday_3am, timedelta(minutes=5)) == 24 + 3
    assert week_slot(tuesday_3am, HOUR) == 27
    assert week_slot(tuesday_3am, timedelta(days=1)) == 1
    assert week_slot(tuesday_3am, timedelta(weeks=2)) == 0


def _window(start: datetime, n: int, step: timedelta = HOUR) -> TopicWindow:
    return TopicWindow("all", start, start + step, n, 0, n, 0, 0.0, 0.0)


def _busy_by_day(hour_of_week: int) -> float:
    """A wire's usual items an hour: busy weekday working hours, quiet nights and weekends."""
    day, hour = divmod(hour_of_week, 24)
    return 30.0 if day < 5 and 8 <= hour < 18 else 3.0


def test_a_night_hour_as_busy_as_a_working_hour_fires_and_a_working_hour_does_not() -> None:
    rng = random.Random(3)
    detector = VolumeDetector(p_fire=1e-4)
    start = MONDAY
    for _ in range(4 * 168):  # four calm weeks
        usual = _busy_by_day(week_slot(start, HOUR))
        assert not detector.update(_window(start, _poisson(rng, usual)), False).abnormal
        start += HOUR
    # Week five, Monday: 11:00 holds 32 items (usual), 02:00 holds 30 (ten times usual).
    at_two, at_eleven = start + 2 * HOUR, start + 11 * HOUR
    assert detector.update(_window(at_two, 30), False).abnormal
    assert not detector.update(_window(at_eleven, 32), False).abnormal


def test_thin_keys_need_more_than_a_few_extra_items() -> None:
    detector = VolumeDetector(p_fire=1e-3, step_seconds=86_400)
    start = MONDAY
    for i in range(60):
        detector.update(_window(start, 1 + i % 2, timedelta(days=1)), False)
        start += timedelta(days=1)
    day = timedelta(days=1)
    assert not detector.update(_window(start, 4, day), False).abnormal
    assert detector.update(_window(start + day, 25, day), False).abnormal


def test_bursty_calm_news_rarely_fires() -> None:
    """Gamma-Poisson counts (overdispersed, as news is) around a seasonal usual."""
    rng = random.Random(5)
    detector = VolumeDetector(p_fire=1e-4)
    start, abnormal = MONDAY, 0
    hours = 26 * 168  # half a year of hourly windows
    for _ in range(hours):
        usual = _busy_by_day(week_slot(start, HOUR))
        n = _poisson(rng, rng.gammavariate(4.0, usual / 4.0))  # dispersion 0.25
        abnormal += detector.update(_window(start, n), False).abnormal
        start += HOUR
    assert abnormal <= 3  # p_fire * hours = 0.4 expected; the learnt dispersion is noisy


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method (means here are small)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


DAY = timedelta(days=1)


def _sourced(start: datetime, counts: dict[str, int], active: tuple[str, ...] = ()) -> TopicWindow:
    """A daily window of a key with its items by source; `active`: the stream's sources."""
    n = sum(counts.values())
    stream = tuple(sorted({*active, *counts}))
    return TopicWindow(
        "markets", start, start + DAY, n, 0, n, 0, 0.0, 0.0, sources=counts, stream_sources=stream
    )


def _days(detector: VolumeDetector, days: range, make) -> list[bool]:  # type: ignore[no-untyped-def]
    return [detector.update(make(MONDAY + day * DAY, day), False).abnormal for day in days]


def test_a_feed_that_starts_is_not_a_spike_and_its_items_count_once_learnt() -> None:
    rng = random.Random(2)
    d = VolumeDetector(p_fire=1e-3, step_seconds=86_400)
    assert not any(_days(d, range(60), lambda t, _: _sourced(t, {"ft": _poisson(rng, 8)})))
    # A second wire starts with four times the key's usual: learnt, not judged, at first.
    both = lambda t, _: _sourced(t, {"ft": _poisson(rng, 8), "wsj": _poisson(rng, 32)})  # noqa: E731
    assert not any(_days(d, range(60, 120), both))
    # Once learnt, the same wire's items are judged: three times the usual fires.
    assert d.update(_sourced(MONDAY + 120 * DAY, {"ft": 24, "wsj": 96}), False).abnormal


def test_a_key_learns_zeros_from_a_source_that_publishes_elsewhere() -> None:
    # The Telegraph writes every day, never on this key; then 40 of its stories land here.
    rng = random.Random(4)
    d = VolumeDetector(p_fire=1e-3, step_seconds=86_400)
    calm = lambda t, _: _sourced(t, {"ft": _poisson(rng, 8)}, active=("telegraph",))  # noqa: E731
    assert not any(_days(d, range(60), calm))
    assert d.update(_sourced(MONDAY + 60 * DAY, {"ft": 8, "telegraph": 40}), False).abnormal


def test_a_feed_that_posts_in_batches_is_bursty_on_its_own() -> None:
    # One feed posts a batch of ten to twenty items on one day in six; the other is steady.
    rng = random.Random(6)
    d = VolumeDetector(p_fire=1e-3, step_seconds=86_400)

    def day(t: datetime, i: int) -> TopicWindow:
        batch = rng.randint(10, 20) if rng.random() < 1 / 6 else _poisson(rng, 1)
        return _sourced(t, {"steady": _poisson(rng, 10), "batches": batch})

    assert sum(_days(d, range(150), day)) <= 1
    # Its batch is no news; the steady feed at four times its usual is.
    assert not d.update(_sourced(MONDAY + 150 * DAY, {"steady": 10, "batches": 20}), False).abnormal
    assert d.update(_sourced(MONDAY + 151 * DAY, {"steady": 40, "batches": 1}), False).abnormal


def test_sources_past_the_limit_are_pooled() -> None:
    d = VolumeDetector(step_seconds=86_400, max_sources=3)
    d.update(_sourced(MONDAY, {f"feed{i}": 1 for i in range(10)}), False)
    assert sorted(d.sources) == ["", "feed0", "feed1"]
