"""The `finsentry` command: the job (run, demo, score, generate, replay), the offline
work on models (train, eval, export-onnx), and bench.

Each module registers its own subcommands next to their handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flows.cli import backtest, bench, job, offline


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"finsentry: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """`finsentry` and every subcommand's arguments."""
    parser = argparse.ArgumentParser(prog="finsentry", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for commands in (job, offline, bench, backtest):
        commands.register(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
