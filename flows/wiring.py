"""From configuration to the flow's edges: which source feeds it, which sinks it fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import bytewax.operators as op
from bytewax.connectors.files import FileSink
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from flows.config import Config, SourceConfig
from flows.sinks.console import ConsoleAlertSink
from flows.sinks.observe import Observers, ObserverSink
from flows.sources import RawRecord
from flows.sources.demo import DemoSource, MarketDay, previous_weekday
from flows.sources.file import JsonLinesSource
from processors.message import to_json


def build_source(config: SourceConfig, demo_day: date | None = None) -> Source[RawRecord]:
    if config.kind == "file":
        assert config.path is not None  # validated by the config
        return JsonLinesSource(config.path, config.batch_size)
    day = MarketDay(
        day=demo_day or previous_weekday(),
        surge_topic=config.demo_surge_topic,
        seed=config.demo_seed,
    )
    return DemoSource(day, config.batch_size)


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
                if isinstance(sink, FixedPartitionedSink):
                    # File sinks write one partition, keyed; the line is the record's JSON.
                    stream = op.map(f"{name}_json_{i}", stream, _json_line)
                op.output(f"{name}_out_{i}", stream, sink)


def _json_line(record: Any) -> tuple[str, str]:
    return "all", to_json(record).decode()


def build_outputs(config: Config, observers: Observers) -> Outputs:
    """Sinks named by the config, plus the observers (metrics, progress) at the edge."""
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
    if sinks.console:
        outputs.alerts.append(ConsoleAlertSink())
    return outputs
