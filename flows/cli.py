"""The `finsentry` command: demo, run, score, generate, train, eval."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date
from pathlib import Path
from typing import Any

DEMO_OVERRIDES: dict[str, Any] = {
    "source.kind": "demo",
    "window.length_seconds": 600,
    # Template headlines repeat often; a wire repeating itself within a minute is a copy.
    "dedupe.horizon_seconds": 60,
    # One generator, read in order by one worker: nothing to wait for to reorder.
    "window.reorder_seconds": 0,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"finsentry: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="finsentry", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="stream a generated market day through the monitor")
    _job_options(demo)
    demo.add_argument("--minutes", type=int, default=390, help="length of the day (default 390)")
    demo.add_argument("--seed", type=int, default=None, help="generator seed")
    demo.add_argument("--surge-topic", default=None, help="topic that surges (default energy_oil)")
    demo.add_argument("--day", type=date.fromisoformat, default=None, help="date of the day")
    demo.set_defaults(command=_demo)

    run = sub.add_parser("run", help="run the long-running monitor job")
    _job_options(run)
    run.add_argument("--input", type=Path, help="JSON-lines file to read instead of the source")
    kafka = run.add_argument_group("Kafka")
    kafka.add_argument("--brokers", help="HOST:PORT[,HOST:PORT...]")
    kafka.add_argument("--input-topic", help="topic(s) to read, comma-separated")
    kafka.add_argument("--starting-offset", choices=("earliest", "latest"))
    kafka.add_argument("--scored-topic", help="write scored messages here")
    kafka.add_argument("--alerts-topic", help="write alert events here (key: fingerprint)")
    kafka.add_argument("--dead-letter-topic", help="write dead letters here (header: reason)")
    kafka.add_argument(
        "--exit-at-end",
        action="store_true",
        default=None,
        help="backfill: read to the end offsets found at start, close all windows, exit",
    )
    state = run.add_argument_group("recovery and scale-out")
    state.add_argument("--recovery-dir", type=Path, help="Bytewax snapshots (created if new)")
    state.add_argument("--snapshot-interval", type=float, help="seconds between snapshots")
    state.add_argument(
        "--state-dir", type=Path, help="sinks' memory, e.g. alerts sent (default: beside recovery)"
    )
    state.add_argument("--workers", type=int, default=1, help="worker threads per process")
    state.add_argument("--process-id", type=int, help="this process's index in --addresses")
    state.add_argument("--addresses", help="HOST:PORT of every process, comma-separated")
    run.set_defaults(command=_run)

    rep = sub.add_parser("replay", help="publish a JSON-lines file to a Kafka topic")
    rep.add_argument("file", type=Path)
    rep.add_argument("--brokers", required=True, help="HOST:PORT[,HOST:PORT...]")
    rep.add_argument("--topic", required=True)
    rep.add_argument(
        "--rate", type=float, default=0.0, help="items per second; 0: as fast as possible"
    )
    rep.add_argument("--partitions", type=int, default=1, help="partitions if the topic is created")
    rep.set_defaults(command=_replay)

    score = sub.add_parser("score", help="score texts (arguments) or JSON lines (stdin)")
    score.add_argument("texts", nargs="*", help="texts to score; none: read JSON lines on stdin")
    score.add_argument("--config", type=Path, help="YAML config (processors, inference)")
    score.set_defaults(command=_score)

    gen = sub.add_parser("generate", help="write a generated market day as JSON lines")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--minutes", type=int, default=390)
    gen.add_argument("--rate", type=float, default=24.0, help="items per event-time minute")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--surge-topic", default="energy_oil")
    gen.add_argument("--day", type=date.fromisoformat, default=None)
    gen.set_defaults(command=_generate)

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

    train = sub.add_parser("train", help="train the default model's topic and sentiment heads")
    train.add_argument("--data", type=Path, default=None, help="folder with *_train.csv")
    train.add_argument(
        "--out", type=Path, default=None, help="heads file, or the directory for --fine-tune"
    )
    train.add_argument("--seed", type=int, default=0)
    tune = train.add_argument_group("fine-tuning the encoder too")
    tune.add_argument("--fine-tune", action="store_true", help="train encoder and heads together")
    tune.add_argument("--epochs", type=float, default=2.0, help="passes over the larger set")
    tune.add_argument("--max-minutes", type=float, default=20.0, help="wall-clock budget")
    tune.add_argument(
        "--balance",
        type=float,
        default=0.5,
        help="class weights: frequency ** -BALANCE (0: none, 1: balanced; default 0.5)",
    )
    train.set_defaults(command=_train)

    export = sub.add_parser("export-onnx", help="the default encoder as int8 ONNX for CPUs")
    export.add_argument("--out", type=Path, default=None, help="directory (default: cache)")
    export.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder dir")
    export.add_argument("--no-quantize", action="store_true", help="keep float32 weights")
    export.add_argument("--data", type=Path, default=None, help="folder with *_valid.csv")
    export.set_defaults(command=_export_onnx)

    ev = sub.add_parser("eval", help="accuracy and macro-F1 of the default model on a CSV")
    ev.add_argument("--task", choices=("topic", "sentiment"), required=True)
    ev.add_argument("--data", type=Path, required=True, help="CSV with columns text,label")
    ev.add_argument("--heads", type=Path, default=None, help="head weights (default: committed)")
    ev.add_argument("--encoder", type=Path, default=None, help="a fine-tuned encoder directory")
    ev.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    ev.add_argument("--onnx-path", type=Path, default=None, help="ONNX export (default: cache)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N rows")
    ev.set_defaults(command=_eval)
    return p


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file")
    p.add_argument("--alerts-out", type=Path, help="write alert events here, one JSON per line")
    p.add_argument("--dead-letters-out", type=Path, help="write dead letters here (JSON lines)")
    p.add_argument("--windows-out", type=Path, help="write closed topic windows here")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="keep /metrics up this many seconds after the input ends",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--webhook-url", help="also POST alerts here (Alertmanager v4 format)")
    p.add_argument(
        "--webhook-secret",
        default=os.environ.get("FINSENTRY_WEBHOOK_SECRET"),
        help="HMAC-SHA256 secret for --webhook-url (default: $FINSENTRY_WEBHOOK_SECRET)",
    )


def _job_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "sinks.alerts_path": args.alerts_out,
        "sinks.dead_letters_path": args.dead_letters_out,
        "sinks.windows_path": args.windows_out,
        "metrics.port": args.metrics_port,
    }
    if args.webhook_url:
        receiver = {"name": "cli", "url": args.webhook_url, "secret": args.webhook_secret}
        overrides["webhook.receivers"] = [receiver]
    return overrides


def _demo(args: argparse.Namespace) -> int:
    from flows.config import load_config

    overrides = {
        **DEMO_OVERRIDES,
        "source.demo_seed": args.seed,
        "source.demo_surge_topic": args.surge_topic,
        **_job_overrides(args),
    }
    config = load_config(args.config, overrides=overrides)
    print(
        f"finsentry demo: a generated market day ({args.minutes} minutes), calm, then a "
        f"negative surge on {config.source.demo_surge_topic}; windows of "
        f"{config.window.length_seconds / 60:.0f} minutes.",
        flush=True,
    )
    from flows.sources.demo import DemoSource, MarketDay, previous_weekday

    day = MarketDay(
        day=args.day or previous_weekday(),
        minutes=args.minutes,
        surge_topic=config.source.demo_surge_topic,
        seed=config.source.demo_seed,
    )
    return _execute(config, args, DemoSource(day, config.source.batch_size))


def _run(args: argparse.Namespace) -> int:
    from flows.config import load_config

    overrides = _job_overrides(args) | {
        "kafka.brokers": _split(args.brokers),
        "kafka.input_topics": _split(args.input_topic),
        "kafka.starting_offset": args.starting_offset,
        "kafka.scored_topic": args.scored_topic,
        "kafka.alerts_topic": args.alerts_topic,
        "kafka.dead_letter_topic": args.dead_letter_topic,
        "kafka.exit_at_end": args.exit_at_end,
        "recovery.dir": args.recovery_dir,
        "recovery.snapshot_interval_seconds": args.snapshot_interval,
        "sinks.state_dir": args.state_dir,
    }
    if args.input is not None:
        if not args.input.is_file():
            raise FileNotFoundError(f"input file not found: {args.input}")
        overrides |= {"source.kind": "file", "source.path": str(args.input)}
    elif args.input_topic:
        overrides["source.kind"] = "kafka"
    config = load_config(args.config, overrides=overrides)
    return _execute(config, args, None)


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _replay(args: argparse.Namespace) -> int:
    from flows.replay import replay

    if not args.file.is_file():
        raise FileNotFoundError(f"input file not found: {args.file}")
    n = replay(args.file, _split(args.brokers) or [], args.topic, args.rate, args.partitions)
    print(f"published {n:,} records to {args.topic}")
    return 0


def _execute(config: Any, args: argparse.Namespace, source: Any) -> int:
    """Run the flow to its end (or forever, for endless sources) and print a summary."""
    from datetime import timedelta

    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.metrics import Metrics
    from flows.monitor import build_flow
    from flows.runtime import trim_freed_memory_every, tune_garbage_collector
    from flows.sinks.console import Progress
    from flows.sinks.observe import Observers
    from flows.sinks.webhook import WebhookDelivery
    from flows.steps import build_chain
    from flows.wiring import build_outputs, build_source, prepare_recovery

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python logs every failed reconnect; the Kafka metrics already tell that story.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    process_id = getattr(args, "process_id", None)
    addresses = _split(getattr(args, "addresses", None))
    observers = Observers(Metrics(), None if args.quiet else Progress())
    if config.metrics.port is not None:
        # One endpoint per process: process i of a cluster serves on port + i.
        wanted = config.metrics.port + (process_id or 0) if config.metrics.port else 0
        port = observers.metrics.serve(wanted, config.metrics.host)
        print(f"metrics: http://{config.metrics.host}:{port}/metrics", flush=True)
    source = source or build_source(config, observers)
    if config.source.kind == "kafka":
        source.list_parts()  # fails now, with the broker's address, if none answers
    delivery = None
    if config.webhook.receivers:
        delivery = WebhookDelivery(config.webhook, observers.metrics.registry)
    outputs = build_outputs(config, observers, delivery)
    # Models load now, so a model that cannot be loaded fails the start, clearly.
    chain = build_chain(config)
    flow = build_flow(config, source=source, outputs=outputs, observers=observers, chain=chain)
    recovery = None
    if config.recovery.dir is not None:
        prepare_recovery(config.recovery.dir, config.recovery.partitions)
        recovery = RecoveryConfig(config.recovery.dir)
    tune_garbage_collector()
    trim_freed_memory_every()
    started = time.monotonic()
    try:
        cli_main(
            flow,
            workers_per_process=getattr(args, "workers", 1),
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=config.recovery.snapshot_interval_seconds),
            recovery_config=recovery,
        )
        _summary(observers, time.monotonic() - started)
        if args.linger > 0:
            print(f"input ended; serving metrics for {args.linger:.0f} s more", flush=True)
            time.sleep(args.linger)
    finally:
        if delivery is not None:
            delivery.close()  # what is still undelivered waits in the outbox
    return 0


def _summary(observers: Any, wall: float) -> None:
    from flows.metrics import counter_values

    m = observers.metrics
    read = sum(counter_values(m.messages_in).values())
    scored = sum(counter_values(m.messages_scored).values())
    dups = sum(counter_values(m.duplicates).values())
    dead = counter_values(m.dead_letters)
    alerts = counter_values(m.alerts)
    windows = sum(counter_values(m.windows_closed).values())
    print(
        f"done in {wall:.1f} s: {read:,.0f} read, {scored:,.0f} scored "
        f"({scored / max(wall, 1e-9):,.0f}/s), {dups:,.0f} duplicates, "
        f"{sum(dead.values()):,.0f} dead letters"
        + (f" ({', '.join(f'{k[0]}: {v:.0f}' for k, v in sorted(dead.items()))})" if dead else "")
        + f", {windows:,.0f} windows closed",
        flush=True,
    )
    fired = sorted(k[0] for k, v in alerts.items() if k[1] == "firing" and v)
    print(f"alerts fired: {', '.join(fired) if fired else 'none'}", flush=True)


def _score(args: argparse.Namespace) -> int:
    from datetime import datetime

    from flows.config import load_config
    from flows.steps import build_chain
    from processors.message import DeadLetter, to_json
    from processors.parse import Parser

    config = load_config(args.config)
    if args.texts:
        lines = [json.dumps({"text": t}).encode() for t in args.texts]
        origin = "argv"
    else:
        lines = [line.rstrip(b"\r\n") for line in sys.stdin.buffer if line.strip()]
        origin = "stdin"
    parser = Parser(max_text_chars=config.parse.max_text_chars)
    now = datetime.now(UTC)
    parsed = [parser.parse(line, origin, str(i + 1), now) for i, line in enumerate(lines)]
    bad = [p for p in parsed if isinstance(p, DeadLetter)]
    for letter in bad:
        print(
            f"finsentry: {origin} item {letter.position}: {letter.reason}: {letter.detail}",
            file=sys.stderr,
        )
    good = [p for p in parsed if not isinstance(p, DeadLetter)]
    result = build_chain(config).process(good) if good else None
    out = sys.stdout.buffer
    for message in result.scored if result else []:
        out.write(to_json(message) + b"\n")
    for letter in result.dead_letters if result else []:
        print(f"finsentry: {letter.position}: {letter.reason}: {letter.detail}", file=sys.stderr)
    out.flush()
    return 1 if bad or (result and result.dead_letters) else 0


def _generate(args: argparse.Namespace) -> int:
    from flows.sources.demo import MarketDay, generate, previous_weekday

    day = MarketDay(
        day=args.day or previous_weekday(),
        minutes=args.minutes,
        rate=args.rate,
        surge_topic=args.surge_topic,
        seed=args.seed,
    )
    n = 0
    with args.out.open("wb") as f:
        for line in generate(day):
            f.write(line + b"\n")
            n += 1
    print(f"wrote {n:,} items to {args.out}")
    return 0


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


def _train(args: argparse.Namespace) -> int:
    from processors.heads import DEFAULT_HEADS_PATH
    from processors.training import find_data_dir, train_heads

    data = args.data or find_data_dir()
    if args.fine_tune:
        from processors.finetune import DEFAULT_FINETUNED_DIR, fine_tune

        figures = fine_tune(
            data,
            args.out or DEFAULT_FINETUNED_DIR,
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            balance=args.balance,
            seed=args.seed,
            progress=lambda line: print(f"fine-tune: {line}", file=sys.stderr, flush=True),
        )
    else:
        figures = train_heads(data, args.out or DEFAULT_HEADS_PATH, seed=args.seed)
    print(json.dumps(figures, indent=2))
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from processors.onnx import accuracy_gate, check_gate, default_onnx_dir, export_onnx
    from processors.training import find_data_dir

    out = args.out or default_onnx_dir(args.encoder)
    manifest = export_onnx(out, args.encoder, quantize=not args.no_quantize)
    print(f"exported to {out}: {json.dumps(manifest)}", file=sys.stderr, flush=True)
    if not args.no_quantize:
        gate = accuracy_gate(out, args.data or find_data_dir(), encoder_dir=args.encoder)
        print(json.dumps(gate))
        check_gate(out)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from processors.heads import ClassifierHeads, heads_path_for
    from processors.models.default import DefaultModel
    from processors.training import evaluate

    if not args.data.is_file():
        raise FileNotFoundError(f"data file not found: {args.data}")
    heads = args.heads or heads_path_for(args.encoder)
    model = DefaultModel(
        heads,
        max_tokens=ClassifierHeads.load(heads).max_tokens,  # truncate as in training
        encoder=args.encoder,
        backend=args.backend,
        onnx_path=args.onnx_path,
    )
    print(json.dumps(evaluate(args.task, args.data, heads, model.encoder, args.limit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
