"""`finsentry run` on Kafka as a user runs it: backfill, crash and resume, two processes.

A generated market day plus one malformed line per remaining reason is replayed once
into a 4-partition topic of a noida-db broker. Its uninterrupted backfill is the
reference that a SIGKILLed and resumed run, and a run split over two processes, must
reproduce exactly. The no-op chain keeps this fast where the model is not the point:
it labels nothing, so every window is `unclassified` and nothing alerts. The default
model (alerts included) runs once its head weights exist.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from bytewax.testing import TestingSink, cluster_main
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from flows.config import load_config
from flows.monitor import build_flow
from flows.replay import replay
from flows.sinks.kafka import alert_sink, ensure_topic
from flows.sources.demo import MarketDay, generate
from flows.sources.kafka import KafkaSource
from flows.wiring import Outputs
from processors.envelope.message import NO_END, AlertEvent, DeadLetter, TopicWindow, to_json
from processors.models.heads import DEFAULT_HEADS_PATH
from processors.stream import MARKET
from tests.brokers import Broker, free_port
from tests.helpers import ROOT, T0, is_topic_window, window

pytestmark = pytest.mark.slow  # whole jobs against Kafka-protocol brokers

pytest_plugins = ["tests.kafka_fixtures"]

ROOT = ROOT
HEADS = DEFAULT_HEADS_PATH
NO_HEADS = f"the default model's head weights are not trained yet ({HEADS} is missing)"
DAY = date(2024, 3, 14)

# The generator already writes invalid_json, empty_text, bad_timestamp and not_utf8.
BAD_LINES: dict[bytes, str] = {
    b"[1, 2]": "not_object",
    b'{"id": "bad-1"}': "missing_text",
    b'{"id": "bad-2", "text": 5}': "wrong_type",
    b'{"id": "bad-3", "text": "Oil", "published_at": "1970-01-01T00:00:00Z"}': "absurd_timestamp",
    b'{"id": "bad-4", "text": ': "invalid_json",
    b'{"id": "bad-5", "text": "Oil \xff"}': "not_utf8",
}


def config_file(directory: Path, chain: str) -> Path:
    """The job's YAML: the demo's windows and de-duplication, the rest default; `noop`
    or the default processor chain."""
    config: dict[str, Any] = {
        "window": {"length_seconds": 600},
        "dedupe": {"horizon_seconds": 60},
    }
    if chain == "noop":
        config["processors"] = [{"name": "noop", "kind": "noop"}]
    path = directory / f"{chain}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Topic:
    """A replayed day: where it is and how many records it holds."""

    broker: Broker
    name: str
    records: int

    def run_args(self, config: Path) -> list[str]:
        return [
            *("--config", str(config), "--brokers", self.broker.address),
            *("--input-topic", self.name, "--exit-at-end", "--quiet"),
        ]


def replay_day(broker: Broker, directory: Path, name: str, day: MarketDay) -> Topic:
    lines = [*generate(day), *BAD_LINES]
    path = directory / f"{name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert replay(path, [broker.address], name, partitions=4, progress=False) == len(lines)
    return Topic(broker, name, len(lines))


@dataclass
class Job:
    """One `finsentry run` subprocess; its stdout and stderr go to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 240) -> str:
        code = self.proc.wait(timeout)
        assert code == 0, f"finsentry run exited {code}:\n{self.output()[-3000:]}"
        return self.output()

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) before {what}")
            assert time.monotonic() < deadline, f"no {what} after {timeout:g}s"
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)


def start(log: Path, *args: str) -> Job:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    return Job(proc, log)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    """Starts jobs (`jobs(name, *args)`) and kills any still running at the end."""
    started: list[Job] = []

    def run(name: str, *args: str) -> Job:
        started.append(start(tmp_path / f"{name}.log", *args))
        return started[-1]

    yield run
    for job in started:
        job.stop()


def lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines output; a file sink creates its file with the first line."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_key_and_time(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Windows of different keys close in any order between them; each key's in time."""
    return sorted(windows, key=lambda w: (w["topic"], w["start"]))


def complete_lines(path: Path) -> int:
    """Lines written so far, not counting one still being written."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def aggregates(record: dict[str, Any]) -> dict[str, Any]:
    """A window, or an alert's window, without its evidence.

    Evidence holds the most negative headlines by model score, whose last digits may
    differ with how a batch was composed; everything else is counted.
    """
    if "window" in record:
        return {**record, "window": aggregates(record["window"])}
    return {k: v for k, v in record.items() if k != "evidence"}


def event_ids(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(a["fingerprint"], a["status"], a["startsAt"]) for a in alerts]


def read_topic(broker: Broker, topic: str) -> list[ConsumerRecord]:
    """Every record of `topic`, up to the end offsets found now."""
    consumer = KafkaConsumer(bootstrap_servers=[broker.address], enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(parts)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + 20
    while any(consumer.position(tp) < end[tp] for tp in parts):
        assert time.monotonic() < deadline, f"read {len(records)} records of {topic}"
        for batch in consumer.poll(timeout_ms=200).values():
            records += batch
    consumer.close()
    return records


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def read_count(log: str) -> int:
    """Items read, from the summary line `done in ...: N read, ...`."""
    found = re.search(r"done in [\d.]+ s: ([\d,]+) read", log)
    assert found, log[-2000:]
    return int(found.group(1).replace(",", ""))


@dataclass
class Outcome:
    windows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    dead_letters: list[tuple[str, str, str | None, str]]

    @classmethod
    def read(cls, directory: Path) -> Outcome:
        """The job's JSON-lines outputs in `directory`; dead letters less their time."""
        letters = lines(directory / "dead.jsonl")
        return cls(
            by_key_and_time(lines(directory / "windows.jsonl")),
            lines(directory / "alerts.jsonl"),
            sorted(letter_fields(d) for d in letters),
        )


def letter_fields(letter: dict[str, Any]) -> tuple[str, str, str | None, str]:
    """A dead letter less its time."""
    return letter["reason"], letter["source"], letter["position"], letter["payload"]


def scored_identity(message: dict[str, Any]) -> tuple[str, str]:
    return message["header"]["id"], message["header"]["published_at"]


def deduplicated(records: list[ConsumerRecord]) -> list[dict[str, Any]]:
    """A consumer's de-duplication (docs/kafka.md): the first record of each id (a dead
    letter's key; a scored message's key and event time). A repeat must be byte for
    byte the record it repeats."""
    first: dict[tuple[bytes, str | None], ConsumerRecord] = {}
    for record in records:
        header = json.loads(record.value).get("header")
        kept = first.setdefault((record.key, header and header["published_at"]), record)
        assert (record.value, record.headers) == (kept.value, kept.headers)
    return [json.loads(r.value) for r in first.values()]


def outputs(directory: Path) -> list[str]:
    return [
        *("--windows-out", str(directory / "windows.jsonl")),
        *("--alerts-out", str(directory / "alerts.jsonl")),
        *("--dead-letters-out", str(directory / "dead.jsonl")),
    ]


@dataclass
class Reference:
    """The uninterrupted backfill of the day, with its metrics and dead-letter topic."""

    outcome: Outcome
    metrics: str
    dead_letter_topic: str


@pytest.fixture(scope="module")
def day(noida: Broker, tmp_path_factory: pytest.TempPathFactory) -> Topic:
    # Four times the usual rate, so the no-op backfill lasts long enough to be killed.
    day = MarketDay(DAY, rate=96)
    return replay_day(noida, tmp_path_factory.mktemp("day"), "day", day)


@pytest.fixture(scope="module")
def reference(day: Topic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    tmp = tmp_path_factory.mktemp("reference")
    dead, alerts = "day-dead-letters", "day-alerts"
    for name in (dead, alerts):
        ensure_topic([day.broker.address], name, partitions=1)
    port = free_port()
    job = start(
        tmp / "run.log",
        *day.run_args(config_file(tmp, "noop")),
        *outputs(tmp),
        *("--dead-letter-topic", dead, "--alerts-topic", alerts),
        *("--metrics-port", str(port), "--linger", "120"),
    )
    try:
        job.wait_for("the end of the input", lambda: "input ended" in job.output())
        url = f"http://127.0.0.1:{port}/metrics"
        metrics = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        job.stop(signal.SIGTERM)
    outcome = Outcome.read(tmp)
    assert outcome.windows
    yield Reference(outcome, metrics, dead)


def test_counts_are_conserved_and_dead_letters_carry_their_reason(
    day: Topic, reference: Reference
) -> None:
    m = reference.metrics
    read = metric(m, "finsentry_messages_in_total", input="kafka")
    scored = metric(m, "finsentry_messages_scored_total")
    duplicates = metric(m, "finsentry_duplicates_total")
    dead = metric(m, "finsentry_dead_letters_total")
    late = metric(m, "finsentry_dead_letters_total", reason="late")
    rejected = dead - late
    assert read == day.records
    assert rejected >= len(BAD_LINES) and duplicates > 0
    assert read == scored + rejected  # repeats are scored, then dropped in order
    by_topic = [w for w in reference.outcome.windows if is_topic_window(w["topic"])]
    market = [w for w in reference.outcome.windows if w["topic"] == MARKET]
    assert scored == sum(w["n"] for w in by_topic) + late + duplicates
    assert late == 0  # each partition is in event order, and so is their merge
    assert sum(w["n"] for w in market) == sum(w["n"] for w in by_topic)

    letters = read_topic(day.broker, reference.dead_letter_topic)
    assert len(letters) == dead
    bodies = [json.loads(record.value) for record in letters]
    for record, body in zip(letters, bodies, strict=True):
        assert dict(record.headers)["reason"] == body["reason"].encode()
        assert body["source"].startswith(f"kafka:{day.name}/") and body["position"].isdigit()
    reasons = {body["payload"]: body["reason"] for body in bodies}
    for line, reason in BAD_LINES.items():
        assert reasons[line.decode(errors="replace")] == reason


@pytest.mark.parametrize(
    "chain",
    [
        "noop",
        pytest.param("default", marks=pytest.mark.skipif(not HEADS.is_file(), reason=NO_HEADS)),
    ],
)
def test_a_killed_and_resumed_run_matches_an_uninterrupted_one(
    chain: str,
    day: Topic,
    reference: Reference,
    jobs: Callable[..., Job],
    tmp_path: Path,
) -> None:
    config = config_file(tmp_path, chain)
    if chain == "noop":
        topic, expected = day, reference.outcome
    else:  # a shorter day, with a surge that alerts
        topic = replay_day(day.broker, tmp_path, "surge", MarketDay(DAY, minutes=150))
        (tmp_path / "reference").mkdir()
        jobs("reference", *topic.run_args(config), *outputs(tmp_path / "reference")).wait()
        expected = Outcome.read(tmp_path / "reference")
        assert [a["status"] for a in expected.alerts] == ["firing", "resolved"]

    def killable() -> bool:  # windows come out as event time advances: kill meanwhile
        return complete_lines(tmp_path / "windows.jsonl") >= 3

    alerts_topic = f"{topic.name}-{chain}-resumed-alerts"
    scored_topic, dead_topic = f"{alerts_topic}-scored", f"{alerts_topic}-dead"
    for name, partitions in ((alerts_topic, 2), (scored_topic, 2), (dead_topic, 1)):
        ensure_topic([day.broker.address], name, partitions=partitions)
    settings = yaml.safe_load(config.read_text())
    config.write_text(
        yaml.safe_dump({**settings, "sinks": {"scored_path": str(tmp_path / "scored.jsonl")}})
    )
    args = [
        *topic.run_args(config),
        *outputs(tmp_path),
        *("--recovery-dir", str(tmp_path / "recovery"), "--snapshot-interval", "1"),
        *("--alerts-topic", alerts_topic, "--dead-letter-topic", dead_topic),
        *("--scored-topic", scored_topic),
    ]
    crashed = jobs("crashed", *args)
    crashed.wait_for("the moment to kill it", killable)
    crashed.stop(signal.SIGKILL)
    killed_at = complete_lines(tmp_path / "windows.jsonl")
    assert killed_at < len(expected.windows), "killed after the stream ended"
    assert (tmp_path / "recovery-state").is_dir()  # the alerts sent live beside recovery
    jobs("resumed", *args).wait()

    got = Outcome.read(tmp_path)
    assert [aggregates(w) for w in got.windows] == [aggregates(w) for w in expected.windows]
    assert [aggregates(a) for a in got.alerts] == [aggregates(a) for a in expected.alerts]
    assert got.dead_letters == expected.dead_letters  # file sinks: exactly once
    sent = [json.loads(r.value) for r in read_topic(day.broker, alerts_topic)]
    assert sorted(event_ids(sent)) == sorted(event_ids(got.alerts))
    assert len(set(event_ids(sent))) == len(sent)
    assert len(set(event_ids(got.alerts))) == len(got.alerts)
    # Scored messages and dead letters: what the resumed job sent again was skipped,
    # but for the batch in flight at the kill, byte for byte the same; de-duplicated as
    # docs/kafka.md says, the topics hold what the files hold.
    letters = deduplicated(read_topic(day.broker, dead_topic))
    assert sorted(letter_fields(d) for d in letters) == expected.dead_letters
    scored = deduplicated(read_topic(day.broker, scored_topic))
    in_file = sorted(scored_identity(m) for m in lines(tmp_path / "scored.jsonl"))
    assert sorted(scored_identity(m) for m in scored) == in_file


def test_two_processes_match_one(
    day: Topic, reference: Reference, jobs: Callable[..., Job], tmp_path: Path
) -> None:
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    # A file sink is one partition: one worker of the cluster writes it, so both
    # processes are given the same path (one machine; on several, use a shared disk).
    windows = tmp_path / "windows.jsonl"
    config = config_file(tmp_path, "noop")
    started = [
        jobs(
            f"process-{i}",
            *day.run_args(config),
            *("--process-id", str(i), "--addresses", addresses, "--windows-out", str(windows)),
        )
        for i in range(2)
    ]
    reads = [read_count(job.wait()) for job in started]
    assert all(reads) and sum(reads) == day.records  # two partitions each
    assert by_key_and_time(lines(windows)) == reference.outcome.windows


def alert(status: str, minutes: int) -> AlertEvent:
    surge = window("energy_oil", 40, 30, 0)
    ends = NO_END if status == "firing" else T0 + timedelta(minutes=minutes)
    return AlertEvent(status, {"topic": "energy_oil"}, {}, T0, ends, "fp-1", surge, 0.2, 4.5)


def test_the_alert_sink_sends_each_event_once_across_restarts(
    noida: Broker, topic: str, tmp_path: Path
) -> None:
    ensure_topic([noida.address], topic, partitions=1)
    firing, resolved = alert("firing", 0), alert("resolved", 30)
    first = alert_sink([noida.address], topic, state_dir=tmp_path).build("alerts", 0, 1)
    first.write_batch([firing])
    first.close()
    # Resumed from a snapshot taken before `firing`: it comes again, then what is new.
    resumed = alert_sink([noida.address], topic, state_dir=tmp_path).build("alerts", 0, 1)
    resumed.write_batch([firing, resolved, resolved])
    resumed.close()
    assert [r.value for r in read_topic(noida, topic)] == [to_json(firing), to_json(resolved)]


def test_two_workers_of_one_process_match_one(day: Topic, tmp_path: Path) -> None:
    """Two workers read the four partitions side by side; the one ordering point puts
    their items in the order one worker gives, so nothing is late and repeats agree."""
    config = load_config(config_file(tmp_path, "noop"), env={})

    def run(workers: int) -> tuple[list[TopicWindow], list[tuple[str, str | None, str]]]:
        windows: list[TopicWindow] = []
        dead: list[DeadLetter] = []
        source = KafkaSource([day.broker.address], [day.name], batch_size=64, exit_at_end=True)
        outputs = Outputs(windows=[TestingSink(windows)], dead_letters=[TestingSink(dead)])
        flow = build_flow(config, source=source, outputs=outputs)
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        letters = sorted((d.source, d.position, d.reason) for d in dead)
        return sorted(windows, key=lambda w: (w.topic, w.start)), letters

    one = run(1)
    assert sum(w.n for w in one[0]) > 20_000 and "late" not in {r for _, _, r in one[1]}
    assert run(2) == one
