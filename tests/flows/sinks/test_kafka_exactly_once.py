"""Kafka sinks after a resume: alert events, scored messages and dead letters each go
out once, but for those in flight at a kill (the one alert event; the batch of scored
messages or dead letters), which come again byte for byte, under the same id. A consumer
that drops the ids it has seen gets exactly the records of an uninterrupted run. The
sent ids are deleted once older than the retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka.errors import MessageSizeTooLargeError

from flows.config import KafkaConfig, load_config
from flows.sinks.kafka import (
    SENT_RETENTION,
    DeadLetterSink,
    KafkaSink,
    SentLog,
    alert_sink,
    dead_letter_sink,
    letter_id,
    scored_id,
    scored_sink,
)
from flows.sinks.observe import Observers
from flows.wiring import build_outputs
from processors.envelope.message import (
    NO_END,
    AlertEvent,
    DeadLetter,
    Message,
    dead_letter,
    to_json,
)
from tests.helpers import T0, message, window
from tests.kafka_fixtures import FakeFuture

Sent = tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]  # key, value, headers


class Topic:
    """What a topic holds: a record counts once its producer's flush has returned."""

    def __init__(self) -> None:
        self.records: list[Sent] = []


class _Producer:
    def __init__(self, topic: Topic, refuse: bool = False) -> None:
        self.config = {"enable_idempotence": True}
        self.topic, self.refuse = topic, refuse
        self.pending: list[Sent] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list) -> FakeFuture:
        if self.refuse:
            raise MessageSizeTooLargeError("too big")
        self.pending.append((key, value, tuple(headers)))
        return FakeFuture(None)

    def flush(self) -> None:  # the broker's ack
        self.topic.records += self.pending
        self.pending = []

    def close(self) -> None:
        pass


class Killed(BaseException):
    """SIGKILL: nothing after it runs."""


@contextmanager
def killed_at_ack(monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[None]:
    """The job dies at its `n`th ack: the broker has the records, the log not yet."""
    record = SentLog.acknowledged
    acks = 0

    def record_then_die(log: SentLog, ids: Iterable[str]) -> None:
        nonlocal acks
        acks += 1
        if acks == n:
            raise Killed
        record(log, ids)

    with monkeypatch.context() as patch:
        patch.setattr(SentLog, "acknowledged", record_then_die)
        with pytest.raises(Killed):
            yield


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    """The topic every sink of the test produces to."""
    topic = Topic()
    monkeypatch.setattr(KafkaSink, "producer", lambda sink, idempotent=True: _Producer(topic))
    return topic


def alert(fingerprint: str, status: str = "firing") -> AlertEvent:
    ends = NO_END if status == "firing" else T0 + timedelta(minutes=30)
    surge = window("energy_oil", 40, 30, 0)
    return AlertEvent(status, {"topic": "energy_oil"}, {}, T0, ends, fingerprint, surge, 0.2, 4.5)


def test_alerts_go_one_at_a_time_so_a_kill_repeats_at_most_the_one_in_flight(
    topic: Topic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def partition() -> Any:
        return alert_sink(["k:9092"], "alerts", state_dir=tmp_path).build("alerts", 0, 1)

    batch = [alert("fp-1"), alert("fp-2"), alert("fp-3"), alert("fp-1", "resolved")]
    with killed_at_ack(monkeypatch, 3):  # the third event is acknowledged, not recorded
        partition().write_batch(batch)

    # Resumed from a snapshot taken before the batch: it comes again, whole.
    resumed = partition()
    resumed.write_batch(batch)
    resumed.write_batch(batch)
    resumed.close()
    sent = [to_json(a) for a in batch]
    assert [value for _, value, _ in topic.records] == [*sent[:3], sent[2], sent[3]]


def scored(index: int) -> Message:
    return message(f"Oil slumps {index}", id=f"m{index}", at=T0 + timedelta(minutes=index))


def letter(index: int) -> DeadLetter:
    raw = b"\xff" * index
    return dead_letter("not_utf8", "bad byte", raw, "kafka:news/0", str(index), at=T0)


def read_again(item: Any) -> Any:
    """The item as a resumed job emits it again: read (or rejected) at a later time."""
    later = T0 + timedelta(hours=1)
    if isinstance(item, Message):
        return msgspec.structs.replace(
            item, header=msgspec.structs.replace(item.header, ingested_at=later)
        )
    return msgspec.structs.replace(item, at=later)


def consumer_id(record: Sent) -> tuple[bytes | None, Any]:
    """What docs/kafka.md tells a consumer to de-duplicate by: the key of a dead letter;
    the key and event time of a scored message."""
    key, value, _ = record
    body = msgspec.json.decode(value)
    return key, body["header"]["published_at"] if "header" in body else None


def deduplicated(records: Iterable[Sent]) -> list[Sent]:
    seen: set[tuple[bytes | None, Any]] = set()
    kept = []
    for record in records:
        if consumer_id(record) not in seen:
            seen.add(consumer_id(record))
            kept.append(record)
    return kept


SINKS: dict[str, tuple[Callable[..., KafkaSink[Any]], Callable[[int], Any]]] = {
    "scored": (scored_sink, scored),
    "dead letters": (dead_letter_sink, letter),
}


@pytest.mark.parametrize("kind", SINKS)
def test_a_resumed_job_repeats_only_the_batch_in_flight_and_byte_for_byte(
    kind: str, topic: Topic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, item = SINKS[kind]

    def partition(state: Path) -> Any:
        return make(["k:9092"], kind, state_dir=state).build(kind, 0, 1)

    (tmp_path / "reference").mkdir()
    uninterrupted = partition(tmp_path / "reference")
    for batch in ([item(1), item(2)], [item(3), item(4)], [item(5), item(6)]):
        uninterrupted.write_batch(batch)
    uninterrupted.close()
    expected, topic.records = topic.records, []

    crashed = partition(tmp_path)
    with killed_at_ack(monkeypatch, 2):  # the second batch is acknowledged, not recorded
        crashed.write_batch([item(1), item(2)])
        crashed.write_batch([item(3), item(4)])

    # Resumed from a snapshot taken before the first batch: what came after it is read
    # again later (other times in it) and cut into other batches.
    resumed = partition(tmp_path)
    resumed.write_batch([read_again(item(i)) for i in (1, 2, 3)])
    resumed.write_batch([read_again(item(4)), item(5), item(6)])
    resumed.close()
    assert topic.records == [*expected[:4], *expected[2:4], *expected[4:]]
    assert deduplicated(topic.records) == expected


def test_without_a_state_dir_repeats_keep_their_key() -> None:
    """No sent ids: everything after the snapshot comes again, other times in it, but
    under the same id, so the consumer's de-duplication stays exact."""
    for first in (scored(1), letter(1)):
        again = read_again(first)
        assert again != first
        if isinstance(first, Message):
            assert scored_id(again) == scored_id(first)
        else:
            assert letter_id(again) == letter_id(first)


def test_a_dead_letter_id_is_its_source_position_and_reason() -> None:
    base = letter(3)
    assert len(letter_id(base)) == 32
    assert letter_id(msgspec.structs.replace(base, payload="other", detail="x")) == letter_id(base)
    for change in ({"reason": "invalid_json"}, {"position": "4"}, {"source": "kafka:news/1"}):
        assert letter_id(msgspec.structs.replace(base, **change)) != letter_id(base)
    # Without a position, the original payload's digest says which input it was.
    loose = msgspec.structs.replace(base, position=None)
    other = dead_letter("not_utf8", "bad byte", b"\xfe", "kafka:news/0", None)
    assert letter_id(loose) != letter_id(other) and letter_id(loose) != letter_id(base)


def test_a_scored_id_is_the_message_id_and_event_time() -> None:
    assert scored_id(scored(1)) == "m1@2024-03-14T14:01:00+00:00"
    back_later = message("Oil slumps 1", id="m1", at=T0 + timedelta(hours=5))
    assert scored_id(back_later) != scored_id(scored(1))


def test_a_dead_letter_the_topic_refuses_is_not_tried_again_after_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = Topic()
    monkeypatch.setattr(
        KafkaSink, "producer", lambda sink, idempotent=True: _Producer(topic, refuse=True)
    )
    fallback = tmp_path / "fallback.jsonl"
    for _ in range(2):  # the first run, then the resumed one
        sink = dead_letter_sink(["k:9092"], "dead", fallback, state_dir=tmp_path, backoff=0)
        partition = sink.build("dead", 0, 1)
        partition.write_batch([letter(1)])  # does not raise
        partition.close()
    assert len(fallback.read_text().splitlines()) == 1 and not topic.records


def test_dead_letters_still_go_out_when_the_sent_ids_cannot_be_written(
    topic: Topic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(log: SentLog, records: Iterable[tuple[str, bytes]]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(SentLog, "intend", disk_full)
    partition = dead_letter_sink(["k:9092"], "dead", state_dir=tmp_path).build("dead", 0, 1)
    partition.write_batch([letter(1)])  # does not raise
    assert [value for _, value, _ in topic.records] == [to_json(letter(1))]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


DAY = 86_400.0


def test_sent_ids_older_than_the_retention_are_deleted_on_open_and_while_writing(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = SentLog(tmp_path, "kafka:scored", timedelta(days=7), clock)
    log.intend([("old", b"1"), ("old-unacknowledged", b"2")])
    log.acknowledged(["old"])
    assert log.known(["old", "old-unacknowledged"]) == {"old": None, "old-unacknowledged": b"2"}
    clock.now += 6 * DAY
    log.intend([("recent", b"3")])
    log.acknowledged(["recent"])
    log.close()

    clock.now += DAY + 1  # "old" is 7 days and a second old, "recent" a day
    log = SentLog(tmp_path, "kafka:scored", timedelta(days=7), clock)
    assert log.known(["old", "old-unacknowledged", "recent"]) == {"recent": None}

    clock.now += 6 * DAY + 1  # "recent" is past the retention: deleted when a prune is due
    log.intend([("new", b"4")])
    log.acknowledged(["new"])
    assert log.known(["recent", "new"]) == {"new": None}
    log.close()
    values = sqlite3.connect(tmp_path / SentLog.FILE).execute("SELECT count(*) FROM pending")
    assert values.fetchone() == (0,)  # kept only while a delivery is not known


def test_other_sinks_ids_are_not_pruned_by_this_one(tmp_path: Path) -> None:
    clock = Clock()
    alerts = SentLog(tmp_path, "kafka:alerts", timedelta(days=30), clock)
    alerts.intend([("a", b"1")])
    alerts.acknowledged(["a"])
    clock.now += 8 * DAY
    SentLog(tmp_path, "kafka:scored", timedelta(days=7), clock).close()
    assert alerts.known(["a"]) == {"a": None}
    alerts.close()


def test_a_sent_log_from_before_pruning_is_kept_and_ages_from_its_first_open(
    tmp_path: Path,
) -> None:
    old = sqlite3.connect(tmp_path / SentLog.FILE)
    old.execute(
        "CREATE TABLE sent (sink TEXT NOT NULL, event_id TEXT NOT NULL,"
        " PRIMARY KEY (sink, event_id))"
    )
    old.execute("INSERT INTO sent VALUES ('kafka:alerts', 'fp:firing:t')")
    old.commit()
    old.close()
    clock = Clock()
    SentLog(tmp_path, "kafka:alerts", timedelta(days=7), clock).close()
    log = SentLog(tmp_path, "kafka:alerts", timedelta(days=7), clock)
    assert log.known(["fp:firing:t"]) == {"fp:firing:t": None}
    log.close()
    clock.now += 7 * DAY + 1
    log = SentLog(tmp_path, "kafka:alerts", timedelta(days=7), clock)
    assert log.known(["fp:firing:t"]) == {}
    log.close()


def test_the_config_default_retention_is_the_sinks() -> None:
    assert KafkaConfig().sent_retention_seconds == SENT_RETENTION.total_seconds()


def test_the_job_keeps_sent_ids_of_scored_messages_and_dead_letters_only_to_resume(
    tmp_path: Path,
) -> None:
    """With snapshots, the sinks skip what a resumed job sends again; without, a job run
    again (a backfill) is a new run, and sends its scored messages and dead letters."""
    topics = {"kafka.brokers": ["k:9092"], "kafka.scored_topic": "scored"}
    topics |= {"kafka.dead_letter_topic": "dead", "kafka.sent_retention_seconds": 3600}
    for recovery, kept in ((tmp_path / "recovery", tmp_path / "recovery-state"), (None, None)):
        config = load_config(env={}, overrides={**topics, "recovery.dir": recovery})
        outputs = build_outputs(config, Observers())
        [scored] = [s for s in outputs.scored if isinstance(s, KafkaSink)]
        [letters] = [s for s in outputs.dead_letters if isinstance(s, DeadLetterSink)]
        for sink in (scored, letters):
            assert (sink.state_dir, sink.retention) == (kept, timedelta(hours=1))
