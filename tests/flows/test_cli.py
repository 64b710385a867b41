"""The `finsentry` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from flows.cli.job import DEMO_OVERRIDES, SECRET_ENV
from flows.sources.demo import MarketDay, generate
from tests.brokers import free_port
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # the command in subprocesses, with the real models

ROOT = ROOT
DATA = ROOT.parent / "shared" / "data" / "twitter-financial-news"


def finsentry(
    *args: str, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_demo_short_mode_fires_the_surge_topic_only(tmp_path: Path) -> None:
    alerts_path = tmp_path / "alerts.jsonl"
    done = finsentry("demo", "--minutes", "150", "--alerts-out", str(alerts_path), "--quiet")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "[FIRING  ] NegativeSentimentSurge topic=energy_oil" in out
    assert "alerts fired: energy_oil" in out
    alerts = [json.loads(line) for line in alerts_path.read_text().splitlines()]
    assert (alerts[0]["labels"]["topic"], alerts[0]["status"]) == ("energy_oil", "firing")
    assert {a["labels"]["topic"] for a in alerts} == {"energy_oil"}
    assert set(alerts[0]) >= {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "fingerprint",
    }


def test_run_reads_a_file_to_its_end_and_writes_alerts(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    dead = tmp_path / "dead.jsonl"
    assert (
        finsentry(
            "generate", "--out", str(events), "--minutes", "150", "--day", "2024-03-14"
        ).returncode
        == 0
    )
    # The demo's window and de-duplication settings, which the generated day is made for:
    # under the default hour-long de-duplication most of its template headlines are copies.
    config = tmp_path / "demo.yaml"
    settings: dict[str, dict[str, object]] = {}
    for dotted, value in DEMO_OVERRIDES.items():
        section, name = dotted.split(".")
        if section != "source":
            settings.setdefault(section, {})[name] = value
    config.write_text(json.dumps(settings))  # JSON is YAML
    done = finsentry(
        "run",
        "--config",
        str(config),
        "--input",
        str(events),
        "--alerts-out",
        str(alerts),
        "--dead-letters-out",
        str(dead),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    surge = [a for a in lines if a["labels"]["alertname"] == "NegativeSentimentSurge"]
    assert [(a["labels"]["topic"], a["status"]) for a in surge] == [
        ("energy_oil", "firing"),
        ("energy_oil", "resolved"),
    ]
    # The surge is also a burst of coverage: a volume spike, if any, is energy_oil's.
    assert {a["labels"]["topic"] for a in lines} == {"energy_oil"}
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letters and all(letter["reason"] and letter["detail"] for letter in letters)


def test_run_names_a_missing_input_and_a_bad_config(tmp_path: Path) -> None:
    done = finsentry("run", "--input", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2 and b"nope.jsonl" in done.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("window:\n  length_seconds: -5\n")
    done = finsentry("run", "--config", str(config), "--input", str(config))
    assert done.returncode == 2
    assert b"window.length_seconds" in done.stderr


@pytest.mark.skipif(shutil.which("ps") is None, reason="no ps")
@pytest.mark.parametrize("given", ["file", "environment", "flag"])
def test_the_webhook_secret_shows_in_ps_only_when_given_as_the_old_flag(
    tmp_path: Path, given: str
) -> None:
    """Every user on the machine can read a process's arguments in `ps`: a secret read
    from a file or the environment is not among them. The deprecated flag shows that
    the check can see a secret, and warns."""
    secret = "ps-must-never-show-this-3f9c"
    events = tmp_path / "events.jsonl"
    day = MarketDay(date(2024, 3, 14), minutes=10)
    events.write_bytes(b"".join(line + b"\n" for line in generate(day)))
    config = tmp_path / "noop.yaml"
    config.write_text("processors: [{name: noop, kind: noop}]\n")  # no models to load
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(secret + "\n")
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    how = {
        "file": ["--webhook-secret-file", str(secret_file)],
        "environment": [],
        "flag": ["--webhook-secret", secret],
    }[given]
    if given == "environment":
        env[SECRET_ENV] = secret
    job = subprocess.Popen(
        [
            *(sys.executable, "-m", "flows.cli", "run", "--config", str(config)),
            *("--input", str(events), "--state-dir", str(tmp_path / "state")),
            *("--webhook-url", f"http://127.0.0.1:{free_port()}/hook", *how),
            *("--linger", "60", "--quiet"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert job.stdout is not None
        # The job is up, its secret loaded, once it has read its input.
        if not any(b"input ended" in line for line in job.stdout):
            pytest.fail(f"the job ended early: {job.communicate()[1].decode()[-2000:]}")
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        listing = subprocess.run(
            ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
        ).stdout
    finally:
        job.kill()
        _, stderr = job.communicate()
    assert cmdline.strip() in listing.splitlines()  # ps sees the job, whole
    assert (secret in listing) == (secret in cmdline) == (given == "flag")
    assert (b"--webhook-secret shows in ps" in stderr) == (given == "flag")


def test_score_texts_and_stdin() -> None:
    done = finsentry(
        "score",
        "Oil prices plunge 8% as OPEC+ talks collapse",
        "Apple beats Q3 estimates, raises outlook",
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    labels = lambda m: {r["task"]: r["label"] for r in m["trailer"]}  # noqa: E731
    assert labels(first) == {"topic": "energy_oil", "sentiment": "negative", "entities": ""}
    assert labels(second)["sentiment"] == "positive" and labels(second)["entities"] == "AAPL"
    assert first["header"]["type"] == "scored" and first["header"]["route"] == [
        "topic",
        "sentiment",
        "entities",
    ]

    stdin = b'{"id": "a", "text": "Fed holds rates steady"}\n{"text": ""}\n'
    done = finsentry("score", stdin=stdin)
    assert done.returncode == 1
    assert [json.loads(line)["header"]["id"] for line in done.stdout.splitlines()] == ["a"]
    assert b"item 2: empty_text" in done.stderr


@pytest.mark.skipif(not DATA.is_dir(), reason=f"labelled data not found at {DATA}")
@pytest.mark.parametrize(("task", "floor"), [("sentiment", 0.74), ("topic", 0.74)])
def test_eval_on_a_slice_meets_a_floor(task: str, floor: float) -> None:
    done = finsentry(
        "eval", "--task", task, "--data", str(DATA / f"{task}_valid.csv"), "--limit", "400"
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    figures = json.loads(done.stdout)
    assert figures["n"] == 400
    assert figures["accuracy"] >= floor
    assert 0 < figures["macro_f1"] <= 1


def test_metrics_endpoint_serves_the_documented_names() -> None:
    from flows.metrics import Metrics

    metrics = Metrics()
    port = metrics.serve(0)
    metrics.observe_input("demo", 3)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in (
        "finsentry_messages_in_total",
        "finsentry_messages_scored_total",
        "finsentry_duplicates_total",
        "finsentry_dead_letters_total",
        "finsentry_classified_total",
        "finsentry_windows_closed_total",
        "finsentry_window_negative_share",
        "finsentry_window_mean_score",
        "finsentry_alerts_total",
        "finsentry_alerts_firing",
        "finsentry_processor_batch_size",
        "finsentry_processor_batch_duration_seconds",
        "finsentry_end_to_end_latency_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in body, name
    assert 'finsentry_messages_in_total{input="demo"} 3.0' in body
    # "None so far" reads 0 from the start, not "No data".
    firing = 'finsentry_alerts_firing{{alertname="{}",topic="{}"}} 0.0'
    assert firing.format("NegativeSentimentSurge", "energy_oil") in body
    assert firing.format("NewsVolumeSpike", "all") in body
    total = 'finsentry_alerts_total{alertname="NewsVolumeSpike",status="firing",topic="macro"} 0.0'
    assert total in body
    assert 'finsentry_dead_letters_total{reason="late"} 0.0' in body


def test_a_generated_company_day_fires_for_the_surging_company_only(tmp_path: Path) -> None:
    """The company day through `finsentry run` with the default model, no watchlist: a
    surge on BA, one story echoed 60 times on PFE, a neutral burst on NVDA."""
    day, alerts = tmp_path / "companies.jsonl", tmp_path / "alerts.jsonl"
    made = finsentry("generate", "--companies", "--out", str(day), "--day", "2024-03-14")
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    assert "surge on BA, echo on PFE, burst on NVDA" in made.stdout.decode()
    done = finsentry("run", "--input", str(day), "--alerts-out", str(alerts), "--quiet")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    firing = [
        a for a in map(json.loads, alerts.read_text().splitlines()) if a["status"] == "firing"
    ]
    by_entity = {
        (a["labels"]["alertname"], a["labels"]["entity"]) for a in firing if "entity" in a["labels"]
    }
    surges = {entity for name, entity in by_entity if name == "NegativeSentimentSurge"}
    spikes = {entity for name, entity in by_entity if name == "NewsVolumeSpike"}
    assert surges == {"BA"}  # not PFE: one story, however often it is echoed
    assert "NVDA" in spikes
    (surge,) = [a for a in firing if a["labels"].get("entity") == "BA"]
    texts = [e["text"] for e in surge["window"]["evidence"]]
    assert len(texts) == len(set(texts)) >= 3 and all("Boeing" in t for t in texts)
