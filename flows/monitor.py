"""The finsentry dataflow, top to bottom as in the design diagram.

    source -> parse -> de-duplicate (id, then text) -> score (processor chain)
           -> key by topic -> event-time windows -> detect -> alerts
    with dead letters (parse errors, processor errors, late items) on their own sink.

Run it with `finsentry run --config FILE` or `python -m bytewax.run flows.monitor:flow`
(the latter reads the config file named by `FINSENTRY_CONFIG`, if set).
"""

from __future__ import annotations

import os
import zlib
from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators.windowing import SlidingWindower, fold_window

from flows.config import Config, load_config
from flows.sinks.observe import Observers
from flows.sources import RawRecord
from flows.steps import (
    Detect,
    ParseStep,
    ReorderingClock,
    ScoreStep,
    WindowCloser,
    dedupe_builder,
    late_letter,
)
from flows.wiring import Outputs, build_outputs, build_source
from processors.chain import Chain
from processors.dedupe import id_key, text_key
from processors.message import DeadLetter, Message
from processors.window import UNCLASSIFIED, WindowAccumulator, observe


def build_flow(
    config: Config,
    *,
    source: Source[RawRecord] | None = None,
    outputs: Outputs | None = None,
    observers: Observers | None = None,
    chain: Chain | None = None,
) -> Dataflow:
    """The monitor dataflow for `config`; tests may swap the source, sinks or chain."""
    observers = observers or Observers()
    outputs = outputs or build_outputs(config, observers)
    flow = Dataflow("finsentry")

    raw = op.input("source", flow, source or build_source(config, observers))
    parsed = op.flat_map_batch("parse", raw, ParseStep(config, observers))
    valid = op.branch("valid", parsed, lambda x: isinstance(x, Message))
    messages: op.Stream[Message] = valid.trues
    rejected: op.Stream[DeadLetter] = valid.falses

    w = config.window
    grace = timedelta(seconds=w.reorder_seconds)
    fresh = messages
    if config.dedupe.enabled:
        horizon = timedelta(seconds=config.dedupe.horizon_seconds)
        for name, key in (("id", id_key), ("text", text_key)):
            fresh = _dedupe(fresh, name, key, horizon, grace, config.dedupe.buckets, observers)

    scored_or_failed = op.flat_map_batch("score", fresh, ScoreStep(config, observers, chain))
    scored_split = op.branch("scored", scored_or_failed, lambda x: isinstance(x, Message))
    scored: op.Stream[Message] = scored_split.trues

    by_topic = op.key_on("key_topic", op.map("observe", scored, observe), lambda o: o.topic)
    step = timedelta(seconds=w.step_seconds)
    length = timedelta(seconds=w.length_seconds)
    windowed = fold_window(
        "window",
        by_topic,
        ReorderingClock(timedelta(seconds=w.allowed_lateness_seconds), grace),
        SlidingWindower(length=length, offset=step, align_to=w.align_to),
        WindowAccumulator,
        WindowAccumulator.add,
        WindowAccumulator.merge,
    )
    windows = op.map("close_window", windowed.down, WindowCloser(w.align_to, step, length))
    classified = op.filter("classified", windows, lambda kv: kv[0] != UNCLASSIFIED)
    alerts = op.key_rm(
        "alerts", op.stateful_flat_map("detect", classified, Detect(config.detector))
    )
    late = op.map("late", windowed.late, late_letter)

    dead_letters = op.merge("dead_letters", rejected, scored_split.falses, late)
    outputs.attach(
        alerts=alerts,
        dead_letters=dead_letters,
        windows=op.key_rm("windows", windows),
        scored=scored,
    )
    return flow


def _dedupe(
    messages: op.Stream[Message],
    name: str,
    key: Any,
    horizon: timedelta,
    grace: timedelta,
    buckets: int,
    observers: Observers,
) -> op.Stream[Message]:
    """Drop repeats by `key`; keyed by a hash bucket so the state spreads over workers."""
    keyed = op.key_on(f"bucket_{name}", messages, lambda m: str(zlib.crc32(key(m)) % buckets))
    logic = dedupe_builder(key, horizon, grace)
    tagged = op.key_rm(f"untag_{name}", op.stateful_batch(f"dedupe_{name}", keyed, logic))
    split = op.branch(f"new_{name}", tagged, lambda t: t[0])
    op.inspect(
        f"count_dup_{name}",
        split.falses,
        lambda _step, _t: observers.metrics.observe_duplicates(name, 1),
    )
    return op.map(f"unwrap_{name}", split.trues, lambda t: t[1])


def __getattr__(name: str) -> Dataflow:
    """`flows.monitor:flow` for `python -m bytewax.run`, built only when asked for."""
    if name == "flow":
        return build_flow(load_config(os.environ.get("FINSENTRY_CONFIG")))
    raise AttributeError(name)
