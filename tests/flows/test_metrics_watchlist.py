"""Series per watched entity: as many as the watchlist has, whatever the stream names."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml
from prometheus_client import CollectorRegistry

from flows.config import load_config
from flows.metrics import Metrics
from flows.watchlist import LiveWatchlist
from processors.detection import ALERTNAMES, VOLUME_ALERTNAME
from processors.entities import Entity, EntityCatalog
from processors.envelope.message import NO_END, AlertEvent, TopicWindow
from tests.helpers import T0, window

BASE = EntityCatalog([Entity("BA", ("Boeing",)), Entity("XOM", ("Exxon",))])


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(s.labels.values()): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def alert(ticker: str, status: str, alertname: str = VOLUME_ALERTNAME) -> AlertEvent:
    labels = {"alertname": alertname, "entity": ticker, "severity": "warning"}
    closed = window(f"${ticker}", 10, 1, 0)
    return AlertEvent(status, labels, {}, T0, NO_END, "f", closed, 0.0, 5.0)


def watching(tmp_path: Path, *ids: str) -> tuple[Path, LiveWatchlist]:
    file = tmp_path / "watchlist.yaml"
    file.write_text(yaml.safe_dump([{"id": id} for id in ids]))
    config = load_config(env={}, overrides={"watchlist.file": file, "watchlist.check_seconds": 0})
    return file, LiveWatchlist(config.watchlist, BASE)


def test_only_watched_entities_have_series_whatever_the_stream_names(tmp_path: Path) -> None:
    _, watchlist = watching(tmp_path, "XOM", "ACMER")
    registry = CollectorRegistry()
    metrics = Metrics(registry, watchlist)
    for i in range(2_000):  # a stream that names ever new tickers
        metrics.observe_window(window(f"$T{i}", 5, 1, 0))
        metrics.observe_alert(alert(f"T{i}", "firing"))
    stories = msgspec.structs.replace(window("$XOM", 12, 9, 1), n_stories=4)
    metrics.observe_window(stories)
    metrics.observe_alert(alert("XOM", "firing"))
    assert samples(registry, "finsentry_watched_entity_messages") == {("XOM",): 12}
    assert samples(registry, "finsentry_watched_entity_stories") == {("XOM",): 4}
    assert samples(registry, "finsentry_watched_entity_negative_share") == {("XOM",): 0.75}
    firing = samples(registry, "finsentry_watched_entity_alerts_firing")
    assert set(firing) == {(a, t) for a in ALERTNAMES for t in ("ACMER", "XOM")}
    assert firing[(VOLUME_ALERTNAME, "XOM")] == 1 and sum(firing.values()) == 1
    assert samples(registry, "finsentry_entity_windows_closed_total") == {(): 2_001}
    assert samples(registry, "finsentry_watchlist_entities") == {(): 2}
    metrics.observe_alert(alert("XOM", "resolved"))
    assert sum(samples(registry, "finsentry_watched_entity_alerts_firing").values()) == 0


def test_an_entity_taken_off_the_list_takes_its_series(tmp_path: Path) -> None:
    file, watchlist = watching(tmp_path, "XOM", "BA")
    registry = CollectorRegistry()
    metrics = Metrics(registry, watchlist)
    for ticker in ("XOM", "BA"):
        metrics.observe_window(window(f"${ticker}", 10, 2, 0))
    file.write_text(yaml.safe_dump([{"id": "BA"}]))
    assert samples(registry, "finsentry_watched_entity_messages") == {("BA",): 10}
    assert {t for _, t in samples(registry, "finsentry_watched_entity_alerts_firing")} == {"BA"}
    file.write_text("- {id: [\n")  # a bad version: counted, the list stays
    reloads = samples(registry, "finsentry_watchlist_reloads_total")
    assert reloads == {("loaded",): 1, ("rejected",): 1}
    assert samples(registry, "finsentry_watchlist_file_rejected") == {(): 1}
    assert samples(registry, "finsentry_watchlist_entities") == {(): 1}


def test_without_a_watchlist_the_families_exist_empty() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_window(window("$BA", 10, 2, 0))
    assert samples(registry, "finsentry_watched_entity_messages") == {}
    assert samples(registry, "finsentry_watchlist_entities") == {(): 0}
    assert samples(registry, "finsentry_watchlist_reloads_total") == {
        ("loaded",): 0,
        ("rejected",): 0,
    }
    assert samples(registry, "finsentry_watchlist_file_rejected") == {(): 0}


def test_a_topic_window_is_no_entity_series() -> None:
    registry = CollectorRegistry()
    Metrics(registry).observe_window(TopicWindow("energy_oil", T0, T0, 3, 1, 2, 0, 1 / 3, -0.3))
    assert samples(registry, "finsentry_window_messages") == {("energy_oil",): 3}
