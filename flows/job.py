"""One place assembles a job from a config: source, chain, sinks, observers, metrics.

The CLI (`run`, `demo`, `backtest`), the bench and `python -m bytewax.run
flows.monitor:flow` all call `assemble`; `flows.monitor.build_flow` only lays out the
dataflow between the edges it is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig

from flows.config import Config
from flows.metrics import Metrics
from flows.models import build_chain
from flows.monitor import build_flow
from flows.sinks.console import Progress
from flows.sinks.observe import Observers
from flows.sinks.webhook import WebhookDelivery
from flows.wiring import build_outputs, build_source, prepare_recovery

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A dataflow with the edges that outlive it: the webhook delivery and the metrics
    endpoint, which `close` ends after the flow has run."""

    config: Config
    flow: Dataflow
    observers: Observers
    delivery: WebhookDelivery | None = None
    metrics_port: int | None = None

    def recovery(self) -> RecoveryConfig | None:
        """Bytewax's recovery settings, the directory prepared on first use."""
        recovery = self.config.recovery
        if recovery.dir is None:
            return None
        prepare_recovery(recovery.dir, recovery.partitions)
        return RecoveryConfig(recovery.dir)

    def run(
        self, workers: int = 1, process_id: int | None = None, addresses: list[str] | None = None
    ) -> None:
        """Run the flow to its end (or forever, for an endless source)."""
        from bytewax.run import cli_main

        cli_main(
            self.flow,
            workers_per_process=workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=self.config.recovery.snapshot_interval_seconds),
            recovery_config=self.recovery(),
        )

    def close(self) -> None:
        """Stop delivering; what is still undelivered waits in the outbox."""
        if self.delivery is not None:
            self.delivery.close()


def assemble(
    config: Config,
    *,
    progress: Progress | None = None,
    process_id: int | None = None,
    load_models: bool = True,
) -> Job:
    """The job `config` describes.

    `load_models` loads the models now, so a model that cannot be loaded fails the
    start, clearly; without it each worker loads them on its first batch. With
    `metrics.port` set, the endpoint is served now: process i of a cluster serves on
    port + i (port 0: any free port).
    """
    observers = Observers(Metrics(watchlist=config.watchlist.live()), progress)
    port = None
    if config.metrics.port is not None:
        wanted = config.metrics.port + (process_id or 0) if config.metrics.port else 0
        port = observers.metrics.serve(wanted, config.metrics.host)
    source = build_source(config, observers)
    if config.source.kind == "kafka":
        source.list_parts()  # fails now, with the broker's address, if none answers
    delivery = None
    if config.webhook.receivers:
        delivery = WebhookDelivery(config.webhook, observers.metrics.registry)
    outputs = build_outputs(config, observers, delivery)
    chain = build_chain(config) if load_models else None
    flow = build_flow(config, source=source, outputs=outputs, observers=observers, chain=chain)
    return Job(config, flow, observers, delivery, port)
