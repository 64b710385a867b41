"""Sources: where raw items come from. Each emits `RawRecord`s; parsing comes after.

Keeping sources dumb (bytes and a position, nothing parsed) means every source gets
the same validation and the same dead letters.
"""

from __future__ import annotations

from typing import NamedTuple


class RawRecord(NamedTuple):
    """One raw input item: its bytes, which input it came from, and where in it."""

    payload: bytes
    origin: str  # e.g. "file:events.jsonl", "demo", "kafka:news/3"
    position: str | None  # e.g. a line number or an offset
