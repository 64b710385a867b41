"""Watchlists: the config section and its file, reloads while a job runs, and what a
watched entity's keys get: its detector settings and its routing labels."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
import yaml

from flows.config import (
    AlertRoute,
    ConfigError,
    DetectorConfig,
    ReceiverConfig,
    WindowConfig,
    load_config,
)
from flows.sinks.webhook.render import render
from flows.steps import Detect
from flows.watchlist import LiveWatchlist
from processors.detection import ALERTNAME, VOLUME_ALERTNAME, fingerprint
from processors.detection.lifecycle import TopicMonitor
from processors.entities import EntityCatalog
from processors.envelope.message import AlertEvent
from tests.helpers import window

ACME = {
    "id": "acmer",
    "aliases": ["Acme Robotics"],
    "labels": {"desk": "industrials"},
    "detector": {"false_alarms_per_month": 0.3, "volume": {"min_ratio": 3}},
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def base() -> EntityCatalog:
    return EntityCatalog.builtin()


def write(path: Path, entities: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump(entities))
    return path


def live(
    tmp_path: Path,
    base: EntityCatalog,
    entities: list[dict[str, object]],
    clock: Clock | None = None,
) -> LiveWatchlist:
    """A live watchlist of `entities` in a file, looked at every 5 s of `clock`."""
    file = write(tmp_path / "watchlist.yaml", entities)
    config = load_config(env={}, overrides={"watchlist.file": file, "watchlist.check_seconds": 5})
    return LiveWatchlist(config.watchlist, base, clock or Clock())


# --- the config ------------------------------------------------------------------------


def test_inline_entities_and_the_file_are_one_list(tmp_path: Path) -> None:
    file = write(tmp_path / "w.yaml", [ACME])
    config = load_config(
        env={},
        overrides={"watchlist": {"file": str(file), "entities": [{"id": "$xom", "aliases": []}]}},
    )
    assert [e.id for e in config.watchlist.read()] == ["XOM", "ACMER"]
    assert config.watchlist.check_seconds == 5
    assert config.watchlist.live() is config.watchlist.live()  # one per job


@pytest.mark.parametrize(
    ("entity", "problem"),
    [
        ({"id": "ACME ROBOTICS"}, "letters, digits"),
        ({"id": "ACMER", "aliases": [" "]}, "alias is empty"),
        ({"id": "ACMER", "labels": {"severity": "page"}}, "finsentry's own"),
        ({"id": "ACMER", "labels": {"desk-name": "x"}}, "Prometheus label names"),
        ({"id": "ACMER", "labels": {"desk": 3}}, "valid string"),
        ({"id": "ACMER", "detector": {"kind": "ewma"}}, "['kind'] cannot be set"),
        ({"id": "ACMER", "detector": {"volume": {"enabled": False}}}, "volume.enabled"),
        ({"id": "ACMER", "detector": {"p_fire": 2}}, "p_fire"),
        ({"id": "ACMER", "detector": {"min_stories": 3}}, "min_stories"),
    ],
)
def test_a_bad_entity_fails_at_start_naming_the_field(
    entity: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=r"watchlist\.entities\.0") as raised:
        load_config(env={}, overrides={"watchlist.entities": [entity]})
    assert problem in str(raised.value)


def test_a_bad_or_missing_file_fails_at_start_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: [ACMER\n")
    for path, problem in ((bad, "not valid YAML"), (tmp_path / "none.yaml", "cannot read")):
        with pytest.raises(ConfigError, match=f"watchlist: .*{problem}"):
            load_config(env={}, overrides={"watchlist.file": path})
    write(bad, [ACME, {"id": "ACMER"}])
    with pytest.raises(ConfigError, match=r"more than once: \['ACMER'\]"):
        load_config(env={}, overrides={"watchlist.file": bad})


def test_one_company_twice_under_two_share_classes_is_refused(
    tmp_path: Path, base: EntityCatalog
) -> None:
    with pytest.raises(ValueError, match="GOOG and GOOGL are one company, GOOGL"):
        live(tmp_path, base, [{"id": "GOOG"}, {"id": "GOOGL"}])


# --- reloads ---------------------------------------------------------------------------


def test_a_changed_file_is_read_again_once_its_check_is_due(
    tmp_path: Path, base: EntityCatalog
) -> None:
    clock = Clock()
    watchlist = live(tmp_path, base, [ACME], clock)
    first = watchlist.matcher()
    assert first.find("Acme Robotics and Zeta Dynamics") == {"ACMER"}
    write(watchlist.config.file, [ACME, {"id": "ZETA", "aliases": ["Zeta Dynamics"]}])
    clock.now = 4.9
    assert watchlist.matcher() is first  # not looked at yet
    clock.now = 5.0
    assert watchlist.matcher().find("Acme Robotics and Zeta Dynamics") == {"ACMER", "ZETA"}
    assert watchlist.current().version == 2 and watchlist.reloads["loaded"] == 1
    assert watchlist.matcher() is watchlist.matcher()  # built once per version


def test_a_bad_version_is_logged_counted_and_skipped(
    tmp_path: Path, base: EntityCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    watchlist = live(tmp_path, base, [ACME], clock)
    file = watchlist.config.file
    assert file is not None
    for step, breakage in enumerate((lambda: file.write_text("- {id: [\n"), file.unlink)):
        breakage()
        clock.now += 5
        with caplog.at_level(logging.ERROR, logger="flows.watchlist"):
            assert set(watchlist.current().entities) == {"ACMER"}  # the last good list
        assert watchlist.reloads == {"loaded": 0, "rejected": step + 1}
        assert watchlist.rejected
        assert "keeping the last good list" in caplog.text
    clock.now += 5
    assert watchlist.current().version == 1  # an unchanged bad state is not counted again
    write(file, [{"id": "ZETA", "aliases": ["Zeta Dynamics"]}])
    clock.now += 5
    assert set(watchlist.current().entities) == {"ZETA"}
    assert watchlist.reloads == {"loaded": 1, "rejected": 2} and not watchlist.rejected


def test_an_empty_watchlist_loads_no_catalog_until_a_matcher_is_asked_for() -> None:
    watchlist = load_config(env={}).watchlist.live()
    assert watchlist.entity("BA") is None and "base" not in vars(watchlist)
    assert watchlist.matcher().find("Boeing") == {"BA"}


# --- what a watched entity's keys get ---------------------------------------------------

DETECTOR = DetectorConfig()
WINDOW = WindowConfig()


def run_key(
    detect: Detect, key: str, shares: list[tuple[int, int]], start: int = 0
) -> tuple[list[TopicMonitor], list[AlertEvent]]:
    """Feed one key's windows (n, negative) through `detect`, as Bytewax would."""
    state, events = None, []
    for i, (n, negative) in enumerate(shares, start):
        state, out = detect(state, window(key, n, negative, i))
        events += out
    assert state is not None
    return state, events


CALM_THEN_SURGE = [(20, 2)] * 12 + [(20, 17)] * 2


def test_a_watched_entity_alert_carries_its_labels_with_a_stable_fingerprint(
    tmp_path: Path, base: EntityCatalog
) -> None:
    watchlist = live(tmp_path, base, [ACME])
    _, events = run_key(Detect(DETECTOR, WINDOW, watchlist), "$ACMER", CALM_THEN_SURGE)
    (surge,) = [e for e in events if e.labels["alertname"] == ALERTNAME]
    assert surge.labels == {
        "alertname": ALERTNAME,
        "entity": "ACMER",
        "severity": "critical",
        "desk": "industrials",
    }
    assert surge.fingerprint == fingerprint(ALERTNAME, "$ACMER")
    _, unwatched = run_key(Detect(DETECTOR, WINDOW, watchlist), "$BA", CALM_THEN_SURGE)
    assert {tuple(e.labels) for e in unwatched} == {("alertname", "entity", "severity")}
    _, topics = run_key(Detect(DETECTOR, WINDOW, watchlist), "energy_oil", CALM_THEN_SURGE)
    assert topics and all("desk" not in e.labels for e in topics)


def test_its_detector_settings_apply_to_its_keys_alone(tmp_path: Path, base: EntityCatalog) -> None:
    watchlist = live(tmp_path, base, [ACME])
    detect = Detect(DETECTOR, WINDOW, watchlist)
    (surge, volume), _ = run_key(detect, "$ACMER", [(20, 2)])
    (plain, plain_volume), _ = run_key(detect, "$BA", [(20, 2)])
    assert surge.detector.p_fire == pytest.approx(10 * plain.detector.p_fire)  # 0.3 vs 0.03
    assert (volume.detector.min_ratio, plain_volume.detector.min_ratio) == (3.0, 2.0)
    assert volume.alertname == VOLUME_ALERTNAME


def test_a_reload_retunes_a_running_key_keeping_what_it_learnt(
    tmp_path: Path, base: EntityCatalog
) -> None:
    clock = Clock()
    watchlist = live(tmp_path, base, [ACME], clock)
    detect = Detect(DETECTOR, WINDOW, watchlist)
    state, _ = run_key(detect, "$ACMER", [(20, 2)] * 6)
    learnt = state[0].detector.items
    retuned = {**ACME, "labels": {"desk": "robotics"}, "detector": {"min_lift": 0.3}}
    write(watchlist.config.file, [retuned])  # type: ignore[arg-type]
    clock.now = 5
    state, _ = detect(state, window("$ACMER", 20, 2, 6))
    surge, volume = state
    assert surge.detector.min_lift == 0.3 and surge.detector.items > learnt
    assert surge.detector.p_fire == pytest.approx(
        DETECTOR.false_alarms_per_month * WINDOW.step_seconds / (30 * 86_400)
    )
    assert volume.detector.min_ratio == 2.0  # its override is gone with the old version
    assert surge.labels == volume.labels == (("desk", "robotics"),)
    write(watchlist.config.file, [])  # type: ignore[arg-type]
    clock.now = 10
    state, _ = detect(state, window("$ACMER", 20, 2, 7))
    assert state[0].detector.min_lift == DETECTOR.min_lift and state[0].labels == ()


def test_without_a_watchlist_an_entity_key_is_judged_as_before() -> None:
    state, events = run_key(Detect(DETECTOR, WINDOW), "$ACMER", CALM_THEN_SURGE)
    assert state[0].labels == ()
    assert {tuple(e.labels) for e in events} == {("alertname", "entity", "severity")}


# --- routes ----------------------------------------------------------------------------


def test_routes_match_alerts_on_their_labels(tmp_path: Path, base: EntityCatalog) -> None:
    watchlist = live(tmp_path, base, [ACME])
    _, events = run_key(Detect(DETECTOR, WINDOW, watchlist), "$ACMER", CALM_THEN_SURGE)
    _, others = run_key(Detect(DETECTOR, WINDOW, watchlist), "$BA", CALM_THEN_SURGE)
    desk = AlertRoute.model_validate({"labels": {"desk": "industrials"}})
    desks = AlertRoute.model_validate({"labels": {"desk": ["energy", "industrials"]}})
    energy = AlertRoute.model_validate({"labels": {"desk": "energy"}, "severities": ["critical"]})
    assert desk.labels == {"desk": ["industrials"]}
    assert events and all(desk.accepts(e) and desks.accepts(e) for e in events)
    assert not any(energy.accepts(e) for e in events)
    assert others and not any(desk.accepts(e) for e in others)


def test_an_alertmanager_body_groups_an_entity_alert_by_its_entity(
    tmp_path: Path, base: EntityCatalog
) -> None:
    watchlist = live(tmp_path, base, [ACME])
    _, events = run_key(Detect(DETECTOR, WINDOW, watchlist), "$ACMER", CALM_THEN_SURGE)
    receiver = ReceiverConfig.model_validate({"name": "desk", "url": "https://desk.example"})
    body = json.loads(render(events[0], receiver))
    assert body["groupLabels"] == {"alertname": events[0].labels["alertname"], "entity": "ACMER"}
    assert body["commonLabels"]["desk"] == "industrials"


def test_a_monitor_snapshotted_before_labels_existed_resumes_without_any() -> None:
    (monitor, _), _ = run_key(Detect(DETECTOR, WINDOW), "$BA", [(20, 2)])
    del monitor.__dict__["labels"]  # as a snapshot of an older version holds it
    resumed: TopicMonitor = pickle.loads(pickle.dumps(monitor))
    assert resumed.labels == ()
