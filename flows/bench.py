"""`finsentry bench`: throughput of the naive baseline, the processors and the flow.

All run in one process, so their ratios are meaningful even on a noisy, shared
machine:

- naive: one Hugging Face `pipeline` call per message per task, as the usual examples do;
- processors: finsentry's chain on batches (one encoder pass serves both heads), on the
  same generated headlines as the naive baseline; optionally on the int8 ONNX backend;
- flow: the whole Bytewax dataflow from a file, with the configured chain and with a
  no-op processor (the pipeline's own cost: parsing, de-duplication, windows, metrics),
  on headlines made distinct (1% repeats, as in a real feed) so that nearly all of
  them go through every step.

`bench --live` measures latency instead, where the job runs as in production: a
steady stream with event time = now through a Kafka broker into `finsentry run` in a
process of its own, from each item's sending to its scored message on the scored
topic, and from each window's deadline to its alert at a local webhook receiver.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import msgspec
import numpy as np
import yaml

from flows.config import Config
from flows.sources.demo import MarketDay, generate
from processors.envelope.message import Message
from processors.envelope.parse import Parser

BENCH_DAY = date(2024, 3, 14)
WARM_UP_SEED = 97


@dataclass(frozen=True)
class Measure:
    name: str
    messages: int
    seconds: float
    batch_seconds: tuple[float, ...] = ()
    batch_size: int | None = None
    gpu_busy: float | None = None
    cpu_seconds: float | None = None  # all of the process's threads
    scored: int | None = None  # of the flow's items: those not rejected or repeats
    runs_seconds: tuple[float, ...] = ()  # every repeat, when the measure is a median

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.messages / self.seconds, 1) if self.seconds else None,
        }
        if self.scored is not None:
            out["scored"] = self.scored
        if self.cpu_seconds:
            out["msgs_per_cpu_s"] = round(self.messages / self.cpu_seconds, 1)
        if len(self.runs_seconds) > 1:
            out["runs_msgs_per_s"] = [round(self.messages / s, 1) for s in self.runs_seconds]
        if self.batch_seconds:
            p50, p99 = p50_p99(self.batch_seconds)
            out["batch_size"] = self.batch_size
            out["batch_p50_s"] = round(p50, 4)
            out["batch_p99_s"] = round(p99, 4)
        if self.gpu_busy is not None:
            out["gpu_busy"] = round(self.gpu_busy, 3)
        return out


def p50_p99(values: Sequence[float]) -> tuple[float, float]:
    """The median and the 99th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def headlines(n: int, seed: int = 3, distinct: bool = False) -> list[bytes]:
    """`n` realistic JSON-lines items (a generated market day, as long as needed).

    `distinct` makes every text unique but for 1% syndicated copies, as in a real feed,
    so that de-duplication passes nearly all of them on to the windows.
    """
    minutes = 390
    rate = max(24.0, n / minutes * 1.05)
    day = MarketDay(
        BENCH_DAY,
        minutes=minutes,
        rate=rate,
        seed=seed,
        malformed_share=0.0,
        distinct_texts=distinct,
    )
    return list(generate(day))[:n]


def messages_from(lines: Sequence[bytes]) -> list[Message]:
    parser = Parser()
    now = datetime.now(UTC)
    return [
        m
        for m in (parser.parse(line, "bench", None, now) for line in lines)
        if isinstance(m, Message)
    ]


class GpuSampler:
    """Samples `torch.cuda.utilization()` while running; None on machines without CUDA."""

    def __init__(self, every: float = 0.05) -> None:
        import torch

        self.enabled = torch.cuda.is_available()
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.every):
            try:
                self.samples.append(torch.cuda.utilization() / 100.0)
            except Exception:
                self.enabled = False
                return

    @property
    def busy(self) -> float | None:
        return float(np.mean(self.samples)) if self.enabled and self.samples else None


def bench_processors(config: Config, messages: list[Message], batch_size: int) -> Measure:
    from flows.models import build_chain

    chain = build_chain(config)
    # Warm-up (first calls allocate and compile) on other texts: the default model keeps
    # its latest pass for the next task, so a batch seen in the warm-up would come free.
    chain.process(messages_from(headlines(batch_size, seed=WARM_UP_SEED)))
    batch_seconds = []
    with GpuSampler() as gpu:
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(messages), batch_size):
            t = time.perf_counter()
            chain.process(messages[i : i + batch_size])
            batch_seconds.append(time.perf_counter() - t)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Measure(
        "processors", len(messages), total, tuple(batch_seconds), batch_size, gpu.busy, cpu
    )


def bench_naive(config: Config, messages: list[Message]) -> Measure:
    """The examples' way: a feature-extraction pipeline call per message, per task."""
    import torch
    from transformers import AutoTokenizer, pipeline

    from processors.models.encoder import (
        default_model_dir,
        load_encoder,
        parse_pooling,
        pick_device,
        pool,
    )
    from processors.models.heads import ClassifierHeads

    heads = ClassifierHeads.load(config.processors[0].models[0].heads)
    device = pick_device(config.inference.device)
    # The same model as the processors': the packaged encoder with the heads' deltas.
    extract = pipeline(
        "feature-extraction",
        model=load_encoder(default_model_dir(), heads.encoder_deltas),
        tokenizer=AutoTokenizer.from_pretrained(default_model_dir(), local_files_only=True),
        device=device,
        framework="pt",
    )
    parts = parse_pooling(heads.pooling)

    def classify(text: str, task: str) -> str:
        hidden = extract(text, return_tensors=True)  # [1, tokens, dim]
        mask = torch.ones(hidden.shape[:2], dtype=torch.long)
        probabilities = heads.predict(pool(hidden.to(torch.float32), mask, parts))[task]
        return heads.labels[task][int(probabilities.argmax())]

    classify(messages[0].body.text, "topic")  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for message in messages:
        for task in ("topic", "sentiment"):
            classify(message.body.text, task)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Measure("naive", len(messages), seconds, cpu_seconds=cpu)


def bench_flow(name: str, config: Config, lines: Sequence[bytes], repeat: int = 1) -> Measure:
    """The whole flow over `lines` from a file; with `repeat`, the median of that many
    runs (a shared machine's noise is larger than the differences worth seeing)."""
    return bench_flows({name: config}, lines, repeat)[name]


def bench_flows(
    configs: Mapping[str, Config], lines: Sequence[bytes], repeat: int = 1
) -> dict[str, Measure]:
    """Each config's whole flow over `lines`, the median of `repeat` runs, the configs
    run in turn (a, b, a, b, ...) so that a shared machine's drift falls on all alike."""
    runs: dict[str, list[Measure]] = {name: [] for name in configs}
    for _ in range(repeat):
        for name, config in configs.items():
            runs[name].append(_run_flow(name, config, lines))
    medians = {}
    for name, measures in runs.items():
        ordered = sorted(measures, key=_seconds)
        medians[name] = replace(
            ordered[len(ordered) // 2], runs_seconds=tuple(m.seconds for m in ordered)
        )
    return medians


def without_entities_and_stories(config: Config) -> Config:
    """`config` without the entities processor and with stories as exact copies only
    (`window.story_horizon_seconds: 0`, one hash per item, which windows always take):
    what entity matching and story finding add shows against it."""
    processors = [p for p in config.processors if p.kind != "entities"]
    window = config.window.model_copy(update={"story_horizon_seconds": 0})
    return config.model_copy(update={"processors": processors, "window": window})


def _seconds(measure: Measure) -> float:
    return measure.seconds


def _run_flow(name: str, config: Config, lines: Sequence[bytes]) -> Measure:
    from bytewax.testing import run_main

    from flows.job import assemble
    from flows.metrics import counter_values
    from flows.runtime import tune_garbage_collector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        source = config.source.model_copy(update={"kind": "file", "path": path})
        # The models load in the flow, on its first batch, as part of what is timed.
        job = assemble(config.model_copy(update={"source": source}), load_models=False)
        tune_garbage_collector()
        started, cpu = time.perf_counter(), time.process_time()
        run_main(job.flow)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        job.close()
    m = job.observers.metrics
    read = int(sum(counter_values(m.messages_in).values()))
    scored = int(sum(counter_values(m.messages_scored).values()))
    return Measure(name, read, seconds, cpu_seconds=cpu, scored=scored)


def run_bench(
    config: Config,
    n: int = 2000,
    naive_n: int = 200,
    flow_n: int = 2000,
    overhead_n: int = 100_000,
    int8: bool = False,
    repeat: int = 3,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """All measures as one JSON-ready dict; `int8` adds the processors on the default
    model's int8 ONNX backend, on the same messages. The no-op flow, short and the
    most sensitive to a shared machine's noise, is the median of `repeat` runs."""
    import torch

    from flows.config import ProcessorConfig
    from processors.models.encoder import pick_device, pick_dtype

    batch_size = config.inference.batch_size
    messages = messages_from(headlines(n))
    device = pick_device(config.inference.device)
    results: dict[str, Any] = {
        "device": str(device),
        "dtype": str(pick_dtype(config.inference.dtype, device)).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "max_tokens": config.inference.max_tokens,
        "processors": [p.name for p in config.processors],
    }
    progress(f"naive baseline: {naive_n} messages, one pipeline call per message per task")
    naive = bench_naive(config, messages[:naive_n])
    results["naive"] = naive.figures()
    progress(f"processors: {n} messages in batches of {batch_size}")
    chain = bench_processors(config, messages, batch_size)
    results["processors"] = chain.figures()
    results["speedup_vs_naive"] = round(
        (chain.messages / chain.seconds) / (naive.messages / naive.seconds), 2
    )
    if int8:
        progress(f"processors on the int8 ONNX backend: {n} messages in batches of {batch_size}")
        onnx = config.model_copy(
            update={"inference": config.inference.model_copy(update={"backend": "onnx"})}
        )
        quantised = bench_processors(onnx, messages, batch_size)
        results["processors_int8"] = quantised.figures()
        results["int8_speedup_vs_fp32"] = round(chain.seconds / quantised.seconds, 2)
    progress(
        f"whole flow, configured chain, and without entities and story finding: {flow_n} "
        f"items, median of {repeat} runs each, in turn"
    )
    flows = bench_flows(
        {"flow": config, "flow_plain": without_entities_and_stories(config)},
        headlines(flow_n, distinct=True),
        repeat,
    )
    results["flow"] = flows["flow"].figures()
    results["flow_plain"] = flows["flow_plain"].figures()
    # The share of the plain flow's throughput that entities and stories take.
    results["entities_stories_cost"] = round(
        1 - flows["flow_plain"].seconds / flows["flow"].seconds, 3
    )
    progress(f"whole flow, no-op processor: {overhead_n} items, median of {repeat} runs")
    noop = config.model_copy(update={"processors": [ProcessorConfig(name="noop", kind="noop")]})
    results["flow_noop"] = bench_flow(
        "flow_noop", noop, headlines(overhead_n, seed=4, distinct=True), repeat
    ).figures()
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a readable table."""
    rows = [
        ("measure", "messages", "seconds", "msgs/s", "msgs/CPU-s", "batch p50 s", "batch p99 s")
    ]
    for key in ("naive", "processors", "processors_int8", "flow", "flow_plain", "flow_noop"):
        if key not in results:
            continue
        f = results[key]
        rows.append(
            (
                key,
                f"{f['messages']:,}",
                f"{f['seconds']:.2f}",
                f"{f['msgs_per_s']:,.0f}",
                f"{f['msgs_per_cpu_s']:,.0f}" if "msgs_per_cpu_s" in f else "",
                str(f.get("batch_p50_s", "")),
                str(f.get("batch_p99_s", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"device {results['device']}, dtype {results['dtype']}, {results['torch_threads']} torch "
        f"threads, batch {results['batch_size']}; processors are "
        f"{results['speedup_vs_naive']}x the naive baseline"
        + (
            f"; int8 is {results['int8_speedup_vs_fp32']}x fp32"
            if "int8_speedup_vs_fp32" in results
            else ""
        )
        + (
            f"; GPU busy {results['processors']['gpu_busy']:.0%}"
            if "gpu_busy" in results["processors"]
            else ""
        )
    )
    if "entities_stories_cost" in results:
        lines.append(
            f"entities and story finding take {results['entities_stories_cost']:.1%} of the "
            "flow's throughput (flow against flow_plain)"
        )
    runs = results["flow_noop"].get("runs_msgs_per_s")
    if runs:
        lines.append("no-op flow runs, msgs/s: " + ", ".join(f"{r:,.0f}" for r in runs))
    return "\n".join(lines)


# `bench --live`: the latencies of a steady live stream through a Kafka broker.

SCORED_TARGET_P99_S = 1.0  # ingest -> scored message out
ALERT_TARGET_P99_S = 2.0  # window deadline -> alert event at the webhook receiver
CAPACITY_MESSAGES = 1024  # through the processors, to set the rate
MAX_LIVE_RATE = 500.0  # what the bench's one producer thread stamps and sends steadily
READY_TIMEOUT_S = 300.0  # the job's start: its models load before it reads
SETTLE_S = 5.0  # from the job's first scored message to the measured stream
MAX_TAIL_S = 120.0  # the longest the stream runs on, unmeasured, for the last alerts
STOP_TIMEOUT_S = 20.0
READ_EVERY_S = 0.02  # the scored topic's polls: latencies read up to this much late


class LiveBenchFailed(RuntimeError):
    """The live bench could not run: no broker, or the job did not start or stopped."""


@dataclass(frozen=True)
class LiveRequest:
    """What `bench --live` is asked for: the measured stream's length; its rate (None:
    half the measured capacity); the chain ("default": the configured processors,
    "noop": the no-op one); the broker (None: a local one); tumbling windows; and a
    burst window's extra items, times the rate (None: the chain's default, `live_plan`),
    every `burst_every` windows."""

    seconds: float = 120.0
    rate: float | None = None
    chain: str = "default"
    bootstrap: str | None = None
    window_seconds: float = 5.0
    lateness_seconds: float = 1.0
    burst: float | None = None
    burst_every: int = 3


@dataclass(frozen=True)
class LivePlan:
    """The live stream: calm headlines at a steady rate and, now and then, a window
    with a burst of negative headlines on one topic, for the detectors to fire on.

    A burst window gets `burst` times the steady rate on top of it, and at least
    `min_burst_items`: the negative-surge evidence grows with the count, so a slow
    stream needs more than its share.
    """

    request: LiveRequest
    rate: float
    burst: float
    first_burst: int  # windows from the stream's first window to its first burst
    burst_topic: str = "energy_oil"
    min_burst_items: int = 60

    @property
    def burst_items(self) -> int:
        """Items of a burst, in its window."""
        extra = int(self.request.window_seconds * self.rate * self.burst)
        return max(extra, self.min_burst_items)

    def windows(self, align: float, start: float) -> tuple[int, int]:
        """The indices of the stream's first and last windows, aligned at `align`
        (epoch seconds), for a stream that starts at `start`."""
        length = self.request.window_seconds
        return int((start - align) // length), int((start + self.request.seconds - align) // length)

    def schedule(self, align: float, start: float) -> list[tuple[float, bool]]:
        """When to send each item (epoch seconds), and whether it is a burst's."""
        seconds, length = self.request.seconds, self.request.window_seconds
        items = [(start + i / self.rate, False) for i in range(int(seconds * self.rate))]
        first, last = self.windows(align, start)
        per_window = self.burst_items
        for k in range(first + self.first_burst, last + 1, self.request.burst_every):
            times = (align + (k + j / per_window) * length for j in range(per_window))
            items += [(t, True) for t in times if start <= t < start + seconds]
        return sorted(items)


def labels_sentiment(config: Config) -> bool:
    """Whether the chain labels sentiment: without it no negative surge can fire."""
    return any(p.kind == "classify" and p.task == "sentiment" for p in config.processors)


def live_plan(config: Config, request: LiveRequest, rate: float) -> LivePlan:
    """Bursts that fire with the detectors as configured. A chain that labels sentiment
    fires the topic's negative surge on a modest burst (0.25 times the rate, at least
    60 items), once the topic's baseline is sure enough for its p_fire: from some six
    windows of 5 s in, at the rates of a CPU. One that does not (noop) can only raise
    the market-wide key's news-volume spike: 5 times the rate, after the volume
    detector's `warmup_windows`."""
    from processors.detection import VolumeDetector

    if labels_sentiment(config):
        burst, first_burst = 0.25, 6
    else:
        burst, first_burst = 5.0, int(VolumeDetector.warmup_windows) + 1
    return LivePlan(request, rate, burst if request.burst is None else request.burst, first_burst)


def live_rate(config: Config, rate: float | None) -> tuple[float, float | None, str]:
    """The stream's rate, the chain's measured capacity (None when `rate` is given) and
    where the rate comes from: half the capacity of the processors, measured here on
    `CAPACITY_MESSAGES` headlines in the configured batches, at most `MAX_LIVE_RATE`."""
    if rate is not None:
        return rate, None, "--rate"
    messages = messages_from(headlines(CAPACITY_MESSAGES, seed=5))
    measure = bench_processors(config, messages, config.inference.batch_size)
    capacity = measure.messages / measure.seconds
    if capacity / 2 > MAX_LIVE_RATE:
        return MAX_LIVE_RATE, capacity, f"half the measured capacity, capped at {MAX_LIVE_RATE:g}"
    return capacity / 2, capacity, "half the measured capacity"


class LiveItems:
    """Headlines whose event time is the moment they are made, just before they are
    sent: a calm market's mix or, for bursts, mostly negative news on one topic. Each
    text is distinct (a serial appended), so de-duplication lets every one through."""

    def __init__(self, burst_topic: str, seed: int = 11) -> None:
        minutes = 10**7  # the generators outlast any run
        quiet = {"duplicate_share": 0.0, "malformed_share": 0.0}
        self.calm = generate(MarketDay(BENCH_DAY, minutes, surge_minutes=0, seed=seed, **quiet))
        surge = {"surge_topic": burst_topic, "surge_start": 0.0, "surge_minutes": minutes}
        surge_day = MarketDay(BENCH_DAY, minutes, rate=0.0, seed=seed + 1, **surge, **quiet)
        self.surge = generate(surge_day)
        self.made = 0

    def make(self, burst: bool) -> bytes:
        """The next item, calm or a burst's, as the JSON line a producer sends."""
        item = json.loads(next(self.surge if burst else self.calm))
        self.made += 1
        item["id"] = f"live-{self.made}"
        item["text"] = f"{item['text']} (#{self.made})"
        item["published_at"] = datetime.now(UTC).isoformat()
        return json.dumps(item).encode()


class _Background:
    """A daemon thread, started on entering and stopped (`stop`) on leaving."""

    thread: threading.Thread

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError


class AlertReceiver(_Background):
    """A webhook receiver on 127.0.0.1, on a free port, that notes when each alert
    event arrives; it takes the Alertmanager format, the job's default."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []  # (arrival, alert event)
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.time()
                received.extend((arrived, alert) for alert in json.loads(body)["alerts"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the bench reports what arrived."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _ScoredHeader(msgspec.Struct):
    published_at: datetime


class _Scored(msgspec.Struct):
    """What the latency needs of a scored message."""

    header: _ScoredHeader


class ScoredReader(_Background):
    """Reads the scored topic as it fills, noting each message's event time (when the
    bench sent it) and its latency from then to its arrival here. The job writes its
    scored messages in its one event order, so they come here in the order sent."""

    def __init__(self, brokers: list[str], topic: str, options: dict[str, Any]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=brokers, enable_auto_commit=False, **options
        )
        self.consumer.assign([TopicPartition(topic, 0)])  # the bench makes it one partition
        self.consumer.seek_to_beginning()
        self.latencies: list[tuple[float, float]] = []  # (event time, latency)
        self.ready = threading.Event()  # a first message came out: the job scores
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        decode = msgspec.json.Decoder(_Scored).decode
        # What is there, every `READ_EVERY_S`: a poll that waits spins on a broker that
        # answers an empty fetch at once (noida-db), taking the job's CPU.
        while not self._stopping.wait(READ_EVERY_S):
            for records in self.consumer.poll(timeout_ms=0).values():
                arrived = time.time()
                for record in records:
                    sent = decode(record.value).header.published_at.timestamp()
                    self.latencies.append((sent, arrived - sent))
                self.ready.set()

    def between(self, start: float, end: float) -> list[float]:
        """The latencies of the messages sent from `start` to `end` (epoch seconds)."""
        return [latency for sent, latency in self.latencies if start <= sent < end]

    def passed(self, sent: float) -> bool:
        """Whether a message sent at `sent` (epoch seconds), or later, came out."""
        return bool(self.latencies) and self.latencies[-1][0] >= sent

    def stop(self) -> None:
        self._stopping.set()
        self.thread.join()
        self.consumer.close()


def live_job_config(
    config: Config,
    plan: LivePlan,
    brokers: list[str],
    topics: tuple[str, str],
    receiver_url: str,
    state_dir: Path,
) -> Config:
    """The job the live bench runs: `config`'s chain, inference, de-duplication,
    source and detector settings; reading `topics[0]` from its latest offset (what was
    sent before the job started is not for it), scored messages to `topics[1]`, alerts
    to the bench's receiver only (plain http, which loopback may use), tumbling windows
    of the plan's length and lateness, no snapshots, its state in `state_dir`."""
    data = config.model_dump(mode="json", exclude={"webhook": {"receivers"}})
    data["source"].update(kind="kafka", path=None)
    data["kafka"].update(
        brokers=brokers,
        input_topics=[topics[0]],
        starting_offset="latest",
        exit_at_end=False,
        scored_topic=topics[1],
        alerts_topic=None,
        dead_letter_topic=None,
    )
    window = {"length_seconds": plan.request.window_seconds, "slide_seconds": None}
    lateness = plan.request.lateness_seconds
    data["window"].update(window, kind="tumbling", allowed_lateness_seconds=lateness)
    receivers = [{"name": "bench", "url": receiver_url}]
    data["webhook"].update(receivers=receivers, state_dir=str(state_dir))
    files = dict.fromkeys(("alerts_path", "dead_letters_path", "scored_path", "windows_path"))
    data["sinks"].update(files, console=False, state_dir=str(state_dir))
    data["recovery"].update(dir=None)
    data["metrics"].update(port=None)
    return Config.model_validate(data)


@contextmanager
def live_broker(bootstrap: str | None, workdir: Path) -> Iterator[tuple[list[str], str]]:
    """The brokers to use, and how to name them: `bootstrap`, else a local
    Kafka-protocol broker from the dev extras, stopped on exit."""
    from flows.brokers import Broker, BrokerFailed, installed

    if bootstrap:
        yield [b.strip() for b in bootstrap.split(",") if b.strip()], bootstrap
        return
    kind = installed()
    if kind is None:
        raise LiveBenchFailed(
            "no Kafka broker: pass --bootstrap HOST:PORT, or install a local "
            "Kafka-protocol broker (the dev extras: pip install noida-db)"
        )
    broker = Broker(kind, workdir / "broker")
    try:
        broker.start()
    except BrokerFailed as exc:
        raise LiveBenchFailed(str(exc)) from exc
    try:
        yield [broker.address], f"{kind} on {broker.address}, local"
    finally:
        broker.stop()


@contextmanager
def live_job(config_path: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`finsentry run --config config_path` in a process of its own, as a user runs it,
    its output in `log_path`; interrupted (killed if it lingers) on exit. The
    environment's `FINSENTRY_<SECTION>__<FIELD>` settings are in the file already, and
    are left out so that they cannot undo the bench's own."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("FINSENTRY_") and "__" in k)}
    command = [sys.executable, "-m", "flows.cli", "run", "--config", str(config_path), "--quiet"]
    with log_path.open("wb") as log:
        job = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        yield job
    finally:
        job.send_signal(signal.SIGINT)
        try:
            job.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()


def run_live(
    config: Config,
    plan: LivePlan,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Streams `plan` through a broker into the job; its latencies, JSON-ready.

    Ingest -> scored: from each item's event time, when the bench made and sent it, to
    its scored message's arrival from the scored topic. Deadline -> alert: from the end
    of the alert's window plus the allowed lateness (the earliest the window may close)
    to the alert event's arrival at the bench's webhook receiver. The stream is steady
    throughout: calm items, unmeasured, run while the job starts and `SETTLE_S` after
    its first scored message (it reads from the latest offset, so its start is not
    counted), then the measured stream, then calm items again until the measured
    windows' alerts are in (`_tail`). Measured: the items sent in the measured stream,
    and the alerts of windows whose deadline falls in it.
    """
    from kafka.errors import KafkaError

    from flows.sinks.kafka import ensure_topic, make_producer

    name = f"finsentry-bench-{uuid.uuid4().hex[:8]}"
    topics = (f"{name}-items", f"{name}-scored")
    options, timeout = config.kafka.client_options, config.kafka.connect_timeout_seconds
    bootstrap = plan.request.bootstrap
    errors: list[BaseException] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_broker(bootstrap, Path(tmp)) as (brokers, via),
        AlertReceiver() as receiver,
    ):
        progress(f"broker: {via}; topics {', '.join(topics)}")
        for topic in topics:
            ensure_topic(brokers, topic, 1, client_options=options, connect_timeout=timeout)
        job_config = live_job_config(config, plan, brokers, topics, receiver.url, Path(tmp))
        config_path, log_path = Path(tmp) / "job.yaml", Path(tmp) / "job.log"
        config_path.write_text(yaml.safe_dump(job_config.model_dump(mode="json")))
        items = LiveItems(plan.burst_topic)
        try:
            with (
                ScoredReader(brokers, topics[1], options) as reader,
                closing(make_producer(brokers, options, timeout)) as producer,
                live_job(config_path, log_path) as job,
            ):

                def send(at: float, burst: bool) -> None:
                    wait = at - time.time()
                    if wait > 0:
                        time.sleep(wait)
                    producer.send(topics[0], value=items.make(burst)).add_errback(errors.append)

                progress("job: starting; the stream runs, unmeasured, until it scores")
                start = _calm(send, plan.rate, time.time(), _started(job, log_path, reader))
                end = start + plan.request.seconds
                align = job_config.window.align_to.timestamp()
                schedule = plan.schedule(align, start)
                first, last = plan.windows(align, start)
                progress(
                    f"stream: {plan.request.seconds:g} s at {plan.rate:,.1f} items/s, "
                    f"{len(schedule):,} items, windows {first}-{last}"
                )
                for at, burst in schedule:
                    send(at, burst)
                sent_seconds = time.time() - start
                progress("stream ended; calm items go on, unmeasured, for its last alerts")
                _calm(send, plan.rate, end, _tail(plan, end, reader, receiver))
                producer.flush()
                if job.poll() is not None:
                    raise LiveBenchFailed(_job_failed(job, log_path, "stopped during the run"))
        except KafkaError as exc:
            errors.append(exc)
        if bootstrap:
            _delete_topics(brokers, list(topics), options, timeout)
    if errors:
        raise LiveBenchFailed(f"{len(errors)} items not delivered to {topics[0]}: {errors[0]!r}")
    sent = {"items": len(schedule), "seconds": round(sent_seconds, 2), "broker": via}
    alerts = [(t, a) for t, a in receiver.received if start <= _deadline(a, plan) <= end]
    return live_figures(job_config, plan, sent, reader.between(start, end), alerts)


def _calm(
    send: Callable[[float, bool], None], rate: float, begin: float, until: Callable[[float], bool]
) -> float:
    """Sends calm items at `rate` from `begin` (epoch seconds) until `until` holds for
    the next item's time; returns that time."""
    sent = 0
    at = begin
    while not until(at):
        send(at, False)
        sent += 1
        at = begin + sent / rate
    return at


def _started(
    job: subprocess.Popen[bytes], log_path: Path, reader: ScoredReader
) -> Callable[[float], bool]:
    """Whether the job has scored its first item, and `SETTLE_S` has passed since;
    fails if it stopped or took longer than `READY_TIMEOUT_S`."""
    give_up = time.time() + READY_TIMEOUT_S
    settled: list[float] = []

    def until(at: float) -> bool:
        if job.poll() is not None or at > give_up:
            raise LiveBenchFailed(_job_failed(job, log_path, "did not start scoring"))
        if not settled and reader.ready.is_set():
            settled.append(time.time() + SETTLE_S)
        return bool(settled) and at >= settled[0]

    return until


def _tail(
    plan: LivePlan, end: float, reader: ScoredReader, receiver: AlertReceiver
) -> Callable[[float], bool]:
    """Whether the measured stream (to `end`) is in: every scored message of it, and
    the alerts of its last windows, allowing from `end` twice the longest any alert (or,
    before any came, any scored message) took, and 2 s; at most `MAX_TAIL_S`."""
    tail_end: list[float] = []

    def until(at: float) -> bool:
        if at > end + MAX_TAIL_S:
            return True
        if not tail_end and reader.passed(end):
            taken = [arrived - _deadline(a, plan) for arrived, a in receiver.received]
            taken = taken or [latency for _, latency in reader.latencies]
            tail_end.append(end + 2 * max(taken) + 2)
        return bool(tail_end) and at >= tail_end[0]

    return until


def _deadline(alert: dict[str, Any], plan: LivePlan) -> float:
    """The earliest an alert event's window may close: its end plus the lateness."""
    window_end = datetime.fromisoformat(alert["window"]["end"]).timestamp()
    return window_end + plan.request.lateness_seconds


def _job_failed(job: subprocess.Popen[bytes], log_path: Path, what: str) -> str:
    status = f"exited {job.returncode}" if job.poll() is not None else "still running"
    return f"the job {what} ({status}); its log ends:\n{log_path.read_text()[-3000:]}"


def _delete_topics(
    brokers: list[str], topics: list[str], options: dict[str, Any], timeout: float
) -> None:
    """Best effort: the bench's topics go with it from a user's Kafka."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=brokers, bootstrap_timeout_ms=int(timeout * 1000), **options
        )
        try:
            admin.delete_topics(topics)
        finally:
            admin.close()
    except KafkaError as exc:
        print(f"bench: could not delete topics {topics}: {exc!r}", file=sys.stderr)


def latency_figures(latencies: Sequence[float], target: float) -> dict[str, Any]:
    """Count, p50, p99 and max of `latencies` (seconds), beside the p99 target."""
    out: dict[str, Any] = {"n": len(latencies), "target_p99_s": target}
    if latencies:
        p50, p99 = p50_p99(latencies)
        out |= {"p50_s": round(p50, 3), "p99_s": round(p99, 3), "max_s": round(max(latencies), 3)}
        out["meets_target"] = p99 <= target
    return out


def live_figures(
    job_config: Config,
    plan: LivePlan,
    sent: dict[str, Any],
    scored: Sequence[float],
    alerts: Sequence[tuple[float, dict[str, Any]]],
) -> dict[str, Any]:
    """The live bench's settings and latencies, JSON-ready. `order` holds what the job
    waits on to put items in event order: a caught-up partition counts as
    `source.max_delay_seconds` behind the clock, and a window closes once the order has
    passed its deadline (docs/kafka.md, "Event order")."""
    from flows.steps import p_fire_for_budget, windows_per_month
    from processors.detection import VolumeDetector

    source, window, detector = job_config.source, job_config.window, job_config.detector
    p_fire = detector.p_fire or p_fire_for_budget(
        detector.false_alarms_per_month, windows_per_month(window)
    )
    after_deadline = [arrived - _deadline(alert, plan) for arrived, alert in alerts]
    events = Counter(
        f"{a['labels']['alertname']} {a['status']}: "
        + ",".join(f"{k}={v}" for k, v in a["labels"].items() if k in ("topic", "entity"))
        for _, a in alerts
    )
    return {
        "mode": "live",
        "processors": [p.name for p in job_config.processors],
        "cpus": len(os.sched_getaffinity(0)),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "rate": round(plan.rate, 1),
        "seconds": plan.request.seconds,
        "sent": sent,
        "window": {
            "length_seconds": window.length_seconds,
            "allowed_lateness_seconds": window.allowed_lateness_seconds,
        },
        "order": {
            "source.max_delay_seconds": source.max_delay_seconds,
            "source.batch_wait_seconds": source.batch_wait_seconds,
        },
        "bursts": {
            "topic": plan.burst_topic,
            "extra_times_rate": plan.burst,
            "items": plan.burst_items,
            "min_items": plan.min_burst_items,
            "every_windows": plan.request.burst_every,
            "first_after_windows": plan.first_burst,
        },
        "detector": {
            "kind": detector.kind,
            "p_fire": p_fire,
            "warmup_items": detector.warmup_items,
            "volume_warmup_windows": VolumeDetector.warmup_windows,
        },
        "scored": latency_figures(scored, SCORED_TARGET_P99_S),
        "alerts": latency_figures(after_deadline, ALERT_TARGET_P99_S) | {"events": dict(events)},
    }


def live_bench(
    config: Config,
    request: LiveRequest,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """`bench --live`: the rate (measured unless given), the plan, the run, the figures."""
    from flows.config import ProcessorConfig

    if request.chain == "noop":
        noop = [ProcessorConfig(name="noop", kind="noop")]
        config = config.model_copy(update={"processors": noop})
    if request.rate is None:
        progress(f"capacity: the processors on {CAPACITY_MESSAGES} headlines, to set the rate")
    rate, capacity, rate_from = live_rate(config, request.rate)
    results = run_live(config, live_plan(config, request, rate), progress)
    capacity_figure = round(capacity, 1) if capacity is not None else None
    return results | {"capacity_msgs_per_s": capacity_figure, "rate_from": rate_from}


def live_table(results: dict[str, Any]) -> str:
    """The live figures as a readable table, the targets beside them."""
    rows = [("latency", "n", "p50 s", "p99 s", "max s", "target p99", "met")]
    for key, name in (("scored", "ingest -> scored"), ("alerts", "deadline -> alert received")):
        f = results[key]
        met = "" if "meets_target" not in f else ("yes" if f["meets_target"] else "no")
        figures = (f"{f[k]:.3f}" if k in f else "-" for k in ("p50_s", "p99_s", "max_s"))
        rows.append((name, f"{f['n']:,}", *figures, f"<= {f['target_p99_s']:g} s", met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    w, b, d, s = results["window"], results["bursts"], results["detector"], results["sent"]
    capacity = results["capacity_msgs_per_s"]
    events = ", ".join(f"{k} x{v}" for k, v in sorted(results["alerts"]["events"].items()))
    lines += [
        "targets: on 2 CPU cores at half their capacity (the rate half the measured "
        f"maximum), scored p99 <= {SCORED_TARGET_P99_S:g} s and alerts p99 <= "
        f"{ALERT_TARGET_P99_S:g} s after the deadline",
        f"stream: {s['items']:,} items in {s['seconds']:g} s at {results['rate']:g}/s "
        f"({results['rate_from']}"
        + (f", capacity {capacity:,.0f}/s" if capacity else "")
        + f") on {results['cpus']} CPUs (load {results['load_average'][1]:g} at the end, 5 min);"
        + f" broker {s['broker']}; processors "
        + ", ".join(results["processors"]),
        f"windows: tumbling {w['length_seconds']:g} s, allowed lateness "
        f"{w['allowed_lateness_seconds']:g} s; "
        + ", ".join(f"{k} {v:g}" for k, v in results["order"].items())
        + f"; bursts on {b['topic']}: {b['items']:,} items (+{b['extra_times_rate']:g}x the "
        f"rate, at least {b['min_items']}) every "
        f"{b['every_windows']} windows from window {b['first_after_windows']}",
        f"detector: {d['kind']}, p_fire {d['p_fire']:.3g}, warm-up {d['warmup_items']:g} "
        f"items (volume: {d['volume_warmup_windows']:g} windows)",
        f"alert events: {events or 'none'}",
    ]
    return "\n".join(lines)
