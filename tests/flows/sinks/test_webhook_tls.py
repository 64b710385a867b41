"""Webhook delivery over real TLS: an HTTPS receiver on 127.0.0.1 that requires a client
certificate from a throwaway CA, reached through `WebhookDelivery` (what the job runs
for its receivers). With the receiver's `ca_bundle` and `client_cert`/`client_key` the
signed POST arrives intact; without the bundle (system CAs) the receiver's certificate
fails verification, and without an accepted client certificate the receiver refuses the
handshake: both are counted retries, logged, then given up on, never marked delivered.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from flows.config import WebhookConfig
from flows.sinks.webhook.delivery import WebhookDelivery
from flows.sinks.webhook.render import render
from flows.sinks.webhook.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from tests.brokers import free_port
from tests.flows.sinks.test_webhook import SECRET, Received, alert, sample

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

DELIVERIES = "finsentry_webhook_deliveries_total"

# A self-contained request config, so the system's openssl.cnf changes nothing.
_REQ_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_LEAF = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path  # certificate and key in one PEM
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def _make_ca(d: Path, name: str, config: Path) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl(
        "req", "-x509", "-config", config, "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
        "-days", "2", "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    return cert, key


def _make_leaf(
    d: Path, name: str, ca: tuple[Path, Path], config: Path, serial: int, extensions: str
) -> tuple[Path, Path]:
    cert, key, csr, ext = (d / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    ext.write_text(extensions)
    _openssl(
        "req", "-new", "-config", config, "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
        "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", str(serial),
        "-days", "2", "-extfile", ext, "-out", cert, cwd=d,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    config = d / "req.cnf"
    config.write_text(_REQ_CONFIG)
    ca = _make_ca(d, "finsentry-test-ca", config)
    server = _make_leaf(
        d, "server", ca, config, 2,
        _LEAF.format(usage="serverAuth") + "subjectAltName = IP:127.0.0.1\n",
    )  # fmt: skip
    client = _make_leaf(d, "finsentry-client", ca, config, 3, _LEAF.format(usage="clientAuth"))
    combined = d / "client-combined.pem"
    combined.write_text(client[0].read_text() + client[1].read_text())
    other_ca = _make_ca(d, "stranger-ca", config)
    stranger = _make_leaf(d, "stranger", other_ca, config, 4, _LEAF.format(usage="clientAuth"))
    return Pki(ca[0], *server, *client, combined, *stranger)


class TlsReceiver:
    """An HTTPS endpoint on 127.0.0.1 that requires a client certificate signed by the
    test CA; it records each POST, the common name of the client certificate it came with
    (`clients`), and each refused handshake."""

    def __init__(self, pki: Pki) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.clients: list[str] = []
        self.refused: list[BaseException] = []
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                peer = self.connection.getpeercert() or {}  # type: ignore[attr-defined]
                subject = dict(pair[0] for pair in peer.get("subject", ()))
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    receiver.clients.append(subject["commonName"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def finish_request(self, request: Any, client_address: Any) -> None:
                request.do_handshake()  # in the request's thread, not the accept loop
                super().finish_request(request, client_address)

            def handle_error(self, request: Any, client_address: Any) -> None:
                with receiver._lock:
                    receiver.refused.append(sys.exc_info()[1])  # type: ignore[arg-type]

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def wait_refused(self, n: int, timeout: float = 5.0) -> list[BaseException]:
        """The refused handshakes, once there are `n` (the server records each a moment
        after its alert reaches the client)."""
        deadline = time.monotonic() + timeout
        while len(self.refused) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            return list(self.refused)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[TlsReceiver]:
    server = TlsReceiver(pki)
    yield server
    server.stop()


def _config(tmp_path: Path, **receiver: Any) -> WebhookConfig:
    fast = {
        "name": "tls",
        "secret": SECRET,
        "timeout_seconds": 2,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.1,
    }
    return WebhookConfig(receivers=[fast | receiver], state_dir=tmp_path / "state")


def _deliver(cfg: WebhookConfig, registry: CollectorRegistry) -> tuple[Any, list[tuple]]:
    """Enqueue one alert through the job's delivery and work it off; (alert, rows)."""
    delivery = WebhookDelivery(cfg, registry)
    event = alert()
    try:
        delivery.start()
        assert delivery.enqueue(event) == 1
        assert delivery.drain(8)
        rows = delivery.outbox.states()
    finally:
        delivery.close(timeout=0)
    return event, rows


@pytest.mark.parametrize("key_apart", [True, False], ids=["key-file", "key-in-cert-file"])
def test_mutual_tls_delivers_the_signed_body_intact(
    tmp_path: Path, pki: Pki, tls_receiver: TlsReceiver, key_apart: bool
) -> None:
    client = (
        {"client_cert": pki.client_cert, "client_key": pki.client_key}
        if key_apart
        else {"client_cert": pki.client_combined}
    )
    cfg = _config(tmp_path, url=tls_receiver.url(), ca_bundle=pki.ca, **client)
    registry = CollectorRegistry()
    event, rows = _deliver(cfg, registry)

    assert rows == [("tls", event.event_id, "delivered", 1)]
    assert tls_receiver.refused == []
    [got] = tls_receiver.requests
    assert got.path == "/hook"
    assert tls_receiver.clients == ["finsentry-client"]  # the server saw our certificate
    assert got.headers[EVENT_ID_HEADER] == event.event_id
    assert got.body == render(event, cfg.receivers[0], cfg.external_url)
    assert got.signed
    assert not verify_signature(
        SECRET, got.headers[TIMESTAMP_HEADER], got.body + b" ", got.headers[SIGNATURE_HEADER]
    )
    assert sample(registry, DELIVERIES, receiver="tls", outcome="delivered") == 1
    assert sample(registry, DELIVERIES, receiver="tls", outcome="retry") == 0


def _assert_refused(
    registry: CollectorRegistry, rows: list[tuple], event_id: str, caplog: Any, error: str
) -> None:
    """Not delivered: one counted, logged retry, then given up after `max_attempts` (2)."""
    assert rows == [("tls", event_id, "failed", 2)]
    assert sample(registry, DELIVERIES, receiver="tls", outcome="delivered") == 0
    assert sample(registry, DELIVERIES, receiver="tls", outcome="retry") == 1
    assert sample(registry, DELIVERIES, receiver="tls", outcome="failed") == 1
    logged = [r for r in caplog.records if r.name == "flows.sinks.webhook.delivery"]
    assert [r.levelno for r in logged] == [logging.INFO, logging.WARNING]
    assert all(event_id in r.getMessage() for r in logged)
    assert error in logged[-1].getMessage(), logged[-1].getMessage()


def test_without_the_ca_bundle_the_receivers_certificate_fails_verification(
    tmp_path: Path,
    pki: Pki,
    tls_receiver: TlsReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flows.sinks.webhook.delivery")
    cfg = _config(
        tmp_path,
        url=tls_receiver.url(),
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        max_attempts=2,
    )
    registry = CollectorRegistry()
    event, rows = _deliver(cfg, registry)

    assert tls_receiver.requests == []
    _assert_refused(registry, rows, event.event_id, caplog, "CERTIFICATE_VERIFY_FAILED")


@pytest.mark.parametrize("client", ["none", "stranger"])
def test_without_an_accepted_client_certificate_the_receiver_refuses(
    tmp_path: Path,
    pki: Pki,
    tls_receiver: TlsReceiver,
    caplog: pytest.LogCaptureFixture,
    client: str,
) -> None:
    caplog.set_level(logging.INFO, logger="flows.sinks.webhook.delivery")
    cert = (
        {"client_cert": pki.stranger_cert, "client_key": pki.stranger_key}
        if client == "stranger"
        else {}
    )
    cfg = _config(tmp_path, url=tls_receiver.url(), ca_bundle=pki.ca, max_attempts=2, **cert)
    registry = CollectorRegistry()
    event, rows = _deliver(cfg, registry)

    assert tls_receiver.requests == []
    refused = tls_receiver.wait_refused(2)  # both attempts reached the server's handshake
    assert len(refused) == 2 and all(isinstance(e, ssl.SSLError) for e in refused), refused
    # The client's error depends on when TLS 1.3 tells it (an alert, a reset, an EOF);
    # that it is an error is what matters.
    _assert_refused(registry, rows, event.event_id, caplog, "")
