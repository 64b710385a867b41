"""Strict, fast parsing of raw input lines into messages, or dead letters with a reason.

Input items are JSON objects: `{"id"?, "text", "source"?, "published_at"?, "title"?,
"url"?, "lang"?, "tickers"?}`. Nothing here raises on bad input: every failure is a
`DeadLetter` whose `reason` is one of `REASONS`, so it can be counted by reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from processors.envelope.message import (
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    Body,
    DeadLetter,
    Header,
    Message,
    dead_letter,
)

REASONS: tuple[str, ...] = (
    "not_utf8",
    "invalid_json",
    "not_object",
    "missing_text",
    "empty_text",
    "text_too_long",
    "wrong_type",
    "bad_timestamp",
    "absurd_timestamp",
    "late",
    "processor_error",
    "unparseable",
)


class _Item(msgspec.Struct, gc=False):
    text: str
    id: str | None = None
    source: str | None = None
    published_at: datetime | None = None
    title: str | None = None
    url: str | None = None
    lang: str | None = None
    tickers: tuple[str, ...] = ()


class _DatedItem(_Item, gc=False):
    """An item dated to the day only (`"published_at": "2020-03-09"`): midnight UTC."""

    published_at: date | None = None  # type: ignore[assignment]


_decoder = msgspec.json.Decoder(_Item)
_dated_decoder = msgspec.json.Decoder(_DatedItem)


def stable_id(source: str, text: str) -> str:
    """An id for items that came without one: the same item always gets the same id."""
    return hashlib.blake2b(f"{source}\x00{text}".encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Parser:
    """Turns raw bytes into a `Message` or a `DeadLetter`.

    `max_future` bounds how far ahead of the ingest clock an event time may be, and
    `earliest` how far back; times outside are `absurd_timestamp`. Event times without
    an offset are taken as UTC. A dead letter keeps at most `max_dead_letter_payload_bytes`
    of the raw input (UTF-8 bytes of the stored text), with its length and digest.
    """

    max_text_chars: int = 10_000
    max_future: timedelta = timedelta(days=1)
    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    default_source: str = "unknown"
    max_dead_letter_payload_bytes: int = MAX_DEAD_LETTER_PAYLOAD_BYTES

    def parse(
        self, raw: bytes, origin: str, position: str | None, now: datetime
    ) -> Message | DeadLetter:
        """Parse one raw input; `origin` names the input and `position` the place in it.

        Never raises: a record must not stop the job (and stop it again on every restart),
        whatever it holds, so even an unforeseen failure is a dead letter.
        """
        try:
            return self._parse(raw, origin, position, now)
        except RecursionError:
            detail = "nested too deeply to decode"
            return self._dead(raw, origin, position, now, "unparseable", detail)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return self._dead(raw, origin, position, now, "unparseable", detail)

    def _parse(
        self, raw: bytes, origin: str, position: str | None, now: datetime
    ) -> Message | DeadLetter:
        try:
            item = _decode(raw)
        except UnicodeDecodeError as exc:
            return self._dead(raw, origin, position, now, "not_utf8", str(exc))
        except msgspec.ValidationError as exc:
            return self._dead(raw, origin, position, now, _reason(str(exc)), str(exc))
        except msgspec.DecodeError as exc:
            # msgspec < 0.23 raised UnicodeDecodeError for bad UTF-8; newer releases
            # report it as a DecodeError, so the bytes are checked on this error path.
            reason = "invalid_json" if _is_utf8(raw) else "not_utf8"
            return self._dead(raw, origin, position, now, reason, str(exc))

        text = item.text.strip()
        if not text:
            return self._dead(raw, origin, position, now, "empty_text", "text is blank")
        if len(text) > self.max_text_chars:
            detail = f"text has {len(text)} characters, cap is {self.max_text_chars}"
            return self._dead(raw, origin, position, now, "text_too_long", detail)

        published_at = item.published_at
        if published_at is None:
            published_at = now
        elif published_at.tzinfo is None:
            published_at = published_at.replace(tzinfo=UTC)
        else:
            published_at = published_at.astimezone(UTC)
        if not self.earliest <= published_at <= now + self.max_future:
            detail = f"published_at {published_at.isoformat()} is outside the plausible range"
            return self._dead(raw, origin, position, now, "absurd_timestamp", detail)

        source = item.source or self.default_source
        header = Header(
            id=item.id or stable_id(source, text),
            type="item",
            source=source,
            published_at=published_at,
            ingested_at=now,
        )
        body = Body(
            text=text,
            title=item.title,
            url=item.url,
            lang=item.lang,
            tickers=item.tickers,
        )
        return Message(header=header, body=body)

    def parse_batch(
        self,
        raws: Iterable[tuple[bytes, str | None]],
        origin: str,
        now: datetime | None = None,
    ) -> list[Message | DeadLetter]:
        """Parse (raw, position) pairs read at one instant."""
        now = now or datetime.now(UTC)
        return [self.parse(raw, origin, position, now) for raw, position in raws]

    def _dead(
        self,
        raw: bytes,
        origin: str,
        position: str | None,
        now: datetime,
        reason: str,
        detail: str,
    ) -> DeadLetter:
        return dead_letter(
            reason,
            detail,
            raw,
            origin,
            position,
            now,
            max_payload_bytes=self.max_dead_letter_payload_bytes,
        )


def _decode(raw: bytes) -> _Item:
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        if "at `$.published_at`" not in str(exc):
            raise
        try:  # only on this error path, so full timestamps pay nothing for it
            dated = _dated_decoder.decode(raw)
        except msgspec.ValidationError:
            raise exc from None
        day = dated.published_at
        at = datetime.combine(day, time(), tzinfo=UTC) if day is not None else None
        return msgspec.structs.replace(dated, published_at=at)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reason(validation_error: str) -> str:
    """Map msgspec's validation message onto a reason code."""
    if "missing required field `text`" in validation_error:
        return "missing_text"
    if validation_error.startswith("Expected `object`") and " - at `$" not in validation_error:
        return "not_object"
    if "at `$.published_at`" in validation_error:
        return "bad_timestamp"
    return "wrong_type"
