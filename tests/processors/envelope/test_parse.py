"""Every class of bad input becomes a dead letter with its reason; good input parses."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from processors.envelope.message import MAX_DETAIL_BYTES, DeadLetter, Message, dead_letter, to_json
from processors.envelope.parse import REASONS, Parser, stable_id

NOW = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)
parser = Parser(max_text_chars=200)


def parse(raw: bytes) -> Message | DeadLetter:
    return parser.parse(raw, "file:test.jsonl", "7", NOW)


def test_full_item_parses_into_the_envelope() -> None:
    item = {
        "id": "r-1",
        "text": "  Oil slumps 5% as OPEC+ talks collapse ",
        "source": "reuters",
        "published_at": "2024-03-14T14:59:00+01:00",
        "title": "Oil slumps",
        "url": "https://example.com/a",
        "lang": "en",
        "tickers": ["XOM", "CVX"],
    }
    msg = parse(json.dumps(item).encode())
    assert isinstance(msg, Message)
    assert msg.header.id == "r-1"
    assert msg.header.type == "item"
    assert msg.header.source == "reuters"
    assert msg.header.published_at == datetime(2024, 3, 14, 13, 59, tzinfo=UTC)
    assert msg.header.ingested_at == NOW
    assert msg.body.text == "Oil slumps 5% as OPEC+ talks collapse"
    assert msg.body.tickers == ("XOM", "CVX")
    assert msg.trailer == ()


def test_defaults_id_from_source_and_text_and_time_from_ingest() -> None:
    msg = parse(b'{"text": "Fed holds rates"}')
    assert isinstance(msg, Message)
    assert msg.header.id == stable_id("unknown", "Fed holds rates")
    assert msg.header.id == parse(b'{"text": "Fed holds rates"}').header.id
    assert msg.header.published_at == NOW
    naive = parse(b'{"text": "x", "published_at": "2024-03-14T10:00:00"}')
    assert naive.header.published_at == datetime(2024, 3, 14, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"text": "caf\xff"}', "not_utf8"),
        (b'{"text": "cut off', "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b'["a", "list"]', "not_object"),
        (b'"a string"', "not_object"),
        (b'{"id": "1"}', "missing_text"),
        (b'{"text": "   "}', "empty_text"),
        (b'{"text": "' + b"x" * 201 + b'"}', "text_too_long"),
        (b'{"text": 42}', "wrong_type"),
        (b'{"text": "x", "tickers": "AAPL"}', "wrong_type"),
        (b'{"text": "x", "id": 7}', "wrong_type"),
        (b'{"text": "x", "published_at": "yesterday"}', "bad_timestamp"),
        (b'{"text": "x", "published_at": 1710424800}', "bad_timestamp"),
        (b'{"text": "x", "published_at": "1970-01-01T00:00:00Z"}', "absurd_timestamp"),
        (b'{"text": "x", "published_at": "2031-01-01T00:00:00Z"}', "absurd_timestamp"),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_its_reason(raw: bytes, reason: str) -> None:
    letter = parse(raw)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == reason
    assert letter.reason in REASONS
    assert letter.detail
    assert letter.source == "file:test.jsonl"
    assert letter.position == "7"
    assert letter.payload == raw.decode("utf-8", errors="replace")


def test_future_tolerance_is_configurable() -> None:
    soon = (NOW + timedelta(hours=2)).isoformat()
    raw = json.dumps({"text": "x", "published_at": soon}).encode()
    assert isinstance(parse(raw), Message)
    strict = Parser(max_future=timedelta(minutes=5))
    assert strict.parse(raw, "t", None, NOW).reason == "absurd_timestamp"


def test_an_item_dated_to_the_day_only_is_at_midnight_utc() -> None:
    parsed = Parser().parse(
        b'{"text": "Oil slumps", "published_at": "2020-03-09"}',
        "test",
        "1",
        datetime(2024, 3, 14, tzinfo=UTC),
    )
    assert isinstance(parsed, Message)
    assert parsed.header.published_at == datetime(2020, 3, 9, tzinfo=UTC)


def test_a_huge_binary_record_makes_a_small_dead_letter() -> None:
    raw = bytes(range(128, 256)) * 8125  # 1,040,000 bytes, none of them valid UTF-8
    assert len(raw) == 1_040_000
    letter = parse(raw)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "not_utf8"
    assert len(to_json(letter)) < 64 * 1024
    assert len(letter.payload.encode()) <= parser.max_dead_letter_payload_bytes
    assert letter.payload.startswith("\ufffd")
    assert letter.payload_bytes == 1_040_000
    assert letter.payload_sha256 == hashlib.sha256(raw).hexdigest()


def test_a_dead_letter_keeps_a_short_payload_whole_and_cuts_on_characters() -> None:
    letter = parse(b"not json")
    assert isinstance(letter, DeadLetter)
    assert (letter.payload, letter.payload_bytes) == ("not json", 8)
    cut = Parser(max_dead_letter_payload_bytes=10).parse("é".encode() * 20, "f", None, NOW)
    assert isinstance(cut, DeadLetter)
    assert cut.payload == "é" * 5  # 10 bytes, no character split
    assert cut.payload_bytes == 40


def test_a_dead_letters_detail_is_bounded() -> None:
    letter = dead_letter("unparseable", "x" * 1_000_000, b"{}", "f")
    assert len(letter.detail.encode()) <= MAX_DETAIL_BYTES
