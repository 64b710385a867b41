"""The dead-letter Kafka sink never raises: what the topic will not take goes to a file."""

from __future__ import annotations

import json
from pathlib import Path

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from flows.sinks.kafka import DeadLetterSink, DeadLetterSinkPartition, dead_letter_sink
from flows.sources.kafka import KafkaMetrics
from processors.envelope.message import DeadLetter, dead_letter, to_json
from tests.kafka_fixtures import FakeFuture


class _Producer:
    """Raises `at_send` from send (as kafka-python does for a record over
    max_request_size), or fails the future with `at_get`, `times` times."""

    def __init__(self, at_send: Exception | None = None, at_get: Exception | None = None,
                 times: int = 10**9) -> None:  # fmt: skip
        self.config = {"enable_idempotence": False}
        self.at_send, self.at_get, self.times = at_send, at_get, times
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list) -> FakeFuture:
        if self.times > 0 and self.at_send is not None:
            self.times -= 1
            raise self.at_send
        if self.times > 0 and self.at_get is not None:
            self.times -= 1
            return FakeFuture(self.at_get)
        self.sent.append(value)
        return FakeFuture(None)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _partition(producer: _Producer, path: Path, metrics: KafkaMetrics) -> DeadLetterSinkPartition:
    class Sink(DeadLetterSink):
        def producer(self, idempotent: bool = True) -> _Producer:  # type: ignore[override]
            return producer

    sink = Sink(["k:9092"], "dead", fallback_path=path, metrics=metrics, backoff=0.001)
    return sink.build("out", 0, 1)


LETTER = dead_letter("not_utf8", "bad byte", b"\xff" * 100, "kafka:news/0", "7")


def _count(metrics: KafkaMetrics, error: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "finsentry_dead_letters_undeliverable_total", {"error": error, "outcome": outcome}
    )
    assert value is not None
    return value


def test_a_letter_too_large_to_send_goes_to_the_fallback_file(tmp_path: Path) -> None:
    metrics = KafkaMetrics()
    path = tmp_path / "state" / "fallback.jsonl"
    producer = _Producer(at_send=MessageSizeTooLargeError("too big"), times=1)
    partition = _partition(producer, path, metrics)
    other = dead_letter("invalid_json", "x", b"{", "kafka:news/0", "8")
    partition.write_batch([LETTER, other])  # does not raise
    partition.close()
    assert producer.sent == [to_json(other)]  # the rest of the batch is delivered
    [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["topic"] == "dead"
    assert "MessageSizeTooLargeError" in record["error"]
    assert record["letter"] == json.loads(to_json(LETTER))
    assert _count(metrics, "too_large", "fallback") == 1
    assert producer.times == 0  # not retried: it would be too large again


def test_a_retriable_error_is_retried_before_the_file(tmp_path: Path) -> None:
    metrics = KafkaMetrics()
    path = tmp_path / "fallback.jsonl"
    flaky = _Producer(at_get=KafkaTimeoutError("slow"), times=2)
    _partition(flaky, path, metrics).write_batch([LETTER])
    assert flaky.sent == [to_json(LETTER)] and not path.exists()
    down = _Producer(at_get=KafkaTimeoutError("slow"))
    _partition(down, path, metrics).write_batch([LETTER])
    assert len(path.read_text().splitlines()) == 1
    assert _count(metrics, "produce", "fallback") == 1
    assert metrics.registry.get_sample_value("finsentry_kafka_connected") == 0


def test_a_letter_is_counted_as_lost_when_the_file_cannot_be_written(tmp_path: Path) -> None:
    metrics = KafkaMetrics()
    blocker = tmp_path / "file"
    blocker.write_text("")
    producer = _Producer(at_send=MessageSizeTooLargeError("too big"))
    _partition(producer, blocker / "fallback.jsonl", metrics).write_batch([LETTER])
    assert _count(metrics, "too_large", "lost") == 1


def test_old_letters_without_digest_still_encode() -> None:
    letter = DeadLetter("invalid_json", "expected value", "{oops", "kafka:news/0", "7")
    assert (letter.payload_bytes, letter.payload_sha256) == (-1, "")
    assert isinstance(dead_letter_sink(["k:9092"], "dead"), DeadLetterSink)
