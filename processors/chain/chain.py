"""A configured sequence of processors, run over one batch, that never loses a message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter

import msgspec

from processors.chain.base import Processor
from processors.envelope.message import DeadLetter, Message, dead_letter, to_json


@dataclass(frozen=True)
class BatchReport:
    """How one processor did on one batch, for the metrics at the edge."""

    processor: str
    size: int
    seconds: float


@dataclass(frozen=True)
class ChainOutput:
    scored: list[Message]
    dead_letters: list[DeadLetter]
    reports: list[BatchReport]


class Chain:
    """Runs each processor over the whole batch in turn.

    If a processor raises on a batch, the batch is retried one message at a time so
    that only the messages it cannot handle become `processor_error` dead letters.
    """

    def __init__(self, processors: Sequence[Processor]) -> None:
        self.processors = list(processors)

    def process(self, batch: Sequence[Message]) -> ChainOutput:
        messages = list(batch)
        dead: list[DeadLetter] = []
        reports: list[BatchReport] = []
        for processor in self.processors:
            if not messages:
                break
            started = perf_counter()
            try:
                messages = processor.process(messages)
            except Exception:
                messages, failed = _one_by_one(processor, messages)
                dead.extend(failed)
            reports.append(BatchReport(processor.name, len(messages), perf_counter() - started))
        scored = [_scored(m) for m in messages]
        return ChainOutput(scored, dead, reports)


def _one_by_one(
    processor: Processor, messages: list[Message]
) -> tuple[list[Message], list[DeadLetter]]:
    ok: list[Message] = []
    failed: list[DeadLetter] = []
    for message in messages:
        try:
            ok.extend(processor.process([message]))
        except Exception as exc:
            failed.append(
                dead_letter(
                    reason="processor_error",
                    detail=f"{processor.name}: {type(exc).__name__}: {exc}",
                    raw=to_json(message),
                    source=message.header.source,
                    position=message.header.id,
                    at=datetime.now(UTC),
                )
            )
    return ok, failed


def _scored(message: Message) -> Message:
    return msgspec.structs.replace(
        message, header=msgspec.structs.replace(message.header, type="scored")
    )
