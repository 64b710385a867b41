"""From configuration to the flow's edges: which source feeds it, which sinks it fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import FileSink
from bytewax.outputs import FixedPartitionedSink, Sink
from bytewax.recovery import init_db_dir

from flows.config import Config
from flows.private import private_dir, private_file
from flows.sinks.console import ConsoleAlertSink
from flows.sinks.kafka import FALLBACK_FILE, alert_sink, dead_letter_sink, scored_sink
from flows.sinks.observe import Observers, ObserverSink
from flows.sinks.webhook import WebhookDelivery, WebhookSink
from flows.sources import PartitionedSource
from flows.sources.demo import DemoSource, MarketDay, previous_weekday
from flows.sources.file import JsonLinesSource
from flows.sources.kafka import KafkaSource
from processors.envelope.message import to_json


def build_source(config: Config, observers: Observers) -> PartitionedSource[Any]:
    source = config.source
    if source.kind == "file":
        assert source.path is not None  # validated by the config
        return JsonLinesSource(source.path, source.batch_size)
    if source.kind == "kafka":
        k = config.kafka
        return KafkaSource(
            k.brokers,
            k.input_topics,
            starting_offset=k.starting_offset,
            batch_size=source.batch_size,
            batch_wait=source.batch_wait_seconds,
            exit_at_end=k.exit_at_end,
            client_options=k.client_options,
            connect_timeout=k.connect_timeout_seconds,
            metrics=observers.kafka,
            max_delay=source.max_delay_seconds,
        )
    day = MarketDay(
        day=source.demo_day or previous_weekday(),
        minutes=source.demo_minutes,
        surge_topic=source.demo_surge_topic,
        seed=source.demo_seed,
    )
    return DemoSource(day, source.batch_size)


def prepare_recovery(directory: Path, partitions: int) -> None:
    """Create the recovery directory and its Bytewax partitions on first use.

    A resume unpickles the snapshots there, so whoever can write them runs code in the
    job: the directory is kept 0700 and its files 0600 (as the webhook outbox is).
    """
    private_dir(directory)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, partitions)
    for part in directory.glob("part-*.sqlite3*"):  # with any -wal and -shm files
        private_file(part)


@dataclass
class Outputs:
    """The sinks of each output stream; JSON-lines file sinks get one JSON object per line."""

    alerts: list[Sink[Any]] = field(default_factory=list)
    dead_letters: list[Sink[Any]] = field(default_factory=list)
    windows: list[Sink[Any]] = field(default_factory=list)
    scored: list[Sink[Any]] = field(default_factory=list)

    def attach(self, **streams: op.Stream[Any]) -> None:
        for name, stream in streams.items():
            for i, sink in enumerate(getattr(self, name)):
                out = stream
                if isinstance(sink, FixedPartitionedSink):
                    # File sinks write one partition, keyed; the line is the record's JSON.
                    out = op.map(f"{name}_json_{i}", stream, _json_line)
                op.output(f"{name}_out_{i}", out, sink)


def _json_line(record: Any) -> tuple[str, str]:
    return "all", to_json(record).decode()


def build_outputs(
    config: Config, observers: Observers, delivery: WebhookDelivery | None = None
) -> Outputs:
    """Sinks named by the config, plus the observers (metrics, progress) at the edge.

    `delivery` sends alerts to the configured webhooks; its owner closes it, after the
    flow has ended, so that retries can go on while the process lingers.
    """
    sinks = config.sinks
    outputs = Outputs(
        alerts=[ObserverSink(observers.on_alerts)],
        dead_letters=[ObserverSink(observers.on_dead_letters)],
        windows=[ObserverSink(observers.on_windows)],
    )
    for path, target in (
        (sinks.alerts_path, outputs.alerts),
        (sinks.dead_letters_path, outputs.dead_letters),
        (sinks.windows_path, outputs.windows),
        (sinks.scored_path, outputs.scored),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            target.append(FileSink(path))
    k = config.kafka
    # Scored messages and dead letters are sent once across a resume; without snapshots
    # there is no resume, and a job run again (a backfill) sends them all again.
    resumable = sinks.state_dir if config.recovery.dir is not None else None
    fallback = k.dead_letter_fallback_path or (sinks.state_dir or Path()) / FALLBACK_FILE
    for topic, target, make in (
        (k.scored_topic, outputs.scored, partial(scored_sink, state_dir=resumable)),
        (k.alerts_topic, outputs.alerts, partial(alert_sink, state_dir=sinks.state_dir)),
        (
            k.dead_letter_topic,
            outputs.dead_letters,
            partial(dead_letter_sink, fallback_path=fallback, state_dir=resumable),
        ),
    ):
        if topic is not None:
            target.append(
                make(
                    k.brokers,
                    topic,
                    retention=timedelta(seconds=k.sent_retention_seconds),
                    client_options=k.client_options,
                    connect_timeout=k.connect_timeout_seconds,
                    metrics=observers.kafka,
                )
            )
    if delivery is not None:
        outputs.alerts.append(WebhookSink(delivery))
    if sinks.console:
        outputs.alerts.append(ConsoleAlertSink())
    return outputs
