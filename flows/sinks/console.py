"""Human-readable output on the console: alerts as they happen, and progress."""

from __future__ import annotations

import sys
from time import monotonic
from typing import TextIO

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from processors.detection.lifecycle import ALERTNAME
from processors.envelope.message import AlertEvent
from processors.stream.window import entity_key


def alert_key(alertname: str, key: str) -> str:
    """How a person reads which alert: the key (a topic, `all` or `$TICKER`) for a
    surge, "key (volume)" for a volume spike."""
    return key if alertname == ALERTNAME else f"{key} (volume)"


def alert_subject(alert: AlertEvent) -> str:
    """The key an alert is about, as windows name it: a topic, `all` or `$TICKER`."""
    entity = alert.labels.get("entity")
    return entity_key(entity) if entity else alert.labels.get("topic", "")


def _key_text(alert: AlertEvent) -> str:
    entity = alert.labels.get("entity")
    return f"entity={entity}" if entity else f"topic={alert.labels.get('topic')}"


def describe(alert: AlertEvent) -> str:
    """One line a person reads at a glance."""
    w = alert.window
    icon = "FIRING  " if alert.status == "firing" else "RESOLVED"
    if alert.labels["alertname"] == ALERTNAME:
        what = f"negative {w.n_negative}/{w.n} ({w.negative_share:.0%}, usual "
        what += f"{alert.baseline_negative_share:.0%}"
    else:
        what = f"{w.n} items ({w.negative_share:.0%} negative"
    line = (
        f"[{icon}] {alert.labels['alertname']} {_key_text(alert)} "
        f"severity={alert.labels['severity']} window {w.start:%Y-%m-%d %H:%M}-{w.end:%H:%M} "
        f"{what}, {alert.score_name}={alert.score:.1f})"
    )
    if alert.status == "firing" and w.evidence:
        line += "".join(f'\n      - "{e.text[:110]}"' for e in w.evidence[:3])
    return line


class _AlertPrinter(StatelessSinkPartition[AlertEvent]):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write_batch(self, items: list[AlertEvent]) -> None:
        for alert in items:
            print(describe(alert), file=self.stream, flush=True)


class ConsoleAlertSink(DynamicSink[AlertEvent]):
    """Prints each alert event as it is raised."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPrinter:
        return _AlertPrinter(self.stream)


class Progress:
    """A progress line at most once per `every` seconds: event time reached, counts."""

    def __init__(self, stream: TextIO | None = None, every: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self.scored = 0
        self.windows = 0
        self.firing: set[str] = set()
        self._last = 0.0
        self._started = monotonic()

    def on_scored(self, n: int, event_time: str) -> None:
        self.scored += n
        now = monotonic()
        if now - self._last >= self.every:
            self._last = now
            rate = self.scored / max(now - self._started, 1e-9)
            firing = ", ".join(sorted(self.firing)) or "none"
            print(
                f"  event time {event_time} | {self.scored:,} scored ({rate:,.0f}/s) | "
                f"{self.windows:,} windows closed | firing: {firing}",
                file=self.stream,
                flush=True,
            )

    def on_alert(self, alert: AlertEvent) -> None:
        key = alert_key(alert.labels["alertname"], alert_subject(alert))
        if alert.status == "firing":
            self.firing.add(key)
        else:
            self.firing.discard(key)
