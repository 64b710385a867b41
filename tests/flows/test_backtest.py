"""`finsentry backtest`: event scoring, the replay and its re-window, and the report."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from flows import backtest as bt
from flows.cli import main
from flows.config import load_config
from flows.sources.demo import MarketDay, generate
from processors.envelope.message import (
    NO_END,
    AlertEvent,
    Body,
    Header,
    Message,
    Result,
    TopicWindow,
    to_json,
)

D0 = datetime(2023, 3, 1, tzinfo=UTC)
ALERT_FIELDS = {f.name for f in msgspec.structs.fields(AlertEvent)}


def alert(topic: str, at: datetime, status: str = "firing", ends: datetime = NO_END) -> AlertEvent:
    window = TopicWindow(topic, at, at + timedelta(hours=1), 10, 8, 2, 0, 0.8, -0.8)
    return AlertEvent(
        status=status,
        labels={"alertname": "NegativeSentimentSurge", "topic": topic, "severity": "critical"},
        annotations={},
        starts_at=at,
        ends_at=ends,
        fingerprint=f"fp-{topic}",
        window=window,
        baseline_negative_share=0.1,
        # The detector's figure (its name has changed: z_score, then score).
        **{name: 5.0 for name in ("score", "z_score") if name in ALERT_FIELDS},
    )


EVENTS = bt.parse_events(
    {
        "events": [
            {"name": "bank run", "start": "2023-03-09", "end": "2023-03-15", "topics": ["banks"]},
            {"name": "anything", "start": date(2023, 5, 1), "end": "2023-05-03T00:00:00Z"},
            {"name": "missed", "start": "2023-08-01T00:00:00Z", "end": "2023-08-04T00:00:00Z"},
        ],
        "quiet": [
            {"start": "2023-02-01", "end": "2023-03-01"},  # 28 days
            {"start": date(2023, 7, 1), "end": datetime(2023, 7, 3)},  # 2 days, naive: UTC
        ],
    }
)


def test_events_read_dates_as_midnight_utc_and_datetimes_as_utc() -> None:
    run, anything, _ = EVENTS.events
    assert run.start == datetime(2023, 3, 9, tzinfo=UTC)
    assert run.topics == frozenset({"banks"})
    assert anything.topics is None
    assert anything.end == datetime(2023, 5, 3, tzinfo=UTC)
    assert EVENTS.quiet[1].end == datetime(2023, 7, 3, tzinfo=UTC)
    assert bt.to_utc("2023-03-09T01:00:00+01:00") == datetime(2023, 3, 9, tzinfo=UTC)


def test_scoring_caught_lag_recall_quiet_rate_and_precision() -> None:
    alerts = [
        alert("energy_oil", datetime(2023, 3, 8, 12, tzinfo=UTC)),  # wrong topic: no catch
        alert("banks", datetime(2023, 3, 8, 6, tzinfo=UTC)),  # 18 h early: catches
        alert("banks", datetime(2023, 3, 8, 6, tzinfo=UTC), "resolved"),  # not counted
        alert("all", datetime(2023, 3, 10, tzinfo=UTC)),  # market-wide: also matches
        alert("banks", datetime(2023, 3, 7, 23, tzinfo=UTC)),  # 25 h early: outside the span
        alert("macro", datetime(2023, 5, 2, 3, tzinfo=UTC)),  # any topic counts
        alert("macro", datetime(2023, 5, 3, tzinfo=UTC)),  # at the end: outside (half-open)
        alert("macro", datetime(2023, 2, 10, tzinfo=UTC)),  # quiet
        alert("macro", datetime(2023, 7, 2, tzinfo=UTC)),  # quiet
        alert("macro", datetime(2023, 7, 3, tzinfo=UTC)),  # just after the quiet stretch
    ]
    score = bt.score_alerts(alerts, EVENTS)
    run, anything, missed = score.events
    assert run.caught and run.first_alert is alerts[1] and run.lag_hours == -18.0
    assert anything.caught and anything.lag_hours == 27.0
    assert not missed.caught and missed.lag_hours is None
    assert score.recall == pytest.approx(2 / 3)
    assert score.n_alerts == 9
    # In some event's span [start - 1 d, end): the first four firing ones, and the 5-2 one.
    assert score.in_events == 4 and score.precision == pytest.approx(4 / 9)
    assert score.quiet_alerts == 2 and score.quiet_days == 30.0
    assert score.quiet_alerts_per_30_days == pytest.approx(2.0)

    # Where else the event was filed: firing alerts in its span on keys it does not list.
    assert run.elsewhere == (alerts[0],) and missed.elsewhere == ()

    out = score.to_json()
    assert out["events"][0] == {
        "name": "bank run",
        "caught": True,
        "lag_hours": -18.0,
        "first_alert": {
            "alertname": "NegativeSentimentSurge",
            "topic": "banks",
            "severity": "critical",
            "starts_at": "2023-03-08T06:00:00Z",
            "fingerprint": "fp-banks",
        },
        "elsewhere": [
            {
                "alertname": "NegativeSentimentSurge",
                "topic": "energy_oil",
                "severity": "critical",
                "starts_at": "2023-03-08T12:00:00Z",
                "fingerprint": "fp-energy_oil",
            }
        ],
    }
    assert out["events"][2]["first_alert"] is None
    assert json.loads(json.dumps(out)) == out
    table = bt.format_table(score)
    assert "bank run" in table and "-18.0" in table and "recall 67%" in table
    assert "fired elsewhere" in table and "energy_oil" in table


def test_an_entity_alert_in_an_events_span_is_told_as_fired_elsewhere() -> None:
    """An entity's alert has no topic: it never catches an event that lists topics,
    and the table names it by its ticker."""
    at = datetime(2023, 3, 10, tzinfo=UTC)
    entity = msgspec.structs.replace(
        alert("$SIVB", at),
        labels={"alertname": "NewsVolumeSpike", "entity": "SIVB", "severity": "warning"},
    )
    run = bt.score_alerts([entity], EVENTS).events[0]
    assert not run.caught and run.elsewhere == (entity,)
    assert bt.alert_summary(entity)["entity"] == "SIVB"
    assert bt.alert_summary(entity)["topic"] is None
    assert bt.elsewhere_keys(run) == "$SIVB"


def test_scoring_with_nothing_to_score() -> None:
    score = bt.score_alerts([], bt.Events(()))
    assert score.to_json() == {
        "events": [],
        "recall": None,
        "quiet_alerts_per_30_days": None,
        "precision": None,
        "n_alerts": 0,
    }
    assert bt._covered_days([bt.Span(D0, D0 + timedelta(days=2))] * 2) == 2.0


def test_the_shared_events_file_reads() -> None:
    path = Path("/work/shared/data/news-streams/events_2023.yaml")
    if not path.is_file():
        pytest.skip("shared data not here")
    events = bt.load_events(path)
    assert len(events.events) >= 5 and len(events.quiet) >= 2
    assert all(e.start.tzinfo is UTC and e.topics for e in events.events)


# --- the re-window path on hand-made scored messages (no models) ------------------------


def scored(i: int, at: datetime, topic: str, sentiment: str) -> Message:
    neg = 0.9 if sentiment == "negative" else 0.05
    trailer = (
        Result("topic", "topic", topic, {topic: 1.0}, "hand", 0.0),
        Result("sentiment", "sentiment", sentiment, {"negative": neg}, "hand", 0.0),
    )
    return Message(Header(f"m{i}", "scored", "wire", at, at), Body(f"item {i}"), trailer)


def daily_history() -> list[Message]:
    """60 days of 'financials', every item at midnight (a date-only feed), 10% negative;
    days 40-42 are 80% negative."""
    out = []
    for day in range(60):
        at = D0 + timedelta(days=day)
        share = 0.8 if 40 <= day < 43 else 0.1
        for k in range(60):
            sentiment = "negative" if k < share * 60 else "neutral"
            out.append(scored(len(out), at, "financials", sentiment))
    return out


DAILY_EVENTS = {
    "events": [{"name": "crunch", "start": "2023-04-10", "end": "2023-04-13"}],
    "quiet": [{"start": "2023-03-10", "end": "2023-04-09"}],
}


def test_rewindow_on_date_only_times_catches_the_surge() -> None:
    config = load_config(env={}, overrides={"window.length_seconds": 86_400})
    outcome = bt.rewindow(daily_history(), config)
    # One key per topic, and the market-wide one if the flow has it: a window a day each.
    days = {D0 + timedelta(days=i) for i in range(60)}
    assert {w.start for w in outcome.windows} == days
    assert len(outcome.windows) % 60 == 0 and all(w.n == 60 for w in outcome.windows)
    score = bt.score_alerts(outcome.alerts, bt.parse_events(DAILY_EVENTS))
    assert score.events[0].caught and score.events[0].lag_hours == 0.0
    assert score.quiet_alerts == 0 and score.precision == 1.0


def test_cli_on_a_cache_prints_a_table_then_one_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "scored.jsonl"
    cache.write_bytes(b"".join(to_json(m) + b"\n" for m in daily_history()))
    history = tmp_path / "h.jsonl"  # not read: the cache stands in for the models
    history.write_text('{"text": "x", "published_at": "2023-03-01"}\n')
    events = tmp_path / "events.yaml"
    events.write_text(json.dumps(DAILY_EVENTS))  # JSON is YAML
    config = tmp_path / "daily.yaml"
    config.write_text("window: {length_seconds: 86400}\n")
    report = tmp_path / "report.html"
    kept = tmp_path / "out"
    argv = ["backtest", str(history), "--events", str(events), "--config", str(config)]
    argv += ["--out-dir", str(kept)]
    assert main([*argv, "--scored", str(cache), "--sweep", "--report", str(report)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["recall"] == 1.0 and result["n_alerts"] >= 1
    assert result["events"][0]["lag_hours"] == 0.0
    assert result["quiet_alerts_per_30_days"] == 0.0
    assert len(result["sweep"]) == 8 and {r["window"] for r in result["sweep"]} == {
        "hourly",
        "daily",
    }
    assert any(line.startswith("crunch") and " yes " in line for line in out)
    assert "<svg" in report.read_text() and "financials" in report.read_text()
    # --out-dir keeps a re-window's alerts and windows, as it keeps a replay's.
    firing = [a for a in bt.read_lines(kept / "alerts.jsonl", AlertEvent) if a.status == "firing"]
    assert len(firing) == result["n_alerts"]
    assert bt.read_lines(kept / "windows.jsonl", TopicWindow)


def test_sweep_grid_is_easy_to_change() -> None:
    config = load_config(env={})
    grid = bt.detector_grid(config.detector)
    name = next(iter(grid))
    combos = bt.sweep_configs(config, grid={name: [grid[name][0]]}, windows={"w": 60})
    assert len(combos) == 1
    settings, swept = combos[0]
    assert settings["window"] == "w" and swept.window.length_seconds == 60
    assert getattr(swept.detector, name) == grid[name][0]
    # A false-alarm budget is every detector's: the surge's, the volume's, the burst's.
    assert swept.detector.volume.false_alarms_per_month == grid[name][0]
    assert swept.detector.burst.false_alarms_per_month == grid[name][0]


# --- the report in a headless browser ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def browser(*args: str, user_dir: Path) -> subprocess.CompletedProcess[bytes]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is needed to check the report")
        pytest.skip("chromium not installed")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_dir}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=120)


def png_pixels(data: bytes) -> bytes:
    """The decompressed image data of a PNG (filter bytes included)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"window.length_seconds": 86_400})
    outcome = bt.rewindow(daily_history(), config)
    events = bt.parse_events(DAILY_EVENTS)
    page = tmp_path / "report.html"
    page.write_text(bt.render_report(outcome, events, bt.score_alerts(outcome.alerts, events)))
    png = tmp_path / "shot.png"
    url = page.resolve().as_uri()
    browser(f"--screenshot={png}", "--window-size=1200,900", url, user_dir=tmp_path / "u1")
    assert png.is_file() and png.stat().st_size > 1000
    # A blank page has a handful of distinct bytes; lines, bands and text have many.
    assert len(set(png_pixels(png.read_bytes()))) > 16
    dom = browser("--dump-dom", url, user_dir=tmp_path / "u2").stdout.decode()
    assert "<svg" in dom and "<polyline" in dom and "crunch" in dom


# --- the whole flow on a generated day (the real default model) -------------------------

DAY = date(2024, 3, 14)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("backtest")
    day = MarketDay(DAY, minutes=120, seed=11)
    history = work / "history.jsonl"
    history.write_bytes(b"".join(line + b"\n" for line in generate(day)))
    surge_from, surge_to = day.surge_window()
    events = bt.parse_events(
        {
            "events": [
                {"name": "surge", "start": surge_from, "end": surge_to, "topics": ["energy_oil"]}
            ],
            "quiet": [{"start": day.opens_at, "end": surge_from - timedelta(minutes=20)}],
        }
    )
    overrides = {"window.length_seconds": 600, "dedupe.horizon_seconds": 60}
    config = bt.backtest_config(
        history, work, scored_path=work / "scored.jsonl", overrides=overrides, env={}
    )
    return {"config": config, "events": events, "outcome": bt.replay(config), "work": work}


@pytest.mark.slow
def test_a_replayed_surge_is_caught_and_the_calm_stays_quiet(generated: dict) -> None:
    score = bt.score_alerts(generated["outcome"].alerts, generated["events"])
    (surge,) = score.events
    assert surge.caught and surge.first_alert.labels["topic"] == "energy_oil"
    assert -0.25 <= surge.lag_hours <= 0.5
    assert score.quiet_alerts == 0


@pytest.mark.slow
def test_rewindowing_the_cache_gives_the_flows_alerts_and_windows(generated: dict) -> None:
    flow = generated["outcome"]
    config = generated["config"]
    cached = bt.rewindow(bt.read_scored(config.sinks.scored_path), config)
    assert cached.notes == []

    assert flow.alerts, "the surge should fire"
    # Field for field, evidence included; the flow's sinks interleave keys, so sorted.
    assert sorted(map(to_json, cached.alerts)) == sorted(map(to_json, flow.alerts))
    assert sorted(map(to_json, cached.windows)) == sorted(map(to_json, flow.windows))
