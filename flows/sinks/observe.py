"""Metrics and console progress as a sink: the flow's last step for windows, alerts
and dead letters reports them here, once, at the edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.metrics import Metrics
from flows.sinks.console import Progress
from flows.sources.kafka import KafkaMetrics
from processors.envelope.message import AlertEvent, DeadLetter, TopicWindow

X = TypeVar("X")


@dataclass
class Observers:
    """Where the flow reports what it did: metrics always, console progress optionally."""

    metrics: Metrics = field(default_factory=Metrics)
    progress: Progress | None = None
    kafka: KafkaMetrics = field(init=False)

    def __post_init__(self) -> None:
        # Kafka clients report on the job's registry; one set of Kafka metrics per job.
        self.kafka = KafkaMetrics(self.metrics.registry)

    def on_windows(self, windows: list[TopicWindow]) -> None:
        for window in windows:
            self.metrics.observe_window(window)
        if self.progress:
            self.progress.windows += len(windows)

    def on_alerts(self, alerts: list[AlertEvent]) -> None:
        for alert in alerts:
            self.metrics.observe_alert(alert)
            if self.progress:
                self.progress.on_alert(alert)

    def on_dead_letters(self, letters: list[DeadLetter]) -> None:
        self.metrics.observe_dead_letters(letters)


class _Partition(StatelessSinkPartition[X], Generic[X]):
    def __init__(self, callback: Callable[[list[X]], None]) -> None:
        self.callback = callback

    def write_batch(self, items: list[X]) -> None:
        self.callback(items)


class ObserverSink(DynamicSink[X], Generic[X]):
    """Hands each batch that reaches it to `callback` (a method of `Observers`)."""

    def __init__(self, callback: Callable[[list[X]], None]) -> None:
        self.callback = callback

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition[X]:
        return _Partition(self.callback)
