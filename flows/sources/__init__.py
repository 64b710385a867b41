"""Sources: where raw items come from. Each emits `RawRecord`s; parsing comes after.

Keeping sources dumb (bytes and a position, nothing parsed) means every source gets
the same validation and the same dead letters. Between records a partition may say
how far it has got (`PartitionProgress`: caught up, or ended), for the ordering point.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple, TypeVar

from bytewax.inputs import FixedPartitionedSource

from processors.stream.sequencer import PartitionProgress

S = TypeVar("S")


class RawRecord(NamedTuple):
    """One raw input item: its bytes, which input it came from, and where in it."""

    payload: bytes
    origin: str  # e.g. "file:events.jsonl", "demo", "kafka:news/3"
    position: str | None  # e.g. a line number or an offset


class PartitionedSource(FixedPartitionedSource[RawRecord | PartitionProgress, S]):
    """A source whose partitions are known before it is read, by the origin its records
    carry: the ordering point waits for every partition, so it must know them all."""

    @abstractmethod
    def origin(self, part: str) -> str:
        """The `RawRecord.origin` of partition `part`'s records."""

    def origins(self) -> list[str]:
        return [self.origin(part) for part in self.list_parts()]
