"""De-duplication of repeated items within an event-time horizon, in bounded memory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from processors.message import Message

_URL = re.compile(r"https?://\S+")
_NON_WORD = re.compile(r"[^\w$%]+")


def normalised_text(text: str) -> str:
    """Text as a reader compares it: no links, no case, no punctuation runs.

    >>> normalised_text("BREAKING: Oil slumps 5%!  https://t.co/x")
    'breaking oil slumps 5%'
    """
    return _NON_WORD.sub(" ", _URL.sub(" ", text).casefold()).strip()


def id_key(message: Message) -> bytes:
    return b"i" + message.header.id.encode()


def text_key(message: Message) -> bytes:
    digest = hashlib.blake2b(normalised_text(message.body.text).encode(), digest_size=12)
    return b"t" + digest.digest()


class Deduplicator:
    """Remembers keys seen in the last `horizon` of event time and drops repeats.

    Keys older than the horizon (measured from the newest event time seen) are
    dropped as the stream moves on, so memory follows the item rate, not the run's
    length. Picklable: it is Bytewax state.

    >>> from processors.message import Body, Header
    >>> t = datetime(2024, 1, 2)
    >>> m = Message(Header("a", "item", "x", t, t), Body("Oil slumps"))
    >>> d = Deduplicator(text_key, timedelta(hours=1))
    >>> d.is_new(m), d.is_new(m)
    (True, False)
    """

    def __init__(self, key: Callable[[Message], bytes], horizon: timedelta) -> None:
        self.key = key
        self.horizon = horizon
        self.seen: dict[bytes, datetime] = {}
        self.newest: datetime | None = None
        self._prune_at = 1024

    def is_new(self, message: Message) -> bool:
        at = message.header.published_at
        if self.newest is None or at > self.newest:
            self.newest = at
        key = self.key(message)
        last = self.seen.get(key)
        if last is not None and abs(at - last) <= self.horizon:
            return False
        self.seen[key] = at
        if len(self.seen) >= self._prune_at:
            self._prune()
        return True

    def split(self, batch: Sequence[Message]) -> tuple[list[Message], list[Message]]:
        """(new, duplicates) of a batch, in order."""
        new: list[Message] = []
        repeats: list[Message] = []
        for message in batch:
            (new if self.is_new(message) else repeats).append(message)
        return new, repeats

    def _prune(self) -> None:
        assert self.newest is not None
        cutoff = self.newest - self.horizon
        self.seen = {k: at for k, at in self.seen.items() if at >= cutoff}
        # Amortised: prune again only once the live set has doubled.
        self._prune_at = max(1024, 2 * len(self.seen))
