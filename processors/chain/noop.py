"""A processor that does nothing, to measure what the pipeline costs without models."""

from __future__ import annotations

from collections.abc import Sequence

from processors.chain.base import Processor
from processors.envelope.message import Message


class NoOpProcessor(Processor):
    """Passes every message through untouched (no trailer entry, no route entry)."""

    def __init__(self, name: str = "noop") -> None:
        self.name = name

    def process(self, batch: Sequence[Message]) -> list[Message]:
        return list(batch)
