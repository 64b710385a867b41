"""No record can make the parser raise: it returns a message or a dead letter, always."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.envelope.message import DeadLetter, Message
from processors.envelope.parse import REASONS, Parser

NOW = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)
parser = Parser(max_text_chars=200)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "text": json_values | st.text(),
        "id": json_values,
        "source": json_values,
        "published_at": json_values | st.datetimes().map(datetime.isoformat),
        "tickers": json_values,
    },
)


def parses(raw: bytes) -> None:
    out = parser.parse(raw, "file:fuzz.jsonl", "1", NOW)
    assert isinstance(out, Message | DeadLetter)
    if isinstance(out, DeadLetter):
        assert out.reason in REASONS


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes(raw: bytes) -> None:
    parses(raw)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_arbitrary_json(value: object) -> None:
    parses(json.dumps(value, allow_nan=True).encode())


@given(fields)
@settings(max_examples=300, deadline=None)
def test_items_with_fields_of_any_type(item: dict[str, object]) -> None:
    parses(json.dumps(item, allow_nan=True).encode())


def test_poison_records_found_in_production_are_dead_letters() -> None:
    deep = b'{"text": "x", "meta": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}"
    out_of_range = b'{"text": "x", "published_at": "0001-01-01T00:00:00+23:59"}'
    for raw in (deep, out_of_range, b'{"text": "x", "id": 1e999}', b"[" * 100_000):
        letter = parser.parse(raw, "file:poison.jsonl", "1", NOW)
        assert isinstance(letter, DeadLetter), raw[:40]
