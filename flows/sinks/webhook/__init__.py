"""Alert delivery to webhooks: routed, signed, retried, and sent once per alert event.

`WebhookDelivery` (`delivery`) is the one object a job needs: `enqueue` writes each
alert event into the durable outbox (`outbox`) once per matching receiver, and one
worker thread per receiver POSTs its pending rows, each POST under a total deadline,
with exponential backoff with jitter, in order. Everything a receiver has not confirmed
survives a restart, and a replayed alert event is a no-op, so each receiver gets each
state change once. `WebhookSink` (`sink`) plugs this into a Bytewax dataflow.

Bodies come in three formats (`render`): an Alertmanager v4 webhook (so anything that
takes Alertmanager's webhooks takes finsentry's), the plain alert event, or a
Slack-style message. With a secret, each POST carries `X-Finsentry-Timestamp` and
`X-Finsentry-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`; receivers check
it with `verify_signature` (`signing`, standard library only, so a receiver can import
it without the job's dependencies). The configuration schemas live in `flows.config`.

Names are loaded on first use, so importing a submodule loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.config import AlertRoute, ReceiverConfig, WebhookConfig
    from flows.sinks.webhook.delivery import (
        DEFAULT_STATE_DIR,
        OUTBOX_FILE,
        OUTCOMES,
        WebhookDelivery,
        WebhookMetrics,
    )
    from flows.sinks.webhook.render import render
    from flows.sinks.webhook.signing import (
        EVENT_ID_HEADER,
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        sign,
        verify_signature,
    )
    from flows.sinks.webhook.sink import WebhookSink

_EXPORTS: dict[str, str] = {
    "AlertRoute": "flows.config",
    "ReceiverConfig": "flows.config",
    "WebhookConfig": "flows.config",
    "DEFAULT_STATE_DIR": "flows.sinks.webhook.delivery",
    "OUTBOX_FILE": "flows.sinks.webhook.delivery",
    "OUTCOMES": "flows.sinks.webhook.delivery",
    "WebhookDelivery": "flows.sinks.webhook.delivery",
    "WebhookMetrics": "flows.sinks.webhook.delivery",
    "render": "flows.sinks.webhook.render",
    "EVENT_ID_HEADER": "flows.sinks.webhook.signing",
    "SIGNATURE_HEADER": "flows.sinks.webhook.signing",
    "TIMESTAMP_HEADER": "flows.sinks.webhook.signing",
    "sign": "flows.sinks.webhook.signing",
    "verify_signature": "flows.sinks.webhook.signing",
    "WebhookSink": "flows.sinks.webhook.sink",
}

__all__ = [
    "DEFAULT_STATE_DIR",
    "EVENT_ID_HEADER",
    "OUTBOX_FILE",
    "OUTCOMES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertRoute",
    "ReceiverConfig",
    "WebhookConfig",
    "WebhookDelivery",
    "WebhookMetrics",
    "WebhookSink",
    "render",
    "sign",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
