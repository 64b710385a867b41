"""The finsentry dataflow, top to bottom as in the design diagram.

    source -> parse -> score (processor chain, where each partition is read)
           -> order (one event order for the whole stream; de-duplicate by id, then text)
           -> event-time windows per key -> detect -> alerts
    with dead letters (parse errors, processor errors, late items) on their own sink.

The edges (source, sinks, chain) come in from `flows.job.assemble`, which builds them
from the config. Run it with `finsentry run --config FILE` or `python -m bytewax.run
flows.monitor:flow` (the latter reads the config file named by `FINSENTRY_CONFIG`).
"""

from __future__ import annotations

import os

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from flows.config import Config, load_config
from flows.sinks.observe import Observers
from flows.sources import PartitionedSource
from flows.steps import (
    ONE_KEY,
    Detect,
    ParseStep,
    ScoreStep,
    keyed,
    order_builder,
    values_of,
    window_builder,
)
from flows.wiring import Outputs
from processors.chain.chain import Chain
from processors.envelope.message import DeadLetter, Message, TopicWindow
from processors.stream.window import UNCLASSIFIED


def build_flow(
    config: Config,
    *,
    source: PartitionedSource,
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
    valid = op.branch("valid", parsed, is_not_dead_letter)
    scored_or_failed = op.flat_map_batch("score", valid.trues, ScoreStep(config, observers, chain))
    scored = op.branch("scored", scored_or_failed, is_not_dead_letter)

    one_stream = op.flat_map_batch("one_stream", scored.trues, keyed(ONE_KEY))
    order = order_builder(config, source.origins(), observers.metrics.observe_duplicates)
    in_order = op.stateful_batch("order", one_stream, order)
    fresh = op.flat_map_batch("fresh", in_order, messages_of)

    windowed = op.stateful_batch("window", in_order, window_builder(config.window))
    closed_or_late = op.branch(
        "closed", op.flat_map_batch("unkey", windowed, values_of), is_not_dead_letter
    )
    windows: op.Stream[tuple[str, TopicWindow]] = closed_or_late.trues
    classified = op.filter("classified", windows, lambda kv: kv[0] != UNCLASSIFIED)
    detect = Detect(config.detector, config.window, config.watchlist.live())
    alerts = op.key_rm("alerts", op.stateful_flat_map("detect", classified, detect))

    dead_letters = op.merge("dead_letters", valid.falses, scored.falses, closed_or_late.falses)
    outputs.attach(
        alerts=alerts,
        dead_letters=dead_letters,
        windows=op.key_rm("windows", windows),
        scored=fresh,
    )
    return flow


def is_not_dead_letter(item: object) -> bool:
    return not isinstance(item, DeadLetter)


def messages_of(batch: list[tuple[str, tuple[object, Message | None]]]) -> list[Message]:
    """The ordering point's messages, without their order times and watermarks."""
    return [message for _, (_, message) in batch if message is not None]


def __getattr__(name: str) -> Dataflow:
    """`flows.monitor:flow` for `python -m bytewax.run`, built only when asked for."""
    if name == "flow":
        from flows.job import assemble

        return assemble(load_config(os.environ.get("FINSENTRY_CONFIG"))).flow
    raise AttributeError(name)
