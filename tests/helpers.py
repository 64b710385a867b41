"""Builders shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from processors.envelope.message import Body, Header, Message, Result, TopicWindow

ROOT = Path(__file__).resolve().parents[1]  # the checkout
T0 = datetime(2024, 3, 14, 14, 0, tzinfo=UTC)


def message(
    text: str = "Oil slumps",
    id: str = "m1",
    at: datetime = T0,
    source: str = "wire",
    lang: str | None = None,
    trailer: tuple[Result, ...] = (),
) -> Message:
    return Message(Header(id, "item", source, at, at), Body(text, lang=lang), trailer)


def window(topic: str, n: int, negative: int, index: int, minutes: int = 5) -> TopicWindow:
    start = T0 + timedelta(minutes=minutes * index)
    share = negative / n if n else 0.0
    return TopicWindow(
        topic,
        start,
        start + timedelta(minutes=minutes),
        n,
        negative,
        n - negative,
        0,
        share,
        -share,
    )


def jsonl(items: Iterable[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def is_topic_window(topic: str) -> bool:
    """A window of one topic: not the market-wide key, not an entity's key ("$BA")."""
    from processors.stream.window import MARKET, entity_of

    return topic != MARKET and entity_of(topic) is None
