"""The functions behind the flow's steps: each adapts a processor to Bytewax's shapes.

They hold no Bytewax operators themselves, so `flows/monitor.py` reads like the
architecture diagram and these can be tested with plain lists.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from time import time

from bytewax.operators import StatefulBatchLogic
from bytewax.operators.windowing import UTC_MAX, Clock, ClockLogic

from flows.config import (
    Config,
    DetectorConfig,
    InferenceConfig,
    ModelConfig,
    ProcessorConfig,
)
from flows.sinks.observe import Observers
from flows.sources import RawRecord
from processors.alerting import TopicMonitor
from processors.base import Processor, Route
from processors.chain import Chain
from processors.classify import ClassifyProcessor, Member
from processors.dedupe import Deduplicator
from processors.detectors import DETECTORS
from processors.frontier import EARLIEST, Frontier
from processors.message import AlertEvent, DeadLetter, Message, TopicWindow
from processors.models import Model, ModelLoadError
from processors.noop import NoOpProcessor
from processors.parse import Parser
from processors.window import Observation, WindowAccumulator


class ParseStep:
    """Raw records of one source batch -> messages and dead letters."""

    def __init__(self, config: Config, observers: Observers) -> None:
        self.parser = Parser(
            max_text_chars=config.parse.max_text_chars,
            max_future=timedelta(seconds=config.parse.max_future_seconds),
        )
        self.observers = observers
        self.input_kind = config.source.kind

    def __call__(self, batch: list[RawRecord]) -> list[Message | DeadLetter]:
        now = datetime.now(UTC)
        out = [self.parser.parse(r.payload, r.origin, r.position, now) for r in batch]
        self.observers.metrics.observe_input(self.input_kind, len(batch))
        return out


@dataclass
class DedupeState:
    """A bucket's de-duplicator, with the items it holds back until they are in order."""

    dedupe: Deduplicator
    frontier: Frontier
    # (event time, id, arrival number, message): a heap; ties go by arrival.
    pending: list[tuple[datetime, str, int, Message]] = field(default_factory=list)
    arrivals: int = 0


class DedupeLogic(StatefulBatchLogic[Message, tuple[bool, Message], DedupeState]):
    """Tags each message (is_new, message), taking a bucket's messages in event order.

    Which copy of a repeat survives, and which keys are pruned, depend on the order
    messages are seen; messages wait here until the bucket's frontier, `grace` behind,
    has passed them, so parallel partitions and workers cannot change the outcome.
    """

    def __init__(self, state: DedupeState) -> None:
        self.state = state

    def on_batch(self, values: list[Message]) -> tuple[Iterable[tuple[bool, Message]], bool]:
        now = datetime.now(UTC)
        s = self.state
        for m in values:
            s.frontier.observe(m.header.published_at, now)
            heapq.heappush(s.pending, (m.header.published_at, m.header.id, s.arrivals, m))
            s.arrivals += 1
        return self._release(s.frontier.at(now)), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[tuple[bool, Message]], bool]:
        return self._release(self.state.frontier.at(datetime.now(UTC))), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[tuple[bool, Message]], bool]:
        return self._release(UTC_MAX), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        pending = self.state.pending
        return self.state.frontier.due(pending[0][0]) if pending else None

    def snapshot(self) -> DedupeState:
        s = self.state
        # Messages are immutable: the heap's entries need no copies.
        return DedupeState(
            copy.deepcopy(s.dedupe), copy.deepcopy(s.frontier), list(s.pending), s.arrivals
        )

    def _release(self, upto: datetime) -> list[tuple[bool, Message]]:
        s = self.state
        out = []
        while s.pending and s.pending[0][0] <= upto:
            m = heapq.heappop(s.pending)[3]
            out.append((s.dedupe.is_new(m), m))
        return out


def dedupe_builder(
    key: Callable[[Message], bytes], horizon: timedelta, grace: timedelta
) -> Callable[[DedupeState | None], DedupeLogic]:
    def build(resumed: DedupeState | None) -> DedupeLogic:
        if resumed is None:
            return DedupeLogic(DedupeState(Deduplicator(key, horizon), Frontier(grace)))
        resumed.frontier.resumed(datetime.now(UTC))
        return DedupeLogic(resumed)

    return build


@dataclass(frozen=True)
class ReorderingClock(Clock[Observation, Frontier]):
    """Event time, with the watermark `lateness` behind the key's lagged `Frontier`.

    Bytewax's `EventClock` marks late whatever is `lateness` behind the newest item
    seen so far, so items racing through parallel partitions or workers were dropped
    as late, and after a restart the downtime counted as elapsed time. Here an item is
    late only once its window closed `grace` seconds of processing ago.
    """

    lateness: timedelta
    grace: timedelta

    def build(self, resume_state: Frontier | None) -> ClockLogic[Observation, Frontier]:
        now = datetime.now(UTC)
        frontier = resume_state.resumed(now) if resume_state else Frontier(self.grace)
        return _ReorderingClockLogic(frontier, self.lateness, now)


class _ReorderingClockLogic(ClockLogic[Observation, Frontier]):
    def __init__(self, frontier: Frontier, lateness: timedelta, now: datetime) -> None:
        self.frontier = frontier
        self.lateness = lateness
        self.now = now

    def before_batch(self) -> None:
        self.now = datetime.now(UTC)

    def on_item(self, value: Observation) -> tuple[datetime, datetime]:
        self.frontier.observe(value.published_at, self.now)
        return value.published_at, self._watermark()

    def on_notify(self) -> datetime:
        self.before_batch()
        return self._watermark()

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return self.frontier.due(timestamp + self.lateness)

    def snapshot(self) -> Frontier:
        return copy.deepcopy(self.frontier)

    def _watermark(self) -> datetime:
        frontier = self.frontier.at(self.now)
        return frontier if frontier == EARLIEST else frontier - self.lateness


def build_model(spec: ModelConfig, task: str, inference: InferenceConfig) -> Model:
    """The model a processor's config names: the default, zero-shot NLI, or any classifier."""
    runtime = inference.model_dump(include=_RUNTIME)
    if spec.model == "default":
        from processors.models.default import DefaultModel

        return DefaultModel(
            spec.heads,
            **runtime,
            encoder=spec.encoder,
            backend=inference.backend,
            onnx_path=inference.onnx_path,
            threads=inference.threads,
        )
    if spec.zero_shot is not None:
        from processors.models.zeroshot import ZeroShotModel

        return ZeroShotModel(spec.model, task, **spec.zero_shot.model_dump(), **runtime)
    from processors.models.huggingface import HuggingFaceModel

    return HuggingFaceModel(spec.model, task, spec.label_map, **runtime)


_RUNTIME = {"device", "dtype", "max_tokens", "max_batch_tokens", "batch_size", "compile"}


def build_chain(config: Config) -> Chain:
    """The processors the config names, sharing one instance per distinct model.

    A model that cannot be loaded fails here, at start, naming its processor.
    """
    if config.inference.threads:
        import torch

        torch.set_num_threads(config.inference.threads)
    models: dict[tuple[str, str], Model] = {}

    def model_for(p: ProcessorConfig, index: int) -> Model:
        spec = p.models[index]
        # The default model serves every task from one encoder pass: share it.
        task_key = "*" if spec.model == "default" else p.task
        key = (task_key, spec.model_dump_json(exclude={"weight"}))
        if key not in models:
            try:
                models[key] = build_model(spec, p.task, config.inference)
            except ModelLoadError as exc:
                raise ModelLoadError(f"processor {p.name!r}: {exc}") from exc
        return models[key]

    def processor_for(p: ProcessorConfig) -> Processor:
        if p.kind == "noop":
            return NoOpProcessor(p.name)
        return ClassifyProcessor(
            name=p.name,
            task=p.task,
            members=[Member(model_for(p, i), m.weight) for i, m in enumerate(p.models)],
            merge=p.merge,
            route=Route(frozenset(p.route.sources), frozenset(p.route.langs)),
        )

    return Chain([processor_for(p) for p in config.processors])


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


def _event_time(message: Message) -> datetime:
    return message.header.published_at


def late_letter(item: tuple[str, tuple[int, Observation]]) -> DeadLetter:
    """An observation that arrived after its window closed, as a dead letter."""
    topic, (_window_id, late) = item
    return DeadLetter(
        reason="late",
        detail=f"event time {late.published_at.isoformat()} is behind the {topic} watermark",
        payload=late.text,
        source=topic,
        position=late.id,
        at=datetime.now(UTC),
    )


@dataclass(frozen=True)
class WindowCloser:
    """Turns Bytewax's (topic, (window id, accumulator)) into a `TopicWindow`."""

    align_to: datetime
    step: timedelta
    length: timedelta

    def __call__(self, item: tuple[str, tuple[int, WindowAccumulator]]) -> tuple[str, TopicWindow]:
        topic, (window_id, accumulator) = item
        start = self.align_to + self.step * window_id
        return topic, accumulator.close(topic, start, start + self.length)


@dataclass(frozen=True)
class Detect:
    """Per-topic state: a detector and its alert lifecycle (`TopicMonitor`)."""

    config: DetectorConfig

    def __call__(
        self, monitor: TopicMonitor | None, window: TopicWindow
    ) -> tuple[TopicMonitor, list[AlertEvent]]:
        if monitor is None:
            params = self.config.model_dump(exclude={"kind", "critical_share"})
            detector = DETECTORS[self.config.kind](**params)
            monitor = TopicMonitor(detector, critical_share=self.config.critical_share)
        return monitor, monitor.update(window)
