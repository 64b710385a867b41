"""The one event order: the same whatever the paths' speeds, partitions waited for."""

from __future__ import annotations

import pickle
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.stream.sequencer import PartitionProgress, Sequencer
from tests.helpers import T0

Entry = tuple[str, object, str] | PartitionProgress


def partition_items(origin: str, seconds: list[int]) -> list[Entry]:
    """A partition's items, in the order it read them, then its end."""
    items: list[Entry] = [
        (origin, T0 + timedelta(seconds=s), f"{origin}{i}") for i, s in enumerate(seconds)
    ]
    return [*items, PartitionProgress(origin, ended=True)]


def interleave(partitions: list[list[Entry]], rng: random.Random) -> list[list[Entry]]:
    """The partitions' entries as one worker might see them: each partition in its own
    order, the partitions mixed at random, in batches of random sizes."""
    queues = [list(p) for p in partitions]
    arrivals: list[Entry] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        arrivals += [queue.pop(0) for _ in range(min(len(queue), rng.randint(1, 5)))]
    batches, at = [], 0
    while at < len(arrivals):
        size = rng.randint(1, 8)
        batches.append(arrivals[at : at + size])
        at += size
    return batches


def sequence(batches: list[list[Entry]], origins: list[str]) -> list[tuple[object, str]]:
    sequencer: Sequencer[str] = Sequencer(origins)
    out: list[tuple[object, str]] = []
    for batch in batches:
        out += sequencer.add(batch)[0]  # type: ignore[arg-type]
    return out + sequencer.finish()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 600), max_size=30), min_size=1, max_size=4),
    st.integers(0, 10_000),
)
def test_the_order_is_the_same_however_the_partitions_interleave(
    contents: list[list[int]], seed: int
) -> None:
    origins = [f"p{i}" for i in range(len(contents))]
    partitions = [partition_items(o, c) for o, c in zip(origins, contents, strict=True)]
    rng = random.Random(seed)
    first = sequence(interleave(partitions, rng), origins)
    assert sequence(interleave(partitions, rng), origins) == first
    assert len(first) == sum(len(c) for c in contents)
    placed = [at for at, _ in first]
    assert placed == sorted(placed)  # let go in order of order time


def test_an_item_out_of_order_in_its_partition_is_placed_at_its_frontier() -> None:
    s: Sequencer[str] = Sequencer(["a"])
    at = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    released, watermark = s.add([("a", at(10), "x"), ("a", at(4), "behind"), ("a", at(12), "y")])
    assert released == [(at(10), "x"), (at(10), "behind")] and watermark == at(12)
    assert s.finish() == [(at(12), "y")]


def test_nothing_goes_before_every_partition_has_been_heard_from() -> None:
    s: Sequencer[str] = Sequencer(["a", "b"])
    at = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    # "b" starts late (its process is slow to start): "a" runs hours ahead meanwhile.
    assert s.add([("a", at(3600 * h), f"a{h}") for h in range(5)]) == ([], None)
    released, _ = s.add([("b", at(1), "b0")])
    assert [item for _, item in released] == ["a0"]
    # Caught up as of a clock reading, "b" no longer holds the others back to its items.
    released, watermark = s.add([PartitionProgress("b", clock=at(3600 * 3 + 1))])
    assert [item for _, item in released] == ["b0", "a1", "a2", "a3"]
    assert watermark == at(3600 * 3 + 1)


def test_a_resumed_snapshot_goes_on_as_the_uninterrupted_run() -> None:
    rng = random.Random(5)
    partitions = [partition_items(o, sorted(rng.sample(range(900), 40))) for o in ("a", "b")]
    batches = interleave(partitions, rng)
    whole = sequence(batches, ["a", "b"])
    s: Sequencer[str] = Sequencer(["a", "b"])
    got: list[tuple[object, str]] = []
    for batch in batches[:7]:
        got += s.add(batch)[0]  # type: ignore[arg-type]
    restored: Sequencer[str] = pickle.loads(pickle.dumps(s.copy()))
    s.add(batches[7])  # type: ignore[arg-type]  # the snapshot does not see it
    for batch in batches[7:]:
        got += restored.add(batch)[0]  # type: ignore[arg-type]
    assert got + restored.finish() == whole


def test_an_unknown_partition_is_an_error_not_a_silent_race() -> None:
    s: Sequencer[str] = Sequencer(["a"])
    with pytest.raises(ValueError, match="not one of"):
        s.add([("b", T0, "x")])
    with pytest.raises(ValueError, match="needs the source's partitions"):
        Sequencer([])
