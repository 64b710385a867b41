"""Webhook delivery against a real HTTP receiver on 127.0.0.1: formats, routes,
signatures, backoff, downtime, restarts, and exactly-once per alert event."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import input as op_input
from bytewax.operators import output as op_output
from bytewax.testing import TestingSource, run_main
from helpers import T0, window
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

import flows.sinks.webhook
from flows.config import ReceiverConfig, WebhookConfig
from flows.sinks.webhook.delivery import WebhookDelivery
from flows.sinks.webhook.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
)
from flows.sinks.webhook.sink import WebhookSink
from processors.detection.lifecycle import ALERTNAME, fingerprint
from processors.envelope.message import NO_END, AlertEvent, to_json
from tests.brokers import free_port
from tests.helpers import ROOT

SECRET = "s3cret-for-tests"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def signed(self) -> bool:
        """True if the request carries a valid signature for `SECRET`."""
        return verify_signature(
            SECRET,
            self.headers.get(TIMESTAMP_HEADER, ""),
            self.body,
            self.headers.get(SIGNATURE_HEADER, ""),
        )


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST.

    It can be down (nothing listens on its port until `start`), and `fail_next`
    answers that many requests with `fail_status` before it answers 200.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.fail_next = 0
        self.fail_status = 503
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def event_ids(self, path: str | None = None) -> list[str]:
        with self._lock:
            return [r.headers[EVENT_ID_HEADER] for r in self.requests if path in (None, r.path)]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def alert(
    topic: str = "energy_oil", status: str = "firing", severity: str = "warning", index: int = 4
) -> AlertEvent:
    w = window(topic, 40, 30 if status == "firing" else 4, index)
    return AlertEvent(
        status=status,
        labels={"alertname": ALERTNAME, "topic": topic, "severity": severity},
        annotations={"summary": f"Surge of negative news on {topic}", "description": "30 of 40"},
        starts_at=T0 + timedelta(minutes=20),
        ends_at=NO_END if status == "firing" else w.start,
        fingerprint=fingerprint(ALERTNAME, topic),
        window=w,
        baseline_negative_share=0.1,
        score=6.2 if status == "firing" else 0.3,
        score_name="z",
    )


def config(tmp_path: Path, *receivers: dict[str, Any], **extra: Any) -> WebhookConfig:
    fast = {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.4, "timeout_seconds": 2}
    return WebhookConfig(
        receivers=[fast | r for r in receivers], state_dir=tmp_path / "state", **extra
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_alertmanager_json_and_slack_bodies(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(
        tmp_path,
        {"name": "am", "url": receiver.url("/am"), "format": "alertmanager"},
        {"name": "plain", "url": receiver.url("/json"), "format": "json"},
        {"name": "chat", "url": receiver.url("/slack"), "format": "slack"},
        external_url="https://finsentry.example",
    )
    event = alert(severity="critical")
    delivery = WebhookDelivery(cfg)
    delivery.start()
    assert delivery.enqueue(event) == 3
    assert delivery.drain(5)
    delivery.close()
    by_path = {r.path: r for r in receiver.requests}
    assert sorted(by_path) == ["/am", "/json", "/slack"]
    assert all(r.headers["Content-Type"] == "application/json" for r in receiver.requests)
    assert {r.headers[EVENT_ID_HEADER] for r in receiver.requests} == {event.event_id}

    am = by_path["/am"].json()
    assert am["version"] == "4"
    assert am["receiver"] == "am"
    assert am["status"] == "firing"
    assert am["truncatedAlerts"] == 0
    assert am["externalURL"] == "https://finsentry.example"
    assert am["groupLabels"] == {"alertname": ALERTNAME, "topic": "energy_oil"}
    assert am["groupKey"] == '{}:{alertname="NegativeSentimentSurge", topic="energy_oil"}'
    assert am["commonLabels"] == event.labels
    assert am["commonAnnotations"] == event.annotations
    assert am["alerts"] == [json.loads(to_json(event))]
    assert am["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert {"startsAt", "fingerprint", "generatorURL"} <= set(am["alerts"][0])

    assert by_path["/json"].body == to_json(event)

    slack = by_path["/slack"].json()
    assert slack["text"].startswith(":rotating_light: [FIRING:critical] Surge of negative news")
    assert slack["blocks"][0]["type"] == "section"
    assert "75%" in slack["blocks"][1]["elements"][0]["text"]  # 30 of 40 negative


def test_routes_by_severity_topic_and_status(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(
        tmp_path,
        {"name": "pager", "url": receiver.url("/pager"), "route": {"severities": ["critical"]}},
        {
            "name": "energy",
            "url": receiver.url("/energy"),
            "route": {"topics": ["energy_oil"], "send_resolved": False},
        },
        {"name": "all", "url": receiver.url("/all")},
    )
    events = [
        alert("energy_oil", severity="warning"),
        alert("energy_oil", "resolved", severity="warning"),
        alert("currencies", severity="critical"),
    ]
    delivery = WebhookDelivery(cfg)
    delivery.start()
    assert [delivery.enqueue(e) for e in events] == [2, 1, 2]
    assert delivery.drain(5)
    delivery.close()
    ids = [e.event_id for e in events]
    assert receiver.event_ids("/pager") == [ids[2]]
    assert receiver.event_ids("/energy") == [ids[0]]
    assert receiver.event_ids("/all") == ids  # in order: a resolved never overtakes its firing


def test_signature_verifies_and_rejects_tampering(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(
        tmp_path,
        {"name": "signed", "url": receiver.url("/signed"), "secret": SECRET},
        {"name": "unsigned", "url": receiver.url("/unsigned")},
    )
    delivery = WebhookDelivery(cfg)
    delivery.start()
    delivery.enqueue(alert())
    assert delivery.drain(5)
    delivery.close()
    signed = next(r for r in receiver.requests if r.path == "/signed")
    unsigned = next(r for r in receiver.requests if r.path == "/unsigned")
    assert signed.signed
    assert signed.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert SIGNATURE_HEADER not in unsigned.headers and TIMESTAMP_HEADER not in unsigned.headers
    assert "s3cret" not in repr(cfg)

    ts, header = signed.headers[TIMESTAMP_HEADER], signed.headers[SIGNATURE_HEADER]
    assert not verify_signature(SECRET, ts, signed.body + b" ", header)
    assert not verify_signature("other", ts, signed.body, header)
    assert not verify_signature(SECRET, int(ts) + 1, signed.body, header)
    assert not verify_signature(SECRET, "soon", signed.body, header)
    assert not verify_signature(SECRET, ts, signed.body, header, now=int(ts) + 301)
    assert verify_signature(SECRET, ts, signed.body.decode(), header, now=int(ts) + 299)
    old = int(time.time()) - 3600
    assert not verify_signature(SECRET, old, b"{}", sign(SECRET, old, b"{}"))


def test_a_signature_made_by_the_sender_verifies() -> None:
    body = b'{"status": "firing"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert verify_signature(SECRET, now, body, header)
    assert verify_signature(SECRET.encode(), str(now), body.decode(), f" {header} ")
    assert not verify_signature(SECRET, now, body + b"x", header)


def test_signing_imports_nothing_heavier_than_the_standard_library() -> None:
    probe = (
        "import sys, flows.sinks.webhook.signing as s; "
        "assert not {'msgspec','pydantic','bytewax','prometheus_client'} & set(sys.modules), "
        "sorted({'msgspec','pydantic','bytewax','prometheus_client'} & set(sys.modules))"
    )
    root = ROOT
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_package_still_exports_the_old_names() -> None:
    from flows.sinks.webhook import WebhookDelivery as Delivery
    from flows.sinks.webhook import WebhookSink as Sink
    from flows.sinks.webhook import verify_signature as verify

    assert (Delivery, Sink, verify) == (WebhookDelivery, WebhookSink, verify_signature)
    assert flows.sinks.webhook.WebhookConfig is WebhookConfig
    assert set(flows.sinks.webhook.__all__) <= set(dir(flows.sinks.webhook))
    with pytest.raises(AttributeError):
        _ = flows.sinks.webhook.NoSuchName


def test_retries_with_growing_backoff_until_the_receiver_answers(
    tmp_path: Path, receiver: Receiver, registry: CollectorRegistry
) -> None:
    receiver.fail_next = 4
    cfg = config(tmp_path, {"name": "flaky", "url": receiver.url()})
    delivery = WebhookDelivery(cfg, registry)
    delivery.start()
    delivery.enqueue(alert())
    assert delivery.drain(10)
    delivery.close()
    arrivals = [r.at for r in receiver.requests]
    assert len(arrivals) == 5
    gaps = [b - a for a, b in pairwise(arrivals)]
    # Equal jitter keeps each gap in [c/2, c] while c doubles, so gaps never shrink.
    assert all(later >= earlier * 0.9 for earlier, later in pairwise(gaps))
    assert gaps[0] >= 0.025 and gaps[-1] <= 0.4 + 0.3
    assert (
        sample(registry, "finsentry_webhook_deliveries_total", receiver="flaky", outcome="retry")
        == 4
    )
    assert (
        sample(
            registry, "finsentry_webhook_deliveries_total", receiver="flaky", outcome="delivered"
        )
        == 1
    )
    assert (
        sample(registry, "finsentry_webhook_delivery_duration_seconds_count", receiver="flaky") == 5
    )
    assert sample(registry, "finsentry_webhook_outbox_depth", receiver="flaky") == 0


def test_client_errors_and_exhausted_attempts_fail_for_good(
    tmp_path: Path, receiver: Receiver, registry: CollectorRegistry
) -> None:
    receiver.fail_next, receiver.fail_status = 100, 400
    down = Receiver()  # never started: connection refused
    cfg = config(
        tmp_path,
        {"name": "rejects", "url": receiver.url()},
        {"name": "gone", "url": down.url(), "max_attempts": 3},
    )
    delivery = WebhookDelivery(cfg, registry)
    delivery.start()
    delivery.enqueue(alert())
    assert delivery.drain(5)
    states = {(r, state, attempts) for r, _, state, attempts in delivery.outbox.states()}
    delivery.close()
    assert len(receiver.requests) == 1  # a 400 is not retried
    assert states == {("rejects", "failed", 1), ("gone", "failed", 3)}
    failed = "finsentry_webhook_deliveries_total"
    assert sample(registry, failed, receiver="rejects", outcome="failed") == 1
    assert sample(registry, failed, receiver="gone", outcome="retry") == 2
    assert sample(registry, failed, receiver="gone", outcome="failed") == 1


def test_duplicate_enqueue_is_a_no_op(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(tmp_path, {"name": "one", "url": receiver.url()})
    delivery = WebhookDelivery(cfg)
    event = alert()
    assert delivery.enqueue(event) == 1
    assert delivery.enqueue(event) == 0
    delivery.start()
    assert delivery.drain(5)
    assert delivery.enqueue(event) == 0  # delivered already: still a no-op
    delivery.close()
    assert receiver.event_ids() == [event.event_id]


def test_downtime_and_restart_deliver_every_event_exactly_once(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    receiver = Receiver()  # down: nothing listens yet
    cfg = config(
        tmp_path,
        {"name": "ops", "url": receiver.url(), "secret": SECRET},
        {"name": "energy", "url": receiver.url("/energy"), "route": {"topics": ["energy_oil"]}},
    )
    events = [alert(), alert(status="resolved"), alert("currencies", severity="critical")]

    first = WebhookDelivery(cfg, registry)
    first.start()
    assert sum(first.enqueue(e) for e in events) == 5
    time.sleep(0.5)
    assert (
        sample(registry, "finsentry_webhook_deliveries_total", receiver="ops", outcome="retry") >= 2
    )
    assert sample(registry, "finsentry_webhook_outbox_depth", receiver="ops") == 3
    assert not first.drain(0.1)
    first.close(timeout=0.1)  # the job stops with the receiver still down

    receiver.start()
    try:
        second = WebhookDelivery(cfg, CollectorRegistry())  # a new process on the same state
        assert [second.enqueue(e) for e in events] == [0, 0, 0]  # the replay adds nothing
        second.start()
        assert second.drain(5)
        second.close()
        third = WebhookDelivery(cfg, CollectorRegistry())
        assert [third.enqueue(e) for e in events] == [0, 0, 0]
        third.close()
    finally:
        receiver.stop()
    ids = [e.event_id for e in events]
    assert receiver.event_ids("/hook") == ids
    assert receiver.event_ids("/energy") == ids[:2]
    assert all(r.signed for r in receiver.requests if r.path == "/hook")


def test_close_flushes_what_was_just_enqueued(tmp_path: Path, receiver: Receiver) -> None:
    delivery = WebhookDelivery(config(tmp_path, {"name": "one", "url": receiver.url()}))
    delivery.start()
    delivery.enqueue(alert())
    delivery.close()
    assert len(receiver.requests) == 1


def test_bytewax_sink_enqueues_and_flushes(tmp_path: Path, receiver: Receiver) -> None:
    events = [alert(), alert("currencies"), alert(status="resolved")]
    delivery = WebhookDelivery(config(tmp_path, {"name": "flow", "url": receiver.url()}))
    flow = Dataflow("webhook_sink_test")
    op_output(
        "webhooks", op_input("alerts", flow, TestingSource(events + events)), WebhookSink(delivery)
    )
    run_main(flow)
    assert sorted(receiver.event_ids()) == sorted(e.event_id for e in events)  # flushed at close
    delivery.close()


@pytest.mark.parametrize(
    ("receiver_fields", "problem"),
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://127.0.0.1/x", "route": {"topics": ["oil"]}}, "unknown topics"),
        ({"url": "http://127.0.0.1/x", "route": {"severities": ["page"]}}, "severities"),
        ({"url": "http://127.0.0.1/x", "retries": 3}, "retries"),
        ({"url": "http://127.0.0.1/x", "name": "Has Spaces"}, "name"),
    ],
)
def test_config_rejects_bad_receivers(receiver_fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ReceiverConfig.model_validate({"name": "r"} | receiver_fields)


def test_config_rejects_duplicate_receiver_names() -> None:
    same = {"name": "r", "url": "http://127.0.0.1/x"}
    with pytest.raises(ValidationError, match="unique"):
        WebhookConfig(receivers=[same, same])


class Dribbler:
    """A receiver on 127.0.0.1 that reads the POST, then answers one byte every `gap` s."""

    def __init__(self, gap: float = 0.5, total: int = 200) -> None:
        self.gap, self.total = gap, total
        self.hits = 0
        self._stop = threading.Event()
        dribbler = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                dribbler.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(dribbler.total))
                self.end_headers()
                self.wfile.flush()
                for _ in range(dribbler.total):
                    if dribbler._stop.wait(dribbler.gap):
                        return
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/slow"

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def test_a_dribbling_receiver_fails_the_post_at_its_total_deadline() -> None:
    from flows.sinks.webhook.delivery import DeadlineExceeded, post

    slow = Dribbler(gap=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            post(slow.url(), b"{}", {"Content-Type": "application/json"}, 1.0)
        assert time.monotonic() - started < 1.0 + 0.5
    finally:
        slow.stop()


def test_a_post_past_its_deadline_is_a_retry_not_a_delivery(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    slow = Dribbler(gap=0.3)
    cfg = config(tmp_path, {"name": "slow", "url": slow.url(), "timeout_seconds": 1})
    delivery = WebhookDelivery(cfg, registry)
    try:
        delivery.start()
        delivery.enqueue(alert())
        deadline = time.monotonic() + 5
        while slow.hits < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        while (
            not sample(
                registry, "finsentry_webhook_deliveries_total", receiver="slow", outcome="retry"
            )
            and time.monotonic() < started + 3
        ):
            time.sleep(0.02)
        assert time.monotonic() - started < 1.0 + 0.5
        assert delivery.pending() == 1
        assert [s for _, _, s, _ in delivery.outbox.states()] == ["pending"]
        delivered = "finsentry_webhook_deliveries_total"
        assert sample(registry, delivered, receiver="slow", outcome="delivered") == 0
    finally:
        delivery.close(timeout=0)
        slow.stop()


def test_a_slow_receiver_delays_no_other(tmp_path: Path, receiver: Receiver) -> None:
    slow = Dribbler(gap=0.5)
    cfg = config(
        tmp_path,
        {"name": "slow", "url": slow.url(), "timeout_seconds": 3},
        {"name": "fast", "url": receiver.url()},
    )
    delivery = WebhookDelivery(cfg)
    events = [alert(), alert(status="resolved"), alert("currencies")]
    try:
        delivery.start()
        started = time.monotonic()
        for e in events:
            delivery.enqueue(e)
        receiver.wait_for(3, timeout=2)
        assert receiver.event_ids() == [e.event_id for e in events]
        assert receiver.requests[-1].at - started < 1.0  # slow's 3 s POST held nothing up
        assert slow.hits == 1
    finally:
        delivery.close(timeout=0)
        slow.stop()


def test_a_changed_url_gets_pending_and_sent_events_again(tmp_path: Path) -> None:
    old, new = Receiver().start(), Receiver().start()
    events = [alert(), alert("currencies")]
    try:
        first = WebhookDelivery(config(tmp_path, {"name": "cli", "url": old.url()}))
        first.start()
        first.enqueue(events[0])
        assert first.drain(5)
        first.close()
        old.stop()  # the second event waits for the old URL, which is down
        second = WebhookDelivery(config(tmp_path, {"name": "cli", "url": old.url()}))
        second.enqueue(events[1])
        second.close()
        third = WebhookDelivery(config(tmp_path, {"name": "cli", "url": new.url()}))
        assert third.pending() == 1  # the pending row follows the receiver to its new URL
        assert [third.enqueue(e) for e in events] == [1, 0]  # sent to the old URL only
        third.start()
        assert third.drain(5)
        third.close()
    finally:
        old.stop()
        new.stop()
    assert old.event_ids() == [events[0].event_id]
    assert sorted(new.event_ids()) == sorted(e.event_id for e in events)


def test_a_v1_outbox_is_adopted_with_the_current_urls(tmp_path: Path, receiver: Receiver) -> None:
    import sqlite3

    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "webhook-outbox.sqlite3")
    db.executescript(
        """CREATE TABLE outbox (id INTEGER PRIMARY KEY, receiver TEXT NOT NULL,
        event_id TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL,
        updated_at REAL NOT NULL, last_error TEXT, UNIQUE (receiver, event_id));"""
    )
    sent, waiting = alert(), alert("currencies")
    db.executemany(
        "INSERT INTO outbox (receiver, event_id, body, state, next_attempt_at, created_at,"
        " updated_at) VALUES ('one', ?, ?, ?, 0, 0, 0)",
        [(sent.event_id, b"{}", "delivered"), (waiting.event_id, b"{}", "pending")],
    )
    db.commit()
    db.close()
    delivery = WebhookDelivery(config(tmp_path, {"name": "one", "url": receiver.url()}))
    assert delivery.enqueue(sent) == 0 and delivery.enqueue(waiting) == 0
    delivery.start()
    assert delivery.drain(5)
    delivery.close()
    assert receiver.event_ids() == [waiting.event_id]


def test_the_outbox_is_private(tmp_path: Path) -> None:
    WebhookDelivery(config(tmp_path, {"name": "one", "url": "http://127.0.0.1:9/x"})).close()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "webhook-outbox.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("url", "fields", "ok"),
    [
        ("http://alerts.example.com/x", {}, False),
        ("http://alerts.example.com/x", {"allow_http": True}, True),
        ("http://127.0.0.1:8080/x", {}, True),
        ("http://[::1]:8080/x", {}, True),
        ("http://localhost/x", {}, True),
        ("https://alerts.example.com/x", {}, True),
        ("https://alerts.example.com/x", {"client_key": "/k.pem"}, False),
    ],
)
def test_plain_http_needs_loopback_or_allow_http(
    url: str, fields: dict[str, Any], ok: bool
) -> None:
    build = lambda: ReceiverConfig.model_validate({"name": "r", "url": url} | fields)  # noqa: E731
    if ok:
        build()
    else:
        with pytest.raises(ValidationError):
            build()


def test_tls_context_uses_the_ca_bundle(tmp_path: Path) -> None:
    import ssl

    from flows.sinks.webhook.delivery import tls_context

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    receiver = ReceiverConfig(name="r", url="https://alerts.example.com/x", ca_bundle=bundle)
    with pytest.raises(ssl.SSLError):  # an empty bundle is read, and rejected
        tls_context(receiver)
    context = tls_context(ReceiverConfig(name="r", url="https://alerts.example.com/x"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_finite_run_exits_3_with_deliveries_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from flows.cli.job import UNDELIVERED_EXIT, drain_webhooks

    down = Receiver()  # nothing listens
    delivery = WebhookDelivery(config(tmp_path, {"name": "gone", "url": down.url()}))
    delivery.enqueue(alert())
    job = SimpleNamespace(delivery=delivery)
    started = time.monotonic()
    assert drain_webhooks(job, 0.5) == 1  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    delivery.close(timeout=0)
    assert "1 webhook deliveries still pending" in capsys.readouterr().err
    assert UNDELIVERED_EXIT == 3
