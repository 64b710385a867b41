"""The webhook dispatcher: the durable outbox, a thread that POSTs its rows, and metrics.

`WebhookDelivery.enqueue` writes each alert event into the outbox (`outbox`) once per
matching receiver, and a dispatcher thread POSTs the outbox's pending rows with
timeouts and exponential backoff with jitter, in order per receiver. Everything a
receiver has not confirmed survives a restart, and a replayed alert event is a no-op,
so each receiver gets each state change once.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flows.config import ReceiverConfig, WebhookConfig
from flows.metrics import LATENCY_BUCKETS
from flows.sinks.webhook.outbox import Outbox, Row
from flows.sinks.webhook.render import render
from flows.sinks.webhook.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from processors.envelope.message import AlertEvent

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path("finsentry-state")
OUTBOX_FILE = "webhook-outbox.sqlite3"
OUTCOMES = ("delivered", "retry", "failed")
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


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
