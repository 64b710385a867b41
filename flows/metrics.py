"""Prometheus metrics of one running job, on a registry of its own.

Each `Metrics` owns a `CollectorRegistry`, so several jobs (or tests) in one process
do not collide. Label values come from bounded sets only: configured processor
names, canonical topics and sentiments, dead-letter reasons, alert statuses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from processors.chain.chain import BatchReport
from processors.detection.lifecycle import ALERTNAMES
from processors.envelope.labels import TOPICS
from processors.envelope.message import AlertEvent, DeadLetter, Message, TopicWindow
from processors.envelope.parse import REASONS
from processors.stream.window import MARKET, entity_of

ALERT_KEYS: tuple[str, ...] = (*TOPICS, MARKET)  # every key that can raise an alert
ALERT_STATUSES: tuple[str, ...] = ("firing", "resolved")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The job's metrics, updated once per batch from the flow's edges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = PromCounter(
            "finsentry_messages_in_total", "Raw items read from the source.", ["input"], registry=r
        )
        self.messages_scored = PromCounter(
            "finsentry_messages_scored_total",
            "Messages that passed the processor chain.",
            registry=r,
        )
        self.duplicates = PromCounter(
            "finsentry_duplicates_total",
            "Messages dropped as repeats, by key kind.",
            ["key"],
            registry=r,
        )
        self.dead_letters = PromCounter(
            "finsentry_dead_letters_total",
            "Inputs sent to the dead letters, by reason.",
            ["reason"],
            registry=r,
        )
        self.classified = PromCounter(
            "finsentry_classified_total",
            "Scored messages by topic and sentiment.",
            ["topic", "sentiment"],
            registry=r,
        )
        self.windows_closed = PromCounter(
            "finsentry_windows_closed_total", "Closed topic windows.", ["topic"], registry=r
        )
        self.window_messages = Gauge(
            "finsentry_window_messages",
            "Messages in the topic's latest closed window.",
            ["topic"],
            registry=r,
        )
        self.window_negative_share = Gauge(
            "finsentry_window_negative_share",
            "Share of negative messages in the topic's latest closed window.",
            ["topic"],
            registry=r,
        )
        self.window_mean_score = Gauge(
            "finsentry_window_mean_score",
            "Mean sentiment (-1 negative .. 1 positive) in the topic's latest closed window.",
            ["topic"],
            registry=r,
        )
        self.window_end = Gauge(
            "finsentry_window_end_timestamp_seconds",
            "Event-time end of the topic's latest closed window.",
            ["topic"],
            registry=r,
        )
        self.alerts = PromCounter(
            "finsentry_alerts_total",
            "Alert events raised, by alert, key and status.",
            ["alertname", "topic", "status"],
            registry=r,
        )
        self.alerts_firing = Gauge(
            "finsentry_alerts_firing",
            "1 while the key's alert (a negative surge or a volume spike) is firing.",
            ["alertname", "topic"],
            registry=r,
        )
        self.batch_size = Histogram(
            "finsentry_processor_batch_size",
            "Messages per batch handed to a processor.",
            ["processor"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.processor_latency = Histogram(
            "finsentry_processor_batch_duration_seconds",
            "Wall time of one processor on one batch.",
            ["processor"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "finsentry_end_to_end_latency_seconds",
            "From reading a source batch to its scored messages leaving the processor chain "
            "(one observation per source batch: its items share that latency).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.entity_windows_closed = PromCounter(
            "finsentry_entity_windows_closed_total",
            "Closed windows of entity keys (one per ticker named).",
            registry=r,
        )
        self.entity_alerts = PromCounter(
            "finsentry_entity_alerts_total",
            "Alert events of entity keys, by alert and status.",
            ["alertname", "status"],
            registry=r,
        )
        self.entity_alerts_firing = Gauge(
            "finsentry_entity_alerts_firing",
            "Entities whose alert is firing now, by alert.",
            ["alertname"],
            registry=r,
        )
        # Series that mean "none so far" exist from the start at 0, so a healthy job's
        # dashboards and rate() read 0 instead of "No data".
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for alertname in ALERTNAMES:
            self.entity_alerts_firing.labels(alertname).set(0)
            for status in ALERT_STATUSES:
                self.entity_alerts.labels(alertname, status)
            for topic in ALERT_KEYS:
                self.alerts_firing.labels(alertname, topic).set(0)
                for status in ALERT_STATUSES:
                    self.alerts.labels(alertname, topic, status)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve `/metrics` in a background thread; returns the bound port (0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])

    def observe_input(self, input_kind: str, n: int) -> None:
        self.messages_in.labels(input_kind).inc(n)

    def observe_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        for reason, n in Counter(letter.reason for letter in letters).items():
            self.dead_letters.labels(reason).inc(n)

    def observe_duplicates(self, key: str, n: int) -> None:
        if n:
            self.duplicates.labels(key).inc(n)

    def observe_scored(
        self, messages: list[Message], reports: list[BatchReport], now: float
    ) -> None:
        self.messages_scored.inc(len(messages))
        for report in reports:
            self.batch_size.labels(report.processor).observe(report.size)
            self.processor_latency.labels(report.processor).observe(report.seconds)
        for read_at in {message.header.ingested_at for message in messages}:
            self.end_to_end.observe(now - read_at.timestamp())
        for (topic, sentiment), n in Counter(map(_labels, messages)).items():
            self.classified.labels(topic, sentiment).inc(n)

    def observe_window(self, window: TopicWindow) -> None:
        if entity_of(window.topic) is not None:  # tickers are not a bounded label set
            self.entity_windows_closed.inc()
            return
        self.windows_closed.labels(window.topic).inc()
        self.window_messages.labels(window.topic).set(window.n)
        self.window_negative_share.labels(window.topic).set(window.negative_share)
        self.window_mean_score.labels(window.topic).set(window.mean_score)
        self.window_end.labels(window.topic).set(window.end.timestamp())

    def observe_alert(self, alert: AlertEvent) -> None:
        if "entity" in alert.labels:
            alertname = alert.labels["alertname"]
            self.entity_alerts.labels(alertname, alert.status).inc()
            self.entity_alerts_firing.labels(alertname).inc(1 if alert.status == "firing" else -1)
            return
        alertname, topic = alert.labels["alertname"], alert.labels["topic"]
        self.alerts.labels(alertname, topic, alert.status).inc()
        self.alerts_firing.labels(alertname, topic).set(1 if alert.status == "firing" else 0)


def _labels(message: Message) -> tuple[str, str]:
    topic = message.result("topic")
    sentiment = message.result("sentiment")
    return topic.label if topic else "unclassified", sentiment.label if sentiment else "none"


def counter_values(metric: PromCounter | Gauge) -> dict[tuple[str, ...], float]:
    """Current values of a metric by label values, for summaries and tests."""
    values: dict[tuple[str, ...], float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            values[tuple(sample.labels.values())] = sample.value
    return values
