"""The Kafka edge against real broker processes: source, sink, replay, and a tiny flow.

Each test runs on noida-db and on Tansu (see tests/brokers.py); cases that need true
end offsets are skipped on Tansu with the reason.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import ClusterAuthorizationFailedError

from flows.replay import replay
from flows.sinks.kafka import (
    DeadLetterSink,
    KafkaSink,
    KafkaSinkPartition,
    alert_sink,
    dead_letter_sink,
    ensure_topic,
    make_producer,
)
from flows.sources import RawRecord
from flows.sources.kafka import (
    KafkaMetrics,
    KafkaSource,
    KafkaSourcePartition,
    KafkaUnavailable,
    TopicNotFound,
)
from processors.envelope.message import NO_END, AlertEvent, DeadLetter, dead_letter, to_json
from processors.stream.sequencer import PartitionProgress
from tests.brokers import TANSU, TANSU_END_OFFSETS, TANSU_NO_OUT_OF_RANGE, Broker, free_port
from tests.helpers import T0, window
from tests.kafka_fixtures import FakeFuture

pytestmark = pytest.mark.slow  # Kafka-protocol brokers in subprocesses

pytest_plugins = ["tests.kafka_fixtures"]


def produce(broker: Broker, topic: str, records: list[tuple[int, bytes | None]]) -> None:
    """Write (partition, value) pairs with a plain producer, in order."""
    producer = KafkaProducer(bootstrap_servers=[broker.address])
    for partition, value in records:
        producer.send(topic, key=b"k", value=value, partition=partition)  # a tombstone needs a key
    producer.flush()
    producer.close()


def consume(broker: Broker, topic: str, n: int, timeout: float = 15.0) -> list:
    """The first `n` records of `topic`, all partitions, with a plain consumer."""
    consumer = KafkaConsumer(bootstrap_servers=[broker.address], enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    records: list = []
    deadline = time.monotonic() + timeout
    while len(records) < n and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records += batch
    consumer.close()
    assert len(records) == n, f"read {len(records)} of {n} records"
    return records


def wait_awake(part: KafkaSourcePartition) -> None:
    awake = part.next_awake()
    if awake is not None:
        time.sleep(max(0.0, (awake - datetime.now(UTC)).total_seconds()))


def records_of(batch: list[RawRecord | PartitionProgress]) -> list[RawRecord]:
    """A batch less the partition's progress (caught up, ended)."""
    return [r for r in batch if isinstance(r, RawRecord)]


def drain(part: KafkaSourcePartition, n: int, timeout: float = 15.0) -> list[RawRecord]:
    """Call the partition the way Bytewax does until it has returned `n` records."""
    got: list[RawRecord] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"read {len(got)} of {n} records"
        wait_awake(part)
        got += records_of(part.next_batch())
    return got


def read_to_end(part: KafkaSourcePartition, timeout: float = 15.0) -> list[RawRecord]:
    """The records up to the partition's end; it says it has ended just before it stops."""
    got: list[RawRecord | PartitionProgress] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait_awake(part)
        try:
            got += part.next_batch()
        except StopIteration:
            assert got and isinstance(got[-1], PartitionProgress) and got[-1].ended
            return records_of(got)
    raise AssertionError(f"no end after {len(got)} records")


def sample(metrics: KafkaMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def source(broker: Broker, topic: str, **options) -> KafkaSource:
    return KafkaSource([broker.address], [topic], **options)


def values(records: list[tuple[int, bytes | None]], partition: int) -> list[bytes]:
    return [value or b"" for p, value in records if p == partition]


def test_reads_every_partition_in_order(broker: Broker, topic: str) -> None:
    ensure_topic([broker.address], topic, partitions=3)
    sent: list[tuple[int, bytes | None]] = [(i % 3, b'{"n": %d}' % i) for i in range(60)]
    sent.append((0, None))  # a tombstone
    produce(broker, topic, sent)
    kafka = source(broker, topic, batch_size=7)
    assert kafka.list_parts() == [f"{topic}/0", f"{topic}/1", f"{topic}/2"]
    for partition in range(3):
        part = kafka.build_part("in", f"{topic}/{partition}", None)
        expected = values(sent, partition)
        got = drain(part, len(expected))
        assert [r.payload for r in got] == expected
        assert {r.origin for r in got} == {f"kafka:{topic}/{partition}"}
        assert [r.position for r in got] == [str(i) for i in range(len(expected))]
        assert part.snapshot() == len(expected)
        part.close()


def test_resumes_exactly_after_the_snapshot(broker: Broker, topic: str) -> None:
    ensure_topic([broker.address], topic, partitions=1)
    sent = [(0, b"%d" % i) for i in range(20)]
    produce(broker, topic, sent)
    kafka = source(broker, topic, batch_size=5)
    first = kafka.build_part("in", f"{topic}/0", None)
    head = drain(first, 8)
    state = first.snapshot()
    assert state == int(head[-1].position) + 1
    first.close()
    second = kafka.build_part("in", f"{topic}/0", state)
    tail = drain(second, 20 - len(head))
    second.close()
    assert tail[0].position == str(state)
    assert [r.payload for r in head + tail] == values(sent, 0)


def test_a_batch_waits_its_time_budget_for_more_records(broker: Broker, topic: str) -> None:
    ensure_topic([broker.address], topic, partitions=1)
    first = [b"first %d" % i for i in range(3)]
    produce(broker, topic, [(0, value) for value in first])
    patient = source(broker, topic, batch_size=100, batch_wait=2.0).build_part(
        "in", f"{topic}/0", None
    )
    later = threading.Timer(0.5, produce, (broker, topic, [(0, b"later")]))
    later.start()
    batch: list[RawRecord] = []
    while not batch:  # the first calls may find nothing fetched yet
        wait_awake(patient)
        batch = patient.next_batch()
    later.join()
    patient.close()
    # Not full, so the batch waited and took in the record that came half a second later.
    assert [r.payload for r in batch] == [*first, b"later"]
    eager = source(broker, topic, batch_size=100, batch_wait=0).build_part("in", f"{topic}/0", None)
    started = time.monotonic()
    assert [r.payload for r in drain(eager, 4)] == [*first, b"later"]
    assert time.monotonic() - started < 2.0  # without a budget, nothing waits to fill
    eager.close()


def test_exit_at_end_stops_at_the_end_found_at_start(broker: Broker, topic: str) -> None:
    if broker.kind == TANSU:
        pytest.skip(TANSU_END_OFFSETS)
    ensure_topic([broker.address], topic, partitions=1)
    produce(broker, topic, [(0, b"old %d" % i) for i in range(10)])
    kafka = source(broker, topic, exit_at_end=True, batch_size=4)
    part = kafka.build_part("in", f"{topic}/0", None)
    produce(broker, topic, [(0, b"new %d" % i) for i in range(5)])
    got = read_to_end(part)
    assert [r.payload for r in got] == [b"old %d" % i for i in range(10)]
    assert part.snapshot() == 10
    part.close()


def test_latest_skips_what_was_there(broker: Broker, topic: str) -> None:
    if broker.kind == TANSU:
        pytest.skip(TANSU_END_OFFSETS)
    ensure_topic([broker.address], topic, partitions=1)
    produce(broker, topic, [(0, b"old %d" % i) for i in range(10)])
    part = source(broker, topic, starting_offset="latest").build_part("in", f"{topic}/0", None)
    assert part.snapshot() == 10  # resolved at once: a snapshot now must not skip more
    produce(broker, topic, [(0, b"new %d" % i) for i in range(3)])
    got = drain(part, 3)
    assert [r.payload for r in got] == [b"new %d" % i for i in range(3)]
    assert [r.position for r in got] == ["10", "11", "12"]
    part.close()


def test_offset_out_of_range_goes_on_from_the_earliest(broker: Broker, topic: str) -> None:
    if broker.kind == TANSU:
        pytest.skip(TANSU_NO_OUT_OF_RANGE)
    ensure_topic([broker.address], topic, partitions=1)
    produce(broker, topic, [(0, b"%d" % i) for i in range(5)])
    metrics = KafkaMetrics()
    # A snapshot beyond the log: the broker lost data, or retention outran the job.
    part = source(broker, topic, metrics=metrics).build_part("in", f"{topic}/0", 100)
    assert [r.position for r in drain(part, 5)] == ["0", "1", "2", "3", "4"]
    assert sample(metrics, "finsentry_kafka_errors_total", kind="offset_out_of_range") == 1
    part.close()


def test_missing_topic_fails_the_start(broker: Broker) -> None:
    with pytest.raises(TopicNotFound, match="no-such-topic"):
        source(broker, "no-such-topic").list_parts()


def test_unreachable_broker_fails_fast_naming_it() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=address):
        KafkaSource([address], ["news"], connect_timeout=1.5).list_parts()
    with pytest.raises(KafkaUnavailable, match=address):
        ensure_topic([address], "news", partitions=1, connect_timeout=1.5)
    with pytest.raises(KafkaUnavailable, match=address):
        KafkaSink([address], "news", value=bytes, connect_timeout=1.5).build("out", 0, 1)
    assert time.monotonic() - started < 10


def test_client_options_are_checked() -> None:
    tls = {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "ssl_cafile": "ca.pem"}
    assert KafkaSource(["k:9092"], ["news"], client_options=tls).options == tls
    with pytest.raises(ValueError, match="sasl_pasword"):
        KafkaSource(["k:9092"], ["news"], client_options={"sasl_pasword": "x"})
    with pytest.raises(ValueError, match="group_id"):  # the source owns its consumer settings
        KafkaSink(["k:9092"], "out", value=bytes, client_options={"group_id": "g"})


def test_survives_losing_the_broker(own_broker: Broker, topic: str) -> None:
    broker = own_broker
    ensure_topic([broker.address], topic, partitions=1)
    produce(broker, topic, [(0, b"before %d" % i) for i in range(10)])
    metrics = KafkaMetrics()
    part = source(broker, topic, metrics=metrics).build_part("in", f"{topic}/0", None)
    assert len(drain(part, 10)) == 10
    broker.stop()
    deadline = time.monotonic() + 6
    while sample(metrics, "finsentry_kafka_connected") == 1:
        assert time.monotonic() < deadline, "the partition did not notice the broker was gone"
        wait_awake(part)
        assert records_of(part.next_batch()) == []
    assert sample(metrics, "finsentry_kafka_errors_total", kind="unavailable") >= 1
    assert part.next_awake() > datetime.now(UTC)  # backing off, not spinning
    broker.start()
    if not broker.keeps_data:  # Tansu restarts empty: only "no crash" can be asked
        for _ in range(5):
            wait_awake(part)
            part.next_batch()
        part.close()
        return
    produce(broker, topic, [(0, b"after %d" % i) for i in range(5)])
    got = drain(part, 5, timeout=40)
    assert [r.position for r in got] == [str(i) for i in range(10, 15)]
    assert sample(metrics, "finsentry_kafka_connected") == 1
    part.close()


def test_sink_writes_keys_values_and_headers(broker: Broker, topic: str) -> None:
    ensure_topic([broker.address], topic, partitions=2)
    sink = KafkaSink(
        [broker.address],
        topic,
        value=lambda n: b"v%d" % n,
        key=lambda n: f"k{n}",
        headers=lambda n: {"reason": "odd" if n % 2 else "even", "raw": b"\x00"},
    )
    partition = sink.build("out", 0, 1)
    partition.write_batch(list(range(5)))
    partition.write_batch([5, 6])
    partition.close()
    got = sorted(consume(broker, topic, 7), key=lambda r: r.value)
    assert [(r.key, r.value) for r in got] == [(b"k%d" % n, b"v%d" % n) for n in range(7)]
    assert got[3].headers == [("reason", b"odd"), ("raw", b"\x00")]


def test_alert_and_dead_letter_sinks(broker: Broker, topic: str) -> None:
    alert = AlertEvent(
        "firing",
        {"alertname": "NegativeSurge", "topic": "energy_oil", "severity": "warning"},
        {},
        T0,
        NO_END,
        "fp-1",
        window("energy_oil", 40, 30, 0),
        0.2,
        4.5,
    )
    letter = DeadLetter("invalid_json", "expected value", "{oops", "kafka:news/0", "7")
    alerts, letters = f"{topic}-alerts", f"{topic}-dead"
    for name, sink, item in ((alerts, alert_sink, alert), (letters, dead_letter_sink, letter)):
        ensure_topic([broker.address], name, partitions=1)
        partition = sink([broker.address], name).build("out", 0, 1)
        partition.write_batch([item])
        partition.close()
    [record] = consume(broker, alerts, 1)
    assert (record.key, record.value) == (b"fp-1", to_json(alert))
    [record] = consume(broker, letters, 1)
    assert record.value == to_json(letter)
    assert record.headers == [("reason", b"invalid_json")]


def test_dead_letter_sink_writes_what_the_topic_refuses_to_a_file(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    class Small(DeadLetterSink):
        """A producer whose max_request_size a modest letter exceeds: the real error."""

        def producer(self, idempotent: bool = True) -> KafkaProducer:
            options = {**self.options, "max_request_size": 2048}
            return make_producer(self.brokers, options, self.connect_timeout, idempotent)

    ensure_topic([broker.address], topic, partitions=1)
    metrics = KafkaMetrics()
    fallback = tmp_path / "fallback.jsonl"
    big = dead_letter("not_utf8", "bad bytes", b"\xff" * 5000, "kafka:news/0", "1")
    small = DeadLetter("invalid_json", "expected value", "{oops", "kafka:news/0", "2")
    sink = Small([broker.address], topic, fallback_path=fallback, metrics=metrics, backoff=0.01)
    partition = sink.build("out", 0, 1)
    partition.write_batch([big, small])  # does not raise
    partition.close()
    [record] = consume(broker, topic, 1)
    assert record.value == to_json(small)
    [line] = fallback.read_bytes().splitlines()
    assert b"MessageSizeTooLargeError" in line and to_json(big) in line
    labels = {"error": "too_large", "outcome": "fallback"}
    assert (
        metrics.registry.get_sample_value("finsentry_dead_letters_undeliverable_total", labels) == 1
    )


class _RefusingProducer:
    """Stands in for a broker that will not hand out producer ids."""

    def __init__(self, idempotent: bool) -> None:
        self.config = {"enable_idempotence": idempotent}
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list) -> FakeFuture:
        self.sent.append(value)
        refused = self.config["enable_idempotence"]
        return FakeFuture(ClusterAuthorizationFailedError() if refused else None)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_sink_falls_back_when_the_broker_refuses_idempotence() -> None:
    made: list[_RefusingProducer] = []

    class Sink(KafkaSink[int]):
        def producer(self, idempotent: bool = True) -> _RefusingProducer:  # type: ignore[override]
            made.append(_RefusingProducer(idempotent))
            return made[-1]

    partition = Sink(["k:9092"], "out", value=lambda n: b"%d" % n).build("out", 0, 1)
    assert isinstance(partition, KafkaSinkPartition)
    partition.write_batch([1, 2])
    partition.write_batch([3])
    assert [p.config["enable_idempotence"] for p in made] == [True, False]
    assert made[1].sent == [b"1", b"2", b"3"]


def test_replay_publishes_every_line_spread_over_partitions(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    lines = [b'{"text": "Oil slumps %d"}' % i for i in range(27)]
    lines += [b"not json", b'{"text": ', b"\xff\xfe bytes"]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:15]) + b"\n\n" + b"\r\n".join(lines[15:]) + b"\n")
    assert replay(path, [broker.address], topic, partitions=3) == 30
    got = consume(broker, topic, 30)
    assert sorted(r.value for r in got) == sorted(lines)
    assert Counter(r.partition for r in got) == {0: 10, 1: 10, 2: 10}


def test_replay_keeps_to_the_rate(broker: Broker, topic: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(b'{"text": "%d"}\n' % i for i in range(100)))
    started = time.monotonic()
    assert replay(path, [broker.address], topic, rate=100, progress=False) == 100
    achieved = 100 / (time.monotonic() - started)
    assert 30 < achieved < 130, f"{achieved:.0f} records/s at rate 100"


def test_flow_reads_the_topic_to_its_end(broker: Broker, topic: str) -> None:
    if broker.kind == TANSU:
        pytest.skip(TANSU_END_OFFSETS)
    ensure_topic([broker.address], topic, partitions=2)
    sent = [(i % 2, b"%d" % i) for i in range(25)]
    produce(broker, topic, sent)
    flow = Dataflow("kafka_test")
    records = op.input("in", flow, source(broker, topic, exit_at_end=True, batch_size=4))
    out: list[RawRecord | PartitionProgress] = []
    op.output("out", records, TestingSink(out))
    run_main(flow)
    assert sorted(r.payload for r in records_of(out)) == sorted(value for _, value in sent)
    ended = {p.origin for p in out if isinstance(p, PartitionProgress) and p.ended}
    assert ended == {f"kafka:{topic}/0", f"kafka:{topic}/1"}
