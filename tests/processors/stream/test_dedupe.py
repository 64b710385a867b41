"""Processors, windows and detectors with plain lists: no Bytewax, no I/O."""

from __future__ import annotations

import pickle
import random
import re
import string
from datetime import timedelta

from processors.stream.dedupe import Deduplicator, id_key, normalised_text, text_key
from tests.helpers import T0, message


def test_dedupe_by_id_and_by_normalised_text_within_the_horizon() -> None:
    by_id = Deduplicator(timedelta(hours=1))
    by_text = Deduplicator(timedelta(hours=1))
    a = message("Oil slumps 5%!", "a")
    same_text = message("oil  SLUMPS 5% https://t.co/xyz", "b", at=T0 + timedelta(minutes=10))
    later = message("Oil slumps 5%", "c", at=T0 + timedelta(hours=2))
    assert normalised_text(a.body.text) == normalised_text(same_text.body.text)
    assert by_id.fresh([(T0, id_key(a), a), (T0, id_key(a), a)]) == [a]
    keyed = [(m.header.published_at, text_key(m), m) for m in (a, same_text, later)]
    assert by_text.fresh(keyed) == [a, later]


def test_dedupe_memory_stays_bounded_over_a_long_stream() -> None:
    dedupe = Deduplicator(timedelta(minutes=10))
    for i in range(0, 50_000, 100):
        dedupe.fresh([(T0 + timedelta(seconds=j), b"%d" % j, None) for j in range(i, i + 100)])
    assert len(dedupe.seen) <= 2 * 601 + 1024
    assert pickle.loads(pickle.dumps(dedupe)).seen == dedupe.seen


def test_normalised_text_is_the_same_on_the_fast_ascii_path() -> None:
    rng = random.Random(0)
    accented = "\u00e9\u00fc\u00c9\u20ac\u2013\u2014\u201c\u201d\u2026\u2019\u00df"
    pieces = [*string.printable, *accented, "https://t.co/Ab1 ", "HTTP://X.Y", "$AAPL", "5%"]
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        words = re.sub(r"[^\w$%]+", " ", re.sub(r"https?://\S+", " ", text).casefold())
        assert normalised_text(text) == words.strip()
