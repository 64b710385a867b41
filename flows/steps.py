"""The functions behind the flow's steps: each adapts a processor to Bytewax's shapes.

They hold no Bytewax operators themselves, so `flows/monitor.py` reads like the
architecture diagram and these can be tested with plain lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from time import time
from typing import TypeVar

from bytewax.operators import StatefulBatchLogic

from flows.config import (
    BurstConfig,
    Config,
    DetectorConfig,
    VolumeConfig,
    WindowConfig,
)
from flows.models import build_chain
from flows.sinks.observe import Observers
from flows.sources import RawRecord
from flows.watchlist import LiveWatchlist
from processors.chain.chain import Chain
from processors.detection import (
    BURST_ALERTNAME,
    DETECTORS,
    VOLUME_ALERTNAME,
    BurstDetector,
    Detector,
    VolumeDetector,
)
from processors.detection.lifecycle import TopicMonitor
from processors.envelope.message import (
    AlertEvent,
    DeadLetter,
    Message,
    TopicWindow,
    dead_letter,
)
from processors.envelope.parse import Parser
from processors.stream.dedupe import Deduplicator, id_key, text_key
from processors.stream.sequencer import PartitionProgress, Sequencer
from processors.stream.stories import StoryIndex
from processors.stream.window import MARKET, Observation, StreamWindows, entity_of

X = TypeVar("X")
Sourced = tuple[str, Message]  # (the source partition it came from, a message)
Placed = tuple[datetime, Message | None]  # (order time, message), or (watermark, None)
ONE_KEY = "stream"  # the key of the steps that see the whole stream in one order


class ParseStep:
    """Raw records of one source batch -> messages, each with the partition it came
    from, and dead letters; a partition's progress passes through."""

    def __init__(self, config: Config, observers: Observers) -> None:
        self.parser = Parser(
            max_text_chars=config.parse.max_text_chars,
            max_future=timedelta(seconds=config.parse.max_future_seconds),
            max_dead_letter_payload_bytes=config.parse.max_dead_letter_payload_bytes,
        )
        self.observers = observers
        self.input_kind = config.source.kind

    def __call__(
        self, batch: list[RawRecord | PartitionProgress]
    ) -> list[Sourced | DeadLetter | PartitionProgress]:
        now = datetime.now(UTC)
        out: list[Sourced | DeadLetter | PartitionProgress] = []
        records = 0
        for r in batch:
            if isinstance(r, PartitionProgress):
                out.append(r)
                continue
            records += 1
            parsed = self.parser.parse(r.payload, r.origin, r.position, now)
            out.append(parsed if isinstance(parsed, DeadLetter) else (r.origin, parsed))
        self.observers.metrics.observe_input(self.input_kind, records)
        return out


class ScoreStep:
    """One upstream batch -> the processor chain -> scored messages (with the partition
    each came from) and dead letters; progress passes through, after its partition's
    messages.

    The chain (and its models) is built on the first batch, in the worker that runs
    it, so building the dataflow stays cheap and models never enter Bytewax state.
    Scoring comes before the one ordering point (`OrderLogic`), on the worker that read
    the partition, so the models run in parallel however the stream is ordered.
    """

    def __init__(self, config: Config, observers: Observers, chain: Chain | None = None) -> None:
        self.config = config
        self.observers = observers
        self.chain = chain

    def __call__(
        self, batch: list[Sourced | PartitionProgress]
    ) -> list[Sourced | DeadLetter | PartitionProgress]:
        if self.chain is None:
            self.chain = build_chain(self.config)
        out: list[Sourced | DeadLetter | PartitionProgress] = []
        progress: list[PartitionProgress] = []
        by_origin: dict[str, list[Message]] = {}
        for entry in batch:
            if isinstance(entry, PartitionProgress):
                progress.append(entry)
            else:
                by_origin.setdefault(entry[0], []).append(entry[1])
        # Source-sized chunks: memory stays bounded, and progress and metrics move.
        size = self.config.source.batch_size
        for origin, messages in by_origin.items():
            for start in range(0, len(messages), size):
                result = self.chain.process(messages[start : start + size])
                self.observers.metrics.observe_scored(result.scored, result.reports, time())
                if self.observers.progress and result.scored:
                    latest = result.scored[-1].header.published_at
                    self.observers.progress.on_scored(
                        len(result.scored), f"{latest:%Y-%m-%d %H:%M}"
                    )
                out += ((origin, m) for m in result.scored)
                out += result.dead_letters
        return out + progress  # later than it was: progress may come late, never early


@dataclass
class OrderState:
    """The stream's one order, and the de-duplicators that judge repeats in it."""

    sequencer: Sequencer[Message]
    dedupers: list[tuple[str, Callable[[Message], bytes], Deduplicator]]


class OrderLogic(StatefulBatchLogic[Sourced | PartitionProgress, Placed, OrderState]):
    """The job's one ordering point: every scored message of every partition, merged
    into one event order (`Sequencer`), then the first of each repeat (by id, then by
    text) passed on with its order time, and the watermark as it moves.

    Which copy of a repeat survives, what is late and what each window holds follow
    from this order alone, so one process, several workers and a cluster agree.
    Repeats are counted, by `on_repeats(kind, n)`, and dropped.
    """

    def __init__(self, state: OrderState, on_repeats: Callable[[str, int], None]) -> None:
        self.state = state
        self.on_repeats = on_repeats

    def on_batch(self, values: list[Sourced | PartitionProgress]) -> tuple[list[Placed], bool]:
        entries = (
            v if isinstance(v, PartitionProgress) else (v[0], v[1].header.published_at, v[1])
            for v in values
        )
        released, watermark = self.state.sequencer.add(entries)
        out = self._fresh(released)
        if watermark is not None:
            out.append((watermark, None))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Placed], bool]:
        return self._fresh(self.state.sequencer.finish()), StatefulBatchLogic.RETAIN

    def snapshot(self) -> OrderState:
        return OrderState(
            self.state.sequencer.copy(),
            [(kind, key, dedupe.copy()) for kind, key, dedupe in self.state.dedupers],
        )

    def _fresh(self, released: list[tuple[datetime, Message]]) -> list[Placed]:
        placed: dict[int, datetime] = {id(m): at for at, m in released}
        messages = [m for _, m in released]
        for kind, key, dedupe in self.state.dedupers:
            fresh = dedupe.fresh((m.header.published_at, key(m), m) for m in messages)
            self.on_repeats(kind, len(messages) - len(fresh))
            messages = fresh
        return [(placed[id(m)], m) for m in messages]


def order_builder(
    config: Config, partitions: list[str], on_repeats: Callable[[str, int], None]
) -> Callable[[OrderState | None], OrderLogic]:
    """The ordering point over the source's `partitions` (their origins), with the
    configured de-duplication."""
    horizon = timedelta(seconds=config.dedupe.horizon_seconds)
    keys = (("id", id_key), ("text", text_key)) if config.dedupe.enabled else ()

    def build(resumed: OrderState | None) -> OrderLogic:
        if resumed is None:
            dedupers = [(kind, key, Deduplicator(horizon)) for kind, key in keys]
            resumed = OrderState(Sequencer(partitions), dedupers)
        return OrderLogic(resumed, on_repeats)

    return build


class WindowLogic(StatefulBatchLogic[Placed, tuple[str, TopicWindow] | DeadLetter, StreamWindows]):
    """Every key's event-time windows, fed in the stream's one order: (key, closed
    window) pairs out, and late items as dead letters."""

    def __init__(self, windows: StreamWindows) -> None:
        self.windows = windows

    def on_batch(
        self, values: list[Placed]
    ) -> tuple[list[tuple[str, TopicWindow] | DeadLetter], bool]:
        out: list[tuple[str, TopicWindow] | DeadLetter] = []
        now = datetime.now(UTC)
        items: list[tuple[datetime, Message]] = []
        for at, message in values:
            if message is not None:
                items.append((at, message))
                continue
            out += self._emit(*self.windows.add(items), now)
            items = []
            out += self._emit(self.windows.advance(at - self.windows.lateness), [], now)
        out += self._emit(*self.windows.add(items), now)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[str, TopicWindow] | DeadLetter], bool]:
        return self._emit(
            self.windows.advance(None), [], datetime.now(UTC)
        ), StatefulBatchLogic.RETAIN

    def snapshot(self) -> StreamWindows:
        return self.windows.copy()

    @staticmethod
    def _emit(
        closed: list[TopicWindow], late: list[Observation], now: datetime
    ) -> list[tuple[str, TopicWindow] | DeadLetter]:
        return [*((w.topic, w) for w in closed), *(late_letter(o, now) for o in late)]


def window_builder(config: WindowConfig) -> Callable[[StreamWindows | None], WindowLogic]:
    def build(resumed: StreamWindows | None) -> WindowLogic:
        return WindowLogic(resumed or build_windows(config))

    return build


def build_windows(config: WindowConfig) -> StreamWindows:
    """The configured windows, for every key, empty."""
    stories = None
    if config.story_horizon_seconds:
        horizon = timedelta(seconds=config.story_horizon_seconds)
        stories = StoryIndex(horizon, max_stories=config.max_stories)
    return StreamWindows(
        config.align_to,
        length=timedelta(seconds=config.length_seconds),
        step=timedelta(seconds=config.step_seconds),
        lateness=timedelta(seconds=config.allowed_lateness_seconds),
        stories=stories,
    )


def keyed(key: str) -> Callable[[list[X]], list[tuple[str, X]]]:
    """A batch, every item under `key`: for a step that must see the whole stream."""

    def under(batch: list[X]) -> list[tuple[str, X]]:
        return [(key, x) for x in batch]

    return under


def values_of(batch: list[tuple[str, X]]) -> list[X]:
    """`op.key_rm` a batch at a time: one call per batch, not one per item."""
    return [value for _, value in batch]


def late_letter(late: Observation, now: datetime) -> DeadLetter:
    """An observation that arrived after its window closed, as a dead letter."""
    return dead_letter(
        reason="late",
        detail=f"event time {late.published_at.isoformat()} is behind the stream's watermark",
        raw=late.text,
        source=late.topic,
        position=late.id,
        at=now,
    )


@dataclass(frozen=True)
class Detect:
    """Per-key state: its detectors, each with its alert lifecycle (`TopicMonitor`): the
    negative surge, then, unless turned off, the news-volume spike, and on the
    market-wide key the story burst.

    With a watchlist, an entity's keys take the watched entity's detector settings and
    routing labels as the list stands at each window: a reload retunes a key's
    detectors in place, keeping what they learnt (an open alert keeps its labels).
    """

    config: DetectorConfig
    window: WindowConfig
    watchlist: LiveWatchlist | None = None

    def __call__(
        self, monitors: list[TopicMonitor] | None, window: TopicWindow
    ) -> tuple[list[TopicMonitor], list[AlertEvent]]:
        ticker = entity_of(window.topic) if self.watchlist else None
        watched = self.watchlist.entity(ticker) if self.watchlist and ticker else None
        config = self.config.with_overrides(watched.detector) if watched else self.config
        per_month = windows_per_month(self.window)
        if monitors is None:
            monitors = [
                TopicMonitor(
                    build_detector(config, per_month),
                    critical_share=config.critical_share,
                    broad=window.topic == MARKET,
                )
            ]
            if config.volume.enabled:
                detector = build_volume_detector(config.volume, self.window)
                monitors.append(TopicMonitor(detector, alertname=VOLUME_ALERTNAME))
            if window.topic == MARKET and config.burst.enabled:
                burst = build_burst_detector(config.burst, self.window)
                monitors.append(TopicMonitor(burst, alertname=BURST_ALERTNAME))
        elif ticker:  # the watchlist may have changed since the key's last window
            self._retune(monitors, config, per_month)
        if ticker:
            labels = tuple(watched.labels.items()) if watched else ()
            for monitor in monitors:
                monitor.labels = labels
        return monitors, [event for m in monitors for event in m.update(window)]

    def _retune(
        self, monitors: list[TopicMonitor], config: DetectorConfig, per_month: float
    ) -> None:
        """Give a key's detectors `config`'s parameters, keeping what they learnt."""
        surge, *volume = monitors
        surge.detector = retuned(surge.detector, detector_params(config, per_month))
        surge.critical_share = config.critical_share
        params = volume_detector_params(config.volume, self.window)
        for monitor in volume:
            monitor.detector = retuned(monitor.detector, params)


D = TypeVar("D", bound=Detector)


def retuned(detector: D, params: dict[str, float]) -> D:
    """`detector` with these parameters and what it has learnt (itself if they hold)."""
    if all(getattr(detector, name) == value for name, value in params.items()):
        return detector
    return replace(detector, **params)


def build_detector(config: DetectorConfig, windows_per_month: float) -> Detector:
    """The configured kind of detector, with the config's values for its parameters."""
    return DETECTORS[config.kind](**detector_params(config, windows_per_month))


def detector_params(config: DetectorConfig, windows_per_month: float) -> dict[str, float]:
    """The config's values for the parameters of its kind of detector.

    The evidence detector's `p_fire`, unless set, is the false-alarm rate the config
    asks for per key and month over the windows a key sees in a month: the same rate
    for 5-minute and for daily windows.
    """
    kind = DETECTORS[config.kind]
    settable = {f.name for f in fields(kind)} & set(DetectorConfig.model_fields)
    params = config.model_dump(include=settable, exclude_none=True)
    if "p_fire" in settable and config.p_fire is None:
        params["p_fire"] = p_fire_for_budget(config.false_alarms_per_month, windows_per_month)
    return params


def p_fire_for_budget(false_alarms_per_month: float, windows_per_month: float) -> float:
    """The per-window tail probability that spends a key's monthly false-alarm budget."""
    return min(false_alarms_per_month / windows_per_month, 0.5)


def build_volume_detector(config: VolumeConfig, window: WindowConfig) -> VolumeDetector:
    """The volume detector for windows of `window`'s step."""
    return VolumeDetector(**volume_detector_params(config, window))


def volume_detector_params(config: VolumeConfig, window: WindowConfig) -> dict[str, float]:
    """The volume detector's parameters, its `p_fire` from the false-alarm budget as for
    the surge detector."""
    p_fire = p_fire_for_budget(config.false_alarms_per_month, windows_per_month(window))
    params = config.model_dump(exclude={"enabled", "false_alarms_per_month"})
    return {"step_seconds": window.step_seconds, "p_fire": p_fire, **params}


def build_burst_detector(config: BurstConfig, window: WindowConfig) -> BurstDetector:
    """The market-wide key's story-burst detector, its `p_fire` (before it is shared
    among the words judged) from the false-alarm budget as for the surge detector."""
    p_fire = p_fire_for_budget(config.false_alarms_per_month, windows_per_month(window))
    params = config.model_dump(exclude={"enabled", "false_alarms_per_month"})
    return BurstDetector(p_fire=p_fire, **params)


def windows_per_month(window: WindowConfig) -> float:
    """Windows one key closes in 30 days of event time."""
    return 30 * 86_400 / window.step_seconds
