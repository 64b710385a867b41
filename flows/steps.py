"""The functions behind the flow's steps: each adapts a processor to Bytewax's shapes.

They hold no Bytewax operators themselves, so `flows/monitor.py` reads like the
architecture diagram and these can be tested with plain lists.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import time

from bytewax.operators import StatefulBatchLogic

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
from processors.message import AlertEvent, DeadLetter, Message, TopicWindow
from processors.models import Model
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


class DedupeLogic(StatefulBatchLogic[Message, tuple[bool, Message], Deduplicator]):
    """Bytewax state around a `Deduplicator`: tags each message (is_new, message)."""

    def __init__(self, dedupe: Deduplicator) -> None:
        self.dedupe = dedupe

    def on_batch(self, values: list[Message]) -> tuple[Iterable[tuple[bool, Message]], bool]:
        return [(self.dedupe.is_new(m), m) for m in values], StatefulBatchLogic.RETAIN

    def snapshot(self) -> Deduplicator:
        return copy.deepcopy(self.dedupe)


def dedupe_builder(
    key: Callable[[Message], bytes], horizon: timedelta
) -> Callable[[Deduplicator | None], DedupeLogic]:
    return lambda resumed: DedupeLogic(resumed or Deduplicator(key, horizon))


def build_model(spec: ModelConfig, task: str, inference: InferenceConfig) -> Model:
    """The model a processor's config names: the default, or a Hugging Face model."""
    if spec.model == "default":
        from processors.models.default import DefaultModel

        return DefaultModel(
            spec.heads, inference.device, inference.max_tokens, inference.batch_size
        )
    from processors.models.huggingface import HuggingFaceModel

    return HuggingFaceModel(
        spec.model,
        task,
        spec.label_map,
        inference.device,
        inference.max_tokens,
        inference.batch_size,
    )


def build_chain(config: Config) -> Chain:
    """The processors the config names, sharing one instance per distinct model."""
    models: dict[tuple[str, str, str], Model] = {}

    def model_for(p: ProcessorConfig, index: int) -> Model:
        spec = p.models[index]
        # The default model serves every task from one encoder pass: share it.
        task_key = "*" if spec.model == "default" else p.task
        key = (spec.model, task_key, str(spec.heads))
        if key not in models:
            models[key] = build_model(spec, p.task, config.inference)
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
            if self.config.inference.threads:
                import torch

                torch.set_num_threads(self.config.inference.threads)
            self.chain = build_chain(self.config)
        # Keyed de-duplication regroups a batch by bucket; windows want event order.
        batch = sorted(batch, key=_event_time)
        result = self.chain.process(batch)
        self.observers.metrics.observe_scored(result.scored, result.reports, time())
        if self.observers.progress and result.scored:
            latest = max(m.header.published_at for m in result.scored)
            self.observers.progress.on_scored(len(result.scored), f"{latest:%Y-%m-%d %H:%M}")
        return [*result.scored, *result.dead_letters]


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
