"""`finsentry bench`: throughput of the naive baseline, the processors, the whole flow;
with `--live`, the latencies of a live stream through Kafka to scored messages and alerts."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bench` to the `finsentry` parser."""
    bench = sub.add_parser("bench", help="throughput: naive baseline, processors, whole flow")
    bench.add_argument("--config", type=Path, help="YAML config (processors, inference)")
    bench.add_argument("-n", type=int, default=2000, help="messages for the processors")
    bench.add_argument("--naive", type=int, default=200, help="messages for the naive baseline")
    bench.add_argument("--flow", type=int, default=2000, help="items for the flow with models")
    bench.add_argument("--overhead", type=int, default=100_000, help="items for the no-op flow")
    bench.add_argument(
        "--int8",
        action="store_true",
        help="also time the processors on the int8 ONNX backend (exported on first use)",
    )
    bench.add_argument("--repeat", type=int, default=3, help="runs of the no-op flow (median)")
    live = bench.add_argument_group(
        "live latency (--live)",
        "a steady stream with event time = now through a Kafka broker into `finsentry run`: "
        "ingest -> scored and window deadline -> alert at a local webhook receiver",
    )
    live.add_argument("--live", action="store_true", help="measure latencies on a live stream")
    duration = live.add_mutually_exclusive_group()
    duration.add_argument("--seconds", type=float, help="measured stream length (default 120)")
    duration.add_argument("--minutes", type=float, help="measured stream length in minutes")
    live.add_argument(
        "--rate", type=float, help="items per second; default: half the measured capacity"
    )
    live.add_argument(
        "--chain",
        choices=("default", "noop"),
        help="default: the configured processors; noop: the pipeline alone",
    )
    live.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="a Kafka to use; default: start a local Kafka-protocol broker (noida-db)",
    )
    live.add_argument("--window-seconds", type=float, help="tumbling window length (default 5)")
    live.add_argument(
        "--lateness-seconds", type=float, help="the windows' allowed lateness (default 1)"
    )
    live.add_argument(
        "--burst",
        type=float,
        help="a burst window's extra items, times the rate (default 0.25; noop: 5)",
    )
    live.add_argument("--burst-every", type=int, help="windows between bursts (default 3)")
    bench.set_defaults(command=_bench)


def _bench(args: argparse.Namespace) -> int:
    from flows.bench import run_bench, table
    from flows.config import load_config

    if args.live:
        return _live(args)
    results = run_bench(
        load_config(args.config),
        n=args.n,
        naive_n=args.naive,
        flow_n=args.flow,
        overhead_n=args.overhead,
        int8=args.int8,
        repeat=args.repeat,
        progress=_progress,
    )
    print(table(results), file=sys.stderr)
    print(json.dumps(results))
    return 0


def _live(args: argparse.Namespace) -> int:
    from flows.bench import LiveBenchFailed, LiveRequest, live_bench, live_table
    from flows.config import load_config

    # The options named as LiveRequest's fields, where given; its defaults hold otherwise.
    names = (field.name for field in fields(LiveRequest))
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.minutes is not None:
        given["seconds"] = args.minutes * 60
    try:
        results = live_bench(load_config(args.config), LiveRequest(**given), _progress)
    except LiveBenchFailed as exc:
        print(f"finsentry: error: {exc}", file=sys.stderr)
        return 2
    print(live_table(results), file=sys.stderr)
    print(json.dumps(results))
    return 0


def _progress(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)
