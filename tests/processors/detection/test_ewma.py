"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

from processors.detection import EwmaDetector
from processors.detection.lifecycle import ALERTNAME, TopicMonitor, fingerprint
from processors.envelope.message import to_json
from tests.helpers import window


def test_detector_ignores_thin_windows_and_learns_only_from_normal_ones() -> None:
    d = EwmaDetector(min_count=20, warmup_windows=3)
    for i in range(6):
        assert not d.update(window("macro", 40, 5, i), firing=False).abnormal
    assert not d.update(window("macro", 6, 5, 6), firing=False).abnormal  # too few items
    baseline = d.mean
    surge = d.update(window("macro", 60, 45, 7), firing=False)
    assert surge.abnormal and surge.score > 3
    assert d.mean == baseline  # the surge did not become the new normal


def test_no_alert_during_warmup() -> None:
    d = EwmaDetector(warmup_windows=3)
    assert not d.update(window("macro", 60, 50, 0), firing=False).abnormal


def test_lifecycle_fires_once_holds_then_resolves_with_a_stable_fingerprint() -> None:
    monitor = TopicMonitor(EwmaDetector())
    negatives = [4, 5, 4, 4, 30, 36, 33, 20, 4, 5, 30]
    events = [
        (i, e)
        for i, neg in enumerate(negatives)
        for e in monitor.update(window("energy_oil", 40, neg, i))
    ]
    assert [(i, e.status) for i, e in events] == [(4, "firing"), (8, "resolved"), (10, "firing")]
    firing, resolved = events[0][1], events[1][1]
    assert firing.fingerprint == resolved.fingerprint == fingerprint(ALERTNAME, "energy_oil")
    assert firing.labels == {"alertname": ALERTNAME, "topic": "energy_oil", "severity": "critical"}
    assert resolved.starts_at == firing.starts_at and resolved.ends_at > firing.starts_at
    assert firing.event_id != resolved.event_id
    # The Alertmanager shape: camelCase times, "0001-01-01T00:00:00Z" while firing.
    encoded = to_json(firing)
    assert b'"startsAt"' in encoded and b'"endsAt":"0001-01-01T00:00:00Z"' in encoded
    assert b'"generatorURL"' in encoded
