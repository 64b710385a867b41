"""The alert lifecycle of one topic: firing once, resolved once, never repeated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec

from processors.detectors.base import Detector
from processors.message import NO_END, AlertEvent, TopicWindow

ALERTNAME = "NegativeSentimentSurge"


def fingerprint(alertname: str, topic: str) -> str:
    """Stable per (alertname, topic), as Alertmanager's fingerprints are per label set."""
    return hashlib.sha256(f"alertname={alertname}\x00topic={topic}".encode()).hexdigest()[:16]


@dataclass
class TopicMonitor:
    """A topic's detector plus the alert it may have open; Bytewax state per topic.

    >>> from datetime import datetime, timedelta
    >>> from processors.detectors import EwmaDetector
    >>> def window(neg, i):
    ...     start = datetime(2024, 1, 2) + timedelta(minutes=5 * i)
    ...     return TopicWindow("energy_oil", start, start + timedelta(minutes=5), 40, neg,
    ...                        40 - neg, 0, neg / 40, -neg / 40)
    >>> monitor = TopicMonitor(EwmaDetector())
    >>> shares = [4, 4, 4, 4, 30, 32, 4, 4]
    >>> [e.status for i, s in enumerate(shares) for e in monitor.update(window(s, i))]
    ['firing', 'resolved']
    """

    detector: Detector
    critical_share: float = 0.7
    firing: AlertEvent | None = field(default=None)

    def update(self, window: TopicWindow) -> list[AlertEvent]:
        """Judge a closed window; return the alert events it causes (zero or one)."""
        verdict = self.detector.update(window, firing=self.firing is not None)
        if self.firing is None and verdict.abnormal:
            severity = "critical" if window.negative_share >= self.critical_share else "warning"
            self.firing = AlertEvent(
                status="firing",
                labels={"alertname": ALERTNAME, "topic": window.topic, "severity": severity},
                annotations={
                    "summary": f"Surge of negative news on {window.topic}",
                    "description": (
                        f"{window.n_negative} of {window.n} items on {window.topic} were "
                        f"negative ({window.negative_share:.0%}) between "
                        f"{window.start:%H:%M} and {window.end:%H:%M} UTC, against a "
                        f"usual {verdict.baseline:.0%} (z = {verdict.score:.1f})."
                    ),
                },
                starts_at=window.start,
                ends_at=NO_END,
                fingerprint=fingerprint(ALERTNAME, window.topic),
                window=window,
                baseline_negative_share=round(verdict.baseline, 4),
                z_score=round(verdict.score, 3),
            )
            return [self.firing]
        if self.firing is not None and verdict.recovered:
            resolved = msgspec.structs.replace(
                self.firing,
                status="resolved",
                ends_at=window.start,
                window=window,
                z_score=round(verdict.score, 3),
                annotations={
                    **self.firing.annotations,
                    "description": (
                        f"{window.topic} is back to normal: {window.negative_share:.0%} "
                        f"negative of {window.n} items between {window.start:%H:%M} and "
                        f"{window.end:%H:%M} UTC."
                    ),
                },
            )
            self.firing = None
            return [resolved]
        return []
