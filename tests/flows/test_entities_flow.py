"""Per-entity windows and alerts through the whole flow: a generated company day."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.testing import TestingSink, run_main

from flows.config import load_config
from flows.monitor import build_flow
from flows.sources.file import JsonLinesSource
from flows.wiring import Outputs
from processors.chain import Chain
from processors.detection import ALERTNAME, VOLUME_ALERTNAME, fingerprint
from processors.entities import EntityCatalog, EntityMatcher, EntityProcessor
from processors.envelope.message import AlertEvent, TopicWindow
from tests.flows.test_market import KeywordLabels

OPEN = datetime(2024, 3, 14, 13, 30, tzinfo=UTC)
SURGE, ECHO, BURST = "BA", "PFE", "NVDA"


def company_day(tickers: list[str], seed: int = 4) -> list[dict[str, object]]:
    """Four calm hours on 30 companies (one item each every ten minutes or so, one in
    six negative, every item a story of its own), then: 30 minutes of distinct negative
    stories on SURGE; one negative story echoed 60 times in ten minutes on ECHO; neutral
    coverage at ten times the usual on BURST. Tickers come as the feed's own field."""
    rng = random.Random(seed)
    items: list[tuple[datetime, str, str]] = []
    for minute in range(0, 300, 10):
        for ticker in tickers:
            at = OPEN + timedelta(minutes=minute + rng.uniform(0, 9.9))
            mood = "negative" if rng.random() < 1 / 6 else "neutral"
            items.append((at, ticker, f"company_news {mood} orders at {rng.randrange(10**6)}"))
    trouble = OPEN + timedelta(hours=4)
    for i in range(45):  # distinct negative stories: each carries its own figure
        at = trouble + timedelta(seconds=40 * i)
        items.append((at, SURGE, f"company_news negative shares slide {i + 3}% on probe"))
    story = "recall widens over contaminated batches"
    for i in range(60):
        at = trouble + timedelta(seconds=10 * i)
        copy = story.upper() if i % 2 else f"{story}, sources say"
        items.append((at, ECHO, f"company_news negative {copy}"))
    for i in range(40):
        at = trouble + timedelta(seconds=20 * i)
        items.append((at, BURST, f"company_news neutral chip demand note {i + 100}"))
    return [
        {"id": f"c{i}", "text": text, "published_at": at.isoformat(), "tickers": [ticker]}
        for i, (at, ticker, text) in enumerate(sorted(items))
    ]


def test_a_company_day_fires_for_the_surging_company_only(tmp_path: Path) -> None:
    catalog = EntityCatalog.builtin()
    calm = [e.id for e in catalog if e.id not in (SURGE, ECHO, BURST)][:27]
    tickers = [SURGE, ECHO, BURST, *calm]
    path = tmp_path / "companies.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in company_day(tickers)))
    config = load_config(env={}, overrides={"dedupe.enabled": False})
    raised: list[AlertEvent] = []
    windows: list[TopicWindow] = []
    outputs = Outputs(alerts=[TestingSink(raised)], windows=[TestingSink(windows)])
    chain = Chain([KeywordLabels(), EntityProcessor(EntityMatcher(catalog))])
    run_main(build_flow(config, source=JsonLinesSource(path, 256), outputs=outputs, chain=chain))

    firing = [e for e in raised if e.status == "firing" and "entity" in e.labels]
    surges = {e.labels["entity"] for e in firing if e.labels["alertname"] == ALERTNAME}
    spikes = {e.labels["entity"] for e in firing if e.labels["alertname"] == VOLUME_ALERTNAME}
    assert surges == {SURGE}
    assert BURST in spikes and spikes <= {SURGE, ECHO, BURST}
    (surge,) = [e for e in firing if e.labels["alertname"] == ALERTNAME]
    assert surge.fingerprint == fingerprint(ALERTNAME, "$" + SURGE)
    assert "topic" not in surge.labels and surge.window.topic == "$" + SURGE
    texts = [e.text for e in surge.window.evidence]
    assert len(texts) == len(set(texts)) >= 3  # distinct stories, not one repeated
    echoed = max((w for w in windows if w.topic == "$" + ECHO), key=lambda w: w.n)
    assert echoed.n_stories <= 3 and max(e.echoes for e in echoed.evidence) >= 10
