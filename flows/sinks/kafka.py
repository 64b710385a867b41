"""Write items to a Kafka topic: acks from all replicas, idempotent where possible.

Each `write_batch` ends with a flush and fails loudly if a record was not delivered,
so Bytewax only advances past items the broker has acknowledged (correctness over
latency). Idempotence stops a producer's own retries from writing duplicates; a broker
that refuses it gets a plain `acks="all"` producer instead.

A job resumed from a snapshot emits again what it emitted after that snapshot. With a
state directory a sink skips the ids it sent before (`SentLog`); only the records in
flight at a crash go again, byte for byte, under the same key. Alerts go one at a time
(a crash repeats at most the one event in flight), scored messages and dead letters a
batch at a time. A consumer that drops a record whose id it has seen (`scored_id`,
`letter_id`, `AlertEvent.event_id`) sees exactly the records of an uninterrupted run;
docs/kafka.md says how.

Dead letters are the exception to failing loudly: a letter the topic will not take
would stop the job again on every restart, so the dead-letter sink retries it and then
appends it to a local file instead (`DeadLetterSink`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
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

# How long a sent id is kept: far longer than a job stays stopped before it resumes
# (kafka.sent_retention_seconds).
SENT_RETENTION = timedelta(days=7)

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
    """Ids of the records a sink has produced, in SQLite in the state directory (a
    `private_file`, like the webhook outbox beside it).

    Before a send (`intend`) each record's id goes into `sent` and its value into
    `pending`; after the broker's ack (`acknowledged`) the value is deleted. An id with
    a pending value is one whose delivery is not known (a crash came between the send
    and the ack's record), so it is sent again on resume with that value, not one
    computed anew: duplicates over losses, and a duplicate identical to the first. The
    values live apart so that `sent` keeps only ids (a record's value is kilobytes).
    Ids older than `retention` are deleted on open, then every `PRUNE_EVERY` seconds.
    """

    FILE = "kafka-sent.sqlite3"
    PRUNE_EVERY = 3600.0
    _CHUNK = 500  # ids per query, well under SQLite's limit on parameters

    def __init__(
        self,
        state_dir: Path,
        sink: str,
        retention: timedelta = SENT_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        private_file(state_dir / self.FILE)
        self.sink = sink
        self.retention = retention
        self.clock = clock
        self._db = sqlite3.connect(state_dir / self.FILE, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")  # workers and processes share the file
        self._db.execute("PRAGMA synchronous=FULL")  # a record must outlive a lost node
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sent (sink TEXT NOT NULL, event_id TEXT NOT NULL,"
                " sent_at REAL NOT NULL, PRIMARY KEY (sink, event_id)) WITHOUT ROWID"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(sent)")}
            if "sent_at" not in columns:  # a file from before pruning: its ids age from now
                self._db.execute(
                    f"ALTER TABLE sent ADD COLUMN sent_at REAL NOT NULL DEFAULT {self.clock()!r}"
                )
            self._db.execute("CREATE INDEX IF NOT EXISTS sent_age ON sent (sink, sent_at)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pending (sink TEXT NOT NULL, event_id TEXT NOT NULL,"
                " value BLOB NOT NULL, PRIMARY KEY (sink, event_id))"
            )
        self.prune()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One fsync for many rows; IMMEDIATE, so that concurrent writers queue at once."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def known(self, ids: Iterable[str]) -> dict[str, bytes | None]:
        """Which of `ids` the log holds: None for one acknowledged, else the value it was
        sent with, its delivery not known."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, bytes | None] = {}
        for start in range(0, len(wanted), self._CHUNK):
            chunk = wanted[start : start + self._CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT event_id, value FROM sent LEFT JOIN pending USING (sink, event_id)"
                f" WHERE sink = ? AND event_id IN ({marks})",
                (self.sink, *chunk),
            )
            found.update(rows)
        return found

    def intend(self, records: Iterable[tuple[str, bytes]]) -> None:
        """Before sending: each (id, value), unless the id is there already."""
        rows = [(self.sink, event_id, value) for event_id, value in records]
        now = self.clock()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO sent (sink, event_id, sent_at) VALUES (?, ?, ?)",
                [(sink, event_id, now) for sink, event_id, _ in rows],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO pending (sink, event_id, value) VALUES (?, ?, ?)", rows
            )

    def acknowledged(self, ids: Iterable[str]) -> None:
        """After the broker's ack: these ids are delivered, their values no longer needed."""
        with self._transaction():
            self._db.executemany(
                "DELETE FROM pending WHERE sink = ? AND event_id = ?",
                [(self.sink, event_id) for event_id in ids],
            )
        if self.clock() >= self._next_prune:
            self.prune()

    def prune(self) -> int:
        """Delete the ids older than `retention`, with any value pending; returns how many."""
        now = self.clock()
        self._next_prune = now + self.PRUNE_EVERY
        cutoff = now - self.retention.total_seconds()
        with self._transaction():
            gone = self._db.execute(
                "DELETE FROM sent WHERE sink = ? AND sent_at < ?", (self.sink, cutoff)
            ).rowcount
            self._db.execute(
                "DELETE FROM pending WHERE sink = ? AND NOT EXISTS (SELECT 1 FROM sent"
                " WHERE sent.sink = pending.sink AND sent.event_id = pending.event_id)",
                (self.sink,),
            )
        if gone:
            log.info("%s: %d sent ids older than %s deleted", self.sink, gone, self.retention)
        return gone

    def close(self) -> None:
        self._db.close()


class KafkaSink(DynamicSink[X], Generic[X]):
    """Produce each item as one record: `value(item)`, and optionally key and headers.

    Every worker gets its own producer. A batch with undelivered records raises
    `KafkaDeliveryError` and counts in `finsentry_kafka_errors_total{kind="produce"}`.
    With a `state_dir`, an item whose id (`once`) was sent before is skipped, across
    restarts (see `SentLog`); `one_by_one` sends and records such items one at a time,
    else a batch at a time. Without one, every item is sent.
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
        one_by_one: bool = False,
        retention: timedelta = SENT_RETENTION,
        client_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 5.0,
        metrics: KafkaMetrics | None = None,
    ) -> None:
        if state_dir is not None and once is None:
            raise ValueError("a `state_dir` keeps the ids of what was sent: `once` gives them")
        self.brokers = list(brokers)
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        self.once = once
        self.state_dir = state_dir
        self.one_by_one = one_by_one
        self.retention = retention
        self.options = check_client_options(client_options)
        self.connect_timeout = connect_timeout
        self.metrics = metrics or KafkaMetrics()

    def producer(self, idempotent: bool = True) -> KafkaProducer:
        return make_producer(self.brokers, self.options, self.connect_timeout, idempotent)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> KafkaSinkPartition[X]:
        return KafkaSinkPartition(self)


# An item and the value it is sent with; records that failed, with why.
Record = tuple[X, bytes]
Failed = list[tuple[Record[X], Exception]]


class KafkaSinkPartition(StatelessSinkPartition[X], Generic[X]):
    """One worker's producer; each batch is delivered in full or raises."""

    def __init__(self, sink: KafkaSink[X]) -> None:
        self._sink = sink
        self._client = f"sink:{sink.topic}"
        self._producer = sink.producer()
        self._log = (
            SentLog(sink.state_dir, f"kafka:{sink.topic}", sink.retention)
            if sink.state_dir
            else None
        )

    def write_batch(self, items: list[X]) -> None:
        sink, sent = self._sink, self._log
        if sink.once is None or sent is None:
            self._deliver_all(items)
            return
        ids = [sink.once(item) for item in items]
        known = sent.known(ids)
        todo: list[tuple[str, Record[X]]] = []
        for item, item_id in zip(items, ids, strict=True):
            if item_id in known and known[item_id] is None:
                continue  # acknowledged before, or earlier in this batch
            first = known.get(item_id)  # logged, not acknowledged: the value first sent
            todo.append((item_id, (item, sink.value(item) if first is None else first)))
            known[item_id] = None
        # One at a time, a crash after the ack and before the record repeats only the
        # one in flight (alert events are few; the flush is cheap); else the batch.
        groups = [[one] for one in todo] if sink.one_by_one else [todo]
        for group in filter(None, groups):
            sent.intend((item_id, value) for item_id, (_, value) in group)
            self._deliver([record for _, record in group])
            sent.acknowledged(item_id for item_id, _ in group)

    def _deliver_all(self, items: list[X]) -> None:
        """Send every item, whatever was sent before."""
        self._deliver([(item, self._sink.value(item)) for item in items])

    def _deliver(self, records: list[Record[X]]) -> None:
        """Send `records`; what was not delivered goes to `_undelivered`."""
        failed = self._attempt(records)
        if failed:
            self._undelivered(records, failed)
            return
        self._sink.metrics.up(self._client)

    def _attempt(self, records: list[Record[X]]) -> Failed[X]:
        """Send `records`, falling back to a non-idempotent producer if the broker wants."""
        failed = self._send(records)
        if failed and self._producer.config["enable_idempotence"]:
            refused = [record for record, exc in failed if isinstance(exc, _IDEMPOTENCE_REFUSED)]
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

    def _undelivered(self, records: list[Record[X]], failed: Failed[X]) -> None:
        """Raise, so that Bytewax does not move past records the broker did not take."""
        self._sink.metrics.down(self._client, "produce")
        raise KafkaDeliveryError(
            f"{len(failed)} of {len(records)} records not delivered to {self._sink.topic!r}: "
            f"{failed[0][1]!r}"
        )

    def _send(self, records: list[Record[X]]) -> Failed[X]:
        """Send and flush; returns the records that failed, with why."""
        sink = self._sink
        futures: list[tuple[Record[X], FutureRecordMetadata]] = []
        failed: Failed[X] = []
        for record in records:
            item, value = record
            key = sink.key(item) if sink.key else None
            headers = sink.headers(item) if sink.headers else {}
            try:  # e.g. MessageSizeTooLargeError, raised by send itself
                future = self._producer.send(
                    sink.topic,
                    value=value,
                    key=key.encode() if isinstance(key, str) else key,
                    headers=[
                        (k, v.encode() if isinstance(v, str) else v) for k, v in headers.items()
                    ],
                )
            except KafkaError as exc:
                failed.append((record, exc))
                continue
            futures.append((record, future))
        self._producer.flush()
        for record, future in futures:
            try:
                future.get()
            except KafkaError as exc:
                failed.append((record, exc))
        return failed

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
        if self._log is not None:
            self._log.close()


def scored_sink(
    brokers: list[str], topic: str, state_dir: Path | None = None, **options: Any
) -> KafkaSink[Message]:
    """Scored messages, keyed by message id so repeats of one item share a partition.

    With a `state_dir`, each message (`scored_id`) goes out once, across restarts.
    """
    return KafkaSink(
        brokers,
        topic,
        value=to_json,
        key=lambda m: m.header.id,
        once=scored_id,
        state_dir=state_dir,
        **options,
    )


def scored_id(message: Message) -> str:
    """Message id and event time: what the flow's de-duplication keeps apart (the same id
    is scored again once it comes back past the de-duplication horizon)."""
    return f"{message.header.id}@{message.header.published_at.isoformat()}"


def alert_sink(
    brokers: list[str], topic: str, state_dir: Path | None = None, **options: Any
) -> KafkaSink[AlertEvent]:
    """Alert events, keyed by fingerprint so an alert's firing and resolved stay in order.

    With a `state_dir`, each event (`AlertEvent.event_id`) goes out once, across
    restarts, one at a time.
    """
    return KafkaSink(
        brokers,
        topic,
        value=to_json,
        key=lambda a: a.fingerprint,
        once=_event_id,
        state_dir=state_dir,
        one_by_one=True,
        **options,
    )


def _event_id(alert: AlertEvent) -> str:
    return alert.event_id


def letter_id(letter: DeadLetter) -> str:
    """A dead letter's key: a digest of its source, position and reason, which a resumed
    job rejecting the same input again gives again (its time and, for a processor error,
    its payload may differ). Without a position, the payload's digest stands in."""
    where = letter.payload_sha256 if letter.position is None else f"@{letter.position}"
    origin = "\0".join((letter.source, where, letter.reason))
    return hashlib.sha256(origin.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


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
        state_dir: Path | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        **options: Any,
    ) -> None:
        super().__init__(
            brokers,
            topic,
            value=to_json,
            key=letter_id,
            headers=lambda d: {"reason": d.reason},
            once=letter_id,
            state_dir=state_dir,
            **options,
        )
        self.fallback_path = fallback_path or Path(FALLBACK_FILE)
        self.retries = retries
        self.backoff = backoff

    def build(self, step_id: str, worker_index: int, worker_count: int) -> DeadLetterSinkPartition:
        return DeadLetterSinkPartition(self)


class DeadLetterSinkPartition(KafkaSinkPartition[DeadLetter]):
    """One worker's dead-letter producer: retries, then the local file, never a raise."""

    _sink: DeadLetterSink

    def write_batch(self, items: list[DeadLetter]) -> None:
        try:
            super().write_batch(items)
        except sqlite3.Error:  # the state dir full or broken: not a reason to stop either
            # (if the ack's record failed, the batch goes again: a repeat, under its key)
            log.exception("%s: sent ids not read or recorded; sending without them", self._client)
            self._deliver_all(items)

    def _send(self, records: list[Record[DeadLetter]]) -> Failed[DeadLetter]:
        try:
            return super()._send(records)
        except Exception as exc:  # at flush, or unforeseen: none is known to be delivered
            return [(record, exc) for record in records]

    def _attempt(self, records: list[Record[DeadLetter]]) -> Failed[DeadLetter]:
        try:  # e.g. no broker for the producer without idempotence
            return super()._attempt(records)
        except Exception as exc:
            return [(record, exc) for record in records]

    def _undelivered(self, records: list[Record[DeadLetter]], failed: Failed[DeadLetter]) -> None:
        sink = self._sink
        for attempt in range(sink.retries):
            again = [record for record, exc in failed if _retriable(exc)]
            if not again:
                break
            time.sleep(sink.backoff * 2**attempt)
            failed = [(r, e) for r, e in failed if not _retriable(e)] + self._attempt(again)
        if not failed:
            sink.metrics.up(self._client)
            return
        if all(_error_kind(exc) == "too_large" for _, exc in failed):
            sink.metrics.up(self._client)  # the broker is there; the records were the problem
        else:
            sink.metrics.down(self._client, "produce")
        self._fall_back(failed)

    def _fall_back(self, failed: Failed[DeadLetter]) -> None:
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
            for (letter, _), exc in failed
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
    brokers: list[str],
    topic: str,
    fallback_path: Path | None = None,
    state_dir: Path | None = None,
    **options: Any,
) -> DeadLetterSink:
    """Dead letters, keyed by `letter_id`, with their reason as a header so consumers can
    filter without parsing; those the topic will not take go to `fallback_path` (see
    `DeadLetterSink`). With a `state_dir`, each goes out once, across restarts."""
    return DeadLetterSink(
        brokers, topic, fallback_path=fallback_path, state_dir=state_dir, **options
    )
