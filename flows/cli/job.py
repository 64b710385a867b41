"""The job's commands: run, demo, score, generate, replay."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.config import Config
    from flows.job import Job
    from flows.sinks.observe import Observers

DEMO_OVERRIDES: dict[str, Any] = {
    "source.kind": "demo",
    "window.length_seconds": 600,
    # Template headlines repeat often; a wire repeating itself within a minute is a copy.
    "dedupe.horizon_seconds": 60,
}


# The CLI receiver's secret, read here rather than from a flag, which `ps` would show.
SECRET_ENV = "FINSENTRY_WEBHOOK_SECRET"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the job's subcommands to the `finsentry` parser."""
    demo = sub.add_parser("demo", help="stream a generated market day through the monitor")
    job_options(demo)
    demo.add_argument("--minutes", type=int, default=None, help="length of the day (default 390)")
    demo.add_argument("--seed", type=int, default=None, help="generator seed")
    demo.add_argument("--surge-topic", default=None, help="topic that surges (default energy_oil)")
    demo.add_argument("--day", type=date.fromisoformat, default=None, help="date of the day")
    demo.set_defaults(command=_demo)

    run = sub.add_parser("run", help="run the long-running monitor job")
    job_options(run)
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
        "--state-dir",
        type=Path,
        help="sinks' memory, e.g. alerts sent (default: beside --recovery-dir, else"
        " $XDG_STATE_HOME/finsentry or ~/.local/state/finsentry)",
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
    gen.add_argument(
        "--companies",
        action="store_true",
        help="a company day instead: calm news on 30 large companies, then a surge of "
        "negative stories on the first, one story echoed 60 times on the second and a "
        "burst of neutral coverage on the third (docs/entities.md)",
    )
    gen.set_defaults(command=_generate)


def job_options(p: argparse.ArgumentParser) -> None:
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
    secret = p.add_mutually_exclusive_group()
    secret.add_argument(
        "--webhook-secret-file",
        type=Path,
        help=f"file holding the HMAC-SHA256 secret for --webhook-url (default: ${SECRET_ENV})",
    )
    secret.add_argument(
        "--webhook-secret", help="deprecated: it shows in ps; use --webhook-secret-file"
    )


def _job_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "sinks.alerts_path": args.alerts_out,
        "sinks.dead_letters_path": args.dead_letters_out,
        "sinks.windows_path": args.windows_out,
        "metrics.port": args.metrics_port,
    }
    secret = _webhook_secret(args)
    if args.webhook_url:
        overrides["webhook.receivers"] = [{"name": "cli", "url": args.webhook_url, **secret}]
    elif args.webhook_secret_file is not None:
        raise ValueError("--webhook-secret-file needs --webhook-url")
    return overrides


def _webhook_secret(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI receiver's secret: --webhook-secret-file, else --webhook-secret (it still
    works but warns: any user on the machine can read it in `ps`), else the environment."""
    if args.webhook_secret_file is not None:
        return {"secret_file": args.webhook_secret_file}
    if args.webhook_secret is None:
        return {"secret": os.environ.get(SECRET_ENV) or None}
    print(
        f"finsentry: warning: --webhook-secret shows in ps; use --webhook-secret-file"
        f" or ${SECRET_ENV}",
        file=sys.stderr,
        flush=True,
    )
    return {"secret": args.webhook_secret}


def _demo(args: argparse.Namespace) -> int:
    from flows.config import load_config

    overrides = {
        **DEMO_OVERRIDES,
        "source.demo_minutes": args.minutes,
        "source.demo_day": args.day,
        "source.demo_seed": args.seed,
        "source.demo_surge_topic": args.surge_topic,
        **_job_overrides(args),
    }
    config = load_config(args.config, overrides=overrides)
    print(
        f"finsentry demo: a generated market day ({config.source.demo_minutes} minutes), calm, "
        f"then a negative surge on {config.source.demo_surge_topic}; windows of "
        f"{config.window.length_seconds / 60:.0f} minutes.",
        flush=True,
    )
    return execute(config, args)


def _run(args: argparse.Namespace) -> int:
    from flows.config import load_config

    overrides = _job_overrides(args) | {
        "kafka.brokers": split(args.brokers),
        "kafka.input_topics": split(args.input_topic),
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
    return execute(config, args)


def split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _replay(args: argparse.Namespace) -> int:
    from flows.replay import replay

    if not args.file.is_file():
        raise FileNotFoundError(f"input file not found: {args.file}")
    n = replay(args.file, split(args.brokers) or [], args.topic, args.rate, args.partitions)
    print(f"published {n:,} records to {args.topic}")
    return 0


def execute(config: Config, args: argparse.Namespace) -> int:
    """Run the job `config` describes to its end (or forever) and print a summary."""
    from flows.job import assemble
    from flows.runtime import trim_freed_memory_every, tune_garbage_collector
    from flows.sinks.console import Progress

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # kafka-python logs every failed reconnect; the Kafka metrics already tell that story.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    process_id = getattr(args, "process_id", None)
    job = assemble(config, progress=None if args.quiet else Progress(), process_id=process_id)
    if job.metrics_port is not None:
        print(f"metrics: http://{config.metrics.host}:{job.metrics_port}/metrics", flush=True)
    tune_garbage_collector()
    trim_freed_memory_every()
    started = time.monotonic()
    try:
        job.run(getattr(args, "workers", 1), process_id, split(getattr(args, "addresses", None)))
        summary(job.observers, time.monotonic() - started)
        undelivered = drain_webhooks(job, config.webhook.drain_seconds)
        if args.linger > 0:
            print(f"input ended; serving metrics for {args.linger:.0f} s more", flush=True)
            time.sleep(args.linger)
    finally:
        job.close()
    return UNDELIVERED_EXIT if undelivered else 0


UNDELIVERED_EXIT = 3


def drain_webhooks(job: Job, seconds: float) -> int:
    """At the end of a finite input: wait up to `seconds` for the webhook outbox to empty;
    returns (and reports) how many deliveries are still pending, which wait for a rerun."""
    if job.delivery is None:
        return 0
    job.delivery.start()  # a flow that raised no alert never built the sink
    job.delivery.drain(seconds)
    left = job.delivery.pending()
    if left:
        print(
            f"error: {left} webhook deliveries still pending after {seconds:g} s;"
            f" they stay in the outbox and are sent by the next run on this state dir",
            file=sys.stderr,
            flush=True,
        )
    return left


def summary(observers: Observers, wall: float) -> None:
    """The run in two lines: what was read, scored and dropped; which topics fired."""
    from flows.metrics import counter_values
    from flows.sinks.console import alert_key

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
        + (
            f" ({', '.join(f'{k[0]}: {v:.0f}' for k, v in sorted(dead.items()) if v)})"
            if any(dead.values())
            else ""
        )
        + f", {windows:,.0f} windows closed",
        flush=True,
    )
    fired = sorted(
        alert_key(name, topic)
        for (name, topic, status), v in alerts.items()
        if status == "firing" and v
    )
    entities = counter_values(m.entity_alerts)
    fired += [
        alert_key(name, f"{v:.0f} entities")
        for (name, status), v in sorted(entities.items())
        if status == "firing" and v
    ]
    print(f"alerts fired: {', '.join(fired) if fired else 'none'}", flush=True)


def _score(args: argparse.Namespace) -> int:
    from datetime import datetime

    from flows.config import load_config
    from flows.models import build_chain
    from processors.envelope.message import DeadLetter, to_json
    from processors.envelope.parse import Parser

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

    if args.companies:
        return _generate_companies(args.out, args.day or previous_weekday(), args.seed)
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


def _generate_companies(out: Path, day: date, seed: int) -> int:
    from flows.sources.company_day import COMPANY_DAY_TICKERS, CompanyDay, generate_company_day
    from processors.entities import EntityCatalog

    names = {e.id: e.names[0] for e in EntityCatalog.builtin()}
    companies = [(names[ticker], ticker) for ticker in COMPANY_DAY_TICKERS]
    items = generate_company_day(CompanyDay(day, companies, seed=seed))
    out.write_text("".join(json.dumps(item) + "\n" for item in items))
    surge, echo, burst = (ticker for _, ticker in companies[:3])
    print(
        f"wrote {len(items):,} items to {out}: surge on {surge}, echo on {echo}, burst on {burst}"
    )
    return 0
