"""Per-entity windows and alerts through the whole flow: a generated company day."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from bytewax.testing import TestingSink, run_main

from flows.config import AlertRoute, Config, load_config
from flows.monitor import build_flow
from flows.sources.file import JsonLinesSource
from flows.wiring import Outputs
from processors.chain import Chain, Processor
from processors.detection import ALERTNAME, VOLUME_ALERTNAME, fingerprint
from processors.entities import EntityCatalog, EntityMatcher, EntityProcessor
from processors.envelope.message import AlertEvent, Message, TopicWindow
from tests.flows.test_market import KeywordLabels

OPEN = datetime(2024, 3, 14, 13, 30, tzinfo=UTC)
SURGE, ECHO, BURST = "BA", "PFE", "NVDA"


def company_day(
    tickers: list[str], seed: int = 4, surge: str = SURGE, names: Mapping[str, str] = {}
) -> list[dict[str, object]]:
    """Four calm hours on 30 companies (one item each every ten minutes or so, one in
    six negative, every item a story of its own), then: 30 minutes of distinct negative
    stories on `surge`; one negative story echoed 60 times in ten minutes on ECHO; neutral
    coverage at ten times the usual on BURST. Tickers come as the feed's own field, but
    for a company in `names`, whose items name it in their text instead."""
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
        items.append((at, surge, f"company_news negative shares slide {i + 3}% on probe"))
    story = "recall widens over contaminated batches"
    for i in range(60):
        at = trouble + timedelta(seconds=10 * i)
        copy = story.upper() if i % 2 else f"{story}, sources say"
        items.append((at, ECHO, f"company_news negative {copy}"))
    for i in range(40):
        at = trouble + timedelta(seconds=20 * i)
        items.append((at, BURST, f"company_news neutral chip demand note {i + 100}"))
    return [
        {
            "id": f"c{i}",
            "text": named(text, names[ticker]) if ticker in names else text,
            "published_at": at.isoformat(),
            "tickers": [] if ticker in names else [ticker],
        }
        for i, (at, ticker, text) in enumerate(sorted(items))
    ]


def named(text: str, name: str) -> str:
    """The text with the company's name after its topic and mood (the keyword labels')."""
    topic, mood, rest = text.split(" ", 2)
    return f"{topic} {mood} {name} {rest}"


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


PRIVATE = "ACMER"  # a private company: no catalog entry, no feed ticker, only its names
ACME = {"id": PRIVATE, "aliases": ["Acme Robotics", "Acme"], "labels": {"desk": "industrials"}}


def watchlist_config(tmp_path: Path, entities: Sequence[Mapping[str, object]]) -> Config:
    path = tmp_path / "watchlist.yaml"
    path.write_text(yaml.safe_dump(list(entities)))
    overrides = {"dedupe.enabled": False, "watchlist.file": path, "watchlist.check_seconds": 0}
    return load_config(env={}, overrides=overrides)


def run_day(
    config: Config,
    items: list[dict[str, object]],
    path: Path,
    *before: Processor,
    batch_size: int = 256,
) -> tuple[list[AlertEvent], list[TopicWindow]]:
    """The items through the flow, the chain's entities from the config's live watchlist."""
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    raised: list[AlertEvent] = []
    windows: list[TopicWindow] = []
    outputs = Outputs(alerts=[TestingSink(raised)], windows=[TestingSink(windows)])
    chain = Chain([KeywordLabels(), *before, EntityProcessor(config.watchlist.live())])
    run_main(
        build_flow(config, source=JsonLinesSource(path, batch_size), outputs=outputs, chain=chain)
    )
    return raised, windows


def test_a_watchlist_adds_a_private_company_by_its_aliases(tmp_path: Path) -> None:
    catalog = EntityCatalog.builtin()
    calm = [e.id for e in catalog if e.id not in (SURGE, ECHO, BURST)][:27]
    names = {PRIVATE: "Acme Robotics", SURGE: "Boeing"}
    items = company_day([PRIVATE, ECHO, BURST, *calm], surge=PRIVATE, names=names)
    config = watchlist_config(tmp_path, [ACME])
    raised, _ = run_day(config, items, tmp_path / "companies.jsonl")

    firing = [e for e in raised if e.status == "firing" and "entity" in e.labels]
    (surge,) = [e for e in firing if e.labels["alertname"] == ALERTNAME]
    assert surge.labels == {
        "alertname": ALERTNAME,
        "entity": PRIVATE,
        "severity": surge.labels["severity"],
        "desk": "industrials",
    }
    assert surge.fingerprint == fingerprint(ALERTNAME, "$" + PRIVATE)
    others = [e for e in firing if e.labels["entity"] != PRIVATE]
    assert others and all("desk" not in e.labels for e in others)
    route = AlertRoute.model_validate({"labels": {"desk": "industrials"}})
    assert [e for e in raised if route.accepts(e)] == [e for e in raised if "desk" in e.labels]


class RewriteAt(Processor):
    """Writes a new watchlist file when the message `at` comes through: the flow runs on."""

    name = "rewrite"

    def __init__(self, at: str, path: Path, entities: list[dict[str, object]]) -> None:
        self.at, self.path, self.entities = at, path, entities

    def process(self, batch: Sequence[Message]) -> list[Message]:
        if any(m.header.id == self.at for m in batch):
            self.path.write_text(yaml.safe_dump(self.entities))
        return list(batch)


def test_a_watchlist_rewritten_mid_stream_is_taken_without_losing_window_state(
    tmp_path: Path,
) -> None:
    """Every 30 s an item names "Acme Robotics" or, in turn, just "Acme"; at minute 12 the
    list gains the alias "Acme". The window across the change counts the items the old
    list matched and those the new one did: it was kept, not started afresh."""
    items = [
        {
            "id": f"a{i}",
            "text": f"company_news neutral {'Acme' if i % 2 else 'Acme Robotics'} note {i}",
            "published_at": (OPEN + timedelta(seconds=30 * i + 1)).isoformat(),
        }
        for i in range(40)  # 20 minutes: windows of 5
    ]
    config = watchlist_config(tmp_path, [{"id": PRIVATE, "aliases": ["Acme Robotics"]}])
    file = config.watchlist.file
    assert file is not None
    rewrite = RewriteAt("a24", file, [ACME])  # 12:00 into the stream
    # One item a batch: the list changes exactly at a24.
    _, windows = run_day(config, items, tmp_path / "acme.jsonl", rewrite, batch_size=1)

    counts = [w.n for w in sorted(windows, key=lambda w: w.start) if w.topic == "$" + PRIVATE]
    # "Acme Robotics" only; then a20-a29: its 5, and "Acme" a25, a27, a29; then all.
    assert counts == [5, 5, 8, 10]
    assert config.watchlist.live().reloads == {"loaded": 1, "rejected": 0}
