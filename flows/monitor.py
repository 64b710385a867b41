"""The finsentry dataflow, top to bottom as in the design diagram.

    source -> parse -> de-duplicate (id, then text) -> score (processor chain)
           -> key by topic -> event-time windows -> detect -> alerts
    with dead letters (parse errors, processor errors, late items) on their own sink.

The edges (source, sinks, chain) come in from `flows.job.assemble`, which builds them
from the config. Run it with `finsentry run --config FILE` or `python -m bytewax.run
flows.monitor:flow` (the latter reads the config file named by `FINSENTRY_CONFIG`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from flows.config import Config, load_config
from flows.sinks.observe import Observers
from flows.sources import RawRecord
from flows.steps import (
    Detect,
    KeyByBucket,
    ParseStep,
    ScoreStep,
    dedupe_builder,
    observe_by_topic,
    values_of,
    window_builder,
)
from flows.wiring import Outputs
from processors.chain.chain import Chain
from processors.envelope.message import DeadLetter, Message, TopicWindow
from processors.stream.dedupe import id_key, text_key
from processors.stream.window import UNCLASSIFIED


def build_flow(
    config: Config,
    *,
    source: Source[RawRecord],
    outputs: Outputs,
    observers: Observers | None = None,
    chain: Chain | None = None,
) -> Dataflow:
    """The monitor dataflow for `config` between `source` and `outputs`.

    Without `chain`, each worker builds the configured one on its first batch.
    """
    observers = observers or Observers()
    flow = Dataflow("finsentry")

    raw = op.input("source", flow, source)
    parsed = op.flat_map_batch("parse", raw, ParseStep(config, observers))
    valid = op.branch("valid", parsed, lambda x: isinstance(x, Message))
    messages: op.Stream[Message] = valid.trues
    rejected: op.Stream[DeadLetter] = valid.falses

    fresh = messages
    if config.dedupe.enabled:
        horizon = timedelta(seconds=config.dedupe.horizon_seconds)
        grace = timedelta(seconds=config.window.reorder_seconds)
        for name, key in (("id", id_key), ("text", text_key)):
            fresh = _dedupe(fresh, name, key, horizon, grace, config.dedupe.buckets, observers)

    scored_or_failed = op.flat_map_batch("score", fresh, ScoreStep(config, observers, chain))
    scored_split = op.branch("scored", scored_or_failed, lambda x: isinstance(x, Message))
    scored: op.Stream[Message] = scored_split.trues

    by_topic = op.flat_map_batch("observe", scored, observe_by_topic)
    windowed = op.stateful_batch("window", by_topic, window_builder(config.window))
    closed_or_late = op.branch("closed", windowed, lambda kv: isinstance(kv[1], TopicWindow))
    windows = closed_or_late.trues
    classified = op.filter("classified", windows, lambda kv: kv[0] != UNCLASSIFIED)
    detect = Detect(config.detector, config.window)
    alerts = op.key_rm("alerts", op.stateful_flat_map("detect", classified, detect))
    late = op.key_rm("late", closed_or_late.falses)

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
    key: Callable[[Message], bytes],
    horizon: timedelta,
    grace: timedelta,
    buckets: int,
    observers: Observers,
) -> op.Stream[Message]:
    """Drop repeats by `key`; keyed by a hash bucket so the state spreads over workers."""
    keyed = op.flat_map_batch(f"bucket_{name}", messages, KeyByBucket(key, buckets))
    count = partial(observers.metrics.observe_duplicates, name)
    fresh = op.stateful_batch(f"dedupe_{name}", keyed, dedupe_builder(horizon, grace, count))
    return op.flat_map_batch(f"unkey_{name}", fresh, values_of)


def __getattr__(name: str) -> Dataflow:
    """`flows.monitor:flow` for `python -m bytewax.run`, built only when asked for."""
    if name == "flow":
        from flows.job import assemble

        return assemble(load_config(os.environ.get("FINSENTRY_CONFIG"))).flow
    raise AttributeError(name)
