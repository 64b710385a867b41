"""Alert delivery to webhooks: routed, signed, retried, and sent once per alert event.

`WebhookDelivery` is the one object a job needs: `enqueue` writes each alert event
into the durable outbox (`flows.sinks.outbox`) once per matching receiver, and a
dispatcher thread POSTs the outbox's pending rows with timeouts and exponential
backoff with jitter, in order per receiver. Everything a receiver has not confirmed
survives a restart, and a replayed alert event is a no-op, so each receiver gets each
state change once. `WebhookSink` plugs this into a Bytewax dataflow.

Bodies come in three formats: an Alertmanager v4 webhook (so anything that takes
Alertmanager's webhooks takes finsentry's), the plain alert event, or a Slack-style
message. With a secret, each POST carries `X-Finsentry-Timestamp` and
`X-Finsentry-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`; receivers check
it with `verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from flows.metrics import LATENCY_BUCKETS
from flows.sinks.outbox import Outbox, Row
from processors.labels import TOPICS
from processors.message import AlertEvent, to_json

log = logging.getLogger(__name__)

OUTBOX_FILE = "webhook-outbox.sqlite3"
TIMESTAMP_HEADER = "X-Finsentry-Timestamp"
SIGNATURE_HEADER = "X-Finsentry-Signature"
EVENT_ID_HEADER = "X-Finsentry-Event-Id"
OUTCOMES = ("delivered", "retry", "failed")
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertRoute(_Strict):
    """Which alert events a receiver gets; an empty list matches everything."""

    severities: list[Literal["warning", "critical"]] = []
    topics: list[str] = []
    send_resolved: bool = True

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: list[str]) -> list[str]:
        unknown = sorted(set(topics) - set(TOPICS))
        if unknown:
            raise ValueError(f"unknown topics {unknown}; known: {', '.join(TOPICS)}")
        return topics

    def accepts(self, alert: AlertEvent) -> bool:
        return (
            (self.send_resolved or alert.status != "resolved")
            and (not self.severities or alert.labels.get("severity") in self.severities)
            and (not self.topics or alert.labels.get("topic") in self.topics)
        )


class ReceiverConfig(_Strict):
    """One webhook endpoint. `name` is a metric label, so it is short and plain."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    url: HttpUrl
    secret: SecretStr | None = None
    format: Literal["alertmanager", "json", "slack"] = "alertmanager"
    route: AlertRoute = AlertRoute()
    timeout_seconds: float = Field(5.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="then the row is marked failed")
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(300.0, gt=0)
    backoff_multiplier: float = Field(2.0, ge=1)

    def backoff(self, attempts: int) -> float:
        """Delay after the `attempts`-th failure: exponential, capped, with equal jitter."""
        ceiling = min(
            self.backoff_max_seconds,
            self.backoff_initial_seconds * self.backoff_multiplier ** (attempts - 1),
        )
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_STATE_DIR = Path("finsentry-state")


class WebhookConfig(_Strict):
    """Alert webhooks; the outbox lives in `state_dir`, which must outlive restarts.

    Left unset, the job's `sinks.state_dir` is used (see `flows.config.Config`).
    """

    receivers: list[ReceiverConfig] = []
    state_dir: Path | None = None
    external_url: str = Field("", description="Alertmanager payloads' externalURL")
    poll_seconds: float = Field(1.0, gt=0, description="look for rows other processes queued")
    close_timeout_seconds: float = Field(10.0, ge=0, description="bound on the flush at close")

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, receivers: list[ReceiverConfig]) -> list[ReceiverConfig]:
        names = [r.name for r in receivers]
        if len(names) != len(set(names)):
            raise ValueError(f"receiver names must be unique: {names}")
        return receivers


def render(alert: AlertEvent, receiver: ReceiverConfig, external_url: str = "") -> bytes:
    """The POST body for one alert event in the receiver's format."""
    if receiver.format == "json":
        return to_json(alert)
    if receiver.format == "slack":
        return msgspec.json.encode(_slack(alert))
    group = {k: alert.labels[k] for k in ("alertname", "topic") if k in alert.labels}
    return msgspec.json.encode(
        {
            "receiver": receiver.name,
            "status": alert.status,
            "alerts": [alert],
            "groupLabels": group,
            "commonLabels": alert.labels,
            "commonAnnotations": alert.annotations,
            "externalURL": external_url,
            "version": "4",
            "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}",
            "truncatedAlerts": 0,
        }
    )


def _slack(alert: AlertEvent) -> dict[str, Any]:
    window = alert.window
    firing = alert.status == "firing"
    headline = (
        f"{':rotating_light:' if firing else ':white_check_mark:'} "
        f"[{alert.status.upper()}:{alert.labels.get('severity', '')}] "
        f"{_mrkdwn(alert.annotations.get('summary', alert.labels.get('alertname', '')))}"
    )
    description = _mrkdwn(alert.annotations.get("description", ""))
    facts = (
        f"negative share {window.negative_share:.0%} of {window.n} "
        f"(baseline {alert.baseline_negative_share:.0%}, z = {alert.z_score:.1f}) · "
        f"window {window.start:%Y-%m-%d %H:%M} to {window.end:%H:%M} UTC"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{description}"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]},
    ]
    if firing and window.evidence:
        quotes = "\n".join(f"> {_mrkdwn(e.text)}" for e in window.evidence[:3])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": quotes}})
    return {"text": f"{headline}\n{description}", "blocks": blocks}


def _mrkdwn(text: str) -> str:
    """Slack's escaping: only these three characters are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The `X-Finsentry-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """True if `header` signs `body` at `timestamp` and that time is within tolerance.

    The tolerance bounds how long a captured request can be replayed.
    """
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_seconds:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, sent_at, raw), header.strip())


class WebhookMetrics:
    """Delivery metrics, on the job's registry so /metrics shows them with the rest."""

    def __init__(self, registry: CollectorRegistry, receivers: list[str]) -> None:
        self.deliveries = Counter(
            "finsentry_webhook_deliveries_total",
            "Webhook POST attempts by outcome: delivered, retry (tries again), failed (gave up).",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "finsentry_webhook_outbox_depth",
            "Alert events waiting in the outbox for a receiver.",
            ["receiver"],
            registry=registry,
        )
        self.duration = Histogram(
            "finsentry_webhook_delivery_duration_seconds",
            "Wall time of one webhook POST attempt.",
            ["receiver"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for name in receivers:  # series exist from the start, so rates are defined
            for outcome in OUTCOMES:
                self.deliveries.labels(name, outcome)
            self.outbox_depth.labels(name)
            self.duration.labels(name)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A signed POST must not be re-sent elsewhere (urllib would turn it into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookDelivery:
    """The outbox plus its dispatcher thread; one per process.

    `enqueue` may be called before `start` and from any thread; rows wait in the
    outbox until a dispatcher sends them, in this process or after a restart.
    """

    def __init__(self, config: WebhookConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.receivers = {r.name: r for r in config.receivers}
        self.metrics = WebhookMetrics(registry or CollectorRegistry(), list(self.receivers))
        self.outbox = Outbox((config.state_dir or DEFAULT_STATE_DIR) / OUTBOX_FILE)
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._refresh_depth()

    def enqueue(self, alert: AlertEvent) -> int:
        """Queue the event for every receiver whose route takes it; returns rows added.

        An event a receiver already has (pending, delivered or failed) is not added
        again, so replaying alerts after a restart sends nothing twice.
        """
        added = sum(
            self.outbox.add(r.name, alert.event_id, render(alert, r, self.config.external_url))
            for r in self.receivers.values()
            if r.route.accepts(alert)
        )
        if added:
            self._refresh_depth()
            self._wake.set()
        return added

    def start(self) -> None:
        """Start the dispatcher (idempotent); rows left pending by a previous run go first."""
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            self.outbox.retry_now(self.receivers)
            self._thread = threading.Thread(
                target=self._run, name="finsentry-webhooks", daemon=True
            )
            self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Wait until no row is pending, for at most `timeout` seconds; True if none is."""
        deadline = time.monotonic() + timeout
        while True:
            if not sum(self._refresh_depth().values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self, timeout: float | None = None) -> None:
        """Flush for a bounded time, then stop; what is still pending waits for the next run."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            flush = self.config.close_timeout_seconds if timeout is None else timeout
            if not self.drain(flush):
                log.warning(
                    "webhook outbox not empty after %.1fs; pending rows wait for the next start",
                    flush,
                )
            self._stop.set()
            self._wake.set()
            thread.join(max((r.timeout_seconds for r in self.receivers.values()), default=0) + 5)
        self.outbox.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass, so an enqueue during it is not missed
            wait = self.config.poll_seconds
            try:
                next_due = self._send_due()
                self._refresh_depth()
            except Exception:  # the dispatcher must outlive a bad row or a busy database
                log.exception("webhook dispatcher pass failed; trying again in %.1fs", wait)
                next_due = None
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - time.time()))
            self._wake.wait(wait)

    def _send_due(self) -> float | None:
        """Send every due row, oldest first per receiver; return when the next is due."""
        while not self._stop.is_set():
            next_due: float | None = None
            sent = False
            for receiver in self.receivers.values():
                claimed = self.outbox.claim(receiver.name, receiver.timeout_seconds + 30)
                if isinstance(claimed, Row):
                    self._send(receiver, claimed)
                    sent = True
                elif claimed is not None:
                    next_due = claimed if next_due is None else min(next_due, claimed)
            if not sent:
                return next_due
        return None

    def _send(self, receiver: ReceiverConfig, row: Row) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "finsentry-webhook/1",
            EVENT_ID_HEADER: row.event_id,
        }
        if receiver.secret is not None:
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(
                receiver.secret.get_secret_value(), timestamp, row.body
            )
        request = urllib.request.Request(
            str(receiver.url), data=row.body, headers=headers, method="POST"
        )
        started = time.perf_counter()
        error: str | None = None
        retryable = False
        retry_after = 0.0
        try:
            with self._opener.open(request, timeout=receiver.timeout_seconds) as response:
                response.read(65536)  # the answer does not matter, only its status
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            retryable = exc.code >= 500 or exc.code in _RETRYABLE_STATUSES
            retry_after = _retry_after(exc.headers.get("Retry-After"))
            exc.close()
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
            retryable = True
        self.metrics.duration.labels(receiver.name).observe(time.perf_counter() - started)

        if error is None:
            outcome = "delivered"
            self.outbox.delivered(row)
        elif retryable and row.attempts < receiver.max_attempts:
            outcome = "retry"
            delay = min(
                max(receiver.backoff(row.attempts), retry_after), receiver.backoff_max_seconds
            )
            self.outbox.retry_at(row, time.time() + delay, error)
            log.info(
                "webhook %s: %s for %s, retry %d in %.1fs",
                receiver.name,
                error,
                row.event_id,
                row.attempts,
                delay,
            )
        else:
            outcome = "failed"
            self.outbox.failed(row, error)
            log.warning(
                "webhook %s: gave up on %s after %d attempts: %s",
                receiver.name,
                row.event_id,
                row.attempts,
                error,
            )
        self.metrics.deliveries.labels(receiver.name, outcome).inc()

    def _refresh_depth(self) -> dict[str, int]:
        depth = self.outbox.depth(self.receivers)
        for name, n in depth.items():
            self.metrics.outbox_depth.labels(name).set(n)
        return depth


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header in its seconds form; 0 if absent or a date."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


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
