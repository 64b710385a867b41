"""`finsentry bench`: throughput of the naive baseline, the processors, the whole flow."""

from __future__ import annotations

import argparse
import json
import sys
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
    bench.set_defaults(command=_bench)


def _bench(args: argparse.Namespace) -> int:
    from flows.bench import run_bench, table
    from flows.config import load_config

    config = load_config(args.config)
    results = run_bench(
        config,
        n=args.n,
        naive_n=args.naive,
        flow_n=args.flow,
        overhead_n=args.overhead,
        int8=args.int8,
        repeat=args.repeat,
        progress=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True),
    )
    print(table(results), file=sys.stderr)
    print(json.dumps(results))
    return 0
