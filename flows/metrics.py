"""Prometheus metrics of one running job, on a registry of its own.

Each `Metrics` owns a `CollectorRegistry`, so several jobs (or tests) in one process
do not collide. Label values come from bounded sets only: configured processor
names, canonical topics and sentiments, dead-letter reasons, alert statuses, and the
entities of the watchlist (never the tickers a stream happens to name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import attrgetter

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flows.config import WatchedEntityConfig
from flows.watchlist import RELOAD_OUTCOMES, LiveWatchlist
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
    """The job's metrics, updated once per batch from the flow's edges; with the job's
    watchlist, series of their own for the watched entities too."""

    def __init__(
        self, registry: CollectorRegistry | None = None, watchlist: LiveWatchlist | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.watched = WatchedEntities(watchlist)
        r.register(self.watched)
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
        ticker = entity_of(window.topic)
        if ticker is not None:  # tickers are not a bounded label set; watched ones are
            self.entity_windows_closed.inc()
            self.watched.observe_window(ticker, window)
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
            self.watched.observe_alert(alert)
            return
        alertname, topic = alert.labels["alertname"], alert.labels["topic"]
        self.alerts.labels(alertname, topic, alert.status).inc()
        self.alerts_firing.labels(alertname, topic).set(1 if alert.status == "firing" else 0)


# A watched entity's gauges, of its latest closed window: name, help, value.
WATCHED_WINDOW_GAUGES: tuple[tuple[str, str, Callable[[TopicWindow], float]], ...] = (
    (
        "finsentry_watched_entity_messages",
        "Messages on the watched entity in its latest closed window.",
        attrgetter("n"),
    ),
    (
        "finsentry_watched_entity_stories",
        "Distinct stories on the watched entity in its latest closed window.",
        attrgetter("n_stories"),
    ),
    (
        "finsentry_watched_entity_negative_share",
        "Share of negative messages on the watched entity in its latest closed window.",
        attrgetter("negative_share"),
    ),
)


class WatchedEntities(Collector):
    """Series per watched entity, read at each scrape: only the watchlist's entities have
    any, so their label values are as bounded as the list, whatever the stream names,
    and an entity taken off the list takes its series with it. Beside them, the
    watchlist's own size and reloads."""

    def __init__(self, watchlist: LiveWatchlist | None) -> None:
        self.watchlist = watchlist
        self.latest: dict[str, TopicWindow] = {}  # each watched entity's latest closed window
        self.firing: set[tuple[str, str]] = set()  # (alertname, entity)

    def entities(self) -> Mapping[str, WatchedEntityConfig]:
        return self.watchlist.current().entities if self.watchlist else {}

    def observe_window(self, ticker: str, window: TopicWindow) -> None:
        if ticker in self.entities():
            self.latest[ticker] = window

    def observe_alert(self, alert: AlertEvent) -> None:
        key = (alert.labels["alertname"], alert.labels["entity"])
        if alert.status == "firing" and key[1] in self.entities():
            self.firing.add(key)
        else:
            self.firing.discard(key)

    def collect(self) -> Iterator[Metric]:
        watched = self.entities()
        for ticker in set(self.latest) - set(watched):
            self.latest.pop(ticker, None)
        latest = sorted(dict(self.latest).items())
        for name, what, value in WATCHED_WINDOW_GAUGES:
            family = GaugeMetricFamily(name, what, labels=["entity"])
            for ticker, window in latest:
                family.add_metric([ticker], value(window))
            yield family
        firing = GaugeMetricFamily(
            "finsentry_watched_entity_alerts_firing",
            "1 while the watched entity's alert (a negative surge or a volume spike) is firing.",
            labels=["alertname", "entity"],
        )
        for ticker in sorted(watched):
            for alertname in ALERTNAMES:
                firing.add_metric([alertname, ticker], float((alertname, ticker) in self.firing))
        yield firing
        yield GaugeMetricFamily(
            "finsentry_watchlist_entities", "Entities on the watchlist now.", value=len(watched)
        )
        reloads = CounterMetricFamily(
            "finsentry_watchlist_reloads",
            "Changes of the watchlist file, by outcome: loaded, or rejected (the last good "
            "list stays).",
            labels=["outcome"],
        )
        counts = self.watchlist.reloads if self.watchlist else Counter[str]()
        for outcome in RELOAD_OUTCOMES:
            reloads.add_metric([outcome], counts[outcome])
        yield reloads
        yield GaugeMetricFamily(
            "finsentry_watchlist_file_rejected",
            "1 while the watchlist file as it stands was rejected and an older list is used.",
            value=float(bool(self.watchlist and self.watchlist.rejected)),
        )


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
