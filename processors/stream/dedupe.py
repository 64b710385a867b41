"""De-duplication of repeated items within an event-time horizon, in bounded memory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from processors.envelope.message import Message

_URL = re.compile(r"https?://\S+")
_NON_WORD = re.compile(r"[^\w$%]+")
# For ASCII text, as bytes: letters to lower case, digits and `_$%` kept, the rest
# (punctuation, white space) to spaces; the same result as the regex, four times faster.
_ASCII_FOLD = bytes(
    (c | 0x20 if chr(c).isupper() else c)
    if c < 128 and (chr(c).isalnum() or chr(c) in "_$%")
    else 0x20
    for c in range(256)
)


def normalised_text(text: str) -> str:
    """Text as a reader compares it: no links, no case, no punctuation runs.

    >>> normalised_text("BREAKING: Oil slumps 5%!  https://t.co/x")
    'breaking oil slumps 5%'
    """
    return _normalised(text).decode()


def _normalised(text: str) -> bytes:
    if "http" in text:  # most items carry no link: skip that pass
        text = _URL.sub(" ", text)
    if text.isascii():
        return b" ".join(text.encode().translate(_ASCII_FOLD).split())
    return _NON_WORD.sub(" ", text.casefold()).strip().encode()


def id_key(message: Message) -> bytes:
    return b"i" + message.header.id.encode()


def text_key(message: Message) -> bytes:
    digest = hashlib.blake2b(_normalised(message.body.text), digest_size=12)
    return b"t" + digest.digest()


class Deduplicator:
    """Remembers keys seen in the last `horizon` of event time and drops repeats.

    Keys older than the horizon (measured from the newest event time seen) are
    dropped as the stream moves on, so memory follows the item rate, not the run's
    length. Picklable: it is Bytewax state.

    >>> from processors.envelope.message import Body, Header
    >>> t = datetime(2024, 1, 2)
    >>> m = Message(Header("a", "item", "x", t, t), Body("Oil slumps"))
    >>> d = Deduplicator(timedelta(hours=1))
    >>> len(d.fresh([(t, text_key(m), m), (t, text_key(m), m)]))
    1
    """

    def __init__(self, horizon: timedelta) -> None:
        self.horizon = horizon
        self.seen: dict[bytes, datetime] = {}
        self.newest: datetime | None = None
        self._prune_at = 1024

    def fresh(self, entries: Iterable[tuple[datetime, bytes, Message]]) -> list[Message]:
        """The messages of (event time, key, message) entries, taken in order, that do
        not repeat a key seen within the horizon."""
        seen, horizon, newest = self.seen, self.horizon, self.newest
        out = []
        for at, key, message in entries:
            if newest is None or at > newest:
                newest = at
            last = seen.get(key)
            if last is not None and abs(at - last) <= horizon:
                continue
            seen[key] = at
            out.append(message)
        self.newest = newest
        if len(seen) >= self._prune_at:
            self._prune()
        return out

    def copy(self) -> Deduplicator:
        """A snapshot that later changes do not touch (keys and times are immutable)."""
        twin = Deduplicator(self.horizon)
        twin.seen = dict(self.seen)
        twin.newest = self.newest
        twin._prune_at = self._prune_at
        return twin

    def _prune(self) -> None:
        assert self.newest is not None
        cutoff = self.newest - self.horizon
        self.seen = {k: at for k, at in self.seen.items() if at >= cutoff}
        # Amortised: prune again only once the live set has doubled.
        self._prune_at = max(1024, 2 * len(self.seen))
