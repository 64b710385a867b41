"""The monitoring stack end to end, with real servers on 127.0.0.1.

The job (`finsentry run`) reads a generated market day (calm, then a surge of negative
oil news) with its metrics on a free port and its webhooks pointed at a receiver of
this test that is down at first. Prometheus (the shipped config and rules, rendered
into tmp_path with a 1 s scrape and no `for` delays) scrapes it and sends alerts to
Alertmanager (the shipped routing, its receivers pointed at a second receiver here).

The job watches two of the generated companies (`WATCHLIST`), so that the dashboard's
panels per watched entity have data too.

Asserted: every Grafana panel query returns data; the Prometheus surge rule fires and
Alertmanager delivers it; after the job is killed and started again on the same
--state-dir with the receiver back up, finsentry's own webhooks deliver every alert
event exactly once, signed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from test_dashboards import DASHBOARDS, RULES, panel_exprs, tool

from flows.sinks.webhook.signing import EVENT_ID_HEADER
from flows.sources.demo import MarketDay, generate
from processors.envelope.message import AlertEvent, to_json
from tests.brokers import free_port
from tests.flows.sinks.test_webhook import SECRET, Receiver
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

ROOT = ROOT
FINSENTRY = [sys.executable, "-m", "flows.cli"]
SURGE_TOPIC = "energy_oil"
# 40 event-time minutes: 20 calm minutes teach the detector the usual mix, then the
# surge runs to the end of the input, so the job's alert is still firing at its end.
DAY = MarketDay(
    day=date(2024, 3, 14),
    minutes=40,
    rate=12,
    surge_topic=SURGE_TOPIC,
    surge_start=0.5,
    surge_minutes=20,
    malformed_share=0.01,
    seed=11,
)


# Two generated companies the calm and the surge day both name, as a watchlist.
WATCHLIST = [
    {"id": "NWE", "aliases": ["Northwind Energy"], "labels": {"desk": "energy"}},
    {"id": "ORBR", "aliases": ["Orbis Retail"], "labels": {"desk": "retail"}},
]


def watching(tmp_path: Path) -> Path:
    """A config file with only the watchlist: everything else stays at its default."""
    path = tmp_path / "watchlist-config.yaml"
    path.write_text(yaml.safe_dump({"watchlist": {"entities": WATCHLIST}}))
    return path


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Processes:
    """Processes started by the test, each logging to a file; all stopped at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str | Path, env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen(
            [str(a) for a in args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait(self, name: str, timeout: float) -> int:
        process = self.running.pop(name)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"{name} did not finish in {timeout:.0f}s:\n{self.tail(name)}")

    def assert_running(self, name: str) -> None:
        code = self.running[name].poll()
        assert code is None, f"{name} exited with {code}:\n{self.tail(name)}"

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def am_receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, processes: Processes, am_receiver: Receiver) -> str:
    """Alertmanager with the shipped routing, every receiver pointed at `am_receiver`."""
    config = yaml.safe_load((DASHBOARDS / "alertmanager.yml").read_text())
    config["route"] |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = am_receiver.url(f"/alertmanager/{receiver['name']}")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    processes.start(
        "alertmanager",
        tool("prometheus-alertmanager", "alertmanager"),
        f"--config.file={path}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("Alertmanager to be ready", lambda: answers(f"{url}/-/ready"), 30)
    return url


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, processes: Processes, alertmanager: str, metrics_port: int) -> str:
    """Prometheus with the shipped config and rules, fast: 1 s scrapes, no `for` waits."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for source in RULES.glob("*.yml"):
        rules = yaml.safe_load(source.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "0s"
        (rules_dir / source.name).write_text(yaml.safe_dump(rules))
    config = yaml.safe_load((DASHBOARDS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules_dir / Path(f).name) for f in config["rule_files"]]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}
    ]
    (job,) = [s for s in config["scrape_configs"] if s["job_name"] == "finsentry"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    config["scrape_configs"] = [job]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    processes.start(
        "prometheus",
        tool("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("Prometheus to be ready", lambda: answers(f"{url}/-/ready"), 30)
    return url


def query_range(prometheus: str, expr: str, start: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": time.time(), "step": "1s"}
    )
    answer = get_json(f"{prometheus}/api/v1/query_range?{query}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def peak(series: list[dict[str, Any]]) -> float:
    values = [float(v) for s in series for _, v in s["values"] if v != "NaN"]
    return max(values, default=float("nan"))


def alertmanager_alerts(receiver: Receiver) -> list[dict[str, Any]]:
    return [a for r in receiver.requests for a in r.json()["alerts"]]


def test_dashboards_alerts_and_webhooks_end_to_end(
    tmp_path: Path,
    processes: Processes,
    prometheus: str,
    am_receiver: Receiver,
    metrics_port: int,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(DAY)))
    hooks = Receiver()  # finsentry's webhook receiver: down until the restart
    state = tmp_path / "state"
    env = {
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # Generated headlines repeat; within a minute a repeat is a copy, later it is news.
        "FINSENTRY_DEDUPE__HORIZON_SECONDS": "60",
        "FINSENTRY_WEBHOOK_SECRET": SECRET,  # not --webhook-secret, which ps would show
    }

    def job(name: str, alerts_out: Path, *extra: str) -> None:
        processes.start(
            name,
            *FINSENTRY,
            "run",
            "--config",
            watching(tmp_path),
            "--input",
            events,
            "--alerts-out",
            alerts_out,
            "--webhook-url",
            hooks.url("/finsentry"),
            "--state-dir",
            state,
            "--quiet",
            *extra,
            env=env,
        )

    # First run: receiver down. Prometheus scrapes the job while it lingers.
    started = time.time()
    first_alerts = tmp_path / "alerts-1.jsonl"
    job("finsentry-1", first_alerts, "--metrics-port", str(metrics_port), "--linger", "150")

    def raised() -> list[AlertEvent]:
        text = first_alerts.read_bytes() if first_alerts.exists() else b""
        complete = text[: text.rfind(b"\n") + 1].splitlines()
        return [msgspec.json.decode(line, type=AlertEvent) for line in complete]

    def surge_raised() -> bool:
        processes.assert_running("finsentry-1")
        return any(a.labels["topic"] == SURGE_TOPIC for a in raised())

    wait_until("the job to raise the surge alert", surge_raised, 120)

    # (b) Prometheus' surge rule fires and Alertmanager delivers it.
    def routed() -> list[dict[str, Any]]:
        processes.assert_running("finsentry-1")
        return [
            a
            for a in alertmanager_alerts(am_receiver)
            if a["labels"]["alertname"] == "NegativeSentimentSurge" and a["status"] == "firing"
        ]

    (routed_alert, *_) = wait_until("Alertmanager to deliver the surge", routed, 60)
    assert routed_alert["labels"]["topic"] == SURGE_TOPIC
    assert routed_alert["labels"]["severity"] == "warning"
    assert routed_alert["annotations"]["runbook_url"].startswith("https://")
    paths = {r.path for r in am_receiver.requests if "NegativeSentimentSurge" in r.body.decode()}
    assert paths >= {"/alertmanager/ops", "/alertmanager/commodities-desk"}

    # (a) Every panel query of the Grafana dashboard returns data from this Prometheus.
    exprs = list(panel_exprs())
    deadline = time.monotonic() + 45
    while missing := [f"{t}: {e}" for t, e in exprs if not query_range(prometheus, e, started)]:
        processes.assert_running("finsentry-1")
        if time.monotonic() > deadline:
            pytest.fail("panel queries without data:\n" + "\n".join(missing))
        time.sleep(1)
    scored = query_range(prometheus, "sum(rate(finsentry_messages_scored_total[5m]))", started)
    assert peak(scored) > 0
    share = query_range(
        prometheus, f'finsentry_window_negative_share{{topic="{SURGE_TOPIC}"}}', started
    )
    assert peak(share) > 0.5
    alerts = raised()
    depth = query_range(prometheus, "sum(finsentry_webhook_outbox_depth)", started)
    assert peak(depth) >= len(alerts)  # the receiver is down: the events wait
    assert not hooks.requests

    # The job dies with its events undelivered; the receiver comes back; the job is
    # started again on the same state and replays its input.
    processes.stop("finsentry-1", signal.SIGKILL)
    hooks.start()
    try:
        job("finsentry-2", tmp_path / "alerts-2.jsonl")
        code = processes.wait("finsentry-2", 150)
        assert code == 0, processes.tail("finsentry-2")
    finally:
        hooks.stop()

    # (c) and (d): each alert event exactly once, signed, in the Alertmanager format.
    expected = sorted(a.event_id for a in alerts)
    assert len(set(expected)) == len(expected)
    received = [r for r in hooks.requests if r.path == "/finsentry"]
    assert sorted(r.headers[EVENT_ID_HEADER] for r in received) == expected
    assert all(r.signed for r in received)
    by_id = {a.event_id: a for a in alerts}
    for request in received:
        event = by_id[request.headers[EVENT_ID_HEADER]]
        assert request.json()["version"] == "4"
        assert request.json()["alerts"] == [json.loads(to_json(event))]
    surge = [a for a in alerts if a.labels["topic"] == SURGE_TOPIC and a.status == "firing"]
    assert surge and surge[0].labels["alertname"] == routed_alert["labels"]["alertname"]


def test_a_healthy_job_where_nothing_fired_has_data_on_every_panel(
    tmp_path: Path, processes: Processes, prometheus: str, metrics_port: int
) -> None:
    """Gauges and counters that mean "none" read 0 from the start, not "No data"."""
    calm = MarketDay(day=DAY.day, minutes=20, rate=12, surge_minutes=0, seed=12)
    events = tmp_path / "calm.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate(calm)))
    hooks = Receiver().start()
    alerts_out = tmp_path / "alerts.jsonl"
    try:
        started = time.time()
        processes.start(
            "finsentry-calm",
            *FINSENTRY,
            "run",
            "--config",
            watching(tmp_path),
            "--input",
            events,
            "--alerts-out",
            alerts_out,
            "--webhook-url",
            hooks.url("/finsentry"),
            "--state-dir",
            tmp_path / "state",
            "--metrics-port",
            str(metrics_port),
            "--linger",
            "120",
            "--quiet",
            env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
        exprs = list(panel_exprs())
        deadline = time.monotonic() + 150
        while missing := [f"{t}: {e}" for t, e in exprs if not query_range(prometheus, e, started)]:
            processes.assert_running("finsentry-calm")
            if time.monotonic() > deadline:
                pytest.fail("panel queries without data:\n" + "\n".join(missing))
            time.sleep(1)
        assert not (alerts_out.exists() and alerts_out.read_bytes().strip()), "a calm day fired"
        firing = query_range(prometheus, "sum(finsentry_alerts_firing)", started)
        assert peak(firing) == 0
        watched = query_range(prometheus, "finsentry_watched_entity_messages", started)
        assert {s["metric"]["entity"] for s in watched} == {"NWE", "ORBR"}
    finally:
        hooks.stop()
