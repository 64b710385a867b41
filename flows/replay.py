"""Publish a JSONL file to a Kafka topic, one record per line, at an optional rate.

Lines go out byte for byte (less the line ending), valid JSON or not, so the job sees
bad input exactly as a producer would send it. Records are spread round-robin over
the topic's partitions by explicit partition number.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import Progress

from flows.config import check_client_options
from flows.sinks.kafka import KafkaDeliveryError, ensure_topic, make_producer
from flows.sources.kafka import unavailable_as


class TokenBucket:
    """Allows `rate` events a second on average, with bursts of at most a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> None:
        """Block until one token is free, then spend it."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            time.sleep((1 - self.tokens) / self.rate)


def _lines(path: Path) -> Iterator[bytes]:
    """The file's non-blank lines without their endings, as the file source reads them."""
    with path.open("rb") as lines:
        for line in lines:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def replay(
    path: Path,
    brokers: list[str],
    topic: str,
    rate: float = 0,
    partitions: int = 1,
    progress: bool = True,
    client_options: Mapping[str, Any] | None = None,
    connect_timeout: float = 5.0,
) -> int:
    """Publish every non-blank line of `path` to `topic`; returns how many were sent.

    Creates the topic with `partitions` partitions if it does not exist (an existing
    topic keeps its own count). `rate` is records per second, 0 for as fast as possible.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0")
    options = check_client_options(client_options)
    ensure_topic(
        brokers, topic, partitions, client_options=options, connect_timeout=connect_timeout
    )
    producer = make_producer(brokers, options, connect_timeout)
    errors: list[BaseException] = []
    bucket = TokenBucket(rate) if rate > 0 else None
    total = sum(1 for _ in _lines(path)) if progress else None
    sent = 0
    try:
        with unavailable_as(brokers, connect_timeout):
            count = len(producer.partitions_for(topic))
        with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
            task = bar.add_task(f"{path.name} -> {topic}", total=total)
            for line in _lines(path):
                if bucket:
                    bucket.take()
                producer.send(topic, value=line, partition=sent % count).add_errback(errors.append)
                sent += 1
                if bucket or sent % 256 == 0:  # a slow replay shows every record
                    bar.update(task, completed=sent)
            producer.flush()
            bar.update(task, completed=sent)
    except KafkaError as exc:
        errors.append(exc)
    finally:
        producer.close()
    if errors:
        raise KafkaDeliveryError(
            f"{len(errors)} of {sent} records from {path} not delivered to {topic!r}: {errors[0]!r}"
        )
    return sent
