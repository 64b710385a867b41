"""Length-sorted micro-batches: padding to the longest costs least when lengths are close."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
    """Indices of `texts` in groups of at most `batch_size`, shortest texts first.

    >>> list(length_sorted_batches(["ccc", "a", "bb"], 2))
    [[1, 2], [0]]
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
