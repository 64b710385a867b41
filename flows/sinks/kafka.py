"""Write items to a Kafka topic: acks from all replicas, idempotent where possible.

Each `write_batch` ends with a flush and fails loudly if a record was not delivered,
so Bytewax only advances past items the broker has acknowledged (correctness over
latency). Idempotence stops a producer's own retries from writing duplicates; a broker
that refuses it gets a plain `acks="all"` producer instead.

A job resumed from a snapshot emits again what it emitted after that snapshot. For
alerts that matters, so the alert sink keeps the ids it sent in a `SentLog` and
skips them. It sends those one at a time, each acknowledged and then recorded before
the next goes: a crash between the broker's ack and the record repeats that one
event on resume, never a batch.

Dead letters are the exception to failing loudly: a letter the topic will not take
would stop the job again on every restart, so the dead-letter sink retries it and then
appends it to a local file instead (`DeadLetterSink`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConfigurationError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)
from kafka.producer.future import FutureRecordMetadata

from flows.config import check_client_options
from flows.private import private_file
from flows.sources.kafka import KafkaMetrics, unavailable_as
from processors.envelope.message import (
    MAX_DETAIL_BYTES,
    AlertEvent,
    DeadLetter,
    Message,
    cut_utf8,
    to_json,
)

log = logging.getLogger(__name__)

X = TypeVar("X")
Key = bytes | str | None
Headers = Mapping[str, bytes | str]

# What a broker answers when it will not give this client a producer id.
_IDEMPOTENCE_REFUSED = (ClusterAuthorizationFailedError, UnsupportedVersionError)


class KafkaDeliveryError(RuntimeError):
    """Records the broker did not acknowledge; raised so the job does not move past them."""


def make_producer(
    brokers: list[str],
    options: Mapping[str, Any],
    connect_timeout: float,
    idempotent: bool = True,
) -> KafkaProducer:
    """A producer with acks from all replicas; idempotent unless the broker is too old."""
    settings = {
        "bootstrap_servers": brokers,
        "acks": "all",
        "bootstrap_timeout_ms": int(connect_timeout * 1000),
        **options,
    }
    with unavailable_as(brokers, connect_timeout):
        if idempotent:
            try:
                return KafkaProducer(enable_idempotence=True, **settings)
            except KafkaConfigurationError as exc:  # brokers before 0.11
                log.warning("Kafka producer without idempotence: %s", exc)
        return KafkaProducer(enable_idempotence=False, **settings)


def ensure_topic(
    brokers: list[str],
    topic: str,
    partitions: int,
    replication: int = 1,
    client_options: Mapping[str, Any] | None = None,
    connect_timeout: float = 5.0,
) -> bool:
    """Create `topic` unless it exists (its partitions are then left as they are).

    Returns whether it was created.
    """
    options = check_client_options(client_options)
    with unavailable_as(brokers, connect_timeout):
        admin = KafkaAdminClient(
            bootstrap_servers=brokers, bootstrap_timeout_ms=int(connect_timeout * 1000), **options
        )
    try:
        admin.create_topics([NewTopic(topic, partitions, replication)])
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
    return True


class SentLog:
    """Ids of the items a sink has delivered, one SQLite table in the state directory
    (a `private_file`, like the webhook outbox beside it).

    An id is recorded after the broker acknowledged the record, so a crash between the
    two sends that one record again on resume (duplicates over losses).
    """

    FILE = "kafka-sent.sqlite3"

    def __init__(self, state_dir: Path, sink: str) -> None:
        private_file(state_dir / self.FILE)
        self.sink = sink
        self._db = sqlite3.connect(state_dir / self.FILE, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")  # workers and processes share the file
        self._db.execute("PRAGMA synchronous=FULL")  # a record must outlive a lost node
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sent (sink TEXT NOT NULL, event_id TEXT NOT NULL,"
            " PRIMARY KEY (sink, event_id))"
        )

    def sent(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` were delivered before."""
        wanted = list(ids)
        marks = ", ".join("?" * len(wanted))
        found = self._db.execute(
            f"SELECT event_id FROM sent WHERE sink = ? AND event_id IN ({marks})",
            (self.sink, *wanted),
        )
        return {row[0] for row in found}

    def add(self, event_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO sent (sink, event_id) VALUES (?, ?)", (self.sink, event_id)
        )

    def close(self) -> None:
        self._db.close()


class KafkaSink(DynamicSink[X], Generic[X]):
    """Produce each item as one record: `value(item)`, and optionally key and headers.

    Every worker gets its own producer. A batch with undelivered records raises
    `KafkaDeliveryError` and counts in `finsentry_kafka_errors_total{kind="produce"}`.
    With `once` (an item's id) and a `state_dir`, an item whose id was sent before is
    skipped, across restarts; such items are sent and recorded one at a time.
    """

    def __init__(
        self,
        brokers: list[str],
        topic: str,
        *,
        value: Callable[[X], bytes],
        key: Callable[[X], Key] | None = None,
        headers: Callable[[X], Headers] | None = None,
        once: Callable[[X], str] | None = None,
        state_dir: Path | None = None,
        client_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 5.0,
        metrics: KafkaMetrics | None = None,
    ) -> None:
        if (once is None) != (state_dir is None):
            raise ValueError("`once` and `state_dir` go together: ids are kept in the state dir")
        self.brokers = list(brokers)
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        self.once = once
        self.state_dir = state_dir
        self.options = check_client_options(client_options)
        self.connect_timeout = connect_timeout
        self.metrics = metrics or KafkaMetrics()

    def producer(self, idempotent: bool = True) -> KafkaProducer:
        return make_producer(self.brokers, self.options, self.connect_timeout, idempotent)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> KafkaSinkPartition[X]:
        return KafkaSinkPartition(self)


class KafkaSinkPartition(StatelessSinkPartition[X], Generic[X]):
    """One worker's producer; each batch is delivered in full or raises."""

    def __init__(self, sink: KafkaSink[X]) -> None:
        self._sink = sink
        self._client = f"sink:{sink.topic}"
        self._producer = sink.producer()
        self._log = SentLog(sink.state_dir, f"kafka:{sink.topic}") if sink.state_dir else None

    def write_batch(self, items: list[X]) -> None:
        once = self._sink.once
        if once is None or self._log is None:
            self._deliver(items)
            return
        ids = [once(item) for item in items]
        skip = self._log.sent(ids)
        for item, item_id in zip(items, ids, strict=True):
            if item_id not in skip:
                skip.add(item_id)
                # One at a time: a crash after the ack and before the record can
                # repeat only this one (alert events are few; the flush is cheap).
                self._deliver([item])
                self._log.add(item_id)

    def _deliver(self, items: list[X]) -> None:
        """Send `items`; what was not delivered goes to `_undelivered`."""
        failed = self._attempt(items)
        if failed:
            self._undelivered(items, failed)
            return
        self._sink.metrics.up(self._client)

    def _attempt(self, items: list[X]) -> list[tuple[X, Exception]]:
        """Send `items`, falling back to a non-idempotent producer if the broker wants."""
        failed = self._send(items)
        if failed and self._producer.config["enable_idempotence"]:
            refused = [item for item, exc in failed if isinstance(exc, _IDEMPOTENCE_REFUSED)]
            if len(refused) == len(failed):
                log.warning(
                    "%s: broker refused idempotence (%s); producing without it",
                    self._client,
                    failed[0][1],
                )
                self._producer.close()
                self._producer = self._sink.producer(idempotent=False)
                failed = self._send(refused)
        return failed

    def _undelivered(self, items: list[X], failed: list[tuple[X, Exception]]) -> None:
        """Raise, so that Bytewax does not move past records the broker did not take."""
        self._sink.metrics.down(self._client, "produce")
        raise KafkaDeliveryError(
            f"{len(failed)} of {len(items)} records not delivered to {self._sink.topic!r}: "
            f"{failed[0][1]!r}"
        )

    def _send(self, items: list[X]) -> list[tuple[X, Exception]]:
        """Send and flush; returns the items that failed, with why."""
        sink = self._sink
        futures: list[tuple[X, FutureRecordMetadata]] = []
        failed: list[tuple[X, Exception]] = []
        for item in items:
            key = sink.key(item) if sink.key else None
            headers = sink.headers(item) if sink.headers else {}
            try:  # e.g. MessageSizeTooLargeError, raised by send itself
                future = self._producer.send(
                    sink.topic,
                    value=sink.value(item),
                    key=key.encode() if isinstance(key, str) else key,
                    headers=[
                        (k, v.encode() if isinstance(v, str) else v) for k, v in headers.items()
                    ],
                )
            except KafkaError as exc:
                failed.append((item, exc))
                continue
            futures.append((item, future))
        self._producer.flush()
        for item, future in futures:
            try:
                future.get()
            except KafkaError as exc:
                failed.append((item, exc))
        return failed

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
        if self._log is not None:
            self._log.close()


def scored_sink(brokers: list[str], topic: str, **options: Any) -> KafkaSink[Message]:
    """Scored messages, keyed by message id so repeats of one item share a partition."""
    return KafkaSink(brokers, topic, value=to_json, key=lambda m: m.header.id, **options)


def alert_sink(
    brokers: list[str], topic: str, state_dir: Path | None = None, **options: Any
) -> KafkaSink[AlertEvent]:
    """Alert events, keyed by fingerprint so an alert's firing and resolved stay in order.

    With a `state_dir`, each event (`AlertEvent.event_id`) goes out once, across restarts.
    """
    once = _event_id if state_dir is not None else None
    return KafkaSink(
        brokers,
        topic,
        value=to_json,
        key=lambda a: a.fingerprint,
        once=once,
        state_dir=state_dir,
        **options,
    )


def _event_id(alert: AlertEvent) -> str:
    return alert.event_id


FALLBACK_FILE = "dead-letters-undeliverable.jsonl"


class DeadLetterSink(KafkaSink[DeadLetter]):
    """Dead letters, which must never stop the job: one the topic will not take (too
    large, broker away) is retried `retries` times, `backoff` seconds doubling, when the
    error is retriable; then it is appended to `fallback_path` as one JSON line,
    `{"topic", "error", "at", "letter"}`, and counted in
    `finsentry_dead_letters_undeliverable_total`.
    """

    def __init__(
        self,
        brokers: list[str],
        topic: str,
        *,
        fallback_path: Path | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        **options: Any,
    ) -> None:
        super().__init__(
            brokers, topic, value=to_json, headers=lambda d: {"reason": d.reason}, **options
        )
        self.fallback_path = fallback_path or Path(FALLBACK_FILE)
        self.retries = retries
        self.backoff = backoff

    def build(self, step_id: str, worker_index: int, worker_count: int) -> DeadLetterSinkPartition:
        return DeadLetterSinkPartition(self)


class DeadLetterSinkPartition(KafkaSinkPartition[DeadLetter]):
    """One worker's dead-letter producer: retries, then the local file, never a raise."""

    _sink: DeadLetterSink

    def _send(self, items: list[DeadLetter]) -> list[tuple[DeadLetter, Exception]]:
        try:
            return super()._send(items)
        except Exception as exc:  # at flush, or unforeseen: none is known to be delivered
            return [(item, exc) for item in items]

    def _attempt(self, items: list[DeadLetter]) -> list[tuple[DeadLetter, Exception]]:
        try:  # e.g. no broker for the producer without idempotence
            return super()._attempt(items)
        except Exception as exc:
            return [(item, exc) for item in items]

    def _undelivered(
        self, items: list[DeadLetter], failed: list[tuple[DeadLetter, Exception]]
    ) -> None:
        sink = self._sink
        for attempt in range(sink.retries):
            again = [item for item, exc in failed if _retriable(exc)]
            if not again:
                break
            time.sleep(sink.backoff * 2**attempt)
            failed = [(i, e) for i, e in failed if not _retriable(e)] + self._attempt(again)
        if not failed:
            sink.metrics.up(self._client)
            return
        if all(_error_kind(exc) == "too_large" for _, exc in failed):
            sink.metrics.up(self._client)  # the broker is there; the records were the problem
        else:
            sink.metrics.down(self._client, "produce")
        self._fall_back(failed)

    def _fall_back(self, failed: list[tuple[DeadLetter, Exception]]) -> None:
        sink = self._sink
        at = datetime.now(UTC)
        lines = b"".join(
            msgspec.json.encode(
                {
                    "topic": sink.topic,
                    "error": cut_utf8(repr(exc), MAX_DETAIL_BYTES),
                    "at": at,
                    "letter": letter,
                }
            )
            + b"\n"
            for letter, exc in failed
        )
        try:
            sink.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with sink.fallback_path.open("ab") as file:  # one write: appends do not interleave
                file.write(lines)
                file.flush()
                os.fsync(file.fileno())
            outcome = "fallback"
            log.error(
                "%s: %d dead letters not delivered (%r); appended to %s",
                self._client,
                len(failed),
                failed[0][1],
                sink.fallback_path,
            )
        except OSError:
            outcome = "lost"
            log.exception(
                "%s: %d dead letters not delivered (%r) and not written to %s; dropped",
                self._client,
                len(failed),
                failed[0][1],
                sink.fallback_path,
            )
        for _, exc in failed:
            sink.metrics.undeliverable.labels(_error_kind(exc), outcome).inc()


def _retriable(exc: Exception) -> bool:
    """Whether sending again may succeed: not for a record that is too large, say."""
    return not isinstance(exc, KafkaError) or bool(exc.retriable)


def _error_kind(exc: Exception) -> str:
    return (
        "too_large"
        if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)
        else "produce"
    )


def dead_letter_sink(
    brokers: list[str], topic: str, fallback_path: Path | None = None, **options: Any
) -> DeadLetterSink:
    """Dead letters, with their reason as a header so consumers can filter without parsing;
    those the topic will not take go to `fallback_path` (see `DeadLetterSink`)."""
    return DeadLetterSink(brokers, topic, fallback_path=fallback_path, **options)
