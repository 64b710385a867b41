"""The Kafka alert sink sends each alert event once across restarts, even when the job
is killed between the broker's ack and the record of what was sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flows.sinks.kafka import KafkaSink, SentLog, alert_sink
from processors.envelope.message import NO_END, AlertEvent, to_json
from tests.helpers import T0, window
from tests.kafka_fixtures import FakeFuture


class Broker:
    """What a topic holds: a record counts once its producer's flush has returned."""

    def __init__(self) -> None:
        self.topic: list[bytes] = []


class _Producer:
    def __init__(self, broker: Broker) -> None:
        self.config = {"enable_idempotence": True}
        self.broker = broker
        self.pending: list[bytes] = []

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list) -> FakeFuture:
        self.pending.append(value)
        return FakeFuture(None)

    def flush(self) -> None:  # the broker's ack
        self.broker.topic += self.pending
        self.pending = []

    def close(self) -> None:
        pass


class Killed(BaseException):
    """SIGKILL: nothing after it runs."""


def alert(fingerprint: str, status: str = "firing") -> AlertEvent:
    ends = NO_END if status == "firing" else T0 + timedelta(minutes=30)
    surge = window("energy_oil", 40, 30, 0)
    return AlertEvent(status, {"topic": "energy_oil"}, {}, T0, ends, fingerprint, surge, 0.2, 4.5)


def test_a_kill_between_the_ack_and_the_record_repeats_at_most_that_one_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker()
    batch = [alert("fp-1"), alert("fp-2"), alert("fp-3"), alert("fp-1", "resolved")]
    record = SentLog.add
    recorded: list[str] = []

    def add_then_die(log: SentLog, event_id: str) -> None:
        if len(recorded) == 2:  # the third event is acknowledged, not yet recorded
            raise Killed
        record(log, event_id)
        recorded.append(event_id)

    monkeypatch.setattr(KafkaSink, "producer", lambda sink, idempotent=True: _Producer(broker))
    monkeypatch.setattr(SentLog, "add", add_then_die)
    crashed = alert_sink(["k:9092"], "alerts", state_dir=tmp_path).build("alerts", 0, 1)
    with pytest.raises(Killed):
        crashed.write_batch(batch)
    monkeypatch.setattr(SentLog, "add", record)

    # Resumed from a snapshot taken before the batch: it comes again, whole.
    resumed = alert_sink(["k:9092"], "alerts", state_dir=tmp_path).build("alerts", 0, 1)
    resumed.write_batch(batch)
    resumed.write_batch(batch)
    resumed.close()
    sent = [to_json(a) for a in batch]
    assert broker.topic == [*sent[:3], sent[2], sent[3]]  # only the one in flight twice
