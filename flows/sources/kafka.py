"""Read Kafka topic-partitions as Bytewax partitions, with offsets in the snapshot.

Each Kafka partition is one Bytewax partition with its own kafka-python consumer
(`assign` + `seek`, no consumer group, no commits): the only record of progress is the
snapshot, so a resumed job re-reads exactly what the last snapshot had not covered.
Partitions are discovered from broker metadata in `list_parts`, so partitions added to
a topic are picked up on the next start.

A broker that cannot be reached at start fails the job at once (`KafkaUnavailable`);
one lost while running is retried with exponential backoff, never a crash.

While a partition is behind its broker (a backfill, or catching up after a restart),
each call returns a full batch, waiting briefly for a fetch in flight rather than
coming back short, so partitions read side by side stay in step. A partition that has
caught up (its position at the broker's high watermark) says so between polls, with
the clock less `source.max_delay_seconds` (`PartitionProgress`), and one that reached
its end with `exit_at_end` says that: the ordering point then need not wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bytewax.inputs import StatefulSourcePartition
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, OffsetOutOfRangeError
from prometheus_client import CollectorRegistry, Counter, Gauge

from flows.config import check_client_options
from flows.sources import PartitionedSource, RawRecord
from processors.stream.sequencer import PartitionProgress

log = logging.getLogger(__name__)

StartingOffset = Literal["earliest", "latest"]

ERROR_KINDS: tuple[str, ...] = ("unavailable", "offset_out_of_range", "fetch", "produce")
UNDELIVERABLE_ERRORS: tuple[str, ...] = ("too_large", "produce")
UNDELIVERABLE_OUTCOMES: tuple[str, ...] = ("fallback", "lost")

_BACKOFF_MIN = 0.5  # seconds before the first retry after losing the broker
_BACKOFF_MAX = 30.0
_IDLE_WAIT = 0.05  # between polls of an idle partition; bounds the added latency
# Between polls while a batch fills. Not one poll with a timeout: a broker that answers
# an empty fetch at once, not after `fetch_max_wait_ms` (noida-db does), makes that
# poll spin, taking the CPU the models need for the whole time budget.
_FILL_STEP = 0.02
_PROBE_EVERY = 2.0  # how often an idle partition checks that its broker still answers
_PROBE_TIMEOUT_MS = 1000  # short: a probe of a lost broker stalls the worker this long


class KafkaUnavailable(ConnectionError):
    """No broker answered at the configured addresses."""

    def __init__(self, brokers: list[str], timeout: float, cause: BaseException) -> None:
        where = ", ".join(brokers)
        super().__init__(f"no Kafka broker reachable at {where} within {timeout:g}s: {cause}")
        self.brokers = brokers


class TopicNotFound(LookupError):
    """A configured topic does not exist; a typo should fail the start, not read nothing."""


@contextmanager
def unavailable_as(brokers: list[str], timeout: float) -> Iterator[None]:
    """Turn kafka-python's connection failures into one `KafkaUnavailable` naming the brokers."""
    try:
        yield
    except KafkaError as exc:
        raise KafkaUnavailable(brokers, timeout, exc) from exc


class KafkaMetrics:
    """Error counts and connectivity of this process's Kafka clients, for Prometheus.

    Make one per job and hand it to the source and every Kafka sink; `connected` is 1
    only while no client is in a failed state.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.errors = Counter(
            "finsentry_kafka_errors_total",
            "Kafka client errors, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.undeliverable = Counter(
            "finsentry_dead_letters_undeliverable_total",
            "Dead letters the dead-letter topic would not take after retries, by the error "
            "(too_large, produce) and where they went instead (fallback: the local file; "
            "lost: that file could not be written either).",
            ["error", "outcome"],
            registry=self.registry,
        )
        for error in UNDELIVERABLE_ERRORS:
            for outcome in UNDELIVERABLE_OUTCOMES:
                self.undeliverable.labels(error, outcome)
        self.connected = Gauge(
            "finsentry_kafka_connected",
            "1 while every Kafka client of the job reaches its broker, else 0.",
            registry=self.registry,
        )
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def up(self, client: str) -> None:
        with self._lock:
            self._down.discard(client)
            self.connected.set(0 if self._down else 1)

    def down(self, client: str, kind: str) -> None:
        self.errors.labels(kind).inc()
        with self._lock:
            self._down.add(client)
            self.connected.set(0)


class KafkaSource(PartitionedSource[int]):
    """One Bytewax partition per Kafka topic-partition; the snapshot is the next offset.

    `starting_offset` applies only when there is no snapshot. With `exit_at_end`, each
    partition stops at the end offset found when it was built, so windows close and
    the job exits (a backfill). `client_options` passes SASL/SSL settings to kafka-python.
    A batch goes on when it has `batch_size` records or, once it has a first one, when
    `batch_wait` seconds have passed: big batches for the models, bounded latency.
    `max_delay`: the longest, in seconds, a record may take from its event time to the
    broker; a caught-up partition counts as that far behind the clock.
    """

    def __init__(
        self,
        brokers: list[str],
        topics: list[str],
        *,
        starting_offset: StartingOffset = "earliest",
        batch_size: int = 256,
        batch_wait: float = 0.1,
        exit_at_end: bool = False,
        client_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 5.0,
        metrics: KafkaMetrics | None = None,
        max_delay: float = 5.0,
    ) -> None:
        if starting_offset not in ("earliest", "latest"):
            raise ValueError(f"starting_offset must be 'earliest' or 'latest': {starting_offset!r}")
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if batch_wait < 0:
            raise ValueError("batch_wait must not be negative")
        if not brokers or not topics:
            raise ValueError("a Kafka source needs at least one broker and one topic")
        self.brokers = list(brokers)
        self.topics = list(topics)
        self.starting_offset = starting_offset
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.exit_at_end = exit_at_end
        self.options = check_client_options(client_options)
        self.connect_timeout = connect_timeout
        self.metrics = metrics or KafkaMetrics()
        self.max_delay = timedelta(seconds=max_delay)

    def consumer(self) -> KafkaConsumer:
        """A consumer with no group and no commits: offsets live in the snapshot."""
        timeout_ms = int(self.connect_timeout * 1000)
        with unavailable_as(self.brokers, self.connect_timeout):
            return KafkaConsumer(
                bootstrap_servers=self.brokers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",  # out of range is handled (and counted) here
                allow_auto_create_topics=False,
                bootstrap_timeout_ms=timeout_ms,
                max_poll_records=self.batch_size,
                **self.options,
            )

    def list_parts(self) -> list[str]:
        """Every partition of every topic, as "topic/partition", from broker metadata."""
        consumer = self.consumer()
        try:
            with unavailable_as(self.brokers, self.connect_timeout):
                found = {topic: consumer.partitions_for_topic(topic) for topic in self.topics}
        finally:
            consumer.close()
        missing = sorted(topic for topic, parts in found.items() if not parts)
        if missing:
            raise TopicNotFound(f"Kafka topics {missing} do not exist on {', '.join(self.brokers)}")
        return [f"{topic}/{p}" for topic, parts in found.items() for p in sorted(parts)]

    def origin(self, part: str) -> str:
        return f"kafka:{part}"

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> KafkaSourcePartition:
        topic, partition = for_part.rsplit("/", 1)
        return KafkaSourcePartition(self, TopicPartition(topic, int(partition)), resume_state)


class KafkaSourcePartition(StatefulSourcePartition[RawRecord | PartitionProgress, int]):
    """Reads one topic-partition; waits at most a batch's time budget, backs off while
    the broker is away; says when it has caught up, and when it has ended."""

    def __init__(self, source: KafkaSource, tp: TopicPartition, resume_state: int | None) -> None:
        self._tp = tp
        self._origin = source.origin(f"{tp.topic}/{tp.partition}")
        self._max_delay = source.max_delay
        self._said_end = False
        self._metrics = source.metrics
        self._batch_size = source.batch_size
        self._batch_wait = source.batch_wait
        timeout_ms = int(source.connect_timeout * 1000)
        self._consumer = source.consumer()
        with unavailable_as(source.brokers, source.connect_timeout):
            self._consumer.assign([tp])
            if resume_state is not None:
                self._next = resume_state
            elif source.starting_offset == "earliest":
                self._next = self._consumer.beginning_offsets([tp], timeout_ms)[tp]
            else:
                self._next = self._consumer.end_offsets([tp], timeout_ms)[tp]
            self._end: int | None = None
            if source.exit_at_end:
                self._end = self._consumer.end_offsets([tp], timeout_ms)[tp]
        self._consumer.seek(tp, self._next)
        self._metrics.up(self._origin)
        self._backoff = 0.0
        self._awake: datetime | None = None
        self._probe_at = time.monotonic() + _PROBE_EVERY

    def next_batch(self) -> list[RawRecord | PartitionProgress]:
        if self._end is not None and self._next >= self._end:
            if self._said_end:
                raise StopIteration
            self._said_end = True
            return [PartitionProgress(self._origin, ended=True)]
        try:
            records = self._fill()
        except OffsetOutOfRangeError:
            self._restart_from_earliest()
            return []
        except KafkaError:
            self._failed("fetch")
            return []
        if not records:
            self._idle()
            return self._caught_up()
        self._healthy()
        self._awake = None
        if self._end is not None:
            records = [r for r in records if r.offset < self._end]
            self._next = max(self._next, records[-1].offset + 1) if records else self._end
        else:
            self._next = records[-1].offset + 1
        origin = self._origin
        # A tombstone (value None) is an empty payload; the parser dead-letters it.
        return [RawRecord(r.value or b"", origin, str(r.offset)) for r in records]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()

    def _fill(self) -> list[ConsumerRecord]:
        """What is there, then more until the batch is full or its time budget is spent."""
        records = self._poll(0, self._batch_size)
        deadline = time.monotonic() + self._batch_wait
        while records and len(records) < self._batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, _FILL_STEP))
            try:
                records += self._poll(0, self._batch_size - len(records))
            except KafkaError:
                break  # keep what was read; the error comes back on the next call
        return records

    def _poll(self, timeout: float, max_records: int) -> list[ConsumerRecord]:
        polled = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        return polled.get(self._tp, [])

    def _idle(self) -> None:
        """Nothing buffered: wait a little, and every few seconds check the broker answers."""
        self._awake = _after(_IDLE_WAIT)
        if time.monotonic() < self._probe_at:
            return
        try:
            self._consumer.end_offsets([self._tp], _PROBE_TIMEOUT_MS)
            if self._end is not None:
                # Offsets with no record (transaction markers) never come back from
                # poll; the position moves past them.
                position = self._consumer.position(self._tp, _PROBE_TIMEOUT_MS)
                self._next = max(self._next, position or 0)
        except KafkaError:
            self._failed("unavailable")
            return
        self._healthy()
        self._probe_at = time.monotonic() + _PROBE_EVERY

    def _caught_up(self) -> list[RawRecord | PartitionProgress]:
        """Progress, if every record the broker has was read (the high watermark of its
        last fetch answer): nothing earlier than the clock less the delay is to come."""
        end = self._consumer.highwater(self._tp)
        if end is None or self._next < end:
            return []
        return [PartitionProgress(self._origin, clock=datetime.now(UTC) - self._max_delay)]

    def _restart_from_earliest(self) -> None:
        """Our offset is gone (retention, or a broker that lost its data): go on from the start."""
        try:
            earliest = self._consumer.beginning_offsets([self._tp], _PROBE_TIMEOUT_MS)[self._tp]
        except KafkaError:
            self._failed("unavailable")
            return
        log.warning("%s: offset %d out of range, now at %d", self._origin, self._next, earliest)
        self._metrics.errors.labels("offset_out_of_range").inc()
        self._next = earliest
        self._consumer.seek(self._tp, earliest)

    def _failed(self, kind: str) -> None:
        if self._backoff == 0:
            log.warning("%s: lost the Kafka broker (%s); retrying with backoff", self._origin, kind)
        self._backoff = min(_BACKOFF_MAX, max(_BACKOFF_MIN, self._backoff * 2))
        self._metrics.down(self._origin, kind)
        self._awake = _after(self._backoff)
        self._probe_at = 0.0  # probe again on the next idle call

    def _healthy(self) -> None:
        if self._backoff:
            log.info("%s: Kafka broker is back", self._origin)
            self._backoff = 0.0
            self._metrics.up(self._origin)


def _after(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
