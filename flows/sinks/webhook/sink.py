"""The Bytewax sink that feeds alert events into the process's `WebhookDelivery`."""

from __future__ import annotations

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.sinks.webhook.delivery import WebhookDelivery
from processors.envelope.message import AlertEvent


class WebhookSink(DynamicSink[AlertEvent]):
    """Bytewax sink: every worker enqueues into the process's one `WebhookDelivery`.

    The delivery's dispatcher starts when the first worker builds its partition; a
    partition's close (end of a finite input) waits a bounded time for the outbox to
    empty. The owner of the delivery still calls its `close()` before exiting.
    """

    def __init__(self, delivery: WebhookDelivery) -> None:
        self.delivery = delivery

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WebhookPartition:
        self.delivery.start()
        return _WebhookPartition(self.delivery)


class _WebhookPartition(StatelessSinkPartition[AlertEvent]):
    def __init__(self, delivery: WebhookDelivery) -> None:
        self.delivery = delivery

    def write_batch(self, items: list[AlertEvent]) -> None:
        for alert in items:
            self.delivery.enqueue(alert)

    def close(self) -> None:
        self.delivery.drain(self.delivery.config.close_timeout_seconds)
