"""The functions behind the flow's steps: each adapts a processor to Bytewax's shapes.

They hold no Bytewax operators themselves, so `flows/monitor.py` reads like the
architecture diagram and these can be tested with plain lists.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from time import time
from typing import TypeVar

import msgspec
from bytewax.operators import StatefulBatchLogic

from flows.config import (
    Config,
    DetectorConfig,
    VolumeConfig,
    WindowConfig,
)
from flows.models import build_chain
from flows.sinks.observe import Observers
from flows.sources import RawRecord
from processors.chain.chain import Chain
from processors.detection import DETECTORS, VOLUME_ALERTNAME, Detector, VolumeDetector
from processors.detection.lifecycle import TopicMonitor
from processors.entities import tickers
from processors.envelope.message import (
    AlertEvent,
    DeadLetter,
    Message,
    TopicWindow,
    dead_letter,
)
from processors.envelope.parse import Parser
from processors.stream.dedupe import Deduplicator
from processors.stream.frontier import ReorderBuffer
from processors.stream.stories import StoryIndex
from processors.stream.window import (
    MARKET,
    MAX_ENTITIES,
    Observation,
    TopicWindows,
    entity_key,
    observe,
)

X = TypeVar("X")


class ParseStep:
    """Raw records of one source batch -> messages and dead letters."""

    def __init__(self, config: Config, observers: Observers) -> None:
        self.parser = Parser(
            max_text_chars=config.parse.max_text_chars,
            max_future=timedelta(seconds=config.parse.max_future_seconds),
            max_dead_letter_payload_bytes=config.parse.max_dead_letter_payload_bytes,
        )
        self.observers = observers
        self.input_kind = config.source.kind

    def __call__(self, batch: list[RawRecord]) -> list[Message | DeadLetter]:
        now = datetime.now(UTC)
        out = [self.parser.parse(r.payload, r.origin, r.position, now) for r in batch]
        self.observers.metrics.observe_input(self.input_kind, len(batch))
        return out


Keyed = tuple[datetime, bytes, Message]  # (event time, de-duplication key, message)


class KeyByBucket:
    """Messages -> (bucket, (event time, key, message)): the key is computed once, and
    the bucket, from it, spreads the de-duplication state over workers."""

    def __init__(self, key: Callable[[Message], bytes], buckets: int) -> None:
        self.key = key
        self.names = [str(bucket) for bucket in range(buckets)]

    def __call__(self, batch: list[Message]) -> list[tuple[str, Keyed]]:
        names, n = self.names, len(self.names)
        keyed = [(self.key(m), m) for m in batch]
        return [(names[zlib.crc32(k) % n], (m.header.published_at, k, m)) for k, m in keyed]


@dataclass
class DedupeState:
    """A bucket's de-duplicator, and the items it holds back until they are in order."""

    dedupe: Deduplicator
    held: ReorderBuffer[Keyed]


class DedupeLogic(StatefulBatchLogic[Keyed, Message, DedupeState]):
    """Passes on the first of each repeat, taking a bucket's messages in event order.

    Which copy of a repeat survives, and which keys are pruned, depend on the order
    messages are seen; messages wait here until the bucket's frontier, `grace` behind,
    has passed them, so parallel partitions and workers cannot change the outcome.
    Repeats are counted, by `on_repeats`, and dropped.
    """

    def __init__(self, state: DedupeState, on_repeats: Callable[[int], None]) -> None:
        self.state = state
        self.on_repeats = on_repeats

    def on_batch(self, values: list[Keyed]) -> tuple[list[Message], bool]:
        now = datetime.now(UTC)
        held = self.state.held
        held.add(values, now)
        return self._fresh(held.release(now)), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Message], bool]:
        return self._fresh(self.state.held.release(datetime.now(UTC))), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Message], bool]:
        return self._fresh(self.state.held.release_all()), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.state.held.due()

    def snapshot(self) -> DedupeState:
        return DedupeState(self.state.dedupe.copy(), self.state.held.copy())

    def _fresh(self, keyed: list[Keyed]) -> list[Message]:
        fresh = self.state.dedupe.fresh(keyed)
        self.on_repeats(len(keyed) - len(fresh))
        return fresh


def dedupe_builder(
    horizon: timedelta, grace: timedelta, on_repeats: Callable[[int], None]
) -> Callable[[DedupeState | None], DedupeLogic]:
    def build(resumed: DedupeState | None) -> DedupeLogic:
        if resumed is None:
            return DedupeLogic(DedupeState(Deduplicator(horizon), ReorderBuffer(grace)), on_repeats)
        resumed.held.resumed(datetime.now(UTC))
        return DedupeLogic(resumed, on_repeats)

    return build


class WindowLogic(StatefulBatchLogic[Observation, TopicWindow | DeadLetter, TopicWindows]):
    """A topic's event-time windows: closed windows out, and late items as dead letters."""

    def __init__(self, windows: TopicWindows) -> None:
        self.windows = windows

    def on_batch(self, values: list[Observation]) -> tuple[list[TopicWindow | DeadLetter], bool]:
        now = datetime.now(UTC)
        closed, late = self.windows.add(values, now)
        # An item is dead-lettered once, by its topic's key; one late only for the
        # market-wide or an entity's key is still counted in its topic's window.
        letters = [late_letter(o, now) for o in late if not o.key]
        return [*closed, *letters], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[TopicWindow | DeadLetter], bool]:
        return list(self.windows.advance(datetime.now(UTC))), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[TopicWindow | DeadLetter], bool]:
        return list(self.windows.close_upto(None)), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.windows.due()

    def snapshot(self) -> TopicWindows:
        return self.windows.copy()


def window_builder(config: WindowConfig) -> Callable[[TopicWindows | None], WindowLogic]:
    def build(resumed: TopicWindows | None) -> WindowLogic:
        if resumed is None:
            return WindowLogic(
                TopicWindows(
                    config.align_to,
                    length=timedelta(seconds=config.length_seconds),
                    step=timedelta(seconds=config.step_seconds),
                    lateness=timedelta(seconds=config.allowed_lateness_seconds),
                    grace=timedelta(seconds=config.reorder_seconds),
                    stories=(
                        StoryIndex(
                            timedelta(seconds=config.story_horizon_seconds),
                            max_stories=config.max_stories,
                        )
                        if config.story_horizon_seconds
                        else None
                    ),
                )
            )
        return WindowLogic(resumed.resumed(datetime.now(UTC)))

    return build


def values_of(batch: list[tuple[str, X]]) -> list[X]:
    """`op.key_rm` a batch at a time: one call per batch, not one per item."""
    return [value for _, value in batch]


def observe_by_topic(batch: list[Message]) -> list[tuple[str, Observation]]:
    """Scored messages -> (key, the window's view of each), a batch at a time: each
    under its topic, under the market-wide key, and under each entity it names (the
    first `MAX_ENTITIES` of them)."""
    out = []
    for message in batch:
        o = observe(message)
        out += ((o.topic, o), (MARKET, msgspec.structs.replace(o, key=MARKET)))
        for ticker in tickers(message)[:MAX_ENTITIES]:
            key = entity_key(ticker)
            out.append((key, msgspec.structs.replace(o, key=key)))
    return out


def late_letter(late: Observation, now: datetime) -> DeadLetter:
    """An observation that arrived after its window closed, as a dead letter."""
    return dead_letter(
        reason="late",
        detail=f"event time {late.published_at.isoformat()} is behind the {late.topic} watermark",
        raw=late.text,
        source=late.topic,
        position=late.id,
        at=now,
    )


class ScoreStep:
    """One upstream batch -> the processor chain -> scored messages and dead letters.

    The chain (and its models) is built on the first batch, in the worker that runs
    it, so building the dataflow stays cheap and models never enter Bytewax state.
    """

    def __init__(self, config: Config, observers: Observers, chain: Chain | None = None) -> None:
        self.config = config
        self.observers = observers
        self.chain = chain

    def __call__(self, batch: list[Message]) -> list[Message | DeadLetter]:
        if self.chain is None:
            self.chain = build_chain(self.config)
        # Keyed de-duplication regroups a batch by bucket; windows want event order.
        batch = sorted(batch, key=_event_time)
        # A backfill can release thousands at once: score them in source-sized chunks,
        # so memory stays bounded and progress and metrics move as they go.
        size = self.config.source.batch_size
        out: list[Message | DeadLetter] = []
        for start in range(0, len(batch), size):
            result = self.chain.process(batch[start : start + size])
            self.observers.metrics.observe_scored(result.scored, result.reports, time())
            if self.observers.progress and result.scored:
                latest = result.scored[-1].header.published_at
                self.observers.progress.on_scored(len(result.scored), f"{latest:%Y-%m-%d %H:%M}")
            out += result.scored
            out += result.dead_letters
        return out


_event_time = attrgetter("header.published_at")


@dataclass(frozen=True)
class Detect:
    """Per-key state: its detectors, each with its alert lifecycle (`TopicMonitor`): the
    negative surge, then, unless turned off, the news-volume spike."""

    config: DetectorConfig
    window: WindowConfig

    def __call__(
        self, monitors: list[TopicMonitor] | None, window: TopicWindow
    ) -> tuple[list[TopicMonitor], list[AlertEvent]]:
        if monitors is None:
            per_month = windows_per_month(self.window)
            monitors = [
                TopicMonitor(
                    build_detector(self.config, per_month),
                    critical_share=self.config.critical_share,
                    broad=window.topic == MARKET,
                )
            ]
            if self.config.volume.enabled:
                detector = build_volume_detector(self.config.volume, self.window)
                monitors.append(TopicMonitor(detector, alertname=VOLUME_ALERTNAME))
        return monitors, [event for m in monitors for event in m.update(window)]


def build_detector(config: DetectorConfig, windows_per_month: float) -> Detector:
    """The configured kind of detector, with the config's values for its parameters.

    The evidence detector's `p_fire`, unless set, is the false-alarm rate the config
    asks for per key and month over the windows a key sees in a month: the same rate
    for 5-minute and for daily windows.
    """
    kind = DETECTORS[config.kind]
    settable = {f.name for f in fields(kind)} & set(DetectorConfig.model_fields)
    params = config.model_dump(include=settable, exclude_none=True)
    if "p_fire" in settable and config.p_fire is None:
        params["p_fire"] = p_fire_for_budget(config.false_alarms_per_month, windows_per_month)
    return kind(**params)


def p_fire_for_budget(false_alarms_per_month: float, windows_per_month: float) -> float:
    """The per-window tail probability that spends a key's monthly false-alarm budget."""
    return min(false_alarms_per_month / windows_per_month, 0.5)


def build_volume_detector(config: VolumeConfig, window: WindowConfig) -> VolumeDetector:
    """The volume detector for windows of `window`'s step, its `p_fire` from the
    false-alarm budget as for the surge detector."""
    p_fire = p_fire_for_budget(config.false_alarms_per_month, windows_per_month(window))
    params = config.model_dump(exclude={"enabled", "false_alarms_per_month"})
    return VolumeDetector(step_seconds=window.step_seconds, p_fire=p_fire, **params)


def windows_per_month(window: WindowConfig) -> float:
    """Windows one key closes in 30 days of event time."""
    return 30 * 86_400 / window.step_seconds
