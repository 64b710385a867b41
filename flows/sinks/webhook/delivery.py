"""The webhook dispatcher: the durable outbox, one thread per receiver, and metrics.

`WebhookDelivery.enqueue` writes each alert event into the outbox (`outbox`) once per
matching receiver, and each receiver's own worker thread POSTs its pending rows with a
total deadline per POST and exponential backoff with jitter, in order, so a slow or
dead receiver delays no other. Everything a receiver has not confirmed survives a
restart, and a replayed alert event is a no-op, so each receiver gets each state
change once.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

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


class DeadlineExceeded(TimeoutError):
    """The POST did not finish (connect, send, whole response) within its deadline."""


def tls_context(receiver: ReceiverConfig) -> ssl.SSLContext:
    """Certificate-verifying TLS for the receiver: its `ca_bundle` (else the system's
    CAs) and, for mutual TLS, its `client_cert`/`client_key`."""
    context = ssl.create_default_context(
        cafile=str(receiver.ca_bundle) if receiver.ca_bundle else None
    )
    if receiver.client_cert is not None:
        context.load_cert_chain(
            receiver.client_cert, receiver.client_key if receiver.client_key else None
        )
    return context


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> tuple[int, str | None]:
    """POST `body` and read the whole answer within `timeout` seconds in all.

    Every socket operation gets the time that is left as its timeout, and a watchdog
    shuts the socket down at the deadline, so a receiver that dribbles its answer
    a byte at a time cannot hold the POST past it. Redirects are not followed (a signed
    POST must not go elsewhere). Returns (status, Retry-After); raises OSError (a
    `DeadlineExceeded` past the deadline) or http.client.HTTPException.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(f"no complete answer within {timeout:g}s")
        return remaining

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=left(), context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=left())
    expired = threading.Event()
    # Our own reference: http.client drops conn.sock once the answer's headers say the
    # connection closes, while the answer's body is still read from that socket.
    held: list[socket.socket] = []

    def expire() -> None:
        expired.set()
        for sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        sock = conn.sock
        held.append(sock)
        if expired.is_set():
            expire()
        sock.settimeout(left())
        conn.request("POST", target, body=body, headers=headers)
        sock.settimeout(left())
        response = conn.getresponse()
        while True:  # the answer does not matter, only its status, but it must be whole
            sock.settimeout(left())
            if not response.read(65536):
                break
        left()
        return response.status, response.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or time.monotonic() >= deadline:
            raise DeadlineExceeded(f"no complete answer within {timeout:g}s") from exc
        raise
    finally:
        watchdog.cancel()
        conn.close()


class WebhookDelivery:
    """The outbox plus one worker thread per receiver; one per process.

    `enqueue` may be called before `start` and from any thread; rows wait in the
    outbox until a worker sends them, in this process or after a restart. A receiver
    is its name plus its URL: rows a receiver's old URL never confirmed are sent to
    its new one, and events its old URL got are sent again to the new one.
    """

    def __init__(self, config: WebhookConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.receivers = {r.name: r for r in config.receivers}
        self.urls = {r.name: str(r.url) for r in config.receivers}
        self.metrics = WebhookMetrics(registry or CollectorRegistry(), list(self.receivers))
        self.outbox = Outbox((config.state_dir or DEFAULT_STATE_DIR) / OUTBOX_FILE)
        self.outbox.adopt_legacy(self.urls)
        for name, url in self.urls.items():
            if moved := self.outbox.retarget(name, url):
                log.warning("webhook %s: URL changed; %d pending rows go to %s", name, moved, url)
        self._contexts = {
            r.name: tls_context(r) for r in config.receivers if r.url.scheme == "https"
        }
        self._wake = {name: threading.Event() for name in self.receivers}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._start_lock = threading.Lock()
        self._closed = False
        self._refresh_depth()

    def enqueue(self, alert: AlertEvent) -> int:
        """Queue the event for every receiver whose route takes it; returns rows added.

        An event a receiver already has (pending, delivered or failed) is not added
        again, so replaying alerts after a restart sends nothing twice.
        """
        added = 0
        for r in self.receivers.values():
            if r.route.accepts(alert) and self.outbox.add(
                r.name,
                self.urls[r.name],
                alert.event_id,
                render(alert, r, self.config.external_url),
            ):
                added += 1
                self._wake[r.name].set()
        if added:
            self._refresh_depth()
        return added

    def start(self) -> None:
        """Start the workers (idempotent); rows left pending by a previous run go first."""
        with self._start_lock:
            if self._started or self._closed:
                return
            self._started = True
            for name, receiver in self.receivers.items():
                self.outbox.retry_now(name, self.urls[name])
                thread = threading.Thread(
                    target=self._run,
                    args=(receiver,),
                    name=f"finsentry-webhook-{name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def pending(self) -> int:
        """Rows still waiting for one of the configured receivers."""
        return sum(self._refresh_depth().values())

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
            threads = list(self._threads)
        if threads:
            flush = self.config.close_timeout_seconds if timeout is None else timeout
            if not self.drain(flush):
                log.warning(
                    "webhook outbox not empty after %.1fs; pending rows wait for the next start",
                    flush,
                )
            self._stop.set()
            for wake in self._wake.values():
                wake.set()
            # Each POST ends by its deadline, so the workers end soon after; they are
            # daemons, and a lease left by one still mid-POST runs out on its own.
            join_by = (
                time.monotonic()
                + 5
                + max((r.timeout_seconds for r in self.receivers.values()), default=0)
            )
            for thread in threads:
                thread.join(max(0.0, join_by - time.monotonic()))
        self.outbox.close()

    def _run(self, receiver: ReceiverConfig) -> None:
        wake = self._wake[receiver.name]
        while not self._stop.is_set():
            wake.clear()  # before the pass, so an enqueue during it is not missed
            wait = self.config.poll_seconds
            try:
                next_due = self._send_due(receiver)
                self._refresh_depth()
            except Exception:  # the worker must outlive a bad row or a busy database
                log.exception(
                    "webhook %s: dispatcher pass failed; trying again in %.1fs", receiver.name, wait
                )
                next_due = None
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - time.time()))
            wake.wait(wait)

    def _send_due(self, receiver: ReceiverConfig) -> float | None:
        """Send the receiver's due rows, oldest first; return when the next is due."""
        url = self.urls[receiver.name]
        while not self._stop.is_set():
            claimed = self.outbox.claim(receiver.name, url, receiver.timeout_seconds + 30)
            if not isinstance(claimed, Row):
                return claimed
            self._send(receiver, claimed)
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
        started = time.perf_counter()
        error: str | None = None
        retryable = False
        retry_after = 0.0
        try:
            status, retry_header = post(
                row.url,
                row.body,
                headers,
                receiver.timeout_seconds,
                self._contexts.get(receiver.name),
            )
            if not 200 <= status < 300:  # 3xx too: redirects are not followed
                error = f"HTTP {status}"
                retryable = status >= 500 or status in _RETRYABLE_STATUSES
                retry_after = _retry_after(retry_header)
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
        depth = self.outbox.depth(self.urls.items())
        for name, n in depth.items():
            self.metrics.outbox_depth.labels(name).set(n)
        return depth


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header in its seconds form; 0 if absent or a date."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
