"""The market-wide key and real-stream shapes: date-only times, thin topics, one instant."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from bytewax.testing import TestingSink, run_main

from flows.config import load_config
from flows.monitor import build_flow
from flows.sources.file import JsonLinesSource
from flows.steps import Detect
from flows.wiring import Outputs
from processors.chain import Chain, Processor
from processors.chain.base import with_result
from processors.detection import (
    ALERTNAME,
    BURST_ALERTNAME,
    VOLUME_ALERTNAME,
    EvidenceDetector,
    TopicMonitor,
    fingerprint,
)
from processors.envelope.labels import TOPICS
from processors.envelope.message import AlertEvent, Message, Result, TopicWindow
from processors.stream import MARKET, StreamWindows
from tests.helpers import is_topic_window, message

DAY0 = datetime(2020, 1, 1, tzinfo=UTC)
DAY, NONE = timedelta(days=1), timedelta(0)


class KeywordLabels(Processor):
    """Topic from the text's first word, sentiment 'negative' where the text says so."""

    name = "keywords"

    def process(self, batch: Sequence[Message]) -> list[Message]:
        out = []
        for m in batch:
            topic, mood = m.body.text.split()[:2]
            for task, label in (("topic", topic), ("sentiment", mood)):
                m = with_result(m, Result(self.name, task, label, {label: 1.0}, "kw", 0.0))
            out.append(m)
        return out


def daily_windows(days: list[list[tuple[str, str]]]) -> list[TopicWindow]:
    """Windows per key over days of (topic, sentiment) items, all stamped at midnight."""
    windows = StreamWindows(DAY0, DAY, DAY, NONE)
    closed: list[TopicWindow] = []
    for day, items in enumerate(days):
        at = DAY0 + timedelta(days=day)
        batch = [
            message(f"{topic} {mood} {i}", id=f"{day}-{i}", at=at)
            for i, (topic, mood) in enumerate(items)
        ]
        closed += windows.add([(at, m) for m in KeywordLabels().process(batch)])[0]
    closed += windows.advance(None)
    return sorted(closed, key=lambda w: w.start)


def alerts(windows: list[TopicWindow], key: str) -> list[AlertEvent]:
    monitor = TopicMonitor(EvidenceDetector(), broad=key == MARKET)
    return [e for w in windows if w.topic == key for e in monitor.update(w)]


def calm_day(per_topic: int = 4) -> list[tuple[str, str]]:
    """Every topic thin: 4 items, one in four negative (25%)."""
    return [(t, "negative" if i == 0 else "neutral") for t in TOPICS for i in range(per_topic)]


def test_a_surge_spread_over_many_topics_fires_the_market_key_only() -> None:
    # Twenty thin topics, then a day on which each has 3 of 4 negative: no topic holds
    # evidence enough alone, the market as a whole does.
    spread = [(t, "negative" if i < 3 else "neutral") for t in TOPICS for i in range(4)]
    windows = daily_windows([calm_day() for _ in range(20)] + [spread, calm_day()])
    market = alerts(windows, MARKET)
    assert [(e.status, e.labels["topic"]) for e in market] == [
        ("firing", MARKET),
        ("resolved", MARKET),
    ]
    assert market[0].starts_at == DAY0 + timedelta(days=20)
    assert "the market as a whole" in market[0].annotations["summary"]
    assert all(alerts(windows, topic) == [] for topic in TOPICS)


def test_one_topic_surging_does_not_fire_the_market_key() -> None:
    oil = TOPICS[TOPICS.index("energy_oil")]
    surge = calm_day() + [(oil, "negative")] * 40
    windows = daily_windows([calm_day() for _ in range(20)] + [surge])
    assert [e.status for e in alerts(windows, oil)] == ["firing"]
    assert alerts(windows, MARKET) == []
    market_day = next(w for w in windows if w.topic == MARKET and w.start == surge_day(20))
    assert (market_day.leading_topic, market_day.leading_negative) == (oil, 41)


def surge_day(day: int) -> datetime:
    return DAY0 + timedelta(days=day)


def test_date_only_times_flow_through_with_daily_windows(tmp_path: Path) -> None:
    """A feed dated to the day only: every item of a day at one instant."""
    path = tmp_path / "dated.jsonl"
    lines = []
    for day in range(10):
        for i, (topic, mood) in enumerate(calm_day(2)):
            when = (DAY0 + timedelta(days=day)).date().isoformat()
            lines.append({"id": f"{day}-{i}", "text": f"{topic} {mood} {i}", "published_at": when})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    config = load_config(env={}, overrides={"window.length_seconds": 86_400})
    windows: list[TopicWindow] = []
    dead: list = []
    outputs = Outputs(windows=[TestingSink(windows)], dead_letters=[TestingSink(dead)])
    chain = Chain([KeywordLabels()])
    run_main(build_flow(config, source=JsonLinesSource(path, 64), outputs=outputs, chain=chain))
    assert dead == []
    market = [w for w in windows if w.topic == MARKET]
    assert [w.start for w in market] == [DAY0 + timedelta(days=d) for d in range(10)]
    assert all(w.n == 40 for w in market)
    assert sum(w.n for w in windows if is_topic_window(w.topic)) == 400


def _story(hour: int, i: int) -> str:
    """Words of a story of its own (distinct stories, not copies of one)."""
    tag = f"{hour + 10}x{i}"
    return f"alpha{tag} beta{tag} gamma{tag}"


def test_a_burst_of_neutral_coverage_fires_a_volume_spike_and_no_surge(tmp_path: Path) -> None:
    """Three calm weeks of hourly news (busy days, quiet nights), then ten times the
    usual energy_oil coverage in one hour, all neutral: its volume is abnormal, its tone
    is not. Through the whole flow, so the Detect step runs both detectors per key."""
    lines, start = [], DAY0
    for hour in range(21 * 24):
        at = start + timedelta(hours=hour)
        busy = 8 <= at.hour < 18
        for topic, n in (("energy_oil", 3 if busy else 1), ("macro", 6 if busy else 2)):
            for i in range(n):
                mood = "negative" if (hour + i) % 5 == 0 else "neutral"
                when = at + timedelta(minutes=7 * i + 1)
                lines.append((when, f"{topic} {mood} {_story(hour, i)}"))
    burst = start + timedelta(days=21, hours=11)
    lines += [
        (burst + timedelta(seconds=60 * i), f"energy_oil neutral {_story(-1, i)}")
        for i in range(30)
    ]
    lines += [
        (burst + timedelta(hours=2, minutes=i), f"macro neutral {_story(-2, i)}") for i in range(6)
    ]
    path = tmp_path / "weeks.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"n{i}", "text": text, "published_at": when.isoformat()}) + "\n"
            for i, (when, text) in enumerate(sorted(lines))
        )
    )
    config = load_config(env={}, overrides={"window.length_seconds": 3600})
    raised: list[AlertEvent] = []
    outputs = Outputs(alerts=[TestingSink(raised)])
    chain = Chain([KeywordLabels()])
    run_main(build_flow(config, source=JsonLinesSource(path, 256), outputs=outputs, chain=chain))
    firing = [(e.labels["alertname"], e.labels["topic"]) for e in raised if e.status == "firing"]
    assert ("NewsVolumeSpike", "energy_oil") in firing
    assert all(name == "NewsVolumeSpike" for name, _ in firing), firing
    spike = next(e for e in raised if e.labels["topic"] == "energy_oil")
    assert spike.starts_at == burst and spike.window.n == 30
    assert spike.fingerprint == fingerprint(VOLUME_ALERTNAME, "energy_oil")
    assert spike.fingerprint != fingerprint(ALERTNAME, "energy_oil")


def test_one_negative_story_echoed_sixty_times_is_one_story_not_a_surge(tmp_path: Path) -> None:
    """A calm topic, then one negative story reprinted and reworded 60 times in ten
    minutes: one story, so no surge; the evidence lists it once, with its echoes."""
    lines = []
    for hour in range(8 * 24):
        at = DAY0 + timedelta(hours=hour)
        for i in range(4):
            mood = "negative" if (hour + i) % 5 == 0 else "neutral"
            lines.append((at + timedelta(minutes=11 * i), f"energy_oil {mood} {_story(hour, i)}"))
    echo_at = DAY0 + timedelta(days=7, hours=10)
    copies = ("", " sources say", " - report", " in Texas", ", shares fall")
    story = "Refinery fire shuts Valero Port Arthur plant"
    for i in range(60):
        text = story + copies[i % len(copies)]
        text = text.upper() if i % 2 else text
        lines.append((echo_at + timedelta(seconds=10 * i), f"energy_oil negative {text}"))
    path = tmp_path / "echoes.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"e{i}", "text": text, "published_at": when.isoformat()}) + "\n"
            for i, (when, text) in enumerate(sorted(lines))
        )
    )
    overrides = {
        "window.length_seconds": 3600,
        "window.story_horizon_seconds": 21_600,  # rewordings are copies too
        "dedupe.enabled": False,
    }
    config = load_config(env={}, overrides=overrides)
    raised: list[AlertEvent] = []
    windows: list[TopicWindow] = []
    outputs = Outputs(alerts=[TestingSink(raised)], windows=[TestingSink(windows)])
    chain = Chain([KeywordLabels()])
    run_main(build_flow(config, source=JsonLinesSource(path, 256), outputs=outputs, chain=chain))
    surges = [e for e in raised if e.labels["alertname"] == ALERTNAME]
    assert surges == []
    echoed = next(w for w in windows if w.topic == "energy_oil" and w.start == echo_at)
    assert echoed.n == 64 and echoed.n_negative >= 60  # every copy counts as an item
    assert echoed.n_stories == 5  # the four calm ones and the echoed one
    (valero,) = [e for e in echoed.evidence if "VALERO" in e.text.upper()]
    assert valero.echoes == 59


def test_one_story_told_negatively_across_topics_fires_a_story_burst(tmp_path: Path) -> None:
    """A month of calm days, then a bank's failure in two negative stories in each of
    five topics: no topic's share nor the market's moves enough, but the word "svb"
    does. Through the whole flow, so the Detect step gives the market key its burst
    detector; it resolves when the word calms down."""
    crisis = ["central_banks", "company_news", "macro", "markets", "politics"]
    days = [calm_day() for _ in range(30)]
    failure = calm_day() + [(topic, "negative") for topic in crisis for _ in range(2)]
    lines = []
    for day, items in enumerate([*days, failure, calm_day()]):
        when = (DAY0 + timedelta(days=day)).isoformat()
        for i, (topic, mood) in enumerate(items):
            text = f"{topic} {mood} story {i}"
            if day == 30 and i >= len(calm_day()):
                text = f"{topic} {mood} svb {i}"  # each its own story, all saying svb
            lines.append({"id": f"{day}-{i}", "text": text, "published_at": when})
    raised = daily_alerts(tmp_path / "month.jsonl", lines)
    assert [(e.status, e.labels["alertname"], e.labels["topic"]) for e in raised] == [
        ("firing", BURST_ALERTNAME, MARKET),
        ("resolved", BURST_ALERTNAME, MARKET),
    ]
    firing = raised[0]
    assert firing.starts_at == DAY0 + timedelta(days=30)
    assert '"svb"' in firing.annotations["summary"]
    assert firing.window.negative_words == {"svb": (10, 8)}


def test_only_the_market_key_judges_story_bursts_unless_turned_off() -> None:
    config = load_config(env={})
    window = TopicWindow(MARKET, DAY0, DAY0 + DAY, 10, 1, 9, 0, 0.1, 0.0)
    detect = Detect(config.detector, config.window)
    market, _ = detect(None, window)
    topic, _ = detect(None, msgspec.structs.replace(window, topic="macro"))
    assert [m.alertname for m in market] == [ALERTNAME, VOLUME_ALERTNAME, BURST_ALERTNAME]
    assert [m.alertname for m in topic] == [ALERTNAME, VOLUME_ALERTNAME]
    off = load_config(env={}, overrides={"detector.burst.enabled": False})
    quiet, _ = Detect(off.detector, off.window)(None, window)
    assert [m.alertname for m in quiet] == [ALERTNAME, VOLUME_ALERTNAME]


def test_a_feed_that_starts_raises_no_volume_spike(tmp_path: Path) -> None:
    """Six calm weeks from one wire, then a second wire starts with three times its
    volume on every topic: the usual counts are per source, so nothing fires."""
    lines = []
    for day in range(84):
        when = (DAY0 + timedelta(days=day)).isoformat()
        feeds = [("ft", 2)] + ([("wsj", 6)] if day >= 42 else [])
        for source, per_topic in feeds:
            for topic in TOPICS:
                for i in range(per_topic):
                    mood = "negative" if i == 0 and source == "ft" else "neutral"
                    text = f"{topic} {mood} {source} story {day}-{i}"
                    lines.append({"id": f"{source}-{day}-{topic}-{i}", "text": text,
                                  "source": source, "published_at": when})  # fmt: skip
    assert daily_alerts(tmp_path / "feeds.jsonl", lines) == []


def daily_alerts(path: Path, lines: list[dict[str, str]]) -> list[AlertEvent]:
    """The alerts of the whole flow, with daily windows, over these input lines."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = load_config(env={}, overrides={"window.length_seconds": 86_400})
    raised: list[AlertEvent] = []
    outputs = Outputs(alerts=[TestingSink(raised)])
    chain = Chain([KeywordLabels()])
    run_main(build_flow(config, source=JsonLinesSource(path, 256), outputs=outputs, chain=chain))
    return raised
