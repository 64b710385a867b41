"""The whole dataflow on scripted streams, with the real default model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, run_main

from flows.config import Config, load_config
from flows.metrics import counter_values
from flows.monitor import build_flow
from flows.sinks.observe import Observers, ObserverSink
from flows.sources.demo import DemoSource, MarketDay, generate
from flows.sources.file import JsonLinesSource
from flows.wiring import Outputs
from processors.chain.chain import Chain
from processors.envelope.message import AlertEvent, DeadLetter, TopicWindow
from processors.stream import MARKET
from tests.helpers import is_topic_window

pytestmark = pytest.mark.slow  # whole flows with the real default model

DAY = date(2024, 3, 14)
CONFIG_OVERRIDES = {"window.length_seconds": 600, "dedupe.horizon_seconds": 60}


@dataclass
class Run:
    alerts: list[AlertEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    windows: list[TopicWindow] = field(default_factory=list)
    observers: Observers = field(default_factory=Observers)

    def count(self, name: str) -> float:
        return sum(counter_values(getattr(self.observers.metrics, name)).values())


def run_flow(source: Any, chain: Chain, config: Config | None = None) -> Run:
    config = config or load_config(env={}, overrides=CONFIG_OVERRIDES)
    run = Run()
    o = run.observers
    outputs = Outputs(
        alerts=[TestingSink(run.alerts), ObserverSink(o.on_alerts)],
        dead_letters=[TestingSink(run.dead), ObserverSink(o.on_dead_letters)],
        windows=[TestingSink(run.windows), ObserverSink(o.on_windows)],
    )
    run_main(build_flow(config, source=source, outputs=outputs, observers=o, chain=chain))
    return run


@pytest.fixture(scope="module")
def surge_run(default_chain: Chain) -> Run:
    day = MarketDay(DAY, minutes=180, surge_start=0.5, surge_minutes=30, seed=11)
    return run_flow(DemoSource(day, 256), default_chain)


def test_a_surge_fires_exactly_one_alert_for_its_topic_then_resolves(surge_run: Run) -> None:
    events = [(a.labels["topic"], a.status) for a in surge_run.alerts]
    assert events == [("energy_oil", "firing"), ("energy_oil", "resolved")]
    firing, resolved = surge_run.alerts
    assert firing.fingerprint == resolved.fingerprint
    assert firing.window.negative_share >= 0.5 and firing.window.n >= 20
    assert len(firing.window.evidence) == 5
    assert all(e.negative > 0.5 for e in firing.window.evidence)
    surge_from, surge_to = MarketDay(
        DAY, minutes=180, surge_start=0.5, surge_minutes=30
    ).surge_window()
    assert surge_from - firing.window.end < firing.window.end - firing.window.start
    assert resolved.ends_at >= surge_to - (firing.window.end - firing.window.start)


def test_counts_are_conserved(surge_run: Run) -> None:
    # read = scored + rejected (parse or processor errors); repeats are scored too (the
    # one ordering point, after the models, judges them), and scored = duplicates + in a
    # closed window (exactly one, when tumbling) + late.
    read = surge_run.count("messages_in")
    scored = surge_run.count("messages_scored")
    duplicates = surge_run.count("duplicates")
    late = [d for d in surge_run.dead if d.reason == "late"]
    rejected = len(surge_run.dead) - len(late)
    assert rejected > 0 and duplicates > 0
    assert read == scored + rejected
    by_topic = [w for w in surge_run.windows if is_topic_window(w.topic)]
    assert sum(w.n for w in by_topic) + len(late) + duplicates == scored
    market = [w for w in surge_run.windows if w.topic == MARKET]
    assert sum(w.n for w in market) == sum(w.n for w in by_topic)
    assert surge_run.count("dead_letters") == len(surge_run.dead)


def test_every_window_closes_at_the_end_of_the_stream(surge_run: Run) -> None:
    last_end = max(w.end for w in surge_run.windows)
    assert last_end >= MarketDay(DAY, minutes=180).opens_at.replace(hour=16, minute=30)
    assert {w.topic for w in surge_run.windows} >= {"energy_oil", "markets", "stock_movement"}


def test_a_calm_stream_fires_nothing(default_chain: Chain) -> None:
    day = MarketDay(DAY, minutes=150, surge_rate=0.0, seed=5)
    run = run_flow(DemoSource(day, 256), default_chain)
    assert run.alerts == []
    assert run.count("messages_scored") > 3000


def test_file_source_with_bad_and_late_lines(tmp_path: Path, default_chain: Chain) -> None:
    lines = list(
        generate(
            MarketDay(DAY, minutes=60, surge_rate=0.0, malformed_share=0.0, duplicate_share=0.0)
        )
    )
    late = (
        b'{"id": "late-1", "text": "Oil prices steady ahead of OPEC+ meeting",'
        b' "published_at": "2024-03-14T13:31:00Z"}'
    )
    bad = [
        b"{not json",
        b'{"text": ""}',
        b'{"text": "x", "published_at": "never"}',
        b'{"text": "caf\xff"}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines, *bad, b"", late]) + b"\n")
    # The late line is more than the allowed lateness behind the newest before it.
    run = run_flow(JsonLinesSource(path, 128), default_chain)
    reasons = sorted(d.reason for d in run.dead)
    assert reasons == sorted(["invalid_json", "empty_text", "bad_timestamp", "not_utf8", "late"])
    assert next(d for d in run.dead if d.reason == "late").position == "late-1"
    assert run.count("messages_in") == len(lines) + len(bad) + 1
    # Template headlines repeat within the 60 s horizon: those are duplicates.
    duplicates = run.count("duplicates")
    assert 0 < duplicates < len(lines) / 5
    assert run.count("messages_scored") == len(lines) + 1
    by_topic = [w for w in run.windows if is_topic_window(w.topic)]
    assert sum(w.n for w in by_topic) == len(lines) - duplicates
