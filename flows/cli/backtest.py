"""`finsentry backtest`: replay a history through the monitor, score alerts against events."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    bt = sub.add_parser(
        "backtest",
        help="replay a JSON-lines history through the monitor and score its alerts",
        description="Replay HISTORY at full speed through the same flow as `finsentry run "
        "--input`, then score the firing alerts against the labelled events: a table, "
        "then one JSON line. See docs/backtest.md.",
    )
    bt.add_argument("history", type=Path, help="JSON-lines history (finsentry's input format)")
    bt.add_argument("--events", type=Path, required=True, help="YAML: events and quiet stretches")
    bt.add_argument("--config", type=Path, help="YAML config file (windows, detector, models)")
    bt.add_argument(
        "--scored",
        type=Path,
        help="cache of the scored messages: written by the first run, and when it exists the "
        "models are skipped and the cache is re-windowed (seconds instead of minutes)",
    )
    bt.add_argument("--out-dir", type=Path, help="keep alerts.jsonl and windows.jsonl here")
    bt.add_argument(
        "--sweep", action="store_true", help="also try a grid of detector settings and windows"
    )
    bt.add_argument("--report", type=Path, help="write a self-contained HTML report here")
    bt.add_argument("--quiet", action="store_true", help="no progress lines")
    bt.set_defaults(command=_backtest)


def _backtest(args: argparse.Namespace) -> int:
    from flows import backtest as bt
    from flows.sinks.console import Progress

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.history.is_file():
        raise FileNotFoundError(f"history not found: {args.history}")
    events = bt.load_events(args.events)
    out_dir, tmp = bt.work_dir(args.out_dir)
    started = time.monotonic()
    try:
        history = args.history
        scored = args.scored
        if scored is None and args.sweep:
            scored = out_dir / "scored.jsonl"
        cached = scored is not None and scored.is_file()
        config = bt.backtest_config(
            history, out_dir, args.config, scored_path=None if cached else _partial(scored)
        )
        if cached:
            assert scored is not None
            messages = bt.read_scored(scored)
            _note(f"re-windowing {len(messages):,} cached scored messages from {scored}")
            outcome = bt.rewindow(messages, config)
            bt.write_outcome(outcome, config)
        else:
            outcome = bt.replay(config, progress=None if args.quiet else Progress(sys.stderr))
            if scored is not None:
                _partial(scored).replace(scored)  # a complete cache only
                _note(f"scored messages cached in {scored}")
            messages = bt.read_scored(scored) if args.sweep and scored else []
        for note in outcome.notes:
            _note(note)
        score = bt.score_alerts(outcome.alerts, events)
        result = score.to_json()
        if args.sweep:
            rows = bt.sweep(messages, config, events)
            print(bt.format_sweep(rows))
            print()
            result["sweep"] = rows
        print(bt.format_table(score))
        if args.report is not None:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(bt.render_report(outcome, events, score))
            _note(f"report: {args.report}")
        _note(f"done in {time.monotonic() - started:.1f} s")
        print(json.dumps(result), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


def _partial(path: Path | None) -> Path | None:
    return None if path is None else path.with_name(path.name + ".partial")


def _note(text: str) -> None:
    print(f"finsentry backtest: {text}", file=sys.stderr, flush=True)
